//! `meshlens simulate` publishes a simulated mesh that the writer ingests, and writes its
//! ground truth: the nodes, and the relays behind every published observation's path.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ingest::config::SourceConfig;
use ingest::decode::Decoder;
use ingest::mqtt::SourceSettings;
use ingest::writer_thread::Maintenance;
use ingest::{Ingest, IngestConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_publishes_what_ingest_stores() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ingest::broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let ingest = Ingest::start(IngestConfig {
        db_path: dir.path().join("meshlens.db"),
        sources: vec![SourceConfig::from_url("sim", &format!("mqtt://{broker}")).unwrap()],
        decoder: Decoder::default(),
        maintenance: Maintenance::default(),
        maintenance_interval: Duration::from_secs(3600),
        source_settings: SourceSettings::default(),
        status_file: None,
        mbcap: None,
    })
    .unwrap();
    let stats = ingest.stats();
    for _ in 0..6_000 {
        if stats.sources().get("sim").map(|s| s.state) == Some("connected") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let truth = dir.path().join("truth.json");
    let out = tokio::task::spawn_blocking({
        let truth = truth.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_meshlens"))
                .args([
                    "simulate",
                    "--mqtt",
                    &format!("mqtt://{broker}"),
                    "--nodes",
                    "30",
                    "--observers",
                    "4",
                ])
                .args([
                    "--duration",
                    "2m",
                    "--speed",
                    "max",
                    "--seed",
                    "5",
                    "--truth",
                ])
                .arg(&truth)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 30);
    assert_eq!(nodes.iter().filter(|n| n["is_observer"] == true).count(), 4);
    for k in [
        "public_key",
        "name",
        "role",
        "firmware",
        "multibyte_capable",
        "path_hash_mode",
        "lat",
        "lon",
    ] {
        assert!(nodes[0].get(k).is_some(), "truth lacks {k}");
    }
    for _ in 0..6_000 {
        if stats.get("packets") > 0 && stats.get("statuses") >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    ingest.flush().await;
    assert!(stats.get("packets") > 0, "{:?}", stats.counters());
    // Simulated frames are valid MeshCore: nothing was refused.
    let refused: u64 = stats
        .counters()
        .iter()
        .filter(|(k, _)| k.starts_with("refused") || k.starts_with("invalid_frame"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(refused, 0, "{:?}", stats.counters());
    // Usage errors exit 2.
    let bad = Command::new(env!("CARGO_BIN_EXE_meshlens"))
        .args(["simulate", "--speed", "fast"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    ingest.shutdown().await;
}

/// `meshlens run --demo` (the README's first command) shows a living network with confirmed
/// and suspected nodes within seconds, not after the first analytics minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_demo_shows_capability_within_seconds() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
    };
    let (http, mqtt) = (free(), free());
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshlens"))
        .args(["run", "--demo", "--data-dir"])
        .arg(dir.path())
        .args([
            "--http",
            &http.to_string(),
            "--mqtt-listen",
            &mqtt.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let mut last = serde_json::Value::Null;
    while start.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, body) = support::http::get(http, "/api/analytics/hash-sizes").await;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
            last = v;
            let confirmed = last["adoption"]["confirmed"].as_u64().unwrap_or(0);
            let suspected = last["adoption"]["suspected"].as_u64().unwrap_or(0);
            if confirmed > 0 && suspected > 0 {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        last["adoption"]["confirmed"].as_u64().unwrap_or(0) > 0
            && last["adoption"]["suspected"].as_u64().unwrap_or(0) > 0,
        "after {:?}: {}",
        start.elapsed(),
        last["adoption"]
    );
}

/// A subscriber to every observer's `packets` topic on `broker`, ready (SUBACK received) when
/// this returns; the payloads arrive on the channel in the order the broker routed them.
async fn subscribe_packets(
    broker: std::net::SocketAddr,
) -> (
    rumqttc::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
) {
    use rumqttc::{Event, Packet};
    let mut opts = rumqttc::MqttOptions::new("truth-paths-test", "127.0.0.1", broker.port());
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 100);
    client
        .subscribe("meshcore/+/+/packets", rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(p.payload.to_vec()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), ready_rx)
        .await
        .expect("no SUBACK within a minute")
        .unwrap();
    (client, rx)
}

/// Runs `meshlens simulate --speed max` against `broker` with `args`, writing the node truth
/// and the truth paths into `dir`; returns the published count it reports, the truth-path
/// lines, and the nodes' roles by public key.
async fn simulate_with_truth_paths(
    broker: std::net::SocketAddr,
    dir: &Path,
    args: &[&str],
) -> (usize, Vec<serde_json::Value>, HashMap<String, String>) {
    let truth = dir.join("truth.json");
    let paths = dir.join("paths.jsonl");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshlens"));
    cmd.args([
        "simulate",
        "--mqtt",
        &format!("mqtt://{broker}"),
        "--speed",
        "max",
    ])
    .args(args)
    .arg("--truth")
    .arg(&truth)
    .arg("--truth-paths")
    .arg(&paths);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let published: usize = stderr
        .split("published ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no published count in {stderr:?}"));
    let text = std::fs::read_to_string(&paths).unwrap();
    assert!(text.ends_with('\n'), "the last line is complete");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    let roles = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["public_key"].as_str().unwrap().to_owned(),
                n["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (published, lines, roles)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks every truth-path line's shape, then matches the lines one to one with the `count`
/// packet messages the subscriber receives: same hash and observer, one relay per hop of the
/// published raw frame, and each relay's key starting with its hop's bytes. Returns the number
/// of hops checked.
async fn check_against_published(
    lines: &[serde_json::Value],
    roles: &HashMap<String, String>,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
) -> usize {
    let mut expected: HashMap<(String, String, String), usize> = HashMap::new();
    let mut observers = HashSet::new();
    for l in lines {
        let obj = l.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys, ["hash", "observer", "relays"], "{l}");
        let hash = l["hash"].as_str().unwrap();
        let observer = l["observer"].as_str().unwrap();
        assert!(is_hex(hash, 16), "hash {hash:?}");
        assert!(is_hex(observer, 64), "observer {observer:?}");
        assert!(roles.contains_key(observer), "unknown observer {observer}");
        observers.insert(observer.to_owned());
        let relays: Vec<&str> = l["relays"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        for r in &relays {
            assert!(is_hex(r, 64), "relay {r:?}");
            let role = roles.get(*r).map(String::as_str);
            assert!(
                matches!(role, Some("repeater" | "room" | "sensor")),
                "relay {r} is a {role:?}"
            );
        }
        *expected
            .entry((hash.to_owned(), observer.to_owned(), relays.join(",")))
            .or_default() += 1;
    }
    let mut hops = 0;
    for i in 0..lines.len() {
        let payload = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("received {i} of {} packet messages", lines.len()))
            .unwrap();
        let m: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        let raw = hex::decode(m["raw"].as_str().unwrap()).unwrap();
        let p = meshcore::Packet::decode(&raw).unwrap();
        let hash = m["hash"].as_str().unwrap().to_lowercase();
        assert_eq!(hash, p.hash().to_string());
        let observer = m["origin_id"].as_str().unwrap().to_lowercase();
        // The line with this hash and observer whose relays name the frame's hops.
        let size = p.path_len().hash_size().bytes();
        let candidates: Vec<&(String, String, String)> = expected
            .keys()
            .filter(|(h, o, _)| *h == hash && *o == observer)
            .filter(|(_, _, relays)| {
                let relays: Vec<&str> = relays.split(',').filter(|r| !r.is_empty()).collect();
                if p.payload_type() == meshcore::PayloadType::Trace {
                    return relays.is_empty();
                }
                relays.len() == usize::from(p.hop_count())
                    && p.path_hops().zip(&relays).all(|(hop, r)| {
                        hex::decode(r).is_ok_and(|k| k.len() == 32 && k[..size] == *hop)
                    })
            })
            .collect();
        let Some(&key) = candidates.first() else {
            panic!(
                "no truth path for {hash} heard by {observer} with path {:02x?}",
                p.path()
            );
        };
        let key = key.clone();
        if let Some(n) = expected.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                expected.remove(&key);
            }
        }
        hops += usize::from(p.hop_count()) * usize::from(p.path_bytes_are_hops());
    }
    assert!(expected.is_empty(), "lines without a message: {expected:?}");
    hops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truth_paths_name_the_relays_of_every_published_observation() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ingest::broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let (_client, mut rx) = subscribe_packets(broker).await;

    // The default mesh.
    let (published, lines, roles) = simulate_with_truth_paths(
        broker,
        dir.path(),
        &[
            "--nodes",
            "30",
            "--observers",
            "4",
            "--duration",
            "2m",
            "--seed",
            "5",
        ],
    )
    .await;
    assert_eq!(roles.len(), 30);
    assert!(published > 0);
    assert_eq!(lines.len(), published, "one line per published observation");
    let hops = check_against_published(&lines, &roles, &mut rx).await;
    assert!(hops > 0, "no multi-hop path among {published} observations");

    // The collision mesh, smaller by --nodes/--observers: its role mix still applies.
    let (published, lines, roles) = simulate_with_truth_paths(
        broker,
        dir.path(),
        &[
            "--collision-mesh",
            "--nodes",
            "40",
            "--observers",
            "3",
            "--duration",
            "30s",
            "--seed",
            "7",
        ],
    )
    .await;
    assert_eq!(roles.len(), 40);
    let forwarding = roles.values().filter(|r| *r != "companion").count();
    assert!(forwarding > 22, "{forwarding} of 40 forward");
    assert_eq!(lines.len(), published);
    let hops = check_against_published(&lines, &roles, &mut rx).await;
    assert!(hops > 0);
}

#[test]
fn truth_paths_to_an_unwritable_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("no-such-dir").join("paths.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_meshlens"))
        .args(["simulate", "--mqtt", "mqtt://127.0.0.1:9", "--truth-paths"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--truth-paths") && stderr.contains("paths.jsonl"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
