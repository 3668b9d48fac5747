//! `/api/stats`, `/api/health` and `/api/healthz` in CoreScope's shapes, with meshlens's
//! figures: totals that match what was stored, plural counts, memory, request counts.
//! Also: `/api/stats/traffic` buckets.

use serde_json::json;

mod support;

use support::*;

/// The fleet fixture (8 transmissions, 13 observations, 6 nodes, 2 observers, one forged
/// advert) plus a Public message two hours old.
fn db_with_an_old_packet(db: &std::path::Path) -> store::Writer {
    let mut w = fleet_db(db);
    let at = server::now_ms() - 2 * 3_600_000;
    w.write_batch(&[item_in(
        &vector("grp_txt_public_channel_2hops"),
        OBS_PDX,
        "PDX",
        at,
    )])
    .unwrap();
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_stats_has_corescope_totals_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = db_with_an_old_packet(&db);
    let s = start(config(&db)).await;
    let (st, v) = get(s.addr, "/api/stats").await;
    assert_eq!(st, 200, "{v}");
    for (k, n) in [
        ("totalPackets", 9),
        ("totalTransmissions", 9),
        ("totalObservations", 14),
        ("totalNodes", 6),
        ("totalNodesAllTime", 6),
        ("totalInactiveNodes", 0),
        ("totalObservers", 2),
        ("packetsLastHour", 8),
        ("packetsLast24h", 9),
        ("signatureDrops", 1),
    ] {
        assert_eq!(v[k], n, "{k}: {v}");
    }
    assert_eq!(
        v["counts"],
        json!({"repeater": 3, "room": 1, "companion": 1, "sensor": 1,
               "repeaters": 3, "rooms": 1, "companions": 1, "sensors": 1})
    );
    assert_eq!(v["engine"], "meshlens");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    has(&v, "commit", "string|null");
    has(&v, "buildTime", "string|null");
    assert_eq!(v["hashMigrationComplete"], true);
    for k in ["trackedMB", "storeDataMB"] {
        assert_eq!(v[k], 0.0, "{k}");
    }
    let rss = v["processRSSMB"].as_f64().expect("processRSSMB");
    assert!(rss > 1.0, "{rss}");
    has(&v, "goHeapInuseMB", "number");
    has(&v, "goSysMB", "number");
    has(&v, "neighborGraphCacheRebuildFailures", "integer");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_health_has_corescope_shape_with_real_figures() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = db_with_an_old_packet(&db);
    let s = start(config(&db)).await;
    // Two requests before: the stats (so the stored total is known) and a miss.
    get(s.addr, "/api/stats").await;
    get(s.addr, "/api/nodes/ffffffff").await;
    let (st, v) = get(s.addr, "/api/health").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["engine"], "meshlens");
    has(&v, "version", "string");
    has(&v, "commit", "string|null");
    has(&v, "buildTime", "string|null");
    has(&v, "uptime", "integer");
    let human = v["uptimeHuman"].as_str().unwrap();
    assert!(human.ends_with('m') && human.contains("h "), "{human}");
    for k in ["rss", "heapUsed", "heapTotal", "external"] {
        has(&v["memory"], k, "integer");
    }
    assert!(v["memory"]["rss"].as_i64().unwrap() > 0, "{v}");
    for k in ["currentLagMs", "maxLagMs", "p50Ms", "p95Ms", "p99Ms"] {
        has(&v["eventLoop"], k, "number");
    }
    for (k, t) in [
        ("entries", "integer"),
        ("hits", "integer"),
        ("misses", "integer"),
        ("staleHits", "integer"),
        ("recomputes", "integer"),
        ("hitRate", "number"),
    ] {
        has(&v["cache"], k, t);
    }
    assert_eq!(v["cache"]["misses"], 1, "{v}");
    assert_eq!(v["websocket"], json!({"clients": 0}));
    assert_eq!(v["packetStore"]["packets"], 9, "{v}");
    has(&v["packetStore"], "estimatedMB", "number");
    has(&v["packetStore"], "trackedMB", "number");
    assert_eq!(v["perf"]["totalRequests"], 2, "{v}");
    has(&v["perf"], "avgMs", "number");
    has(&v["perf"], "slowQueries", "integer");
    has(&v["perf"], "recentSlow", "array");
    // meshlens's own keys stay.
    for (k, t) in [
        ("uptime_secs", "integer"),
        ("rss_bytes", "integer"),
        ("ws_clients", "integer"),
        ("live_messages", "integer"),
        ("db", "object"),
    ] {
        has(&v, k, t);
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_healthz_has_corescope_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = db_with_an_old_packet(&db);
    let s = start(config(&db)).await;
    let (st, v) = get(s.addr, "/api/healthz").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["ready"], true);
    assert_eq!(v["loadedTx"], 9, "{v}");
    assert_eq!(v["loadedObs"], 14, "{v}");
    assert_eq!(
        v["from_pubkey_backfill"],
        json!({"total": 0, "processed": 0, "done": true})
    );
    has(&v, "last_observation_id", "integer");
    has(&v, "ingest", "object");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_buckets_count_recent_packets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed_real_frames(&db);
    let s = start(config(&db)).await;
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
