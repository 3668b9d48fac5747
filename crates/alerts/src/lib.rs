//! Alerting for meshlens: "when a bridge repeater goes silent at 2 am, somebody hears about
//! it". Rules over the mesh's state ([`rules`]: pure, with hysteresis), their delivery to
//! webhooks in generic JSON and in the formats Discord, Slack and ntfy accept ([`deliver`]),
//! and the service that runs both and keeps their state across restarts ([`service`]).
//!
//! It runs in the **reader** (`meshlens serve` / `run`): the rules need the reader's view of
//! the mesh, and the reader never writes the database, so alert state lives in its own file,
//! `<data-dir>/alerts/state.json`, written atomically (see ARCHITECTURE.md for why not the
//! database).

pub mod deliver;
pub mod rules;
pub mod service;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

pub use deliver::{Format, Receiver, Url};
pub use rules::{BridgeSeen, Config, Inputs, NodeSeen, ObserverSeen};
pub use service::{Alerting, Settings, Source};

/// `30s`, `15m`, `6h`, `7d` (or plain seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 30s, 15m, 6h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => return Ok(Duration::from_millis(n)),
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (s, m, h, d)")),
    };
    Ok(Duration::from_secs(secs))
}

impl Settings {
    /// The defaults, with state in `<data_dir>/alerts/state.json`.
    pub fn new(data_dir: &Path) -> Settings {
        Settings {
            rules: Config::default(),
            receivers: Vec::new(),
            eval_interval: Duration::from_secs(30),
            state_file: data_dir.join("alerts").join("state.json"),
            max_per_minute: 30,
        }
    }

    /// Applies the config file's `alerts` object:
    ///
    /// ```json
    /// {"evalInterval": "30s", "hysteresis": "1h", "maxPerMinute": 30,
    ///  "rules": {"node_offline": {"repeater": "24h", "room": "12h"},
    ///            "observer_offline": "15m", "ingest_stalled": false, "new_node": true},
    ///  "receivers": [{"name": "ops", "url": "https://…", "format": "discord",
    ///                 "rules": ["node_offline"]}]}
    /// ```
    ///
    /// A rule set to `false` is off. Anything malformed is an error naming the key.
    pub fn apply_json(&mut self, v: &Value) -> Result<(), String> {
        let obj = v.as_object().ok_or("alerts must be an object")?;
        let dur = |v: &Value, at: &str| -> Result<Option<Duration>, String> {
            match v {
                Value::Bool(false) | Value::Null => Ok(None),
                Value::String(s) => parse_duration(s)
                    .map(Some)
                    .map_err(|e| format!("{at}: {e}")),
                Value::Number(n) => n
                    .as_u64()
                    .map(|n| Some(Duration::from_secs(n)))
                    .ok_or_else(|| format!("{at}: expected seconds")),
                _ => Err(format!("{at}: expected a duration like \"15m\", or false")),
            }
        };
        if let Some(v) = obj.get("evalInterval") {
            self.eval_interval =
                dur(v, "alerts.evalInterval")?.ok_or("alerts.evalInterval cannot be off")?;
        }
        if let Some(v) = obj.get("hysteresis") {
            self.rules.hysteresis = dur(v, "alerts.hysteresis")?.unwrap_or_default();
        }
        if let Some(v) = obj.get("maxPerMinute") {
            self.max_per_minute = v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or("alerts.maxPerMinute must be a positive integer")?;
        }
        if let Some(r) = obj.get("rules") {
            let r = r.as_object().ok_or("alerts.rules must be an object")?;
            for (k, v) in r {
                match k.as_str() {
                    "node_offline" => match v {
                        Value::Object(o) => {
                            if let Some(x) = o.get("repeater") {
                                self.rules.repeater_silence =
                                    dur(x, "alerts.rules.node_offline.repeater")?;
                            }
                            if let Some(x) = o.get("room") {
                                self.rules.room_silence = dur(x, "alerts.rules.node_offline.room")?;
                            }
                        }
                        other => {
                            let d = dur(other, "alerts.rules.node_offline")?;
                            self.rules.repeater_silence = d;
                            self.rules.room_silence = d;
                        }
                    },
                    "observer_offline" => {
                        self.rules.observer_silence = dur(v, "alerts.rules.observer_offline")?;
                    }
                    "ingest_stalled" => {
                        self.rules.ingest_stall = dur(v, "alerts.rules.ingest_stalled")?;
                    }
                    "new_node" => {
                        self.rules.new_nodes = v
                            .as_bool()
                            .ok_or("alerts.rules.new_node must be true or false")?;
                    }
                    "observer_clock_skew" => {
                        self.rules.observer_clock_skew =
                            dur(v, "alerts.rules.observer_clock_skew")?;
                    }
                    "noise_floor_spike" => {
                        let bad =
                            "alerts.rules.noise_floor_spike: dB above the usual level, or false";
                        self.rules.noise_spike_db = match v {
                            Value::Bool(false) | Value::Null => None,
                            Value::Number(n) => Some(
                                n.as_f64()
                                    .filter(|x| x.is_finite() && *x > 0.0)
                                    .ok_or(bad)?,
                            ),
                            _ => return Err(bad.into()),
                        };
                    }
                    "bridge_offline" => match v {
                        Value::Object(o) => {
                            if let Some(x) = o.get("silence") {
                                self.rules.bridge_silence =
                                    dur(x, "alerts.rules.bridge_offline.silence")?;
                            }
                            if let Some(x) = o.get("minCutOff") {
                                self.rules.bridge_min_cut_off = x
                                    .as_u64()
                                    .and_then(|n| usize::try_from(n).ok())
                                    .filter(|n| *n > 0)
                                    .ok_or("alerts.rules.bridge_offline.minCutOff must be a positive integer")?;
                            }
                        }
                        other => {
                            self.rules.bridge_silence = dur(other, "alerts.rules.bridge_offline")?;
                        }
                    },
                    "capability_regressed" => {
                        self.rules.capability_regressions = v
                            .as_bool()
                            .ok_or("alerts.rules.capability_regressed must be true or false")?;
                    }
                    other => return Err(format!("alerts.rules.{other}: no such rule")),
                }
            }
        }
        if let Some(list) = obj.get("receivers") {
            let list = list.as_array().ok_or("alerts.receivers must be an array")?;
            for (i, r) in list.iter().enumerate() {
                let at = format!("alerts.receivers[{i}]");
                let url = r["url"]
                    .as_str()
                    .ok_or_else(|| format!("{at}.url must be a string"))?;
                let format = match r.get("format") {
                    None => Format::Generic,
                    Some(f) => f
                        .as_str()
                        .and_then(Format::parse)
                        .ok_or_else(|| format!("{at}.format: generic, discord, slack or ntfy"))?,
                };
                let rules = match r.get("rules") {
                    None | Some(Value::Null) => None,
                    Some(Value::Array(a)) => {
                        let mut out = Vec::new();
                        for x in a {
                            let name = x
                                .as_str()
                                .filter(|n| rules::rule::ALL.contains(n))
                                .ok_or_else(|| format!("{at}.rules: unknown rule {x}"))?;
                            out.push(name.to_owned());
                        }
                        Some(out)
                    }
                    Some(_) => return Err(format!("{at}.rules must be an array of rule names")),
                };
                self.add_receiver(r["name"].as_str().map(str::to_owned), url, format, rules)
                    .map_err(|e| format!("{at}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Adds a receiver (`--alert-webhook` gives a generic one for every rule).
    pub fn add_receiver(
        &mut self,
        name: Option<String>,
        url: &str,
        format: Format,
        rules: Option<Vec<String>>,
    ) -> Result<(), String> {
        let url = Url::parse(url)?;
        let name = name.unwrap_or_else(|| format!("webhook-{}", self.receivers.len() + 1));
        if self.receivers.iter().any(|r| r.name == name) {
            return Err(format!("two receivers are called {name:?}"));
        }
        self.receivers.push(Receiver {
            name,
            url,
            format,
            rules,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("6h").unwrap(), Duration::from_secs(6 * 3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn the_config_files_alerts_object() {
        let mut s = Settings::new(Path::new("/d"));
        s.apply_json(&json!({
            "evalInterval": "10s", "hysteresis": "30m",
            "rules": {"node_offline": {"repeater": "6h"}, "ingest_stalled": false, "new_node": false},
            "receivers": [{"name": "ops", "url": "https://hooks.slack.com/x", "format": "slack",
                           "rules": ["node_offline"]}]
        }))
        .unwrap();
        assert_eq!(s.eval_interval, Duration::from_secs(10));
        assert_eq!(
            s.rules.repeater_silence,
            Some(Duration::from_secs(6 * 3600))
        );
        assert_eq!(s.rules.ingest_stall, None);
        assert!(!s.rules.new_nodes);
        assert_eq!(s.receivers[0].format, Format::Slack);
        assert!(s.receivers[0].wants("node_offline") && !s.receivers[0].wants("new_node"));
        for bad in [
            json!({"rules": {"node_ofline": "1h"}}),
            json!({"rules": {"observer_offline": "soon"}}),
            json!({"receivers": [{"url": "ftp://x"}]}),
            json!({"receivers": [{"url": "http://x", "format": "pager"}]}),
            json!({"receivers": [{"url": "http://x", "rules": ["everything"]}]}),
            json!({"maxPerMinute": 0}),
            json!({"rules": {"noise_floor_spike": -3}}),
            json!({"rules": {"noise_floor_spike": "loud"}}),
        ] {
            assert!(
                Settings::new(Path::new("/d")).apply_json(&bad).is_err(),
                "{bad}"
            );
        }
    }
}
