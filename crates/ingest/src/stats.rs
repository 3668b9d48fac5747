//! Counters and per-source state, shared by the sources, the writer thread and the health
//! output. Every map here is keyed by a fixed set of static reason codes or by configured
//! sources, so none of it grows with traffic.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Ingest counters by name (`received`, `refused.not_json`, `invalid_frame.path_too_long`…).
#[derive(Debug, Default)]
pub struct Stats {
    counters: Mutex<BTreeMap<&'static str, u64>>,
    sources: Mutex<BTreeMap<String, SourceState>>,
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
}

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
                });
                (name, v)
            })
            .collect();
        serde_json::json!({ "counters": counters, "sources": sources })
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
    fn counters_add_up() {
        let s = Stats::default();
        s.incr("x");
        s.add("x", 2);
        assert_eq!(s.get("x"), 3);
        assert_eq!(s.get("y"), 0);
    }
}
