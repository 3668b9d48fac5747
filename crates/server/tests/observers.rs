//! CoreScope's observer keys: `lat`, `lon`, `nodeRole` from the observer's own advert (the
//! node whose key is its id), the clock-skew fields (null until computed), and `area=`.
//! Also: status detail (queue, flags, own time), retained history not shown as fresh, and
//! airtime on observations.

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

/// A status as meshcoretomqtt publishes it, through the ingest parser.
fn observer_status(observer: &str, payload: &str, received_at: i64, retained: bool) -> store::Item {
    let topic = format!("meshcore/SEA/{observer}/status");
    match ingest::message::parse(&topic, payload.as_bytes()).unwrap() {
        ingest::message::Message::Status(s) => ingest::status_item(s, received_at, retained),
        m => panic!("{m:?}"),
    }
}

const OBS_D: &str = "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4";

/// The observer output carries the status' queue, error flags and own time; an observer known
/// only from a broker's retained status is not shown as seen; observations carry airtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_show_status_detail_and_retained_history_is_not_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed_real_frames(&db);
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
    let mut airtime = item_sea(&vector("txt_msg_flood_4hops"), OBS_C, now - 10_000);
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
    let s = start(config(&db)).await;

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
