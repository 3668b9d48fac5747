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
    }
}

/// `GET path` against a server at `addr` → (status, JSON body), with a minimal HTTP/1.1
/// client (`Connection: close`, chunked bodies joined), off the async threads.
pub async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let path = path.to_string();
    let (status, body) = tokio::task::spawn_blocking(move || {
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
        let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let (head, mut rest) = text.split_once("\r\n\r\n").unwrap();
        if !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return (status, rest.to_string());
        }
        let mut body = String::new();
        loop {
            let (len, tail) = rest.split_once("\r\n").unwrap();
            let n = usize::from_str_radix(len.trim(), 16).unwrap();
            if n == 0 {
                return (status, body);
            }
            body.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
    })
    .await
    .unwrap();
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, v)
}

/// A writer item from an observer status published as `json` on `meshcore/SEA/<id>/status`,
/// received (live) at `at`: the writer role's own parsing.
pub fn status_at(id: &str, json: &str, at: i64) -> store::Item {
    match ingest::message::parse(&format!("meshcore/SEA/{id}/status"), json.as_bytes()).unwrap() {
        ingest::message::Message::Status(s) => ingest::status_item(s, at, false),
        m => panic!("not a status: {m:?}"),
    }
}

/// A writer item from a packet message `json` published on `meshcore/SEA/<id>/packets`,
/// received at `at`: the writer role's own parsing and decoding (Public channel key).
pub fn packet_at(id: &str, json: &str, at: i64) -> store::Item {
    let d = ingest::decode::Decoder {
        keyring: meshcore::crypto::Keyring::with_public(),
        ..Default::default()
    };
    match ingest::message::parse(&format!("meshcore/SEA/{id}/packets"), json.as_bytes()).unwrap() {
        ingest::message::Message::Packet(p, sent_at) => ingest::packet_item(&d, p, sent_at, at).0,
        m => panic!("not a packet: {m:?}"),
    }
}
