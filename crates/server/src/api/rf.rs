//! RF analytics: `/api/analytics/rf` and `/api/analytics/relay-airtime-share`, in CoreScope's
//! shapes.
//!
//! - `rf` reads the observations of a window (newest first, at most [`MAX_RF_ROWS`]; optionally
//!   of one observer or one region's observers) and answers SNR/RSSI statistics and
//!   histograms, packet sizes, packets and signal per hour, payload types, and SNR by payload
//!   type; beyond CoreScope, SNR and RSSI by observer and by path-hash size.
//! - `relay-airtime-share` reads the transmissions of a window (at most
//!   [`MAX_RELAY_ROWS`]) and shares the channel time relaying costs among payload types: each
//!   packet's time on air (the LoRa formula for the network's most common radio settings, as
//!   the observers report them, else CoreScope's default EU preset) times the relays it took
//!   (the most hops any observer heard it with; CoreScope counts resolved relay keys, which
//!   meshlens does not have).
//!
//! Windows: `window` (`1h`, `24h`, `7d`…, at most [`MAX_WINDOW_MS`]), default 24 hours.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use meshcore::PayloadType;
use meshcore::airtime::{LoraParams, RadioConfig};
use serde_json::{Value, json};
use store::time::{iso, parse_duration};

use super::Params;
use crate::AppState;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};

/// Answers of analytics that read a window of rows, kept by route and query: under a
/// dashboard's polling (and a benchmark's 16 clients) each is computed once per few seconds
/// rather than per request, as CoreScope's recomputer does. Fresh for [`AnswerCache::FRESH`];
/// after that, for up to [`AnswerCache::STALE`], the last answer is served at once while one
/// background task computes the next (stale-while-revalidate), so only the very first request
/// for a query waits for the computation, never one of a steady stream. Bounded in entries
/// and bytes; the oldest goes first.
#[derive(Default)]
pub struct AnswerCache {
    inner: std::sync::Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    answers: HashMap<String, (std::time::Instant, axum::body::Bytes)>,
    /// Keys being recomputed in the background (at most one task per key).
    refreshing: std::collections::HashSet<String>,
}

/// What the cache holds for a key.
#[derive(Debug, PartialEq)]
enum Lookup {
    Fresh(axum::body::Bytes),
    /// Old but servable; `refresh` when this caller should start the recomputation.
    Stale(axum::body::Bytes, bool),
    Missing,
}

impl AnswerCache {
    /// How long an answer is served as it is.
    pub const FRESH: std::time::Duration = std::time::Duration::from_secs(10);
    /// How long an older answer is still served while the next one is computed.
    pub const STALE: std::time::Duration = std::time::Duration::from_secs(600);
    /// Answers kept at most.
    const CAPACITY: usize = 64;
    /// Largest answer kept.
    const MAX_BYTES: usize = 1 << 20;
    /// All answers together at most: varied query strings must not make the cache a way to
    /// pin memory.
    const TOTAL_BYTES: usize = 8 << 20;

    fn lookup(&self, key: &str, now: std::time::Instant) -> Lookup {
        let Ok(mut c) = self.inner.lock() else {
            return Lookup::Missing;
        };
        let Some((at, body)) = c.answers.get(key).cloned() else {
            return Lookup::Missing;
        };
        let age = now.saturating_duration_since(at);
        if age < Self::FRESH {
            return Lookup::Fresh(body);
        }
        if age >= Self::STALE {
            return Lookup::Missing;
        }
        let refresh = c.refreshing.len() < Self::CAPACITY && c.refreshing.insert(key.to_owned());
        Lookup::Stale(body, refresh)
    }

    fn put(&self, key: String, body: axum::body::Bytes, now: std::time::Instant) {
        let Ok(mut c) = self.inner.lock() else { return };
        c.refreshing.remove(&key);
        if body.len() > Self::MAX_BYTES {
            return;
        }
        c.answers
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < Self::STALE);
        while c.answers.len() >= Self::CAPACITY
            || c.answers.values().map(|(_, b)| b.len()).sum::<usize>() + body.len()
                > Self::TOTAL_BYTES
        {
            let Some(oldest) = c
                .answers
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            c.answers.remove(&oldest);
        }
        c.answers.insert(key, (now, body));
    }

    /// A background recomputation ended without an answer: the next stale hit retries.
    fn refresh_failed(&self, key: &str) {
        if let Ok(mut c) = self.inner.lock() {
            c.refreshing.remove(key);
        }
    }
}

/// Runs `f` once one of `slots` is free, and serializes its answer.
async fn recompute<F>(slots: Arc<tokio::sync::Semaphore>, f: F) -> ApiResult<Vec<u8>>
where
    F: std::future::Future<Output = ApiResult<Json<Value>>>,
{
    // The semaphore is never closed; if it were, computing anyway is the safe side.
    let _slot = slots.acquire_owned().await;
    let Json(v) = f.await?;
    serde_json::to_vec(&v).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The answer for `route` and query `q` from the cache, or computed by `f` and kept. A stale
/// answer is returned at once and `f` runs in the background to replace it, one background
/// computation at a time for the whole reader.
pub async fn cached<F>(
    st: &Arc<AppState>,
    route: &str,
    q: &HashMap<String, String>,
    f: F,
) -> ApiResult<axum::response::Response>
where
    F: std::future::Future<Output = ApiResult<Json<Value>>> + Send + 'static,
{
    let mut params: Vec<_> = q.iter().collect();
    params.sort();
    let key = format!("{route}?{params:?}");
    match st.analytics_answers.lookup(&key, std::time::Instant::now()) {
        Lookup::Fresh(body) | Lookup::Stale(body, false) => {
            return Ok(super::json_response(body.to_vec()));
        }
        Lookup::Stale(body, true) => {
            let st = st.clone();
            tokio::spawn(async move {
                // Answers of one dashboard go stale together: recomputed one at a time, their
                // working memory does not add up (at 2,000,000 observations, 25 concurrent
                // recomputations took the reader's peak RSS from 164 to 453 MiB) and they
                // leave the other database connections to interactive requests.
                match recompute(st.analytics_refresh.clone(), f).await {
                    Ok(bytes) => st.analytics_answers.put(
                        key,
                        axum::body::Bytes::from(bytes),
                        std::time::Instant::now(),
                    ),
                    Err(_) => st.analytics_answers.refresh_failed(&key),
                }
            });
            return Ok(super::json_response(body.to_vec()));
        }
        Lookup::Missing => {}
    }
    let Json(v) = f.await?;
    let body = serde_json::to_vec(&v).map_err(|e| ApiError::Internal(e.to_string()))?;
    st.analytics_answers.put(
        key,
        axum::body::Bytes::from(body.clone()),
        std::time::Instant::now(),
    );
    Ok(super::json_response(body))
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Background recomputations share one slot: the second does not start while the first
    /// runs, and starts once it ends. (A current-thread runtime runs a spawned task whenever
    /// the test yields, so without the slot the second would have started.)
    #[tokio::test(flavor = "current_thread")]
    async fn recomputations_run_one_at_a_time() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let started: [Arc<AtomicBool>; 2] = Default::default();
        let (release_first, first_may_end) = tokio::sync::oneshot::channel::<()>();
        let s0 = started[0].clone();
        let first = tokio::spawn(recompute(slots.clone(), async move {
            s0.store(true, Ordering::SeqCst);
            let _ = first_may_end.await;
            Ok(Json(Value::from(1)))
        }));
        let s1 = started[1].clone();
        let second = tokio::spawn(recompute(slots.clone(), async move {
            s1.store(true, Ordering::SeqCst);
            Ok(Json(Value::from(2)))
        }));
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(started[0].load(Ordering::SeqCst), "the first never started");
        assert!(
            !started[1].load(Ordering::SeqCst),
            "the second ran beside the first"
        );
        let _ = release_first.send(());
        assert_eq!(first.await.ok().and_then(Result::ok), Some(b"1".to_vec()));
        assert_eq!(second.await.ok().and_then(Result::ok), Some(b"2".to_vec()));
        assert!(started[1].load(Ordering::SeqCst));
    }

    #[test]
    fn fresh_then_stale_with_one_refresher_then_gone() {
        let c = AnswerCache::default();
        let t0 = Instant::now();
        assert_eq!(c.lookup("k", t0), Lookup::Missing);
        c.put("k".into(), axum::body::Bytes::from_static(b"1"), t0);
        assert!(matches!(
            c.lookup("k", t0 + Duration::from_secs(5)),
            Lookup::Fresh(_)
        ));
        let later = t0 + AnswerCache::FRESH + Duration::from_secs(1);
        assert!(
            matches!(c.lookup("k", later), Lookup::Stale(_, true)),
            "first stale hit refreshes"
        );
        assert!(
            matches!(c.lookup("k", later), Lookup::Stale(_, false)),
            "one refresher per key"
        );
        c.put("k".into(), axum::body::Bytes::from_static(b"2"), later);
        assert_eq!(
            c.lookup("k", later),
            Lookup::Fresh(axum::body::Bytes::from_static(b"2"))
        );
        let gone = later + AnswerCache::STALE;
        assert_eq!(c.lookup("k", gone), Lookup::Missing, "too old to serve");
        // A failed refresh lets the next stale hit try again.
        let stale = later + AnswerCache::FRESH + Duration::from_secs(1);
        assert!(matches!(c.lookup("k", stale), Lookup::Stale(_, true)));
        c.refresh_failed("k");
        assert!(matches!(c.lookup("k", stale), Lookup::Stale(_, true)));
    }
}

/// Longest window.
pub const MAX_WINDOW_MS: i64 = 30 * 86_400_000;

/// Observations one `rf` answer reads at most.
pub const MAX_RF_ROWS: i64 = 200_000;

/// Transmissions one `relay-airtime-share` answer reads at most.
pub const MAX_RELAY_ROWS: i64 = 100_000;

/// Points of `scatterData` at most.
const SCATTER_POINTS: usize = 500;

/// The window's start and its label.
fn window(p: &Params) -> Result<(i64, String), ApiError> {
    let label = p.str("window").unwrap_or("24h").to_owned();
    let d =
        parse_duration(&label).map_err(|e| ApiError::BadRequest(format!("invalid window: {e}")))?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if ms <= 0 || ms > MAX_WINDOW_MS {
        return Err(ApiError::BadRequest(format!(
            "invalid window: {label:?} (more than 0, at most 30 days)"
        )));
    }
    Ok((crate::now_ms().saturating_sub(ms), label))
}

/// `2026-12-01T13`: an hour as CoreScope names it (the first 13 characters of its ISO time).
fn hour_name(hour: i64) -> String {
    let t = iso(hour.saturating_mul(3_600_000));
    t.get(..13).unwrap_or("").to_owned()
}

fn type_name(t: i64) -> &'static str {
    u8::try_from(t).map_or("UNKNOWN", |t| PayloadType::from_nibble(t).name())
}

/// min, max, avg, median (the upper middle, as CoreScope) and population stddev of `v`,
/// sorted in place; zeros when empty.
fn stats(v: &mut [f64]) -> Value {
    v.sort_unstable_by(f64::total_cmp);
    let (Some(&min), Some(&max)) = (v.first(), v.last()) else {
        return json!({"min": 0.0, "max": 0.0, "avg": 0.0, "median": 0.0, "stddev": 0.0});
    };
    let n = v.len() as f64;
    let avg = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - avg) * (x - avg)).sum::<f64>() / n;
    json!({
        "min": min, "max": max, "avg": avg,
        "median": v.get(v.len() / 2).copied().unwrap_or(0.0),
        "stddev": var.sqrt(),
    })
}

/// `bins` equal bins from the minimum to the maximum: `{bins: [{x, w, count}], min, max}`.
fn histogram(v: &[f64], bins: usize) -> Value {
    let (Some(min), Some(max)) = (
        v.iter().copied().reduce(f64::min),
        v.iter().copied().reduce(f64::max),
    ) else {
        return json!({"bins": [], "min": 0, "max": 0});
    };
    let range = if max > min { max - min } else { 1.0 };
    let w = range / bins as f64;
    let mut counts = vec![0u64; bins];
    for x in v {
        let i = (((x - min) / w) as usize).min(bins - 1);
        if let Some(c) = counts.get_mut(i) {
            *c += 1;
        }
    }
    let bins: Vec<Value> = counts
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"x": min + i as f64 * w, "w": w, "count": c}))
        .collect();
    json!({"bins": bins, "min": min, "max": max})
}

/// Count, average, min, max of a group's SNR (and RSSI average).
#[derive(Default)]
struct Group {
    snr: Vec<f64>,
    rssi_sum: f64,
    rssi_n: u64,
}

impl Group {
    fn json(&self) -> Value {
        let n = self.snr.len();
        let avg = if n == 0 {
            0.0
        } else {
            self.snr.iter().sum::<f64>() / n as f64
        };
        json!({
            "count": n,
            "avg": avg,
            "min": self.snr.iter().copied().reduce(f64::min).unwrap_or(0.0),
            "max": self.snr.iter().copied().reduce(f64::max).unwrap_or(0.0),
            "rssiAvg": (self.rssi_n > 0).then(|| self.rssi_sum / self.rssi_n as f64),
        })
    }
}

/// Served from [`AnswerCache`] for a few seconds.
pub async fn rf(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    let route = "rf".to_string();
    cached(
        &st,
        &route,
        &q,
        rf_answer(State(st.clone()), Query(q.clone())),
    )
    .await
}

/// `GET /api/analytics/rf?window=&region=&observer=` → CoreScope's `RFAnalyticsResponse`
/// plus `snrByObserver`, `snrByHashSize`, `window` and `truncated`.
async fn rf_answer(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    let (since, label) = window(&p)?;
    let region = p.str("region").map(str::to_ascii_uppercase);
    let observer = p
        .str("observer")
        .map(|s| super::hex_prefix("observer", s))
        .transpose()?;
    let out = st
        .db
        .query(move |c| {
            let mut stmt = sql(c.prepare_cached(
                "SELECT o.snr, o.rssi, o.received_at, o.path_len, t.id, t.payload_type,
                        length(t.raw), ob.id, ob.name, ob.iata
                 FROM (SELECT * FROM observations INDEXED BY observations_received
                       WHERE received_at >= ?1 ORDER BY received_at DESC LIMIT ?2) o
                 JOIN transmissions t ON t.id = o.transmission_id
                 JOIN observers ob ON ob.idx = o.observer_idx",
            ))?;
            let mut rows = sql(stmt.query(store::rusqlite::params![since, MAX_RF_ROWS]))?;
            let (mut snr, mut rssi) = (Vec::new(), Vec::new());
            let mut sizes: HashMap<i64, f64> = HashMap::new();
            let mut types: HashMap<i64, HashSet<i64>> = HashMap::new();
            // By hour number (Unix ms / 3,600,000), named at the end.
            let mut hours: BTreeMap<i64, HashSet<i64>> = BTreeMap::new();
            let mut sig_hours: BTreeMap<i64, (u64, f64)> = BTreeMap::new();
            let mut by_type: BTreeMap<&'static str, Group> = BTreeMap::new();
            let mut by_size: BTreeMap<u8, Group> = BTreeMap::new();
            let mut by_observer: HashMap<String, (Option<String>, Group)> = HashMap::new();
            let mut scatter: Vec<(f64, f64)> = Vec::new();
            let (mut total_all, mut scanned) = (0u64, 0i64);
            let (mut first, mut last) = (i64::MAX, i64::MIN);
            while let Some(r) = sql(rows.next())? {
                scanned += 1;
                let ob_id: String = sql(r.get(7))?;
                if observer.as_ref().is_some_and(|o| !ob_id.starts_with(o.as_str())) {
                    continue;
                }
                let iata: Option<String> = sql(r.get(9))?;
                if region.as_ref().is_some_and(|re| iata.as_deref() != Some(re.as_str())) {
                    continue;
                }
                total_all += 1;
                let s: Option<f64> = sql(r.get::<_, Option<f64>>(0))?.filter(|v| v.is_finite());
                let ri: Option<f64> = sql(r.get::<_, Option<f64>>(1))?.filter(|v| v.is_finite());
                let at: i64 = sql(r.get(2))?;
                let pl: i64 = sql(r.get(3))?;
                let tx: i64 = sql(r.get(4))?;
                let ptype: i64 = sql(r.get(5))?;
                let len: i64 = sql(r.get(6))?;
                first = first.min(at);
                last = last.max(at);
                let hour = at.div_euclid(3_600_000);
                hours.entry(hour).or_default().insert(tx);
                sizes.entry(tx).or_insert(len as f64);
                types.entry(ptype).or_default().insert(tx);
                let size = u8::try_from((pl >> 6) & 0x03).unwrap_or(0) + 1;
                if let Some(v) = ri {
                    rssi.push(v);
                }
                let Some(v) = s else { continue };
                snr.push(v);
                let e = sig_hours.entry(hour).or_default();
                e.0 += 1;
                e.1 += v;
                let groups = [
                    by_type.entry(type_name(ptype)).or_default(),
                    by_size.entry(size).or_default(),
                    &mut by_observer
                        .entry(ob_id)
                        .or_insert_with(|| (sql(r.get(8)).ok().flatten(), Group::default()))
                        .1,
                ];
                for g in groups {
                    g.snr.push(v);
                    if let Some(x) = ri {
                        g.rssi_sum += x;
                        g.rssi_n += 1;
                    }
                }
                if let Some(x) = ri {
                    scatter.push((v, x));
                }
            }
            let step = (scatter.len() / SCATTER_POINTS).max(1);
            let scatter: Vec<Value> = scatter
                .iter()
                .step_by(step)
                .take(SCATTER_POINTS)
                .map(|(s, r)| json!({"snr": s, "rssi": r}))
                .collect();
            let size_vals: Vec<f64> = sizes.values().copied().collect();
            let mut payload_types: Vec<(i64, usize)> =
                types.iter().map(|(t, s)| (*t, s.len())).collect();
            payload_types.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut observers: Vec<(String, Option<String>, Group)> = by_observer
                .into_iter()
                .map(|(id, (name, g))| (id, name, g))
                .collect();
            observers.sort_by(|a, b| b.2.snr.len().cmp(&a.2.snr.len()).then(a.0.cmp(&b.0)));
            let total_packets = snr.len();
            Ok(json!({
                "totalPackets": total_packets,
                "totalAllPackets": total_all,
                "totalTransmissions": sizes.len(),
                "snr": stats(&mut snr.clone()),
                "rssi": stats(&mut rssi.clone()),
                "snrValues": histogram(&snr, 20),
                "rssiValues": histogram(&rssi, 20),
                "packetSizes": histogram(&size_vals, 25),
                "minPacketSize": size_vals.iter().copied().reduce(f64::min).unwrap_or(0.0) as i64,
                "maxPacketSize": size_vals.iter().copied().reduce(f64::max).unwrap_or(0.0) as i64,
                "avgPacketSize": if size_vals.is_empty() { 0 } else {
                    (size_vals.iter().sum::<f64>() / size_vals.len() as f64) as i64
                },
                "packetsPerHour": hours.iter()
                    .map(|(h, s)| json!({"hour": hour_name(*h), "count": s.len()}))
                    .collect::<Vec<_>>(),
                "payloadTypes": payload_types.iter()
                    .map(|(t, n)| json!({"type": t, "name": type_name(*t), "count": n}))
                    .collect::<Vec<_>>(),
                "snrByType": by_type.iter().map(|(name, g)| {
                    let mut v = g.json();
                    v["name"] = (*name).into();
                    v
                }).collect::<Vec<_>>(),
                "snrByHashSize": by_size.iter().map(|(size, g)| {
                    let mut v = g.json();
                    v["hashSize"] = (*size).into();
                    v
                }).collect::<Vec<_>>(),
                "snrByObserver": observers.iter().map(|(id, name, g)| {
                    let mut v = g.json();
                    v["observer_id"] = id.as_str().into();
                    v["observer_name"] = name.clone().into();
                    v
                }).collect::<Vec<_>>(),
                "signalOverTime": sig_hours.iter()
                    .map(|(h, (n, sum))| {
                        json!({"hour": hour_name(*h), "count": n, "avgSnr": sum / *n as f64})
                    })
                    .collect::<Vec<_>>(),
                "scatterData": scatter,
                "timeSpanHours": if last > first { (last - first) as f64 / 3_600_000.0 } else { 0.0 },
                "window": label,
                "truncated": scanned >= MAX_RF_ROWS,
            }))
        })
        .await?;
    Ok(Json(out))
}

/// CoreScope's default airtime preset (EU narrow: 869.6 MHz, 62.5 kHz, SF8, 4/5).
fn default_radio() -> Option<RadioConfig> {
    Some(RadioConfig {
        frequency_mhz: 869.6,
        params: LoraParams::meshcore(62_500.0, 8, 5)?,
    })
}

/// Served from [`AnswerCache`] for a few seconds.
pub async fn relay_airtime_share(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    let route = "relay".to_string();
    cached(
        &st,
        &route,
        &q,
        relay_airtime_share_answer(State(st.clone()), Query(q.clone())),
    )
    .await
}

/// `GET /api/analytics/relay-airtime-share?window=24h` → `{rows: [{payload_type, type,
/// count, count_pct, score, airtime_pct}], total_count, total_score, preset, window, cached,
/// truncated}`; `score` is time on air × relays in nanoseconds, as CoreScope's.
async fn relay_airtime_share_answer(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    let (since, label) = window(&p)?;
    let out = st
        .db
        .query(move |c| {
            // The most common radio setting the observers report.
            let mut stmt = sql(c.prepare_cached(
                "SELECT radio, count(*) FROM observers WHERE radio IS NOT NULL
                 GROUP BY radio ORDER BY count(*) DESC LIMIT 20",
            ))?;
            let radios = sql(stmt.query_map([], |r| r.get::<_, String>(0)))?;
            let mut radio = None;
            for r in radios {
                if let Some(cfg) = RadioConfig::parse(&sql(r)?) {
                    radio = Some((cfg, "observers"));
                    break;
                }
            }
            let Some((radio, source)) = radio.or_else(|| default_radio().map(|r| (r, "default")))
            else {
                return Err(ApiError::Internal("no airtime preset".into()));
            };
            let mut stmt = sql(c.prepare_cached(
                "SELECT t.payload_type, length(t.raw),
                        (SELECT max(o.path_len & 63) FROM observations o
                         WHERE o.transmission_id = t.id)
                 FROM transmissions t INDEXED BY transmissions_first_seen
                 WHERE t.first_seen >= ?1 ORDER BY t.first_seen DESC LIMIT ?2",
            ))?;
            let rows = sql(
                stmt.query_map(store::rusqlite::params![since, MAX_RELAY_ROWS], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                }),
            )?;
            let mut buckets: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
            let (mut total_count, mut total_score, mut n) = (0i64, 0i64, 0i64);
            for row in rows {
                let (ptype, len, hops) = sql(row)?;
                n += 1;
                let toa_ns = radio
                    .params
                    .time_on_air_ms(usize::try_from(len).unwrap_or(0))
                    * 1e6;
                let score = (toa_ns as i64).saturating_mul(hops.unwrap_or(0).clamp(0, 63));
                let b = buckets.entry(ptype).or_default();
                b.0 += 1;
                b.1 = b.1.saturating_add(score);
                total_count += 1;
                total_score = total_score.saturating_add(score);
            }
            let pct = |x: i64, of: i64| {
                if of > 0 {
                    x as f64 / of as f64 * 100.0
                } else {
                    0.0
                }
            };
            let mut rows: Vec<(f64, i64, i64, Value)> = buckets
                .iter()
                .map(|(&t, &(count, score))| {
                    let airtime_pct = pct(score, total_score);
                    (
                        airtime_pct,
                        count,
                        t,
                        json!({
                            "payload_type": type_name(t),
                            "type": t,
                            "count": count,
                            "count_pct": pct(count, total_count),
                            "score": score,
                            "airtime_pct": airtime_pct,
                        }),
                    )
                })
                .collect();
            rows.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
            let prm = radio.params;
            Ok(json!({
                "rows": rows.into_iter().map(|r| r.3).collect::<Vec<_>>(),
                "total_count": total_count,
                "total_score": total_score,
                "preset": {
                    "freq_hz": radio.frequency_mhz * 1e6,
                    "bw_khz": prm.bandwidth_hz() / 1000.0,
                    "sf": prm.spreading_factor(),
                    "cr": prm.coding_rate(),
                    "preamble": prm.preamble_symbols(),
                    "source": source,
                },
                "window": label,
                "cached": false,
                "truncated": n >= MAX_RELAY_ROWS,
            }))
        })
        .await?;
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_cache_is_bounded() {
        let c = AnswerCache::default();
        let now = std::time::Instant::now();
        let fresh = |c: &AnswerCache, k: &str| {
            matches!(
                c.lookup(k, now + std::time::Duration::from_secs(1)),
                Lookup::Fresh(_)
            )
        };
        // Each a millisecond newer than the last: the oldest goes first.
        for i in 0..200 {
            c.put(
                format!("k{i}"),
                axum::body::Bytes::from(vec![b'x'; 1000]),
                now + std::time::Duration::from_millis(i),
            );
        }
        assert!(c.inner.lock().unwrap().answers.len() <= AnswerCache::CAPACITY);
        assert!(fresh(&c, "k199"));
        assert!(!fresh(&c, "k0"));
        // Large answers: never more than the total, an oversized one not at all.
        for i in 0..20 {
            c.put(
                format!("big{i}"),
                axum::body::Bytes::from(vec![b'x'; 900_000]),
                now,
            );
        }
        let total: usize = c
            .inner
            .lock()
            .unwrap()
            .answers
            .values()
            .map(|(_, b)| b.len())
            .sum();
        assert!(total <= AnswerCache::TOTAL_BYTES, "{total}");
        c.put(
            "huge".into(),
            axum::body::Bytes::from(vec![b'x'; 2 << 20]),
            now,
        );
        assert!(!fresh(&c, "huge"));
    }

    #[test]
    fn stats_and_histograms() {
        let mut v = vec![3.0, -1.0, 10.0, 4.0];
        let s = stats(&mut v);
        assert_eq!(
            (s["min"].clone(), s["max"].clone(), s["avg"].clone()),
            (json!(-1.0), json!(10.0), json!(4.0))
        );
        assert_eq!(s["median"], 4.0);
        let h = histogram(&[0.0, 0.5, 1.0], 2);
        assert_eq!(h["bins"][0]["count"], 1);
        assert_eq!(h["bins"][1]["count"], 2);
        assert_eq!(histogram(&[], 20)["bins"], json!([]));
        assert_eq!(histogram(&[5.0, 5.0], 20)["bins"][0]["count"], 2);
    }
}
