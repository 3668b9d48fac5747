//! The HTTP API: CoreScope's paths and top-level shapes. Every parameter is validated (bad →
//! 400 `{"error"}`), every list is capped, arrays are never null.

pub mod admin;
pub mod alerts;
pub mod analytics;
pub mod areas;
pub mod audio_lab;
pub mod battery;
pub mod channel_stats;
pub mod channels;
pub mod clock_skew;
pub mod collisions;
pub mod config;
pub mod corescope;
pub mod coverage;
pub mod fleet;
pub mod inspect;
pub mod neighbors;
pub mod node_analytics;
pub mod node_health;
pub mod nodes;
pub mod observer_metrics;
pub mod observers;
pub(crate) mod packet_json;
pub mod packets;
pub mod paths;
pub mod perf;
pub mod resolved;
pub mod rf;
pub mod roles;
pub mod scopes;
pub mod status;

use std::collections::HashMap;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use store::time::parse_time;

/// Query parameters with typed, validating getters.
pub struct Params(pub HashMap<String, String>);

impl Params {
    /// A parameter, trimmed; empty counts as absent.
    pub fn str(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    /// `limit`, defaulting to `default`, capped at `max`; must be a positive integer.
    pub fn limit(&self, default: i64, max: i64) -> Result<i64, ApiError> {
        match self.str("limit") {
            None => Ok(default),
            Some(s) => match s.parse::<i64>() {
                Ok(n) if n >= 1 => Ok(n.min(max)),
                _ => Err(ApiError::BadRequest(format!(
                    "limit must be a positive integer, got {s:?}"
                ))),
            },
        }
    }

    /// `offset`, default 0, at most 10⁹.
    pub fn offset(&self) -> Result<i64, ApiError> {
        match self.str("offset") {
            None => Ok(0),
            Some(s) => match s.parse::<i64>() {
                Ok(n) if (0..=1_000_000_000).contains(&n) => Ok(n),
                _ => Err(ApiError::BadRequest(format!(
                    "offset must be a non-negative integer, got {s:?}"
                ))),
            },
        }
    }

    /// A time parameter (ISO 8601 or Unix seconds/milliseconds) as Unix ms.
    pub fn time(&self, k: &str) -> Result<Option<i64>, ApiError> {
        self.str(k)
            .map(|s| {
                parse_time(s).ok_or_else(|| ApiError::BadRequest(format!("{k}: not a time: {s:?}")))
            })
            .transpose()
    }

    /// A comma-separated list: `None` when absent; items trimmed, empty ones skipped,
    /// duplicates dropped (the first kept). Present with no item at all (`region=,`) is a
    /// client error, as is a list longer than `max`: each item becomes a bound SQL value, and
    /// an empty `IN ()` is not SQL.
    pub fn list(&self, k: &str, max: usize) -> Result<Option<Vec<&str>>, ApiError> {
        let Some(s) = self.str(k) else {
            return Ok(None);
        };
        let mut items: Vec<&str> = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if !items.contains(&item) {
                items.push(item);
            }
            if items.len() > max {
                return Err(ApiError::BadRequest(format!(
                    "{k}: at most {max} comma-separated values"
                )));
            }
        }
        if items.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "{k}: expected one or more comma-separated values, got {s:?}"
            )));
        }
        Ok(Some(items))
    }

    /// A boolean flag (`true`/`1`/`yes` or `false`/`0`/`no`).
    pub fn flag(&self, k: &str) -> Result<bool, ApiError> {
        match self.str(k).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false" | "0" | "no") => Ok(false),
            Some("true" | "1" | "yes") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "{k} must be true or false, got {other:?}"
            ))),
        }
    }
}

/// A response of JSON already serialized (on the blocking thread that read the rows, so
/// large pages are not built on an async worker).
pub fn json_response(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// A lowercase hex string of 1–64 digits (a key or hash prefix), or 400.
pub fn hex_prefix(what: &str, s: &str) -> Result<String, ApiError> {
    let s = s.trim().to_ascii_lowercase();
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(format!("{what} must be hex")));
    }
    Ok(s)
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A node role filter value, or 400.
pub fn role(s: &str) -> Result<&'static str, ApiError> {
    match s.to_ascii_lowercase().as_str() {
        "repeater" | "repeaters" => Ok("repeater"),
        "room" | "rooms" | "room_server" => Ok("room"),
        "companion" | "companions" | "chat" => Ok("companion"),
        "sensor" | "sensors" => Ok("sensor"),
        other => Err(ApiError::BadRequest(format!(
            "role must be repeater, room, companion or sensor, got {other:?}"
        ))),
    }
}
