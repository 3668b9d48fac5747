//! The writer role fed by publishers it cannot trust: hostile clients of a shared upstream
//! broker must neither cut meshlens off from the valid traffic nor grow it without bound.
//!
//! The broker tests run against Debian's mosquitto, which `.ci/run` installs and starts,
//! exporting its address as `MESHLENS_TEST_MOSQUITTO`; without the variable they say so and
//! pass. Each subscribes to its own topic subtree (a region code unique to the run), so tests
//! sharing the broker never see each other's messages. The observer tests feed the publish
//! pipeline directly, exactly as every broker does.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ingest::config::SourceConfig;
use ingest::decode::Decoder;
use ingest::mqtt::{MAX_MQTT_PACKET, SourceSettings};
use ingest::writer_thread::Maintenance;
use ingest::{Ingest, IngestConfig};
use rumqttc::{AsyncClient, MqttOptions, QoS};

const OBS: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

fn mosquitto() -> Option<SocketAddr> {
    let Ok(addr) = std::env::var("MESHLENS_TEST_MOSQUITTO") else {
        eprintln!("MESHLENS_TEST_MOSQUITTO not set: the upstream-broker tests do not run");
        return None;
    };
    Some(
        addr.parse()
            .expect("MESHLENS_TEST_MOSQUITTO must be host:port"),
    )
}

/// A region code (at most 16 characters, as the topic parser requires) that no other test or
/// run uses, so the topic subtree is this test's own.
fn unique_region(test: char) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let unique = (u64::from(std::process::id()) << 24) | u64::from(nanos & 0xff_ffff);
    format!("{test}{unique:x}")
}

fn config(db: &Path, broker: SocketAddr, region: &str) -> IngestConfig {
    let mut source = SourceConfig::from_url("upstream", &format!("mqtt://{broker}")).unwrap();
    source.topics = vec![format!("meshcore/{region}/#")];
    IngestConfig {
        db_path: db.to_path_buf(),
        sources: vec![source],
        decoder: Decoder::default(),
        maintenance: Maintenance::default(),
        maintenance_interval: Duration::from_secs(3600),
        source_settings: SourceSettings::default(),
        status_file: None,
        mbcap: None,
    }
}

/// A publisher allowed to send packets far over meshlens' limit, as a hostile client of a
/// shared broker would.
fn publisher(broker: SocketAddr, name: &str) -> AsyncClient {
    let mut opts = MqttOptions::new(
        format!("{name}-{}", std::process::id()),
        broker.ip().to_string(),
        broker.port(),
    );
    let big = 2 * MAX_MQTT_PACKET;
    opts.set_max_packet_size(big, big);
    let (client, mut el) = AsyncClient::new(opts, 1000);
    tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    client
}

async fn publish(c: &AsyncClient, topic: &str, payload: Vec<u8>) {
    c.publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
}

/// A valid ACK packet, distinct for each `i` (its payload is `i`).
fn valid(i: u32) -> Vec<u8> {
    format!(r#"{{"origin":"obs","raw":"0d00{i:08x}","SNR":"5","RSSI":"-90"}}"#).into_bytes()
}

/// Waits until `cond` holds (checked every 20 ms). The two-minute limit only ends a test that
/// would otherwise hang; a busy machine never comes near it.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..6_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Publishes a probe status until the source has counted one: connected and subscribed.
async fn wait_subscribed(ingest: &Ingest, client: &AsyncClient, region: &str) {
    let stats = ingest.stats();
    let before = stats.get("statuses");
    for _ in 0..3_000 {
        publish(
            client,
            &format!("meshcore/{region}/probe/status"),
            br#"{"status":"online"}"#.to_vec(),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        if stats.get("statuses") > before {
            return;
        }
    }
    panic!("subscription never became active: {:?}", stats.sources());
}

fn observations(db: &Path) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("SELECT count(*) FROM observations", [], |r| r.get(0))
        .unwrap()
}

/// Oversized publishes (1.2 MB, as in the report, and 8 MB) interleaved with valid packets on
/// the same broker connection: every valid packet is stored, every oversized one is refused
/// and counted, and the connection is never dropped. With the former 1 MiB client limit
/// each oversized publish cost a reconnect and the messages behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_publishes_are_refused_without_losing_the_connection() {
    let Some(broker) = mosquitto() else { return };
    let region = unique_region('B');
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let ingest = Ingest::start(config(&db, broker, &region)).unwrap();
    let client = publisher(broker, "hostile");
    wait_subscribed(&ingest, &client, &region).await;
    let stats = ingest.stats();
    assert_eq!(stats.get("mqtt.connects"), 1);

    const VALID: u32 = 300;
    let topic = format!("meshcore/{region}/{OBS}/packets");
    let mut oversized = 0;
    for i in 0..VALID {
        publish(&client, &topic, valid(i)).await;
        if i % 30 == 15 {
            let size = if oversized == 5 { 8_000_000 } else { 1_200_000 };
            publish(&client, &topic, vec![b'x'; size]).await;
            oversized += 1;
        }
        if i % 10 == 0 {
            // Paced like real traffic, so that the broker has no reason to shed QoS 0 copies.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    wait_for("every message", || {
        stats.get("packets") >= u64::from(VALID) && stats.get("refused.too_large") >= oversized
    })
    .await;
    ingest.flush().await;

    assert_eq!(observations(&db), i64::from(VALID), "valid packets lost");
    assert_eq!(stats.get("refused.too_large"), oversized);
    assert_eq!(stats.get("mqtt.oversized_disconnects"), 0);
    assert_eq!(stats.get("mqtt.connects"), 1, "{:?}", stats.sources());
    assert_eq!(stats.get("mqtt.connection_errors"), 0);
    assert_eq!(stats.sources()["upstream"].disconnects, 0);
    ingest.shutdown().await;
}

/// A publish over even the raised limit still costs the connection (rumqttc cannot skip a
/// packet): it is counted as refused, and the source is back within seconds, its traffic
/// stored again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_over_the_client_limit_costs_one_quick_reconnect() {
    let Some(broker) = mosquitto() else { return };
    let region = unique_region('H');
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let ingest = Ingest::start(config(&db, broker, &region)).unwrap();
    let client = publisher(broker, "huge");
    wait_subscribed(&ingest, &client, &region).await;
    let stats = ingest.stats();
    let topic = format!("meshcore/{region}/{OBS}/packets");
    publish(&client, &topic, valid(1)).await;
    publish(&client, &topic, vec![b'x'; MAX_MQTT_PACKET + 1]).await;
    wait_for("the oversized disconnect", || {
        stats.get("mqtt.oversized_disconnects") == 1
    })
    .await;
    assert_eq!(stats.get("refused.too_large"), 1);
    wait_for("the reconnect", || stats.get("mqtt.connects") == 2).await;
    wait_subscribed(&ingest, &client, &region).await;
    publish(&client, &topic, valid(2)).await;
    wait_for("the packet after the reconnect", || {
        stats.get("packets") >= 2
    })
    .await;
    ingest.flush().await;
    assert_eq!(observations(&db), 2);
    ingest.shutdown().await;
}

fn query(db: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// 500 new observer keys from one publisher in a burst (the report's flood was 20,000 in
/// 10 s), at 10 new observers a minute: the burst (ten minutes' worth, 100) is created, the
/// rest is refused and counted, and an observer already known keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_flood_is_bounded_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let per_minute = 10;
    let burst = 10 * i64::from(per_minute);
    let mut cfg = config(&db, "127.0.0.1:1".parse().unwrap(), "SEA");
    cfg.sources.clear();
    cfg.maintenance = Maintenance {
        new_observers_per_minute: Some(per_minute),
        ..Maintenance::default()
    };
    let ingest = Ingest::start(cfg).unwrap();
    let pipeline = ingest.pipeline("flood", "mqtt://127.0.0.1:1").unwrap();
    let known = format!("meshcore/SEA/{OBS}/packets");
    pipeline.publish(&known, &valid(0), false).await;
    ingest.flush().await;
    let started = std::time::Instant::now();
    const FLOOD: i64 = 500;
    for i in 0..FLOOD {
        let topic = format!("meshcore/SEA/{i:064x}/packets");
        pipeline.publish(&topic, &valid(1 + i as u32), false).await;
    }
    pipeline.publish(&known, &valid(100_000), false).await;
    ingest.flush().await;
    // The bucket refills at 10 a minute of ingest time: allow what the run's own duration
    // could have added, so the bound holds on any machine.
    let refill = (started.elapsed().as_secs_f64() * f64::from(per_minute) / 60.0).ceil() as i64;
    let observers = query(&db, "SELECT count(*) FROM observers");
    assert!(
        (burst..=burst + refill + 1).contains(&observers),
        "{observers} observers"
    );
    let stats = ingest.stats();
    // Every packet was counted; the flood's surplus was refused with its own counter.
    assert_eq!(stats.get("packets"), FLOOD as u64 + 2);
    let refused = stats.get("refused.observer_rate") as i64;
    assert_eq!(refused, FLOOD + 1 - observers);
    assert_eq!(
        query(&db, "SELECT count(*) FROM observations"),
        observers + 1
    );
    assert_eq!(
        query(
            &db,
            &format!(
                "SELECT count(*) FROM observations o JOIN observers ob ON ob.idx = o.observer_idx
                 WHERE ob.id = '{OBS}'"
            )
        ),
        2,
        "the known observer was refused"
    );
    // The writer drains and stops once every way into it is gone.
    drop(pipeline);
    ingest.shutdown().await;
}

/// The new-observer rate is per source, and per client of the embedded broker: one publisher
/// flooding new observer keys spends its own burst and is refused, counted under its source,
/// while another source's (or another client's) new observer, after the flood, is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flooding_source_does_not_spend_the_others_observer_budget() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let per_minute = 2;
    let burst = 10 * i64::from(per_minute);
    let mut cfg = config(&db, "127.0.0.1:1".parse().unwrap(), "SEA");
    cfg.sources.clear();
    cfg.maintenance = Maintenance {
        new_observers_per_minute: Some(per_minute),
        ..Maintenance::default()
    };
    let ingest = Ingest::start(cfg).unwrap();
    let flood = ingest.pipeline("flood", "mqtt://127.0.0.1:1").unwrap();
    let honest = ingest.pipeline("honest", "mqtt://127.0.0.1:2").unwrap();
    let embedded = ingest.pipeline("embedded", "mqtt://127.0.0.1:3").unwrap();
    let (abuser, neighbour) = (
        embedded.for_client("198.51.100.7"),
        embedded.for_client("198.51.100.8"),
    );
    const FLOOD: i64 = 100;
    for i in 0..FLOOD {
        let topic = format!("meshcore/SEA/{i:064x}/packets");
        flood.publish(&topic, &valid(1 + i as u32), false).await;
        let topic = format!("meshcore/SEA/{:064x}/packets", 1_000 + i);
        abuser
            .publish(&topic, &valid(1_000 + i as u32), false)
            .await;
    }
    ingest.flush().await;
    let before = query(&db, "SELECT count(*) FROM observers");
    // After both floods, each over its limit: the other source's and the other client's new
    // observers are still created.
    let new_a = format!("{:064x}", 9_000);
    let new_b = format!("{:064x}", 9_001);
    honest
        .publish(
            &format!("meshcore/SEA/{new_a}/packets"),
            &valid(9_000),
            false,
        )
        .await;
    neighbour
        .publish(
            &format!("meshcore/SEA/{new_b}/packets"),
            &valid(9_001),
            false,
        )
        .await;
    ingest.flush().await;
    for id in [&new_a, &new_b] {
        assert_eq!(
            query(
                &db,
                &format!("SELECT count(*) FROM observers WHERE id = '{id}'")
            ),
            1,
            "{id} was refused"
        );
    }
    assert_eq!(query(&db, "SELECT count(*) FROM observers"), before + 2);
    // Each flood got about its burst (plus what the run's duration refilled), and its
    // surplus is counted under its own source; the honest ones were refused nothing.
    let sources = ingest.stats().sources();
    for name in ["flood", "embedded"] {
        let refused = sources[name].observer_rate_refused as i64;
        assert!(
            (FLOOD - burst - 2..=FLOOD - burst).contains(&refused),
            "{name}: {refused} refused"
        );
    }
    assert_eq!(sources["honest"].observer_rate_refused, 0);
    assert_eq!(
        ingest.stats().get("refused.observer_rate"),
        sources["flood"].observer_rate_refused + sources["embedded"].observer_rate_refused
    );
    let json = ingest.stats().to_json();
    assert_eq!(
        json["sources"]["flood"]["observer_rate_refused"],
        sources["flood"].observer_rate_refused
    );
    drop((flood, honest, embedded, abuser, neighbour));
    ingest.shutdown().await;
}

/// The maintenance step deletes observers silent for longer than the observer retention,
/// but never one whose observations are still stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_observers_are_deleted_by_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut cfg = config(&db, "127.0.0.1:1".parse().unwrap(), "SEA");
    cfg.sources.clear();
    cfg.maintenance = Maintenance {
        observer_retention: Some(Duration::from_secs(60)),
        ..Maintenance::default()
    };
    cfg.maintenance_interval = Duration::from_millis(50);
    let ingest = Ingest::start(cfg).unwrap();
    let tx = ingest.sender();
    let long_ago = ingest::writer_thread::now_ms() - 3_600_000;
    let status = |id: &str| {
        ingest::status_item(
            ingest::message::StatusMessage {
                observer: Some(ingest::message::TopicObserver {
                    id: id.into(),
                    iata: "SEA".into(),
                }),
                status: Some("online".into()),
                ..Default::default()
            },
            long_ago,
            false,
        )
    };
    // `silent` spoke an hour ago, `recent` speaks now, and `packets_old` spoke an hour ago but
    // its packet is still stored. (Maintenance may run between any two of these: none of the
    // others is ever deletable.)
    tx.send(ingest::writer_thread::WriterMsg::Item(status("silent")))
        .await
        .unwrap();
    ingest
        .pipeline("test", "mqtt://127.0.0.1:1")
        .unwrap()
        .publish(
            "meshcore/SEA/recent/status",
            br#"{"status":"online"}"#,
            false,
        )
        .await;
    let old_packet = ingest::message::PacketMessage {
        observer: ingest::message::TopicObserver {
            id: "packets_old".into(),
            iata: "SEA".into(),
        },
        origin: None,
        region: None,
        raw: vec![0x0d, 0x00, 1, 2, 3, 4],
        snr: None,
        rssi: None,
        score: None,
        airtime_ms: None,
    };
    let (item, _) = Decoder::default().item(old_packet, long_ago);
    tx.send(ingest::writer_thread::WriterMsg::Item(item))
        .await
        .unwrap();
    let stats = ingest.stats();
    wait_for("observer retention", || {
        stats.get("retention.observers_deleted") >= 1
    })
    .await;
    ingest.flush().await;
    let c = rusqlite::Connection::open(&db).unwrap();
    let mut stmt = c.prepare("SELECT id FROM observers ORDER BY id").unwrap();
    let ids: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids, ["packets_old", "recent"]);
    assert_eq!(stats.get("retention.observers_deleted"), 1);
    drop(tx);
    ingest.shutdown().await;
}
