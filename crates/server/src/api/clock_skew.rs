//! Whose clock is wrong: `/api/observers/clock-skew`, `/api/nodes/clock-skew`,
//! `/api/nodes/{pk}/clock-skew`, and the naive-clock fields of `/api/observers` items.
//!
//! - An observer's skew is measured against meshlens' own clock: each message's envelope
//!   `timestamp` minus when meshlens received it. The writer keeps the median of each 5-minute
//!   bucket's readings (`observer_metrics.clock_skew_ms`); the answer is the weighted median of
//!   the buckets of the last [`OBSERVER_WINDOW_MS`] (`analytics::clock::observer_offset`).
//!   CoreScope calibrates observers against each other instead; its shape (`observerID`,
//!   `offsetSec`, `samples`, largest offset first) is kept, `samples` counting readings.
//! - A zone-less envelope time more than 15 minutes from its arrival is local time written
//!   without its zone, not a wrong clock: the writer records it as CoreScope's naive-clock
//!   fields, which [`naive_clock`] serves with CoreScope's 24-hour decay.
//! - A node's skew is its advert's own timestamp minus when meshlens first heard that advert
//!   (so observers' clocks do not enter it and `calibrated` is always false). Adverts whose
//!   signature failed are left out, replays are ignored (`analytics::clock::node_skew`).

use std::collections::HashMap;
use std::sync::Arc;

use analytics::clock::{AdvertSample, NodeSkew, node_skew, observer_offset};
use axum::Json;
use axum::extract::{Path, Query, State};
use meshcore::{Packet, Payload};
use serde_json::{Value, json};
use store::rusqlite::{Connection, OptionalExtension};
use store::time::iso;

use crate::AppState;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};

/// How far back an observer's clock readings count.
pub const OBSERVER_WINDOW_MS: i64 = 24 * 3_600_000;

/// How long a naive-clock event flags its observer (CoreScope: 24 h).
pub const NAIVE_DECAY_MS: i64 = 24 * 3_600_000;

/// Adverts read for one node, newest first.
pub const MAX_NODE_ADVERTS: i64 = 1_000;

/// Adverts of the last [`FLEET_WINDOW_MS`] read for the fleet answer at most, newest first.
pub const MAX_FLEET_ADVERTS: i64 = 50_000;

/// The fleet answer's window.
pub const FLEET_WINDOW_MS: i64 = 7 * 86_400_000;

/// The naive-clock fields of an `/api/observers` item: `clock_naive`, `clock_skew_seconds`,
/// `clock_skew_count_24h`, `clock_last_naive_at`, from the stored columns as of `now_ms`. An
/// event older than [`NAIVE_DECAY_MS`] no longer flags the observer (false, null, 0, null),
/// so the flag clears by itself without the reader writing anything.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NaiveClock {
    /// A naive-clock event in the last [`NAIVE_DECAY_MS`].
    pub clock_naive: bool,
    /// Its skew (seconds), while flagged.
    pub clock_skew_seconds: Option<i64>,
    /// Events in the last day, while flagged (else 0).
    pub clock_skew_count_24h: i64,
    /// When the last one was seen, while flagged.
    pub clock_last_naive_at: Option<String>,
}

/// [`NaiveClock`] of the stored columns, as of `now_ms`.
pub fn naive_clock(
    now_ms: i64,
    skew_seconds: Option<i64>,
    count_24h: Option<i64>,
    last_naive_at: Option<i64>,
) -> NaiveClock {
    match last_naive_at.filter(|at| now_ms.saturating_sub(*at) <= NAIVE_DECAY_MS) {
        Some(at) => NaiveClock {
            clock_naive: true,
            clock_skew_seconds: skew_seconds,
            clock_skew_count_24h: count_24h.unwrap_or(0),
            clock_last_naive_at: Some(iso(at)),
        },
        None => NaiveClock {
            clock_naive: false,
            clock_skew_seconds: None,
            clock_skew_count_24h: 0,
            clock_last_naive_at: None,
        },
    }
}

/// An observer's id, name and (bucket median ms, readings) of its buckets.
type ObserverBuckets = (String, Option<String>, Vec<(i64, i64)>);

/// `GET /api/observers/clock-skew` → `[{observerID, observerName, offsetSec, samples,
/// buckets}]`, largest offset first.
pub async fn observers(State(st): State<Arc<AppState>>) -> ApiResult<axum::response::Response> {
    let answer = observers_answer(State(st.clone()));
    super::rf::cached(&st, "observers-clock-skew", &HashMap::new(), answer).await
}

async fn observers_answer(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let since = crate::now_ms().saturating_sub(OBSERVER_WINDOW_MS);
    let out = st
        .db
        .query(move |c| {
            let mut stmt = sql(c.prepare_cached(
                "SELECT ob.id, ob.name, m.clock_skew_ms, m.clock_samples
                 FROM observer_metrics m JOIN observers ob ON ob.idx = m.observer_idx
                 WHERE m.bucket >= ?1 AND m.clock_skew_ms IS NOT NULL
                 ORDER BY m.observer_idx",
            ))?;
            let rows = sql(stmt.query_map([since], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            }))?;
            let mut by: Vec<ObserverBuckets> = Vec::new();
            for row in rows {
                let (id, name, ms, n) = sql(row)?;
                match by.last_mut() {
                    Some((last, _, v)) if *last == id => v.push((ms, n)),
                    _ => by.push((id, name, vec![(ms, n)])),
                }
            }
            let mut out: Vec<(f64, Value)> = by
                .into_iter()
                .filter_map(|(id, name, buckets)| {
                    let o = observer_offset(&buckets)?;
                    let offset = (o.offset_sec * 10.0).round() / 10.0;
                    Some((
                        offset,
                        json!({
                            "observerID": id,
                            "observerName": name,
                            "offsetSec": offset,
                            "samples": o.samples,
                            "buckets": o.buckets,
                        }),
                    ))
                })
                .collect();
            out.sort_by(|a, b| b.0.abs().total_cmp(&a.0.abs()));
            Ok(Value::Array(out.into_iter().map(|(_, v)| v).collect()))
        })
        .await?;
    Ok(Json(out))
}

/// An advert's own timestamp, when `raw` is an advert frame by `pubkey`.
fn advert_time(raw: &[u8], pubkey: &str) -> Option<u32> {
    let p = Packet::decode(raw).ok()?;
    let Ok(Payload::Advert(a)) = p.payload() else {
        return None;
    };
    (hex::encode(a.public_key) == pubkey).then_some(a.timestamp)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn skew_json(pubkey: &str, s: &NodeSkew, with_samples: bool) -> Value {
    let mut v = json!({
        "pubkey": pubkey,
        "meanSkewSec": round1(s.mean_sec),
        "medianSkewSec": round1(s.median_sec),
        "lastSkewSec": round1(s.last_sec),
        "recentMedianSkewSec": round1(s.recent_median_sec),
        "driftPerDaySec": (s.drift_per_day_sec * 100.0).round() / 100.0,
        "severity": s.severity.as_str(),
        "sampleCount": s.sample_count,
        "calibrated": false,
        "lastAdvertTS": s.last_advert_ts,
        "lastObservedTS": s.last_observed_ts,
        "goodFraction": (s.good_fraction * 100.0).round() / 100.0,
        "recentBadSampleCount": s.recent_bad_sample_count,
        "recentSampleCount": s.recent_sample_count,
        "replaysIgnored": s.replays_ignored,
    });
    if with_samples {
        v["samples"] = s
            .samples
            .iter()
            .map(|&(ts, skew)| json!({"ts": ts, "skew": round1(skew)}))
            .collect::<Vec<_>>()
            .into();
    }
    v
}

fn node_name_role(c: &Connection, pk: &str) -> ApiResult<Option<(Option<String>, String)>> {
    for table in ["nodes", "inactive_nodes"] {
        let found = sql(c
            .prepare_cached(&format!(
                "SELECT name, role FROM {table} WHERE public_key = ?1"
            ))
            .and_then(|mut s| s.query_row([pk], |r| Ok((r.get(0)?, r.get(1)?))).optional()))?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// `GET /api/nodes/{pk}/clock-skew` → CoreScope's `NodeClockSkew` with `samples`; 404 when
/// the node has no advert to measure.
pub async fn node(
    State(st): State<Arc<AppState>>,
    Path(pk): Path<String>,
) -> ApiResult<Json<Value>> {
    let pk = pk.trim().to_ascii_lowercase();
    if pk.len() != 64 || !pk.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest("pubkey must be 64 hex digits".into()));
    }
    let found =
        st.db
            .query(move |c| {
                let mut stmt = sql(c.prepare_cached(
                    "SELECT t.first_seen, t.raw FROM transmissions t INDEXED BY transmissions_from
                 WHERE t.from_pubkey = ?1 AND t.payload_type = 4
                   AND NOT EXISTS (SELECT 1 FROM rejected_packets r WHERE r.hash = t.hash)
                 ORDER BY t.first_seen DESC LIMIT ?2",
                ))?;
                let rows = sql(stmt
                    .query_map(store::rusqlite::params![pk, MAX_NODE_ADVERTS], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                    }))?;
                let mut adverts = Vec::new();
                for row in rows {
                    let (heard_at_ms, raw) = sql(row)?;
                    if let Some(advert_time) = advert_time(&raw, &pk) {
                        adverts.push(AdvertSample {
                            heard_at_ms,
                            advert_time,
                        });
                    }
                }
                let Some(s) = node_skew(&adverts) else {
                    return Ok(None);
                };
                let mut v = skew_json(&pk, &s, true);
                if let Some((name, role)) = node_name_role(c, &pk)? {
                    v["nodeName"] = name.into();
                    v["nodeRole"] = role.into();
                }
                Ok(Some(v))
            })
            .await?;
    found
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("No clock skew data for this node".into()))
}

/// Served from [`super::rf::AnswerCache`] for a few seconds.
pub async fn fleet(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    let route = "nodes-clock-skew".to_string();
    super::rf::cached(
        &st,
        &route,
        &q,
        fleet_answer(State(st.clone()), Query(q.clone())),
    )
    .await
}

/// `GET /api/nodes/clock-skew` → `[NodeClockSkew]` without samples, for every node that
/// advertised in the last [`FLEET_WINDOW_MS`] (at most [`MAX_FLEET_ADVERTS`] adverts read),
/// worst first.
pub(crate) async fn fleet_answer(
    State(st): State<Arc<AppState>>,
    Query(_q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let since = crate::now_ms().saturating_sub(FLEET_WINDOW_MS);
    let out = st
        .db
        .query(move |c| {
            let mut stmt = sql(c.prepare_cached(
                "SELECT t.from_pubkey, t.first_seen, t.raw FROM transmissions t
                 INDEXED BY transmissions_type
                 WHERE t.payload_type = 4 AND t.first_seen >= ?1 AND t.from_pubkey IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM rejected_packets r WHERE r.hash = t.hash)
                 ORDER BY t.first_seen DESC LIMIT ?2",
            ))?;
            let rows = sql(stmt.query_map(
                store::rusqlite::params![since, MAX_FLEET_ADVERTS],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                },
            ))?;
            let mut by: HashMap<String, Vec<AdvertSample>> = HashMap::new();
            for row in rows {
                let (pk, heard_at_ms, raw) = sql(row)?;
                if let Some(advert_time) = advert_time(&raw, &pk) {
                    by.entry(pk).or_default().push(AdvertSample {
                        heard_at_ms,
                        advert_time,
                    });
                }
            }
            let mut out: Vec<(f64, String, Value)> = Vec::with_capacity(by.len());
            for (pk, adverts) in by {
                let Some(s) = node_skew(&adverts) else {
                    continue;
                };
                let mut v = skew_json(&pk, &s, false);
                if let Some((name, role)) = node_name_role(c, &pk)? {
                    v["nodeName"] = name.into();
                    v["nodeRole"] = role.into();
                }
                out.push((s.recent_median_sec.abs(), pk, v));
            }
            out.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            Ok(Value::Array(out.into_iter().map(|(_, _, v)| v).collect()))
        })
        .await?;
    Ok(Json(out))
}
