//! The admin routes (CoreScope's `/api/backup`, `POST /api/packets`, `/api/config/geo-filter`,
//! `/api/admin/prune-geo-filter` and its `/status`): off without a key, 401 with a wrong
//! one, and with the right one they do their work through the writer, never by SQL in the
//! reader. Each test runs the writer (with its admin queue) and the reader on one data
//! directory, as `meshlens run` does, and injects a real captured advert.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ingest::decode::Decoder;
use ingest::writer_thread::Maintenance;
use ingest::{Ingest, IngestConfig};
use serde_json::{Value, json};
use server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;

const KEY: &str = "correct-horse-battery-staple";
/// The real advert of MRO-RPT04, a repeater at 37.201892, -122.032676.
const ADVERT: &str = "advert_flood_zero_hop_repeater";
const ADVERT_KEY: &str = "20aaa863297b2a97372c8ef877d35ee46aa6b5ff4a68ea8bdec3a0dc77cfa54b";

struct Both {
    server: Server,
    ingest: Ingest,
    _dir: tempfile::TempDir,
}

impl Both {
    async fn stop(self) {
        self.server.shutdown().await;
        self.ingest.shutdown().await;
    }
}

async fn start(admin_key: Option<&str>, geo_filter: Option<Value>) -> Both {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut ingest = Ingest::start(IngestConfig {
        db_path: db.clone(),
        sources: Vec::new(),
        decoder: Decoder::default(),
        maintenance: Maintenance::default(),
        maintenance_interval: Duration::from_secs(3600),
        source_settings: Default::default(),
        status_file: None,
        mbcap: None,
    })
    .unwrap();
    let filter = geo_filter.map(|g| analytics::geo::GeoFilter::from_json(&g).unwrap().unwrap());
    ingest.serve_admin_queue(dir.path(), filter).await.unwrap();
    let cfg = ServerConfig {
        admin_key: admin_key.map(str::to_owned),
        ..support::config(&db)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start(cfg, listener).unwrap();
    Both {
        server,
        ingest,
        _dir: dir,
    }
}

/// One request → (status, headers, body bytes).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let key = key
        .map(|k| format!("X-API-Key: {k}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{key}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        b = &b[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

async fn json_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let (status, _, body) = request(addr, method, path, key, body).await;
    let v = serde_json::from_slice(&body).unwrap_or_else(|_| {
        panic!(
            "{method} {path}: not JSON: {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, v)
}

/// Polls `f` until it returns `Some` (every 50 ms; the cap only ends a test that would hang).
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    for _ in 0..2_400 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

/// Injects the advert and waits until it is stored; returns the packet's hash.
async fn inject_advert(addr: SocketAddr) -> String {
    let body = json!({"hex": support::vector(ADVERT), "observer": "bench-radio", "snr": 7.25, "rssi": -91, "region": "sjc"});
    let (status, v) = json_request(addr, "POST", "/api/packets", Some(KEY), Some(&body)).await;
    assert!(status == 200 || status == 202, "{status} {v}");
    let hash = v["hash"].as_str().unwrap().to_owned();
    assert_eq!(hash, "708848b1e867703a", "the hash CoreScope's fixture has");
    if status == 200 {
        assert!(v["id"].as_i64().is_some(), "{v}");
        assert_eq!(v["decoded"]["payload_type_name"], "ADVERT", "{v}");
        assert_eq!(v["decoded"]["header"]["payloadTypeName"], "ADVERT", "{v}");
    }
    let path = format!("/api/packets/{hash}");
    eventually("the injected packet is stored", || async {
        let (s, v) = json_request(addr, "GET", &path, None, None).await;
        (s == 200).then_some(v)
    })
    .await;
    hash
}

const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/backup"),
    ("POST", "/api/packets"),
    ("PUT", "/api/config/geo-filter"),
    ("POST", "/api/admin/prune-geo-filter"),
    ("GET", "/api/admin/prune-geo-filter/status?id=abcd"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_are_off_without_a_key_and_refuse_a_wrong_one() {
    let off = start(None, None).await;
    for (method, path) in ROUTES {
        let (status, v) =
            json_request(off.server.addr, method, path, Some(KEY), Some(&json!({}))).await;
        assert_eq!(status, 403, "{method} {path}: {v}");
        assert!(v["error"].as_str().unwrap().contains("--admin-key"), "{v}");
    }
    // The geo filter is readable by anyone and says writing is off.
    let (status, v) =
        json_request(off.server.addr, "GET", "/api/config/geo-filter", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"polygon": null, "bufferKm": 0, "writeEnabled": false})
    );
    off.stop().await;

    let on = start(Some(KEY), None).await;
    for key in [
        None,
        Some("correct-horse-battery-stapl"),
        Some("correct-horse-battery-staple!"),
    ] {
        for (method, path) in ROUTES {
            let (status, v) =
                json_request(on.server.addr, method, path, key, Some(&json!({}))).await;
            assert_eq!(status, 401, "{method} {path} with {key:?}: {v}");
            assert_eq!(v["error"], "unauthorized");
        }
    }
    on.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_packet_is_stored_by_the_writer_under_its_observer() {
    let b = start(Some(KEY), None).await;
    let addr = b.server.addr;
    let hash = inject_advert(addr).await;
    let (_, v) = json_request(addr, "GET", &format!("/api/packets/{hash}"), None, None).await;
    let obs = v["observations"].as_array().unwrap();
    assert_eq!(obs.len(), 1, "{v}");
    assert_eq!(obs[0]["observer_id"], "bench-radio", "{v}");
    assert_eq!(obs[0]["snr"], 7.25, "{v}");
    // The advert's verified signature made the repeater a node.
    let (status, node) =
        json_request(addr, "GET", &format!("/api/nodes/{ADVERT_KEY}"), None, None).await;
    assert_eq!(status, 200, "{node}");
    assert_eq!(node["node"]["name"], "MRO-RPT04");

    for (body, want) in [
        (json!({}), "hex is required"),
        (json!({"hex": "zz"}), "hex"),
        (json!({"hex": "11"}), "not a MeshCore frame"),
        (
            json!({"hex": support::vector(ADVERT), "observer": "../etc"}),
            "observer",
        ),
        (
            json!({"hex": support::vector(ADVERT), "region": "a/b"}),
            "region",
        ),
        (
            json!({"hex": support::vector(ADVERT), "snr": "loud"}),
            "snr",
        ),
    ] {
        let (status, v) = json_request(addr, "POST", "/api/packets", Some(KEY), Some(&body)).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(want), "{body}: {v}");
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_geo_filter_is_set_by_the_writer_and_prunes_the_nodes_outside() {
    let b = start(Some(KEY), None).await;
    let addr = b.server.addr;
    inject_advert(addr).await;

    // Nothing to prune against yet.
    let (status, v) =
        json_request(addr, "POST", "/api/admin/prune-geo-filter", Some(KEY), None).await;
    assert_eq!(status, 400, "{v}");

    for bad in [
        json!({"polygon": [[1, 2], [3, 4]]}),
        json!({"polygon": [[1, 2], [3, 4], [95, 4]]}),
        json!({"polygon": [[1, 2], [3, 4], [5, 6]], "bufferKm": -3}),
        json!([1, 2, 3]),
    ] {
        let (status, v) =
            json_request(addr, "PUT", "/api/config/geo-filter", Some(KEY), Some(&bad)).await;
        assert_eq!(status, 400, "{bad}: {v}");
    }

    // A square around the repeater: it is inside, nothing to prune.
    let around = json!({"polygon": [[37.0, -122.3], [37.4, -122.3], [37.4, -121.8], [37.0, -121.8]], "bufferKm": 0});
    let set = |f: Value| async move {
        let (status, v) =
            json_request(addr, "PUT", "/api/config/geo-filter", Some(KEY), Some(&f)).await;
        assert!(status == 200 || status == 202, "{v}");
        eventually("the filter is stored", || {
            let f = f.clone();
            async move {
                let (_, v) = json_request(addr, "GET", "/api/config/geo-filter", None, None).await;
                (v["polygon"] == f["polygon"]).then_some(v)
            }
        })
        .await
    };
    let v = set(around).await;
    assert_eq!(v["writeEnabled"], true);
    let (status, v) =
        json_request(addr, "POST", "/api/admin/prune-geo-filter", Some(KEY), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({"dryRun": true, "count": 0, "nodes": []}));

    let node_path = format!("/api/nodes/{ADVERT_KEY}");
    let (_, n) = json_request(addr, "GET", &node_path, None, None).await;
    assert_eq!(n["node"]["foreign"], false, "{n}");

    // Around Seattle instead: the repeater is foreign.
    set(json!({"polygon": [[47.0, -122.6], [48.0, -122.6], [48.0, -121.8]], "bufferKm": 5})).await;
    // Its advert heard again (by another radio) is judged by the new filter: flagged, kept.
    let again = json!({"hex": support::vector(ADVERT), "observer": "second-radio"});
    let (status, v) = json_request(addr, "POST", "/api/packets", Some(KEY), Some(&again)).await;
    assert!(status == 200 || status == 202, "{v}");
    eventually("the node is flagged foreign", || {
        let p = node_path.clone();
        async move {
            let (_, n) = json_request(addr, "GET", &p, None, None).await;
            (n["node"]["foreign"] == true).then_some(())
        }
    })
    .await;
    let (status, preview) =
        json_request(addr, "POST", "/api/admin/prune-geo-filter", Some(KEY), None).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["count"], 1, "{preview}");
    assert_eq!(preview["nodes"][0]["pubkey"], ADVERT_KEY);
    assert_eq!(preview["nodes"][0]["name"], "MRO-RPT04");
    // The preview deleted nothing.
    assert_eq!(
        json_request(addr, "GET", &node_path, None, None).await.0,
        200
    );

    // Confirming needs the preview's keys; keys not in the preview are ignored.
    let (status, _) = json_request(
        addr,
        "POST",
        "/api/admin/prune-geo-filter?confirm=true",
        Some(KEY),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 400);
    let body = json!({"pubkeys": [ADVERT_KEY, "ff".repeat(32)]});
    let (status, v) = json_request(
        addr,
        "POST",
        "/api/admin/prune-geo-filter?confirm=true",
        Some(KEY),
        Some(&body),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["count"], 1, "{v}");
    let url = v["statusUrl"].as_str().unwrap().to_owned();
    let done = eventually("the prune is done", || {
        let url = url.clone();
        async move {
            let (s, v) = json_request(addr, "GET", &url, Some(KEY), None).await;
            assert_eq!(s, 200, "{v}");
            (v["status"] != "pending").then_some(v)
        }
    })
    .await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["deleted"], 1, "{done}");
    assert!(done["completedAt"].is_string(), "{done}");
    assert_eq!(
        json_request(addr, "GET", &node_path, None, None).await.0,
        404
    );

    // Status of ids nobody submitted, or not ids at all.
    let (s, _) = json_request(
        addr,
        "GET",
        "/api/admin/prune-geo-filter/status?id=0123456789abcdef",
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = json_request(
        addr,
        "GET",
        "/api/admin/prune-geo-filter/status?id=../../etc",
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(s, 400);

    // Clearing the filter.
    let (status, v) = json_request(
        addr,
        "PUT",
        "/api/config/geo-filter",
        Some(KEY),
        Some(&json!({"polygon": []})),
    )
    .await;
    assert!(status == 200 || status == 202, "{v}");
    eventually("the filter is cleared", || async {
        let (_, v) = json_request(addr, "GET", "/api/config/geo-filter", None, None).await;
        v["polygon"].is_null().then_some(())
    })
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_files_geo_filter_seeds_the_stored_one() {
    let square = json!({"polygon": [[1.0, 1.0], [2.0, 1.0], [2.0, 2.0]], "bufferKm": 1.5});
    let b = start(Some(KEY), Some(square.clone())).await;
    let (_, v) = json_request(b.server.addr, "GET", "/api/config/geo-filter", None, None).await;
    assert_eq!(v["polygon"], square["polygon"]);
    assert_eq!(v["bufferKm"], 1.5);
    b.stop().await;
}

fn count(db: &Path, table: &str) -> i64 {
    let c = store::rusqlite::Connection::open(db).unwrap();
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_a_consistent_sqlite_file_and_leaves_nothing_behind() {
    let b = start(Some(KEY), None).await;
    let addr = b.server.addr;
    inject_advert(addr).await;
    let (status, head, body) = request(addr, "GET", "/api/backup", Some(KEY), None).await;
    assert_eq!(status, 200, "{head}");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/octet-stream"),
        "{head}"
    );
    assert!(
        head.contains("attachment; filename=\"meshlens-backup-"),
        "{head}"
    );
    assert!(body.starts_with(b"SQLite format 3\0"), "not a SQLite file");
    let copy = b._dir.path().join("copy.db");
    std::fs::write(&copy, &body).unwrap();
    assert_eq!(count(&copy, "transmissions"), 1);
    assert_eq!(count(&copy, "nodes"), 1);
    // No temporary copy is left in the data directory.
    let left: Vec<_> = std::fs::read_dir(b._dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".meshlens-backup"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    b.stop().await;
}
