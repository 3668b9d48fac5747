//! Clock skew with known answers: an observer whose envelope timestamps run 90 s fast reports
//! +90 s; one that writes local time without a zone is flagged naive, not skewed; a node
//! advertising a timestamp an hour behind reports −3600 s, whatever a replay or a forgery says.

use serde_json::{Value, json};
use server::Server;
use store::METRICS_BUCKET_MS;
use store::time::iso;

mod support;

use support::{get_json, packet_at, status_at, vector};

const FAST: &str = "e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5";
const LOCAL: &str = "f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6";

async fn start(db: &std::path::Path) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Server::start(support::config(db), listener).unwrap()
}

/// `iso` without its zone, as an uploader writing naive local time would.
fn naive(ms: i64) -> String {
    iso(ms).trim_end_matches('Z').to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_clocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let now = server::now_ms();
    let t0 = store::metrics_bucket(now - 3 * 3_600_000);
    let hex = vector("ack_flood_4hops");
    let pkt = |ts: String| format!(r#"{{"raw":"{hex}","timestamp":"{ts}"}}"#);
    let mut items = Vec::new();
    // Three hours of packets, one a minute, stamped 90 s ahead of their receipt (zoned, and
    // naive within the tolerance), and statuses the same; plus buffered uploads that arrived
    // ten minutes late, and a burst of garbage.
    for i in 0..180 {
        let at = t0 + i * 60_000 + 17;
        let ts = if i % 2 == 0 {
            iso(at + 90_000)
        } else {
            naive(at + 90_000)
        };
        items.push(packet_at(FAST, &pkt(ts), at));
        if i % 5 == 0 {
            items.push(status_at(
                FAST,
                &format!(
                    r#"{{"timestamp":"{}","stats":{{"noise_floor":-110}}}}"#,
                    iso(at + 90_000)
                ),
                at,
            ));
        }
        if i % 7 == 0 {
            items.push(packet_at(FAST, &pkt(iso(at - 600_000)), at));
        }
    }
    for i in 0..3 {
        let at = t0 + 5 * METRICS_BUCKET_MS + i;
        items.push(packet_at(FAST, &pkt(iso(at + 86_400_000)), at));
    }
    // Local time two hours ahead of UTC, without a zone: naive, not a skew.
    let local_at = now - 60_000;
    for i in 0..4 {
        items.push(packet_at(
            LOCAL,
            &pkt(naive(local_at + i + 7_200_000)),
            local_at + i,
        ));
    }
    // Hostile timestamps are ignored, never an error.
    for ts in [
        r#""soon""#,
        "1e300",
        r#""-9999-01-01""#,
        "null",
        r#"{"a":1}"#,
    ] {
        let raw = format!(r#"{{"raw":"{hex}","timestamp":{ts}}}"#);
        items.push(packet_at(LOCAL, &raw, now - 30_000));
    }
    // A last will, published by the broker now with the time it was written hours ago: not
    // a reading of the clock.
    items.push(status_at(
        LOCAL,
        &format!(
            r#"{{"status":"offline","timestamp":"{}"}}"#,
            iso(now - 5 * 3_600_000)
        ),
        now - 20_000,
    ));
    // A naive time too far off to be any zone: garbage, not counted as naive.
    items.push(packet_at(
        LOCAL,
        &pkt(naive(local_at + 20 * 3_600_000)),
        local_at + 10,
    ));
    w.write_batch(&items).unwrap();

    let srv = start(&db).await;
    let (st, v) = get_json(srv.addr, "/api/observers/clock-skew").await;
    assert_eq!(st, 200, "{v}");
    let list = v.as_array().unwrap();
    assert_eq!(
        list.len(),
        1,
        "only the fast observer has clock readings: {v}"
    );
    assert_eq!(list[0]["observerID"], FAST);
    let offset = list[0]["offsetSec"].as_f64().unwrap();
    assert!((offset - 90.0).abs() <= 1.0, "{v}");
    assert_eq!(offset, 90.0, "every bucket's median is exactly 90 s: {v}");

    let (_, v) = get_json(srv.addr, "/api/observers").await;
    let find = |id: &str| -> Value {
        v["observers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["id"] == id)
            .unwrap()
            .clone()
    };
    let local = find(LOCAL);
    assert_eq!(local["clock_naive"], true, "{local}");
    assert_eq!(local["clock_skew_seconds"], 7200);
    assert_eq!(local["clock_skew_count_24h"], 4);
    assert_eq!(local["clock_last_naive_at"], iso(local_at + 3));
    let fast = find(FAST);
    assert_eq!(
        (
            fast["clock_naive"].clone(),
            fast["clock_skew_seconds"].clone(),
            fast["clock_skew_count_24h"].clone(),
            fast["clock_last_naive_at"].clone()
        ),
        (json!(false), Value::Null, json!(0), Value::Null)
    );
    // The per-bucket skew is in the history as well.
    let (_, v) = get_json(
        srv.addr,
        &format!(
            "/api/observers/{FAST}/metrics?since={t0}&until={}",
            t0 + METRICS_BUCKET_MS - 1
        ),
    )
    .await;
    assert_eq!(v["metrics"][0]["clock_skew_seconds"], 90.0, "{v}");
    srv.shutdown().await;

    // A naive event decays after a day: the same fields, a day and a minute later.
    let later = local_at + 3 + 86_400_000 + 60_000;
    let f = server::api::clock_skew::naive_clock(later, Some(7200), Some(4), Some(local_at + 3));
    assert!(!f.clock_naive, "{f:?}");
    assert_eq!(
        (
            f.clock_skew_seconds,
            f.clock_skew_count_24h,
            f.clock_last_naive_at
        ),
        (None, 0, None)
    );
    // And a minute before the day is over it still flags the observer.
    let f = server::api::clock_skew::naive_clock(
        local_at + 3 + 86_400_000 - 60_000,
        Some(7200),
        Some(4),
        Some(local_at + 3),
    );
    assert!(f.clock_naive && f.clock_skew_seconds == Some(7200) && f.clock_skew_count_24h == 4);
}

/// A repeater advert signed by `seed` carrying `timestamp`.
fn advert(seed: &[u8; 32], timestamp: u32) -> Vec<u8> {
    use meshcore::payload::{Advert, AppData, NodeType};
    let mut appdata = Vec::new();
    AppData::new(NodeType::REPEATER, None, Some(b"Slow clock")).encode(&mut appdata);
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
    .unwrap()
    .to_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_an_hour_behind() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("n.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let seed = [9u8; 32];
    let pk = hex::encode(meshcore::payload::public_key_of(&seed));
    let now = server::now_ms();
    let h = 3_600_000;
    let t0 = now - 30 * h;
    let pkt = |raw: &[u8]| format!(r#"{{"raw":"{}"}}"#, hex::encode(raw));
    // Six adverts, four hours apart, each an hour behind the moment it was heard.
    let heard: Vec<i64> = (0..6).map(|i| t0 + i * 4 * h + 123).collect();
    let frames: Vec<Vec<u8>> = heard
        .iter()
        .map(|&at| advert(&seed, (at / 1000 - 3600) as u32))
        .collect();
    for (f, &at) in frames.iter().zip(&heard) {
        w.write_batch(&[packet_at(FAST, &pkt(f), at)]).unwrap();
    }
    // The first ages out; then someone replays it: a new transmission of an old advert.
    assert_eq!(w.expire_packets(heard[0] + 1, 100).unwrap(), 1);
    w.write_batch(&[packet_at(LOCAL, &pkt(&frames[0]), now - 1000)])
        .unwrap();
    // A forgery claiming the node's clock is at 1970: the signature fails, it is not counted.
    let mut forged = advert(&seed, (now / 1000) as u32);
    forged[34..38].copy_from_slice(&16u32.to_le_bytes());
    w.write_batch(&[packet_at(FAST, &pkt(&forged), now - 500)])
        .unwrap();

    let srv = start(&db).await;
    let (st, v) = get_json(srv.addr, &format!("/api/nodes/{pk}/clock-skew")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["medianSkewSec"], -3600.0, "{v}");
    assert_eq!(v["recentMedianSkewSec"], -3600.0);
    assert_eq!(v["lastSkewSec"], -3600.0);
    assert_eq!(v["severity"], "critical");
    assert_eq!(v["sampleCount"], 5);
    assert_eq!(v["replaysIgnored"], 1);
    assert_eq!(v["driftPerDaySec"], 0.0);
    assert_eq!(v["nodeName"], "Slow clock");
    assert_eq!(v["samples"].as_array().unwrap().len(), 5);
    assert_eq!(v["lastObservedTS"], heard[5].div_euclid(1000));

    let (st, v) = get_json(srv.addr, "/api/nodes/clock-skew").await;
    assert_eq!(st, 200);
    let fleet = v.as_array().unwrap();
    assert_eq!(fleet.len(), 1, "{v}");
    assert_eq!(fleet[0]["pubkey"], pk.as_str());
    assert_eq!(fleet[0]["recentMedianSkewSec"], -3600.0);
    assert!(fleet[0].get("samples").is_none());

    let (st, v) = get_json(
        srv.addr,
        &format!("/api/nodes/{}/clock-skew", "ab".repeat(32)),
    )
    .await;
    assert_eq!(st, 404, "{v}");
    assert!(v["error"].is_string());
    for bad in ["xyz", "abcd"] {
        let (st, v) = get_json(srv.addr, &format!("/api/nodes/{bad}/clock-skew")).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
    srv.shutdown().await;
}

/// `/api/analytics/roles`: the repeater an hour behind is counted with its role, critical,
/// and a node without adverts in the window has no skew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_analytics_roles_counts_roles_and_their_clocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("n.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let now = server::now_ms();
    let pkt = |raw: &[u8]| format!(r#"{{"raw":"{}"}}"#, hex::encode(raw));
    for (i, seed) in [[9u8; 32], [10u8; 32]].iter().enumerate() {
        // Node 9 is an hour behind; node 10 is on time.
        let behind = if i == 0 { 3600 } else { 0 };
        for k in 0..3 {
            let at = now - (k + 1) * 3_600_000 + 7;
            let f = advert(seed, (at / 1000 - behind) as u32);
            w.write_batch(&[packet_at(FAST, &pkt(&f), at)]).unwrap();
        }
    }
    let srv = start(&db).await;
    let (st, v) = get_json(srv.addr, "/api/analytics/roles").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["totalNodes"], 2, "{v}");
    let r = &v["roles"][0];
    assert_eq!(r["role"], "repeater", "{v}");
    assert_eq!(r["nodeCount"], 2);
    assert_eq!(r["withSkew"], 2);
    assert_eq!(r["criticalCount"], 1, "{v}");
    assert_eq!(r["okCount"], 1, "{v}");
    assert_eq!(r["meanAbsSkewSec"], 1800.0, "{v}");
    for k in [
        "warningCount",
        "absurdCount",
        "noClockCount",
        "medianAbsSkewSec",
    ] {
        assert!(r[k].is_number(), "{k}: {v}");
    }
    srv.shutdown().await;
}

/// Alerting reads observers' clocks from the same history: an observer 10 minutes fast is
/// an active `observer_clock_skew` alert (known at the first evaluation, so not sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_ten_minutes_fast_is_an_active_clock_alert() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let now = server::now_ms();
    let hex = vector("ack_flood_4hops");
    let items: Vec<_> = (0..60)
        .map(|i| {
            let at = now - 3_600_000 + i * 60_000;
            let ts = iso(at + 600_000);
            packet_at(
                FAST,
                &format!(r#"{{"raw":"{hex}","timestamp":"{ts}"}}"#),
                at,
            )
        })
        .collect();
    w.write_batch(&items).unwrap();
    drop(w);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let srv = Server::start(support::config_with_alerts(&db, dir.path()), listener).unwrap();
    let a = support::active_alert(srv.addr, "observer_clock_skew").await;
    assert_eq!(a["subject"]["id"], FAST, "{a}");
    assert!(a["message"].as_str().unwrap().contains("+600 s"), "{a}");
    srv.shutdown().await;
}
