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
