//! Operations: CoreScope's `/api/perf` family, `/api/mqtt/status` and `/api/dropped-packets`,
//! in its shapes, with meshlens's own figures.
//!
//! - [`Recorder`]: per-route latency in fixed histograms (64 geometric buckets from 50 µs to
//!   about a minute; one per route pattern, so memory is bounded by the route table, not by
//!   the paths clients invent) and the last [`MAX_SLOW`] slow requests. Measured around the
//!   handler (after the lane and the per-client budget), so it is the time the work took; a
//!   GET answered by an identical one in flight (single-flight) ran no handler and is not
//!   counted.
//! - A lag probe: a task that asks to wake every 250 ms and records how late it woke, the
//!   async runtime's equivalent of CoreScope's event-loop lag.
//! - `/api/perf/write-sources` and `/api/mqtt/status` read the writer's counters and sources
//!   from [`crate::IngestStatus`] (shared memory in `meshlens run`, the status file beside a
//!   separate `meshlens ingest`).
//! - `/api/perf/io` is this process's `/proc/self/io` as rates since the previous call.
//!
//! Keys CoreScope fills from its Go runtime or in-memory packet store have no meaning here;
//! each is the nearest real figure (documented where it is set) or null.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};
use store::time::iso;

use super::Params;
use crate::AppState;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};

/// Histogram buckets per route.
const BUCKETS: usize = 64;
/// Upper bound of the first bucket, ms.
const FIRST_MS: f64 = 0.05;
/// Ratio between consecutive bucket bounds.
const GROWTH: f64 = 1.25;
/// A request at least this slow is kept in the slow list (CoreScope's default threshold).
pub const SLOW_MS: f64 = 100.0;
/// Slow requests kept.
pub const MAX_SLOW: usize = 50;
/// Routes tracked: far above the route table, a bound should it ever grow.
const MAX_ROUTES: usize = 256;
/// Longest path kept for a slow request.
const MAX_PATH: usize = 200;
/// Lag samples kept (a minute at one per 250 ms).
const LAG_SAMPLES: usize = 240;

fn bucket_of(ms: f64) -> usize {
    if ms <= FIRST_MS {
        return 0;
    }
    let i = ((ms / FIRST_MS).ln() / GROWTH.ln()).ceil();
    if i.is_finite() && i >= 0.0 {
        (i as usize).min(BUCKETS - 1)
    } else {
        BUCKETS - 1
    }
}

fn bucket_bound(i: usize) -> f64 {
    FIRST_MS * GROWTH.powi(i as i32)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[derive(Clone)]
struct Hist {
    counts: [u64; BUCKETS],
    count: u64,
    total_ms: f64,
    max_ms: f64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: [0; BUCKETS],
            count: 0,
            total_ms: 0.0,
            max_ms: 0.0,
        }
    }
}

impl Hist {
    fn add(&mut self, ms: f64) {
        if let Some(c) = self.counts.get_mut(bucket_of(ms)) {
            *c += 1;
        }
        self.count += 1;
        self.total_ms += ms;
        self.max_ms = self.max_ms.max(ms);
    }

    /// The upper bound of the bucket holding quantile `q`, never above the maximum seen.
    fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let want = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return bucket_bound(i).min(self.max_ms);
            }
        }
        self.max_ms
    }

    fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_ms / self.count as f64
        }
    }
}

struct Slow {
    path: String,
    ms: f64,
    at: i64,
    status: u16,
}

struct Inner {
    since: Instant,
    all: Hist,
    routes: HashMap<String, Hist>,
    slow: VecDeque<Slow>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            since: Instant::now(),
            all: Hist::default(),
            routes: HashMap::new(),
            slow: VecDeque::new(),
        }
    }
}

/// Per-route latency and slow requests since start (or the last reset), plus the runtime's
/// wake-up lag. Bounded: see the module documentation.
#[derive(Default)]
pub struct Recorder {
    inner: Mutex<Inner>,
    lag: Mutex<VecDeque<f64>>,
}

impl Recorder {
    /// Records one request to `route` (its pattern) for `path`.
    pub fn record(&self, route: &str, path: &str, ms: f64, status: u16) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        let Ok(mut g) = self.inner.lock() else {
            return;
        };
        g.all.add(ms);
        if let Some(h) = g.routes.get_mut(route) {
            h.add(ms);
        } else if g.routes.len() < MAX_ROUTES {
            let mut h = Hist::default();
            h.add(ms);
            g.routes.insert(route.to_owned(), h);
        }
        if ms >= SLOW_MS {
            if g.slow.len() >= MAX_SLOW {
                g.slow.pop_front();
            }
            g.slow.push_back(Slow {
                path: path.chars().take(MAX_PATH).collect(),
                ms,
                at: crate::now_ms(),
                status,
            });
        }
    }

    /// Forgets everything recorded.
    pub fn reset(&self) {
        if let Ok(mut g) = self.inner.lock() {
            *g = Inner::default();
        }
        if let Ok(mut l) = self.lag.lock() {
            l.clear();
        }
    }

    fn slow_json(g: &Inner, last: usize) -> Vec<Value> {
        let skip = g.slow.len().saturating_sub(last);
        g.slow
            .iter()
            .skip(skip)
            .map(|s| json!({"path": s.path, "ms": round1(s.ms), "time": iso(s.at), "status": s.status}))
            .collect()
    }

    /// CoreScope's `perf` object of `/api/health`: `{totalRequests, avgMs, slowQueries,
    /// recentSlow}` (the last 5).
    pub fn health_json(&self) -> Value {
        let Ok(g) = self.inner.lock() else {
            return json!({"totalRequests": 0, "avgMs": 0.0, "slowQueries": 0, "recentSlow": []});
        };
        json!({
            "totalRequests": g.all.count,
            "avgMs": round1(g.all.avg()),
            "slowQueries": g.slow.len(),
            "recentSlow": Self::slow_json(&g, 5),
        })
    }

    fn perf_json(&self) -> Value {
        let Ok(g) = self.inner.lock() else {
            return json!({});
        };
        let mut routes: Vec<(&String, &Hist)> = g.routes.iter().collect();
        // Most total time first, as CoreScope orders them.
        routes.sort_by(|a, b| b.1.total_ms.total_cmp(&a.1.total_ms).then(a.0.cmp(b.0)));
        let mut endpoints = serde_json::Map::new();
        for (route, h) in routes {
            endpoints.insert(
                route.clone(),
                json!({
                    "count": h.count,
                    "avgMs": round1(h.avg()),
                    "p50Ms": round1(h.quantile(0.5)),
                    "p95Ms": round1(h.quantile(0.95)),
                    "maxMs": round1(h.max_ms),
                }),
            );
        }
        json!({
            "uptime": g.since.elapsed().as_secs(),
            "totalRequests": g.all.count,
            "avgMs": round1(g.all.avg()),
            "endpoints": endpoints,
            "slowQueries": Self::slow_json(&g, 20),
        })
    }

    /// CoreScope's `eventLoop` object from the lag probe's samples (ms): `{currentLagMs,
    /// maxLagMs, p50Ms, p95Ms, p99Ms}`.
    pub fn lag_json(&self) -> Value {
        let mut v: Vec<f64> = self
            .lag
            .lock()
            .map(|l| l.iter().copied().collect())
            .unwrap_or_default();
        let current = v.last().copied().unwrap_or(0.0);
        v.sort_by(f64::total_cmp);
        let q = |q: f64| {
            if v.is_empty() {
                0.0
            } else {
                v[(((v.len() - 1) as f64) * q).round() as usize]
            }
        };
        json!({
            "currentLagMs": round1(current),
            "maxLagMs": round1(q(1.0)),
            "p50Ms": round1(q(0.5)),
            "p95Ms": round1(q(0.95)),
            "p99Ms": round1(q(0.99)),
        })
    }

    fn add_lag(&self, ms: f64) {
        if let Ok(mut l) = self.lag.lock() {
            if l.len() >= LAG_SAMPLES {
                l.pop_front();
            }
            l.push_back(ms);
        }
    }
}

/// Records how late the async runtime wakes a timer, every 250 ms, until the server stops
/// (the task holds only a weak reference).
pub fn spawn_lag_probe(st: &Arc<AppState>) {
    let weak = Arc::downgrade(st);
    tokio::spawn(async move {
        const TICK: Duration = Duration::from_millis(250);
        loop {
            let before = Instant::now();
            tokio::time::sleep(TICK).await;
            let late = before.elapsed().saturating_sub(TICK);
            let Some(st) = weak.upgrade() else { return };
            st.perf.add_lag(late.as_secs_f64() * 1000.0);
        }
    });
}

/// Middleware (on the routes, so the pattern is known): times each request.
pub async fn record(
    State(st): State<Arc<AppState>>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    let route = matched.map_or_else(|| "other".to_owned(), |m| m.as_str().to_owned());
    let res = next.run(req).await;
    st.perf.record(
        &route,
        &path,
        started.elapsed().as_secs_f64() * 1000.0,
        res.status().as_u16(),
    );
    res
}

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / 1_048_576.0 * 10.0).round() / 10.0
}

/// Sizes of the database file, its WAL and free pages, and the row counts of the stats cache
/// (one commit generation old at most), as CoreScope's `sqlite` object.
async fn sqlite_json(st: &Arc<AppState>) -> ApiResult<Value> {
    let path = st.db.path().to_path_buf();
    let wal = std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
    let db_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    let (page_size, free) = st
        .db
        .query(|c| {
            let page_size: i64 = sql(c.query_row("PRAGMA page_size", [], |r| r.get(0)))?;
            let free: i64 = sql(c.query_row("PRAGMA freelist_count", [], |r| r.get(0)))?;
            Ok((page_size, free))
        })
        .await?;
    let stats = super::status::stats_value(st).await?;
    Ok(json!({
        "dbSizeMB": mb(db_bytes),
        "walSizeMB": mb(wal),
        "freelistMB": mb((free.max(0) as u64).saturating_mul(page_size.max(0) as u64)),
        // A checkpoint is the writer's (a reader must not run one); the pages are not known
        // here.
        "walPages": null,
        "rows": {
            "transmissions": stats["totalTransmissions"],
            "observations": stats["totalObservations"],
            "nodes": stats["totalNodes"],
            "observers": stats["totalObservers"],
        },
    }))
}

/// `GET /api/perf` → CoreScope's `{uptime, totalRequests, avgMs, endpoints: {route: {count,
/// avgMs, p50Ms, p95Ms, maxMs}}, slowQueries, cache, packetStore, sqlite}`. Endpoints are
/// keyed by route pattern (`/api/nodes/{pubkey}`). `cache` counts the per-generation stats
/// cache; `packetStore` is null: meshlens keeps no packets in memory (every answer reads
/// SQLite). `goRuntime` is left out, as CoreScope leaves it out when it has none.
pub async fn perf(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let mut v = st.perf.perf_json();
    let hits = st.stats_hits.load(Ordering::Relaxed);
    let misses = st.stats_misses.load(Ordering::Relaxed);
    v["cache"] = json!({
        "size": usize::from(st.stats_cache.lock().await.is_some()),
        "hits": hits,
        "misses": misses,
        "staleHits": 0,
        "recomputes": misses,
        "hitRate": if hits + misses == 0 { 0.0 } else { round1(hits as f64 * 100.0 / (hits + misses) as f64) / 100.0 },
    });
    v["packetStore"] = Value::Null;
    v["sqlite"] = sqlite_json(&st).await?;
    Ok(Json(v))
}

/// `POST /api/perf/reset` → `{ok: true}`: forgets the latency figures. Behind the admin key,
/// as in CoreScope: the figures are anyone's to read, not to wipe.
pub async fn reset(
    State(st): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Json<Value>> {
    // CoreScope's behaviour: behind the admin key.
    super::admin::require_admin(&st, &headers)?;
    st.perf.reset();
    Ok(Json(json!({"ok": true})))
}

/// One reading of `/proc/self/io`.
#[derive(Clone, Copy, Default)]
pub struct IoSample {
    at: Option<Instant>,
    read_bytes: u64,
    write_bytes: u64,
    cancelled: u64,
    syscr: u64,
    syscw: u64,
}

fn read_proc_io() -> Option<IoSample> {
    let text = std::fs::read_to_string("/proc/self/io").ok()?;
    let mut s = IoSample {
        at: Some(Instant::now()),
        ..Default::default()
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v: u64 = v.trim().parse().unwrap_or(0);
        match k {
            "read_bytes" => s.read_bytes = v,
            "write_bytes" => s.write_bytes = v,
            "cancelled_write_bytes" => s.cancelled = v,
            "syscr" => s.syscr = v,
            "syscw" => s.syscw = v,
            _ => {}
        }
    }
    Some(s)
}

/// `GET /api/perf/io` → CoreScope's `{readBytesPerSec, writeBytesPerSec,
/// cancelledWriteBytesPerSec, syscallsRead, syscallsWrite}`: this process's I/O per second
/// since the previous call (zeros on the first; in `meshlens run` the writer shares the
/// process, so its I/O is included). CoreScope's `ingestor` sample is left out: a separate
/// writer does not publish its own.
pub async fn io(State(st): State<Arc<AppState>>) -> Json<Value> {
    let cur = read_proc_io().unwrap_or_default();
    let prev = st
        .perf_io
        .lock()
        .map(|mut p| std::mem::replace(&mut *p, cur))
        .unwrap_or_default();
    let rate = |a: u64, b: u64, dt: f64| (a.saturating_sub(b) as f64 / dt * 10.0).round() / 10.0;
    let v = match (prev.at, cur.at) {
        (Some(p), Some(c)) => {
            let dt = c.duration_since(p).as_secs_f64().max(0.001);
            json!({
                "readBytesPerSec": rate(cur.read_bytes, prev.read_bytes, dt),
                "writeBytesPerSec": rate(cur.write_bytes, prev.write_bytes, dt),
                "cancelledWriteBytesPerSec": rate(cur.cancelled, prev.cancelled, dt),
                "syscallsRead": rate(cur.syscr, prev.syscr, dt),
                "syscallsWrite": rate(cur.syscw, prev.syscw, dt),
            })
        }
        _ => json!({
            "readBytesPerSec": 0.0, "writeBytesPerSec": 0.0, "cancelledWriteBytesPerSec": 0.0,
            "syscallsRead": 0.0, "syscallsWrite": 0.0,
        }),
    };
    Json(v)
}

/// `GET /api/perf/sqlite` → CoreScope's `{walSizeMB, walSize, pageCount, pageSize, cacheSize,
/// cacheHitRate}` for this reader's connections. `cacheHitRate` is the stats cache's, as
/// CoreScope gives its own cache's.
pub async fn sqlite(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let wal = std::fs::metadata(st.db.path().with_extension("db-wal")).map_or(0, |m| m.len());
    let (page_count, page_size, cache_size) = st
        .db
        .query(|c| {
            let p = |name: &str| {
                sql(c.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0)))
            };
            Ok((p("page_count")?, p("page_size")?, p("cache_size")?))
        })
        .await?;
    let hits = st.stats_hits.load(Ordering::Relaxed);
    let misses = st.stats_misses.load(Ordering::Relaxed);
    Ok(Json(json!({
        "walSizeMB": mb(wal),
        "walSize": wal,
        "pageCount": page_count,
        "pageSize": page_size,
        "cacheSize": cache_size,
        "cacheHitRate": if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 },
    })))
}

fn ingest(st: &AppState) -> Option<Value> {
    st.ingest.as_ref().and_then(|i| i.snapshot())
}

fn sample_at(v: &Value) -> String {
    v.get("written_at")
        .and_then(Value::as_i64)
        .map_or_else(|| iso(crate::now_ms()), iso)
}

/// `GET /api/perf/write-sources` → CoreScope's `{sources: {name: count}, sampleAt,
/// writer_perf}` from the writer's counters: `tx_inserted` (new transmissions), `tx_dupes`
/// (packets already stored), `obs_inserted`, `node_upserts` (verified adverts applied),
/// `observer_upserts` (statuses applied), `write_errors` (failed commit attempts), `sig_drops`
/// (adverts refused for their signature), `walCommits` and `groupCommitFlushes` (batches
/// committed: meshlens commits each batch once). Every other writer counter is added under
/// its own name. `writer_perf` is `{}`: the writer keeps no lock-wait histograms.
pub async fn write_sources(State(st): State<Arc<AppState>>) -> Json<Value> {
    let Some(v) = ingest(&st) else {
        return Json(json!({"sources": {}, "sampleAt": "", "writer_perf": {}}));
    };
    let c = |k: &str| {
        v.get("counters")
            .and_then(|c| c.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let mut sources = serde_json::Map::new();
    if let Some(all) = v.get("counters").and_then(Value::as_object) {
        for (k, n) in all.iter().take(1_000) {
            if let Some(n) = n.as_u64() {
                sources.insert(k.clone(), n.into());
            }
        }
    }
    for (name, key) in [
        ("tx_inserted", "stored.new_transmissions"),
        ("tx_dupes", "stored.known_transmissions"),
        ("obs_inserted", "stored.new_observations"),
        ("node_upserts", "stored.node_updates"),
        ("observer_upserts", "stored.statuses"),
        ("write_errors", "writer.commit_errors"),
        ("sig_drops", "refused_advert.invalid_signature"),
        ("walCommits", "writer.batches"),
        ("groupCommitFlushes", "writer.batches"),
    ] {
        sources.insert(name.into(), c(key).into());
    }
    Json(json!({"sources": sources, "sampleAt": sample_at(&v), "writer_perf": {}}))
}

/// `GET /api/mqtt/status` → CoreScope's `{sources: [{name, broker, connected,
/// lastConnectUnix, lastDisconnectUnix, lastPacketUnix, connectCount, disconnectCount,
/// packetsTotal, packetsLast5m, lastError}], sampleAt}` from the writer's sources (brokers it
/// subscribes to, and the embedded broker). Brokers are shown without credentials (the
/// writer never records them). Unknown figures are 0, as CoreScope's are when unset:
/// `lastDisconnectUnix` (the writer counts disconnects but keeps no time) and `packetsLast5m`
/// (no per-source window). meshlens's own per-source fields are kept beside.
pub async fn mqtt_status(State(st): State<Arc<AppState>>) -> Json<Value> {
    let Some(v) = ingest(&st) else {
        return Json(json!({"sources": [], "sampleAt": ""}));
    };
    let secs = |x: Option<&Value>| x.and_then(Value::as_i64).map_or(0, |ms| ms / 1000);
    let sources: Vec<Value> = v
        .get("sources")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .take(1_000)
                .map(|(name, s)| {
                    let n = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
                    let mut o = json!({
                        "name": name,
                        "broker": s.get("broker").and_then(Value::as_str).unwrap_or(""),
                        "connected": s.get("state").and_then(Value::as_str) == Some("connected"),
                        "lastConnectUnix": secs(s.get("connected_at")),
                        "lastDisconnectUnix": 0,
                        "lastPacketUnix": secs(s.get("last_message_at")),
                        "connectCount": n("connects"),
                        "disconnectCount": n("disconnects"),
                        "packetsTotal": n("messages"),
                        "packetsLast5m": 0,
                        "state": s.get("state"),
                        "clients": n("clients"),
                        "shed": n("shed"),
                        "observerRateRefused": n("observer_rate_refused"),
                    });
                    if let Some(e) = s.get("last_error").and_then(Value::as_str) {
                        o["lastError"] = e.into();
                    }
                    o
                })
                .collect()
        })
        .unwrap_or_default();
    Json(json!({"sources": sources, "sampleAt": sample_at(&v)}))
}

/// Most dropped packets one request returns (CoreScope's bound).
pub const MAX_DROPPED: i64 = 500;

/// `GET /api/dropped-packets?limit=&observer=&pubkey=` → `[{id, hash, reason, observer_id,
/// observer_name, node_pubkey, node_name, dropped_at, raw_hex}]`, newest first, from the
/// writer's `rejected_packets` (invalid frames and adverts whose signature failed).
/// `node_pubkey` is the key an advert claims (bytes 0-31 of its payload), so a forged advert
/// names the node it pretended to be; `node_name` is that node's stored name. (CoreScope asks
/// for its API key here; meshlens has none. What is shown is what publishers sent.)
pub async fn dropped(
    State(st): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    // Refused packets carry raw frames and observer keys: CoreScope keeps them behind its
    // admin key, and so does meshlens.
    super::admin::require_admin(&st, &headers)?;
    let p = Params(q);
    let limit = p.limit(100, MAX_DROPPED)?;
    let observer = p.str("observer").map(str::to_ascii_lowercase);
    if observer.as_ref().is_some_and(|o| o.len() > 64) {
        return Err(ApiError::BadRequest("observer is too long".into()));
    }
    let pubkey = p
        .str("pubkey")
        .map(|k| super::hex_prefix("pubkey", k))
        .transpose()?;
    let rows = st
        .db
        .query(move |c| {
            // Newest first along the received_at index; the key filter is applied to the
            // decoded rows (it is inside the frame), so it reads at most a bounded window.
            let mut stmt = sql(c.prepare_cached(
                "SELECT r.id, r.hash, r.reason, r.observer_id, ob.name, r.received_at, r.raw
                 FROM rejected_packets r LEFT JOIN observers ob ON ob.id = r.observer_id
                 WHERE (?1 IS NULL OR r.observer_id = ?1)
                 ORDER BY r.received_at DESC, r.id DESC LIMIT ?2",
            ))?;
            let scan = if pubkey.is_some() { 20_000 } else { limit };
            let rows = sql(stmt
                .query_map(store::rusqlite::params![observer, scan], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, Option<Vec<u8>>>(6)?,
                    ))
                })
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            let mut out = Vec::new();
            let mut name_stmt =
                sql(c.prepare_cached("SELECT name FROM nodes WHERE public_key = ?1"))?;
            for (id, hash, reason, obs, obs_name, at, raw) in rows {
                let claimed = raw.as_deref().and_then(advert_key);
                if let Some(want) = &pubkey
                    && !claimed
                        .as_deref()
                        .is_some_and(|k| k.starts_with(want.as_str()))
                {
                    continue;
                }
                let node_name: Option<String> = match &claimed {
                    Some(k) => match name_stmt.query_row([k], |r| r.get(0)) {
                        Ok(n) => n,
                        Err(store::rusqlite::Error::QueryReturnedNoRows) => None,
                        Err(e) => return Err(e.into()),
                    },
                    None => None,
                };
                out.push(json!({
                    "id": id,
                    "hash": hash,
                    "reason": reason,
                    "observer_id": obs,
                    "observer_name": obs_name,
                    "node_pubkey": claimed,
                    "node_name": node_name,
                    "dropped_at": iso(at),
                    "raw_hex": raw.map(hex::encode_upper),
                }));
                if out.len() as i64 >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await?;
    Ok(Json(Value::Array(rows)))
}

/// The public key an advert frame claims, lowercase hex; `None` for anything else.
fn advert_key(raw: &[u8]) -> Option<String> {
    let p = meshcore::Packet::decode(raw).ok()?;
    if p.payload_type() != meshcore::PayloadType::Advert {
        return None;
    }
    p.payload_bytes().get(..32).map(hex::encode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_bounded_and_quantiles_follow_the_data() {
        let r = Recorder::default();
        for i in 0..1_000 {
            r.record("/a", "/a", if i < 900 { 1.0 } else { 500.0 }, 200);
        }
        for i in 0..10_000 {
            // Invented routes beyond the bound are counted in all but not kept.
            r.record(&format!("/x{i}"), "/x", 0.01, 404);
        }
        r.record("/b", "/b", f64::NAN, 200);
        r.record("/b", "/b", f64::INFINITY, 200);
        let v = r.perf_json();
        assert_eq!(v["endpoints"].as_object().unwrap().len(), MAX_ROUTES);
        let a = &v["endpoints"]["/a"];
        assert_eq!(a["count"], 1000);
        let p50 = a["p50Ms"].as_f64().unwrap();
        let p95 = a["p95Ms"].as_f64().unwrap();
        assert!((1.0..=1.3).contains(&p50), "{p50}");
        assert!((400.0..=500.0).contains(&p95), "{p95}");
        assert_eq!(a["maxMs"], 500.0);
        assert_eq!(v["slowQueries"].as_array().unwrap().len(), 20);
        assert_eq!(r.health_json()["slowQueries"], MAX_SLOW);
        r.reset();
        assert_eq!(r.perf_json()["totalRequests"], 0);
    }
}
