//! The neighbor-graph snapshot: the reader computes the graph of which nodes are heard next to
//! which (from resolved hops) and publishes it as `<data-dir>/neighbor-graph/graph.json`; the
//! writer persists it so that a restarted reader serves the last graph at once.
//!
//! ```json
//! {"version":1,"generation":N,"writtenAt":"…",
//!  "edges":[{"a":"<64 hex>","b":"<64 hex>","count":12,"weight":10.8,"last_seen":1764600000000,
//!             "snr_sum":41.5,"snr_count":7,"observers":["<observer id>",…],"observer_count":3}]}
//! ```
//!
//! `snr_sum`/`snr_count` (the SNRs of the observations that showed the link), `observers` (at
//! most [`MAX_EDGE_OBSERVERS`] of their observers' ids) and `observer_count` (how many distinct
//! observers in all) came later than the rest: a file without them still reads (no samples, no
//! observers), and the version did not change, since an older writer ignores them.
//!
//! Written like the capability snapshot (unique temporary file, fsync, rename, fsync of the
//! directory: whole or not at all). Read leniently: a malformed edge is skipped and counted,
//! a malformed file is a typed error, nothing panics and nothing reads more than
//! [`MAX_GRAPH_BYTES`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::one_line;
use crate::fsutil::{Bounded, Replace, ensure_dir, read_bounded, write_atomic};
use crate::time::{format_rfc3339_ms, now_ms};
use crate::{Error, ReadError};

/// Directory of the graph snapshot under `<data-dir>`.
pub const GRAPH_DIR: &str = "neighbor-graph";
/// File name of the graph snapshot.
pub const GRAPH_FILE: &str = "graph.json";
/// Format version.
pub const GRAPH_VERSION: u32 = 1;
/// Largest graph file written or read (about 300,000 edges).
pub const MAX_GRAPH_BYTES: u64 = 64 * 1024 * 1024;

/// `<data-dir>/neighbor-graph/graph.json`.
pub fn graph_path(data_dir: &Path) -> PathBuf {
    data_dir.join(GRAPH_DIR).join(GRAPH_FILE)
}

/// Most observer ids one edge may carry in a file (the reader sends at most 8); more make the
/// edge malformed, so a hostile file cannot make one edge large.
pub const MAX_EDGE_OBSERVERS: usize = 16;
/// Longest observer id accepted in a file, bytes.
pub const MAX_OBSERVER_ID: usize = 256;

/// One undirected link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphEdge {
    /// One end: 64 lowercase hex digits.
    pub a: String,
    /// The other end.
    pub b: String,
    /// Packets that put the two next to each other.
    pub count: u32,
    /// Sum of those attributions' confidences.
    pub weight: f64,
    /// Last seen, Unix ms.
    pub last_seen: i64,
    /// Sum of the SNRs (dB) of the observations that showed the link.
    #[serde(default)]
    pub snr_sum: f64,
    /// How many SNRs are in `snr_sum` (0: no samples).
    #[serde(default)]
    pub snr_count: u32,
    /// Ids of observers whose observations showed the link (at most [`MAX_EDGE_OBSERVERS`]).
    #[serde(default)]
    pub observers: Vec<String>,
    /// Distinct observers in all (at least `observers.len()` once read).
    #[serde(default)]
    pub observer_count: u32,
}

impl GraphEdge {
    fn valid(&self) -> Result<(), &'static str> {
        let key = |k: &str| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit());
        if !key(&self.a) || !key(&self.b) {
            return Err("end is not 64 hex digits");
        }
        if self.a.eq_ignore_ascii_case(&self.b) {
            return Err("a link from a node to itself");
        }
        if !self.weight.is_finite() || self.weight < 0.0 || self.weight > f64::from(self.count) {
            return Err("weight out of range");
        }
        if !self.snr_sum.is_finite() {
            return Err("snr_sum is not a number");
        }
        if self.observers.len() > MAX_EDGE_OBSERVERS
            || self
                .observers
                .iter()
                .any(|o| o.is_empty() || o.len() > MAX_OBSERVER_ID)
        {
            return Err("observers out of range");
        }
        Ok(())
    }
}

/// A graph snapshot as read.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphSnapshot {
    /// Increases with every publish, across restarts.
    pub generation: u64,
    /// RFC 3339 UTC.
    pub written_at: String,
    /// The well-formed edges (lowercased keys).
    pub edges: Vec<GraphEdge>,
    /// Edges left out because they were not well-formed.
    pub skipped: u64,
}

#[derive(Serialize)]
struct GraphFile<'a> {
    version: u32,
    generation: u64,
    #[serde(rename = "writtenAt")]
    written_at: String,
    edges: &'a [GraphEdge],
}

#[derive(Deserialize)]
struct RawGraph {
    version: u64,
    generation: u64,
    #[serde(rename = "writtenAt")]
    written_at: String,
    edges: Vec<serde_json::Value>,
}

/// Publishes graph snapshots (one per reader process).
#[derive(Debug)]
pub struct GraphPublisher {
    dir: PathBuf,
    path: PathBuf,
    last: Mutex<Option<u64>>,
}

impl GraphPublisher {
    /// A publisher for [`graph_path`] of `data_dir`. Does not touch the disk.
    pub fn new(data_dir: &Path) -> GraphPublisher {
        GraphPublisher {
            dir: data_dir.join(GRAPH_DIR),
            path: graph_path(data_dir),
            last: Mutex::new(None),
        }
    }

    /// Writes `edges` atomically with the next generation (above the file's and the clock's
    /// on the first publish). Returns the generation written.
    pub fn publish(&self, edges: &[GraphEdge]) -> Result<u64, Error> {
        ensure_dir(&self.dir)?;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let generation = match *last {
            Some(g) => g.saturating_add(1).max(now),
            None => {
                let after_file = match read_graph(&self.path) {
                    Ok(Some(s)) => s.generation.saturating_add(1),
                    _ => 0,
                };
                after_file.max(now)
            }
        };
        let mut bytes = serde_json::to_vec(&GraphFile {
            version: GRAPH_VERSION,
            generation,
            written_at: format_rfc3339_ms(now),
            edges,
        })?;
        bytes.push(b'\n');
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if size > MAX_GRAPH_BYTES {
            return Err(Error::TooLarge {
                path: self.path.clone(),
                size,
                limit: MAX_GRAPH_BYTES,
            });
        }
        write_atomic(&self.dir, &self.path, &bytes, Replace::Overwrite)?;
        *last = Some(generation);
        Ok(generation)
    }
}

/// Reads the graph snapshot at `path`: `Ok(None)` when there is none, a [`ReadError`] when the
/// file is not a graph snapshot; malformed edges are skipped and counted.
pub fn read_graph(path: &Path) -> Result<Option<GraphSnapshot>, ReadError> {
    let bytes = match read_bounded(path, MAX_GRAPH_BYTES)? {
        Bounded::Missing => return Ok(None),
        Bounded::TooLarge(size) => return Err(ReadError::TooLarge(size)),
        Bounded::Bytes(bytes) => bytes,
    };
    let raw: RawGraph =
        serde_json::from_slice(&bytes).map_err(|e| ReadError::Malformed(one_line(e)))?;
    if raw.version != u64::from(GRAPH_VERSION) {
        return Err(match u32::try_from(raw.version) {
            Ok(v) => ReadError::UnsupportedVersion(v),
            Err(_) => ReadError::Malformed(format!("version {} out of range", raw.version)),
        });
    }
    let mut edges = Vec::with_capacity(raw.edges.len());
    let mut skipped = 0u64;
    for v in raw.edges {
        match serde_json::from_value::<GraphEdge>(v) {
            Ok(mut e) if e.valid().is_ok() => {
                e.a.make_ascii_lowercase();
                e.b.make_ascii_lowercase();
                e.observer_count = e
                    .observer_count
                    .max(u32::try_from(e.observers.len()).unwrap_or(u32::MAX));
                edges.push(e);
            }
            _ => skipped += 1,
        }
    }
    Ok(Some(GraphSnapshot {
        generation: raw.generation,
        written_at: raw.written_at,
        edges,
        skipped,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(a: char, b: char) -> GraphEdge {
        GraphEdge {
            a: a.to_string().repeat(64),
            b: b.to_string().repeat(64),
            count: 3,
            weight: 2.5,
            last_seen: 42,
            snr_sum: 12.5,
            snr_count: 2,
            observers: vec!["obs-1".into(), "obs-2".into()],
            observer_count: 2,
        }
    }

    #[test]
    fn a_file_from_before_edge_observers_and_snr_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = graph_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let old = format!(
            "{{\"version\":1,\"generation\":3,\"writtenAt\":\"x\",\"edges\":[{{\"a\":\"{}\",\
             \"b\":\"{}\",\"count\":4,\"weight\":3.5,\"last_seen\":9}}]}}",
            "a".repeat(64),
            "b".repeat(64)
        );
        std::fs::write(&path, old).unwrap();
        let s = read_graph(&path).unwrap().unwrap();
        assert_eq!(s.skipped, 0);
        let e = &s.edges[0];
        assert_eq!((e.count, e.last_seen), (4, 9));
        assert_eq!((e.snr_sum, e.snr_count, e.observer_count), (0.0, 0, 0));
        assert!(e.observers.is_empty());
    }

    #[test]
    fn edge_observers_are_bounded_and_counted_at_least_as_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = graph_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut many = edge('a', 'b');
        many.observers = (0..17).map(|i| format!("o{i}")).collect();
        let mut long = edge('a', 'c');
        long.observers = vec!["x".repeat(MAX_OBSERVER_ID + 1)];
        let mut empty = edge('a', 'd');
        empty.observers = vec![String::new()];
        let mut under = edge('a', 'e');
        under.observer_count = 0;
        let file = serde_json::json!({"version": 1, "generation": 7, "writtenAt": "x", "edges": [
            many, long, empty, under,
            {"a": "a".repeat(64), "b": "f".repeat(64), "count": 1, "weight": 1.0,
             "last_seen": 1, "snr_sum": "loud"}]});
        std::fs::write(&path, file.to_string()).unwrap();
        let s = read_graph(&path).unwrap().unwrap();
        assert_eq!(s.skipped, 4);
        assert_eq!(s.edges.len(), 1);
        assert_eq!(s.edges[0].observer_count, 2, "raised to the ids named");
    }

    #[test]
    fn a_published_graph_reads_back_whole_with_rising_generations() {
        let dir = tempfile::tempdir().unwrap();
        let p = GraphPublisher::new(dir.path());
        let g1 = p.publish(&[edge('a', 'b')]).unwrap();
        let g2 = p.publish(&[edge('a', 'b'), edge('c', 'd')]).unwrap();
        assert!(g2 > g1);
        let s = read_graph(&graph_path(dir.path())).unwrap().unwrap();
        assert_eq!(s.generation, g2);
        assert_eq!(s.edges, vec![edge('a', 'b'), edge('c', 'd')]);
        // A new publisher (a restarted reader) continues above the file.
        let g3 = GraphPublisher::new(dir.path()).publish(&[]).unwrap();
        assert!(g3 > g2);
    }

    #[test]
    fn hostile_files_are_errors_and_bad_edges_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = graph_path(dir.path());
        assert!(read_graph(&path).unwrap().is_none());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        for junk in [
            "",
            "[]",
            "{\"version\":2,\"generation\":1,\"writtenAt\":\"x\",\"edges\":[]}",
            "{\"edges\":5}",
        ] {
            std::fs::write(&path, junk).unwrap();
            assert!(read_graph(&path).is_err(), "{junk:?}");
        }
        let good = serde_json::to_value(edge('a', 'b')).unwrap();
        let mut self_loop = edge('a', 'a');
        self_loop.count = 1;
        let mut heavy = edge('a', 'c');
        heavy.weight = 99.0;
        let file = serde_json::json!({"version": 1, "generation": 7, "writtenAt": "x", "edges": [
            good, {"a": "zz", "b": "b"}, serde_json::to_value(self_loop).unwrap(),
            serde_json::to_value(heavy).unwrap(), 17, {"a": "A".repeat(64), "b": "b".repeat(64),
            "count": 1, "weight": 1.0, "last_seen": 1}]});
        std::fs::write(&path, file.to_string()).unwrap();
        let s = read_graph(&path).unwrap().unwrap();
        assert_eq!(s.skipped, 4);
        assert_eq!(s.edges.len(), 2);
        assert_eq!(s.edges[1].a, "a".repeat(64), "keys are lowercased");
    }
}
