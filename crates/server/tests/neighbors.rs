//! Per-edge observers and SNR of the neighbor graph (`src/api/neighbors.rs`): two observers
//! hear the same relays with known SNRs, so the link between the relays names both observers
//! and its `avg_snr` is the mean of the two, in `/api/nodes/{pk}/neighbors`,
//! `/api/analytics/neighbor-graph` and `/api/debug/affinity`.

use serde_json::Value;

mod support;

use support::*;

const KEY: &str = "neighbors-test-admin-key";

/// R1 and R2 relay a companion's advert (R1 then R2); OBS_A hears it at 8 dB, OBS_B at
/// −2.5 dB; OBS_B alone hears a second advert at −4 dB. The R1–R2 link: 2 packets, observers
/// OBS_A and OBS_B, mean SNR (8 − 2.5 − 4) / 3 = 0.5.
struct Mesh {
    _dir: tempfile::TempDir,
    server: server::Server,
    r1: String,
    r2: String,
}

async fn mesh() -> Mesh {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let [r1, r2, c] = distinct_seeds();
    let r1_advert = advert(&r1, 2, "R1", Some((47.60, -122.30)));
    let r2_advert = advert(&r2, 2, "R2", Some((47.64, -122.30)));
    let c_advert = advert(&c, 1, "C", Some((47.56, -122.30)));
    // Another packet of C's (another name, so another hash).
    let c_later = advert(&c, 1, "C again", Some((47.56, -122.30)));
    let p1 = meshcore::payload::public_key_of(&r1)[0];
    let p2 = meshcore::payload::public_key_of(&r2)[0];
    let now = server::now_ms();
    let relayed = advert_through(&c_advert, &[p1, p2]);
    w.write_batch(&[
        item_sea(&r1_advert, OBS_A, now - 9_000),
        item_sea(&r2_advert, OBS_A, now - 8_000),
        item_sea(&c_advert, OBS_A, now - 7_000),
        heard_by(OBS_A, "SEA", 8.0, -90.0).item(&relayed, now - 6_000),
        heard_by(OBS_B, "SEA", -2.5, -110.0).item(&relayed, now - 5_900),
        heard_by(OBS_B, "SEA", -4.0, -112.0)
            .item(&advert_through(&c_later, &[p1, p2]), now - 2_000),
    ])
    .unwrap();
    drop(w);
    let mut cfg = config(&db);
    cfg.admin_key = Some(KEY.into());
    let server = start(cfg).await;
    wait_complete(server.addr).await;
    Mesh {
        _dir: dir,
        server,
        r1: key_of(&r1),
        r2: key_of(&r2),
    }
}

fn arr<'a>(v: &'a Value, k: &str) -> &'a Vec<Value> {
    v[k].as_array()
        .unwrap_or_else(|| panic!("{k} is not an array: {v}"))
}

fn ids(v: &Value) -> Vec<&str> {
    let mut out: Vec<&str> = v
        .as_array()
        .unwrap_or_else(|| panic!("observers is not an array: {v}"))
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    out.sort_unstable();
    out
}

fn close(v: &Value, want: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!((got - want).abs() < 1e-9, "avg_snr {got}, want {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_names_its_observers_and_the_mean_snr_of_their_observations() {
    let m = mesh().await;

    let (s, n) = get(m.server.addr, &format!("/api/nodes/{}/neighbors", m.r1)).await;
    assert_eq!(s, 200, "{n}");
    let r2 = arr(&n, "neighbors")
        .iter()
        .find(|x| x["pubkey"] == m.r2.as_str())
        .unwrap_or_else(|| panic!("R2 is not R1's neighbor: {n}"));
    assert_eq!(r2["count"], 2, "{r2}");
    assert_eq!(ids(&r2["observers"]), vec![OBS_A, OBS_B]);
    assert_eq!(r2["observer_count"], 2);
    close(&r2["avg_snr"], 0.5);

    let (s, g) = get(
        m.server.addr,
        "/api/analytics/neighbor-graph?min_count=1&min_score=0",
    )
    .await;
    assert_eq!(s, 200, "{g}");
    let e = arr(&g, "edges")
        .iter()
        .find(|e| {
            (e["source"] == m.r1.as_str() && e["target"] == m.r2.as_str())
                || (e["source"] == m.r2.as_str() && e["target"] == m.r1.as_str())
        })
        .unwrap_or_else(|| panic!("no R1–R2 edge: {g}"));
    close(&e["avg_snr"], 0.5);
    assert_eq!(e["observer_count"], 2);

    let (s, _, body) = http_raw(
        m.server.addr,
        "GET",
        &format!("/api/debug/affinity?node={}", m.r1),
        None,
        &format!("X-API-Key: {KEY}\r\n"),
    );
    assert_eq!(s, 200, "{body}");
    let a: Value = serde_json::from_str(&body).unwrap();
    let e = arr(&a, "edges")
        .iter()
        .find(|e| e["nodeA"] == m.r2.as_str() || e["nodeB"] == m.r2.as_str())
        .unwrap_or_else(|| panic!("no R1–R2 edge: {a}"));
    assert_eq!(ids(&e["observers"]), vec![OBS_A, OBS_B]);
}
