//! What the reader's integration tests share: the real vectors and a test configuration.
//! Each test file includes it with `mod support;` and uses what it needs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use meshcore::report::DecodeOptions;
use server::ServerConfig;

/// The vectors directory: `$MESHLENS_VECTORS`, else the repository's `testdata/vectors`.
pub fn vectors_dir() -> PathBuf {
    std::env::var_os("MESHLENS_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors"))
}

/// The hex frame of the vector called `name` in `packets.jsonl`.
pub fn vector(name: &str) -> String {
    std::fs::read_to_string(vectors_dir().join("packets.jsonl"))
        .expect("testdata/vectors/packets.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["name"] == name)
        .map(|v| v["hex"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no vector {name}"))
}

/// The reader's configuration for tests: default keys, a week's window, cycles hourly (the
/// first runs at start), default HTTP limits.
pub fn config(db: &Path) -> ServerConfig {
    ServerConfig {
        db_path: db.to_path_buf(),
        decode: DecodeOptions::default(),
        allowed_origins: Vec::new(),
        ingest: None,
        pool_size: 2,
        // Generous: a debug build on a loaded machine must not turn a slow query into a 503.
        query_deadline: Duration::from_secs(120),
        capability: server::capability::CycleConfig {
            window: Duration::from_secs(7 * 86_400),
            interval: Duration::from_secs(3600),
            publish_to: None,
        },
        ui: Default::default(),
        allowed_hosts: Vec::new(),
        limits: Default::default(),
        admin_key: None,
        alerts: None,
    }
}

/// One observation of the frame `hex` by `observer` (in region `iata`) at `at` (Unix ms), as
/// the writer gets it from ingest: SNR 7.25, RSSI -95, the Public channel decrypted.
pub fn observed(hex: &str, observer: &str, iata: &str, at: i64) -> store::Item {
    let d = ingest::decode::Decoder {
        keyring: meshcore::crypto::Keyring::with_public(),
        ..ingest::decode::Decoder::default()
    };
    let msg = ingest::message::PacketMessage {
        observer: ingest::message::TopicObserver {
            id: observer.into(),
            iata: iata.into(),
        },
        origin: Some(format!("obs {}", &observer[..2.min(observer.len())])),
        region: None,
        raw: meshcore::report::parse_hex(hex).unwrap(),
        snr: Some(7.25),
        rssi: Some(-95.0),
        score: None,
        airtime_ms: None,
    };
    d.item(msg, at).0
}

/// A minimal HTTP/1.1 client: method, path, optional JSON body, extra header lines →
/// (status, head, body). Blocking: call it from `spawn_blocking`.
pub fn http_raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    extra: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut s = rest;
        loop {
            let (len, rest) = s.split_once("\r\n").unwrap();
            let n = usize::from_str_radix(len.trim(), 16).unwrap();
            if n == 0 {
                break out;
            }
            out.push_str(&rest[..n]);
            s = &rest[n + 2..];
        }
    } else {
        rest.to_string()
    };
    (status, head.to_string(), body)
}

/// `GET path` → (status, JSON body).
pub async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let path = path.to_string();
    let (status, _, body) =
        tokio::task::spawn_blocking(move || http_raw(addr, "GET", &path, None, ""))
            .await
            .unwrap();
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, v)
}

/// `POST path` with a JSON body → (status, JSON body).
pub async fn post_json(
    addr: std::net::SocketAddr,
    path: &str,
    body: String,
) -> (u16, serde_json::Value) {
    let path = path.to_string();
    let (status, _, text) =
        tokio::task::spawn_blocking(move || http_raw(addr, "POST", &path, Some(&body), ""))
            .await
            .unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, v)
}

/// A server on a free loopback port.
pub async fn start(cfg: ServerConfig) -> server::Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    server::Server::start(cfg, listener).unwrap()
}
