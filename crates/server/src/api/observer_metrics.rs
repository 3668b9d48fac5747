//! Observer history: `/api/observers/{id}/metrics`, `/api/observers/metrics/summary` and
//! `/api/observers/{id}/analytics`, in CoreScope's shapes.
//!
//! The writer keeps one `observer_metrics` row per observer per 5-minute bucket of receipt
//! time (live statuses only; see `store::schema::observer_metrics_v1`). `metrics` serves them at
//! 5 minutes, or merged by hour or day; rates come from differences of the cumulative counters
//! between consecutive samples (airtime as a share of the time between them), never across a
//! gap of more than two samples' width or a reboot (a counter that went down: the sample is
//! marked and starts a new baseline). `summary` aggregates a window per observer in SQL, with
//! a noise-floor sparkline of at most [`SPARKLINE_POINTS`] points. `analytics` reads what the
//! observer heard (observations, newest first, at most [`MAX_ANALYTICS_ROWS`]): packets and
//! nodes over time, by payload type and hash size, SNR distribution, airtime (the uploader's
//! `duration`, else the LoRa formula for the observer's `radio`), recent packets.
//!
//! Every answer is bounded: windows are capped, rows are capped (`truncated` says so).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use meshcore::airtime::{AirtimeSource, RadioConfig, observed_airtime_ms};
use serde_json::{Value, json};
use store::rusqlite::{Connection, OptionalExtension};
use store::time::{iso, parse_duration};
use store::{METRICS_BUCKET_MS, metrics_bucket};

use super::Params;
use crate::AppState;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};

/// Most buckets one `metrics` answer reads: 31 days at 5 minutes.
pub const MAX_METRIC_ROWS: i64 = 31 * 288;

/// Longest `window` of `summary` and span of `metrics` (a year).
pub const MAX_WINDOW_MS: i64 = 366 * 86_400_000;

/// Points of a `summary` sparkline at most: 24 h at 5 minutes; longer windows average
/// neighbouring buckets.
pub const SPARKLINE_POINTS: i64 = 288;

/// Observations one `analytics` answer reads at most (the newest).
pub const MAX_ANALYTICS_ROWS: i64 = 100_000;

/// Packets listed in `recentPackets`.
const RECENT_PACKETS: usize = 20;

/// Resolution of a `metrics` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    FiveMinutes,
    Hour,
    Day,
}

impl Resolution {
    fn parse(s: Option<&str>) -> Result<Resolution, ApiError> {
        match s.unwrap_or("5m") {
            "5m" => Ok(Resolution::FiveMinutes),
            "1h" => Ok(Resolution::Hour),
            "1d" => Ok(Resolution::Day),
            other => Err(ApiError::BadRequest(format!(
                "invalid resolution: {other:?}; must be 5m, 1h or 1d"
            ))),
        }
    }

    fn ms(self) -> i64 {
        match self {
            Resolution::FiveMinutes => METRICS_BUCKET_MS,
            Resolution::Hour => 3_600_000,
            Resolution::Day => 86_400_000,
        }
    }
}

/// One bucket as stored, or several merged.
#[derive(Debug, Clone, Default, PartialEq)]
struct Bucket {
    start: i64,
    samples: i64,
    last_at: Option<i64>,
    nf_min: Option<f64>,
    nf_max: Option<f64>,
    nf_sum: Option<f64>,
    nf_n: i64,
    nf_last: Option<f64>,
    battery_min: Option<i64>,
    battery_last: Option<i64>,
    tx_air_secs: Option<i64>,
    rx_air_secs: Option<i64>,
    recv_errors: Option<i64>,
    uptime_secs: Option<i64>,
    queue_max: Option<i64>,
    queue_last: Option<i64>,
    flags_any: Option<i64>,
    flags_last: Option<i64>,
    /// (bucket median ms, readings) of each merged bucket with clock readings.
    clock: Vec<(i64, i64)>,
}

const BUCKET_COLUMNS: &str = "bucket, samples, last_at, noise_floor_min, noise_floor_max, \
    noise_floor_sum, noise_floor_n, noise_floor_last, battery_mv_min, battery_mv_last, \
    tx_air_secs, rx_air_secs, recv_errors, uptime_secs, queue_len_max, queue_len_last, \
    debug_flags_any, debug_flags_last, clock_skew_ms, clock_samples";

fn bucket_row(r: &store::rusqlite::Row<'_>) -> store::rusqlite::Result<Bucket> {
    let clock_ms: Option<i64> = r.get(18)?;
    let clock_n: i64 = r.get(19)?;
    Ok(Bucket {
        start: r.get(0)?,
        samples: r.get(1)?,
        last_at: r.get(2)?,
        nf_min: r.get(3)?,
        nf_max: r.get(4)?,
        nf_sum: r.get(5)?,
        nf_n: r.get(6)?,
        nf_last: r.get(7)?,
        battery_min: r.get(8)?,
        battery_last: r.get(9)?,
        tx_air_secs: r.get(10)?,
        rx_air_secs: r.get(11)?,
        recv_errors: r.get(12)?,
        uptime_secs: r.get(13)?,
        queue_max: r.get(14)?,
        queue_last: r.get(15)?,
        flags_any: r.get(16)?,
        flags_last: r.get(17)?,
        clock: clock_ms.map(|m| vec![(m, clock_n)]).unwrap_or_default(),
    })
}

fn min_opt<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y < x { y } else { x }),
        (x, y) => x.or(y),
    }
}

fn max_opt<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y > x { y } else { x }),
        (x, y) => x.or(y),
    }
}

impl Bucket {
    /// Folds `later` (a later bucket) into this one.
    fn absorb(&mut self, later: Bucket) {
        self.samples = self.samples.saturating_add(later.samples);
        self.last_at = max_opt(self.last_at, later.last_at);
        self.nf_min = min_opt(self.nf_min, later.nf_min);
        self.nf_max = max_opt(self.nf_max, later.nf_max);
        self.nf_sum = match (self.nf_sum, later.nf_sum) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.nf_n = self.nf_n.saturating_add(later.nf_n);
        self.nf_last = later.nf_last.or(self.nf_last);
        self.battery_min = min_opt(self.battery_min, later.battery_min);
        self.battery_last = later.battery_last.or(self.battery_last);
        self.tx_air_secs = later.tx_air_secs.or(self.tx_air_secs);
        self.rx_air_secs = later.rx_air_secs.or(self.rx_air_secs);
        self.recv_errors = later.recv_errors.or(self.recv_errors);
        self.uptime_secs = later.uptime_secs.or(self.uptime_secs);
        self.queue_max = max_opt(self.queue_max, later.queue_max);
        self.queue_last = later.queue_last.or(self.queue_last);
        self.flags_any = match (self.flags_any, later.flags_any) {
            (Some(a), Some(b)) => Some(a | b),
            (a, b) => a.or(b),
        };
        self.flags_last = later.flags_last.or(self.flags_last);
        self.clock.extend(later.clock);
    }

    fn noise_floor_avg(&self) -> Option<f64> {
        let n = self.nf_n;
        self.nf_sum.filter(|_| n > 0).map(|s| s / n as f64)
    }
}

/// Merges 5-minute buckets (sorted) into buckets of `res`.
fn merge(rows: Vec<Bucket>, res: Resolution) -> Vec<Bucket> {
    if res == Resolution::FiveMinutes {
        return rows;
    }
    let mut out: Vec<Bucket> = Vec::new();
    for mut b in rows {
        let start = b.start.div_euclid(res.ms()) * res.ms();
        match out.last_mut() {
            Some(cur) if cur.start == start => cur.absorb(b),
            _ => {
                b.start = start;
                out.push(b);
            }
        }
    }
    out
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The percentage of `secs` seconds of a cumulative counter over an interval, 0–100.
fn airtime_pct(cur: Option<i64>, prev: Option<i64>, interval_secs: f64) -> Option<f64> {
    let d = cur?.checked_sub(prev?)?;
    Some(round2((d as f64 / interval_secs * 100.0).clamp(0.0, 100.0)))
}

/// The samples of a `metrics` answer and the reboot times, from merged buckets.
fn samples(buckets: &[Bucket], res: Resolution) -> (Vec<Value>, Vec<String>) {
    let mut out = Vec::with_capacity(buckets.len());
    let mut reboots = Vec::new();
    let mut prev: Option<&Bucket> = None;
    // Two samples' width: a missing sample or two is a gap, not a new rate.
    let gap_ms = 2 * res.ms();
    for b in buckets.iter().filter(|b| b.samples > 0) {
        let timestamp = iso(b.start);
        let mut v = json!({
            "timestamp": timestamp,
            "noise_floor": b.noise_floor_avg(),
            "noise_floor_min": b.nf_min,
            "noise_floor_max": b.nf_max,
            "noise_floor_last": b.nf_last,
            "tx_air_secs": b.tx_air_secs,
            "rx_air_secs": b.rx_air_secs,
            "recv_errors": b.recv_errors,
            "battery_mv": b.battery_last,
            "battery_mv_min": b.battery_min,
            "uptime_secs": b.uptime_secs,
            "queue_len": b.queue_last,
            "queue_len_max": b.queue_max,
            "debug_flags": b.flags_last,
            "debug_flags_any": b.flags_any,
            "samples": b.samples,
            "clock_skew_seconds": analytics::clock::observer_offset(&b.clock).map(|o| o.offset_sec),
            "tx_airtime_pct": null,
            "rx_airtime_pct": null,
            // CoreScope divides by packets received, which the uploaders meshlens reads do not
            // report; null rather than a made-up rate.
            "recv_error_rate": null,
            "is_reboot_sample": false,
        });
        if let Some(p) = prev {
            // Between the statuses themselves when known, else between bucket starts.
            let interval_ms = match (b.last_at, p.last_at) {
                (Some(a), Some(z)) => a.saturating_sub(z),
                _ => b.start.saturating_sub(p.start),
            };
            let went_down =
                |c: Option<i64>, q: Option<i64>| matches!((c, q), (Some(c), Some(q)) if c < q);
            let reboot = went_down(b.tx_air_secs, p.tx_air_secs)
                || went_down(b.rx_air_secs, p.rx_air_secs)
                || went_down(b.recv_errors, p.recv_errors)
                || went_down(b.uptime_secs, p.uptime_secs);
            let contiguous = b.start.saturating_sub(p.start) <= gap_ms && interval_ms > 0;
            if reboot && contiguous {
                v["is_reboot_sample"] = true.into();
                reboots.push(timestamp);
            } else if contiguous {
                let secs = interval_ms as f64 / 1000.0;
                v["tx_airtime_pct"] = airtime_pct(b.tx_air_secs, p.tx_air_secs, secs).into();
                v["rx_airtime_pct"] = airtime_pct(b.rx_air_secs, p.rx_air_secs, secs).into();
            }
        }
        prev = Some(b);
        out.push(v);
    }
    (out, reboots)
}

/// A path `id`: 1–64 characters, lowercased.
fn observer_id(id: &str) -> Result<String, ApiError> {
    let id = id.trim().to_ascii_lowercase();
    if id.is_empty() || id.len() > 64 {
        return Err(ApiError::BadRequest(
            "observer id must be 1-64 characters".into(),
        ));
    }
    Ok(id)
}

/// The observer's `idx`, name, IATA and radio.
type ObserverRow = (i64, Option<String>, Option<String>, Option<String>);

fn find_observer(c: &Connection, id: &str) -> ApiResult<Option<ObserverRow>> {
    sql(c
        .prepare_cached("SELECT idx, name, iata, radio FROM observers WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()
        }))
}

/// `GET /api/observers/{id}/metrics?since=&until=&resolution=5m|1h|1d` →
/// `{observer_id, observer_name, reboots, metrics, truncated}`; the last 24 hours by default.
pub async fn metrics(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    // Long ranges read thousands of buckets: served from the analytics answer cache.
    let route = format!("observer-metrics/{}", id.to_ascii_lowercase());
    let answer = metrics_answer(State(st.clone()), Path(id), Query(q.clone()));
    super::rf::cached(&st, &route, &q, answer).await
}

async fn metrics_answer(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let id = observer_id(&id)?;
    let p = Params(q);
    let res = Resolution::parse(p.str("resolution"))?;
    let now = crate::now_ms();
    let until = p.time("until")?.unwrap_or(now);
    let since = p.time("since")?.unwrap_or(until.saturating_sub(86_400_000));
    if until < since {
        return Err(ApiError::BadRequest("until is before since".into()));
    }
    if until.saturating_sub(since) > MAX_WINDOW_MS {
        return Err(ApiError::BadRequest(
            "since..until spans more than a year".into(),
        ));
    }
    let out = st
        .db
        .query(move |c| {
            let Some((idx, name, _, _)) = find_observer(c, &id)? else {
                return Ok(json!({
                    "observer_id": id, "observer_name": null, "reboots": [], "metrics": [],
                    "truncated": false,
                }));
            };
            let mut stmt = sql(c.prepare_cached(&format!(
                "SELECT {BUCKET_COLUMNS} FROM observer_metrics
                 WHERE observer_idx = ?1 AND bucket >= ?2 AND bucket <= ?3 AND samples > 0
                 ORDER BY bucket LIMIT ?4"
            )))?;
            let rows: Vec<Bucket> = sql(stmt
                .query_map(
                    store::rusqlite::params![idx, metrics_bucket(since), until, MAX_METRIC_ROWS],
                    bucket_row,
                )
                .and_then(|m| m.collect()))?;
            let truncated = rows.len() as i64 >= MAX_METRIC_ROWS;
            let (metrics, reboots) = samples(&merge(rows, res), res);
            Ok(json!({
                "observer_id": id,
                "observer_name": name,
                "reboots": reboots,
                "metrics": metrics,
                "truncated": truncated,
            }))
        })
        .await?;
    Ok(Json(out))
}

/// A `window` such as `24h`, `7d`: positive, at most a year.
fn window(p: &Params) -> Result<i64, ApiError> {
    let s = p.str("window").unwrap_or("24h");
    let d = parse_duration(s).map_err(|e| ApiError::BadRequest(format!("invalid window: {e}")))?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if ms <= 0 || ms > MAX_WINDOW_MS {
        return Err(ApiError::BadRequest(format!(
            "invalid window: {s:?} (more than 0, at most a year)"
        )));
    }
    Ok(ms)
}

/// Served from [`super::rf::AnswerCache`] for a few seconds.
pub async fn summary(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    let route = "metrics-summary".to_string();
    super::rf::cached(
        &st,
        &route,
        &q,
        summary_answer(State(st.clone()), Query(q.clone())),
    )
    .await
}

/// `GET /api/observers/metrics/summary?window=24h&region=` → `{observers: [{observer_id,
/// observer_name, iata, current_noise_floor, avg_noise_floor_24h, max_noise_floor_24h,
/// battery_mv, sample_count, sparkline}]}`, loudest noise floor first. The `_24h` names are
/// CoreScope's whatever the window.
async fn summary_answer(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    let span = window(&p)?;
    let region = p.str("region").map(str::to_ascii_uppercase);
    let since = metrics_bucket(crate::now_ms().saturating_sub(span));
    // Sparkline step: whole buckets, so that each point averages the same number of them.
    let per_point =
        (span + SPARKLINE_POINTS * METRICS_BUCKET_MS - 1) / (SPARKLINE_POINTS * METRICS_BUCKET_MS);
    let step = per_point.max(1) * METRICS_BUCKET_MS;
    let observers = st
        .db
        .query(move |c| {
            let mut stmt = sql(c.prepare_cached(
                "SELECT m.observer_idx, ob.id, ob.name, ob.iata,
                    (SELECT m2.noise_floor_last FROM observer_metrics m2
                     WHERE m2.observer_idx = m.observer_idx AND m2.bucket >= ?1
                       AND m2.noise_floor_last IS NOT NULL
                     ORDER BY m2.bucket DESC LIMIT 1),
                    sum(m.noise_floor_sum) / nullif(sum(m.noise_floor_n), 0),
                    max(m.noise_floor_max),
                    (SELECT m3.battery_mv_last FROM observer_metrics m3
                     WHERE m3.observer_idx = m.observer_idx AND m3.bucket >= ?1
                       AND m3.battery_mv_last IS NOT NULL
                     ORDER BY m3.bucket DESC LIMIT 1),
                    sum(m.samples)
                 FROM observer_metrics m JOIN observers ob ON ob.idx = m.observer_idx
                 WHERE m.bucket >= ?1 AND m.samples > 0
                 GROUP BY m.observer_idx",
            ))?;
            let mut rows: Vec<(i64, Value, Option<f64>)> = sql(stmt
                .query_map([since], |r| {
                    let max: Option<f64> = r.get(6)?;
                    Ok((
                        r.get::<_, i64>(0)?,
                        json!({
                            "observer_id": r.get::<_, String>(1)?,
                            "observer_name": r.get::<_, Option<String>>(2)?,
                            "iata": r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                            "current_noise_floor": r.get::<_, Option<f64>>(4)?,
                            "avg_noise_floor_24h": r.get::<_, Option<f64>>(5)?,
                            "max_noise_floor_24h": max,
                            "battery_mv": r.get::<_, Option<i64>>(7)?,
                            "sample_count": r.get::<_, i64>(8)?,
                        }),
                        max,
                    ))
                })
                .and_then(|m| m.collect()))?;
            if let Some(region) = &region {
                rows.retain(|(_, v, _)| v["iata"].as_str().is_some_and(|i| i == region));
            }
            let mut spark: HashMap<i64, Vec<Value>> = HashMap::new();
            let mut stmt = sql(c.prepare_cached(
                "SELECT observer_idx, bucket / ?2,
                    sum(noise_floor_sum) / nullif(sum(noise_floor_n), 0)
                 FROM observer_metrics WHERE bucket >= ?1 AND samples > 0
                 GROUP BY observer_idx, bucket / ?2 ORDER BY observer_idx, bucket / ?2",
            ))?;
            let points = sql(stmt.query_map([since, step], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<f64>>(2)?))
            }))?;
            for pt in points {
                let (idx, nf) = sql(pt)?;
                spark.entry(idx).or_default().push(nf.into());
            }
            // Loudest first, observers without a noise floor last.
            rows.sort_by(|a, b| {
                b.2.unwrap_or(f64::NEG_INFINITY)
                    .total_cmp(&a.2.unwrap_or(f64::NEG_INFINITY))
                    .then_with(|| {
                        a.1["observer_id"]
                            .as_str()
                            .cmp(&b.1["observer_id"].as_str())
                    })
            });
            Ok(rows
                .into_iter()
                .map(|(idx, mut v, _)| {
                    v["sparkline"] = Value::Array(spark.remove(&idx).unwrap_or_default());
                    v
                })
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(Json(json!({ "observers": observers })))
}

/// Bytes of a frame before its payload, from its first bytes (wire-format §1.5): header,
/// transport codes on routes 0 and 3, the path-length byte, the path.
fn head_len(frame_start: &[u8]) -> Option<usize> {
    let header = *frame_start.first()?;
    let at = if matches!(header & 0x03, 0 | 3) { 5 } else { 1 };
    let pl = *frame_start.get(at)?;
    Some(at + 1 + usize::from(pl & 0x3F) * (usize::from(pl >> 6) + 1))
}

/// `%H:%M`, `%a %H:%M` or `%b %d` of a UTC time, as CoreScope labels its buckets.
fn label(ms: i64, days: i64) -> String {
    let t = iso(ms);
    let hm = t.get(11..16).unwrap_or("");
    if days <= 1 {
        return hm.to_owned();
    }
    if days <= 7 {
        // 1970-01-01 was a Thursday.
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        let d = ms.div_euclid(86_400_000).rem_euclid(7);
        let name = usize::try_from(d)
            .ok()
            .and_then(|i| DAYS.get(i))
            .unwrap_or(&"");
        return format!("{name} {hm}");
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m: usize = t.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let month = MONTHS.get(m.saturating_sub(1)).unwrap_or(&"");
    format!("{month} {}", t.get(8..10).unwrap_or(""))
}

/// Served from [`super::rf::AnswerCache`] for a few seconds.
pub async fn analytics(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    let route = format!("observer-analytics/{id}");
    super::rf::cached(
        &st,
        &route,
        &q,
        analytics_answer(State(st.clone()), Path(id.clone()), Query(q.clone())),
    )
    .await
}

/// `GET /api/observers/{id}/analytics?days=7` → `{timeline, packetTypes, nodesTimeline,
/// snrDistribution, recentPackets}` (CoreScope's shape; buckets of an hour up to 1 day, 4 h up
/// to 7, a day beyond), plus `hashSizes`, `airtime` (ms heard, by source) and `truncated`.
/// `nodesTimeline` counts the distinct nodes each bucket's packets name: advert senders and
/// path hops (by their hash prefix).
async fn analytics_answer(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let id = observer_id(&id)?;
    let p = Params(q);
    let days = match p.str("days") {
        None => 7,
        Some(s) => s
            .parse::<i64>()
            .map_err(|_| ApiError::BadRequest(format!("days must be an integer, got {s:?}")))?
            .clamp(1, 365),
    };
    let bucket_ms: i64 = if days <= 1 {
        3_600_000
    } else if days <= 7 {
        4 * 3_600_000
    } else {
        86_400_000
    };
    let since = crate::now_ms().saturating_sub(days * 86_400_000);
    let out = st
        .db
        .query(move |c| {
            let empty = || {
                json!({
                    "timeline": [], "packetTypes": {}, "nodesTimeline": [],
                    "snrDistribution": [], "recentPackets": [], "hashSizes": {},
                    "airtime": {"total_ms": 0.0, "uploader_ms": 0.0, "formula_ms": 0.0,
                                "unknown_packets": 0},
                    "truncated": false,
                })
            };
            let Some((idx, _, _, radio)) = find_observer(c, &id)? else {
                return Ok(empty());
            };
            let radio = radio.as_deref().and_then(RadioConfig::parse);
            let mut stmt = sql(c.prepare_cached(
                "SELECT o.received_at, o.snr, o.rssi, o.path_len, o.head, o.airtime_ms,
                        t.hash, t.payload_type, t.route_type, t.from_pubkey, length(t.raw),
                        substr(t.raw, 1, 6)
                 FROM (SELECT * FROM observations INDEXED BY observations_observer
                       WHERE observer_idx = ?1 AND received_at >= ?2
                       ORDER BY received_at DESC LIMIT ?3) o
                 JOIN transmissions t ON t.id = o.transmission_id
                 ORDER BY o.received_at DESC",
            ))?;
            let mut rows =
                sql(stmt.query(store::rusqlite::params![idx, since, MAX_ANALYTICS_ROWS]))?;
            let mut n = 0i64;
            let mut timeline: BTreeMap<i64, i64> = BTreeMap::new();
            let mut nodes: BTreeMap<i64, HashSet<Vec<u8>>> = BTreeMap::new();
            let mut types: BTreeMap<String, i64> = BTreeMap::new();
            let mut sizes: BTreeMap<String, i64> = BTreeMap::new();
            let mut snr: BTreeMap<i64, i64> = BTreeMap::new();
            let (mut total, mut uploader, mut formula, mut unknown) = (0.0, 0.0, 0.0, 0i64);
            let mut recent = Vec::new();
            while let Some(r) = sql(rows.next())? {
                n += 1;
                let at: i64 = sql(r.get(0))?;
                let s: Option<f64> = sql(r.get(1))?;
                let rssi: Option<f64> = sql(r.get(2))?;
                let pl: u8 = sql(r.get::<_, i64>(3))?.clamp(0, 255) as u8;
                let head: Vec<u8> = sql(r.get(4))?;
                let dur: Option<i64> = sql(r.get(5))?;
                let hash: String = sql(r.get(6))?;
                let ptype: i64 = sql(r.get(7))?;
                let route: i64 = sql(r.get(8))?;
                let from: Option<String> = sql(r.get(9))?;
                let raw_len: i64 = sql(r.get(10))?;
                let start: Vec<u8> = sql(r.get(11))?;
                let b = at.div_euclid(bucket_ms) * bucket_ms;
                *timeline.entry(b).or_default() += 1;
                *types.entry(ptype.to_string()).or_default() += 1;
                let size = usize::from(pl >> 6) + 1;
                *sizes.entry(size.to_string()).or_default() += 1;
                if let Some(v) = s.filter(|v| v.is_finite()) {
                    // 2 dB bins, floored: -7.5 is in "-8 to -6".
                    let bin = ((v / 2.0).floor() as i64).saturating_mul(2);
                    *snr.entry(bin).or_default() += 1;
                }
                let set = nodes.entry(b).or_default();
                if let Some(f) = &from {
                    set.insert(f.as_bytes().to_vec());
                }
                // The path hops are the head's last hops × size bytes.
                let hops = usize::from(pl & 0x3F) * size;
                if let Some(path) = head.len().checked_sub(hops).and_then(|i| head.get(i..)) {
                    for hop in path.chunks(size) {
                        set.insert(hop.to_vec());
                    }
                }
                let payload_len = usize::try_from(raw_len)
                    .ok()
                    .zip(head_len(&start))
                    .and_then(|(l, h)| l.checked_sub(h));
                let airtime = payload_len
                    .and_then(|pl| observed_airtime_ms(dur, head.len() + pl, radio.as_ref()));
                match airtime {
                    Some((ms, src)) => {
                        total += ms;
                        match src {
                            AirtimeSource::Uploader => uploader += ms,
                            AirtimeSource::Formula => formula += ms,
                        }
                    }
                    None => unknown += 1,
                }
                if recent.len() < RECENT_PACKETS {
                    recent.push(json!({
                        "hash": hash,
                        "timestamp": iso(at),
                        "payload_type": ptype,
                        "route_type": route,
                        "snr": s,
                        "rssi": rssi,
                        "hops": pl & 0x3F,
                        "hash_size": size,
                        "airtime_ms": airtime.map(|a| a.0),
                        "airtime_source": airtime.map(|a| a.1.as_str()),
                    }));
                }
            }
            let tl = |m: BTreeMap<i64, i64>| -> Vec<Value> {
                m.into_iter()
                    .map(|(b, c)| json!({"label": label(b, days), "count": c}))
                    .collect()
            };
            Ok(json!({
                "timeline": tl(timeline),
                "packetTypes": types,
                "nodesTimeline": tl(nodes.into_iter().map(|(b, s)| (b, s.len() as i64)).collect()),
                "snrDistribution": snr.into_iter()
                    .map(|(b, c)| json!({"range": format!("{b} to {}", b + 2), "count": c}))
                    .collect::<Vec<_>>(),
                "recentPackets": recent,
                "hashSizes": sizes,
                "airtime": {"total_ms": total, "uploader_ms": uploader, "formula_ms": formula,
                            "unknown_packets": unknown},
                "truncated": n >= MAX_ANALYTICS_ROWS,
            }))
        })
        .await?;
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_labels() {
        // Flood, 2 hops of 2 bytes: 1 + 1 + 4.
        assert_eq!(head_len(&[0x15, 0x42, 0, 0, 0, 0]), Some(6));
        // Transport flood (route 0): codes, then the path-length byte at 5.
        assert_eq!(head_len(&[0x14, 1, 2, 3, 4, 0x01]), Some(7));
        assert_eq!(head_len(&[0x14, 1]), None);
        assert_eq!(head_len(&[]), None);
        // 2026-12-01T13:05Z was a Tuesday.
        let t = store::time::parse_time("2026-12-01T13:05:00Z").unwrap();
        assert_eq!(label(t, 1), "13:05");
        assert_eq!(label(t, 7), "Tue 13:05");
        assert_eq!(label(t, 30), "Dec 01");
    }

    #[test]
    fn rates_gaps_and_reboots() {
        let at = |i: i64| i * METRICS_BUCKET_MS;
        let b = |i: i64, tx: i64| Bucket {
            start: at(i),
            samples: 1,
            last_at: Some(at(i)),
            tx_air_secs: Some(tx),
            ..Bucket::default()
        };
        // 30 s of 300 s = 10 %; then a gap; then a reboot.
        let rows = vec![b(0, 100), b(1, 130), b(5, 200), b(6, 10)];
        let (s, reboots) = samples(&rows, Resolution::FiveMinutes);
        assert_eq!(s[0]["tx_airtime_pct"], Value::Null);
        assert_eq!(s[1]["tx_airtime_pct"], 10.0);
        assert_eq!(s[2]["tx_airtime_pct"], Value::Null, "a gap is not a rate");
        assert_eq!(s[3]["is_reboot_sample"], true);
        assert_eq!(reboots, vec![iso(at(6))]);
    }
}
