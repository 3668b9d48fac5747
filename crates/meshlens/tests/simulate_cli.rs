//! `meshlens simulate` publishes a simulated mesh that the writer ingests, and writes its
//! ground truth.

mod support;

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
