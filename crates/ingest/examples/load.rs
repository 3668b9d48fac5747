//! Ingest load benchmark: observers publishing to the embedded MQTT broker over loopback TCP,
//! exactly as `meshlens run` serves them (each publish handed straight to the writer's queue),
//! measured until every observation is committed; then the same rows written straight into
//! SQLite through the writer as the ceiling.
//!
//! ```sh
//! cargo run --release -p ingest --example load -- [OBSERVERS] [TRANSMISSIONS] [HEARD_BY] [RATE]
//! ```
//! Defaults: 16 observers, 20,000 transmissions, each heard by 5 observers (100,000
//! observations), offered at RATE observations/s in total (default 25,000; 0 = as fast as
//! the publishers can). Prints one line per figure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ingest::decode::Decoder;
use ingest::message::{PacketMessage, TopicObserver};
use ingest::mqtt::SourceSettings;
use ingest::writer_thread::{MAX_BATCH, Maintenance};
use ingest::{Ingest, IngestConfig};
use rumqttc::{AsyncClient, MqttOptions, QoS};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn observer_id(o: usize) -> String {
    format!("{:064x}", 0xabc0_0000_u64 + o as u64)
}

/// Transmission `t` as heard by its `k`-th observer: a flood TXT_MSG envelope with a
/// 1-, 2- or 3-byte path whose last hop differs per observer.
fn frame(t: usize, k: usize) -> Vec<u8> {
    let size = 1 + t % 3;
    let hops = 1 + k % 3;
    let mut f = vec![0x09, (((size - 1) << 6) | hops) as u8];
    for h in 0..hops {
        for b in 0..size {
            f.push((h * 31 + b * 7 + k) as u8);
        }
    }
    f.extend_from_slice(&[0x42, 0xb9, 0xf9, 0xc2]);
    f.extend_from_slice(&(t as u64).to_le_bytes());
    f.extend_from_slice(&[0u8; 8]);
    f
}

fn json(frame: &[u8]) -> String {
    format!(
        r#"{{"origin":"load","direction":"rx","raw":"{}","SNR":"7","RSSI":"-101","score":"1000"}}"#,
        hex::encode_upper(frame)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let observers = arg(1, 16).max(1);
    let transmissions = arg(2, 20_000);
    let heard_by = arg(3, 5).clamp(1, observers);
    let total = (transmissions * heard_by) as u64;
    let offered_rate = arg(4, 25_000);
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "load: {observers} observers, {transmissions} transmissions x {heard_by} = {total} observations"
    );

    // Through MQTT.
    let mut ingest = Ingest::start(IngestConfig {
        db_path: dir.path().join("mqtt.db"),
        sources: Vec::new(),
        decoder: Decoder::default(),
        maintenance: Maintenance::default(),
        maintenance_interval: Duration::from_secs(3600),
        source_settings: SourceSettings::default(),
        status_file: None,
        mbcap: None,
    })
    .expect("ingest");
    let listener = ingest::broker::Listener::bind(
        ingest::broker::Transport::Tcp,
        "127.0.0.1:0".parse().expect("addr"),
    )
    .expect("bind");
    let broker = ingest
        .serve_embedded_broker(
            vec![listener],
            None,
            ingest::broker::BrokerSettings::default(),
        )
        .expect("broker")[0]
        .1;
    let stats = ingest.stats();

    let mut clients = Vec::new();
    for o in 0..observers {
        let mut opts =
            MqttOptions::new(format!("load-{o}"), broker.ip().to_string(), broker.port());
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut el) = AsyncClient::new(opts, 1024);
        tokio::spawn(async move { while el.poll().await.is_ok() {} });
        clients.push(client);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (o, client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let topic = format!("meshcore/LOAD/{}/packets", observer_id(o));
            // Pace in 10 ms ticks so the offered load is steady, as from real observers.
            let per_tick = (offered_rate / observers / 100).max(1);
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut sent_in_tick = 0;
            for t in 0..transmissions {
                // Observer o hears transmission t when it is one of its heard_by observers.
                let k = (o + observers - t % observers) % observers;
                if k < heard_by {
                    if offered_rate > 0 {
                        if sent_in_tick == 0 {
                            tick.tick().await;
                        }
                        sent_in_tick = (sent_in_tick + 1) % per_tick;
                    }
                    let _ = client
                        .publish(&topic, QoS::AtMostOnce, false, json(&frame(t, k)))
                        .await;
                }
            }
            // Returned so it outlives the measurement: dropping a client ends its event
            // loop before its queue is flushed.
            client
        }));
    }
    let mut keep_alive = Vec::new();
    for t in tasks {
        keep_alive.extend(t.await);
    }
    let published = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = 0;
    let mut last_change = Instant::now();
    loop {
        let done = stats.get("stored.new_observations");
        if done >= total || Instant::now() > deadline {
            break;
        }
        if done != last {
            last = done;
            last_change = Instant::now();
        } else if last_change.elapsed() > Duration::from_secs(5) {
            break; // nothing more is coming
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Time to the last observation committed (not including the idle wait above).
    let elapsed = last_change
        .duration_since(start)
        .max(Duration::from_millis(1));
    let elapsed = if stats.get("stored.new_observations") >= total {
        start.elapsed()
    } else {
        elapsed
    };
    let stored = stats.get("stored.new_observations");
    let received = stats.get("mqtt.messages");
    let rate = stored as f64 / elapsed.as_secs_f64();
    ingest.shutdown().await;
    drop(keep_alive);
    println!(
        "published in {:.3} s ({:.0} msg/s offered; target {offered_rate})",
        published.as_secs_f64(),
        total as f64 / published.as_secs_f64()
    );
    println!("mqtt: ingest received {received}/{total} messages");
    println!(
        "mqtt: stored {stored}/{total} observations in {:.3} s = {rate:.0} obs/s; writer batches {}",
        elapsed.as_secs_f64(),
        stats.get("writer.batches")
    );

    // Ceiling: the same observations decoded and written straight through the writer.
    let decoder = Arc::new(Decoder::default());
    let mut items = Vec::with_capacity(total as usize);
    for t in 0..transmissions {
        for k in 0..heard_by {
            let o = (t + k) % observers;
            let msg = PacketMessage {
                observer: TopicObserver {
                    id: observer_id(o),
                    iata: "LOAD".into(),
                },
                origin: Some("load".into()),
                region: None,
                raw: frame(t, k),
                snr: Some(7.0),
                rssi: Some(-101.0),
                score: Some(1000),
                airtime_ms: None,
            };
            items.push(decoder.item(msg, 1_700_000_000_000).0);
        }
    }
    let mut w = store::Writer::open(&dir.path().join("direct.db"), 0).expect("writer");
    let start = Instant::now();
    for chunk in items.chunks(MAX_BATCH) {
        w.write_batch(chunk).expect("write");
    }
    let direct = start.elapsed();
    let ceiling = total as f64 / direct.as_secs_f64();
    println!(
        "direct: {total} observations in {:.3} s = {ceiling:.0} obs/s",
        direct.as_secs_f64()
    );
    println!("ratio mqtt/direct: {:.2}", rate / ceiling);
    let db_bytes = std::fs::metadata(dir.path().join("direct.db")).map_or(0, |m| m.len())
        + std::fs::metadata(dir.path().join("direct.db-wal")).map_or(0, |m| m.len());
    println!(
        "database: {:.0} bytes per observation (incl. WAL)",
        db_bytes as f64 / total as f64
    );
}
