//! The writer role against a real MQTT broker over TCP: the embedded broker on an ephemeral
//! port, a publisher speaking as observers do, and the database checked afterwards. A small
//! TCP proxy between ingest and the broker lets a test cut the connection ("broker restart").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ingest::config::SourceConfig;
use ingest::decode::Decoder;
use ingest::mqtt::SourceSettings;
use ingest::writer_thread::Maintenance;
use ingest::{Ingest, IngestConfig};
use meshcore::crypto::Keyring;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

fn vector(name: &str) -> String {
    let dir = std::env::var_os("MESHLENS_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors")
        });
    std::fs::read_to_string(dir.join("packets.jsonl"))
        .expect("testdata/vectors/packets.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["name"] == name)
        .map(|v| v["hex"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no vector {name}"))
}

const OBS_A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const OBS_B: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";

fn config(db: &Path, broker: SocketAddr, maintenance: Maintenance) -> IngestConfig {
    IngestConfig {
        db_path: db.to_path_buf(),
        sources: vec![SourceConfig::from_url("test", &format!("mqtt://{broker}")).unwrap()],
        decoder: Decoder {
            keyring: Keyring::with_public(),
            ..Decoder::default()
        },
        maintenance,
        maintenance_interval: Duration::from_millis(200),
        source_settings: SourceSettings::default(),
        status_file: None,
        mbcap: None,
    }
}

async fn publisher(broker: SocketAddr) -> AsyncClient {
    let mut opts = MqttOptions::new(
        format!("pub-{}", broker.port()),
        broker.ip().to_string(),
        broker.port(),
    );
    opts.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
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

async fn publish(c: &AsyncClient, observer: &str, kind: &str, payload: impl Into<Vec<u8>>) {
    c.publish(
        format!("meshcore/SEA/{observer}/{kind}"),
        QoS::AtLeastOnce,
        false,
        payload.into(),
    )
    .await
    .unwrap();
}

fn packet_json(hex: &str, snr: &str) -> String {
    format!(r#"{{"origin":"obs","direction":"rx","raw":"{hex}","SNR":"{snr}","RSSI":"-92dBm"}}"#)
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

/// Waits until the source has connected and its subscription is active, by publishing a
/// probe status until it is counted.
async fn wait_subscribed(ingest: &Ingest, client: &AsyncClient) {
    let stats = ingest.stats();
    for _ in 0..3_000 {
        publish(client, "probe", "status", r#"{"status":"online"}"#).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        if stats.get("statuses") > 0 {
            return;
        }
    }
    panic!("subscription never became active: {:?}", stats.sources());
}

fn query(db: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_statuses_and_hostile_input_through_a_real_broker() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let broker = ingest::broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let ingest = Ingest::start(config(&db, broker, Maintenance::default())).unwrap();
    let client = publisher(broker).await;
    wait_subscribed(&ingest, &client).await;

    let grp = vector("grp_txt_public_channel_2hops");
    let advert = vector("advert_flood_zero_hop_repeater");
    let forged = vector("advert_flood_corrupted_bad_signature");
    // One packet heard by two observers, and by A twice on the same path: two observations.
    publish(&client, OBS_A, "packets", packet_json(&grp, "11")).await;
    publish(&client, OBS_B, "packets", packet_json(&grp, "-3.5")).await;
    publish(&client, OBS_A, "packets", packet_json(&grp, "11")).await;
    publish(&client, OBS_A, "packets", packet_json(&advert, "9")).await;
    publish(&client, OBS_A, "packets", packet_json(&forged, "9")).await;
    publish(
        &client,
        OBS_A,
        "status",
        r#"{"status":"online","model":"Heltec V3","firmware_version":"1.14.1","stats":{"battery_mv":4100,"noise_floor":"-112dBm"}}"#,
    )
    .await;
    // Hostile input: every kind is counted, none stops the valid packet that follows.
    let hostile: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"[1,2]".to_vec(),
        br#"{"snr":1}"#.to_vec(),
        br#"{"raw":"XYZ"}"#.to_vec(),
        br#"{"raw":"0AC0D69F"}"#.to_vec(),
        format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        vec![b'x'; 300 * 1024],
    ];
    for h in hostile {
        publish(&client, OBS_B, "packets", h).await;
    }
    let ack = vector("ack_flood_4hops");
    publish(&client, OBS_B, "packets", packet_json(&ack, "1")).await;

    let stats = ingest.stats();
    wait_for("all messages", || {
        stats.get("packets") >= 6 && stats.get("refused.too_large") == 1
    })
    .await;
    ingest.flush().await;

    assert_eq!(query(&db, "SELECT count(*) FROM transmissions"), 4);
    assert_eq!(query(&db, "SELECT count(*) FROM observations"), 5);
    assert_eq!(
        query(
            &db,
            "SELECT count(*) FROM observers WHERE id IN ('a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1','b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2')"
        ),
        2
    );
    assert_eq!(
        query(
            &db,
            "SELECT count(*) FROM transmissions WHERE channel = 'Public'"
        ),
        1
    );
    // Only the verified advert made a node; the forged one was recorded with its reason.
    assert_eq!(query(&db, "SELECT count(*) FROM nodes"), 1);
    assert_eq!(
        query(
            &db,
            "SELECT count(*) FROM rejected_packets WHERE reason = 'invalid_signature'"
        ),
        1
    );
    assert_eq!(
        query(
            &db,
            "SELECT count(*) FROM rejected_packets WHERE reason = 'reserved_hash_size'"
        ),
        1
    );
    assert_eq!(
        query(
            &db,
            &format!("SELECT battery_mv FROM observers WHERE id = '{OBS_A}'")
        ),
        4100
    );
    for counter in [
        "refused.not_object",
        "refused.no_raw",
        "refused.bad_hex",
        "refused.too_large",
        "invalid_frame.reserved_hash_size",
        "refused_advert.invalid_signature",
    ] {
        assert_eq!(stats.get(counter), 1, "{counter}: {:?}", stats.counters());
    }
    // "not json" and the deeply nested document are both refused by the JSON parser.
    assert_eq!(stats.get("refused.not_json"), 2);
    ingest.shutdown().await;
}

/// A TCP proxy that can drop every connection and stop accepting for a while.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<Notify>,
}

async fn proxy(target: SocketAddr) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cut = Arc::new(Notify::new());
    let cut2 = cut.clone();
    tokio::spawn(async move {
        let mut listener = listener;
        loop {
            tokio::select! {
                acc = listener.accept() => {
                    let Ok((mut inbound, _)) = acc else { continue };
                    let cut = cut2.clone();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.notified() => {}
                        }
                    });
                }
                _ = cut2.notified() => {
                    // The "broker" is down for a second: nothing listens.
                    drop(listener);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    listener = TcpListener::bind(addr).await.unwrap();
                }
            }
        }
    });
    Proxy { addr, cut }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_broker_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let broker = ingest::broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let proxy = proxy(broker).await;
    let ingest = Ingest::start(config(&db, proxy.addr, Maintenance::default())).unwrap();
    let client = publisher(broker).await;
    wait_subscribed(&ingest, &client).await;
    let stats = ingest.stats();
    assert_eq!(stats.get("mqtt.connects"), 1);

    proxy.cut.notify_waiters();
    wait_for("the disconnect to be noticed", || {
        stats.get("mqtt.connection_errors") >= 1
    })
    .await;
    wait_for("a reconnect", || stats.get("mqtt.connects") >= 2).await;
    // After the reconnect the subscription is back: new packets arrive.
    let before = stats.get("statuses");
    for _ in 0..100 {
        publish(
            &client,
            OBS_A,
            "packets",
            packet_json(&vector("ack_flood_4hops"), "1"),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if stats.get("packets") > 0 {
            break;
        }
    }
    assert!(
        stats.get("packets") > 0,
        "no packet after reconnect; statuses before {before}"
    );
    let state = stats.sources()["test"].clone();
    assert_eq!(state.state, "connected");
    assert!(state.disconnects >= 1 && state.last_error.is_some());
    ingest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_runs_without_any_broker_and_applies_retention() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    // Seed an old packet and an old node directly, then start ingest against a dead broker.
    {
        let mut w = store::Writer::open(&db, 0).unwrap();
        let mut p = store::PacketRecord {
            observer: store::Observer {
                id: OBS_A.into(),
                name: None,
                iata: None,
            },
            received_at: 1_000,
            raw: vec![0x0d, 0, 1, 2, 3, 4],
            head_len: 2,
            hash: 42,
            route_type: 1,
            payload_type: 3,
            payload_version: 0,
            path_len: 0,
            snr: None,
            rssi: None,
            score: None,
            airtime_ms: None,
            clock: None,
            from_pubkey: None,
            channel: None,
            scope: None,
            advert: None,
            reject_reason: None,
        };
        w.write_batch(&[store::Item::Packet(p.clone())]).unwrap();
        p.hash = 43;
        p.advert = Some(store::Advert {
            public_key: "cd".repeat(32),
            name: Some("old".into()),
            role: store::Role::Repeater,
            location: None,
            advert_time: 1,
            foreign: false,
        });
        w.write_batch(&[store::Item::Packet(p)]).unwrap();
    }
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let ingest = Ingest::start(config(
        &db,
        dead,
        Maintenance {
            packet_retention: Some(Duration::from_secs(3600)),
            node_silence: Duration::from_secs(3600),
            ..Maintenance::default()
        },
    ))
    .unwrap();
    let stats = ingest.stats();
    wait_for("retention", || {
        stats.get("retention.transmissions_deleted") == 2
    })
    .await;
    wait_for("node deactivation", || {
        stats.get("retention.nodes_deactivated") == 1
    })
    .await;
    ingest.flush().await;
    assert_eq!(query(&db, "SELECT count(*) FROM transmissions"), 0);
    assert_eq!(query(&db, "SELECT count(*) FROM observations"), 0);
    assert_eq!(query(&db, "SELECT count(*) FROM inactive_nodes"), 1);
    assert!(stats.get("mqtt.connects") == 0 && stats.get("mqtt.connection_errors") >= 1);
    ingest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_reconnects_a_source_that_went_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let broker = ingest::broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut cfg = config(&db, broker, Maintenance::default());
    cfg.source_settings.quiet_timeout = Duration::from_millis(400);
    let ingest = Ingest::start(cfg).unwrap();
    let stats = ingest.stats();
    // Connected, but nothing is published: the watchdog must rebuild the connection.
    wait_for("a watchdog reconnect", || {
        stats.get("mqtt.watchdog_reconnects") >= 1
    })
    .await;
    wait_for("the reconnect", || stats.get("mqtt.connects") >= 2).await;
    assert_eq!(
        stats.sources()["test"].watchdog_reconnects,
        stats.get("mqtt.watchdog_reconnects")
    );
    // And traffic flows on the new connection.
    let client = publisher(broker).await;
    wait_subscribed(&ingest, &client).await;
    ingest.shutdown().await;
}

/// Interop with Debian's mosquitto, which `.ci/run` installs and starts, exporting its
/// address as `MESHLENS_TEST_MOSQUITTO` (host:port). Without it the test says so and passes:
/// the same paths are covered against the embedded broker above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_with_mosquitto_when_available() {
    let Some(addr) = std::env::var("MESHLENS_TEST_MOSQUITTO").ok() else {
        eprintln!("MESHLENS_TEST_MOSQUITTO not set: mosquitto interop not exercised in this run");
        return;
    };
    let broker: SocketAddr = addr
        .parse()
        .expect("MESHLENS_TEST_MOSQUITTO must be host:port");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let ingest = Ingest::start(config(&db, broker, Maintenance::default())).unwrap();
    let client = publisher(broker).await;
    wait_subscribed(&ingest, &client).await;
    let advert = vector("advert_flood_2byte_hash_5hops");
    publish(&client, OBS_A, "packets", packet_json(&advert, "4.5")).await;
    publish(&client, OBS_B, "packets", packet_json(&advert, "-1")).await;
    let stats = ingest.stats();
    wait_for("two packets", || stats.get("packets") >= 2).await;
    ingest.flush().await;
    assert_eq!(query(&db, "SELECT count(*) FROM transmissions"), 1);
    assert_eq!(query(&db, "SELECT count(*) FROM observations"), 2);
    assert_eq!(query(&db, "SELECT count(*) FROM nodes"), 1);
    ingest.shutdown().await;
}

/// Shutdown commits everything already handed to the writer, however much is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let ingest = Ingest::start(IngestConfig {
        sources: Vec::new(),
        ..config(&db, "127.0.0.1:1".parse().unwrap(), Maintenance::default())
    })
    .unwrap();
    let tx = ingest.sender();
    let decoder = Decoder::default();
    for i in 0..20_000u32 {
        let raw = [&[0x0du8, 0x00][..], &i.to_le_bytes()].concat();
        let msg = ingest::message::PacketMessage {
            observer: ingest::message::TopicObserver {
                id: OBS_A.into(),
                iata: "SEA".into(),
            },
            origin: None,
            region: None,
            raw,
            snr: None,
            rssi: None,
            score: None,
            airtime_ms: None,
        };
        let (item, _) = decoder.item(msg, ingest::writer_thread::now_ms());
        tx.send(ingest::writer_thread::WriterMsg::Item(item))
            .await
            .unwrap();
    }
    drop(tx);
    // No flush: shutdown alone must commit all 20,000.
    ingest.shutdown().await;
    assert_eq!(query(&db, "SELECT count(*) FROM observations"), 20_000);
}

/// The writer's snapshot apply: malformed files are a logged no-op, `unknown` never lowers a
/// stored value, and a missing file is silent.
#[test]
fn snapshot_apply_guards() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let key = "ab".repeat(32);
    let mut p = store::PacketRecord {
        observer: store::Observer {
            id: OBS_A.into(),
            name: None,
            iata: None,
        },
        received_at: ingest::writer_thread::now_ms(),
        raw: vec![0x11, 0, 1],
        head_len: 2,
        hash: 7,
        route_type: 1,
        payload_type: 4,
        payload_version: 0,
        path_len: 0,
        snr: None,
        rssi: None,
        score: None,
        airtime_ms: None,
        clock: None,
        from_pubkey: Some(key.clone()),
        channel: None,
        scope: None,
        advert: None,
        reject_reason: None,
    };
    p.advert = Some(store::Advert {
        public_key: key.clone(),
        name: None,
        role: store::Role::Repeater,
        location: None,
        advert_time: 1,
        foreign: false,
    });
    w.write_batch(&[store::Item::Packet(p)]).unwrap();
    w.conn()
        .execute(
            "UPDATE nodes SET multibyte_sup = 2, multibyte_evidence = 'advert'",
            [],
        )
        .unwrap();
    let snap = handoff::snapshot_path(dir.path());
    let stats = ingest::stats::Stats::default();
    let mut generation = 0;
    ingest::mbcap::apply(&mut w, &snap, &mut generation, &stats); // missing: silent
    assert_eq!(stats.get("mbcap.bad_snapshot"), 0);
    std::fs::create_dir_all(snap.parent().unwrap()).unwrap();
    std::fs::write(&snap, b"{not json").unwrap();
    ingest::mbcap::apply(&mut w, &snap, &mut generation, &stats);
    assert_eq!(stats.get("mbcap.bad_snapshot"), 1);
    let unknown = format!(
        r#"{{"version":1,"generation":5,"writtenAt":"2026-11-25T00:00:00Z","entries":[{{"public_key":"{key}","status":"unknown","evidence":"","max_hash_size":1,"upgraded_at":null}}]}}"#
    );
    std::fs::write(&snap, unknown).unwrap();
    ingest::mbcap::apply(&mut w, &snap, &mut generation, &stats);
    assert_eq!(stats.get("mbcap.skipped"), 1, "{:?}", stats.counters());
    let sup: i64 = w
        .conn()
        .query_row("SELECT multibyte_sup FROM nodes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sup, 2, "an unknown entry lowered a stored value");
}
