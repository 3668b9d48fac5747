//! Operations routes in CoreScope's shapes: `/api/perf` (per-route latency from the bounded
//! recorder), `/api/perf/reset`, `/api/perf/io`, `/api/perf/sqlite`,
//! `/api/perf/write-sources` and `/api/mqtt/status` (the writer's counters through
//! `IngestStatus`), `/api/dropped-packets` (the rejected-packets table).

use std::sync::Arc;

use serde_json::{Value, json};

mod support;

use support::*;

const KEY: &str = "perf-tests-admin-key-0123";

fn keyed_config(db: &std::path::Path) -> server::ServerConfig {
    server::ServerConfig {
        admin_key: Some(KEY.into()),
        ..config(db)
    }
}

/// `method path` with the admin key → (status, JSON body).
async fn keyed(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, Value) {
    let (method, path) = (method.to_string(), path.to_string());
    let (status, _, body) = tokio::task::spawn_blocking(move || {
        http_raw(addr, &method, &path, None, &format!("X-API-Key: {KEY}\r\n"))
    })
    .await
    .unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_perf_counts_requests_per_route_and_resets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    let s = start(keyed_config(&db)).await;
    for _ in 0..3 {
        assert_eq!(get(s.addr, "/api/nodes").await.0, 200);
    }
    let key = key_of(&[1; 32]);
    get(s.addr, &format!("/api/nodes/{key}")).await;
    get(s.addr, "/api/nodes/ffffffffff").await;
    // Unknown paths are not routes: not recorded, so clients cannot grow the table.
    get(s.addr, "/api/no/such/thing").await;
    let (st, v) = get(s.addr, "/api/perf").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["totalRequests"], 5, "{v}");
    has(&v, "uptime", "integer");
    has(&v, "avgMs", "number");
    has(&v, "slowQueries", "array");
    let ep = v["endpoints"].as_object().unwrap();
    assert_eq!(ep.len(), 2, "{v}");
    assert_eq!(ep["/api/nodes"]["count"], 3);
    assert_eq!(ep["/api/nodes/{pubkey}"]["count"], 2);
    for k in ["avgMs", "p50Ms", "p95Ms", "maxMs"] {
        has(&ep["/api/nodes"], k, "number");
    }
    let e = &ep["/api/nodes"];
    assert!(e["p50Ms"].as_f64() <= e["maxMs"].as_f64(), "{e}");
    for k in [
        "size",
        "hits",
        "misses",
        "staleHits",
        "recomputes",
        "hitRate",
    ] {
        has(&v["cache"], k, "number");
    }
    assert_eq!(v["packetStore"], Value::Null);
    assert_eq!(v["sqlite"]["rows"]["transmissions"], 8, "{v}");
    assert_eq!(v["sqlite"]["rows"]["nodes"], 6);
    for k in ["dbSizeMB", "walSizeMB", "freelistMB"] {
        has(&v["sqlite"], k, "number");
    }
    // Wiping the figures needs the admin key, as in CoreScope.
    let (st, _) = call(s.addr, "POST", "/api/perf/reset").await;
    assert_eq!(st, 401);
    let (st, r) = keyed(s.addr, "POST", "/api/perf/reset").await;
    assert_eq!((st, r), (200, json!({"ok": true})));
    let (_, v) = get(s.addr, "/api/perf").await;
    // Only the reset itself since.
    assert_eq!(v["totalRequests"], 1, "{v}");
    assert_eq!(v["endpoints"].as_object().unwrap().len(), 1, "{v}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_perf_io_and_sqlite_have_corescope_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    let s = start(config(&db)).await;
    for _ in 0..2 {
        let (st, v) = get(s.addr, "/api/perf/io").await;
        assert_eq!(st, 200);
        for k in [
            "readBytesPerSec",
            "writeBytesPerSec",
            "cancelledWriteBytesPerSec",
            "syscallsRead",
            "syscallsWrite",
        ] {
            has(&v, k, "number");
        }
    }
    let (st, v) = get(s.addr, "/api/perf/sqlite").await;
    assert_eq!(st, 200);
    for k in [
        "walSizeMB",
        "walSize",
        "pageCount",
        "pageSize",
        "cacheSize",
        "cacheHitRate",
    ] {
        has(&v, k, "number");
    }
    assert!(v["pageCount"].as_i64().unwrap() > 1, "{v}");
    assert_eq!(v["pageSize"], 4096, "{v}");
    s.shutdown().await;
}

/// The writer's real counters, as `meshlens run` hands them to the reader.
struct Shared(Arc<ingest::stats::Stats>);

impl server::IngestStatus for Shared {
    fn snapshot(&self) -> Option<Value> {
        let mut v = self.0.to_json();
        v["state"] = "running".into();
        Some(v)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_perf_write_sources_and_mqtt_status_are_the_writers_figures() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    // Without a writer: CoreScope's empty shapes.
    let s = start(config(&db)).await;
    let (_, v) = get(s.addr, "/api/perf/write-sources").await;
    assert_eq!(v, json!({"sources": {}, "sampleAt": "", "writer_perf": {}}));
    let (_, v) = get(s.addr, "/api/mqtt/status").await;
    assert_eq!(v, json!({"sources": [], "sampleAt": ""}));
    s.shutdown().await;

    let stats = Arc::new(ingest::stats::Stats::default());
    stats.add("stored.new_transmissions", 8);
    stats.add("stored.known_transmissions", 5);
    stats.add("stored.new_observations", 13);
    stats.add("writer.batches", 3);
    stats.add("refused_advert.invalid_signature", 1);
    stats.source("letsmesh", |s| {
        s.state = "connected";
        s.broker = "mqtts://mqtt.example.org:8883".into();
        s.connects = 2;
        s.disconnects = 1;
        s.messages = 21;
        s.connected_at = Some(1_700_000_000_000);
        s.last_message_at = Some(1_700_000_123_456);
        s.last_error = Some("connection reset".into());
    });
    stats.writer(|w| w.last_commit_at = Some(1_700_000_100_000));
    let mut cfg = config(&db);
    cfg.ingest = Some(Arc::new(Shared(stats)));
    let s = start(cfg).await;
    let (st, v) = get(s.addr, "/api/perf/write-sources").await;
    assert_eq!(st, 200);
    let src = &v["sources"];
    for (k, n) in [
        ("tx_inserted", 8),
        ("tx_dupes", 5),
        ("obs_inserted", 13),
        ("node_upserts", 0),
        ("observer_upserts", 0),
        ("write_errors", 0),
        ("sig_drops", 1),
        ("walCommits", 3),
        ("groupCommitFlushes", 3),
    ] {
        assert_eq!(src[k], n, "{k}: {v}");
    }
    has(&v, "sampleAt", "string");
    has(&v, "writer_perf", "object");
    let (st, v) = get(s.addr, "/api/mqtt/status").await;
    assert_eq!(st, 200);
    has(&v, "sampleAt", "string");
    let m = &v["sources"][0];
    assert_eq!(m["name"], "letsmesh");
    assert_eq!(m["broker"], "mqtts://mqtt.example.org:8883");
    assert_eq!(m["connected"], true);
    assert_eq!(m["lastConnectUnix"], 1_700_000_000);
    assert_eq!(m["lastPacketUnix"], 1_700_000_123);
    assert_eq!(
        (&m["connectCount"], &m["disconnectCount"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(m["packetsTotal"], 21);
    has(m, "lastDisconnectUnix", "integer");
    has(m, "packetsLast5m", "integer");
    assert_eq!(m["lastError"], "connection reset");
    // The same sources in CoreScope's liveness block of /api/healthz.
    let (_, h) = get(s.addr, "/api/healthz").await;
    assert_eq!(
        h["ingest_liveness"]["letsmesh"],
        json!({"lastReceiptUnix": 1_700_000_123, "lastMessageUnix": 1_700_000_100}),
        "{h}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_dropped_packets_are_the_rejected_input() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    let s = start(keyed_config(&db)).await;
    // Raw refused frames are for the operator: behind the admin key.
    assert_eq!(get(s.addr, "/api/dropped-packets").await.0, 401);
    let (st, v) = keyed(s.addr, "GET", "/api/dropped-packets").await;
    assert_eq!(st, 200, "{v}");
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    for d in list {
        for (k, t) in [
            ("id", "integer"),
            ("hash", "string|null"),
            ("reason", "string"),
            ("observer_id", "string|null"),
            ("observer_name", "string|null"),
            ("node_pubkey", "string|null"),
            ("node_name", "string|null"),
            ("dropped_at", "string"),
            ("raw_hex", "string|null"),
        ] {
            has(d, k, t);
        }
        assert_eq!(d["observer_id"], OBS_PDX);
    }
    // Newest first: the one-byte frame, then the forged advert.
    assert_eq!(list[0]["raw_hex"], "11");
    assert_eq!(list[0]["node_pubkey"], Value::Null);
    let forged = &list[1];
    assert_eq!(forged["reason"], "invalid_signature");
    let claimed = forged["node_pubkey"].as_str().unwrap().to_owned();
    assert_eq!(claimed.len(), 64);
    assert_eq!(forged["observer_name"], format!("obs {}", &OBS_PDX[..4]));
    let (_, v) = keyed(
        s.addr,
        "GET",
        &format!("/api/dropped-packets?pubkey={}", &claimed[..6]),
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let (_, v) = keyed(s.addr, "GET", "/api/dropped-packets?limit=1").await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let sea = fleet_observer_sea();
    let (_, v) = keyed(
        s.addr,
        "GET",
        &format!("/api/dropped-packets?observer={sea}"),
    )
    .await;
    assert_eq!(v, json!([]));
    for bad in ["?limit=abc", "?pubkey=xyz"] {
        let (st, _) = keyed(s.addr, "GET", &format!("/api/dropped-packets{bad}")).await;
        assert_eq!(st, 400, "{bad}");
    }
    s.shutdown().await;
}
