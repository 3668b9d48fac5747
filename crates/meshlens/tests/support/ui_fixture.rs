//! Known data for the browser tests (`tests/browser.rs`) and for working on the UI by hand
//! (`cargo run -p meshlens --example ui_fixture`): a node and a channel message whose text is
//! markup, the node's clock [`HOSTILE_SKEW_SECS`] off, an observer whose name is markup (with a
//! position, a status and a few direct receptions, so it is on the observer pages and the
//! coverage leaderboard), and a stream of fresh packets for the live views. Everything is
//! published over MQTT exactly as an observer's bridge would, so it goes through the whole
//! pipeline.

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
/// How far the hostile node's clock is off, seconds: its advert carries this much before the
/// time it is sent, so `/api/nodes/clock-skew` always has it (as `critical`).
pub const HOSTILE_SKEW_SECS: i64 = -7200;
/// The name of the hostile observer: rendered as markup it would set `window.__xss`.
pub const HOSTILE_OBSERVER_NAME: &str = "<img src=x onerror=__xss=4>";
/// The hostile observer's own node (its key is the observer's id): a located repeater, so the
/// observer has a position.
pub const HOSTILE_OBSERVER_NODE: u32 = 4;
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

/// The hostile observer's id as it publishes it (uppercase hex of its node's key); the API
/// lowercases it.
pub fn hostile_observer_key() -> String {
    hex::encode_upper(meshcore::payload::public_key_of(&seed_of(
        HOSTILE_OBSERVER_NODE,
    )))
}

/// The hostile observer's status after `n` ticks: online, with a radio, a battery, a noise
/// floor and counters that grow.
pub fn hostile_status_json(n: u64) -> String {
    serde_json::json!({
        "status": "online",
        "origin": HOSTILE_OBSERVER_NAME,
        "origin_id": hostile_observer_key(),
        "timestamp": store::time::iso(now_ms()),
        "model": "Heltec V3",
        "firmware_version": "1.14.1",
        "client_version": "ui-fixture",
        "radio": "910.525,62.5,7,5",
        "stats": {
            "battery_mv": 3950,
            "uptime_secs": 7200 + n,
            "noise_floor": -105.5,
            "tx_air_secs": 40 + n / 80,
            "rx_air_secs": 300 + n / 20,
            "recv_errors": 3,
        },
    })
    .to_string()
}

/// The bridge's JSON for one received frame.
pub fn packet_json(frame: &[u8], snr: f64) -> String {
    packet_json_as(frame, snr, "ui-fixture observer", OBSERVER_KEY)
}

/// The bridge's JSON for one frame received by observer `key` named `origin`.
pub fn packet_json_as(frame: &[u8], snr: f64, origin: &str, key: &str) -> String {
    serde_json::json!({
        "origin": origin,
        "origin_id": key,
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

/// Publishes the hostile node and message, the hostile observer's node, status and receptions
/// once, then a fresh advert ("Live-N") every `every` (and the hostile observer's status every
/// eight of them) until `stop` is set. `broker` is `host:port`.
pub async fn publish(broker: &str, every: Duration, stop: Arc<AtomicBool>) -> Result<u64, String> {
    let (host, port) = broker.rsplit_once(':').ok_or("broker must be host:port")?;
    let port: u16 = port.parse().map_err(|_| "bad port")?;
    let mut opts = MqttOptions::new(format!("ui-fixture-{}", std::process::id()), host, port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(opts, 64);
    let poller = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let topic = format!("meshcore/{IATA}/{OBSERVER_KEY}/packets");
    let now = (now_ms() / 1000) as u32;
    let hostile_time = (i64::from(now) + HOSTILE_SKEW_SECS) as u32;
    let frames = [
        advert(1, HOSTILE_NAME, NodeType::REPEATER, hostile_time),
        channel_message(&format!("Mallory: {HOSTILE_TEXT}"), now),
        advert(
            HOSTILE_OBSERVER_NODE,
            "Fixture-Obs",
            NodeType::REPEATER,
            now,
        ),
    ]
    .into_iter()
    .chain(hostile_relays(now));
    for f in frames {
        client
            .publish(&topic, QoS::AtLeastOnce, false, packet_json(&f, 7.5))
            .await
            .map_err(|e| e.to_string())?;
    }
    // The hostile observer: its status, and direct (zero-hop) copies of the hostile node's and
    // Fixture-B's adverts, with the channel message.
    let hostile_key = hostile_observer_key();
    let status_topic = format!("meshcore/{IATA}/{hostile_key}/status");
    client
        .publish(
            &status_topic,
            QoS::AtLeastOnce,
            false,
            hostile_status_json(0),
        )
        .await
        .map_err(|e| e.to_string())?;
    let heard = [
        (
            advert_via(1, HOSTILE_NAME, NodeType::REPEATER, hostile_time, &[]),
            -3.5,
        ),
        (
            advert_via(3, "Fixture-B", NodeType::REPEATER, now, &[]),
            6.25,
        ),
        (
            channel_message(&format!("Mallory: {HOSTILE_TEXT}"), now),
            1.0,
        ),
    ];
    let hostile_topic = format!("meshcore/{IATA}/{hostile_key}/packets");
    for (f, snr) in heard {
        let json = packet_json_as(&f, snr, HOSTILE_OBSERVER_NAME, &hostile_key);
        client
            .publish(&hostile_topic, QoS::AtLeastOnce, false, json)
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
        if n.is_multiple_of(8) {
            client
                .publish(
                    &status_topic,
                    QoS::AtLeastOnce,
                    false,
                    hostile_status_json(n),
                )
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let _ = client.disconnect().await;
    poller.abort();
    Ok(n)
}
