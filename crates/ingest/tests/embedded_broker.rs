//! The embedded broker under load, in process: many unpaced publishers into a writer that
//! cannot keep up. Nothing acknowledged may be lost, QoS 0 included, and what is shed on the
//! way to a slow subscriber is counted exactly. The writer falls behind by construction (ten
//! publishers against one SQLite writer), so no timing is needed for these tests to mean
//! something; the generous waits below only end a test that would otherwise hang.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ingest::broker::{BrokerSettings, Listener, Transport};
use ingest::decode::Decoder;
use ingest::mqtt::SourceSettings;
use ingest::writer_thread::Maintenance;
use ingest::{Ingest, IngestConfig};
use meshcore::crypto::Keyring;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const PUBLISHERS: usize = 10;
const PER_PUBLISHER: usize = 20_000;

fn config(db: &Path) -> IngestConfig {
    IngestConfig {
        db_path: db.to_path_buf(),
        sources: Vec::new(),
        decoder: Decoder {
            keyring: Keyring::with_public(),
            ..Decoder::default()
        },
        maintenance: Maintenance::default(),
        maintenance_interval: Duration::from_secs(3600),
        source_settings: SourceSettings::default(),
        status_file: None,
        mbcap: None,
    }
}

/// Observer `i`'s key.
fn observer(i: usize) -> String {
    format!("{:064x}", 0xA000 + i)
}

/// A real captured ACK frame (`ack_flood_4hops`: `0D04B891647E` + CRC `BB40BA70`) with the CRC
/// replaced by `n`, so each `n` is a distinct packet heard over the same 4-hop path.
fn packet_message(n: usize) -> Vec<u8> {
    format!(
        r#"{{"origin":"load","direction":"rx","raw":"0D04B891647E{:08X}","SNR":"7","RSSI":"-90"}}"#,
        n as u32
    )
    .into_bytes()
}

/// [`packet_message`] with an extra `pad` field, which ingest ignores.
fn padded(n: usize, pad: &str) -> Vec<u8> {
    let mut m = packet_message(n);
    m.pop();
    m.extend_from_slice(format!(r#","pad":"{pad}"}}"#).as_bytes());
    m
}

fn query(db: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

async fn start(db: &Path) -> (Ingest, SocketAddr) {
    let mut ingest = Ingest::start(config(db)).unwrap();
    let listener = Listener::bind(Transport::Tcp, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addrs = ingest
        .serve_embedded_broker(vec![listener], None, BrokerSettings::default())
        .unwrap();
    (ingest, addrs[0].1)
}

/// Publishes `PER_PUBLISHER` messages as observer `i` as fast as the client allows, and
/// returns once every one is acknowledged (QoS 1) or written to the socket (QoS 0).
async fn publish_all(addr: SocketAddr, i: usize, qos: QoS) {
    let mut opts = MqttOptions::new(format!("load-{i}"), addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(60));
    opts.set_inflight(100);
    let (client, mut el) = AsyncClient::new(opts, 256);
    let topic = format!("meshcore/SEA/{}/packets", observer(i));
    let sender = tokio::spawn(async move {
        for n in 0..PER_PUBLISHER {
            client
                .publish(topic.clone(), qos, false, packet_message(n))
                .await
                .unwrap();
        }
        // A QoS 1 ping-pong after the last publish: once its PUBACK is back, every earlier
        // packet has been read by the broker (TCP and MQTT keep order).
        client
            .publish(
                format!("meshcore/SEA/{}/status", observer(i)),
                QoS::AtLeastOnce,
                false,
                br#"{"status":"online"}"#.to_vec(),
            )
            .await
            .unwrap();
        client
    });
    let mut acked = 0usize;
    let want = match qos {
        QoS::AtMostOnce => 1,
        _ => PER_PUBLISHER + 1,
    };
    while acked < want {
        match el.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => panic!("publisher {i}: {e}"),
        }
    }
    let client = sender.await.unwrap();
    let _ = client.disconnect().await;
}

async fn run_load(qos: QoS) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let (ingest, addr) = start(&db).await;
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|i| tokio::spawn(publish_all(addr, i, qos)))
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    ingest.flush().await;
    let stats = ingest.stats();
    let published = (PUBLISHERS * PER_PUBLISHER) as i64;
    let stored = query(&db, "SELECT count(*) FROM observations");
    let sources = stats.to_json();
    let shed = sources["sources"]["embedded"]["shed"].as_i64().unwrap();
    assert_eq!(
        stored,
        published,
        "{qos:?}: stored {stored} of {published}; counters {:?}",
        stats.counters()
    );
    assert_eq!(
        shed,
        published - stored,
        "shed count is what was not stored"
    );
    assert_eq!(
        query(&db, "SELECT count(*) FROM transmissions"),
        PER_PUBLISHER as i64
    );
    assert_eq!(stats.get("packets"), published as u64);
    ingest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_burst_from_ten_unpaced_publishers_is_stored_whole() {
    run_load(QoS::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_overload_sheds_nothing_on_the_way_to_the_writer() {
    run_load(QoS::AtMostOnce).await;
}

/// A PUBACK means committed: when it arrives, the row is in the database (read through a
/// separate connection, as after a `kill -9`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puback_is_sent_only_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let (ingest, addr) = start(&db).await;
    let mut opts = MqttOptions::new("durable", addr.ip().to_string(), addr.port());
    opts.set_inflight(1);
    let (client, mut el) = AsyncClient::new(opts, 16);
    for n in 0..50 {
        client
            .publish(
                format!("meshcore/SEA/{}/packets", observer(0)),
                QoS::AtLeastOnce,
                false,
                packet_message(n),
            )
            .await
            .unwrap();
        loop {
            if let Event::Incoming(Packet::PubAck(_)) = el.poll().await.unwrap() {
                break;
            }
        }
        assert_eq!(
            query(&db, "SELECT count(*) FROM observations"),
            n as i64 + 1,
            "acknowledged before it was committed"
        );
    }
    ingest.shutdown().await;
}

/// A subscriber that stops reading has QoS 0 copies shed, counted exactly; ingest goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_shed_and_counted_without_slowing_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let (ingest, addr) = start(&db).await;

    let mut opts = MqttOptions::new("watcher", addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(600));
    let (sub, mut sub_el) = AsyncClient::new(opts, 16);
    sub.subscribe("meshcore/#", QoS::AtMostOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = sub_el.poll().await.unwrap() {
            break;
        }
    }
    // The subscriber's event loop is not polled now: its socket is not read. Messages carry 8 KiB
    // of padding so that together (40 MB) they overflow the loopback socket buffers.
    let total = 5_000usize;
    let pad = "x".repeat(8 * 1024);
    let mut opts = MqttOptions::new("observer", addr.ip().to_string(), addr.port());
    opts.set_inflight(100);
    let (client, mut el) = AsyncClient::new(opts, 256);
    let acks = Arc::new(AtomicU64::new(0));
    let acks2 = acks.clone();
    let poller = tokio::spawn(async move {
        while acks2.load(Ordering::Relaxed) < total as u64 {
            if let Ok(Event::Incoming(Packet::PubAck(_))) = el.poll().await {
                acks2.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    for n in 0..total {
        client
            .publish(
                format!("meshcore/SEA/{}/packets", observer(1)),
                QoS::AtLeastOnce,
                false,
                padded(n, &pad),
            )
            .await
            .unwrap();
    }
    poller.await.unwrap();
    ingest.flush().await;
    assert_eq!(
        query(&db, "SELECT count(*) FROM observations"),
        total as i64
    );
    let stats = ingest.stats();
    let shed = stats.get("broker.subscriber_shed");
    assert!(
        shed > 0,
        "a subscriber that never reads must have been shed"
    );
    assert_eq!(
        stats.to_json()["sources"]["embedded"]["shed"].as_u64(),
        Some(shed)
    );
    // Now read: exactly the copies that were not shed arrive.
    let mut delivered = 0u64;
    while delivered < total as u64 - shed {
        match tokio::time::timeout(Duration::from_secs(60), sub_el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(_)))) => delivered += 1,
            Ok(Ok(_)) => {}
            other => panic!("subscriber: {other:?} after {delivered}"),
        }
    }
    assert_eq!(delivered + shed, total as u64);
    ingest.shutdown().await;
}

/// A publish bigger than the broker reads into memory (128 KiB) is skipped in small pieces,
/// counted and acknowledged; the same connection goes on and its next message is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_publish_is_skipped_and_the_connection_lives() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let (ingest, addr) = start(&db).await;
    let mut opts = MqttOptions::new("big", addr.ip().to_string(), addr.port());
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, 16);
    let topic = format!("meshcore/SEA/{}/packets", observer(3));
    client
        .publish(
            topic.clone(),
            QoS::AtLeastOnce,
            false,
            padded(1, &"x".repeat(200 * 1024)),
        )
        .await
        .unwrap();
    client
        .publish(topic, QoS::AtLeastOnce, false, packet_message(2))
        .await
        .unwrap();
    let mut acks = 0;
    while acks < 2 {
        if let Event::Incoming(Packet::PubAck(_)) = el.poll().await.unwrap() {
            acks += 1;
        }
    }
    let stats = ingest.stats();
    assert_eq!(stats.get("broker.oversized"), 1);
    assert_eq!(stats.get("refused.too_large"), 1);
    assert_eq!(stats.get("mqtt.connection_errors"), 0);
    assert_eq!(query(&db, "SELECT count(*) FROM observations"), 1);
    ingest.shutdown().await;
}
