//! Receive coverage in CoreScope's shapes (`GET /api/rx-coverage`,
//! `GET /api/nodes/{pubkey}/rx-coverage`, `GET /api/rx-leaderboard`), from observers at
//! their own node's position: O (Seattle) hears N directly four times at SNR 5 and R's relay
//! once; P (Portland) hears N once at SNR -2; C has no position.

use serde_json::{Value, json};

mod support;

use support::{OBS_C, advert, colliding_seeds, has, key_of};

fn heard(hex: &str, observer: &str, at: i64, snr: f64) -> store::Item {
    support::Heard {
        origin: Some("<b>o</b>".into()),
        ..support::heard_by(observer, "SEA", snr, -90.0)
    }
    .item(hex, at)
}

/// A signed advert of `seed` at clock `ts`, flooded over `path` (2-byte hops).
fn advert_via(seed: &[u8; 32], ts: u32, path: &[u8]) -> String {
    use meshcore::payload::{Advert, AppData, NodeType};
    let mut appdata = Vec::new();
    AppData::new(NodeType::CHAT, None, Some(b"N<img>")).encode(&mut appdata);
    let mut payload = Vec::new();
    Advert::encode_signed(seed, ts, &appdata, &mut payload);
    let size = meshcore::PathHashSize::Two;
    let hops = u8::try_from(path.len() / 2).unwrap();
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

const N: [u8; 32] = [0x4e; 32];
const O: [u8; 32] = [0x4f; 32];
const P: [u8; 32] = [0x50; 32];

struct World {
    _dir: tempfile::TempDir,
    srv: server::Server,
    n: String,
    o: String,
    p: String,
    r: String,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let [r_seed, ..] = colliding_seeds();
    let (n, o, p, r) = (key_of(&N), key_of(&O), key_of(&P), key_of(&r_seed));
    let rb = hex::decode(&r).unwrap();
    let now = server::now_ms();
    let m = 60_000;
    let mut items = vec![
        // The observers' own nodes, with their positions; R without one.
        heard(
            &advert(&O, 2, "O", Some((47.6, -122.3))),
            OBS_C,
            now - 50 * m,
            1.0,
        ),
        heard(
            &advert(&P, 2, "P", Some((45.5, -122.7))),
            OBS_C,
            now - 50 * m,
            1.0,
        ),
        heard(&advert(&r_seed, 2, "R", None), OBS_C, now - 50 * m, 1.0),
        // P hears N once, and a relay of N's over R's 2-byte prefix reaches O.
        heard(&advert(&N, 1, "N<img>", None), &p, now - 40 * m, -2.0),
        heard(
            &advert_via(&N, 1_700_000_100, &rb[..2]),
            &o,
            now - 35 * m,
            3.0,
        ),
    ];
    // O hears four of N's zero-hop adverts at SNR 5.
    for i in 0..4u32 {
        items.push(heard(
            &advert_via(&N, 1_700_000_001 + i, &[]),
            &o,
            now - (30 - i64::from(i)) * m,
            5.0,
        ));
    }
    let mut w = store::Writer::open(&db, 0).unwrap();
    w.write_batch(&items).unwrap();
    drop(w);
    let srv = support::start(support::config(&db)).await;
    support::wait_complete(srv.addr).await;
    World {
        _dir: dir,
        srv,
        n,
        o,
        p,
        r,
    }
}

const WORLD: &str = "bbox=-90,-180,90,180&z=12";

/// The feature whose cell holds (lat, lon).
fn feature_near(v: &Value, lat: f64, lon: f64) -> Value {
    v["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            let ring = f["geometry"]["coordinates"][0].as_array().unwrap();
            let la: Vec<f64> = ring.iter().map(|p| p[1].as_f64().unwrap()).collect();
            let lo: Vec<f64> = ring.iter().map(|p| p[0].as_f64().unwrap()).collect();
            let inside = |v: &[f64], x: f64| {
                v.iter().copied().fold(f64::INFINITY, f64::min) <= x
                    && x <= v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            };
            inside(&la, lat) && inside(&lo, lon)
        })
        .unwrap_or_else(|| panic!("no cell at {lat},{lon} in {v}"))
        .clone()
}

fn check_feature_shape(f: &Value) {
    assert_eq!(f["type"], "Feature");
    assert_eq!(f["geometry"]["type"], "Polygon");
    assert_eq!(f["geometry"]["coordinates"][0].as_array().unwrap().len(), 7);
    let p = &f["properties"];
    for (k, t) in [
        ("cell", "string"),
        ("count", "integer"),
        ("best_snr", "number|null"),
        ("has_sig", "boolean"),
        ("nodes", "array"),
    ] {
        has(p, k, t);
    }
    for n in p["nodes"].as_array().unwrap() {
        has(n, "prefix", "string");
        has(n, "snr", "number|null");
        has(n, "count", "integer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_api_nodes_pubkey_rx_coverage() {
    let w = world().await;
    let (st, v) = support::get(
        w.srv.addr,
        &format!("/api/nodes/{}/rx-coverage?{WORLD}", w.n),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["type"], "FeatureCollection");
    has(&v, "features", "array");
    // Heard directly by O four times (the relayed copy was R's transmission) and by P once.
    assert_eq!(v["features"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(
        (v["mobile_receptions"].clone(), v["mobile_clients"].clone()),
        (json!(5), json!(2))
    );
    for f in v["features"].as_array().unwrap() {
        check_feature_shape(f);
    }
    let at_o = feature_near(&v, 47.6, -122.3);
    assert_eq!(at_o["properties"]["count"], 4);
    assert_eq!(at_o["properties"]["best_snr"], 5.0);
    assert_eq!(
        at_o["properties"]["nodes"],
        json!([{"prefix": w.n, "name": "N<img>", "snr": 5.0, "count": 4}])
    );
    let at_p = feature_near(&v, 45.5, -122.7);
    assert_eq!(at_p["properties"]["best_snr"], -2.0);
    // Only the map's view: a box around Portland holds P's cell alone.
    let (_, v) = support::get(
        w.srv.addr,
        &format!("/api/nodes/{}/rx-coverage?bbox=45,-123,46,-122&z=12", w.n),
    )
    .await;
    assert_eq!(v["features"].as_array().unwrap().len(), 1);
    assert_eq!(v["mobile_receptions"], 5, "totals ignore the view");
    w.srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_api_rx_coverage() {
    let w = world().await;
    let (st, v) = support::get(w.srv.addr, &format!("/api/rx-coverage?{WORLD}&days=7")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["type"], "FeatureCollection");
    for f in v["features"].as_array().unwrap() {
        check_feature_shape(f);
    }
    let at_o = feature_near(&v, 47.6, -122.3);
    assert_eq!(at_o["properties"]["count"], 5, "{at_o}");
    let nodes = at_o["properties"]["nodes"].as_array().unwrap();
    // Strongest latest SNR first: N at 5, then R (its 2-byte prefix, resolved) at 3.
    assert_eq!(nodes[0]["prefix"], w.n.as_str());
    assert_eq!(
        nodes[1],
        json!({"prefix": &w.r[..4], "name": "R", "snr": 3.0, "count": 1})
    );
    // Three adverts heard by C, which has no position.
    assert_eq!(v["unpositioned"], 3);
    // One receiver only.
    let (_, v) = support::get(w.srv.addr, &format!("/api/rx-coverage?{WORLD}&rx={}", w.p)).await;
    assert_eq!(v["features"].as_array().unwrap().len(), 1);
    // One heard node, by its key.
    let (_, v) = support::get(
        w.srv.addr,
        &format!("/api/rx-coverage?{WORLD}&node={}", w.r),
    )
    .await;
    assert_eq!(v["features"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["features"][0]["properties"]["count"], 1);
    // Nowhere: an empty collection, never null.
    let (_, v) = support::get(w.srv.addr, "/api/rx-coverage?bbox=10,10,11,11").await;
    assert_eq!(v["features"], json!([]));
    w.srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_api_rx_leaderboard() {
    let w = world().await;
    let (st, v) = support::get(w.srv.addr, "/api/rx-leaderboard?days=7&limit=25").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["days"], 7);
    let obs = v["observers"].as_array().unwrap();
    assert_eq!(obs.len(), 2, "C has no position: {v}");
    for o in obs {
        for (k, t) in [
            ("pubkey", "string"),
            ("name", "string"),
            ("receptions", "integer"),
            ("nodes", "integer"),
            ("cells", "integer"),
            ("score", "number"),
        ] {
            has(o, k, t);
        }
    }
    // Each alone in its cell (score 1); O has more receptions.
    assert_eq!(obs[0]["pubkey"], w.o.as_str());
    assert_eq!(
        (
            obs[0]["receptions"].clone(),
            obs[0]["nodes"].clone(),
            obs[0]["cells"].clone(),
            obs[0]["score"].clone()
        ),
        (json!(5), json!(2), json!(1), json!(1.0))
    );
    assert_eq!(obs[1]["pubkey"], w.p.as_str());
    assert_eq!(obs[1]["receptions"], 1);
    let (_, v) = support::get(w.srv.addr, "/api/rx-leaderboard?limit=1").await;
    assert_eq!(v["observers"].as_array().unwrap().len(), 1);
    w.srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coverage_routes_refuse_bad_input() {
    let w = world().await;
    let unknown = "ab".repeat(32);
    let (st, v) = support::get(
        w.srv.addr,
        &format!("/api/nodes/{unknown}/rx-coverage?{WORLD}"),
    )
    .await;
    assert_eq!(st, 404, "{v}");
    assert!(v["error"].is_string());
    let node = format!("/api/nodes/{}/rx-coverage", w.n);
    let bad = [
        format!("/api/nodes/nothex/rx-coverage?{WORLD}"),
        format!("/api/nodes/{}/rx-coverage?{WORLD}", &w.n[..8]),
        node.clone(),
        format!("{node}?bbox=1,2,3"),
        format!("{node}?bbox=a,b,c,d"),
        format!("{node}?bbox=91,0,92,1"),
        format!("{node}?bbox=10,10,5,5"),
        format!("{node}?bbox=NaN,0,1,1"),
        format!("{node}?{WORLD}&z=-1"),
        format!("{node}?{WORLD}&z=99"),
        format!("{node}?{WORLD}&days=0"),
        "/api/rx-coverage".to_string(),
        format!("/api/rx-coverage?{WORLD}&days=31"),
        format!("/api/rx-coverage?{WORLD}&days=soon"),
        format!("/api/rx-coverage?{WORLD}&node=%3Cscript%3E"),
        format!("/api/rx-coverage?{WORLD}&rx=zz"),
        "/api/rx-leaderboard?days=0".to_string(),
        "/api/rx-leaderboard?limit=0".to_string(),
        "/api/rx-leaderboard?limit=many".to_string(),
    ];
    for path in bad {
        let (st, v) = support::get(w.srv.addr, &path).await;
        assert_eq!(st, 400, "{path}: {v}");
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    w.srv.shutdown().await;
}
