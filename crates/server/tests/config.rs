//! CoreScope's configuration routes: `/api/config/map` (configured, or fitted to the located
//! nodes), `/api/config/client`'s `map`, `/api/config/theme`, `/api/config/cache`,
//! `/api/config/areas` and `/polygons`, `/api/iata-coords`; the configuration file's UI keys
//! and their validation; `area=` on packets.
//! Also: `/api/config/client` and `/api/config/regions` describe this deployment.

use serde_json::{Value, json};

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_config_map_is_the_centre_of_the_located_nodes_or_the_configured_view() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    let s = start(config(&db)).await;
    let (st, v) = get(s.addr, "/api/config/map").await;
    assert_eq!(st, 200, "{v}");
    // Located: 37.5/-122.0, 37.6/-122.1, 45.5/-122.6, 47.6/-122.3 (the node at 0,0 and the
    // one without a position do not count). The median of each, and the zoom at which the
    // 10.1° spread of latitudes fits.
    assert_eq!(v["center"], json!([45.5, -122.1]), "{v}");
    assert_eq!(v["zoom"], 6, "{v}");
    has(&v, "tileUrl", "string");
    has(&v, "attribution", "string");
    s.shutdown().await;

    let cfg = config_with(
        &db,
        json!({"mapDefaults": {"center": [51.5, -0.12], "zoom": 11}}),
    );
    let s = start(cfg).await;
    let (_, v) = get(s.addr, "/api/config/map").await;
    assert_eq!(
        (&v["center"], &v["zoom"]),
        (&json!([51.5, -0.12]), &json!(11))
    );
    s.shutdown().await;

    // An empty database: the whole world.
    let empty = dir.path().join("empty.db");
    let _e = store::Writer::open(&empty, 0).unwrap();
    let s = start(config(&empty)).await;
    let (_, v) = get(s.addr, "/api/config/map").await;
    assert_eq!((&v["center"], &v["zoom"]), (&json!([0.0, 0.0]), &json!(2)));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_config_client_theme_and_cache() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    let s = start(config(&db)).await;
    let (st, v) = get(s.addr, "/api/config/client").await;
    assert_eq!(st, 200);
    assert_eq!(
        v["map"]["tiles"]["lightUrl"],
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    );
    has(&v["map"]["tiles"], "darkUrl", "string");
    let (st, t) = get(s.addr, "/api/config/theme").await;
    assert_eq!(st, 200);
    for k in [
        "branding",
        "theme",
        "themeDark",
        "nodeColors",
        "typeColors",
        "home",
        "markerStroke",
    ] {
        has(&t, k, "object");
    }
    assert_eq!(t["branding"]["siteName"], "meshlens");
    for role in ["repeater", "room", "companion", "sensor", "observer"] {
        has(&t["nodeColors"], role, "string");
    }
    assert_eq!(t["typeColors"]["REQ"], t["typeColors"]["REQUEST"]);
    let (st, c) = get(s.addr, "/api/config/cache").await;
    assert_eq!((st, c), (200, json!({})));
    s.shutdown().await;

    let cfg = config_with(
        &db,
        json!({
            "branding": {"siteName": "Mesh of Springfield"},
            "typeColors": {"REQ": "#123456"},
            "home": {"heroTitle": "Hello"},
            "cacheTTL": {"stats": 10, "nodeList": 90},
        }),
    );
    let s = start(cfg).await;
    let (_, t) = get(s.addr, "/api/config/theme").await;
    assert_eq!(t["branding"]["siteName"], "Mesh of Springfield");
    has(&t["branding"], "tagline", "string");
    assert_eq!(t["typeColors"]["REQUEST"], "#123456");
    assert_eq!(t["home"]["heroTitle"], "Hello");
    let (_, c) = get(s.addr, "/api/config/cache").await;
    assert_eq!(c, json!({"stats": 10, "nodeList": 90}));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_config_areas_and_polygons_list_the_configured_areas() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    let s = start(config(&db)).await;
    let (st, v) = get(s.addr, "/api/config/areas").await;
    assert_eq!((st, v), (200, json!([])));
    s.shutdown().await;
    let s = start(config_with(&db, json!({"areas": fleet_areas()}))).await;
    let (_, v) = get(s.addr, "/api/config/areas").await;
    assert_eq!(
        v,
        json!([{"key": "BAY", "label": "Bay Area"}, {"key": "PDX", "label": "Portland"}])
    );
    let (_, v) = get(s.addr, "/api/config/areas/polygons").await;
    assert_eq!(v[0]["polygon"], fleet_areas()["BAY"]["polygon"], "{v}");
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(
        (&v[1]["latMin"], &v[1]["lonMax"]),
        (&json!(45.0), &json!(-122.0))
    );
    s.shutdown().await;
    // An empty label hides an area from the list, not from the polygons or the filter.
    let mut areas = fleet_areas();
    areas["PDX"]["label"] = json!("");
    let s = start(config_with(&db, json!({"areas": areas}))).await;
    let (_, v) = get(s.addr, "/api/config/areas").await;
    assert_eq!(v, json!([{"key": "BAY", "label": "Bay Area"}]));
    let (_, v) = get(s.addr, "/api/config/areas/polygons").await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (st, _) = get(s.addr, "/api/nodes?area=PDX").await;
    assert_eq!(st, 200);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_packets_area_keeps_adverts_of_nodes_inside() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    let s = start(config_with(&db, json!({"areas": fleet_areas()}))).await;
    let (st, v) = get(s.addr, "/api/packets?area=BAY").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["total"], 2, "{v}");
    let mut from: Vec<&str> = v["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["from_pubkey"].as_str().unwrap())
        .collect();
    from.sort_unstable();
    let mut want = [key_of(&[1; 32]), key_of(&[2; 32])];
    want.sort();
    assert_eq!(from, want);
    // Combined with another filter; the channel message names no sender in the clear.
    let (_, v) = get(s.addr, "/api/packets?area=PDX&type=GRP_TXT").await;
    assert_eq!(v["total"], 0);
    let (st, _) = get(s.addr, "/api/packets?area=ATLANTIS").await;
    assert_eq!(st, 400);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_iata_coords_are_where_each_regions_observers_are() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = fleet_db(&db);
    let s = start(config(&db)).await;
    let (st, v) = get(s.addr, "/api/iata-coords").await;
    assert_eq!(st, 200, "{v}");
    // SEA's observer advertises its position; PDX's does not, so PDX is left out.
    assert_eq!(v, json!({"coords": {"SEA": {"lat": 47.6, "lon": -122.3}}}));
    s.shutdown().await;
}

#[test]
fn ui_keys_of_the_config_file_are_validated() {
    let mut ui = server::web::UiConfig::default();
    let bad: Vec<Value> = vec![
        json!({"mapDefaults": []}),
        json!({"mapDefaults": {"center": [95.0, 0.0]}}),
        json!({"mapDefaults": {"center": [1.0]}}),
        json!({"mapDefaults": {"center": ["x", 1]}}),
        json!({"mapDefaults": {"zoom": 99}}),
        json!({"mapDefaults": {"zoom": -1}}),
        json!({"areas": {"A": {"polygon": [[1, 1], [2, 2]]}}}),
        json!({"areas": {"A": {"polygon": (0..2000).map(|i| json!([i as f64 / 100.0, 0])).collect::<Vec<_>>()}}}),
        json!({"areas": {"A": {"latMin": "south"}}}),
        json!({"cacheTTL": 10}),
        json!({"theme": "dark"}),
        json!({"typeColors": []}),
    ];
    for b in bad {
        assert!(ui.apply_file(b.as_object().unwrap()).is_err(), "{b}");
    }
    let ok = json!({"mapDefaults": {"center": [37.45, -122.0], "zoom": 9}, "areas": fleet_areas(), "unrelated": 1});
    ui.apply_file(ok.as_object().unwrap()).unwrap();
    assert_eq!(ui.map_center, Some([37.45, -122.0]));
    assert_eq!(ui.map_zoom, Some(9));
    assert_eq!(ui.areas.len(), 2);
}

/// The SQL form of an area (what filters the lists) and the Rust form agree on every vertex
/// latitude (where the latitude bands split) and on a grid across it; in the server crate's
/// tests, not its source, which must hold no write SQL.
#[test]
fn area_sql_test_agrees_with_the_rust_test() {
    use server::api::areas::{Area, MAX_VERTICES, Shape};
    let c = store::rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch("CREATE TABLE p (lat REAL, lon REAL)")
        .unwrap();
    let circle: Vec<Value> = (0..MAX_VERTICES)
        .map(|i| {
            let t = i as f64 / MAX_VERTICES as f64 * std::f64::consts::TAU;
            json!([10.0 + 5.0 * t.sin(), 20.0 + 5.0 * t.cos()])
        })
        .collect();
    // A star: long spikes, so many edges share each latitude band.
    let star: Vec<Value> = (0..40)
        .map(|i| {
            let t = i as f64 / 40.0 * std::f64::consts::TAU;
            let r = if i % 2 == 0 { 5.0 } else { 1.0 };
            json!([10.0 + r * t.sin(), 20.0 + r * t.cos()])
        })
        .collect();
    let areas =
        Area::parse_all(&json!({"C": {"polygon": circle}, "S": {"polygon": star}})).unwrap();
    let mut areas = areas;
    areas.extend(Area::parse_all(&fleet_areas()).unwrap());
    for area in &areas {
        c.execute("DELETE FROM p", []).unwrap();
        // Every vertex latitude (band edges) and points between, across the area.
        let (mut lats, lo, hi): (Vec<f64>, f64, f64) = match &area.shape {
            Shape::Polygon(vs) => {
                let lats: Vec<f64> = vs.iter().map(|v| v[0]).collect();
                let lo = lats.iter().copied().fold(90.0, f64::min);
                let hi = lats.iter().copied().fold(-90.0, f64::max);
                (lats, lo, hi)
            }
            Shape::Bbox {
                lat_min, lat_max, ..
            } => (vec![*lat_min, *lat_max], *lat_min, *lat_max),
        };
        lats.extend((0..=40).map(|i| lo - 0.5 + (hi - lo + 1.0) * i as f64 / 40.0));
        let lons: Vec<f64> = (0..=40)
            .map(|i| -123.0 + i as f64 * 0.05)
            .chain((0..=40).map(|i| 14.0 + i as f64 * 0.3))
            .collect();
        let tx = c.unchecked_transaction().unwrap();
        for lat in &lats {
            for lon in &lons {
                tx.execute("INSERT INTO p VALUES (?1, ?2)", [lat, lon])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
        let mut stmt = c
            .prepare(&format!(
                "SELECT lat, lon, {} FROM p",
                area.sql_contains("lat", "lon")
            ))
            .unwrap();
        let rows: Vec<(f64, f64, bool)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), lats.len() * lons.len());
        let inside = rows.iter().filter(|r| r.2).count();
        assert!(inside > 0, "{}: no point inside", area.key);
        for (lat, lon, got) in rows {
            assert_eq!(got, area.contains(lat, lon), "{} {lat} {lon}", area.key);
        }
    }
}

/// The UI bootstrap config: roles, limits and version; regions are the observers' IATA codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_client_and_regions_describe_this_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed_real_frames(&db);
    let now = server::now_ms();
    w.write_batch(&[weak_item_in(
        &vector("txt_msg_flood_4hops"),
        OBS_C,
        "PDX",
        now,
    )])
    .unwrap();
    let s = start(config(&db)).await;
    let (st, v) = get(s.addr, "/api/config/regions").await;
    assert_eq!(st, 200);
    assert_eq!(v, serde_json::json!({"PDX": "PDX", "SEA": "SEA"}));
    let (st, v) = get(s.addr, "/api/config/client").await;
    assert_eq!(st, 200);
    for role in ["repeater", "room", "companion", "sensor"] {
        assert!(v["roles"][role].is_string(), "{v}");
    }
    assert_eq!(v["limits"]["nodesMax"], 2000, "{v}");
    assert_eq!(v["healthThresholds"]["nodeDegradedMs"], 3_600_000, "{v}");
    assert_eq!(
        v["customizer"]["disabledTabs"],
        serde_json::json!([]),
        "{v}"
    );
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    s.shutdown().await;
    drop(w);
}
