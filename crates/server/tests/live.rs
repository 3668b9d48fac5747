//! The live feed as CoreScope's web app uses it: the WebSocket opens at `/` (any path outside
//! `/api/` upgrades), and each packet message carries CoreScope's keys (`decoded.header`,
//! `decoded.payload`, `packet`, `decoded_json`, `path_json`, `observer_id`, …) beside
//! meshlens's own, which its UI reads.
//! Also: new observations pushed live (foreign `Origin` refused), and a slow client told it
//! lagged.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

mod support;

use support::{OBS_A, OBS_B};

use support::{config, get, http_raw, item_sea, observed, seed_real_frames, start, vector};

/// Only ends a test that would otherwise hang; never reached on any machine.
const HANG: Duration = Duration::from_secs(120);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next packet message of a socket.
async fn next_packet(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(HANG, ws.next())
            .await
            .expect("a message")
            .unwrap()
            .unwrap();
        if msg.is_text() {
            let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
            if v["type"] == "packet" {
                return v;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_at_root_and_any_ui_path_sends_corescope_and_meshlens_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let s = support::start(support::config(&db)).await;
    // CoreScope's app opens "/"; any other UI path upgrades too, and /ws stays.
    let mut sockets = Vec::new();
    for path in ["/", "/packets", "/ws"] {
        let (ws, _) = tokio::time::timeout(
            HANG,
            tokio_tungstenite::connect_async(format!("ws://{}{path}", s.addr)),
        )
        .await
        .unwrap_or_else(|_| panic!("{path}: no handshake"))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
        sockets.push(ws);
    }
    // Each socket subscribed before its 101, so these commits reach all of them.
    let hex = vector("advert_flood_2byte_hash_5hops");
    let now = server::now_ms();
    w.write_batch(&[observed(&hex, OBS_A, "SEA", now)]).unwrap();
    w.write_batch(&[observed(&hex, OBS_B, "PDX", now + 1)])
        .unwrap();
    for ws in &mut sockets {
        let first = next_packet(ws).await;
        let second = next_packet(ws).await;
        for (v, obs, iata) in [(&first, OBS_A, "SEA"), (&second, OBS_B, "PDX")] {
            let d = &v["data"];
            // CoreScope's keys: live.js reads the top level...
            assert_eq!(d["decoded"]["header"]["payloadTypeName"], "ADVERT", "{d}");
            assert!(d["decoded"]["header"]["routeType"].is_i64());
            let payload = &d["decoded"]["payload"];
            assert_eq!(payload["type"], "ADVERT");
            assert!(payload["pubKey"].is_string() && payload["name"].is_string());
            let hops = d["decoded"]["path"]["hops"].as_array().unwrap();
            assert_eq!(hops.len(), 5);
            assert_eq!(d["observer_id"], obs);
            assert_eq!(d["observer_iata"], iata);
            assert!(d["first_seen"].is_string() && d["raw_hex"].is_string());
            assert!(d["route_type"].is_i64() && d["payload_type"].is_i64());
            let dj: Value = serde_json::from_str(d["decoded_json"].as_str().unwrap()).unwrap();
            assert_eq!(&dj, payload);
            let pj: Value = serde_json::from_str(d["path_json"].as_str().unwrap()).unwrap();
            assert_eq!(pj.as_array().unwrap(), hops);
            assert!(d.get("direction").is_some());
            // ...and packets.js the nested transmission.
            let p = &d["packet"];
            assert_eq!(p["id"], d["transmission_id"]);
            assert_eq!(p["hash"], d["hash"]);
            assert_eq!(p["timestamp"], p["first_seen"]);
            assert_eq!(p["observer_id"], obs);
            assert_eq!(p["decoded_json"], d["decoded_json"]);
            assert_eq!(p["path_json"], d["path_json"]);
            assert!(p["snr"].is_f64() && p["rssi"].is_f64());
            assert!(p["observation_count"].is_i64());
            // meshlens's keys, which its own UI reads, are unchanged.
            assert_eq!(d["observer"], obs);
            assert_eq!(d["iata"], iata);
            assert_eq!(d["decoded"]["payload_type_name"], "ADVERT");
            assert_eq!(d["decoded"]["hash_size"], 2);
            assert_eq!(d["hash_size"], 2);
            assert_eq!(d["path"].as_array().unwrap().len(), 5);
            assert!(d["id"].is_i64() && d["timestamp"].is_string());
        }
        // Two observations of one transmission: one packet, two observation ids.
        assert_eq!(
            first["data"]["packet"]["id"],
            second["data"]["packet"]["id"]
        );
        assert_ne!(first["data"]["id"], second["data"]["id"]);
        assert_eq!(
            first["data"]["packet"]["first_seen"],
            second["data"]["first_seen"]
        );
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_upgrades_never_under_api_and_the_ui_is_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    drop(store::Writer::open(&db, 0).unwrap());
    let s = support::start(support::config(&db)).await;
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{}/api/nope", s.addr))
            .await
            .is_err()
    );
    let addr = s.addr;
    let upgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let (st, _, body) =
        tokio::task::spawn_blocking(move || http_raw(addr, "GET", "/api/nope", None, upgrade))
            .await
            .unwrap();
    assert_eq!(st, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"].is_string());
    // A page from another site may not subscribe at "/" either.
    let req = tokio_tungstenite::tungstenite::http::Request::builder()
        .uri(format!("ws://{addr}/"))
        .header("Host", addr.to_string())
        .header("Origin", "https://evil.example")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected a 403, got {other:?}"),
    }
    // Without an upgrade, "/" is the UI.
    let (st, head, body) =
        tokio::task::spawn_blocking(move || http_raw(addr, "GET", "/", None, ""))
            .await
            .unwrap();
    assert_eq!(st, 200);
    assert!(head.to_ascii_lowercase().contains("text/html"), "{head}");
    assert!(body.contains("<html") || body.contains("<!doctype") || body.contains("<!DOCTYPE"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_observations_are_pushed_live() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed_real_frames(&db);
    let s = start(config(&db)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", s.addr))
        .await
        .unwrap();
    // Let the subscription settle, then commit a new packet through the writer.
    tokio::time::sleep(Duration::from_millis(100)).await;
    w.write_batch(&[item_sea(
        &vector("ack_flood_4hops"),
        OBS_A,
        server::now_ms(),
    )])
    .unwrap();
    let v: Value = loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("pushed")
            .unwrap()
            .unwrap();
        if msg.is_text() {
            break serde_json::from_str(msg.to_text().unwrap()).unwrap();
        }
    };
    assert_eq!(v["type"], "packet");
    assert_eq!(v["data"]["hash"], "bbf95563c6eec9fe");
    assert_eq!(v["data"]["observer"], OBS_A);
    assert_eq!(v["data"]["decoded"]["payload_type_name"], "ACK");
    // The packet list's cached total follows the commit.
    let (_, list) = get(s.addr, "/api/packets?limit=1").await;
    assert_eq!(list["total"], 11);
    // A browser page from another site may not subscribe.
    let req = tokio_tungstenite::tungstenite::http::Request::builder()
        .uri(format!("ws://{}/ws", s.addr))
        .header("Host", s.addr.to_string())
        .header("Origin", "https://evil.example")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    s.shutdown().await;
}

/// A client that does not read falls behind the bounded ring and is told how much it missed;
/// the writer and the feed keep going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_live_client_is_told_it_lagged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed_real_frames(&db);
    let s = start(config(&db)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", s.addr))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Far more than the per-client buffer (and the socket buffers) while the client sleeps.
    let now = server::now_ms();
    for chunk in 0..10u32 {
        let items: Vec<store::Item> = (0..2000u32)
            .map(|i| {
                let n = chunk * 2000 + i;
                item_sea(&format!("0D00{}", hex::encode(n.to_le_bytes())), OBS_A, now)
            })
            .collect();
        w.write_batch(&items).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut lagged = None;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        if let Ok(v) = serde_json::from_str::<Value>(msg.to_text().unwrap_or(""))
            && v["type"] == "lagged"
        {
            lagged = v["missed"].as_u64();
            break;
        }
    }
    assert!(lagged.is_some_and(|n| n > 0), "no lagged notice");
    s.shutdown().await;
}

/// Each live message carries the copy's hops resolved with the current topology: a companion's
/// advert relayed by two known repeaters names both, with their confidences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_messages_carry_the_resolved_path() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let [r1, r2, c] = support::distinct_seeds();
    let c_advert = support::advert(&c, 1, "<img src=x>", Some((47.56, -122.30)));
    let now = server::now_ms();
    w.write_batch(&[
        item_sea(
            &support::advert(&r1, 2, "R1", Some((47.60, -122.30))),
            OBS_A,
            now - 3_000,
        ),
        item_sea(
            &support::advert(&r2, 2, "R2", Some((47.64, -122.30))),
            OBS_A,
            now - 2_000,
        ),
        item_sea(&c_advert, OBS_A, now - 1_000),
    ])
    .unwrap();
    // The topology a starting reader serves holds the three nodes.
    let s = start(config(&db)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", s.addr))
        .await
        .unwrap();
    let p1 = meshcore::payload::public_key_of(&r1)[0];
    let p2 = meshcore::payload::public_key_of(&r2)[0];
    w.write_batch(&[item_sea(
        &support::advert_through(&c_advert, &[p1, p2]),
        OBS_B,
        now,
    )])
    .unwrap();
    let v = next_packet(&mut ws).await;
    let d = &v["data"];
    assert_eq!(
        d["resolved_path"],
        serde_json::json!([support::key_of(&r1), support::key_of(&r2)]),
        "{d}"
    );
    let conf = d["resolved_confidence"].as_array().unwrap();
    assert!(conf.iter().all(|c| c.as_f64().unwrap() >= 0.5), "{conf:?}");
    assert_eq!(d["hops"][0]["name"], "R1");
    assert_eq!(d["hops"][1]["prefix"], hex::encode([p2]));
    s.shutdown().await;
}
