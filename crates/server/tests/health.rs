//! Health tells the truth: a writer whose commits fail, or whose status is stale or missing,
//! makes `/api/healthz` not ready with the reason and shows in `/metrics`; `/api/health`
//! does not give away where the database lives; and the observer list, which anyone who can
//! publish can lengthen, comes a bounded page at a time.
//!
//! The write failure is real: another connection holds the database's write lock, so the
//! writer's commits fail with "database is locked" after its busy timeout, exactly as they
//! fail with "database or disk is full" on a full disk (the same path: a failed commit, its
//! retries, its counters). `PRAGMA max_page_count` would only limit the connection that sets
//! it, not the writer's own.
//!
//! Also: what the embedded broker sheds is shown per source in `/api/healthz` and `/metrics`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ingest::decode::Decoder;
use ingest::message::{PacketMessage, TopicObserver};
use ingest::stats::Stats;
use ingest::writer_thread::{Maintenance, WriterMsg};
use ingest::{Ingest, IngestConfig};
use serde_json::Value;
use server::{IngestStatus, Server, ServerConfig};

mod support;

const OBS: &str = "e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5";

fn item(i: u32) -> store::Item {
    let mut raw = vec![0x0d, 0x00];
    raw.extend_from_slice(&i.to_be_bytes());
    let msg = PacketMessage {
        observer: TopicObserver {
            id: OBS.into(),
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
    Decoder::default()
        .item(msg, ingest::writer_thread::now_ms())
        .0
}

fn config(db: &Path, ingest: Option<Arc<dyn IngestStatus>>) -> ServerConfig {
    ServerConfig {
        ingest,
        ..support::config(db)
    }
}

async fn start(cfg: ServerConfig) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Server::start(cfg, listener).unwrap()
}

/// The writer in this process, as `meshlens run` shows it to the reader.
struct InProcess(Arc<Stats>);

impl IngestStatus for InProcess {
    fn snapshot(&self) -> Option<Value> {
        let mut v = self.0.to_json();
        v["state"] = "running".into();
        Some(v)
    }
}

/// `GET path` → (status, body).
async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        (status, body)
    })
    .await
    .unwrap()
}

async fn healthz(addr: SocketAddr) -> Value {
    let (status, body) = get_text(addr, "/api/healthz").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until `/api/healthz` satisfies `cond` (every 50 ms; the limit only ends a test that
/// would otherwise hang).
async fn wait_healthz(addr: SocketAddr, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..2_400 {
        let v = healthz(addr).await;
        if cond(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("healthz never showed {what}: {}", healthz(addr).await);
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_commits_make_healthz_not_ready_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let ingest = Ingest::start(IngestConfig {
        db_path: db.clone(),
        sources: Vec::new(),
        decoder: Decoder::default(),
        maintenance: Maintenance::default(),
        maintenance_interval: Duration::from_secs(3600),
        source_settings: Default::default(),
        status_file: None,
        mbcap: None,
    })
    .unwrap();
    let tx = ingest.sender();
    tx.send(WriterMsg::Item(item(1))).await.unwrap();
    ingest.flush().await;
    let stats = ingest.stats();
    let s = start(config(&db, Some(Arc::new(InProcess(stats.clone()))))).await;
    let ok = healthz(s.addr).await;
    assert_eq!(ok["ready"], true, "{ok}");
    assert_eq!(ok["status"], "ok", "{ok}");
    assert!(ok["reason"].is_null());

    // Another connection takes the write lock: every commit now fails.
    let blocker = store::rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    tx.send(WriterMsg::Item(item(2))).await.unwrap();
    let bad = wait_healthz(s.addr, "not ready", |v| v["ready"] == false).await;
    assert_eq!(bad["status"], "degraded", "{bad}");
    let reason = bad["reason"].as_str().unwrap();
    assert!(reason.contains("commits are failing"), "{reason}");
    assert!(reason.contains("locked"), "{reason}");
    let (status, text) = get_text(s.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "meshlens_ready"), 0.0);
    assert!(metric(&text, "meshlens_writer_commit_errors_total") >= 1.0);
    assert!(metric(&text, "meshlens_writer_last_error_age_seconds") >= 0.0);
    assert!(stats.get("writer.commit_errors") >= 1);

    // The lock goes: the next commit succeeds and health recovers.
    blocker.execute_batch("ROLLBACK").unwrap();
    tx.send(WriterMsg::Item(item(3))).await.unwrap();
    ingest.flush().await;
    let back = wait_healthz(s.addr, "ready again", |v| v["ready"] == true).await;
    // Degraded only if the batch ran out of retries and was lost.
    let lost = stats.get("writer.items_lost") > 0;
    assert_eq!(
        back["status"],
        if lost { "degraded" } else { "ok" },
        "{back}"
    );
    let (_, text) = get_text(s.addr, "/metrics").await;
    assert_eq!(metric(&text, "meshlens_ready"), 1.0);
    assert!(metric(&text, "meshlens_writer_last_commit_age_seconds") >= 0.0);
    s.shutdown().await;
    drop(tx);
    ingest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_stale_writer_status_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    drop(store::Writer::open(&db, 0).unwrap());
    let status = dir.path().join("ingest-status.json");
    let file: Arc<dyn IngestStatus> = Arc::new(server::StatusFile(status.clone()));
    let s = start(config(&db, Some(file))).await;

    // No writer has ever written its status.
    let v = healthz(s.addr).await;
    assert_eq!(
        (&v["ready"], &v["status"]),
        (&Value::Bool(false), &"degraded".into())
    );
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("no status from the writer"),
        "{v}"
    );

    // A fresh status from a healthy writer.
    let write = |written_at: i64| {
        let mut v = Stats::default().to_json();
        v["written_at"] = written_at.into();
        std::fs::write(&status, v.to_string()).unwrap();
    };
    write(server::now_ms());
    let v = healthz(s.addr).await;
    assert_eq!(v["ready"], true, "{v}");

    // A writer that stopped a minute ago.
    write(server::now_ms() - 60_000);
    let v = healthz(s.addr).await;
    assert_eq!(v["ready"], false, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("s old"), "{v}");
    let (_, text) = get_text(s.addr, "/metrics").await;
    assert_eq!(metric(&text, "meshlens_ready"), 0.0);
    assert!(metric(&text, "meshlens_writer_status_age_seconds") >= 59.0);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_the_database_file_but_not_where_it_lives() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    drop(store::Writer::open(&db, 0).unwrap());
    let s = start(config(&db, None)).await;
    let (status, body) = get_text(s.addr, "/api/health").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["db"]["file"], "meshlens.db", "{v}");
    let dir_text = dir.path().display().to_string();
    assert!(!body.contains(&dir_text), "{body}");
    s.shutdown().await;
}

async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = get_text(addr, path).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_are_listed_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let now = server::now_ms();
    // 30 observers, observer i last seen i minutes ago.
    let items: Vec<store::Item> = (0..30)
        .map(|i| {
            ingest::status_item(
                ingest::message::StatusMessage {
                    observer: Some(TopicObserver {
                        id: format!("{i:02}{}", "f".repeat(62)),
                        iata: "SEA".into(),
                    }),
                    ..Default::default()
                },
                now - i * 60_000,
                false,
            )
        })
        .collect();
    w.write_batch(&items).unwrap();
    let s = start(config(&db, None)).await;
    let ids = |v: &Value| -> Vec<String> {
        v["observers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap()[..2].to_owned())
            .collect()
    };
    // No parameters (a CoreScope client): everything, most recent first, with the total.
    let (st, all) = get_json(s.addr, "/api/observers").await;
    assert_eq!(st, 200);
    assert_eq!(all["total"], 30);
    let want: Vec<String> = (0..30).map(|i| format!("{i:02}")).collect();
    assert_eq!(ids(&all), want);
    // Pages that do not overlap and cover the list.
    let mut paged = Vec::new();
    for offset in (0..30).step_by(12) {
        let (st, page) =
            get_json(s.addr, &format!("/api/observers?limit=12&offset={offset}")).await;
        assert_eq!(st, 200);
        assert_eq!(
            (page["total"].as_i64(), page["offset"].as_i64()),
            (Some(30), Some(offset))
        );
        paged.extend(ids(&page));
    }
    assert_eq!(paged, want);
    // The cap, and hostile parameters.
    let (_, big) = get_json(s.addr, "/api/observers?limit=999999999").await;
    assert_eq!(big["limit"], server::api::observers::MAX_OBSERVERS);
    for bad in [
        "limit=0",
        "limit=-1",
        "limit=x",
        "offset=-1",
        "offset=1e9x",
        "offset=99999999999",
    ] {
        let (st, v) = get_json(s.addr, &format!("/api/observers?{bad}")).await;
        assert_eq!(st, 400, "{bad}: {v}");
        assert!(v["error"].is_string());
    }
    let (_, past) = get_json(s.addr, "/api/observers?offset=1000").await;
    assert_eq!(
        (
            past["observers"].as_array().map(Vec::len),
            past["total"].as_i64()
        ),
        (Some(0), Some(30))
    );
    s.shutdown().await;
}

/// `/api/healthz` answers from memory: once the live tailer has seen the newest observation
/// (and the stats it quotes are computed), a probe costs the database nothing, so it never
/// waits behind a busy pool; and it follows new commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_answered_from_memory_and_follows_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    w.write_batch(&[item(1), item(2)]).unwrap();
    let newest: i64 = w
        .conn()
        .query_row("SELECT max(id) FROM observations", [], |r| r.get(0))
        .unwrap();
    let s = start(config(&db, None)).await;
    let (status, _) = get_text(s.addr, "/api/stats").await;
    assert_eq!(status, 200);
    let first = wait_healthz(s.addr, "the newest observation", |v| {
        v["last_observation_id"] == newest
    })
    .await;
    assert!(first["last_observation_at"].is_string(), "{first}");
    let before = s.db_queries();
    for _ in 0..5 {
        let v = healthz(s.addr).await;
        assert_eq!(v["last_observation_id"], newest, "{v}");
        assert!(v["loadedObs"].is_number(), "{v}");
    }
    assert_eq!(s.db_queries(), before, "healthz queried the database");
    // A new commit shows without a query from the probe.
    w.write_batch(&[item(3)]).unwrap();
    wait_healthz(s.addr, "the new observation", |v| {
        v["last_observation_id"] == newest + 1
    })
    .await;
    s.shutdown().await;
}

/// The writer's counters as the reader beside it sees them (as `meshlens run` wires it).
struct Counters(std::sync::Arc<ingest::stats::Stats>);

impl server::IngestStatus for Counters {
    fn snapshot(&self) -> Option<Value> {
        let mut v = self.0.to_json();
        v["state"] = "running".into();
        Some(v)
    }
}

/// What the embedded broker sheds (QoS 0 copies to a slow subscriber) is shown per source in
/// `/api/healthz` and `/metrics`, and a source with nothing shed still has its zero series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shed_messages_are_shown_per_source_in_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = support::seed_real_frames(&db);
    let stats = std::sync::Arc::new(ingest::stats::Stats::default());
    stats.source("embedded", |s| {
        s.state = "listening";
        s.messages = 10;
        s.shed = 3;
    });
    stats.source("up\"stream", |s| s.messages = 4);
    stats.add("broker.subscriber_shed", 3);
    let s = support::start(ServerConfig {
        ingest: Some(std::sync::Arc::new(Counters(stats))),
        ..support::config(&db)
    })
    .await;
    let (_, hz) = support::get(s.addr, "/api/healthz").await;
    assert_eq!(hz["ingest"]["sources"]["embedded"]["shed"], 3, "{hz}");
    let addr = s.addr;
    let (st, text) =
        tokio::task::spawn_blocking(move || support::http_with_body(addr, "GET", "/metrics", None))
            .await
            .unwrap();
    assert_eq!(st, 200);
    for line in [
        "meshlens_source_shed_total{source=\"embedded\"} 3",
        "meshlens_source_messages_total{source=\"embedded\"} 10",
        "meshlens_source_shed_total{source=\"up\\\"stream\"} 0",
        "meshlens_ingest_total{counter=\"broker.subscriber_shed\"} 3",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    s.shutdown().await;
}
