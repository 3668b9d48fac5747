//! `meshlens ingest` as a process: it stores what observers publish, drains on SIGTERM and
//! exits 0 quickly, and survives `kill -9` with an intact database it resumes from.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, MqttOptions, QoS};

const OBSERVER: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

fn spawn_ingest(data: &Path, broker: SocketAddr) -> Child {
    Command::new(env!("CARGO_BIN_EXE_meshlens"))
        .args(["ingest", "--data-dir"])
        .arg(data)
        .args(["--mqtt", &format!("mqtt://{broker}")])
        .env("MESHLENS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

async fn publisher(broker: SocketAddr, id: &str) -> AsyncClient {
    let opts = MqttOptions::new(id, broker.ip().to_string(), broker.port());
    let (client, mut el) = AsyncClient::new(opts, 10_000);
    tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    client
}

/// A distinct real-format frame for each `i`: a zero-hop flood ACK whose CRC is `i`.
fn ack(i: u32) -> String {
    format!(
        r#"{{"raw":"0D00{}","SNR":"5"}}"#,
        hex::encode(i.to_le_bytes())
    )
}

async fn publish_acks(c: &AsyncClient, range: std::ops::Range<u32>) {
    for i in range {
        c.publish(
            format!("meshcore/SEA/{OBSERVER}/packets"),
            QoS::AtLeastOnce,
            false,
            ack(i),
        )
        .await
        .unwrap();
    }
}

fn count(db: &Path, sql: &str) -> i64 {
    let Ok(c) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return -1;
    };
    c.query_row(sql, [], |r| r.get(0)).unwrap_or(-1)
}

/// Publishes a probe until the running ingest has stored it (its subscription is live).
async fn wait_subscribed(c: &AsyncClient, db: &Path, probe: u32) {
    // Two minutes at most: a limit for a hung test, not a speed requirement.
    for _ in 0..2_400 {
        publish_acks(c, probe..probe + 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let sql = format!(
            "SELECT count(*) FROM transmissions WHERE hash IS NOT NULL AND raw = x'0D00{}'",
            hex::encode(probe.to_le_bytes())
        );
        if count(db, &sql) > 0 {
            return;
        }
    }
    panic!("ingest never stored the probe");
}

async fn wait_count(db: &Path, want: i64) -> i64 {
    let sql = "SELECT count(*) FROM transmissions";
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if count(db, sql) >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    count(db, sql)
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < within, "did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_everything_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let broker = ingest::broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut child = spawn_ingest(dir.path(), broker);
    let c = publisher(broker, "pub-term").await;
    wait_subscribed(&c, &db, 1_000_000).await;

    publish_acks(&c, 0..2_000).await;
    // Every message has reached the process once it is stored; then stop it.
    assert_eq!(wait_count(&db, 2_001).await, 2_001);
    signal(&child, "-TERM");
    // Success means the drain finished within meshlens's own 9 s shutdown bound; the test's
    // wait is only a limit for a hung process.
    let status = wait_exit(&mut child, Duration::from_secs(120));
    assert!(status.success(), "{status:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM observations"), 2_001);
    assert_eq!(count(&db, "PRAGMA wal_checkpoint"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_never_corrupts_and_a_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let broker = ingest::broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut child = spawn_ingest(dir.path(), broker);
    let c = publisher(broker, "pub-kill").await;
    wait_subscribed(&c, &db, 1_000_000).await;

    // Kill it in the middle of a stream of packets.
    let writer = {
        let c = c.clone();
        tokio::spawn(async move { publish_acks(&c, 0..20_000).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, "-KILL");
    let _ = wait_exit(&mut child, Duration::from_secs(5));
    writer.await.unwrap();

    let c2 = rusqlite::Connection::open(&db).unwrap();
    let check: String = c2
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let before: i64 = c2
        .query_row("SELECT count(*) FROM transmissions", [], |r| r.get(0))
        .unwrap();
    assert!(before >= 1, "nothing stored before the kill");
    drop(c2);

    // A restart opens the same database and keeps going.
    let mut child = spawn_ingest(dir.path(), broker);
    wait_subscribed(&c, &db, 2_000_000).await;
    publish_acks(&c, 30_000..30_100).await;
    let after = wait_count(&db, before + 101).await;
    assert!(after >= before + 101, "{before} -> {after}");
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(120)).success());
}

fn environ(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', "\n"))
        .unwrap_or_default()
}

/// The long-running commands limit glibc's malloc arenas (a third of the peak RSS in the
/// system benchmark) by re-executing themselves, unless the operator chose a value.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn long_running_commands_limit_malloc_arenas() {
    for (preset, want) in [
        (None, "MALLOC_ARENA_MAX=2"),
        (Some("4"), "MALLOC_ARENA_MAX=4"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshlens"));
        cmd.args(["ingest", "--data-dir"])
            .arg(dir.path())
            // Nothing listens there: the writer keeps retrying, which is all this needs.
            .args(["--mqtt", "mqtt://127.0.0.1:9"])
            .env_remove("MALLOC_ARENA_MAX")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(v) = preset {
            cmd.env("MALLOC_ARENA_MAX", v);
        }
        let mut child = cmd.spawn().unwrap();
        let start = Instant::now();
        let mut env = String::new();
        // The re-exec keeps the pid; wait until the new image's environment shows.
        while start.elapsed() < Duration::from_secs(120) {
            env = environ(child.id());
            if env.lines().any(|l| l.starts_with("MALLOC_ARENA_MAX=")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(env.lines().any(|l| l == want), "{preset:?}: {env}");
    }
}
