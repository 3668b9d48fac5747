//! The running alerting: an evaluation task (every `--alert-eval-interval`, inputs read by a
//! [`Source`] off the async threads), one delivery task per receiver, and the state file
//! that makes a restart send nothing twice.
//!
//! The state file (`<data-dir>/alerts/state.json`) holds the engine's alerts, every
//! receiver's outbox and the recent history; it is rewritten atomically (temporary file,
//! fsync, rename) whenever it changes: after an evaluation that queued something, and after
//! each delivery. A notification is queued in the same write that marks it sent, so a crash
//! either loses neither or keeps both; a delivery confirmed by the receiver is removed in the
//! next write, so only a crash in the instant between the receiver's answer and that write
//! can repeat one (receivers may de-duplicate on its `id`).
//!
//! Delivery never blocks evaluation, ingest or the API: each receiver has its own task and a
//! bounded outbox; a receiver that is down is retried with backoff and gets what it missed,
//! in order, once it is back (within 24 h and the outbox's bound).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::deliver::{self, Outbox, Pending, Receiver};
use crate::rules::{self, Engine, Inputs, Notification};

/// Where the inputs come from (the reader's read-only database). Called on a blocking thread.
pub trait Source: Send + Sync + 'static {
    /// The mesh now.
    fn inputs(&self, now_ms: i64) -> Result<Inputs, String>;
}

/// Everything alerting needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Thresholds.
    pub rules: rules::Config,
    /// Who gets what.
    pub receivers: Vec<Receiver>,
    /// How often the rules run.
    pub eval_interval: Duration,
    /// The state file.
    pub state_file: PathBuf,
    /// At most this many notifications per receiver per minute (then one summary).
    pub max_per_minute: u32,
}

/// Notifications kept for `/api/alerts`' history.
pub const HISTORY: usize = 500;
/// The largest state file read back.
const MAX_STATE_BYTES: u64 = 64 << 20;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: i64,
    suppressed: u64,
}

#[derive(Debug)]
struct Core {
    engine: Engine,
    outboxes: Vec<Outbox>,
    buckets: Vec<Bucket>,
    history: VecDeque<Value>,
    evaluations: u64,
    evaluation_errors: u64,
    last_error: Option<String>,
    evaluated_at: Option<i64>,
    rate_limited: u64,
    state_errors: u64,
    saved: String,
}

/// The running service.
pub struct Alerting {
    settings: Arc<Settings>,
    core: Arc<Mutex<Core>>,
    wake: Vec<Arc<Notify>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn load(path: &Path) -> Option<Value> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MAX_STATE_BYTES {
        tracing::warn!("{}: too large, ignored", path.display());
        return None;
    }
    let text = std::fs::read(path).ok()?;
    match serde_json::from_slice(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("{}: not JSON ({e}); alerting starts afresh", path.display());
            None
        }
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".state.{}.tmp", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl Core {
    fn state_json(&self, settings: &Settings) -> Value {
        let outboxes: serde_json::Map<String, Value> = settings
            .receivers
            .iter()
            .zip(&self.outboxes)
            .map(|(r, o)| {
                (
                    r.name.clone(),
                    Value::Array(o.queue.iter().map(Pending::to_json).collect()),
                )
            })
            .collect();
        json!({
            "version": 1,
            "engine": self.engine.to_json(),
            "outboxes": outboxes,
            "history": self.history,
        })
    }

    /// Writes the state if it changed since the last write.
    fn save(&mut self, settings: &Settings) {
        let text = self.state_json(settings).to_string();
        if text == self.saved {
            return;
        }
        match write_atomically(&settings.state_file, &text) {
            Ok(()) => self.saved = text,
            Err(e) => {
                self.state_errors += 1;
                tracing::warn!("cannot write {}: {e}", settings.state_file.display());
            }
        }
    }

    fn queue(&mut self, settings: &Settings, n: &Notification, now: i64) {
        let limit = f64::from(settings.max_per_minute.max(1));
        for (i, r) in settings.receivers.iter().enumerate() {
            if !r.wants(n.rule) {
                continue;
            }
            let (Some(b), Some(o)) = (self.buckets.get_mut(i), self.outboxes.get_mut(i)) else {
                continue;
            };
            b.tokens = (b.tokens + (now - b.updated).max(0) as f64 * limit / 60_000.0).min(limit);
            b.updated = now;
            if b.tokens < 1.0 {
                b.suppressed += 1;
                self.rate_limited += 1;
                continue;
            }
            b.tokens -= 1.0;
            if b.suppressed > 0 {
                let summary = Notification {
                    id: format!("rate_limited:{now}:{}", b.suppressed),
                    rule: "rate_limited",
                    firing: true,
                    subject: rules::Subject {
                        kind: "receiver",
                        id: r.name.clone(),
                        name: None,
                    },
                    since: now,
                    at: now,
                    message: format!(
                        "{} notifications were not sent: more than {} a minute",
                        b.suppressed, settings.max_per_minute
                    ),
                };
                b.suppressed = 0;
                o.push(pending(r, &summary, now));
            }
            o.push(pending(r, n, now));
        }
        self.history.push_back(n.to_json());
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
    }
}

fn pending(r: &Receiver, n: &Notification, now: i64) -> Pending {
    let (body, headers) = deliver::render(r.format, n);
    Pending {
        id: n.id.clone(),
        rule: n.rule.to_owned(),
        body,
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        queued_at: now,
        attempts: 0,
        next_attempt_at: now,
    }
}

impl Alerting {
    /// Loads the state file and starts the tasks (inside a Tokio runtime). They stop when
    /// `stop` changes.
    pub fn start(
        settings: Settings,
        source: Arc<dyn Source>,
        stop: watch::Receiver<bool>,
    ) -> Alerting {
        let state = load(&settings.state_file);
        let engine = state
            .as_ref()
            .map(|s| Engine::from_json(&s["engine"]))
            .unwrap_or_default();
        let outboxes = settings
            .receivers
            .iter()
            .map(|r| Outbox {
                queue: state
                    .as_ref()
                    .and_then(|s| s["outboxes"][r.name.as_str()].as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(Pending::from_json)
                    .take(deliver::OUTBOX_CAPACITY)
                    .collect(),
                ..Outbox::default()
            })
            .collect();
        let history = state
            .as_ref()
            .and_then(|s| s["history"].as_array())
            .map(|h| h.iter().rev().take(HISTORY).rev().cloned().collect())
            .unwrap_or_default();
        let limit = f64::from(settings.max_per_minute.max(1));
        let now = now_ms();
        let core = Core {
            engine,
            outboxes,
            buckets: settings
                .receivers
                .iter()
                .map(|_| Bucket {
                    tokens: limit,
                    updated: now,
                    suppressed: 0,
                })
                .collect(),
            history,
            evaluations: 0,
            evaluation_errors: 0,
            last_error: None,
            evaluated_at: None,
            rate_limited: 0,
            state_errors: 0,
            saved: String::new(),
        };
        let settings = Arc::new(settings);
        let core = Arc::new(Mutex::new(core));
        let wake: Vec<Arc<Notify>> = settings
            .receivers
            .iter()
            .map(|_| Arc::new(Notify::new()))
            .collect();
        tokio::spawn(evaluate_loop(
            settings.clone(),
            core.clone(),
            source,
            wake.clone(),
            stop.clone(),
        ));
        let tls = deliver::tls_config();
        for (i, w) in wake.iter().enumerate() {
            tokio::spawn(deliver_loop(
                settings.clone(),
                core.clone(),
                i,
                w.clone(),
                tls.clone(),
                stop.clone(),
            ));
        }
        Alerting {
            settings,
            core,
            wake,
        }
    }

    /// `/api/alerts`: the alerts firing or settling, the recent notifications, the rules and
    /// the receivers (their host only: a webhook URL is a secret).
    pub fn snapshot(&self) -> Value {
        let Ok(core) = self.core.lock() else {
            return json!({"error": "alerting state unavailable"});
        };
        let s = &self.settings;
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs());
        let active: Vec<Value> = core
            .engine
            .alerts()
            .filter(|a| a.firing || a.settling())
            .map(rules::Alert::to_json)
            .collect();
        let receivers: Vec<Value> = s
            .receivers
            .iter()
            .zip(&core.outboxes)
            .map(|(r, o)| {
                json!({
                    "name": r.name, "format": r.format.name(), "host": r.url.host,
                    "rules": r.rules, "queued": o.queue.len(), "delivered": o.delivered,
                    "failures": o.failures, "dropped": o.dropped, "lastError": o.last_error,
                })
            })
            .collect();
        json!({
            "active": active,
            "history": core.history.iter().rev().collect::<Vec<_>>(),
            "rules": {
                "node_offline": {"repeaterSilenceSecs": secs(s.rules.repeater_silence),
                                 "roomSilenceSecs": secs(s.rules.room_silence.or(s.rules.repeater_silence))},
                "observer_offline": {"silenceSecs": secs(s.rules.observer_silence)},
                "ingest_stalled": {"silenceSecs": secs(s.rules.ingest_stall)},
                "new_node": {"enabled": s.rules.new_nodes},
                "capability_regressed": {"enabled": s.rules.capability_regressions},
                "observer_clock_skew": {"thresholdSecs": secs(s.rules.observer_clock_skew)},
                "noise_floor_spike": {"thresholdDb": s.rules.noise_spike_db},
                "bridge_offline": {"silenceSecs": secs(s.rules.bridge_silence),
                                   "minCutOff": s.rules.bridge_min_cut_off},
                "hysteresisSecs": s.rules.hysteresis.as_secs(),
                "evalIntervalSecs": s.eval_interval.as_secs_f64(),
                "maxPerMinute": s.max_per_minute,
            },
            "receivers": receivers,
            "evaluations": core.evaluations,
            "evaluationErrors": core.evaluation_errors,
            "lastError": core.last_error,
            "evaluatedAt": core.evaluated_at.map(rules::iso),
            "rateLimited": core.rate_limited,
        })
    }

    /// Prometheus text lines for `/metrics`.
    pub fn metrics(&self) -> String {
        let Ok(core) = self.core.lock() else {
            return String::new();
        };
        let label = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', " ")
        };
        let mut out = String::from(
            "# HELP meshlens_alerts_firing Alerts firing now, by rule.\n# TYPE meshlens_alerts_firing gauge\n",
        );
        for rule in rules::rule::ALL {
            let n = core
                .engine
                .alerts()
                .filter(|a| a.rule == *rule && a.firing)
                .count();
            out.push_str(&format!("meshlens_alerts_firing{{rule=\"{rule}\"}} {n}\n"));
        }
        out.push_str("# HELP meshlens_alert_notifications_total Notifications by receiver and outcome.\n# TYPE meshlens_alert_notifications_total counter\n");
        for (r, o) in self.settings.receivers.iter().zip(&core.outboxes) {
            let name = label(&r.name);
            out.push_str(&format!(
                "meshlens_alert_notifications_total{{receiver=\"{name}\",result=\"delivered\"}} {}\n\
                 meshlens_alert_notifications_total{{receiver=\"{name}\",result=\"failed_attempt\"}} {}\n\
                 meshlens_alert_notifications_total{{receiver=\"{name}\",result=\"dropped\"}} {}\n",
                o.delivered, o.failures, o.dropped
            ));
        }
        out.push_str("# HELP meshlens_alert_outbox_length Notifications waiting per receiver.\n# TYPE meshlens_alert_outbox_length gauge\n");
        for (r, o) in self.settings.receivers.iter().zip(&core.outboxes) {
            out.push_str(&format!(
                "meshlens_alert_outbox_length{{receiver=\"{}\"}} {}\n",
                label(&r.name),
                o.queue.len()
            ));
        }
        out.push_str(&format!(
            "# TYPE meshlens_alert_evaluations_total counter\nmeshlens_alert_evaluations_total {}\n\
             # TYPE meshlens_alert_evaluation_errors_total counter\nmeshlens_alert_evaluation_errors_total {}\n\
             # TYPE meshlens_alert_rate_limited_total counter\nmeshlens_alert_rate_limited_total {}\n",
            core.evaluations, core.evaluation_errors, core.rate_limited
        ));
        if let Some(t) = core.evaluated_at {
            out.push_str(&format!(
                "# TYPE meshlens_alert_last_evaluation_timestamp_seconds gauge\nmeshlens_alert_last_evaluation_timestamp_seconds {}\n",
                t / 1000
            ));
        }
        out
    }

    /// Wakes every delivery task (tests, and after a configuration change).
    pub fn kick(&self) {
        for w in &self.wake {
            w.notify_one();
        }
    }
}

async fn evaluate_loop(
    settings: Arc<Settings>,
    core: Arc<Mutex<Core>>,
    source: Arc<dyn Source>,
    wake: Vec<Arc<Notify>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(settings.eval_interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = now_ms();
        let src = source.clone();
        let inputs = tokio::task::spawn_blocking(move || src.inputs(now)).await;
        let inputs = match inputs {
            Ok(Ok(i)) => i,
            Ok(Err(e)) => {
                fail(&core, e);
                continue;
            }
            Err(e) => {
                fail(&core, e.to_string());
                continue;
            }
        };
        let settings2 = settings.clone();
        let core2 = core.clone();
        // Serializing and writing the state is blocking work.
        let queued = tokio::task::spawn_blocking(move || {
            let Ok(mut c) = core2.lock() else {
                return false;
            };
            let notes = c.engine.evaluate(&settings2.rules, &inputs);
            for n in &notes {
                tracing::info!(rule = n.rule, state = n.state(), subject = %n.subject.id, "alert");
                c.queue(&settings2, n, now);
            }
            for o in &mut c.outboxes {
                o.expire(now);
            }
            c.evaluations += 1;
            c.evaluated_at = Some(now);
            c.last_error = None;
            c.save(&settings2);
            !notes.is_empty()
        })
        .await
        .unwrap_or(false);
        if queued {
            for w in &wake {
                w.notify_one();
            }
        }
    }
}

fn fail(core: &Mutex<Core>, e: String) {
    if let Ok(mut c) = core.lock() {
        c.evaluation_errors += 1;
        c.last_error = Some(e.clone());
    }
    tracing::warn!("alert evaluation failed: {e}");
}

async fn deliver_loop(
    settings: Arc<Settings>,
    core: Arc<Mutex<Core>>,
    index: usize,
    wake: Arc<Notify>,
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(receiver) = settings.receivers.get(index).cloned() else {
        return;
    };
    loop {
        let now = now_ms();
        let head = core
            .lock()
            .ok()
            .and_then(|c| c.outboxes.get(index).and_then(|o| o.queue.front().cloned()));
        let wait = match &head {
            None => Duration::from_secs(3600),
            Some(p) if p.next_attempt_at > now => {
                Duration::from_millis(u64::try_from(p.next_attempt_at - now).unwrap_or(0))
            }
            Some(_) => Duration::ZERO,
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        let Some(p) = head else { continue };
        let headers: Vec<(&str, String)> = p
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let result = tokio::select! {
            r = deliver::post(&receiver.url, p.body.clone(), &headers, &tls) => r,
            _ = stop.changed() => return,
        };
        let settings2 = settings.clone();
        let core2 = core.clone();
        let name = receiver.name.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(mut c) = core2.lock() else { return };
            let Some(o) = c.outboxes.get_mut(index) else {
                return;
            };
            let now = now_ms();
            match result {
                Ok(()) => {
                    if o.queue.front().is_some_and(|q| q.id == p.id) {
                        o.queue.pop_front();
                    }
                    o.delivered += 1;
                    o.last_error = None;
                }
                Err(e) => {
                    if let Some(q) = o.queue.front_mut().filter(|q| q.id == p.id) {
                        q.attempts += 1;
                        q.next_attempt_at = now + Pending::backoff_ms(q.attempts - 1);
                    }
                    o.failures += 1;
                    tracing::warn!(receiver = %name, "alert delivery failed: {e}");
                    o.last_error = Some(e);
                }
            }
            c.save(&settings2);
        })
        .await;
    }
}
