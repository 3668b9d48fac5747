//! CoreScope's observer keys: `lat`, `lon`, `nodeRole` from the observer's own advert (the
//! node whose key is its id), the clock-skew fields (null until computed), and `area=`.

use serde_json::{Value, json};

mod support;

use support::*;

fn observer<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter()
        .find(|o| o["id"] == id)
        .unwrap_or_else(|| panic!("no observer {id} in {list:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_observers_carry_their_own_nodes_position_and_role() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    let s = start(config(&db)).await;
    let sea = fleet_observer_sea();
    let (st, v) = get(s.addr, "/api/observers").await;
    assert_eq!(st, 200, "{v}");
    has(&v, "server_time", "string");
    let list = v["observers"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for o in list {
        for (k, t) in [
            ("id", "string"),
            ("name", "string|null"),
            ("iata", "string|null"),
            ("last_seen", "string|null"),
            ("first_seen", "string|null"),
            ("packet_count", "integer"),
            ("packetsLastHour", "integer"),
            ("battery_mv", "integer|null"),
            ("lat", "number|null"),
            ("lon", "number|null"),
            ("nodeRole", "string|null"),
            // CoreScope's naive-clock fields (clock_skew.rs covers their values): these
            // observers never sent a zone-less time.
            ("clock_naive", "boolean"),
            ("clock_skew_seconds", "null"),
            ("clock_skew_count_24h", "integer"),
            ("clock_last_naive_at", "null"),
        ] {
            has(o, k, t);
        }
    }
    let a = observer(list, &sea);
    assert_eq!(
        (&a["lat"], &a["lon"]),
        (&json!(47.6), &json!(-122.3)),
        "{a}"
    );
    assert_eq!(a["nodeRole"], "repeater");
    let b = observer(list, OBS_PDX);
    assert_eq!(
        (&b["lat"], &b["lon"], &b["nodeRole"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    let (st, d) = get(s.addr, &format!("/api/observers/{sea}")).await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(
        (&d["lat"], &d["nodeRole"]),
        (&json!(47.6), &json!("repeater"))
    );
    has(&d, "clock_skew_seconds", "null");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_observers_area_keeps_observers_whose_node_is_inside() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    let mut areas = fleet_areas();
    areas["SEA"] =
        json!({"label": "Seattle", "latMin": 47, "latMax": 48, "lonMin": -123, "lonMax": -122});
    let s = start(config_with(&db, json!({"areas": areas}))).await;
    let (st, v) = get(s.addr, "/api/observers?area=SEA").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["total"], 1);
    assert_eq!(v["observers"][0]["id"], fleet_observer_sea().as_str());
    // Nodes lie in BAY, but no observer does; the PDX observer has no position at all.
    let (_, v) = get(s.addr, "/api/observers?area=BAY").await;
    assert_eq!(
        (v["total"].as_i64(), v["observers"].clone()),
        (Some(0), json!([]))
    );
    let (st, v) = get(s.addr, "/api/observers?area=bay").await;
    assert_eq!(st, 400, "area keys are exact: {v}");
    s.shutdown().await;
}
