//! The capability cycle (`src/capability.rs`) as the reader serves it: `/api/analytics/hash-sizes`
//! and the nodes' `multi_byte` fields, the snapshot published for the writer and persisted by
//! it, persisted values served after a restart whose window has aged out, and forged adverts
//! never counted as evidence.

use std::time::Duration;

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_is_served_and_published_and_the_writer_persists_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed_real_frames(&db);
    let mut cfg = config(&db);
    cfg.capability.publish_to = Some(dir.path().to_path_buf());
    let s = start(cfg).await;
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
    let mut w = seed_real_frames(&db);
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
    let s = start(cfg).await;
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
    w.write_batch(&[
        item_sea(&valid, OBS_A, now),
        item_sea(&forged, OBS_A, now + 1),
    ])
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
    w.write_batch(&[item_sea(&reframed, OBS_B, now + 2)])
        .unwrap();
    let idx = server::capability::compute(reader.conn(), Duration::from_secs(86_400)).unwrap();
    assert_eq!(
        idx.report.nodes[0].status,
        analytics::capability::Status::Confirmed
    );
}
