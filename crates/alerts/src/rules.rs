//! The rules and their state machine, pure: [`Engine::evaluate`] takes what the mesh looks
//! like now ([`Inputs`]) and returns the notifications to send. No clock, no I/O: the
//! service passes `now`, so every transition is testable at any speed.
//!
//! Each (rule, subject) pair is an [`Alert`] that is firing or not. Notifications follow
//! three principles an on-call operator expects:
//!
//! - **Prompt.** A condition is acted on at the first evaluation that sees it: a repeater
//!   silent for its threshold is reported within the threshold plus one evaluation period.
//! - **Hysteresis (hold-down).** A change that comes within [`Config::hysteresis`] of the
//!   subject's previous change is not sent at once: the alert is *settling*, and once its
//!   state has held for the hysteresis window the state is sent if it differs from the last
//!   one sent. A node flapping inside the window therefore sends nothing more than its first
//!   change, and then, once it settles, at most one message saying where it ended up.
//! - **Once.** What was sent is part of the state (persisted by the service), so neither a
//!   re-evaluation nor a restart sends a notification twice. On the very first evaluation
//!   (no state yet) conditions already true are taken as known, not announced: starting
//!   meshlens on a database with a hundred long-dead repeaters must not page anyone.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde_json::{Value, json};

/// A node as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSeen {
    /// 64-hex public key.
    pub public_key: String,
    /// Advertised name (attacker-controlled text).
    pub name: Option<String>,
    /// `repeater`, `room`, `companion` or `sensor`.
    pub role: String,
    /// First heard, Unix ms.
    pub first_seen: i64,
    /// Last heard, Unix ms.
    pub last_seen: i64,
    /// Confirmed multi-byte capable from its own adverts (`multibyte_evidence = advert`).
    pub multibyte_by_advert: bool,
    /// The path-hash size (1–3) of its latest advert, if one is stored.
    pub last_advert_hash_size: Option<u8>,
}

/// An observer as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObserverSeen {
    /// Observer id (its public key).
    pub id: String,
    /// Its name, if it reported one.
    pub name: Option<String>,
    /// Last packet or status, Unix ms.
    pub last_seen: i64,
    /// Its clock's offset (envelope time minus receipt, robust median over the last day),
    /// seconds, when known.
    pub clock_offset_sec: Option<f64>,
    /// Its noise floor (dBm): the mean over the last 15 minutes and the median of its
    /// 5-minute means over the day before, when both are known.
    pub noise_floor: Option<(f64, f64)>,
}

/// A bridge node: a relay whose loss splits the mesh (an articulation point of the neighbor
/// graph, `analytics::bridges`).
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeSeen {
    /// 64-hex public key.
    pub public_key: String,
    /// Advertised name (attacker-controlled text).
    pub name: Option<String>,
    /// Nodes that lose their way to the rest of the mesh without it.
    pub cut_off: usize,
    /// Last heard or seen relaying, Unix ms.
    pub last_active: i64,
}

/// The mesh at one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    /// Now, Unix ms.
    pub now: i64,
    /// Every node (active and inactive).
    pub nodes: Vec<NodeSeen>,
    /// Every observer.
    pub observers: Vec<ObserverSeen>,
    /// When the newest observation was received, if any.
    pub last_observation_at: Option<i64>,
    /// The bridge nodes of the neighbor graph.
    pub bridges: Vec<BridgeSeen>,
}

/// The rules' thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// A repeater silent this long is offline (`--alert-node-silence`, default 24 h).
    pub repeater_silence: Option<Duration>,
    /// A room server silent this long is offline (default: the repeaters' threshold).
    pub room_silence: Option<Duration>,
    /// An observer silent this long is offline (`--alert-observer-silence`, default 15 min).
    pub observer_silence: Option<Duration>,
    /// No observation at all for this long is a stalled ingest (default 10 min).
    pub ingest_stall: Option<Duration>,
    /// Announce nodes heard for the first time.
    pub new_nodes: bool,
    /// Report nodes whose multi-byte capability goes backwards.
    pub capability_regressions: bool,
    /// An observer whose clock is off by this much (either way) is reported (default 5 min:
    /// wrong timestamps on everything it uploads).
    pub observer_clock_skew: Option<Duration>,
    /// A noise floor this many dB above the observer's usual level is a spike (default 10).
    pub noise_spike_db: Option<f64>,
    /// A bridge node (its loss cuts off at least [`Config::bridge_min_cut_off`] nodes) silent
    /// this long splits the mesh (default 2 h: relays are heard relaying far more often than
    /// they advertise).
    pub bridge_silence: Option<Duration>,
    /// The fewest nodes a bridge must hold to the mesh for its silence to be a split (default 2).
    pub bridge_min_cut_off: usize,
    /// See the module doc (default 1 h).
    pub hysteresis: Duration,
    /// At most this many new-node notifications per evaluation; beyond, one summary.
    pub max_new_nodes_per_evaluation: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            repeater_silence: Some(Duration::from_secs(24 * 3600)),
            room_silence: Some(Duration::from_secs(24 * 3600)),
            observer_silence: Some(Duration::from_secs(15 * 60)),
            ingest_stall: Some(Duration::from_secs(10 * 60)),
            new_nodes: true,
            capability_regressions: true,
            observer_clock_skew: Some(Duration::from_secs(300)),
            noise_spike_db: Some(10.0),
            bridge_silence: Some(Duration::from_secs(2 * 3600)),
            bridge_min_cut_off: 2,
            hysteresis: Duration::from_secs(3600),
            max_new_nodes_per_evaluation: 20,
        }
    }
}

/// The rule names, as they appear in notifications, `/api/alerts` and the config file.
pub mod rule {
    /// A repeater or room server went silent (resolved: back online).
    pub const NODE_OFFLINE: &str = "node_offline";
    /// An observer stopped publishing (resolved: publishing again).
    pub const OBSERVER_OFFLINE: &str = "observer_offline";
    /// No observation from anyone (resolved: flowing again).
    pub const INGEST_STALLED: &str = "ingest_stalled";
    /// A node was heard for the first time (an event: never resolved).
    pub const NEW_NODE: &str = "new_node";
    /// A node confirmed multi-byte by its own adverts advertises with 1-byte path hashes
    /// again (resolved: multi-byte again).
    pub const CAPABILITY_REGRESSED: &str = "capability_regressed";
    /// An observer's clock is off by more than the threshold (resolved: back within it).
    pub const OBSERVER_CLOCK_SKEW: &str = "observer_clock_skew";
    /// An observer's noise floor rose well above its usual level (interference, a new
    /// transmitter nearby, a failing LNA; resolved: back down).
    pub const NOISE_FLOOR_SPIKE: &str = "noise_floor_spike";
    /// A bridge node, whose loss splits the mesh, went silent: the nodes behind it may be cut
    /// off (resolved: heard again).
    pub const BRIDGE_OFFLINE: &str = "bridge_offline";
    /// Every rule.
    pub const ALL: &[&str] = &[
        NODE_OFFLINE,
        OBSERVER_OFFLINE,
        INGEST_STALLED,
        NEW_NODE,
        CAPABILITY_REGRESSED,
        OBSERVER_CLOCK_SKEW,
        NOISE_FLOOR_SPIKE,
        BRIDGE_OFFLINE,
    ];
}

/// What an alert is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subject {
    /// `node`, `observer` or `ingest`.
    pub kind: &'static str,
    /// Public key, observer id, or `all`.
    pub id: String,
    /// Display name (attacker-controlled text).
    pub name: Option<String>,
}

impl Subject {
    fn json(&self) -> Value {
        json!({"kind": self.kind, "id": self.id, "name": self.name})
    }

    fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", short(&self.id)),
            None => short(&self.id).to_owned(),
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// One message to the receivers.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Unique per (rule, subject, state, since): a receiver can de-duplicate on it.
    pub id: String,
    /// The rule.
    pub rule: &'static str,
    /// True: firing; false: resolved.
    pub firing: bool,
    /// What it is about.
    pub subject: Subject,
    /// Since when the state holds (Unix ms): when the node was last heard, when it came back.
    pub since: i64,
    /// When the engine decided it (Unix ms).
    pub at: i64,
    /// One line for a person.
    pub message: String,
}

impl Notification {
    /// `firing` or `resolved`.
    pub fn state(&self) -> &'static str {
        if self.firing { "firing" } else { "resolved" }
    }

    /// The generic webhook body.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "rule": self.rule,
            "state": self.state(),
            "subject": self.subject.json(),
            "since": iso(self.since),
            "at": iso(self.at),
            "message": self.message,
        })
    }
}

/// Unix ms as ISO 8601 UTC with milliseconds.
pub fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Changes remembered per alert (enough to know the previous one).
const HISTORY: usize = 8;

/// One (rule, subject) pair's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The rule.
    pub rule: &'static str,
    /// The subject.
    pub subject: Subject,
    /// Whether the condition holds.
    pub firing: bool,
    /// Since when the current state holds (Unix ms).
    pub since: i64,
    /// When the state last changed (Unix ms), newest last.
    pub changes: VecDeque<i64>,
    /// The last state sent to the receivers (`None`: never sent, i.e. "not firing").
    pub notified: Option<bool>,
    /// A short description of the current state.
    pub message: String,
}

impl Alert {
    /// Whether a change is being held back by the hysteresis window.
    pub fn settling(&self) -> bool {
        self.notified.unwrap_or(false) != self.firing
    }

    /// For `/api/alerts` and the state file.
    pub fn to_json(&self) -> Value {
        json!({
            "rule": self.rule,
            "subject": self.subject.json(),
            "state": if self.firing { "firing" } else { "resolved" },
            "since": iso(self.since),
            "sinceMs": self.since,
            "settling": self.settling(),
            "notified": self.notified,
            "changes": self.changes.iter().collect::<Vec<_>>(),
            "message": self.message,
        })
    }

    fn from_json(v: &Value) -> Option<Alert> {
        let rule = *rule::ALL.iter().find(|r| v["rule"] == **r)?;
        let kind = ["node", "observer", "ingest"]
            .into_iter()
            .find(|k| v["subject"]["kind"] == *k)?;
        let id = v["subject"]["id"].as_str()?.to_owned();
        let name = v["subject"]["name"].as_str().map(str::to_owned);
        let all: Vec<i64> = v["changes"]
            .as_array()?
            .iter()
            .filter_map(Value::as_i64)
            .collect();
        let changes = all[all.len().saturating_sub(HISTORY)..]
            .iter()
            .copied()
            .collect();
        Some(Alert {
            rule,
            subject: Subject { kind, id, name },
            firing: v["state"] == "firing",
            since: v["sinceMs"].as_i64()?,
            changes,
            notified: v["notified"].as_bool(),
            message: v["message"].as_str().unwrap_or_default().to_owned(),
        })
    }
}

/// Resolved alerts untouched this long are forgotten (their subjects may be long gone).
const FORGET_AFTER_MS: i64 = 7 * 86_400_000;

/// The rules' memory between evaluations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Engine {
    alerts: BTreeMap<(&'static str, String), Alert>,
    /// The previous evaluation's `now` (`None` before the first): nodes first heard after it
    /// are new.
    last_evaluated: Option<i64>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn ago(now: i64, then: i64) -> String {
    let s = (now - then).max(0) / 1000;
    match s {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3600 => format!("{} h", s / 3600),
        s if s >= 120 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

impl Engine {
    /// The alerts known, firing or not.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    /// The state as JSON, for the state file.
    pub fn to_json(&self) -> Value {
        json!({
            "lastEvaluated": self.last_evaluated,
            // An alert that never fired and never changed is the default: not worth a line.
            "alerts": self
                .alerts
                .values()
                .filter(|a| a.firing || a.notified.is_some() || !a.changes.is_empty())
                .map(Alert::to_json)
                .collect::<Vec<_>>(),
        })
    }

    /// Reads a state file's JSON; entries that do not parse are skipped.
    pub fn from_json(v: &Value) -> Engine {
        let mut e = Engine {
            last_evaluated: v["lastEvaluated"].as_i64(),
            ..Engine::default()
        };
        for a in v["alerts"].as_array().into_iter().flatten() {
            if let Some(a) = Alert::from_json(a) {
                e.alerts.insert((a.rule, a.subject.id.clone()), a);
            }
        }
        e
    }

    /// One evaluation: updates every alert from `inputs` and returns what to send.
    pub fn evaluate(&mut self, cfg: &Config, inputs: &Inputs) -> Vec<Notification> {
        let now = inputs.now;
        let first = self.last_evaluated.is_none();
        let mut out = Vec::new();
        let mut seen: BTreeSet<(&'static str, String)> = BTreeSet::new();

        for n in &inputs.nodes {
            let threshold = match n.role.as_str() {
                "repeater" => cfg.repeater_silence,
                "room" => cfg.room_silence.or(cfg.repeater_silence),
                _ => None,
            };
            let Some(threshold) = threshold else {
                continue;
            };
            let silent = now - n.last_seen >= ms(threshold);
            let subject = Subject {
                kind: "node",
                id: n.public_key.clone(),
                name: n.name.clone(),
            };
            let what = if n.role == "room" {
                "Room server"
            } else {
                "Repeater"
            };
            let message = if silent {
                format!(
                    "{what} {} silent for {}",
                    subject.label(),
                    ago(now, n.last_seen)
                )
            } else {
                format!("{what} {} is back online", subject.label())
            };
            let since = if silent {
                n.last_seen
            } else {
                n.last_seen.min(now)
            };
            seen.insert((rule::NODE_OFFLINE, n.public_key.clone()));
            self.step(
                cfg,
                rule::NODE_OFFLINE,
                subject,
                silent,
                since,
                message,
                now,
                first,
                &mut out,
            );
        }

        if let Some(threshold) = cfg.bridge_silence {
            for b in inputs
                .bridges
                .iter()
                .filter(|b| b.cut_off >= cfg.bridge_min_cut_off.max(1))
            {
                let silent = now - b.last_active >= ms(threshold);
                let subject = Subject {
                    kind: "node",
                    id: b.public_key.clone(),
                    name: b.name.clone(),
                };
                let message = if silent {
                    format!(
                        "Bridge node {} silent for {}: the mesh may be split, {} nodes reach the rest only through it",
                        subject.label(),
                        ago(now, b.last_active),
                        b.cut_off
                    )
                } else {
                    format!("Bridge node {} is heard again", subject.label())
                };
                seen.insert((rule::BRIDGE_OFFLINE, b.public_key.clone()));
                self.step(
                    cfg,
                    rule::BRIDGE_OFFLINE,
                    subject,
                    silent,
                    b.last_active,
                    message,
                    now,
                    first,
                    &mut out,
                );
            }
        }

        if cfg.capability_regressions {
            for n in inputs.nodes.iter().filter(|n| n.multibyte_by_advert) {
                let Some(size) = n.last_advert_hash_size else {
                    continue;
                };
                let regressed = size == 1;
                let subject = Subject {
                    kind: "node",
                    id: n.public_key.clone(),
                    name: n.name.clone(),
                };
                let message = if regressed {
                    format!(
                        "{} advertises with 1-byte path hashes again after advertising multi-byte",
                        subject.label()
                    )
                } else {
                    format!(
                        "{} advertises with {size}-byte path hashes again",
                        subject.label()
                    )
                };
                seen.insert((rule::CAPABILITY_REGRESSED, n.public_key.clone()));
                self.step(
                    cfg,
                    rule::CAPABILITY_REGRESSED,
                    subject,
                    regressed,
                    n.last_seen,
                    message,
                    now,
                    first,
                    &mut out,
                );
            }
        }

        if let Some(threshold) = cfg.observer_silence {
            for o in &inputs.observers {
                let silent = now - o.last_seen >= ms(threshold);
                let subject = Subject {
                    kind: "observer",
                    id: o.id.clone(),
                    name: o.name.clone(),
                };
                let message = if silent {
                    format!(
                        "Observer {} has published nothing for {}",
                        subject.label(),
                        ago(now, o.last_seen)
                    )
                } else {
                    format!("Observer {} is publishing again", subject.label())
                };
                seen.insert((rule::OBSERVER_OFFLINE, o.id.clone()));
                self.step(
                    cfg,
                    rule::OBSERVER_OFFLINE,
                    subject,
                    silent,
                    o.last_seen,
                    message,
                    now,
                    first,
                    &mut out,
                );
            }
        }

        if let Some(db) = cfg.noise_spike_db {
            for o in &inputs.observers {
                let Some((recent, usual)) = o
                    .noise_floor
                    .filter(|(a, b)| a.is_finite() && b.is_finite())
                else {
                    continue;
                };
                let spike = recent - usual >= db;
                let subject = Subject {
                    kind: "observer",
                    id: o.id.clone(),
                    name: o.name.clone(),
                };
                let message = if spike {
                    format!(
                        "Observer {}'s noise floor is {recent:.0} dBm, {:.0} dB above its usual {usual:.0} dBm",
                        subject.label(),
                        recent - usual
                    )
                } else {
                    format!(
                        "Observer {}'s noise floor is back to {recent:.0} dBm",
                        subject.label()
                    )
                };
                seen.insert((rule::NOISE_FLOOR_SPIKE, o.id.clone()));
                self.step(
                    cfg,
                    rule::NOISE_FLOOR_SPIKE,
                    subject,
                    spike,
                    now,
                    message,
                    now,
                    first,
                    &mut out,
                );
            }
        }

        if let Some(threshold) = cfg.observer_clock_skew {
            let limit = threshold.as_secs_f64();
            for o in &inputs.observers {
                let Some(offset) = o.clock_offset_sec.filter(|x| x.is_finite()) else {
                    continue;
                };
                let skewed = offset.abs() >= limit;
                let subject = Subject {
                    kind: "observer",
                    id: o.id.clone(),
                    name: o.name.clone(),
                };
                let message = if skewed {
                    format!(
                        "Observer {}'s clock is off by {offset:+.0} s",
                        subject.label()
                    )
                } else {
                    format!("Observer {}'s clock is right again", subject.label())
                };
                seen.insert((rule::OBSERVER_CLOCK_SKEW, o.id.clone()));
                self.step(
                    cfg,
                    rule::OBSERVER_CLOCK_SKEW,
                    subject,
                    skewed,
                    now,
                    message,
                    now,
                    first,
                    &mut out,
                );
            }
        }

        if let (Some(threshold), Some(last)) = (cfg.ingest_stall, inputs.last_observation_at) {
            let stalled = now - last >= ms(threshold);
            let message = if stalled {
                format!("No packet from any observer for {}", ago(now, last))
            } else {
                "Packets are arriving again".to_owned()
            };
            let subject = Subject {
                kind: "ingest",
                id: "all".into(),
                name: None,
            };
            seen.insert((rule::INGEST_STALLED, "all".into()));
            self.step(
                cfg,
                rule::INGEST_STALLED,
                subject,
                stalled,
                last,
                message,
                now,
                first,
                &mut out,
            );
        }

        if cfg.new_nodes
            && let Some(since) = self.last_evaluated
        {
            let mut fresh: Vec<&NodeSeen> = inputs
                .nodes
                .iter()
                .filter(|n| n.first_seen > since && n.first_seen <= now)
                .collect();
            fresh.sort_by(|a, b| (a.first_seen, &a.public_key).cmp(&(b.first_seen, &b.public_key)));
            let shown = fresh.len().min(cfg.max_new_nodes_per_evaluation);
            for n in &fresh[..shown] {
                let subject = Subject {
                    kind: "node",
                    id: n.public_key.clone(),
                    name: n.name.clone(),
                };
                out.push(Notification {
                    id: format!("{}:{}:{}", rule::NEW_NODE, n.public_key, n.first_seen),
                    rule: rule::NEW_NODE,
                    firing: true,
                    message: format!("New {} heard: {}", n.role, subject.label()),
                    subject,
                    since: n.first_seen,
                    at: now,
                });
            }
            if fresh.len() > shown {
                out.push(Notification {
                    id: format!("{}:summary:{now}", rule::NEW_NODE),
                    rule: rule::NEW_NODE,
                    firing: true,
                    subject: Subject {
                        kind: "node",
                        id: "many".into(),
                        name: None,
                    },
                    since: since + 1,
                    at: now,
                    message: format!(
                        "{} more new nodes heard since the last evaluation",
                        fresh.len() - shown
                    ),
                });
            }
        }

        // Subjects that disappeared (deleted nodes, expired observers): a resolved alert is
        // forgotten once old; a firing one of a vanished subject is dropped silently.
        self.alerts.retain(|key, a| {
            let present = seen.contains(key);
            let old = now - a.changes.back().copied().unwrap_or(a.since) > FORGET_AFTER_MS;
            present || (!a.firing && !a.settling() && !old)
        });
        self.last_evaluated = Some(now);
        out
    }

    /// Updates one alert with its condition now; pushes what must be sent.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        cfg: &Config,
        rule: &'static str,
        subject: Subject,
        condition: bool,
        since: i64,
        message: String,
        now: i64,
        first: bool,
        out: &mut Vec<Notification>,
    ) {
        let key = (rule, subject.id.clone());
        let a = self.alerts.entry(key).or_insert_with(|| Alert {
            rule,
            subject: subject.clone(),
            firing: false,
            since,
            changes: VecDeque::new(),
            notified: None,
            message: String::new(),
        });
        a.subject.name = subject.name.clone();
        a.message = message;
        let hysteresis = ms(cfg.hysteresis);
        if condition != a.firing {
            let previous = a.changes.back().copied();
            a.firing = condition;
            a.since = since;
            a.changes.push_back(now);
            while a.changes.len() > HISTORY {
                a.changes.pop_front();
            }
            if first {
                // The baseline: what is already true when alerting starts is known.
                a.notified = Some(condition);
                return;
            }
            let held = previous.is_some_and(|p| now - p < hysteresis);
            if !held && a.notified.unwrap_or(false) != condition {
                a.notified = Some(condition);
                out.push(notification(a, now));
            }
            return;
        }
        // No change now: a settling alert is sent once its state has held for the window.
        let stable = a.changes.back().is_none_or(|c| now - c >= hysteresis);
        if a.settling() && stable {
            a.notified = Some(a.firing);
            out.push(notification(a, now));
        }
    }
}

fn notification(a: &Alert, now: i64) -> Notification {
    Notification {
        id: format!(
            "{}:{}:{}:{}",
            a.rule,
            a.subject.id,
            if a.firing { "firing" } else { "resolved" },
            a.since
        ),
        rule: a.rule,
        firing: a.firing,
        subject: a.subject.clone(),
        since: a.since,
        at: now,
        message: a.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn cfg() -> Config {
        Config {
            repeater_silence: Some(Duration::from_secs(600)),
            observer_silence: Some(Duration::from_secs(60)),
            ..Config::default()
        }
    }

    fn repeater(last_seen: i64) -> Inputs {
        Inputs {
            now: 0,
            nodes: vec![NodeSeen {
                public_key: "ab".repeat(32),
                name: Some("Hilltop".into()),
                role: "repeater".into(),
                first_seen: 0,
                last_seen,
                multibyte_by_advert: false,
                last_advert_hash_size: None,
            }],
            ..Inputs::default()
        }
    }

    fn at(mut i: Inputs, now: i64) -> Inputs {
        i.now = now;
        i
    }

    #[test]
    fn offline_then_back_is_two_notifications() {
        let mut e = Engine::default();
        let c = cfg();
        assert!(e.evaluate(&c, &at(repeater(1_000), 2_000)).is_empty());
        // 599 s of silence: nothing; 600 s: offline, once.
        assert!(e.evaluate(&c, &at(repeater(1_000), 600_999)).is_empty());
        let n = e.evaluate(&c, &at(repeater(1_000), 601_000));
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(n[0].firing);
        assert_eq!(n[0].since, 1_000);
        assert!(n[0].message.contains("Hilltop"), "{}", n[0].message);
        assert!(e.evaluate(&c, &at(repeater(1_000), 700_000)).is_empty());
        // Heard again two hours later: back, at once (the last change is over an hour old).
        let back = 2 * H;
        let n = e.evaluate(&c, &at(repeater(back), back + 1));
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(!n[0].firing);
        assert!(e.evaluate(&c, &at(repeater(back), back + 2)).is_empty());
    }

    #[test]
    fn a_flapping_node_sends_nothing_inside_the_window_then_where_it_settled() {
        let mut e = Engine::default();
        let c = cfg();
        e.evaluate(&c, &at(repeater(0), 1));
        let t = 601_000;
        assert_eq!(e.evaluate(&c, &at(repeater(0), t)).len(), 1, "offline");
        // Back 5 min later, gone 11 min after that, back again: all inside the hour.
        assert!(
            e.evaluate(&c, &at(repeater(t + 300_000), t + 300_001))
                .is_empty()
        );
        assert!(
            e.evaluate(&c, &at(repeater(t + 300_000), t + 960_000))
                .is_empty()
        );
        assert!(
            e.evaluate(&c, &at(repeater(t + 1_000_000), t + 1_000_001))
                .is_empty()
        );
        assert!(
            e.alerts().next().unwrap().settling(),
            "a change is held back"
        );
        // It stays heard; an hour after its last change, one "back".
        let later = t + 1_000_001 + H;
        let n = e.evaluate(&c, &at(repeater(later - 1), later));
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(!n[0].firing);
        assert!(e.evaluate(&c, &at(repeater(later), later + 10)).is_empty());
    }

    #[test]
    fn a_flap_that_ends_where_it_was_sends_nothing_more() {
        let mut e = Engine::default();
        let c = cfg();
        e.evaluate(&c, &at(repeater(0), 1));
        let t = 601_000;
        assert_eq!(e.evaluate(&c, &at(repeater(0), t)).len(), 1);
        // Back briefly, then silent again for good: it ends offline, already sent.
        assert!(
            e.evaluate(&c, &at(repeater(t + 1_000), t + 1_001))
                .is_empty()
        );
        assert!(
            e.evaluate(&c, &at(repeater(t + 1_000), t + 700_000))
                .is_empty()
        );
        assert!(
            e.evaluate(&c, &at(repeater(t + 1_000), t + 5 * H))
                .is_empty()
        );
    }

    #[test]
    fn what_is_already_true_at_the_first_evaluation_is_not_announced() {
        let mut e = Engine::default();
        assert!(
            e.evaluate(&cfg(), &at(repeater(0), 30 * 86_400_000))
                .is_empty()
        );
        let a = e.alerts().next().unwrap();
        assert!(a.firing && !a.settling());
        // ...but its return is.
        let now = 31 * 86_400_000;
        assert_eq!(e.evaluate(&cfg(), &at(repeater(now), now)).len(), 1);
    }

    #[test]
    fn state_round_trips_so_a_restart_sends_nothing_twice() {
        let mut e = Engine::default();
        let c = cfg();
        e.evaluate(&c, &at(repeater(0), 1));
        assert_eq!(e.evaluate(&c, &at(repeater(0), 601_000)).len(), 1);
        let mut restarted = Engine::from_json(&e.to_json());
        assert_eq!(restarted, e);
        assert!(restarted.evaluate(&c, &at(repeater(0), 700_000)).is_empty());
    }

    #[test]
    fn companions_have_no_silence_rule_and_new_nodes_are_announced_bounded() {
        let c = Config {
            max_new_nodes_per_evaluation: 2,
            ..cfg()
        };
        let mut e = Engine::default();
        let mut i = Inputs {
            now: 1_000,
            ..Inputs::default()
        };
        e.evaluate(&c, &i);
        for k in 0..5 {
            i.nodes.push(NodeSeen {
                public_key: format!("{k:064x}"),
                name: Some(format!("<b>n{k}</b>")),
                role: "companion".into(),
                first_seen: 2_000 + k,
                last_seen: 2_000 + k,
                multibyte_by_advert: false,
                last_advert_hash_size: None,
            });
        }
        i.now = 10_000_000;
        let n = e.evaluate(&c, &i);
        assert_eq!(n.len(), 3, "{n:?}");
        assert!(n.iter().all(|n| n.rule == rule::NEW_NODE));
        assert!(n[2].message.contains("3 more"), "{}", n[2].message);
        assert!(e.evaluate(&c, &i).is_empty(), "announced once");
    }

    #[test]
    fn observers_and_a_stalled_ingest() {
        let c = cfg();
        let mut e = Engine::default();
        let mut i = Inputs {
            now: 10_000,
            observers: vec![ObserverSeen {
                id: "cd".repeat(32),
                name: None,
                last_seen: 9_000,
                clock_offset_sec: None,
                noise_floor: None,
            }],
            last_observation_at: Some(9_000),
            ..Inputs::default()
        };
        assert!(e.evaluate(&c, &i).is_empty());
        i.now = 9_000 + 60_000;
        let n = e.evaluate(&c, &i);
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!(n[0].rule, rule::OBSERVER_OFFLINE);
        i.now = 9_000 + 600_000;
        let n = e.evaluate(&c, &i);
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!(n[0].rule, rule::INGEST_STALLED);
        assert_eq!(n[0].to_json()["subject"]["kind"], "ingest");
    }

    #[test]
    fn a_node_advertising_one_byte_again_after_multi_byte_is_reported() {
        let c = cfg();
        let node = |size: u8, heard: i64| Inputs {
            now: heard,
            nodes: vec![NodeSeen {
                public_key: "ef".repeat(32),
                name: Some("Ridge".into()),
                role: "companion".into(),
                first_seen: 0,
                last_seen: heard,
                multibyte_by_advert: true,
                last_advert_hash_size: Some(size),
            }],
            ..Inputs::default()
        };
        let mut e = Engine::default();
        assert!(e.evaluate(&c, &node(2, 1_000)).is_empty());
        let n = e.evaluate(&c, &node(1, 2_000));
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!(n[0].rule, rule::CAPABILITY_REGRESSED);
        assert!(n[0].message.contains("1-byte"), "{}", n[0].message);
        assert!(e.evaluate(&c, &node(1, 3_000)).is_empty());
        let n = e.evaluate(&c, &node(2, 3_000 + H));
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(!n[0].firing);
        // Confirmed only by what it relayed: its own 1-byte adverts are no regression.
        let mut relay_only = node(1, 10 * H);
        relay_only.nodes[0].multibyte_by_advert = false;
        let mut e = Engine::default();
        e.evaluate(&c, &node(2, 1));
        e.alerts.clear();
        assert!(e.evaluate(&c, &relay_only).is_empty());
    }

    #[test]
    fn an_observer_with_a_wrong_clock() {
        let c = cfg();
        let obs = |now: i64, offset: f64| Inputs {
            now,
            observers: vec![ObserverSeen {
                id: "cd".repeat(32),
                name: Some("Roof".into()),
                last_seen: now,
                clock_offset_sec: Some(offset),
                noise_floor: None,
            }],
            ..Inputs::default()
        };
        let mut e = Engine::default();
        assert!(e.evaluate(&c, &obs(1, 2.0)).is_empty());
        assert!(e.evaluate(&c, &obs(2, -299.0)).is_empty());
        let n = e.evaluate(&c, &obs(3, 3600.0));
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!(n[0].rule, rule::OBSERVER_CLOCK_SKEW);
        assert!(n[0].message.contains("+3600 s"), "{}", n[0].message);
        let n = e.evaluate(&c, &obs(3 + H, 1.0));
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(!n[0].firing);
    }

    #[test]
    fn a_noise_floor_spike() {
        let c = cfg();
        let obs = |now: i64, recent: f64| Inputs {
            now,
            observers: vec![ObserverSeen {
                id: "cd".repeat(32),
                name: None,
                last_seen: now,
                clock_offset_sec: None,
                noise_floor: Some((recent, -115.0)),
            }],
            ..Inputs::default()
        };
        let mut e = Engine::default();
        assert!(e.evaluate(&c, &obs(1, -114.0)).is_empty());
        assert!(
            e.evaluate(&c, &obs(2, -106.0)).is_empty(),
            "9 dB is not a spike"
        );
        let n = e.evaluate(&c, &obs(3, -95.0));
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!(n[0].rule, rule::NOISE_FLOOR_SPIKE);
        assert!(n[0].message.contains("20 dB above"), "{}", n[0].message);
        assert!(!e.evaluate(&c, &obs(3 + H, -114.0))[0].firing);
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_796_083_200_123), "2026-12-01T00:00:00.123Z");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn a_silent_bridge_node_is_a_mesh_split_and_small_cuts_are_not() {
        let c = Config {
            bridge_silence: Some(Duration::from_secs(600)),
            bridge_min_cut_off: 3,
            hysteresis: Duration::ZERO,
            ..cfg()
        };
        let bridge = |cut_off, last_active| BridgeSeen {
            public_key: format!("{cut_off:064x}"),
            name: Some("<i>Ridge</i>".into()),
            cut_off,
            last_active,
        };
        let mut e = Engine::default();
        let mut i = Inputs {
            now: 1_000,
            bridges: vec![bridge(5, 1_000), bridge(1, 1_000)],
            ..Inputs::default()
        };
        assert!(e.evaluate(&c, &i).is_empty(), "all heard");
        i.now = 1_000 + 11 * 60_000;
        let n = e.evaluate(&c, &i);
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!((n[0].rule, n[0].firing), (rule::BRIDGE_OFFLINE, true));
        assert!(n[0].message.contains("5 nodes"), "{}", n[0].message);
        assert!(e.evaluate(&c, &i).is_empty(), "sent once");
        i.bridges[0].last_active = i.now;
        i.now += 1;
        let n = e.evaluate(&c, &i);
        assert_eq!((n.len(), n[0].firing), (1, false), "{n:?}");
    }
}
