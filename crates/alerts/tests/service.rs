//! The alerting service against a local webhook receiver, with thresholds of a second: a
//! repeater that stops raises exactly one "offline" and one "back" when it returns; a
//! restart sends nothing twice; a receiver that is down gets the alert once it is back; a
//! receiver that never answers does not hold up another one.
//!
//! Nothing here depends on the machine's speed: every wait polls for an outcome, and the
//! caps on polling only end a test that would otherwise hang.

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alerts::{Alerting, Config, Format, Inputs, NodeSeen, Settings, Source};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const UP: u8 = 0;
const DOWN: u8 = 1;
const HANG: u8 = 2;

/// A webhook receiver recording every request body; answers 200, 503 or never.
struct Hook {
    url: String,
    got: Arc<Mutex<Vec<Value>>>,
    mode: Arc<AtomicU8>,
}

async fn hook(mode: u8) -> Hook {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let mode = Arc::new(AtomicU8::new(mode));
    let (g, m) = (got.clone(), mode.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (g, m) = (g.clone(), m.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
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
                        break buf[end + 4..end + 4 + len].to_vec();
                    }
                };
                match m.load(Ordering::SeqCst) {
                    HANG => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    DOWN => {
                        let _ = s
                            .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                    }
                    _ => {
                        g.lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap());
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    });
    Hook { url, got, mode }
}

impl Hook {
    fn bodies(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }
}

/// One repeater whose last-heard time the test sets.
struct OneRepeater(Mutex<i64>);

impl Source for OneRepeater {
    fn inputs(&self, now_ms: i64) -> Result<Inputs, String> {
        Ok(Inputs {
            now: now_ms,
            nodes: vec![NodeSeen {
                public_key: "ab".repeat(32),
                name: Some("Hill <top>".into()),
                role: "repeater".into(),
                first_seen: 0,
                last_seen: *self.0.lock().unwrap(),
                multibyte_by_advert: false,
                last_advert_hash_size: None,
            }],
            ..Inputs::default()
        })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn settings(dir: &Path, hooks: &[&Hook]) -> Settings {
    let mut s = Settings::new(dir);
    s.rules = Config {
        repeater_silence: Some(Duration::from_secs(1)),
        observer_silence: None,
        ingest_stall: None,
        new_nodes: false,
        hysteresis: Duration::from_millis(200),
        ..Config::default()
    };
    s.eval_interval = Duration::from_millis(50);
    for h in hooks {
        s.add_receiver(None, &h.url, Format::Generic, None).unwrap();
    }
    s
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..2_400 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never: {what}");
}

/// Waits for `n` more evaluations than now.
async fn evaluations(a: &Alerting, n: u64) {
    let start = a.snapshot()["evaluations"].as_u64().unwrap();
    eventually("evaluations", || {
        (a.snapshot()["evaluations"].as_u64().unwrap() >= start + n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_and_back_once_each_and_a_restart_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let h = hook(UP).await;
    let src = Arc::new(OneRepeater(Mutex::new(now_ms())));
    let (stop, rx) = watch::channel(false);
    let a = Alerting::start(settings(dir.path(), &[&h]), src.clone(), rx);
    // Heard now, then silent: one offline.
    let first = eventually("offline", || {
        let b = h.bodies();
        (!b.is_empty()).then(|| b[0].clone())
    })
    .await;
    assert_eq!(first["rule"], "node_offline");
    assert_eq!(first["state"], "firing");
    assert_eq!(first["subject"]["kind"], "node");
    assert_eq!(first["subject"]["name"], "Hill <top>");
    assert!(first["message"].as_str().unwrap().contains("silent"));
    evaluations(&a, 5).await;
    assert_eq!(h.bodies().len(), 1, "{:?}", h.bodies());
    let snap = a.snapshot();
    assert_eq!(snap["active"].as_array().unwrap().len(), 1, "{snap}");
    assert!(
        a.metrics()
            .contains("meshlens_alerts_firing{rule=\"node_offline\"} 1")
    );

    // It comes back (after the hysteresis window): one "back".
    tokio::time::sleep(Duration::from_millis(250)).await;
    *src.0.lock().unwrap() = now_ms() + 3_600_000;
    let back = eventually("back", || h.bodies().get(1).cloned()).await;
    assert_eq!(back["state"], "resolved");
    evaluations(&a, 5).await;
    assert_eq!(h.bodies().len(), 2);

    // Silent again, offline again: the third notification. Then stop, restart on the same
    // state file: nothing is sent again.
    *src.0.lock().unwrap() = 0;
    eventually("offline again", || (h.bodies().len() == 3).then_some(())).await;
    // Delivered and recorded as delivered (only a crash between the two could repeat it).
    eventually("the outbox is empty", || {
        (a.snapshot()["receivers"][0]["queued"] == 0).then_some(())
    })
    .await;
    stop.send(true).unwrap();
    drop(a);
    let (_stop2, rx2) = watch::channel(false);
    let again = Alerting::start(settings(dir.path(), &[&h]), src.clone(), rx2);
    evaluations(&again, 10).await;
    assert_eq!(h.bodies().len(), 3, "{:?}", h.bodies());
    assert_eq!(again.snapshot()["history"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_gets_it_once_back_and_a_hanging_one_holds_up_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let down = hook(DOWN).await;
    let hang = hook(HANG).await;
    let up = hook(UP).await;
    let src = Arc::new(OneRepeater(Mutex::new(0)));
    // A first evaluation with the repeater heard, so that its silence is news.
    *src.0.lock().unwrap() = now_ms();
    let (_stop, rx) = watch::channel(false);
    let a = Alerting::start(settings(dir.path(), &[&hang, &down, &up]), src.clone(), rx);
    // The healthy receiver is served while the hanging one is stuck on its first attempt.
    eventually("the healthy receiver", || {
        (up.bodies().len() == 1).then_some(())
    })
    .await;
    let receivers = eventually("a failed attempt on the one that is down", || {
        let s = a.snapshot();
        (s["receivers"][1]["failures"].as_u64().unwrap() >= 1).then_some(s)
    })
    .await;
    assert_eq!(receivers["receivers"][1]["queued"], 1, "{receivers}");
    assert_eq!(receivers["receivers"][0]["queued"], 1, "{receivers}");
    // Back up: delivered once, in spite of the retries before.
    down.mode.store(UP, Ordering::SeqCst);
    eventually("the recovered receiver", || {
        (down.bodies().len() == 1).then_some(())
    })
    .await;
    evaluations(&a, 5).await;
    assert_eq!(down.bodies().len(), 1);
    assert_eq!(up.bodies().len(), 1);
    assert_eq!(a.snapshot()["receivers"][1]["queued"], 0);
    assert!(hang.bodies().is_empty());
}
