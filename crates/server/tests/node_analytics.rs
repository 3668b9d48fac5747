//! `GET /api/nodes/{pubkey}/analytics` in CoreScope's shape, over adverts with known answers,
//! and `relayed` from the hop resolver: a node relayed a packet when a hop resolves to it,
//! not when a hop merely shares its prefix.

use serde_json::{Value, json};

mod support;

use support::{OBS_A, OBS_B, OBS_C, advert_of, colliding_seeds, has, key_of};

/// A signed advert of `seed` named `name` at its clock `ts`, flooded over `path` (hops of
/// `size` bytes).
fn advert_via(
    seed: &[u8; 32],
    name: &str,
    ts: u32,
    size: meshcore::PathHashSize,
    path: &[u8],
) -> String {
    use meshcore::payload::{Advert, AppData, NodeType};
    let mut appdata = Vec::new();
    AppData::new(NodeType::CHAT, None, Some(name.as_bytes())).encode(&mut appdata);
    let mut payload = Vec::new();
    Advert::encode_signed(seed, ts, &appdata, &mut payload);
    let hops = u8::try_from(path.len() / size.bytes()).unwrap();
    let len = meshcore::PathLen::new(size, hops).unwrap();
    let frame = meshcore::Packet::new(
        meshcore::Route::Flood,
        meshcore::PayloadType::Advert,
        len,
        path,
        &payload,
    )
    .unwrap()
    .to_bytes();
    hex::encode(frame)
}

/// `hex` heard by `observer` at `at` with this SNR and RSSI.
fn heard(hex: &str, observer: &str, at: i64, snr: f64, rssi: f64) -> store::Item {
    support::Heard {
        origin: Some("<i>obs</i>".into()),
        ..support::heard_by(observer, "SEA", snr, rssi)
    }
    .item(hex, at)
}

const S: [u8; 32] = [0x51; 32];
const T: [u8; 32] = [0x61; 32];

struct World {
    _dir: tempfile::TempDir,
    srv: server::Server,
    s: String,
    r: String,
    d: String,
}

/// R and D are repeaters sharing their first key byte (not the second). S adverts four
/// times, heard by A at SNR 5 each time and by B at SNR -3 twice: twice relayed by R (its
/// 2-byte prefix: only R has it), twice direct. T's advert comes over a 1-byte hop both R and
/// D could be.
async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let [r_seed, _, d_seed] = colliding_seeds();
    let (r, d) = (key_of(&r_seed), key_of(&d_seed));
    let rb = hex::decode(&r).unwrap();
    let two = meshcore::PathHashSize::Two;
    let one = meshcore::PathHashSize::One;
    let now = server::now_ms();
    let m = 60_000;
    let mut w = store::Writer::open(&db, 0).unwrap();
    let a1 = advert_via(&S, "S<script>", 1_700_000_001, two, &rb[..2]);
    let a2 = advert_via(&S, "S<script>", 1_700_000_002, two, &rb[..2]);
    let a3 = advert_via(&S, "S<script>", 1_700_000_003, one, &[]);
    let a4 = advert_via(&S, "S<script>", 1_700_000_004, one, &[]);
    w.write_batch(&[
        heard(
            &advert_of(&r_seed, b"R", None, 1_700_000_000),
            OBS_C,
            now - 50 * m,
            9.0,
            -70.0,
        ),
        heard(
            &advert_of(&d_seed, b"D", None, 1_700_000_000),
            OBS_C,
            now - 50 * m,
            9.0,
            -70.0,
        ),
        heard(&a1, OBS_A, now - 40 * m, 5.0, -80.0),
        heard(&a1, OBS_B, now - 40 * m + 300, -3.0, -110.0),
        heard(&a2, OBS_A, now - 30 * m, 5.0, -80.0),
        heard(&a3, OBS_A, now - 20 * m, 5.0, -80.0),
        heard(&a3, OBS_B, now - 20 * m + 300, -3.0, -110.0),
        heard(&a4, OBS_A, now - 10 * m, 5.0, -80.0),
        heard(
            &advert_via(&T, "T", 1_700_000_005, one, &rb[..1]),
            OBS_C,
            now - 5 * m,
            1.0,
            -100.0,
        ),
    ])
    .unwrap();
    drop(w);
    let srv = support::start(support::config(&db)).await;
    support::wait_complete(srv.addr).await;
    World {
        _dir: dir,
        srv,
        s: key_of(&S),
        r,
        d,
    }
}

fn observer<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["observerCoverage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["observer_id"] == id)
        .unwrap_or_else(|| panic!("no observer {id} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_api_nodes_pubkey_analytics() {
    let w = world().await;
    let (st, v) = support::get(w.srv.addr, &format!("/api/nodes/{}/analytics?days=1", w.s)).await;
    assert_eq!(st, 200, "{v}");
    for (k, t) in [
        ("node", "object"),
        ("timeRange", "object"),
        ("activityTimeline", "array"),
        ("snrTrend", "array"),
        ("packetTypeBreakdown", "array"),
        ("observerCoverage", "array"),
        ("hopDistribution", "array"),
        ("peerInteractions", "array"),
        ("uptimeHeatmap", "array"),
        ("computedStats", "object"),
        ("relayed", "object"),
    ] {
        has(&v, k, t);
    }
    assert_eq!(v["node"]["public_key"], w.s.as_str());
    assert_eq!(v["node"]["name"], "S<script>", "names are data");
    assert_eq!(v["timeRange"]["days"], 1);
    let cs = &v["computedStats"];
    for (k, t) in [
        ("availabilityPct", "number"),
        ("longestSilenceMs", "integer"),
        ("longestSilenceStart", "string|null"),
        ("signalGrade", "string"),
        ("snrMean", "number"),
        ("snrStdDev", "number"),
        ("relayPct", "number"),
        ("totalPackets", "integer"),
        ("uniqueObservers", "integer"),
        ("uniquePeers", "integer"),
        ("avgPacketsPerDay", "number"),
    ] {
        has(cs, k, t);
    }
    assert_eq!(cs["totalPackets"], 4);
    assert_eq!(cs["uniqueObservers"], 2);
    assert_eq!(cs["avgPacketsPerDay"], 4.0);
    // The first copy of each packet: A's, at SNR 5.
    assert_eq!(
        (cs["snrMean"].clone(), cs["snrStdDev"].clone()),
        (json!(5.0), json!(0.0))
    );
    assert_eq!(cs["signalGrade"], "C");
    assert_eq!(
        cs["relayPct"], 0.0,
        "no packet of S came over more than one hop"
    );
    let a = observer(&v, OBS_A);
    for (k, t) in [
        ("observer_id", "string"),
        ("observer_name", "string|null"),
        ("packetCount", "integer"),
        ("avgSnr", "number|null"),
        ("avgRssi", "number|null"),
        ("firstSeen", "string"),
        ("lastSeen", "string"),
    ] {
        has(a, k, t);
    }
    assert_eq!(
        (a["packetCount"].clone(), a["avgSnr"].clone()),
        (json!(4), json!(5.0))
    );
    assert_eq!(a["avgRssi"], -80.0);
    let b = observer(&v, OBS_B);
    assert_eq!(
        (b["packetCount"].clone(), b["avgSnr"].clone()),
        (json!(2), json!(-3.0))
    );
    assert_eq!(
        v["observerCoverage"][0]["observer_id"], OBS_A,
        "most packets first"
    );
    assert_eq!(
        v["hopDistribution"],
        json!([{"hops": "0", "count": 2}, {"hops": "1", "count": 2}])
    );
    assert_eq!(
        v["packetTypeBreakdown"],
        json!([{"payload_type": 4, "count": 4}])
    );
    let trend = v["snrTrend"].as_array().unwrap();
    assert_eq!(trend.len(), 4);
    for e in trend {
        assert_eq!(
            (e["snr"].clone(), e["observer_id"].clone()),
            (json!(5.0), json!(OBS_A))
        );
        has(e, "timestamp", "string");
    }
    let timeline_total: i64 = v["activityTimeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            assert!(b["bucket"].as_str().unwrap().ends_with(":00:00Z"), "{b}");
            b["count"].as_i64().unwrap()
        })
        .sum();
    assert_eq!(timeline_total, 4);
    let heat_total: i64 = v["uptimeHeatmap"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_i64().unwrap())
        .sum();
    assert_eq!(heat_total, 4);
    assert_eq!(v["peerInteractions"], json!([]));
    assert_eq!(v["relayed"]["packets"], 0, "S relayed nothing");

    // R relayed S's first two adverts (its 2-byte prefix resolves to it); T's advert came
    // over R's first byte, which D shares: a prefix match, not a relay.
    let (st, v) = support::get(w.srv.addr, &format!("/api/nodes/{}/analytics", w.r)).await;
    assert_eq!(st, 200, "{v}");
    let rel = &v["relayed"];
    has(rel, "sampled", "boolean");
    assert_eq!(rel["packets"], 2, "{rel}");
    assert_eq!(rel["prefixMatches"], 3, "{rel}");
    assert_eq!(rel["sampled"], false);
    assert_eq!(rel["hopPositions"], json!([{"position": 1, "count": 2}]));
    let relayed_total: i64 = rel["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_i64().unwrap())
        .sum();
    assert_eq!(relayed_total, 2);
    assert_eq!(v["computedStats"]["totalPackets"], 1, "R's own advert");
    let (_, v) = support::get(w.srv.addr, &format!("/api/nodes/{}/analytics", w.d)).await;
    assert_eq!(
        (
            v["relayed"]["packets"].clone(),
            v["relayed"]["prefixMatches"].clone()
        ),
        (json!(0), json!(1)),
        "{v}"
    );
    w.srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_api_nodes_pubkey_analytics_refuses_bad_input() {
    let w = world().await;
    let unknown = "ab".repeat(32);
    let (st, v) = support::get(w.srv.addr, &format!("/api/nodes/{unknown}/analytics")).await;
    assert_eq!(st, 404, "{v}");
    assert!(v["error"].is_string());
    for bad in [
        "xyz".to_string(),
        "abcd".to_string(),
        "g".repeat(64),
        format!("{}00", w.s),
        "%3Cscript%3E".to_string(),
    ] {
        let (st, v) = support::get(w.srv.addr, &format!("/api/nodes/{bad}/analytics")).await;
        assert_eq!(st, 400, "{bad}: {v}");
        assert!(v["error"].is_string(), "{bad}: {v}");
    }
    for bad in ["days=0", "days=366", "days=abc", "days=-1", "days=1.5"] {
        let (st, v) =
            support::get(w.srv.addr, &format!("/api/nodes/{}/analytics?{bad}", w.s)).await;
        assert_eq!(st, 400, "{bad}: {v}");
        assert!(v["error"].is_string(), "{bad}: {v}");
    }
    w.srv.shutdown().await;
}
