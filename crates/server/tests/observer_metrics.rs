//! Observer history over a real database: statuses of known values, published through the
//! writer role's own parsing with chosen receipt times, come back bucketed exactly.

use serde_json::Value;
use server::Server;
use store::{METRICS_BUCKET_MS, metrics_bucket};

mod support;

use support::{get_json, packet_at, status_at, vector};

const OBS: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
const QUIET: &str = "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4";

fn status(nf: &str, tx: i64, extra: &str) -> String {
    format!(
        r#"{{"status":"online","origin":"Obs C","radio":"910.525,62.5,7,5",
            "stats":{{"noise_floor":{nf},"tx_air_secs":{tx},"rx_air_secs":{},
            "battery_mv":4100,"queue_len":2{extra}}}}}"#,
        tx * 2
    )
}

async fn start(db: &std::path::Path) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Server::start(support::config(db), listener).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_series_comes_back_bucketed_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    // Two hours ago, at the start of an hour, so that both buckets fall in one hour.
    let hour = 3_600_000;
    let b0 = (server::now_ms() - 2 * hour).div_euclid(hour) * hour;
    let s = 1000;
    let retained = match ingest::message::parse(
        &format!("meshcore/SEA/{OBS}/status"),
        status("-20", 1, "").as_bytes(),
    )
    .unwrap()
    {
        ingest::message::Message::Status(m) => ingest::status_item(m, b0 + 20 * s, true),
        _ => unreachable!(),
    };
    w.write_batch(&[
        status_at(OBS, &status("-110", 100, ""), b0 + 10 * s),
        status_at(
            OBS,
            &status(r#""-100dBm""#, 110, r#","queue_len":7"#),
            b0 + 70 * s,
        ),
        // History from the broker's store: never part of the series.
        retained,
        status_at(OBS, &status("-105", 130, ""), b0 + 130 * s),
        // Next bucket: a plausible reading, then one that is not (kept out of the noise
        // floor, counted, the rest of the status still used).
        status_at(OBS, &status("-90", 160, ""), b0 + 310 * s),
        // Missing and wrong-typed fields: no metric at all, so not a sample.
        status_at(
            OBS,
            r#"{"stats":{"noise_floor":null,"tx_air_secs":"x"}}"#,
            b0 + 320 * s,
        ),
        status_at(OBS, &status("999", 170, ""), b0 + 330 * s),
    ])
    .unwrap();
    let srv = start(&db).await;
    let a = srv.addr;
    let q = |p: &str| {
        format!(
            "/api/observers/{OBS}/metrics?since={}&until={}{p}",
            b0 - 1,
            b0 + hour
        )
    };
    let (st, v) = get_json(a, &q("")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["observer_name"], "Obs C");
    let m = v["metrics"].as_array().unwrap();
    assert_eq!(m.len(), 2, "{v}");
    let (first, second) = (&m[0], &m[1]);
    assert_eq!(first["timestamp"], store::time::iso(b0));
    assert_eq!(first["samples"], 3);
    assert_eq!(first["noise_floor"], -105.0); // (-110 - 100 - 105) / 3
    assert_eq!(first["noise_floor_min"], -110.0);
    assert_eq!(first["noise_floor_max"], -100.0);
    assert_eq!(first["noise_floor_last"], -105.0);
    assert_eq!(first["tx_air_secs"], 130);
    assert_eq!(first["queue_len_max"], 7);
    assert_eq!(first["queue_len"], 2);
    assert_eq!(first["battery_mv"], 4100);
    assert_eq!(first["tx_airtime_pct"], Value::Null);
    assert_eq!(
        second["timestamp"],
        store::time::iso(b0 + METRICS_BUCKET_MS)
    );
    assert_eq!(second["samples"], 2);
    assert_eq!(second["noise_floor"], -90.0);
    assert_eq!(second["noise_floor_max"], -90.0);
    assert_eq!(second["tx_air_secs"], 170);
    // 170 - 130 s of transmit over the 200 s between the last statuses (b0+130 s, b0+330 s),
    // and twice that receiving.
    assert_eq!(second["tx_airtime_pct"], 20.0);
    assert_eq!(second["rx_airtime_pct"], 40.0);
    assert_eq!(v["reboots"], serde_json::json!([]));

    // By the hour: one bucket of the five samples, four with a noise floor.
    let (_, v) = get_json(a, &q("&resolution=1h")).await;
    let m = v["metrics"].as_array().unwrap();
    assert_eq!(m.len(), 1, "{v}");
    assert_eq!(m[0]["timestamp"], store::time::iso(b0));
    assert_eq!(m[0]["samples"], 5);
    assert_eq!(m[0]["noise_floor"], -101.25); // (-315 - 90) / 4
    assert_eq!(
        (
            m[0]["noise_floor_min"].clone(),
            m[0]["noise_floor_max"].clone()
        ),
        (Value::from(-110.0), Value::from(-90.0))
    );

    // Summary: the same aggregates over the window, a sparkline, region filter.
    let (st, v) = get_json(a, "/api/observers/metrics/summary?window=24h").await;
    assert_eq!(st, 200, "{v}");
    let o = &v["observers"][0];
    assert_eq!(o["observer_id"], OBS);
    assert_eq!(o["iata"], "SEA");
    assert_eq!(o["avg_noise_floor_24h"], -101.25);
    assert_eq!(o["max_noise_floor_24h"], -90.0);
    assert_eq!(o["current_noise_floor"], -90.0);
    assert_eq!(o["sample_count"], 5);
    assert_eq!(o["sparkline"], serde_json::json!([-105.0, -90.0]));
    let (_, v) = get_json(a, "/api/observers/metrics/summary?region=xyz").await;
    assert_eq!(v["observers"], serde_json::json!([]));

    // Hostile parameters.
    for bad in [
        format!("/api/observers/{OBS}/metrics?resolution=2m"),
        format!("/api/observers/{OBS}/metrics?since=soon"),
        format!("/api/observers/{OBS}/metrics?since=2000&until=1000"),
        format!("/api/observers/{OBS}/metrics?since=0&until=99999999999999"),
        "/api/observers/metrics/summary?window=-1h".into(),
        "/api/observers/metrics/summary?window=0".into(),
        "/api/observers/metrics/summary?window=9999d".into(),
        format!("/api/observers/{OBS}/analytics?days=many"),
        format!("/api/observers/{}/metrics", "x".repeat(65)),
    ] {
        let (st, v) = get_json(a, &bad).await;
        assert_eq!(st, 400, "{bad}: {v}");
        assert!(v["error"].is_string(), "{bad}: {v}");
    }
    // Unknown observer: empty, not an error (as CoreScope).
    let (st, v) = get_json(a, &format!("/api/observers/{QUIET}/metrics")).await;
    assert_eq!(st, 200);
    assert_eq!(v["metrics"], serde_json::json!([]));
    assert_eq!(v["reboots"], serde_json::json!([]));
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboots_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let b0 = metrics_bucket(server::now_ms() - 3_600_000);
    let up =
        |secs: i64, tx: i64| format!(r#"{{"stats":{{"uptime_secs":{secs},"tx_air_secs":{tx}}}}}"#);
    w.write_batch(&[
        status_at(OBS, &up(5000, 500), b0),
        status_at(OBS, &up(5300, 530), b0 + METRICS_BUCKET_MS),
        status_at(OBS, &up(20, 1), b0 + 2 * METRICS_BUCKET_MS),
    ])
    .unwrap();
    let srv = start(&db).await;
    let (_, v) = get_json(srv.addr, &format!("/api/observers/{OBS}/metrics")).await;
    let m = v["metrics"].as_array().unwrap();
    assert_eq!(m.len(), 3, "{v}");
    assert_eq!(m[1]["tx_airtime_pct"], 10.0);
    assert_eq!(m[2]["is_reboot_sample"], true);
    assert_eq!(m[2]["tx_airtime_pct"], Value::Null);
    assert_eq!(
        v["reboots"],
        serde_json::json!([store::time::iso(b0 + 2 * METRICS_BUCKET_MS)])
    );
    srv.shutdown().await;
    // The writer's retention removes buckets before the cutoff, a chunk at a time.
    assert_eq!(
        w.expire_observer_metrics(b0 + METRICS_BUCKET_MS, 1)
            .unwrap(),
        1
    );
    assert_eq!(
        w.expire_observer_metrics(b0 + METRICS_BUCKET_MS, 10)
            .unwrap(),
        0
    );
    let left: i64 = w
        .conn()
        .query_row("SELECT count(*) FROM observer_metrics", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_observer_hears_with_its_airtime() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let now = server::now_ms();
    let pkt = |name: &str, extra: &str| {
        format!(
            r#"{{"raw":"{}","SNR":"-7.5","RSSI":"-100"{extra}}}"#,
            vector(name)
        )
    };
    let ack = vector("ack_flood_4hops");
    let ack_len = ack.len() / 2;
    w.write_batch(&[
        status_at(OBS, &status("-110", 1, ""), now - 60_000),
        packet_at(OBS, &pkt("ack_flood_4hops", ""), now - 50_000),
        packet_at(
            OBS,
            &pkt("advert_flood_2byte_hash_5hops", r#","duration":"400""#),
            now - 40_000,
        ),
        packet_at(
            OBS,
            &pkt("grp_txt_public_channel_decrypt", r#","SNR":"3""#),
            now - 30_000,
        ),
    ])
    .unwrap();
    let srv = start(&db).await;
    let (st, v) = get_json(srv.addr, &format!("/api/observers/{OBS}/analytics?days=1")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["packetTypes"]["3"], 1, "{v}"); // ACK
    assert_eq!(v["packetTypes"]["4"], 1); // ADVERT
    assert_eq!(v["packetTypes"]["5"], 1); // GRP_TXT
    assert_eq!(v["hashSizes"]["2"], 1);
    assert_eq!(v["hashSizes"]["1"], 2);
    let total: i64 = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 3);
    assert_eq!(
        v["snrDistribution"][0],
        serde_json::json!({"range": "-8 to -6", "count": 2})
    );
    assert_eq!(v["recentPackets"].as_array().unwrap().len(), 3);
    // The advert's airtime is the uploader's 400 ms; the others come from the formula for the
    // observer's radio (SF7 / 62.5 kHz / 4/5, preamble 32).
    let air = &v["airtime"];
    assert_eq!(air["uploader_ms"], 400.0);
    assert_eq!(air["unknown_packets"], 0);
    let ack_ms = meshcore::airtime::RadioConfig::parse("910.525,62.5,7,5")
        .unwrap()
        .params
        .time_on_air_ms(ack_len);
    let recent = v["recentPackets"].as_array().unwrap();
    let ack_row = recent.iter().find(|p| p["payload_type"] == 3).unwrap();
    assert_eq!(ack_row["airtime_source"], "formula");
    assert!((ack_row["airtime_ms"].as_f64().unwrap() - ack_ms).abs() < 1e-9);
    // Unknown observers hear nothing.
    let (st, v) = get_json(srv.addr, &format!("/api/observers/{QUIET}/analytics")).await;
    assert_eq!(st, 200);
    assert_eq!(v["timeline"], serde_json::json!([]));
    srv.shutdown().await;
}

/// Alerting reads the same history: an observer whose noise floor was −115 dBm all day and
/// is −90 dBm in the last minutes is an active `noise_floor_spike`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noise_floor_25_db_above_the_day_is_an_active_spike_alert() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let now = server::now_ms();
    let mut items = Vec::new();
    for i in 1..=24 {
        let at = now - i * 3_600_000;
        items.push(status_at(OBS, r#"{"stats":{"noise_floor":-115}}"#, at));
    }
    items.push(status_at(
        OBS,
        r#"{"stats":{"noise_floor":-90}}"#,
        now - 60_000,
    ));
    w.write_batch(&items).unwrap();
    drop(w);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let srv = Server::start(support::config_with_alerts(&db, dir.path()), listener).unwrap();
    let a: Value = support::active_alert(srv.addr, "noise_floor_spike").await;
    assert_eq!(a["subject"]["id"], OBS, "{a}");
    assert!(
        a["message"].as_str().unwrap().contains("25 dB above"),
        "{a}"
    );
    srv.shutdown().await;
}

/// `/api/nodes/{pubkey}/battery`: a repeater that is also an observer reports its battery in
/// its status; the node's samples are that history, with CoreScope's status and thresholds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_nodes_battery_is_the_nodes_own_status_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let seed = [21u8; 32];
    let key = support::key_of(&seed);
    let now = server::now_ms();
    let advert = support::advert(&seed, 2, "Hilltop", None);
    let mut items = vec![packet_at(
        &key,
        &format!(r#"{{"raw":"{advert}"}}"#),
        now - 7_200_000,
    )];
    for (i, mv) in [(3, 3900), (2, 3500), (1, 3250)] {
        items.push(status_at(
            &key,
            &format!(r#"{{"stats":{{"battery_mv":{mv}}}}}"#),
            now - i * 1_800_000,
        ));
    }
    w.write_batch(&items).unwrap();
    let s = start(&db).await;
    let (st, v) = get_json(s.addr, &format!("/api/nodes/{key}/battery")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["days"], 7);
    let mv: Vec<i64> = v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["battery_mv"].as_i64().unwrap())
        .collect();
    assert_eq!(mv, [3900, 3500, 3250], "{v}");
    assert_eq!(v["latest_mv"], 3250);
    assert_eq!(v["status"], "low");
    assert_eq!(v["thresholds"]["critical_mv"], 3000);
    let (st, _) = get_json(s.addr, &format!("/api/nodes/{}/battery", "ee".repeat(32))).await;
    assert_eq!(st, 404);
    for bad in ["?days=0", "?days=x", "?days=400"] {
        let (st, _) = get_json(s.addr, &format!("/api/nodes/{key}/battery{bad}")).await;
        assert_eq!(st, 400, "{bad}");
    }
    s.shutdown().await;
}
