//! RF analytics over a small database of known signal values.

use serde_json::json;
use server::Server;

mod support;

use support::{get_json, packet_at, status_at, vector};

const A: &str = "a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7";
const B: &str = "b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8";

fn pkt(name: &str, snr: &str, rssi: &str) -> String {
    format!(r#"{{"raw":"{}","SNR":{snr},"RSSI":{rssi}}}"#, vector(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_statistics_and_relay_airtime() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rf.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let now = server::now_ms();
    w.write_batch(&[
        packet_at(A, &pkt("ack_flood_4hops", "10", "-90"), now - 5000),
        packet_at(
            A,
            &pkt("advert_flood_2byte_hash_5hops", "-5", "-100"),
            now - 4000,
        ),
        packet_at(
            A,
            &pkt("grp_txt_public_channel_2hops", "7.5", "-95"),
            now - 3000,
        ),
        packet_at(B, &pkt("ack_flood_4hops", "3", "null"), now - 2000),
    ])
    .unwrap();
    let srv = start(&db).await;
    let (st, v) = get_json(srv.addr, "/api/analytics/rf").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["totalPackets"], 4);
    assert_eq!(v["totalAllPackets"], 4);
    assert_eq!(v["totalTransmissions"], 3);
    assert_eq!(v["snr"]["min"], -5.0);
    assert_eq!(v["snr"]["max"], 10.0);
    assert_eq!(v["snr"]["avg"], 3.875);
    assert_eq!(v["rssi"]["avg"], -95.0);
    assert_eq!(v["snrValues"]["bins"].as_array().unwrap().len(), 20);
    let acks = v["payloadTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ACK")
        .unwrap()
        .clone();
    assert_eq!(acks["count"], 1, "one ACK transmission, heard twice");
    let two = v["snrByHashSize"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["hashSize"] == 2)
        .unwrap()
        .clone();
    assert_eq!(
        (two["count"].clone(), two["avg"].clone()),
        (json!(1), json!(-5.0))
    );
    let a = v["snrByObserver"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["observer_id"] == A)
        .unwrap()
        .clone();
    assert_eq!(a["count"], 3);
    assert_eq!(a["rssiAvg"], -95.0);
    assert_eq!(
        v["scatterData"].as_array().unwrap().len(),
        3,
        "B sent no RSSI"
    );
    // One observer, and a region nobody is in.
    let (_, v) = get_json(srv.addr, &format!("/api/analytics/rf?observer={}", &B[..8])).await;
    assert_eq!(v["totalAllPackets"], 1);
    let (_, v) = get_json(srv.addr, "/api/analytics/rf?region=zzz").await;
    assert_eq!(
        (v["totalAllPackets"].clone(), v["payloadTypes"].clone()),
        (json!(0), json!([]))
    );
    for bad in ["window=0", "window=31d", "window=soon", "observer=xyz"] {
        let (st, v) = get_json(srv.addr, &format!("/api/analytics/rf?{bad}")).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }

    // Relay airtime: time on air (CoreScope's default preset, no observer has said its radio)
    // times the most hops heard.
    let (st, v) = get_json(srv.addr, "/api/analytics/relay-airtime-share").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["preset"]["source"], "default");
    let p = meshcore::airtime::LoraParams::meshcore(62_500.0, 8, 5).unwrap();
    let score =
        |name: &str, hops: i64| ((p.time_on_air_ms(vector(name).len() / 2) * 1e6) as i64) * hops;
    let rows = v["rows"].as_array().unwrap();
    let row = |n: &str| {
        rows.iter()
            .find(|r| r["payload_type"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(row("ACK")["score"], score("ack_flood_4hops", 4));
    assert_eq!(
        row("ADVERT")["score"],
        score("advert_flood_2byte_hash_5hops", 5)
    );
    assert_eq!(
        row("GRP_TXT")["score"],
        score("grp_txt_public_channel_2hops", 2)
    );
    assert_eq!(v["total_count"], 3);
    let pct: f64 = rows
        .iter()
        .map(|r| r["airtime_pct"].as_f64().unwrap())
        .sum();
    assert!((pct - 100.0).abs() < 1e-9);
    srv.shutdown().await;

    // Once an observer reports its radio, that preset is used.
    w.write_batch(&[status_at(A, r#"{"radio":"910.525,62.5,7,5"}"#, now - 1000)])
        .unwrap();
    let srv = start(&db).await;
    let (_, v) = get_json(srv.addr, "/api/analytics/relay-airtime-share?window=1h").await;
    assert_eq!(
        v["preset"],
        json!({"freq_hz": 910_525_000.0, "bw_khz": 62.5, "sf": 7, "cr": 5, "preamble": 32, "source": "observers"})
    );
    srv.shutdown().await;
}

async fn start(db: &std::path::Path) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Server::start(support::config(db), listener).unwrap()
}
