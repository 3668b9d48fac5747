//! Counters and per-source state, shared by the sources, the writer thread and the health
//! output. Every map here is keyed by a fixed set of static reason codes or by configured
//! sources, so none of it grows with traffic. [`WriterState`] is the writer thread's own
//! account (last commit, last failure, what it is busy with), from which the reader decides
//! whether the writer is healthy: counters alone cannot tell "failing now" from "failed once".

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Ingest counters by name (`received`, `refused.not_json`, `invalid_frame.path_too_long`…).
#[derive(Debug, Default)]
pub struct Stats {
    counters: Mutex<BTreeMap<&'static str, u64>>,
    sources: Mutex<BTreeMap<String, SourceState>>,
    writer: Mutex<WriterState>,
    log_limiter: Mutex<BTreeMap<&'static str, (Option<Instant>, u64)>>,
}

/// What a source is doing now, for the health output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceState {
    /// `connecting`, `connected` or `disconnected`.
    pub state: &'static str,
    /// The broker URL without credentials.
    pub broker: String,
    /// Successful connections.
    pub connects: u64,
    /// Lost connections and failed attempts.
    pub disconnects: u64,
    /// Forced reconnects by the watchdog.
    pub watchdog_reconnects: u64,
    /// Messages received.
    pub messages: u64,
    /// Last error text.
    pub last_error: Option<String>,
    /// Unix ms of the last message.
    pub last_message_at: Option<i64>,
    /// Unix ms of the last connection.
    pub connected_at: Option<i64>,
    /// Clients connected now (embedded broker).
    pub clients: u64,
    /// QoS 0 copies shed because a subscriber of the embedded broker did not keep up.
    pub shed: u64,
    /// Packets and statuses refused because they would have created an observer beyond this
    /// source's new-observer rate (for the embedded broker: its clients' rates together).
    pub observer_rate_refused: u64,
}

/// What the writer thread is doing, for the health output. Times are Unix ms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriterState {
    /// The last successful commit of a batch.
    pub last_commit_at: Option<i64>,
    /// The last failed commit attempt (retried or not).
    pub last_error_at: Option<i64>,
    /// Its error.
    pub last_error: Option<String>,
    /// The last time a batch was given up on (its items lost).
    pub last_loss_at: Option<i64>,
    /// Since when the writer has been working on [`WriterState::busy_with`]; `None` when it
    /// waits for work. A writer stuck in one call (a hung disk) shows here, since it cannot
    /// report anything else.
    pub busy_since: Option<i64>,
    /// `commit`, `maintenance` or `snapshot`.
    pub busy_with: Option<&'static str>,
    /// Items waiting in its queue when it last took a batch.
    pub queue_len: u64,
    /// The queue's capacity.
    pub queue_capacity: u64,
}

/// Longest error text kept: SQLite's messages are short; anything longer is not worth
/// carrying into every status file.
const MAX_ERROR_TEXT: usize = 300;

/// How often one reason may be logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Stats {
    /// Adds `n` to counter `name`.
    pub fn add(&self, name: &'static str, n: u64) {
        if let Ok(mut c) = self.counters.lock() {
            *c.entry(name).or_default() += n;
        }
    }

    /// Adds one to counter `name`.
    pub fn incr(&self, name: &'static str) {
        self.add(name, 1);
    }

    /// One counter's value.
    pub fn get(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .map(|c| c.get(name).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// All counters.
    pub fn counters(&self) -> BTreeMap<&'static str, u64> {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Updates the state of source `name`.
    pub fn source(&self, name: &str, f: impl FnOnce(&mut SourceState)) {
        if let Ok(mut s) = self.sources.lock() {
            // Called for every message: no allocation once the source is known.
            match s.get_mut(name) {
                Some(state) => f(state),
                None => f(s.entry(name.to_owned()).or_default()),
            }
        }
    }

    /// All sources.
    pub fn sources(&self) -> BTreeMap<String, SourceState> {
        self.sources.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Updates the writer's state.
    pub fn writer(&self, f: impl FnOnce(&mut WriterState)) {
        if let Ok(mut w) = self.writer.lock() {
            f(&mut w);
        }
    }

    /// The writer's state.
    pub fn writer_state(&self) -> WriterState {
        self.writer.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Records a failed commit attempt at `at` (Unix ms).
    pub fn commit_failed(&self, at: i64, error: &str) {
        let mut text: String = error.chars().take(MAX_ERROR_TEXT).collect();
        if text.len() < error.len() {
            text.push('…');
        }
        self.writer(|w| {
            w.last_error_at = Some(at);
            w.last_error = Some(text);
        });
    }

    /// Whether a message about `reason` may be logged now; at most one per 10 s per reason.
    /// Returns how many were suppressed since the last one.
    pub fn should_log(&self, reason: &'static str) -> Option<u64> {
        let mut m = self.log_limiter.lock().ok()?;
        let e = m.entry(reason).or_insert((None, 0));
        let now = Instant::now();
        match e.0 {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                e.1 += 1;
                None
            }
            _ => {
                let suppressed = e.1;
                *e = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

impl Stats {
    /// Everything as JSON, for the health output and the status file.
    pub fn to_json(&self) -> serde_json::Value {
        let counters: serde_json::Map<String, serde_json::Value> = self
            .counters()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect();
        let sources: serde_json::Map<String, serde_json::Value> = self
            .sources()
            .into_iter()
            .map(|(name, s)| {
                let v = serde_json::json!({
                    "state": s.state,
                    "broker": s.broker,
                    "connects": s.connects,
                    "disconnects": s.disconnects,
                    "watchdog_reconnects": s.watchdog_reconnects,
                    "messages": s.messages,
                    "last_error": s.last_error,
                    "last_message_at": s.last_message_at,
                    "connected_at": s.connected_at,
                    "clients": s.clients,
                    "shed": s.shed,
                    "observer_rate_refused": s.observer_rate_refused,
                });
                (name, v)
            })
            .collect();
        let w = self.writer_state();
        let writer = serde_json::json!({
            "last_commit_at": w.last_commit_at,
            "last_error_at": w.last_error_at,
            "last_error": w.last_error,
            "last_loss_at": w.last_loss_at,
            "busy_since": w.busy_since,
            "busy_with": w.busy_with,
            "queue_len": w.queue_len,
            "queue_capacity": w.queue_capacity,
        });
        serde_json::json!({ "counters": counters, "sources": sources, "writer": writer })
    }
}

/// Writes `value` to `path` atomically (a temporary file in the same directory, then a
/// rename), so a reader never sees a torn file.
pub fn write_json_atomically(
    path: &std::path::Path,
    value: &serde_json::Value,
) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, value.to_string())?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logging_is_rate_limited_per_reason() {
        let s = Stats::default();
        assert_eq!(s.should_log("a"), Some(0));
        assert_eq!(s.should_log("a"), None);
        assert_eq!(s.should_log("a"), None);
        assert_eq!(s.should_log("b"), Some(0));
    }

    #[test]
    fn json_and_atomic_file() {
        let s = Stats::default();
        s.incr("packets");
        s.source("a", |st| st.state = "connected");
        let v = s.to_json();
        assert_eq!(v["counters"]["packets"], 1);
        assert_eq!(v["sources"]["a"]["state"], "connected");
        let dir = std::env::temp_dir().join(format!("meshlens-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ingest-status.json");
        write_json_atomically(&f, &v).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        assert_eq!(back, v);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writer_state_is_in_the_json() {
        let s = Stats::default();
        s.writer(|w| {
            w.last_commit_at = Some(5);
            w.busy_since = Some(7);
            w.busy_with = Some("commit");
            w.queue_capacity = 10;
        });
        s.commit_failed(9, &"x".repeat(1000));
        let v = s.to_json();
        assert_eq!(v["writer"]["last_commit_at"], 5);
        assert_eq!(v["writer"]["last_error_at"], 9);
        assert_eq!(v["writer"]["busy_with"], "commit");
        assert_eq!(v["writer"]["queue_capacity"], 10);
        assert!(v["writer"]["last_loss_at"].is_null());
        // A long error is cut, not carried whole.
        let e = v["writer"]["last_error"].as_str().unwrap();
        assert_eq!(e.chars().count(), MAX_ERROR_TEXT + 1);
    }

    #[test]
    fn counters_add_up() {
        let s = Stats::default();
        s.incr("x");
        s.add("x", 2);
        assert_eq!(s.get("x"), 3);
        assert_eq!(s.get("y"), 0);
    }
}
