//! Alerting as an operator runs it: `meshlens run --alert-webhook URL` with thresholds of
//! seconds, an observer that publishes once and then goes quiet, a local webhook receiver.
//! The observer raises one "observer offline"; `kill -9` and a restart on the same data
//! directory send nothing twice; `/api/alerts` and `/metrics` show it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::http::get;

const OBSERVER: &str = "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4";

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn spawn(data: &Path, http: SocketAddr, mqtt: SocketAddr, hook: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_meshlens"))
        .arg("run")
        .arg("--data-dir")
        .arg(data)
        .args([
            "--http",
            &http.to_string(),
            "--mqtt-listen",
            &mqtt.to_string(),
        ])
        .args(["--alert-webhook", hook])
        .args([
            "--alert-observer-silence",
            "2s",
            "--alert-eval-interval",
            "100ms",
        ])
        .args(["--alert-node-silence", "0"])
        .env("MESHLENS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// A receiver that records each POST body and answers 200.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let g = g.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        let body = &buf[end + 4..end + 4 + len];
                        g.lock()
                            .unwrap()
                            .push(serde_json::from_slice(body).unwrap());
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                }
            });
        }
    });
    (url, got)
}

async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    for _ in 0..2_400 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

async fn alerts(http: SocketAddr) -> Option<Value> {
    let (status, body) = get(http, "/api/alerts").await;
    (status == 200).then(|| serde_json::from_str(&body).unwrap())
}

async fn evaluations(http: SocketAddr, more: u64) {
    let start = eventually("alerting is up", || async {
        alerts(http).await.and_then(|v| v["evaluations"].as_u64())
    })
    .await;
    eventually("more evaluations", || async {
        let n = alerts(http).await?["evaluations"].as_u64()?;
        (n >= start + more).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_going_quiet_raises_one_alert_even_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, got) = receiver().await;
    let (http, mqtt) = (free_addr(), free_addr());
    let mut child = spawn(dir.path(), http, mqtt, &hook);
    evaluations(http, 1).await;

    let opts = MqttOptions::new("quiet-observer", mqtt.ip().to_string(), mqtt.port());
    let (client, mut el) = AsyncClient::new(opts, 100);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    client
        .publish(
            format!("meshcore/SEA/{OBSERVER}/packets"),
            QoS::AtLeastOnce,
            false,
            r#"{"raw":"0D0001020304","SNR":"5"}"#,
        )
        .await
        .unwrap();

    let first = eventually("the observer-offline alert", || async {
        got.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(first["rule"], "observer_offline", "{first}");
    assert_eq!(first["state"], "firing");
    assert_eq!(first["subject"]["kind"], "observer");
    assert_eq!(first["subject"]["id"], OBSERVER);
    // Delivered and recorded as delivered before the kill.
    let snap = eventually("the outbox drains", || async {
        let v = alerts(http).await?;
        (v["receivers"][0]["queued"] == 0 && v["receivers"][0]["delivered"] == 1).then_some(v)
    })
    .await;
    assert_eq!(snap["active"][0]["rule"], "observer_offline", "{snap}");
    let (_, metrics) = get(http, "/metrics").await;
    assert!(
        metrics.contains("meshlens_alerts_firing{rule=\"observer_offline\"} 1"),
        "{metrics}"
    );

    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = spawn(dir.path(), http, mqtt, &hook);
    evaluations(http, 20).await;
    assert_eq!(got.lock().unwrap().len(), 1, "{:?}", got.lock().unwrap());
    let v = alerts(http).await.unwrap();
    assert_eq!(v["history"].as_array().unwrap().len(), 1, "{v}");
    child.kill().unwrap();
    child.wait().unwrap();
}
