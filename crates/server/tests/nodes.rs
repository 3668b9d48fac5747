//! CoreScope's node routes over a database of signed adverts: `/api/nodes` (plural and
//! singular counts, `last_heard`, `foreign`, `battery_mv`, `temperature_c`, `area=`),
//! `/api/nodes/{pubkey}`, `/api/nodes/bulk-health`, `/api/nodes/network-status`,
//! `/api/nodes/resolve`, and fixed CoreScope path segments routed before the key route.
//! Also: a node's hash size (its latest advert of the last week, mixed sizes flagged, the same
//! from SQL or the capability index) and the `multiByte=` filter and key-prefix search.

use serde_json::{Value, json};

mod support;

use support::*;

fn by_name<'a>(nodes: &'a [Value], name: &str) -> &'a Value {
    nodes
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {nodes:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_nodes_has_corescope_counts_and_node_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    let s = start(config(&db)).await;
    let (st, v) = get(s.addr, "/api/nodes").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["total"], 6, "{v}");
    // Plural (CoreScope) beside singular (meshlens), the same numbers.
    for (one, many, n) in [
        ("repeater", "repeaters", 3),
        ("room", "rooms", 1),
        ("companion", "companions", 1),
        ("sensor", "sensors", 1),
    ] {
        assert_eq!(v["counts"][one], n, "{one}: {}", v["counts"]);
        assert_eq!(v["counts"][many], n, "{many}: {}", v["counts"]);
    }
    let nodes = v["nodes"].as_array().unwrap();
    for n in nodes {
        has(n, "public_key", "string");
        has(n, "last_seen", "string");
        has(n, "last_heard", "string");
        assert_eq!(n["last_heard"], n["last_seen"], "{n}");
        has(n, "foreign", "boolean");
        assert_eq!(n["foreign"], false);
        has(n, "battery_mv", "integer|null");
        has(n, "temperature_c", "null");
        has(n, "advert_count", "integer");
        has(n, "lat", "number|null");
    }
    // The observer's own node carries the battery its observer status reported.
    assert_eq!(by_name(nodes, "Sea-Observer")["battery_mv"], 4012);
    assert_eq!(by_name(nodes, "Bay-Rpt")["battery_mv"], Value::Null);
    // The detail and the search carry the same keys.
    let key = fleet_observer_sea();
    let (st, d) = get(s.addr, &format!("/api/nodes/{key}")).await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["node"]["battery_mv"], 4012);
    has(&d["node"], "last_heard", "string");
    has(&d["node"], "foreign", "boolean");
    let (_, found) = get(s.addr, "/api/nodes/search?q=Sea-Obs").await;
    assert_eq!(found["nodes"][0]["battery_mv"], 4012, "{found}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_nodes_area_keeps_nodes_located_inside() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    let s = start(config_with(&db, json!({"areas": fleet_areas()}))).await;
    let names = |v: &Value| {
        let mut n: Vec<String> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    let (st, v) = get(s.addr, "/api/nodes?area=BAY").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(names(&v), ["Bay-Phone", "Bay-Rpt"], "{v}");
    assert_eq!(v["total"], 2);
    // The counts stay the whole network's, as CoreScope's do.
    assert_eq!(v["counts"]["repeaters"], 3);
    let (_, v) = get(s.addr, "/api/nodes?area=PDX&role=room").await;
    assert_eq!(names(&v), ["Pdx-Room"]);
    let (_, v) = get(s.addr, "/api/nodes?area=PDX&role=repeater").await;
    assert_eq!((v["total"].as_i64(), names(&v).len()), (Some(0), 0));
    // CoreScope's other list parameters.
    let (_, v) = get(s.addr, "/api/nodes?area=BAY&before=2000-01-01").await;
    assert_eq!(v["total"], 0, "{v}");
    let (_, v) = get(
        s.addr,
        "/api/nodes?area=BAY&before=2999-01-01&sortBy=packetCount",
    )
    .await;
    assert_eq!(v["total"], 2, "{v}");
    let (st, _) = get(s.addr, "/api/nodes?before=someday").await;
    assert_eq!(st, 400);
    let (st, v) = get(s.addr, "/api/nodes?area=MARS").await;
    assert_eq!(st, 400, "{v}");
    has(&v, "error", "string");
    s.shutdown().await;

    // Without configured areas an area filter is refused, not ignored.
    let s = start(config(&db)).await;
    let (st, v) = get(s.addr, "/api/nodes?area=BAY").await;
    assert_eq!(st, 400, "{v}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corescope_fixed_paths_are_routed_before_the_key_route() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    let s = start(config(&db)).await;
    for (path, status) in [
        ("/api/nodes/bulk-health", 200),
        ("/api/nodes/network-status", 200),
        ("/api/nodes/resolve?prefix=abcd", 200),
        ("/api/observers/metrics/summary", 200),
        ("/api/observers/clock-skew", 200),
        ("/api/nodes/clock-skew", 200),
        // Not served by meshlens: 404 JSON, not "public key must be hex".
        ("/api/nodes/some-future-route", 404),
        ("/api/nodes/zz", 400),
    ] {
        let (st, v) = get(s.addr, path).await;
        assert_eq!(st, status, "{path}: {v}");
        if status != 200 {
            has(&v, "error", "string");
        }
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_nodes_bulk_health_is_each_nodes_reception() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    let s = start(config_with(&db, json!({"areas": fleet_areas()}))).await;
    let (st, v) = get(s.addr, "/api/nodes/bulk-health").await;
    assert_eq!(st, 200, "{v}");
    let list = v.as_array().expect("an array");
    assert_eq!(list.len(), 6);
    for e in list {
        has(e, "public_key", "string");
        has(e, "name", "string|null");
        has(e, "role", "string|null");
        has(e, "lat", "number|null");
        has(e, "lon", "number|null");
        has(e, "stats", "object");
        has(e, "observers", "array");
        for k in [
            "totalTransmissions",
            "totalObservations",
            "totalPackets",
            "packetsToday",
        ] {
            has(&e["stats"], k, "integer");
        }
        has(&e["stats"], "avgSnr", "number|null");
        has(&e["stats"], "lastHeard", "string|null");
    }
    let rpt = list.iter().find(|e| e["name"] == "Bay-Rpt").unwrap();
    assert_eq!(rpt["stats"]["totalTransmissions"], 1, "{rpt}");
    assert_eq!(rpt["stats"]["totalObservations"], 2, "{rpt}");
    assert_eq!(rpt["stats"]["avgSnr"], 6.5, "{rpt}");
    let obs = rpt["observers"].as_array().unwrap();
    assert_eq!(obs.len(), 2, "{rpt}");
    for o in obs {
        has(o, "observer_id", "string");
        has(o, "observer_name", "string|null");
        assert_eq!(o["packetCount"], 1);
        assert_eq!(o["avgRssi"], -90.0);
    }
    let sea = list.iter().find(|e| e["name"] == "Sea-Observer").unwrap();
    assert_eq!(sea["observers"].as_array().unwrap().len(), 1, "{sea}");
    let (_, v) = get(s.addr, "/api/nodes/bulk-health?limit=2").await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (_, v) = get(s.addr, "/api/nodes/bulk-health?area=BAY").await;
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    // Only SEA heard the observer's own advert.
    let (_, v) = get(s.addr, "/api/nodes/bulk-health?region=PDX").await;
    assert_eq!(v.as_array().unwrap().len(), 5, "{v}");
    let (st, _) = get(s.addr, "/api/nodes/bulk-health?limit=0").await;
    assert_eq!(st, 400);
    let (st, _) = get(s.addr, "/api/nodes/bulk-health?area=NOPE").await;
    assert_eq!(st, 400);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_nodes_network_status_counts_by_advert_age() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = fleet_db(&db);
    // A repeater last heard 30 h ago is degraded (infrastructure: 24-72 h); a companion
    // heard 30 h ago is silent (over 24 h).
    let at = server::now_ms() - 30 * 3_600_000;
    w.write_batch(&[
        item_in(&advert(&[7; 32], 2, "Old-Rpt", None), OBS_PDX, "PDX", at),
        item_in(&advert(&[8; 32], 1, "Old-Phone", None), OBS_PDX, "PDX", at),
    ])
    .unwrap();
    let s = start(config(&db)).await;
    let (st, v) = get(s.addr, "/api/nodes/network-status").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (&v["total"], &v["active"], &v["degraded"], &v["silent"]),
        (&json!(8), &json!(6), &json!(1), &json!(1)),
        "{v}"
    );
    assert_eq!(
        v["roleCounts"],
        json!({"repeater": 4, "companion": 2, "room": 1, "sensor": 1})
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_nodes_resolve_names_the_node_of_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    let s = start(config(&db)).await;
    let key = key_of(&[1; 32]);
    let (st, v) = get(s.addr, &format!("/api/nodes/resolve?prefix={}", &key[..8])).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!({"prefix": &key[..8], "pubkey": key, "name": "Bay-Rpt", "ambiguous": false})
    );
    // Upper case is the same prefix.
    let (_, v) = get(
        s.addr,
        &format!("/api/nodes/resolve?prefix={}", key[..8].to_uppercase()),
    )
    .await;
    assert_eq!(v["name"], "Bay-Rpt");
    // A key nobody has: no name, not ambiguous.
    let other: String = key
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let (st, v) = get(s.addr, &format!("/api/nodes/resolve?prefix={other}")).await;
    assert_eq!((st, v), (200, json!({"prefix": other, "ambiguous": false})));
    for bad in ["", "?prefix=abc", "?prefix=zzzz", "?prefix=12"] {
        let (st, v) = get(s.addr, &format!("/api/nodes/resolve{bad}")).await;
        assert_eq!(st, 400, "{bad}: {v}");
        has(&v, "error", "string");
    }
    s.shutdown().await;
}

/// A node's advertised hash size comes from the last week of its adverts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advert_hash_size_ignores_adverts_older_than_a_week() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let old = server::now_ms() - 8 * 86_400_000;
    w.write_batch(&[item_sea(
        &vector("advert_flood_2byte_hash_5hops"),
        OBS_A,
        old,
    )])
    .unwrap();
    let s = start(config(&db)).await;
    let (_, v) = get(s.addr, "/api/nodes").await;
    assert_eq!(v["total"], 1);
    assert_eq!(v["nodes"][0]["hash_size"], Value::Null, "{v}");
    s.shutdown().await;
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
        item_sea(
            &signed_advert(ts - 5, PathHashSize::One, 2, Route::Flood),
            OBS_A,
            now - 5_000,
        ),
        item_sea(
            &signed_advert(ts - 1, PathHashSize::Three, 1, Route::TransportFlood(codes)),
            OBS_A,
            now - 1_000,
        ),
    ])
    .unwrap();
    let s = start(config(&db)).await;
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
        item_sea(
            &signed_advert(ts - 3, PathHashSize::Two, 3, Route::Flood),
            OBS_B,
            now - 3_000,
        ),
        item_sea(
            &signed_advert(ts, PathHashSize::Two, 1, Route::Flood),
            OBS_B,
            now,
        ),
    ])
    .unwrap();
    let s = start(config(&db2)).await;
    wait_complete(s.addr).await;
    let (_, v) = get(s.addr, "/api/nodes").await;
    assert_eq!(v["nodes"][0]["hash_size"], 2, "{v}");
    assert_eq!(v["nodes"][0]["hash_size_inconsistent"], false, "{v}");
    s.shutdown().await;
    drop((w, w2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_filter_by_capability_and_search_by_key_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed_real_frames(&db);
    let s = start(config(&db)).await;
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

/// The unfiltered total and the role counts are reused for one commit generation: a node
/// committed after the first answer must still show up in the next ones, and a filtered
/// list must not be answered with the unfiltered total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_total_and_counts_follow_new_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = fleet_db(&db);
    let s = start(config(&db)).await;
    let (_, v) = get(s.addr, "/api/nodes?limit=2").await;
    assert_eq!(
        (v["total"].clone(), v["counts"]["repeaters"].clone()),
        (json!(6), json!(3)),
        "{v}"
    );
    let (_, rooms) = get(s.addr, "/api/nodes?role=room").await;
    assert_eq!(rooms["total"], 1, "a filtered total: {rooms}");
    assert_eq!(
        rooms["counts"]["repeaters"], 3,
        "counts are of all nodes: {rooms}"
    );
    let hex = advert(&[7; 32], 2, "Late-Rpt", None);
    w.write_batch(&[item_in(
        &hex,
        &fleet_observer_sea(),
        "SEA",
        server::now_ms(),
    )])
    .unwrap();
    // The reader notices the commit on its own schedule: ask until it has.
    let mut seen = Value::Null;
    for _ in 0..2_000 {
        let (_, v) = get(s.addr, "/api/nodes?limit=2").await;
        if v["total"] == 7 {
            seen = v;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(seen["total"], 7, "the new node never counted");
    assert_eq!(seen["counts"]["repeaters"], 4, "{seen}");
    assert_eq!(seen["counts"]["repeater"], 4, "{seen}");
    let (_, late) = get(s.addr, "/api/nodes?search=Late").await;
    assert_eq!(late["total"], 1, "{late}");
    s.shutdown().await;
}
