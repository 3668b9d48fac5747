//! `/api/scope-stats` over real captured frames: a transport packet of a region this
//! deployment knows (#ottawa), one of a region it does not (the #test message's code), a
//! transport packet without a scope, and a plain flood advert.

use serde_json::json;

mod support;

use support::{get_json, start, vector};

const OBS: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";

fn item(name: &str, at: i64) -> store::Item {
    let mut regions = meshcore::region::Regions::new();
    regions.add("ottawa");
    let d = ingest::decode::Decoder {
        keyring: meshcore::crypto::Keyring::with_public(),
        regions,
        ..Default::default()
    };
    let msg = ingest::message::PacketMessage {
        observer: ingest::message::TopicObserver {
            id: OBS.into(),
            iata: "YOW".into(),
        },
        origin: None,
        region: None,
        raw: meshcore::report::parse_hex(&vector(name)).unwrap(),
        snr: None,
        rssi: None,
        score: None,
        airtime_ms: None,
    };
    d.item(msg, at).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_scope_stats_counts_scopes_named_unknown_and_none() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let now = server::now_ms();
    w.write_batch(&[
        item("grp_txt_transport_flood_region_ottawa", now - 1000),
        item("grp_txt_hashtag_test_transport_flood_3byte_mode", now - 900),
        item("advert_transport_direct_zero_hop_share", now - 800),
        item("advert_flood_zero_hop_repeater", now - 700),
    ])
    .unwrap();
    let s = start(support::config(&db)).await;
    let (st, v) = get_json(s.addr, "/api/scope-stats").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["window"], "24h");
    assert_eq!(
        v["summary"],
        json!({"transportTotal": 3, "scoped": 2, "unscoped": 2, "unknownScope": 1}),
        "{v}"
    );
    assert_eq!(
        v["byRegion"],
        json!([{"name": "#ottawa", "count": 1}]),
        "{v}"
    );
    let series = v["timeSeries"].as_array().unwrap();
    let scoped: i64 = series.iter().map(|p| p["scoped"].as_i64().unwrap()).sum();
    let unscoped: i64 = series.iter().map(|p| p["unscoped"].as_i64().unwrap()).sum();
    assert_eq!((scoped, unscoped), (2, 1), "{v}");
    assert!(
        series[0]["t"].as_str().unwrap().ends_with(":00:00.000Z"),
        "{v}"
    );
    let (st, v) = get_json(s.addr, "/api/scope-stats?window=1h").await;
    assert_eq!((st, &v["window"]), (200, &json!("1h")));
    for bad in ["2h", "0", "%00"] {
        let (st, v) = get_json(s.addr, &format!("/api/scope-stats?window={bad}")).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
    s.shutdown().await;
}
