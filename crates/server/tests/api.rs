//! The reader over a real database built from captured frames: every core endpoint, its
//! validation, the live WebSocket, and the read-only guarantee.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use ingest::decode::Decoder;
use ingest::message::{PacketMessage, TopicObserver};
use meshcore::crypto::Keyring;
use meshcore::report::{DecodeOptions, parse_hex};
use serde_json::Value;
use server::{Server, ServerConfig};

mod support;

use support::vector;

const OBS_A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const OBS_B: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";

fn item(hex: &str, observer: &str, at: i64) -> store::Item {
    let d = Decoder {
        keyring: Keyring::with_public(),
        ..Decoder::default()
    };
    let msg = PacketMessage {
        observer: TopicObserver {
            id: observer.into(),
            iata: "SEA".into(),
        },
        origin: Some(format!("<b>obs {}</b>", &observer[..2])),
        region: None,
        raw: parse_hex(hex).unwrap(),
        snr: Some(7.25),
        rssi: Some(-95.0),
        score: None,
        airtime_ms: None,
    };
    d.item(msg, at).0
}

/// A database with adverts (1- and 2-byte mode), channel traffic, a forged advert, a TRACE and
/// a status, heard by two observers.
fn seed(db: &Path) -> store::Writer {
    let mut w = store::Writer::open(db, 0).unwrap();
    let now = server::now_ms();
    let mut items = Vec::new();
    for (i, name) in [
        "advert_flood_zero_hop_repeater",
        "advert_flood_2byte_hash_5hops",
        "advert_flood_room_server_1byte",
        "advert_flood_companion_with_location",
        "advert_flood_corrupted_bad_signature",
        "grp_txt_public_channel_decrypt",
        "grp_txt_public_channel_2hops",
        "grp_txt_unknown_channel_no_decrypt",
        "trace_direct_4snr_5hops",
        "txt_msg_flood_4hops",
    ]
    .iter()
    .enumerate()
    {
        let hex = vector(name);
        items.push(item(&hex, OBS_A, now - 60_000 + i as i64 * 1000));
        items.push(item(&hex, OBS_B, now - 59_000 + i as i64 * 1000));
    }
    items.push(ingest::status_item(
        ingest::message::StatusMessage {
            observer: Some(TopicObserver {
                id: OBS_A.into(),
                iata: "SEA".into(),
            }),
            model: Some("Heltec V3".into()),
            battery_mv: Some(4100),
            ..Default::default()
        },
        now,
        false,
    ));
    w.write_batch(&items).unwrap();
    w
}

fn config(db: &Path) -> ServerConfig {
    support::config(db)
}

async fn start_with(cfg: ServerConfig) -> Result<Server, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Server::start(cfg, listener)
}

async fn start(db: &Path) -> Server {
    start_with(config(db)).await.unwrap()
}

/// A minimal HTTP/1.1 client: method, path, optional body → (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (len, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(len.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let path = path.to_string();
    let (status, body) = tokio::task::spawn_blocking(move || http(addr, "GET", &path, None))
        .await
        .unwrap();
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_list_filters_and_detail() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start(&db).await;
    let (st, v) = get(s.addr, "/api/packets").await;
    assert_eq!(st, 200);
    assert_eq!(v["total"], 10);
    assert_eq!(v["packets"].as_array().unwrap().len(), 10);
    let first = &v["packets"][0];
    assert_eq!(first["observation_count"], 2);
    assert!(
        first["decoded"].is_object(),
        "decoded is an object, not a string"
    );
    // Newest first by default; asc reverses.
    let (_, asc) = get(s.addr, "/api/packets?order=asc&limit=1").await;
    assert_eq!(asc["packets"][0]["payload_type_name"], "ADVERT");
    assert_eq!(asc["limit"], 1);

    let (_, grp) = get(s.addr, "/api/packets?type=GRP_TXT").await;
    assert_eq!(grp["total"], 3);
    let (_, grp5) = get(s.addr, "/api/packets?type=5,4").await;
    assert_eq!(grp5["total"], 8);
    let (_, chan) = get(s.addr, "/api/packets?channel=Public").await;
    assert_eq!(chan["total"], 2);
    let (_, direct) = get(s.addr, "/api/packets?route=DIRECT").await;
    assert_eq!(direct["total"], 1);
    let (_, by_obs) = get(s.addr, &format!("/api/packets?observer={OBS_B}&limit=3")).await;
    assert_eq!(
        (
            by_obs["total"].as_i64(),
            by_obs["packets"].as_array().unwrap().len()
        ),
        (Some(10), 3)
    );
    let (_, none) = get(s.addr, "/api/packets?since=2999-01-01").await;
    assert_eq!(none["total"], 0);
    assert_eq!(none["packets"], serde_json::json!([]));

    let hash = first["hash"].as_str().unwrap().to_string();
    let (_, by_hash) = get(s.addr, &format!("/api/packets?hash={}", &hash[..6])).await;
    assert_eq!(by_hash["packets"][0]["hash"], hash.as_str());
    let (st, d) = get(s.addr, &format!("/api/packets/{hash}")).await;
    assert_eq!(st, 200);
    assert_eq!(d["packet"]["hash"], hash.as_str());
    assert_eq!(d["observations"].as_array().unwrap().len(), 2);
    let ranges = d["breakdown"]["ranges"].as_array().unwrap();
    assert_eq!(ranges[0]["label"], "header");
    let id = d["packet"]["id"].as_i64().unwrap();
    let (_, by_id) = get(s.addr, &format!("/api/packets/{id}")).await;
    assert_eq!(by_id["packet"]["hash"], hash.as_str());
    let (_, expanded) = get(s.addr, "/api/packets?expand=observations&limit=1").await;
    assert_eq!(
        expanded["packets"][0]["observations"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start(&db).await;
    for (path, status) in [
        ("/api/packets?limit=-1", 400),
        ("/api/packets?limit=abc", 400),
        ("/api/packets?offset=-5", 400),
        ("/api/packets?type=NOPE", 400),
        ("/api/packets?route=9", 400),
        ("/api/packets?since=yesterday", 400),
        ("/api/packets?order=sideways", 400),
        ("/api/packets?hash=xyz", 400),
        ("/api/packets/notanid", 400),
        ("/api/packets/0123456789abcdef", 404),
        ("/api/packets/999999", 404),
        ("/api/nodes?role=wizard", 400),
        ("/api/nodes?sortBy=evil;DROP", 400),
        ("/api/nodes?lastHeard=forever", 400),
        ("/api/nodes/zz", 400),
        ("/api/nodes/ffffffff", 404),
        ("/api/observers/nope", 404),
        ("/api/channels/nope/messages", 404),
        ("/api/no/such/route", 404),
    ] {
        let (st, v) = get(s.addr, path).await;
        assert_eq!(st, status, "{path}: {v}");
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    // Limits are capped, not refused.
    let (st, v) = get(s.addr, "/api/packets?limit=999999").await;
    assert_eq!((st, v["limit"].as_i64()), (200, Some(10_000)));
    let (_, v) = get(s.addr, "/api/nodes?limit=999999").await;
    assert!(v["nodes"].is_array());
    // Search text with LIKE wildcards and quotes is data, not syntax.
    let (st, v) = get(s.addr, "/api/nodes?search=%25%27%22_").await;
    assert_eq!((st, v["total"].as_i64()), (200, Some(0)));
    // Decode endpoint.
    let addr = s.addr;
    let (st, body) = tokio::task::spawn_blocking(move || {
        http(
            addr,
            "POST",
            "/api/decode",
            Some(r#"{"hex":"0D04B891647EBB40BA70"}"#),
        )
    })
    .await
    .unwrap();
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["decoded"]["packet_hash"], "bbf95563c6eec9fe");
    let (st, body) = tokio::task::spawn_blocking(move || {
        http(addr, "POST", "/api/decode", Some("{\"hex\":\"zz\"}"))
    })
    .await
    .unwrap();
    assert_eq!(st, 400, "{body}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_observers_channels_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start(&db).await;

    let (st, v) = get(s.addr, "/api/nodes").await;
    assert_eq!(st, 200);
    // Four verified adverts; the forged one made no node.
    assert_eq!(v["total"], 4);
    assert_eq!(v["counts"]["repeater"], 2);
    assert_eq!(v["counts"]["room"], 1);
    assert_eq!(v["counts"]["companion"], 1);
    let nodes = v["nodes"].as_array().unwrap();
    let two_byte = nodes
        .iter()
        .find(|n| n["hash_size"] == 2)
        .expect("a 2-byte node");
    assert_eq!(two_byte["hash_size_inconsistent"], false);
    let key = two_byte["public_key"].as_str().unwrap().to_string();
    let (_, rep) = get(s.addr, "/api/nodes?role=repeater").await;
    assert_eq!(rep["total"], 2);
    let (st, d) = get(s.addr, &format!("/api/nodes/{}", &key[..8])).await;
    assert_eq!(st, 200);
    assert_eq!(d["node"]["public_key"], key.as_str());
    assert_eq!(d["recentAdverts"].as_array().unwrap().len(), 1);
    let (_, found) = get(s.addr, "/api/nodes/search?q=MRO").await;
    assert_eq!(found["nodes"][0]["name"], "MRO-RPT04");

    let (_, obs) = get(s.addr, "/api/observers").await;
    let list = obs["observers"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let (_, a) = get(s.addr, &format!("/api/observers/{OBS_A}")).await;
    assert_eq!(a["model"], "Heltec V3");
    assert_eq!(a["packetsLastHour"], 10);
    // The name is returned as data; escaping is the UI's job.
    assert_eq!(a["name"], "<b>obs a1</b>");

    // Undecrypted channels only when asked for, as CoreScope lists them.
    let (_, ch) = get(s.addr, "/api/channels?includeEncrypted=true").await;
    let chans = ch["channels"].as_array().unwrap();
    let public = chans.iter().find(|c| c["hash"] == "Public").unwrap();
    assert_eq!(public["messageCount"], 2);
    assert!(chans.iter().any(|c| c["encrypted"] == true));
    let (_, msgs) = get(s.addr, "/api/channels/Public/messages").await;
    assert_eq!(msgs["total"], 2);
    let texts: Vec<&str> = msgs["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sender"].as_str().unwrap())
        .collect();
    assert!(texts.contains(&"otakup0pe"), "{texts:?}");

    let (_, stats) = get(s.addr, "/api/stats").await;
    assert_eq!(stats["totalTransmissions"], 10);
    assert_eq!(stats["totalObservations"], 20);
    assert_eq!(stats["totalNodes"], 4);
    assert_eq!(stats["totalObservers"], 2);
    let (st, hz) = get(s.addr, "/api/healthz").await;
    assert_eq!((st, &hz["ready"]), (200, &Value::Bool(true)));
    assert_eq!(hz["ingest"]["state"], "unknown");
    let (_, spec) = get(s.addr, "/api/openapi.json").await;
    for p in [
        "/api/packets",
        "/api/nodes/{pubkey}",
        "/api/channels/{hash}/messages",
        "/ws",
        "/metrics",
    ] {
        assert!(
            spec["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    let addr = s.addr;
    let (st, text) = tokio::task::spawn_blocking(move || http(addr, "GET", "/metrics", None))
        .await
        .unwrap();
    assert_eq!(st, 200);
    assert!(text.contains("meshlens_observations 20"), "{text}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_observations_are_pushed_live() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed(&db);
    let s = start(&db).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", s.addr))
        .await
        .unwrap();
    // Let the subscription settle, then commit a new packet through the writer.
    tokio::time::sleep(Duration::from_millis(100)).await;
    w.write_batch(&[item(&vector("ack_flood_4hops"), OBS_A, server::now_ms())])
        .unwrap();
    let v: Value = loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("pushed")
            .unwrap()
            .unwrap();
        if msg.is_text() {
            break serde_json::from_str(msg.to_text().unwrap()).unwrap();
        }
    };
    assert_eq!(v["type"], "packet");
    assert_eq!(v["data"]["hash"], "bbf95563c6eec9fe");
    assert_eq!(v["data"]["observer"], OBS_A);
    assert_eq!(v["data"]["decoded"]["payload_type_name"], "ACK");
    // The packet list's cached total follows the commit.
    let (_, list) = get(s.addr, "/api/packets?limit=1").await;
    assert_eq!(list["total"], 11);
    // A browser page from another site may not subscribe.
    let req = tokio_tungstenite::tungstenite::http::Request::builder()
        .uri(format!("ws://{}/ws", s.addr))
        .header("Host", s.addr.to_string())
        .header("Origin", "https://evil.example")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_an_unmigrated_database_and_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    drop(seed(&db));
    let c = store::rusqlite::Connection::open(&db).unwrap();
    c.pragma_update(None, "user_version", 1).unwrap();
    drop(c);
    let err = start_with(config(&db)).await.err().unwrap();
    assert!(err.contains("start the writer"), "{err}");

    // The pool's connections refuse writes.
    let c = store::rusqlite::Connection::open(&db).unwrap();
    c.pragma_update(None, "user_version", store::SCHEMA_VERSION)
        .unwrap();
    drop(c);
    let pool = server::db::Db::open(&db, 1, Duration::from_secs(120)).unwrap();
    let r = pool
        .query(|c| {
            Ok(c.execute("DELETE FROM transmissions", []).is_err()
                && c.execute("CREATE TABLE x (y)", []).is_err())
        })
        .await
        .unwrap();
    assert!(r, "a pooled connection accepted a write");
    let _ = Arc::clone(&pool);
}

/// The reader must not contain write SQL: any statement that changes the database belongs
/// to the writer.
#[test]
fn no_write_sql_in_the_server_crate() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src];
    let mut offenders = Vec::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        for word in [
            "INSERT", "UPDATE", "DELETE", "ALTER", "CREATE", "DROP", "REPLACE", "VACUUM", "ATTACH",
            "REINDEX",
        ] {
            for (i, _) in text.match_indices(word) {
                let before = text[..i].chars().last().unwrap_or(' ');
                let after = text[i + word.len()..].chars().next().unwrap_or(' ');
                if !before.is_alphanumeric()
                    && before != '_'
                    && !after.is_alphanumeric()
                    && after != '_'
                {
                    offenders.push(format!("{}: {word}", p.display()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "write SQL in the reader: {offenders:?}"
    );
}

/// A client that does not read falls behind the bounded ring and is told how much it missed;
/// the writer and the feed keep going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_live_client_is_told_it_lagged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed(&db);
    let s = start(&db).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", s.addr))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Far more than the per-client buffer (and the socket buffers) while the client sleeps.
    let now = server::now_ms();
    for chunk in 0..10u32 {
        let items: Vec<store::Item> = (0..2000u32)
            .map(|i| {
                let n = chunk * 2000 + i;
                item(&format!("0D00{}", hex::encode(n.to_le_bytes())), OBS_A, now)
            })
            .collect();
        w.write_batch(&items).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut lagged = None;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        if let Ok(v) = serde_json::from_str::<Value>(msg.to_text().unwrap_or(""))
            && v["type"] == "lagged"
        {
            lagged = v["missed"].as_u64();
            break;
        }
    }
    assert!(lagged.is_some_and(|n| n > 0), "no lagged notice");
    s.shutdown().await;
}

async fn wait_complete(addr: SocketAddr) -> Value {
    for _ in 0..200 {
        let (_, v) = get(addr, "/api/analytics/hash-sizes").await;
        if v["complete"] == true {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("capability cycle never completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_is_served_and_published_and_the_writer_persists_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed(&db);
    let mut cfg = config(&db);
    cfg.capability.publish_to = Some(dir.path().to_path_buf());
    let s = start_with(cfg).await.unwrap();
    let hs = wait_complete(s.addr).await;
    for k in [
        "hourly",
        "topHops",
        "multiByteNodes",
        "multiByteCapability",
        "legacySuspects",
        "unknownRelays",
    ] {
        assert!(hs[k].is_array(), "{k} must be an array: {hs}");
    }
    assert_eq!(hs["adoption"]["confirmed"], 1, "{hs}");
    let confirmed = hs["multiByteCapability"][0].clone();
    assert_eq!(confirmed["status"], "confirmed");
    assert_eq!(confirmed["maxHashSize"], 2);
    let key = confirmed["pubkey"].as_str().unwrap().to_string();
    // TRACE and everything else was counted by size; the distribution has all three keys.
    assert!(hs["distribution"]["2"].as_u64().unwrap() >= 2);

    let (_, nodes) = get(s.addr, "/api/nodes?limit=10").await;
    let row = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["public_key"] == key.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (
            row["multi_byte_status"].as_str(),
            row["multi_byte_evidence"].as_str(),
            row["multi_byte_max_hash_size"].as_u64()
        ),
        (Some("confirmed"), Some("advert"), Some(2))
    );
    let (_, d) = get(s.addr, &format!("/api/nodes/{key}")).await;
    let mb = &d["node"]["multi_byte"];
    assert_eq!(
        (mb["confidence"].as_str(), mb["source"].as_str()),
        (Some("high"), Some("computed"))
    );
    assert!(mb["upgraded_at"].is_string());
    assert_eq!(mb["samples"].as_array().unwrap().len(), 1);
    // Filters shape the response only.
    let (_, none) = get(s.addr, "/api/analytics/hash-sizes?region=ZZZ").await;
    assert_eq!(none["multiByteCapability"], serde_json::json!([]));
    let (_, sea) = get(s.addr, "/api/analytics/hash-sizes?region=sea,zzz").await;
    let in_sea = sea["multiByteCapability"].as_array().unwrap();
    assert!(
        in_sea
            .iter()
            .any(|c| c["pubkey"] == key.as_str() && c["status"] == "confirmed"),
        "{sea}"
    );
    // distributionByRepeaters counts repeaters only (by their latest advert size).
    let by_rep = &hs["distributionByRepeaters"];
    assert_eq!(
        by_rep["1"].as_u64().unwrap()
            + by_rep["2"].as_u64().unwrap()
            + by_rep["3"].as_u64().unwrap(),
        2,
        "{by_rep}"
    );
    let (_, again) = get(s.addr, "/api/analytics/hash-sizes").await;
    assert_eq!(again["adoption"], hs["adoption"]);
    let (st, _) = get(s.addr, "/api/analytics/hash-sizes?window=forever").await;
    assert_eq!(st, 400);

    // The snapshot was published for the writer, which persists it.
    let snap = handoff::snapshot_path(dir.path());
    for _ in 0..200 {
        if snap.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let stats = ingest::stats::Stats::default();
    let mut generation = 0;
    ingest::mbcap::apply(&mut w, &snap, &mut generation, &stats);
    assert_eq!(
        stats.get("mbcap.updated_active"),
        1,
        "{:?}",
        stats.counters()
    );
    let sup: i64 = w
        .conn()
        .query_row(
            "SELECT multibyte_sup FROM nodes WHERE public_key = ?1",
            [&key],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sup, 2);
    // The same generation again is skipped.
    ingest::mbcap::apply(&mut w, &snap, &mut generation, &stats);
    assert_eq!(stats.get("mbcap.stale_generation"), 1);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_with_the_window_aged_out_persisted_capability_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed(&db);
    let key: String = w
        .conn()
        .query_row(
            "SELECT public_key FROM nodes WHERE role = 'room'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    w.apply_capability(&[store::CapabilityUpdate {
        public_key: key.clone(),
        status: 2,
        evidence: "advert".into(),
        max_hash_size: Some(3),
        upgraded_at: Some(1_700_000_000_000),
    }])
    .unwrap();
    drop(w);
    // A window of one millisecond: every observation has aged out.
    let mut cfg = config(&db);
    cfg.capability.window = Duration::from_millis(1);
    let s = start_with(cfg).await.unwrap();
    // Served at once (persisted values are loaded before the first request)…
    let (_, d) = get(s.addr, &format!("/api/nodes/{key}")).await;
    assert_eq!(d["node"]["multi_byte"]["status"], "confirmed");
    // …and still after the first full cycle found no evidence in the window.
    wait_complete(s.addr).await;
    let (_, d) = get(s.addr, &format!("/api/nodes/{key}")).await;
    let mb = &d["node"]["multi_byte"];
    assert_eq!(
        (
            mb["status"].as_str(),
            mb["source"].as_str(),
            mb["max_hash_size"].as_u64()
        ),
        (Some("confirmed"), Some("persisted"), Some(3))
    );
    assert_eq!(mb["upgraded_at"], "2023-11-14T22:13:20.000Z");
    s.shutdown().await;
}

/// However many observers heard a packet, its detail lists a bounded number of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_detail_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let hex = vector("ack_flood_4hops");
    let now = server::now_ms();
    let items: Vec<store::Item> = (0..600)
        .map(|i| item(&hex, &format!("{i:064x}"), now))
        .collect();
    w.write_batch(&items).unwrap();
    let s = start(&db).await;
    let (st, d) = get(s.addr, "/api/packets/bbf95563c6eec9fe").await;
    assert_eq!(st, 200);
    assert_eq!(d["packet"]["observation_count"], 600);
    assert_eq!(
        d["observations"].as_array().unwrap().len(),
        server::api::packets::MAX_OBSERVATIONS as usize
    );
    s.shutdown().await;
}

/// A node's advertised hash size comes from the last week of its adverts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advert_hash_size_ignores_adverts_older_than_a_week() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let old = server::now_ms() - 8 * 86_400_000;
    w.write_batch(&[item(&vector("advert_flood_2byte_hash_5hops"), OBS_A, old)])
        .unwrap();
    let s = start(&db).await;
    let (_, v) = get(s.addr, "/api/nodes").await;
    assert_eq!(v["total"], 1);
    assert_eq!(v["nodes"][0]["hash_size"], Value::Null, "{v}");
    s.shutdown().await;
}

/// A forged 2-byte advert carrying a known node's key never confirms that node.
#[test]
fn forged_adverts_of_known_nodes_are_not_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let valid = vector("advert_flood_zero_hop_repeater"); // 11 00 <payload>, 1-byte mode
    let payload = &valid[4..];
    // The same advert re-framed in 2-byte mode stays valid (the header is not signed)…
    let reframed = format!("1140{payload}");
    // …but with one name byte changed it is forged.
    let mut forged = reframed.clone();
    let last = forged.len() - 2;
    forged.replace_range(last.., "35");
    let now = server::now_ms();
    w.write_batch(&[item(&valid, OBS_A, now), item(&forged, OBS_A, now + 1)])
        .unwrap();
    let reader = store::Reader::open(&db).unwrap();
    let idx = server::capability::compute(reader.conn(), Duration::from_secs(86_400)).unwrap();
    let node = &idx.report.nodes[0];
    assert_eq!(
        node.status,
        analytics::capability::Status::Unknown,
        "{node:?}"
    );
    // The control: the valid re-framed advert does confirm.
    w.write_batch(&[item(&reframed, OBS_B, now + 2)]).unwrap();
    let idx = server::capability::compute(reader.conn(), Duration::from_secs(86_400)).unwrap();
    assert_eq!(
        idx.report.nodes[0].status,
        analytics::capability::Status::Confirmed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_filter_by_path_hash_size_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed(&db);
    // Transport routes put 4 bytes of codes before the path length: a 3-byte-mode flood and
    // a 1-byte one.
    let now = server::now_ms();
    w.write_batch(&[
        item(
            &vector("grp_txt_hashtag_test_transport_flood_3byte_mode"),
            OBS_A,
            now,
        ),
        item(
            &vector("advert_transport_flood_region_seattle_1hop"),
            OBS_A,
            now,
        ),
    ])
    .unwrap();
    let s = start(&db).await;
    let (_, all) = get(s.addr, "/api/packets?limit=100").await;
    let all = all["packets"].as_array().unwrap().clone();
    assert_eq!(all.len(), 12);
    let mut sum = 0;
    for size in 1..=3 {
        let (st, v) = get(s.addr, &format!("/api/packets?hash_size={size}&limit=100")).await;
        assert_eq!(st, 200);
        let want: Vec<&str> = all
            .iter()
            .filter(|p| p["hash_size"] == size)
            .map(|p| p["hash"].as_str().unwrap())
            .collect();
        let got: Vec<&str> = v["packets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["hash"].as_str().unwrap())
            .collect();
        assert_eq!(got, want, "hash_size={size}");
        assert_eq!(v["total"], want.len());
        sum += want.len();
    }
    assert_eq!(sum, 12);
    let (_, three) = get(s.addr, "/api/packets?hashSize=3").await;
    assert!(three["total"].as_i64().unwrap() >= 1, "{three}");
    let (st, e) = get(s.addr, "/api/packets?hash_size=4").await;
    assert_eq!(st, 400);
    assert!(e["error"].as_str().unwrap().contains("hash_size"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_buckets_count_recent_packets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start(&db).await;
    let (st, v) = get(s.addr, "/api/stats/traffic?window=1h").await;
    assert_eq!(st, 200);
    let buckets = v["buckets"].as_array().unwrap();
    assert_eq!(v["bucketMs"], 75_000);
    assert_eq!(buckets.len(), 48);
    let packets: i64 = buckets.iter().map(|b| b["packets"].as_i64().unwrap()).sum();
    let obs: i64 = buckets
        .iter()
        .map(|b| b["observations"].as_i64().unwrap())
        .sum();
    assert_eq!((packets, obs), (10, 20));
    // Oldest first, evenly spaced.
    let t0 = store::time::parse_time(buckets[0]["t"].as_str().unwrap()).unwrap();
    let t1 = store::time::parse_time(buckets[1]["t"].as_str().unwrap()).unwrap();
    assert_eq!(t1 - t0, 75_000);
    for bad in ["0s", "31d", "soon"] {
        let (st, e) = get(s.addr, &format!("/api/stats/traffic?window={bad}")).await;
        assert_eq!(st, 400, "{bad}: {e}");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_is_served_with_a_strict_csp_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start_with(ServerConfig {
        ui: server::web::UiConfig {
            tile_url: "https://tiles.example.org/{z}/{x}/{y}.png".into(),
            tile_attribution: "<b>tiles</b>".into(),
            ..Default::default()
        },
        ..config(&db)
    })
    .await
    .unwrap();
    let addr = s.addr;
    let raw = tokio::task::spawn_blocking(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        write!(
            c,
            "GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).unwrap();
        raw
    })
    .await
    .unwrap();
    let head =
        String::from_utf8_lossy(&raw[..raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap()])
            .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    let csp = head
        .lines()
        .find(|l| l.starts_with("content-security-policy:"))
        .unwrap_or_else(|| panic!("no CSP: {head}"));
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(csp.contains("https://tiles.example.org"), "{csp}");

    let (st, index) = http(s.addr, "GET", "/", None);
    assert_eq!(st, 200);
    assert!(index.contains("<script"), "{index}");
    let (st, map) = get(s.addr, "/api/config/map").await;
    assert_eq!(st, 200);
    assert_eq!(map["tileUrl"], "https://tiles.example.org/{z}/{x}/{y}.png");
    assert_eq!(map["attribution"], "<b>tiles</b>");
    // Unknown files are 404; unknown API paths stay JSON errors.
    let (st, _) = http(s.addr, "GET", "/no-such-file.js", None);
    assert_eq!(st, 404);
    // Nothing outside web/ is reachable (debug builds read web/ from disk).
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/..%2fCargo.toml",
        "/js/../../Cargo.toml",
        "//etc/passwd",
    ] {
        let (st, body) = http(s.addr, "GET", path, None);
        assert!(
            st == 404 || st == 400,
            "{path}: {st} {}",
            body.get(..80).unwrap_or(&body)
        );
        assert!(
            !body.contains("[workspace]") && !body.contains("root:"),
            "{path}"
        );
    }
    let (st, e) = get(s.addr, "/api/no-such-endpoint").await;
    assert_eq!(st, 404);
    assert!(e["error"].is_string());
    s.shutdown().await;
}

/// A flood advert signed by the key with `seed`, at `timestamp`, with `hops` hops of `size`.
fn signed_advert(
    timestamp: u32,
    size: meshcore::PathHashSize,
    hops: u8,
    route: meshcore::Route,
) -> String {
    use meshcore::payload::{Advert, AppData, NodeType};
    let mut appdata = Vec::new();
    AppData::new(NodeType::REPEATER, None, Some(b"Sizer")).encode(&mut appdata);
    let mut payload = Vec::new();
    Advert::encode_signed(&[7; 32], timestamp, &appdata, &mut payload);
    let len = meshcore::PathLen::new(size, hops).unwrap();
    let path = vec![0x5c; len.byte_len()];
    let frame = meshcore::Packet::new(route, meshcore::PayloadType::Advert, len, &path, &payload)
        .unwrap()
        .to_bytes();
    hex::encode(frame)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_hash_size_is_the_latest_advert_and_flags_mixed_sizes() {
    use meshcore::{PathHashSize, Route, TransportCodes};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let now = server::now_ms();
    let ts = (now / 1000) as u32;
    let codes = TransportCodes {
        scope: 0x1234,
        home: 0,
    };
    // Older: 1-byte flood. Newer: 3-byte on a transport flood (codes shift the path byte).
    w.write_batch(&[
        item(
            &signed_advert(ts - 5, PathHashSize::One, 2, Route::Flood),
            OBS_A,
            now - 5_000,
        ),
        item(
            &signed_advert(ts - 1, PathHashSize::Three, 1, Route::TransportFlood(codes)),
            OBS_A,
            now - 1_000,
        ),
    ])
    .unwrap();
    let s = start(&db).await;
    // Answered from SQL or from the capability index: the same either way.
    for from_index in [false, true] {
        if from_index {
            wait_complete(s.addr).await;
        }
        let (_, v) = get(s.addr, "/api/nodes").await;
        let nodes = v["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 1, "{v}");
        assert_eq!(nodes[0]["advert_count"], 2, "{v}");
        assert_eq!(nodes[0]["hash_size"], 3, "{v}");
        assert_eq!(nodes[0]["hash_size_inconsistent"], true, "{v}");
        let key = nodes[0]["public_key"].as_str().unwrap().to_string();
        let (_, d) = get(s.addr, &format!("/api/nodes/{key}")).await;
        assert_eq!(d["node"]["hash_size"], 3, "{d}");
    }
    s.shutdown().await;

    // Only one size seen: consistent.
    let dir2 = tempfile::tempdir().unwrap();
    let db2 = dir2.path().join("meshlens.db");
    let mut w2 = store::Writer::open(&db2, 0).unwrap();
    w2.write_batch(&[
        item(
            &signed_advert(ts - 3, PathHashSize::Two, 3, Route::Flood),
            OBS_B,
            now - 3_000,
        ),
        item(
            &signed_advert(ts, PathHashSize::Two, 1, Route::Flood),
            OBS_B,
            now,
        ),
    ])
    .unwrap();
    let s = start(&db2).await;
    wait_complete(s.addr).await;
    let (_, v) = get(s.addr, "/api/nodes").await;
    assert_eq!(v["nodes"][0]["hash_size"], 2, "{v}");
    assert_eq!(v["nodes"][0]["hash_size_inconsistent"], false, "{v}");
    s.shutdown().await;
    drop((w, w2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_keys_never_leave_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    // A private channel configured on the server.
    let mut keyring = Keyring::with_public();
    keyring.add(meshcore::crypto::Channel::hashtag("test"));
    let s = start_with(ServerConfig {
        decode: DecodeOptions {
            keyring,
            ..DecodeOptions::default()
        },
        ..config(&db)
    })
    .await
    .unwrap();
    let hex = vector("grp_txt_public_channel_decrypt");
    // The library's report has the key (the vectors expect it) ...
    let report =
        meshcore::report::decode_to_json(&parse_hex(&hex).unwrap(), &DecodeOptions::default());
    assert!(report["channel_key"].is_string(), "{report}");
    // ... the API does not, wherever the decoded frame appears.
    let (_, list) = get(s.addr, "/api/packets?channel=Public").await;
    let decoded = &list["packets"][0]["decoded"];
    assert!(
        decoded["plaintext"]["text"].is_string(),
        "decrypted: {decoded}"
    );
    assert!(decoded.get("channel_key").is_none(), "{decoded}");
    let addr = s.addr;
    let (st, body) = tokio::task::spawn_blocking(move || {
        http(
            addr,
            "POST",
            "/api/decode",
            Some(&format!("{{\"hex\":\"{hex}\"}}")),
        )
    })
    .await
    .unwrap();
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["decoded"]["plaintext"]["text"].is_string(), "{v}");
    assert!(!body.contains("channel_key"), "{body}");
    let hash = list["packets"][0]["hash"].as_str().unwrap().to_string();
    let (_, detail) = get(s.addr, &format!("/api/packets/{hash}")).await;
    assert!(!detail.to_string().contains("channel_key"), "{detail}");
    s.shutdown().await;
}

/// Every route the router serves is described in the OpenAPI document.
#[test]
fn every_route_is_in_the_openapi_document() {
    let src = include_str!("../src/lib.rs");
    let spec: Value = serde_json::from_str(server::OPENAPI).unwrap();
    let routes: Vec<&str> = src
        .split(".route(")
        .skip(1)
        .filter_map(|s| s.trim_start().strip_prefix('"')?.split('"').next())
        .collect();
    assert!(routes.len() >= 20, "{routes:?}");
    for r in routes {
        if r == "/api/spec" {
            continue; // an alias of /api/openapi.json
        }
        assert!(
            spec["paths"][r].is_object(),
            "{r} missing from openapi.json"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_filter_by_capability_and_search_by_key_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start(&db).await;
    wait_complete(s.addr).await;
    let (_, all) = get(s.addr, "/api/nodes").await;
    let all = all["nodes"].as_array().unwrap().clone();
    assert!(all.iter().all(|n| n["multi_byte_legacy_suspect"] == false));
    let mut seen = 0;
    for status in ["confirmed", "suspected", "unknown"] {
        let want: Vec<&Value> = all
            .iter()
            .filter(|n| n["multi_byte_status"] == status)
            .map(|n| &n["public_key"])
            .collect();
        let (st, v) = get(s.addr, &format!("/api/nodes?multiByte={status}")).await;
        assert_eq!(st, 200);
        let got: Vec<&Value> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| &n["public_key"])
            .collect();
        assert_eq!(got, want, "{status}");
        assert_eq!(v["total"], want.len(), "{status}");
        seen += want.len();
    }
    assert_eq!(seen, all.len());
    assert!(
        all.iter().any(|n| n["multi_byte_status"] == "confirmed"),
        "the 2-byte advert makes a confirmed node"
    );
    // Several values, paging over the filtered list.
    let (_, two) = get(
        s.addr,
        "/api/nodes?multiByte=confirmed,unknown&limit=1&offset=1",
    )
    .await;
    assert_eq!(two["total"], all.len());
    assert_eq!(two["nodes"][0]["public_key"], all[1]["public_key"]);
    let (_, legacy) = get(s.addr, "/api/nodes?multiByte=legacy").await;
    assert_eq!(legacy["nodes"], serde_json::json!([]));
    let (st, e) = get(s.addr, "/api/nodes?multiByte=upgraded").await;
    assert_eq!(st, 400, "{e}");

    let key = all[0]["public_key"].as_str().unwrap();
    let (st, v) = get(s.addr, &format!("/api/nodes/search?prefix={}", &key[..2])).await;
    assert_eq!(st, 200);
    let found = v["nodes"].as_array().unwrap();
    assert!(found.iter().any(|n| n["public_key"] == key), "{v}");
    assert!(
        found
            .iter()
            .all(|n| n["public_key"].as_str().unwrap().starts_with(&key[..2]))
    );
    let (st, _) = get(s.addr, "/api/nodes/search?prefix=zz").await;
    assert_eq!(st, 400);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_message_totals_follow_new_messages() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed(&db);
    let s = start(&db).await;
    let (st, v) = get(s.addr, "/api/channels/Public/messages").await;
    assert_eq!(st, 200);
    assert_eq!(v["total"], 2, "{v}");
    // Two more Public messages after the first (full) count: counted on top of it.
    let now = server::now_ms();
    for i in 0..2u32 {
        let mut plain = Vec::new();
        meshcore::payload::GroupText {
            timestamp: 1_800_000_000 + i,
            flags: 0,
            text: &format!("Bob: hello {i}"),
        }
        .encode(&mut plain);
        let mut payload = Vec::new();
        meshcore::crypto::Channel::public().encrypt_into(&plain, &mut payload);
        let frame = meshcore::Packet::new(
            meshcore::Route::Flood,
            meshcore::PayloadType::GrpTxt,
            meshcore::PathLen::ZERO,
            &[],
            &payload,
        )
        .unwrap()
        .to_bytes();
        w.write_batch(&[item(&hex::encode(frame), OBS_A, now + 1 + i64::from(i))])
            .unwrap();
    }
    let (_, v) = get(s.addr, "/api/channels/Public/messages").await;
    assert_eq!(v["total"], 4, "{v}");
    assert_eq!(v["messages"].as_array().unwrap().len(), 4);
    s.shutdown().await;
}

/// POSTs `body` to the batch observations endpoint → (status, JSON).
async fn post_observations(addr: SocketAddr, body: String) -> (u16, Value) {
    let (status, text) = tokio::task::spawn_blocking(move || {
        http(addr, "POST", "/api/packets/observations", Some(&body))
    })
    .await
    .unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, v)
}

/// The batch answer lists, for each asked hash, the same observations as the packet detail,
/// with CoreScope's extra fields; unknown hashes map to `[]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_observations_match_the_packet_detail() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start(&db).await;
    let (_, list) = get(s.addr, "/api/packets?limit=100").await;
    let hashes: Vec<String> = list["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["hash"].as_str().unwrap().to_string())
        .collect();
    assert!(hashes.len() >= 8, "{list}");
    let unknown = "0123456789abcdef";
    assert!(!hashes.iter().any(|h| h == unknown));
    let mut asked: Vec<String> = hashes.clone();
    asked.push(unknown.into());
    // Case and repeats do not matter.
    asked.push(hashes[0].to_ascii_uppercase());
    let (st, v) =
        post_observations(s.addr, serde_json::json!({ "hashes": asked }).to_string()).await;
    assert_eq!(st, 200, "{v}");
    let results = v["results"].as_object().unwrap();
    assert_eq!(results.len(), hashes.len() + 1, "{v}");
    assert_eq!(results[unknown], serde_json::json!([]));
    for h in &hashes {
        let (_, d) = get(s.addr, &format!("/api/packets/{h}")).await;
        let want = d["observations"].as_array().unwrap();
        let got = results[h.as_str()].as_array().unwrap();
        // Every seeded frame was heard by both observers.
        assert_eq!(got.len(), 2, "{h}: {v}");
        assert_eq!(got.len(), want.len(), "{h}");
        for (g, w) in got.iter().zip(want) {
            for k in [
                "id",
                "observer_id",
                "observer_name",
                "timestamp",
                "snr",
                "rssi",
                "path",
                "raw_hex",
            ] {
                assert_eq!(g[k], w[k], "{h} {k}");
            }
            assert_eq!(g["hash"], h.as_str());
            assert_eq!(g["transmission_id"], d["packet"]["id"]);
            assert_eq!(g["observer_iata"], "SEA");
            // CoreScope writes hops in uppercase hex.
            let path: Value = serde_json::from_str(g["path_json"].as_str().unwrap()).unwrap();
            let upper: Vec<String> = w["path"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_ascii_uppercase())
                .collect();
            assert_eq!(path, serde_json::json!(upper), "{h}");
        }
    }
    // An empty list is an empty answer.
    let (st, v) = post_observations(s.addr, r#"{"hashes":[]}"#.into()).await;
    assert_eq!(
        (st, v),
        (200, serde_json::json!({"results": {}, "truncated": false}))
    );
    s.shutdown().await;
}

/// However many observers heard it, a packet lists at most MAX_OBSERVATIONS in the batch too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_observations_are_bounded_per_packet() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let hex = vector("ack_flood_4hops");
    let now = server::now_ms();
    let items: Vec<store::Item> = (0..600)
        .map(|i| item(&hex, &format!("{i:064x}"), now))
        .collect();
    w.write_batch(&items).unwrap();
    let s = start(&db).await;
    let (st, v) = post_observations(s.addr, r#"{"hashes":["bbf95563c6eec9fe"]}"#.into()).await;
    assert_eq!(st, 200);
    assert_eq!(
        v["results"]["bbf95563c6eec9fe"].as_array().unwrap().len(),
        server::api::packets::MAX_OBSERVATIONS as usize
    );
    s.shutdown().await;
}

/// The whole batch answer is bounded too: past MAX_BATCH_OBSERVATIONS the lists are cut and
/// `truncated` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_observations_are_bounded_in_all() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let now = server::now_ms();
    let per_packet = server::api::packets::MAX_OBSERVATIONS as usize;
    let packets = server::api::packets::MAX_BATCH_OBSERVATIONS / per_packet + 1;
    let mut hashes = Vec::new();
    for k in 0..packets as u32 {
        let mut payload = Vec::new();
        meshcore::payload::Ack {
            crc: k.to_le_bytes(),
            extension: &[],
        }
        .encode(&mut payload);
        let frame = meshcore::Packet::new(
            meshcore::Route::Flood,
            meshcore::PayloadType::Ack,
            meshcore::PathLen::ZERO,
            &[],
            &payload,
        )
        .unwrap();
        hashes.push(format!("{:016x}", frame.hash().to_u64()));
        let hex = hex::encode(frame.to_bytes());
        let items: Vec<store::Item> = (0..per_packet)
            .map(|i| item(&hex, &format!("{i:064x}"), now))
            .collect();
        w.write_batch(&items).unwrap();
    }
    let s = start(&db).await;
    let body = serde_json::json!({ "hashes": hashes }).to_string();
    let (st, v) = post_observations(s.addr, body).await;
    assert_eq!(st, 200);
    let total: usize = v["results"]
        .as_object()
        .unwrap()
        .values()
        .map(|l| l.as_array().unwrap().len())
        .sum();
    assert_eq!(total, server::api::packets::MAX_BATCH_OBSERVATIONS);
    assert_eq!(v["truncated"], true);
    // A batch under the bound is whole.
    let body = serde_json::json!({ "hashes": &hashes[..2] }).to_string();
    let (_, v) = post_observations(s.addr, body).await;
    assert_eq!(v["truncated"], false);
    assert_eq!(
        v["results"][&hashes[1]].as_array().unwrap().len(),
        per_packet
    );
    s.shutdown().await;
}

/// Malformed, oversized or over-long batch requests are refused with a JSON error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_observations_refuse_hostile_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start(&db).await;
    let too_many: Vec<String> = (0..201).map(|i| format!("{i:016x}")).collect();
    let huge = format!(r#"{{"hashes":[],"pad":"{}"}}"#, "x".repeat(200_000));
    for body in [
        "not json".to_string(),
        "".into(),
        "{}".into(),
        "[]".into(),
        r#"{"hashes":"0123456789abcdef"}"#.into(),
        r#"{"hashes":null}"#.into(),
        r#"{"hashes":[12345]}"#.into(),
        r#"{"hashes":["zz23456789abcdef"]}"#.into(),
        r#"{"hashes":["0123456789abcde"]}"#.into(),
        r#"{"hashes":["0123456789abcdef0"]}"#.into(),
        r#"{"hashes":["' OR 1=1 --"]}"#.into(),
        serde_json::json!({ "hashes": too_many }).to_string(),
        huge,
    ] {
        let (st, v) = post_observations(s.addr, body.clone()).await;
        assert_eq!(st, 400, "{}: {v}", &body[..body.len().min(80)]);
        assert!(v["error"].is_string(), "{v}");
    }
    // Exactly the limit is fine; unknown hashes are empty lists.
    let at_limit: Vec<String> = (0..200).map(|i| format!("{i:016x}")).collect();
    let (st, v) = post_observations(
        s.addr,
        serde_json::json!({ "hashes": at_limit }).to_string(),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["results"].as_object().unwrap().len(), 200);
    assert!(
        v["results"]
            .as_object()
            .unwrap()
            .values()
            .all(|l| l == &serde_json::json!([]))
    );
    s.shutdown().await;
}

/// Like `item`, with the observer in region `iata`.
fn item_in(hex: &str, observer: &str, iata: &str, at: i64) -> store::Item {
    let d = Decoder {
        keyring: Keyring::with_public(),
        ..Decoder::default()
    };
    let msg = PacketMessage {
        observer: TopicObserver {
            id: observer.into(),
            iata: iata.into(),
        },
        origin: None,
        region: None,
        raw: parse_hex(hex).unwrap(),
        snr: Some(5.0),
        rssi: Some(-100.0),
        score: None,
        airtime_ms: None,
    };
    d.item(msg, at).0
}

/// A 1-byte flood advert of a repeater with key `seed`, `name` and an optional position.
fn advert_of(seed: &[u8; 32], name: &[u8], at: Option<(i32, i32)>, timestamp: u32) -> String {
    use meshcore::payload::{Advert, AppData, Location, NodeType};
    let mut appdata = Vec::new();
    let loc = at.map(|(lat_raw, lon_raw)| Location { lat_raw, lon_raw });
    AppData::new(NodeType::REPEATER, loc, Some(name)).encode(&mut appdata);
    let mut payload = Vec::new();
    Advert::encode_signed(seed, timestamp, &appdata, &mut payload);
    let len = meshcore::PathLen::new(meshcore::PathHashSize::One, 0).unwrap();
    meshcore::Packet::new(
        meshcore::Route::Flood,
        meshcore::PayloadType::Advert,
        len,
        &[],
        &payload,
    )
    .map(|p| hex::encode(p.to_bytes()))
    .unwrap()
}

/// Three seeds: the first two keys share 2 bytes, the third shares only the first byte.
fn colliding_seeds() -> [[u8; 32]; 3] {
    use meshcore::payload::public_key_of;
    let seed = |i: u32| {
        let mut s = [0x42u8; 32];
        s[..4].copy_from_slice(&i.to_le_bytes());
        s
    };
    let mut by2: std::collections::HashMap<[u8; 2], u32> = Default::default();
    let mut pair = None;
    for i in 0..100_000u32 {
        let k = public_key_of(&seed(i));
        if let Some(j) = by2.insert([k[0], k[1]], i) {
            pair = Some((j, i, k[0], k[1]));
            break;
        }
    }
    let (a, b, first, second) = pair.expect("no 2-byte collision found");
    let c = (0..1_000_000u32)
        .map(|i| i + 200_000)
        .find(|i| {
            let k = public_key_of(&seed(*i));
            k[0] == first && k[1] != second
        })
        .expect("no 1-byte collision found");
    [seed(a), seed(b), seed(c)]
}

/// Prefix (uppercase, `bytes` bytes) → sorted keys, for prefixes shared by several nodes.
fn expected_collisions(
    nodes: &[Value],
    bytes: usize,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut m: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for n in nodes {
        let k = n["public_key"].as_str().unwrap();
        m.entry(k[..bytes * 2].to_ascii_uppercase())
            .or_default()
            .push(k.to_string());
    }
    m.retain(|_, v| v.len() > 1);
    m.values_mut().for_each(|v| v.sort());
    m
}

/// The collisions an answer lists, in the same form, after checking each entry's shape.
fn listed_collisions(v: &Value, bytes: usize) -> std::collections::BTreeMap<String, Vec<String>> {
    let size = &v["by_size"][bytes.to_string()];
    let list = size["collisions"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(size["stats"]["collision_count"], list.len());
    list.iter()
        .map(|c| {
            assert_eq!(c["byte_size"], bytes);
            let nodes = c["nodes"].as_array().unwrap();
            assert_eq!(c["appearances"], nodes.len());
            let mut keys: Vec<String> = nodes
                .iter()
                .map(|n| n["public_key"].as_str().unwrap().to_string())
                .collect();
            keys.sort();
            (c["prefix"].as_str().unwrap().to_string(), keys)
        })
        .collect()
}

/// Prefix collisions are the shared key prefixes of the known nodes (as `/api/nodes` lists
/// them) at 1, 2 and 3 bytes, restricted by region like `/api/nodes?region=`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_collisions_are_the_shared_prefixes_of_known_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed(&db);
    let now = server::now_ms();
    let ts = (now / 1000) as u32;
    let seeds = colliding_seeds();
    // 23 bytes: with flags and a location it fills the 32 signed appdata bytes exactly, so the
    // whole hostile name is signed (bytes past 32 are never part of a name).
    let evil = r#"<svg onload=alert(1)>'\"#;
    let frames = [
        advert_of(
            &seeds[0],
            evil.as_bytes(),
            Some((47_600_000, -122_300_000)),
            ts - 3,
        ),
        advert_of(&seeds[1], b"Twin", Some((47_700_000, -122_400_000)), ts - 2),
        advert_of(&seeds[2], b"Cousin", None, ts - 1),
    ];
    let items: Vec<store::Item> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            item_in(
                f,
                "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3",
                "PDX",
                now - 3_000 + i as i64,
            )
        })
        .collect();
    w.write_batch(&items).unwrap();
    let ground: Vec<String> = seeds
        .iter()
        .map(|s| hex::encode(meshcore::payload::public_key_of(s)))
        .collect();
    let s = start(&db).await;
    wait_complete(s.addr).await;
    for region in ["", "PDX", "SEA", "sea,pdx", "ZZZ"] {
        let q = if region.is_empty() {
            String::new()
        } else {
            format!("?region={region}")
        };
        let sep = if q.is_empty() { "?" } else { "&" };
        let (_, nv) = get(s.addr, &format!("/api/nodes{q}{sep}limit=2000")).await;
        let nodes = nv["nodes"].as_array().unwrap().clone();
        let (st, v) = get(s.addr, &format!("/api/analytics/hash-collisions{q}")).await;
        assert_eq!(st, 200, "{v}");
        assert!(v["inconsistent_nodes"].is_array(), "{v}");
        for bytes in [1, 2, 3] {
            let size = &v["by_size"][bytes.to_string()];
            assert_eq!(size["stats"]["total_nodes"], nodes.len(), "{region}: {v}");
            assert_eq!(
                listed_collisions(&v, bytes),
                expected_collisions(&nodes, bytes),
                "{region} {bytes}"
            );
        }
        // The matrix cells hold every node exactly once.
        let cells = v["by_size"]["1"]["one_byte_cells"].as_object().unwrap();
        assert_eq!(cells.len(), 256);
        assert_eq!(
            cells
                .values()
                .map(|c| c.as_array().unwrap().len())
                .sum::<usize>(),
            nodes.len()
        );
        let cells2 = v["by_size"]["2"]["two_byte_cells"].as_object().unwrap();
        assert_eq!(cells2.len(), 256);
        assert_eq!(
            cells2
                .values()
                .map(|c| c["group_nodes"].as_array().unwrap().len())
                .sum::<usize>(),
            nodes.len()
        );
        // The ground keys collide wherever they are known.
        let known = nodes.iter().any(|n| n["public_key"] == ground[0].as_str());
        assert_eq!(known, region != "SEA" && region != "ZZZ", "{region}");
        let one = listed_collisions(&v, 1);
        let two = listed_collisions(&v, 2);
        let p1 = ground[0][..2].to_ascii_uppercase();
        let p2 = ground[0][..4].to_ascii_uppercase();
        if known {
            assert!(one[&p1].len() >= 3 && ground.iter().all(|g| one[&p1].contains(g)));
            assert!(two[&p2].contains(&ground[0]) && two[&p2].contains(&ground[1]));
            assert!(!two[&p2].contains(&ground[2]));
            let entry = v["by_size"]["2"]["collisions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["prefix"] == p2.as_str())
                .unwrap();
            // Two positions about 14 km apart: a local collision.
            assert_eq!(entry["with_coords"], 2, "{entry}");
            assert_eq!(entry["classification"], "local", "{entry}");
            let d = entry["max_dist_km"].as_f64().unwrap();
            assert!((5.0..30.0).contains(&d), "{d}");
            // Node names are data, returned verbatim as JSON strings.
            let named = entry["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["public_key"] == ground[0].as_str())
                .unwrap();
            assert_eq!(named["name"], evil);
            assert_eq!(named["role"], "repeater");
            assert_eq!(named["hash_size"], 1);
        } else {
            assert!(!one.contains_key(&p1) || !one[&p1].contains(&ground[0]));
        }
        if region == "ZZZ" {
            assert!(nodes.is_empty());
            for bytes in ["1", "2", "3"] {
                assert_eq!(v["by_size"][bytes]["collisions"], serde_json::json!([]));
            }
        }
    }
    // Hostile region text is data: no match, no error.
    let (st, v) = get(
        s.addr,
        "/api/analytics/hash-collisions?region=%27%3BDROP%20TABLE%20nodes%3B--",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["by_size"]["1"]["stats"]["total_nodes"], 0);
    let (st, v) = get(s.addr, "/api/analytics/hash-collisions?region=%2C%20%2C").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["by_size"]["2"]["collisions"], serde_json::json!([]));
    s.shutdown().await;
}

/// `hex` (a real frame) with its path replaced by `path` of `size`-byte hops.
fn with_path(hex: &str, size: meshcore::PathHashSize, path: &[u8]) -> String {
    let raw = parse_hex(hex).unwrap();
    let p = meshcore::Packet::decode(&raw).unwrap();
    let len = meshcore::PathLen::new(size, (path.len() / size.bytes()) as u8).unwrap();
    let frame = meshcore::Packet::new(p.route(), p.payload_type(), len, path, p.payload_bytes())
        .unwrap()
        .to_bytes();
    hex::encode(frame)
}

/// The public key (hex) a seeded advert vector carries: the 32 bytes after its path.
fn advert_key(hex: &str) -> String {
    let raw = parse_hex(hex).unwrap();
    let p = meshcore::Packet::decode(&raw).unwrap();
    hex::encode(&p.payload_bytes()[..32])
}

const OBS_C: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

/// Node health: per-observer SNR/RSSI of the node's adverts, summary stats and recent
/// packets, over the last week only; a unique prefix works, bad and ambiguous ones are 400s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_health_is_per_observer_reception_of_its_recent_packets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed(&db);
    let now = server::now_ms();
    let ts = (now / 1000) as u32;
    let two_byte = vector("advert_flood_2byte_hash_5hops");
    let seeds = colliding_seeds();
    // A third observer, elsewhere, hears the 2-byte advert worse; the Sizer repeater has one
    // advert 8 days old (outside the window) and one now.
    w.write_batch(&[
        item_in(&two_byte, OBS_C, "PDX", now - 30_000),
        item(
            &signed_advert(
                ts - 8 * 86_400,
                meshcore::PathHashSize::One,
                2,
                meshcore::Route::Flood,
            ),
            OBS_A,
            now - 8 * 86_400_000,
        ),
        item(
            &signed_advert(ts, meshcore::PathHashSize::One, 3, meshcore::Route::Flood),
            OBS_A,
            now,
        ),
        item(
            &advert_of(&seeds[0], b"One", None, ts - 2),
            OBS_A,
            now - 2_000,
        ),
        item(
            &advert_of(&seeds[1], b"Two", None, ts - 1),
            OBS_A,
            now - 1_000,
        ),
    ])
    .unwrap();
    let s = start(&db).await;

    let key = advert_key(&two_byte);
    let (st, v) = get(s.addr, &format!("/api/nodes/{}/health", &key[..6])).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["node"]["public_key"], key.as_str(), "{v}");
    let obs = v["observers"].as_array().unwrap();
    assert_eq!(obs.len(), 3, "{v}");
    for o in obs {
        assert_eq!(o["packetCount"], 1, "{v}");
        let (snr, rssi) = if o["observer_id"] == OBS_C {
            (5.0, -100.0)
        } else {
            (7.25, -95.0)
        };
        assert_eq!(o["avgSnr"], snr, "{v}");
        assert_eq!(o["avgRssi"], rssi, "{v}");
        assert!(o.get("observer_name").is_some(), "{v}");
    }
    let stats = &v["stats"];
    assert_eq!(stats["totalTransmissions"], 1, "{v}");
    assert_eq!(stats["totalPackets"], 1, "{v}");
    assert_eq!(stats["totalObservations"], 3, "{v}");
    assert_eq!(stats["avgSnr"], 6.5, "{v}");
    assert_eq!(stats["avgHops"], 5, "{v}");
    let first_heard = now - 60_000 + 1_000;
    let today = i64::from(first_heard >= now - now.rem_euclid(86_400_000));
    assert_eq!(stats["packetsToday"], today, "{v}");
    assert!(stats["lastHeard"].is_string(), "{v}");
    let recent = v["recentPackets"].as_array().unwrap();
    assert_eq!(recent.len(), 1, "{v}");
    assert_eq!(recent[0]["from_pubkey"], key.as_str(), "{v}");
    assert_eq!(recent[0]["payload_type_name"], "ADVERT", "{v}");

    // Zero-hop adverts: no hops to average.
    let zero = advert_key(&vector("advert_flood_zero_hop_repeater"));
    let (_, v) = get(s.addr, &format!("/api/nodes/{zero}/health")).await;
    assert_eq!(v["stats"]["avgHops"], 0, "{v}");
    assert_eq!(v["observers"].as_array().unwrap().len(), 2, "{v}");

    // The advert 8 days old is outside the window: one transmission, one observer.
    let sizer = hex::encode(meshcore::payload::public_key_of(&[7; 32]));
    let (_, v) = get(s.addr, &format!("/api/nodes/{sizer}/health")).await;
    assert_eq!(v["stats"]["totalTransmissions"], 1, "{v}");
    assert_eq!(v["stats"]["avgHops"], 3, "{v}");
    assert_eq!(v["recentPackets"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["observers"].as_array().unwrap().len(), 1, "{v}");

    // Hostile input: not hex, too short, too long, an ambiguous prefix, an unknown node.
    let shared = hex::encode(&meshcore::payload::public_key_of(&seeds[0])[..2]);
    for what in ["health", "paths"] {
        for bad in ["zz", "a", "%27%3Bdrop", &"a".repeat(65), &shared] {
            let (st, e) = get(s.addr, &format!("/api/nodes/{bad}/{what}")).await;
            assert_eq!(st, 400, "{bad} {e}");
            assert!(e["error"].is_string(), "{e}");
        }
        let known: Vec<String> = [&key, &zero, &sizer]
            .iter()
            .map(|k| k[..4].to_string())
            .collect();
        let unknown = ["0000", "ffff", "1234"]
            .into_iter()
            .find(|u| !known.iter().any(|k| k == u))
            .unwrap();
        let (st, e) = get(s.addr, &format!("/api/nodes/{unknown}0000/{what}")).await;
        assert_eq!(st, 404, "{e}");
        assert!(e["error"].is_string(), "{e}");
    }
    s.shutdown().await;
    drop(w);
}

/// Paths through a node: observed paths with a hop equal to its key prefix at the path's
/// hash size (never TRACE SNR bytes, never a longer hop that merely starts with it), grouped
/// by hop sequence, with hops resolved to nodes and ambiguous 1-byte hops flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_paths_are_the_observed_paths_naming_its_prefix() {
    use meshcore::PathHashSize::{One, Two};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let now = server::now_ms();
    let ts = (now / 1000) as u32;
    let rep = vector("advert_flood_zero_hop_repeater");
    let key = advert_key(&rep);
    let k = parse_hex(&key).unwrap();
    let seeds = colliding_seeds();
    let twin_a = hex::encode(meshcore::payload::public_key_of(&seeds[0]));
    let twin_c = hex::encode(meshcore::payload::public_key_of(&seeds[2]));
    let x = parse_hex(&twin_a[..2]).unwrap()[0];
    assert_ne!(
        x, k[0],
        "the colliding keys must not share the repeater's first byte"
    );
    let frames = [
        // Through the repeater, 1-byte hops, two different packets: one group of 2.
        (
            with_path(&vector("txt_msg_flood_4hops"), One, &[0x6f, k[0], 0x7e]),
            now - 9_000,
        ),
        (
            with_path(
                &vector("grp_txt_public_channel_2hops"),
                One,
                &[0x6f, k[0], 0x7e],
            ),
            now - 8_000,
        ),
        // Through it with 2-byte hops.
        (
            with_path(
                &vector("grp_txt_unknown_channel_no_decrypt"),
                Two,
                &[0x10, 0x00, k[0], k[1], 0x20, 0x6d],
            ),
            now - 7_000,
        ),
        // A 2-byte hop starting with its first byte only: not it.
        (
            with_path(
                &vector("grp_txt_public_channel_decrypt"),
                Two,
                &[k[0], k[1] ^ 0xff],
            ),
            now - 6_000,
        ),
        // TRACE: path bytes are SNRs, not hops.
        (
            with_path(
                &vector("trace_direct_4snr_5hops"),
                One,
                &[k[0], k[0], 0x01, 0x02],
            ),
            now - 5_000,
        ),
        // Through the colliding keys' shared first byte, then the repeater.
        (
            with_path(&vector("advert_flood_2byte_hash_5hops"), One, &[x, k[0]]),
            now - 4_000,
        ),
    ];
    let mut items = vec![
        item(&rep, OBS_A, now - 20_000),
        item(
            &advert_of(&seeds[0], b"One", None, ts - 20),
            OBS_A,
            now - 19_000,
        ),
        item(
            &advert_of(&seeds[2], b"Three", None, ts - 19),
            OBS_A,
            now - 18_000,
        ),
    ];
    for (f, at) in &frames {
        items.push(item(f, OBS_A, *at));
        items.push(item(f, OBS_B, *at + 100));
    }
    w.write_batch(&items).unwrap();
    let s = start(&db).await;

    let (st, v) = get(s.addr, &format!("/api/nodes/{}/paths", &key[..8])).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["node"]["public_key"], key.as_str(), "{v}");
    assert_eq!(v["totalTransmissions"], 4, "{v}");
    assert_eq!(v["totalPaths"], 3, "{v}");
    let paths = v["paths"].as_array().unwrap();
    let prefixes = |p: &Value| -> Vec<String> {
        p["hops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["prefix"].as_str().unwrap().to_string())
            .collect()
    };
    let kh = |n: usize| key[..n].to_string();
    let hex_x = hex::encode([x]);
    // Newest first.
    assert_eq!(prefixes(&paths[0]), vec![hex_x.clone(), kh(2)], "{v}");
    assert_eq!(
        prefixes(&paths[1]),
        vec!["1000".to_string(), kh(4), "206d".into()],
        "{v}"
    );
    assert_eq!(
        prefixes(&paths[2]),
        vec!["6f".to_string(), kh(2), "7e".into()],
        "{v}"
    );
    assert_eq!(paths[2]["count"], 2, "{v}");
    assert_eq!(paths[1]["count"], 1, "{v}");
    for p in paths {
        assert!(
            p["lastSeen"].is_string() && p["sampleHash"].is_string(),
            "{v}"
        );
        for h in p["hops"].as_array().unwrap() {
            if key.starts_with(h["prefix"].as_str().unwrap()) {
                assert_eq!(h["pubkey"], key.as_str(), "{v}");
                assert_eq!(h["ambiguous"], false, "{v}");
            }
        }
    }
    // An unknown hop keeps its prefix as its name; the shared first byte is ambiguous.
    assert_eq!(paths[2]["hops"][0]["pubkey"], Value::Null, "{v}");
    assert_eq!(paths[2]["hops"][0]["name"], "6f", "{v}");
    assert_eq!(paths[0]["hops"][0]["pubkey"], Value::Null, "{v}");
    assert_eq!(paths[0]["hops"][0]["ambiguous"], true, "{v}");

    // Each colliding node sees that path through its 1-byte prefix, its own hop resolved to
    // itself (and flagged ambiguous), the repeater's hop resolved to the repeater.
    for twin in [&twin_a, &twin_c] {
        let (st, v) = get(s.addr, &format!("/api/nodes/{twin}/paths")).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["totalPaths"], 1, "{v}");
        let hops = &v["paths"][0]["hops"];
        assert_eq!(hops[0]["pubkey"], twin.as_str(), "{v}");
        assert_eq!(hops[0]["ambiguous"], true, "{v}");
        assert_eq!(hops[1]["pubkey"], key.as_str(), "{v}");
        assert_eq!(hops[1]["ambiguous"], false, "{v}");
    }

    // A known node no path names: an empty array, not null.
    let other = advert_key(&vector("advert_flood_2byte_hash_5hops"));
    let (st, v) = get(s.addr, &format!("/api/nodes/{other}/paths")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["paths"], serde_json::json!([]), "{v}");
    assert_eq!(v["totalPaths"], 0, "{v}");
    s.shutdown().await;
    drop(w);
}

/// The UI bootstrap config: roles, limits and version; regions are the observers' IATA codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_client_and_regions_describe_this_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed(&db);
    let now = server::now_ms();
    w.write_batch(&[item_in(&vector("txt_msg_flood_4hops"), OBS_C, "PDX", now)])
        .unwrap();
    let s = start(&db).await;
    let (st, v) = get(s.addr, "/api/config/regions").await;
    assert_eq!(st, 200);
    assert_eq!(v, serde_json::json!({"PDX": "PDX", "SEA": "SEA"}));
    let (st, v) = get(s.addr, "/api/config/client").await;
    assert_eq!(st, 200);
    for role in ["repeater", "room", "companion", "sensor"] {
        assert!(v["roles"][role].is_string(), "{v}");
    }
    assert_eq!(v["limits"]["nodesMax"], 2000, "{v}");
    assert_eq!(v["healthThresholds"]["nodeDegradedMs"], 3_600_000, "{v}");
    assert_eq!(
        v["customizer"]["disabledTabs"],
        serde_json::json!([]),
        "{v}"
    );
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    s.shutdown().await;
    drop(w);
}

/// A status as meshcoretomqtt publishes it, through the ingest parser.
fn observer_status(observer: &str, payload: &str, received_at: i64, retained: bool) -> store::Item {
    let topic = format!("meshcore/SEA/{observer}/status");
    match ingest::message::parse(&topic, payload.as_bytes()).unwrap() {
        ingest::message::Message::Status(s) => ingest::status_item(s, received_at, retained),
        m => panic!("{m:?}"),
    }
}

/// The observer output carries the status' queue, error flags and own time; an observer known
/// only from a broker's retained status is not shown as seen; observations carry airtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_show_status_detail_and_retained_history_is_not_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed(&db);
    let now = server::now_ms();
    let sent = now - 120_000;
    let stamp = store::time::iso(sent).replace('Z', "+00:00");
    let live = format!(
        r#"{{"status":"online","timestamp":"{stamp}","model":"unknown",
            "stats":{{"queue_len":3,"debug_flags":5}}}}"#
    );
    // The retained copy replayed on a reconnect is newer by its own clock; it must not count.
    let replayed = format!(
        r#"{{"status":"offline","timestamp":"{}","radio":"910.525,62.5,7,5"}}"#,
        store::time::iso(now - 1_000)
    );
    let mut airtime = item(&vector("txt_msg_flood_4hops"), OBS_C, now - 10_000);
    if let store::Item::Packet(p) = &mut airtime {
        p.airtime_ms = Some(321);
    }
    w.write_batch(&[
        observer_status(OBS_B, &live, now - 119_000, false),
        observer_status(OBS_B, &replayed, now, true),
        observer_status(OBS_D, r#"{"status":"online","model":"T-Beam"}"#, now, true),
        airtime,
    ])
    .unwrap();
    let s = start(&db).await;

    let (st, b) = get(s.addr, &format!("/api/observers/{OBS_B}")).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["queue_len"], 3, "{b}");
    assert_eq!(b["debug_flags"], 5, "{b}");
    assert_eq!(b["status_timestamp"], store::time::iso(sent), "{b}");
    assert_eq!(b["last_status_at"], store::time::iso(sent), "{b}");
    assert_eq!(
        b["status_received_at"],
        store::time::iso(now - 119_000),
        "{b}"
    );
    // Live wins over history; history filled in what was unknown.
    assert_eq!(b["status"], "online", "{b}");
    assert_eq!(b["model"], Value::Null, "{b}");
    assert_eq!(b["radio"], "910.525,62.5,7,5", "{b}");

    let (_, list) = get(s.addr, "/api/observers").await;
    let list = list["observers"].as_array().unwrap();
    let d = list
        .iter()
        .find(|o| o["id"] == OBS_D)
        .unwrap_or_else(|| panic!("{list:?}"));
    assert_eq!(d["model"], "T-Beam", "{d}");
    for key in ["last_seen", "last_status_at", "status_received_at"] {
        assert_eq!(d[key], Value::Null, "{key}: {d}");
    }
    assert_eq!(d["packetsLastHour"], 0, "{d}");
    // Never seen sorts after every observer that was.
    assert_eq!(list.last().unwrap()["id"], OBS_D, "{list:?}");
    // Every observer has the new keys, null when unknown.
    for o in list {
        for key in [
            "queue_len",
            "debug_flags",
            "status_timestamp",
            "status_received_at",
        ] {
            assert!(o.get(key).is_some(), "{key}: {o}");
        }
    }

    let (_, packets) = get(s.addr, &format!("/api/packets?observer={OBS_C}")).await;
    let hash = packets["packets"][0]["hash"].as_str().unwrap().to_string();
    let (_, detail) = get(s.addr, &format!("/api/packets/{hash}")).await;
    let observations = detail["observations"].as_array().unwrap();
    let by_c = observations
        .iter()
        .find(|o| o["observer_id"] == OBS_C)
        .unwrap();
    assert_eq!(by_c["airtime_ms"], 321, "{detail}");
    let others: Vec<&Value> = observations
        .iter()
        .filter(|o| o["observer_id"] != OBS_C)
        .collect();
    assert!(!others.is_empty(), "{detail}");
    for o in others {
        assert_eq!(o["airtime_ms"], Value::Null, "{o}");
    }
    let (st, batch) =
        post_observations(s.addr, serde_json::json!({ "hashes": [hash] }).to_string()).await;
    assert_eq!(st, 200, "{batch}");
    assert!(
        batch["results"][hash.as_str()]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["airtime_ms"] == 321),
        "{batch}"
    );
    s.shutdown().await;
    drop(w);
}

const OBS_D: &str = "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4";

/// The writer's counters as the reader beside it sees them (as `meshlens run` wires it).
struct Counters(std::sync::Arc<ingest::stats::Stats>);

impl server::IngestStatus for Counters {
    fn snapshot(&self) -> Option<Value> {
        let mut v = self.0.to_json();
        v["state"] = "running".into();
        Some(v)
    }
}

/// What the embedded broker sheds (QoS 0 copies to a slow subscriber) is shown per source in
/// `/api/healthz` and `/metrics`, and a source with nothing shed still has its zero series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shed_messages_are_shown_per_source_in_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let stats = std::sync::Arc::new(ingest::stats::Stats::default());
    stats.source("embedded", |s| {
        s.state = "listening";
        s.messages = 10;
        s.shed = 3;
    });
    stats.source("up\"stream", |s| s.messages = 4);
    stats.add("broker.subscriber_shed", 3);
    let s = start_with(ServerConfig {
        ingest: Some(std::sync::Arc::new(Counters(stats))),
        ..config(&db)
    })
    .await
    .unwrap();
    let (_, hz) = get(s.addr, "/api/healthz").await;
    assert_eq!(hz["ingest"]["sources"]["embedded"]["shed"], 3, "{hz}");
    let addr = s.addr;
    let (st, text) = tokio::task::spawn_blocking(move || http(addr, "GET", "/metrics", None))
        .await
        .unwrap();
    assert_eq!(st, 200);
    for line in [
        "meshlens_source_shed_total{source=\"embedded\"} 3",
        "meshlens_source_messages_total{source=\"embedded\"} 10",
        "meshlens_source_shed_total{source=\"up\\\"stream\"} 0",
        "meshlens_ingest_total{counter=\"broker.subscriber_shed\"} 3",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    s.shutdown().await;
}
