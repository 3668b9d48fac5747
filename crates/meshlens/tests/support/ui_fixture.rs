//! Known data for the browser tests (`tests/browser.rs`) and for working on the UI by hand
//! (`cargo run -p meshlens --example ui_fixture`): a node and a channel message whose text is
//! markup, and a stream of fresh packets for the live views. Everything is published over
//! MQTT exactly as an observer's bridge would, so it goes through the whole pipeline.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use meshcore::crypto::Channel;
use meshcore::payload::{Advert, AppData, GroupText, Location, NodeType};
use meshcore::{Packet, PathHashSize, PathLen, PayloadType, Route};
use rumqttc::{AsyncClient, MqttOptions, QoS};

/// The name of the hostile node: rendered as markup it would set `window.__xss`. 20 bytes: with
/// the flags byte and a location it fits the 32 signed appdata bytes, so the name is whole
/// (bytes past 32 are never part of a name, as in firmware).
pub const HOSTILE_NAME: &str = "<svg onload=__xss=1>";
/// A channel message (on Public) that is markup too.
pub const HOSTILE_TEXT: &str =
    "<script>window.__xss=2</script><b onmouseover=window.__xss=3>hi</b>";
/// The observer the fixture publishes as.
pub const OBSERVER_KEY: &str = "F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1";
/// Its IATA code.
pub const IATA: &str = "UIT";

fn seed_of(i: u32) -> [u8; 32] {
    let mut s = [0x42u8; 32];
    s[..4].copy_from_slice(&i.to_le_bytes());
    s
}

/// A flood advert of node `i` named `name`, one 2-byte hop travelled.
pub fn advert(i: u32, name: &str, node_type: NodeType, timestamp: u32) -> Vec<u8> {
    let mut appdata = Vec::new();
    AppData::new(
        node_type,
        Some(Location {
            lat_raw: 47_600_000 + (i as i32 % 100) * 1_000,
            lon_raw: -122_300_000 + (i as i32 % 100) * 1_500,
        }),
        Some(name.as_bytes()),
    )
    .encode(&mut appdata);
    let mut payload = Vec::new();
    Advert::encode_signed(&seed_of(i), timestamp, &appdata, &mut payload);
    let path = [0xab, (i & 0xff) as u8];
    let path_len = PathLen::new(PathHashSize::Two, 1).expect("one 2-byte hop is valid");
    Packet::new(Route::Flood, PayloadType::Advert, path_len, &path, &payload)
        .map(|p| p.to_bytes())
        .unwrap_or_default()
}

/// A flood advert of node `i` named `name`, relayed by the nodes `via` (2-byte hops, in order).
pub fn advert_via(i: u32, name: &str, node_type: NodeType, timestamp: u32, via: &[u32]) -> Vec<u8> {
    let path: Vec<u8> = via
        .iter()
        .flat_map(|v| meshcore::payload::public_key_of(&seed_of(*v))[..2].to_vec())
        .collect();
    let frame = advert(i, name, node_type, timestamp);
    let Some(len) = PathLen::new(PathHashSize::Two, via.len() as u8) else {
        return frame;
    };
    Packet::decode(&frame)
        .ok()
        .and_then(|p| {
            Packet::new(
                Route::Flood,
                PayloadType::Advert,
                len,
                &path,
                p.payload_bytes(),
            )
        })
        .map(|p| p.to_bytes())
        .unwrap_or_default()
}

/// The hostile node relaying: `Fixture-A`'s adverts travel `Fixture-A` → hostile →
/// `Fixture-B` (a chain, so the hostile node is a bridge cutting off one node), often enough
/// for the default neighbor-graph filter (5 packets).
pub fn hostile_relays(now: u32) -> Vec<Vec<u8>> {
    let mut frames = vec![advert_via(3, "Fixture-B", NodeType::REPEATER, now, &[])];
    for k in 0..6 {
        frames.push(advert_via(2, "Fixture-A", NodeType::CHAT, now + k, &[1, 3]));
    }
    frames
}

/// A Public channel message with `text`, sent at `timestamp`.
pub fn channel_message(text: &str, timestamp: u32) -> Vec<u8> {
    let mut plain = Vec::new();
    GroupText {
        timestamp,
        flags: 0,
        text,
    }
    .encode(&mut plain);
    let mut payload = Vec::new();
    Channel::public().encrypt_into(&plain, &mut payload);
    Packet::new(
        Route::Flood,
        PayloadType::GrpTxt,
        PathLen::ZERO,
        &[],
        &payload,
    )
    .map(|p| p.to_bytes())
    .unwrap_or_default()
}

/// The bridge's JSON for one received frame.
pub fn packet_json(frame: &[u8], snr: f64) -> String {
    serde_json::json!({
        "origin": "ui-fixture observer",
        "origin_id": OBSERVER_KEY,
        "timestamp": store::time::iso(now_ms()),
        "type": "PACKET",
        "direction": "rx",
        "raw": hex::encode_upper(frame),
        "SNR": snr,
        "RSSI": -90,
    })
    .to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Publishes the hostile node and message once, then a fresh advert ("Live-N") every
/// `every` until `stop` is set. `broker` is `host:port`.
pub async fn publish(broker: &str, every: Duration, stop: Arc<AtomicBool>) -> Result<u64, String> {
    let (host, port) = broker.rsplit_once(':').ok_or("broker must be host:port")?;
    let port: u16 = port.parse().map_err(|_| "bad port")?;
    let mut opts = MqttOptions::new(format!("ui-fixture-{}", std::process::id()), host, port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(opts, 64);
    let poller = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let topic = format!("meshcore/{IATA}/{OBSERVER_KEY}/packets");
    let now = (now_ms() / 1000) as u32;
    let frames = [
        advert(1, HOSTILE_NAME, NodeType::REPEATER, now),
        channel_message(&format!("Mallory: {HOSTILE_TEXT}"), now),
    ]
    .into_iter()
    .chain(hostile_relays(now));
    for f in frames {
        client
            .publish(&topic, QoS::AtLeastOnce, false, packet_json(&f, 7.5))
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(every).await;
        n += 1;
        let ts = now.wrapping_add(n as u32);
        let f = advert(
            1000 + (n % 50) as u32,
            &format!("Live-{n}"),
            NodeType::CHAT,
            ts,
        );
        client
            .publish(
                &topic,
                QoS::AtLeastOnce,
                false,
                packet_json(&f, 5.0 + (n % 10) as f64),
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    let _ = client.disconnect().await;
    poller.abort();
    Ok(n)
}
