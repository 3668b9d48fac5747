//! What the reader may ask the writer to do for an operator: the vocabulary of the
//! `<data-dir>/admin-requests/` [`Queue`](crate::Queue). The reader (which never writes the
//! database) validates an admin API call, submits one of these, and polls for the result; the
//! writer parses each pending request with [`AdminRequest::from_json`] (a request file is
//! input from disk, so it is validated again) and completes it with a result object:
//! `{"ok": true, …}` or `{"ok": false, "error": "…"}`.

use serde_json::{Map, Value, json};

/// The queue's directory name under the data directory.
pub const ADMIN_QUEUE: &str = "admin-requests";
/// The most node keys one prune request may carry.
pub const MAX_PRUNE_KEYS: usize = 10_000;
/// The longest frame an injected packet may have, in hex digits (a LoRa frame is at most
/// 255 bytes).
pub const MAX_FRAME_HEX: usize = 2 * 255;

/// A packet an operator injects by hand (`POST /api/packets`), as an observer would have
/// published it.
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    /// The frame, hex.
    pub hex: String,
    /// The observer it is stored under (1–64 of `[A-Za-z0-9_-]`).
    pub observer: String,
    /// The region (IATA-like code) it is stored under.
    pub region: String,
    /// Signal-to-noise ratio, dB.
    pub snr: Option<f64>,
    /// Received signal strength, dBm.
    pub rssi: Option<f64>,
}

/// One request.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminRequest {
    /// Store a packet.
    InjectPacket(Injection),
    /// Delete these nodes (64-hex public keys).
    PruneNodes {
        /// Keys, lowercase.
        public_keys: Vec<String>,
    },
    /// Replace the geo filter (CoreScope's `geo_filter` object, already validated by the
    /// reader; `null` clears it).
    SetGeoFilter {
        /// The filter.
        geo_filter: Value,
    },
}

/// An observer id as a topic segment allows it.
pub fn valid_observer_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A region code as a topic segment allows it.
pub fn valid_region(s: &str) -> bool {
    (1..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn finite(v: Option<&Value>, what: &str) -> Result<Option<f64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && x.abs() <= 1000.0 => Ok(Some(x)),
            _ => Err(format!("{what} must be a number in [-1000, 1000]")),
        },
    }
}

impl AdminRequest {
    /// The request as its file's JSON.
    pub fn to_json(&self) -> Value {
        match self {
            AdminRequest::InjectPacket(i) => json!({
                "kind": "inject_packet", "hex": i.hex, "observer": i.observer,
                "region": i.region, "snr": i.snr, "rssi": i.rssi,
            }),
            AdminRequest::PruneNodes { public_keys } => {
                json!({"kind": "prune_nodes", "public_keys": public_keys})
            }
            AdminRequest::SetGeoFilter { geo_filter } => {
                json!({"kind": "set_geo_filter", "geo_filter": geo_filter})
            }
        }
    }

    /// Parses and validates a request file's JSON.
    pub fn from_json(v: &Value) -> Result<AdminRequest, String> {
        let obj: &Map<String, Value> = v.as_object().ok_or("a request must be an object")?;
        let text = |k: &str| obj.get(k).and_then(Value::as_str);
        match text("kind") {
            Some("inject_packet") => {
                let hex = text("hex").ok_or("hex is required")?;
                if hex.is_empty()
                    || hex.len() > MAX_FRAME_HEX
                    || hex.len() % 2 != 0
                    || !hex.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(format!(
                        "hex must be an even number of hex digits, at most {MAX_FRAME_HEX}"
                    ));
                }
                let observer = text("observer").ok_or("observer is required")?;
                if !valid_observer_id(observer) {
                    return Err("observer must be 1-64 of A-Z, a-z, 0-9, - and _".into());
                }
                let region = text("region").ok_or("region is required")?;
                if !valid_region(region) {
                    return Err("region must be 1-16 of A-Z, a-z, 0-9 and -".into());
                }
                Ok(AdminRequest::InjectPacket(Injection {
                    hex: hex.to_owned(),
                    observer: observer.to_owned(),
                    region: region.to_owned(),
                    snr: finite(obj.get("snr"), "snr")?,
                    rssi: finite(obj.get("rssi"), "rssi")?,
                }))
            }
            Some("prune_nodes") => {
                let keys = obj
                    .get("public_keys")
                    .and_then(Value::as_array)
                    .ok_or("public_keys must be an array")?;
                if keys.len() > MAX_PRUNE_KEYS {
                    return Err(format!("at most {MAX_PRUNE_KEYS} public keys"));
                }
                let mut public_keys = Vec::with_capacity(keys.len());
                for k in keys {
                    match k.as_str() {
                        Some(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
                            public_keys.push(s.to_ascii_lowercase());
                        }
                        _ => return Err("each public key must be 64 hex digits".into()),
                    }
                }
                Ok(AdminRequest::PruneNodes { public_keys })
            }
            Some("set_geo_filter") => Ok(AdminRequest::SetGeoFilter {
                geo_filter: obj.get("geo_filter").cloned().unwrap_or(Value::Null),
            }),
            Some(other) => Err(format!("unknown request kind {other:?}")),
            None => Err("kind is required".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for r in [
            AdminRequest::InjectPacket(Injection {
                hex: "1100aabb".into(),
                observer: "manual".into(),
                region: "SEA".into(),
                snr: Some(7.5),
                rssi: None,
            }),
            AdminRequest::PruneNodes {
                public_keys: vec!["ab".repeat(32)],
            },
            AdminRequest::SetGeoFilter {
                geo_filter: json!({"polygon": [[1, 2], [3, 4], [5, 6]]}),
            },
        ] {
            assert_eq!(AdminRequest::from_json(&r.to_json()).unwrap(), r);
        }
    }

    #[test]
    fn hostile_files_are_errors() {
        for v in [
            json!([]),
            json!({}),
            json!({"kind": "drop_tables"}),
            json!({"kind": "inject_packet", "hex": "abc", "observer": "o", "region": "R"}),
            json!({"kind": "inject_packet", "hex": "zz", "observer": "o", "region": "R"}),
            json!({"kind": "inject_packet", "hex": "ab".repeat(256), "observer": "o", "region": "R"}),
            json!({"kind": "inject_packet", "hex": "abcd", "observer": "../x", "region": "R"}),
            json!({"kind": "inject_packet", "hex": "abcd", "observer": "o", "region": "a/b"}),
            json!({"kind": "inject_packet", "hex": "abcd", "observer": "o", "region": "R", "snr": "x"}),
            json!({"kind": "prune_nodes", "public_keys": ["abc"]}),
            json!({"kind": "prune_nodes", "public_keys": "ab"}),
        ] {
            assert!(AdminRequest::from_json(&v).is_err(), "{v}");
        }
    }
}
