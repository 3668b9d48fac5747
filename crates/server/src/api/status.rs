//! `/api/stats`, `/api/health`, `/api/healthz` and `/metrics`.
//!
//! Health tells the truth about the writer, from its own account (the status it publishes,
//! see `ingest::stats::WriterState`): `/api/healthz` is not ready, with the reasons, while
//! commits fail, while the writer is stuck in one step, or while its status is stale or
//! missing (a separate `meshlens ingest` that stopped); it is `degraded` (still ready) for a
//! while after items were lost. `/metrics` carries the same as numbers an alert can watch.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use store::time::iso;

use crate::AppState;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};

/// The build's commit and time, when the build set them (`MESHLENS_COMMIT`,
/// `MESHLENS_BUILD_TIME` in the environment of `cargo build`); null otherwise.
pub const COMMIT: Option<&str> = option_env!("MESHLENS_COMMIT");
/// See [`COMMIT`].
pub const BUILD_TIME: Option<&str> = option_env!("MESHLENS_BUILD_TIME");

/// How long the packet counts of the last hour and day, and the count of adverts refused for
/// their signature, are reused: a rate needs no fresher figure, the day's count reads a day
/// of the first-seen index, and the refusals are a scan of the rejected-packets table.
const WINDOW_FRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// Counts by role, under both of CoreScope's spellings: singular (meshlens's, and the role
/// names of `/api/nodes?role=`) and plural (what CoreScope's `counts` carries).
pub fn role_counts(c: &store::rusqlite::Connection) -> ApiResult<Value> {
    let mut counts = json!({"repeater": 0, "room": 0, "companion": 0, "sensor": 0,
                            "repeaters": 0, "rooms": 0, "companions": 0, "sensors": 0});
    let mut stmt = sql(c.prepare_cached("SELECT role, count(*) FROM nodes GROUP BY role"))?;
    for row in sql(stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))))? {
        let (role, n) = sql(row)?;
        counts[format!("{role}s")] = n.into();
        counts[role] = n.into();
    }
    Ok(counts)
}

/// The database part of `/api/stats`, once per commit generation (holding the lock while
/// computing makes concurrent callers share one computation), with the packet counts of the
/// last hour and day at most [`WINDOW_FRESH`] old.
pub async fn stats_value(st: &Arc<AppState>) -> ApiResult<Value> {
    let generation = st.generation.load(Ordering::Relaxed);
    let mut cache = st.stats_cache.lock().await;
    if let Some((g, v)) = cache.as_ref()
        && *g == generation
    {
        st.stats_hits.fetch_add(1, Ordering::Relaxed);
        return Ok(v.clone());
    }
    st.stats_misses.fetch_add(1, Ordering::Relaxed);
    let windows = st
        .stats_windows
        .lock()
        .ok()
        .and_then(|w| *w)
        .filter(|(at, _)| at.elapsed() < WINDOW_FRESH)
        .map(|(_, w)| w);
    let (v, windows) = st
        .db
        .query(move |c| {
            let count = |sql_text: &str| sql(c.query_row(sql_text, [], |r| r.get::<_, i64>(0)));
            let windows = match windows {
                Some(w) => w,
                None => {
                    let now = crate::now_ms();
                    let since = |ms: i64| {
                        sql(c.query_row(
                            "SELECT count(*) FROM transmissions WHERE first_seen >= ?1",
                            [now - ms],
                            |r| r.get::<_, i64>(0),
                        ))
                    };
                    let drops = count(
                        "SELECT count(*) FROM rejected_packets WHERE reason = 'invalid_signature'",
                    )?;
                    [since(3_600_000)?, since(86_400_000)?, drops]
                }
            };
            let transmissions = count("SELECT count(*) FROM transmissions")?;
            let nodes = count("SELECT count(*) FROM nodes")?;
            let inactive = count("SELECT count(*) FROM inactive_nodes")?;
            Ok((
                json!({
                    "totalPackets": transmissions,
                    "totalTransmissions": transmissions,
                    "totalObservations": count("SELECT count(*) FROM observations")?,
                    "totalNodes": nodes,
                    "totalInactiveNodes": inactive,
                    "totalNodesAllTime": nodes + inactive,
                    "totalObservers": count("SELECT count(*) FROM observers")?,
                    "packetsLastHour": windows[0],
                    "packetsLast24h": windows[1],
                    "signatureDrops": windows[2],
                    "counts": role_counts(c)?,
                }),
                windows,
            ))
        })
        .await?;
    if let Ok(mut w) = st.stats_windows.lock()
        && w.is_none_or(|(at, _)| at.elapsed() >= WINDOW_FRESH)
    {
        *w = Some((std::time::Instant::now(), windows));
    }
    *cache = Some((generation, v.clone()));
    Ok(v)
}

/// Memory of this process from `/proc/self/status`, MB: `(rss, anonymous resident, data
/// segment)`. meshlens has no garbage-collected heap; the anonymous resident memory (heap and
/// stacks) is the nearest figure to a heap in use, the data segment to the memory obtained
/// for it.
pub fn memory_mb() -> (Option<f64>, Option<f64>, Option<f64>) {
    let Ok(text) = std::fs::read_to_string("/proc/self/status") else {
        return (rss_bytes().map(|b| b as f64 / 1_048_576.0), None, None);
    };
    let kb = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|k| (k / 1024.0 * 10.0).round() / 10.0)
    };
    (kb("VmRSS:"), kb("RssAnon:"), kb("VmData:"))
}

/// [`memory_mb`] at most a second old: `/api/stats` is a probe that dashboards poll, and
/// reading `/proc` was a third of an answer from the cache.
fn memory_mb_recent() -> (Option<f64>, Option<f64>, Option<f64>) {
    type Figures = (Option<f64>, Option<f64>, Option<f64>);
    static LAST: std::sync::Mutex<Option<(std::time::Instant, Figures)>> =
        std::sync::Mutex::new(None);
    if let Ok(last) = LAST.lock()
        && let Some((at, m)) = *last
        && at.elapsed() < std::time::Duration::from_secs(1)
    {
        return m;
    }
    let m = memory_mb();
    if let Ok(mut last) = LAST.lock() {
        *last = Some((std::time::Instant::now(), m));
    }
    m
}

/// `GET /api/stats`: CoreScope's keys (`totalPackets`, `totalTransmissions`,
/// `totalObservations`, `totalNodes`, `totalNodesAllTime`, `totalObservers`,
/// `packetsLastHour`, `packetsLast24h`, `engine`, `version`, `commit`, `buildTime`, `counts`
/// plural, `signatureDrops`, memory in MB) and meshlens's (`totalInactiveNodes`, `counts`
/// singular). Where CoreScope reports its Go runtime or in-memory store, the nearest real
/// figure: `processRSSMB` is the resident set; `goHeapInuseMB` the anonymous resident memory
/// and `goSysMB` the data segment (see [`memory_mb`]); `trackedMB`/`storeDataMB` are 0
/// (no packets are held in memory: every answer reads SQLite); `hashMigrationComplete` is
/// true (meshlens has no hash migration); `neighborGraphCacheRebuildFailures` 0 (no such
/// cache). `commit` and `buildTime` are null unless the build set them.
pub async fn stats(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let mut v = stats_value(&st).await?;
    let (rss, anon, data) = memory_mb_recent();
    v["engine"] = "meshlens".into();
    v["version"] = env!("CARGO_PKG_VERSION").into();
    v["commit"] = COMMIT.into();
    v["buildTime"] = BUILD_TIME.into();
    v["hashMigrationComplete"] = true.into();
    v["trackedMB"] = 0.0.into();
    v["storeDataMB"] = 0.0.into();
    v["processRSSMB"] = rss.into();
    v["goHeapInuseMB"] = anon.into();
    v["goSysMB"] = data.into();
    v["neighborGraphCacheRebuildFailures"] = 0.into();
    Ok(Json(v))
}

/// `GET /api/stats/traffic?window=24h`: packets and observations per bucket (1/48 of the
/// window, at least a minute), oldest first, for sparklines. Window at most 30 days.
pub async fn traffic(
    State(st): State<Arc<AppState>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = super::Params(q);
    let window = match p.str("window") {
        None => std::time::Duration::from_secs(86_400),
        Some(w) => store::time::parse_duration(w)
            .map_err(|e| ApiError::BadRequest(format!("window: {e}")))?,
    };
    let window_ms = window.as_millis() as i64;
    if !(60_000..=30 * 86_400_000).contains(&window_ms) {
        return Err(ApiError::BadRequest(
            "window must be between 1m and 30d".into(),
        ));
    }
    // Sparklines need not be fresher than a few seconds; the scan covers the whole window.
    if let Ok(cache) = st.traffic_cache.lock()
        && let Some((at, v)) = cache.get(&window_ms)
        && at.elapsed() < std::time::Duration::from_secs(5)
    {
        return Ok(Json(v.clone()));
    }
    let bucket = (window_ms / 48).max(60_000);
    let now = crate::now_ms();
    let end = (now / bucket + 1) * bucket;
    let start = end - bucket * (window_ms / bucket).max(1);
    let rows = st
        .db
        .query(move |c| {
            let mut stmt = sql(c.prepare_cached(
                "SELECT (first_seen - ?1) / ?2, count(*), sum(observation_count) \
                 FROM transmissions WHERE first_seen >= ?1 AND first_seen < ?3 GROUP BY 1",
            ))?;
            let rows = sql(stmt.query_map([start, bucket, end], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            }))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(sql(r)?);
            }
            Ok(out)
        })
        .await?;
    let n = ((end - start) / bucket) as usize;
    let mut buckets: Vec<(i64, i64)> = vec![(0, 0); n];
    for (i, packets, obs) in rows {
        if let Some(b) = usize::try_from(i).ok().and_then(|i| buckets.get_mut(i)) {
            *b = (packets, obs.unwrap_or(0));
        }
    }
    let v = json!({
        "bucketMs": bucket,
        "buckets": buckets.iter().enumerate().map(|(i, (p, o))| json!({
            "t": store::time::iso(start + i as i64 * bucket),
            "packets": p,
            "observations": o,
        })).collect::<Vec<_>>(),
    });
    if let Ok(mut cache) = st.traffic_cache.lock() {
        if cache.len() >= 8 {
            cache.clear();
        }
        cache.insert(window_ms, (std::time::Instant::now(), v.clone()));
    }
    Ok(Json(v))
}

/// Resident set size of this process, bytes (Linux).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The stats of the last commit generation computed, if any: for figures that may be a
/// little old but must not cost a count on a cheap route.
async fn last_stats(st: &AppState) -> Option<Value> {
    st.stats_cache.lock().await.as_ref().map(|(_, v)| v.clone())
}

/// `GET /api/health`: CoreScope's shape (`status`, `engine`, `version`, `commit`,
/// `buildTime`, `uptime`, `uptimeHuman`, `memory`, `eventLoop`, `cache`, `websocket`,
/// `packetStore`, `perf`) beside meshlens's keys (`uptime_secs`, `rss_bytes`, `ws_clients`,
/// `live_messages`, `db`). `memory` is MB: `rss`, `heapUsed` (anonymous resident memory),
/// `heapTotal` (data segment), `external` (0). `eventLoop` is the async runtime's timer lag
/// ([`super::perf::spawn_lag_probe`]); `cache` the stats cache; `packetStore.packets` the
/// transmissions stored as of the last stats computed (null before the first), with
/// `estimatedMB`/`trackedMB` 0 (nothing held in memory).
pub async fn health(State(st): State<Arc<AppState>>) -> Json<Value> {
    let db_bytes = std::fs::metadata(st.db.path()).map_or(0, |m| m.len());
    // The file name only: where the data lives on the server is nobody else's business.
    let db_name = st
        .db
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let uptime = st.started.elapsed().as_secs();
    let (rss, anon, data) = memory_mb();
    let whole = |x: Option<f64>| x.map(|m| m.round() as i64);
    let hits = st.stats_hits.load(Ordering::Relaxed);
    let misses = st.stats_misses.load(Ordering::Relaxed);
    let stored = last_stats(&st)
        .await
        .map(|v| v["totalTransmissions"].clone());
    let ws = st.ws_clients.load(Ordering::Relaxed);
    Json(json!({
        "status": "ok",
        "engine": "meshlens",
        "version": env!("CARGO_PKG_VERSION"),
        "commit": COMMIT,
        "buildTime": BUILD_TIME,
        "uptime": uptime,
        "uptimeHuman": format!("{}h {}m", uptime / 3600, uptime % 3600 / 60),
        "memory": {"rss": whole(rss), "heapUsed": whole(anon), "heapTotal": whole(data), "external": 0},
        "eventLoop": st.perf.lag_json(),
        "cache": {
            "entries": usize::from(st.stats_cache.lock().await.is_some()),
            "hits": hits,
            "misses": misses,
            "staleHits": 0,
            "recomputes": misses,
            "hitRate": if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 },
        },
        "websocket": {"clients": ws},
        "packetStore": {"packets": stored, "estimatedMB": 0.0, "trackedMB": 0.0},
        "perf": st.perf.health_json(),
        "uptime_secs": uptime,
        "rss_bytes": rss_bytes(),
        "ws_clients": ws,
        "live_messages": st.live_sent.load(Ordering::Relaxed),
        "db": {"file": db_name, "bytes": db_bytes},
    }))
}

/// Freshness of the writer as this reader sees it.
fn ingest_json(st: &AppState) -> Value {
    match st.ingest.as_ref().and_then(|i| i.snapshot()) {
        Some(v) => v,
        None => {
            json!({"state": "unknown", "detail": "no status from the writer (is `meshlens ingest` running?)"})
        }
    }
}

/// A failed commit or a lost batch this recent makes health say so.
pub const RECENT_LOSS_MS: i64 = 5 * 60_000;

/// A writer busy with one step for longer is stuck (a hung disk, a lock never released). A
/// commit with all its retries on a locked database takes under 30 s.
pub const STALL_MS: i64 = 60_000;

/// The writer's health as `/api/healthz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterHealth {
    /// False while the writer cannot store what arrives (or nobody can tell).
    pub ready: bool,
    /// Not ready, or items were lost recently.
    pub degraded: bool,
    /// Why, for people.
    pub reasons: Vec<String>,
}

/// Judges the writer from its status `ingest` (as [`ingest_json`] returns it) at `now_ms`.
/// `expected`: a writer status is configured, so its absence is a problem; without one (a
/// reader alone, or a test) nothing is known and nothing is claimed. Missing fields (an older
/// writer) are not held against it.
pub fn writer_health(ingest: &Value, expected: bool, now_ms: i64) -> WriterHealth {
    let mut reasons = Vec::new();
    let mut ready = true;
    let secs = |t: i64| now_ms.saturating_sub(t).max(0) / 1000;
    match ingest.get("state").and_then(Value::as_str) {
        Some("unknown") if expected => {
            ready = false;
            reasons.push("no status from the writer: is `meshlens ingest` running?".to_owned());
        }
        Some("stale") => {
            ready = false;
            let age = ingest.get("age_secs").and_then(Value::as_i64).unwrap_or(0);
            reasons.push(format!(
                "the writer's status is {age} s old: it has stopped or is stuck"
            ));
        }
        _ => {}
    }
    let w = ingest.get("writer");
    let at = |k: &str| w.and_then(|w| w.get(k)).and_then(Value::as_i64);
    let last_commit = at("last_commit_at");
    if let Some(err_at) = at("last_error_at")
        && last_commit.is_none_or(|c| err_at > c)
    {
        // The most recent attempt failed: nothing is being stored now.
        ready = false;
        let error = w
            .and_then(|w| w.get("last_error"))
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        reasons.push(format!(
            "commits are failing (the last attempt {} s ago: {error})",
            secs(err_at)
        ));
    }
    if let Some(since) = at("busy_since")
        && now_ms.saturating_sub(since) > STALL_MS
    {
        ready = false;
        let what = w
            .and_then(|w| w.get("busy_with"))
            .and_then(Value::as_str)
            .unwrap_or("work");
        let queued = at("queue_len").unwrap_or(0);
        reasons.push(format!(
            "the writer has been busy with one {what} for {} s ({queued} items were queued)",
            secs(since)
        ));
    }
    let mut degraded = !ready;
    if let Some(lost_at) = at("last_loss_at")
        && now_ms.saturating_sub(lost_at) < RECENT_LOSS_MS
    {
        degraded = true;
        let lost = ingest
            .get("counters")
            .and_then(|c| c.get("writer.items_lost"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        reasons.push(format!(
            "items were lost to failed commits {} s ago ({lost} since start)",
            secs(lost_at)
        ));
    }
    WriterHealth {
        ready,
        degraded,
        reasons,
    }
}

/// The writer's status and what it says about its health, now.
fn health_now(st: &AppState) -> (Value, WriterHealth) {
    let ingest = ingest_json(st);
    let health = writer_health(&ingest, st.ingest.is_some(), crate::now_ms());
    (ingest, health)
}

/// `GET /api/healthz`: ready once the database is open (there is no loading phase) and while
/// the writer stores what arrives ([`writer_health`]); also how fresh the data is.
pub async fn healthz(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    // From memory: the live tailer keeps the newest observation, so a health probe never
    // waits for a database connection. Before the tailer's first look (a few ms after start),
    // the index end is read instead.
    let (obs, last) = match st.newest.get() {
        Some(n) => n,
        None => {
            st.db
                .query(|c| {
                    let id = sql(c.query_row(
                        "SELECT coalesce(max(id), 0) FROM observations",
                        [],
                        |r| r.get::<_, i64>(0),
                    ))?;
                    let at = sql(c.query_row(
                        "SELECT max(received_at) FROM observations",
                        [],
                        |r| r.get::<_, Option<i64>>(0),
                    ))?;
                    Ok((id, at))
                })
                .await?
        }
    };
    let now = crate::now_ms();
    let (ingest, health) = health_now(&st);
    // CoreScope's counts of what it loaded into memory: meshlens serves everything stored, so
    // the nearest figures are the stored totals, from the last stats computed (counting here
    // would make a cheap probe expensive; computed once when none is cached yet).
    // A failed count (a locked or busy database) must not turn the probe into an error: the
    // figures are null then, and readiness is still told.
    let stats = match last_stats(&st).await {
        Some(v) => Some(v),
        None => stats_value(&st).await.ok(),
    };
    let stat = |k: &str| stats.as_ref().map(|v| v[k].clone());
    let mut v = json!({
        "loadedTx": stat("totalTransmissions"),
        "loadedObs": stat("totalObservations"),
        // Keys of adverts are set as they are stored: there is never a backfill.
        "from_pubkey_backfill": {"total": 0, "processed": 0, "done": true},
        "ready": health.ready,
        "status": if health.degraded { "degraded" } else { "ok" },
        "reason": (!health.reasons.is_empty()).then(|| health.reasons.join("; ")),
        "reasons": health.reasons,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": st.started.elapsed().as_secs(),
        "last_observation_id": obs,
        "last_observation_at": last.map(iso),
        "seconds_since_last_observation": last.map(|t| now.saturating_sub(t) / 1000),
    });
    if let Some(l) = liveness(&ingest) {
        v["ingest_liveness"] = l;
    }
    v["ingest"] = ingest;
    Ok(Json(v))
}

/// CoreScope's `ingest_liveness` (`{source: {lastReceiptUnix, lastMessageUnix}}`, seconds):
/// when each source last delivered a message, and when one of its messages last reached the
/// database (the writer commits everything it has at each commit, so that is the earlier of
/// the receipt and the last commit; 0 before any commit). Absent without sources, as
/// CoreScope leaves it out.
fn liveness(ingest: &Value) -> Option<Value> {
    let sources = ingest.get("sources")?.as_object()?;
    if sources.is_empty() {
        return None;
    }
    let commit = ingest
        .get("writer")
        .and_then(|w| w.get("last_commit_at"))
        .and_then(Value::as_i64);
    let out: serde_json::Map<String, Value> = sources
        .iter()
        .take(1_000)
        .map(|(name, s)| {
            let got = s.get("last_message_at").and_then(Value::as_i64);
            let written = match (got, commit) {
                (Some(g), Some(c)) => g.min(c),
                _ => 0,
            };
            (
                name.clone(),
                json!({"lastReceiptUnix": got.unwrap_or(0) / 1000, "lastMessageUnix": written / 1000}),
            )
        })
        .collect();
    Some(Value::Object(out))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(st): State<Arc<AppState>>) -> ApiResult<impl IntoResponse> {
    let stats = stats_value(&st).await?;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, v: f64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
        ));
    };
    for (k, name) in [
        ("totalTransmissions", "meshlens_transmissions"),
        ("totalObservations", "meshlens_observations"),
        ("totalNodes", "meshlens_nodes"),
        ("totalObservers", "meshlens_observers"),
    ] {
        gauge(name, "Rows stored.", stats[k].as_f64().unwrap_or(0.0));
    }
    gauge(
        "meshlens_ws_clients",
        "Connected WebSocket clients.",
        st.ws_clients.load(Ordering::Relaxed) as f64,
    );
    gauge(
        "meshlens_rss_bytes",
        "Resident set size.",
        rss_bytes().unwrap_or(0) as f64,
    );
    let (ingest, health) = health_now(&st);
    let now = crate::now_ms();
    let writer_at = |k: &str| {
        ingest
            .get("writer")
            .and_then(|w| w.get(k))
            .and_then(Value::as_i64)
    };
    let counter = |k: &str| {
        ingest
            .get("counters")
            .and_then(|c| c.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let age = |t: Option<i64>| t.map_or(f64::NAN, |t| now.saturating_sub(t).max(0) as f64 / 1000.0);
    gauge(
        "meshlens_ready",
        "1 while the writer stores what arrives (as /api/healthz ready), else 0.",
        f64::from(u8::from(health.ready)),
    );
    gauge(
        "meshlens_degraded",
        "1 while /api/healthz says degraded (not ready, or items lost in the last 5 minutes).",
        f64::from(u8::from(health.degraded)),
    );
    gauge(
        "meshlens_writer_last_commit_age_seconds",
        "Seconds since the writer last committed a batch (NaN: none since it started).",
        age(writer_at("last_commit_at")),
    );
    gauge(
        "meshlens_writer_last_error_age_seconds",
        "Seconds since a commit attempt last failed (NaN: none since the writer started).",
        age(writer_at("last_error_at")),
    );
    gauge(
        "meshlens_writer_busy_seconds",
        "Seconds the writer has been busy with its current step (0 when waiting for work).",
        writer_at("busy_since").map_or(0.0, |t| now.saturating_sub(t).max(0) as f64 / 1000.0),
    );
    gauge(
        "meshlens_writer_queue_length",
        "Items waiting for the writer when it last took a batch.",
        writer_at("queue_len").unwrap_or(0) as f64,
    );
    if let Some(a) = ingest.get("age_secs").and_then(Value::as_f64) {
        gauge(
            "meshlens_writer_status_age_seconds",
            "Age of the writer's status file, as this reader last read it.",
            a,
        );
    }
    for (name, key, help) in [
        (
            "meshlens_writer_commit_errors_total",
            "writer.commit_errors",
            "Failed commit attempts (each batch is tried up to 5 times).",
        ),
        (
            "meshlens_writer_items_lost_total",
            "writer.items_lost",
            "Items given up on after 5 failed commits.",
        ),
        (
            "meshlens_refused_observer_rate_total",
            "refused.observer_rate",
            "Packets and statuses refused because they would create observers beyond the new-observer rate.",
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            counter(key)
        ));
    }
    if let Some(counters) = ingest.get("counters").and_then(Value::as_object) {
        out.push_str("# HELP meshlens_ingest_total Writer counters by name.\n# TYPE meshlens_ingest_total counter\n");
        for (k, v) in counters {
            // Counter names are fixed identifiers from the writer; quote-escape anyway.
            let k = k.replace(['\\', '"', '\n'], "_");
            out.push_str(&format!(
                "meshlens_ingest_total{{counter=\"{k}\"}} {}\n",
                v.as_u64().unwrap_or(0)
            ));
        }
    }
    if let Some(sources) = ingest.get("sources").and_then(Value::as_object) {
        // Per source, always present (also at zero), so an alert rule can watch them.
        for (metric, key, help) in [
            (
                "meshlens_source_messages_total",
                "messages",
                "Messages received per source.",
            ),
            (
                "meshlens_source_shed_total",
                "shed",
                "QoS 0 copies shed per source because a subscriber of the embedded broker fell behind.",
            ),
            (
                "meshlens_source_observer_rate_refused_total",
                "observer_rate_refused",
                "Packets and statuses refused per source for creating observers beyond its new-observer rate.",
            ),
        ] {
            out.push_str(&format!(
                "# HELP {metric} {help}\n# TYPE {metric} counter\n"
            ));
            for (name, v) in sources {
                // Source names come from configuration; escape them as label values.
                let name = name
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                out.push_str(&format!(
                    "{metric}{{source=\"{name}\"}} {}\n",
                    v.get(key).and_then(Value::as_u64).unwrap_or(0)
                ));
            }
        }
    }
    if let Some(a) = &st.alerting {
        out.push_str(&a.metrics());
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000_000;

    fn running(writer: Value) -> Value {
        json!({"state": "running", "writer": writer, "counters": {"writer.items_lost": 7}})
    }

    #[test]
    fn writer_health_from_its_status() {
        let ok = |v: &Value, expected: bool| writer_health(v, expected, NOW);
        // Nothing wrong, or nothing known and nothing expected.
        let h = ok(&running(json!({"last_commit_at": NOW - 1000})), true);
        assert_eq!((h.ready, h.degraded, h.reasons.len()), (true, false, 0));
        let unknown = json!({"state": "unknown"});
        assert!(ok(&unknown, false).ready);
        // An older writer without the fields is not held against.
        assert!(ok(&json!({"state": "running"}), true).ready);
        // No status at all when one is expected, or a stale one.
        assert!(!ok(&unknown, true).ready);
        let stale = ok(&json!({"state": "stale", "age_secs": 42}), true);
        assert!(!stale.ready && stale.degraded);
        assert!(stale.reasons[0].contains("42 s old"), "{:?}", stale.reasons);
        // The last attempt failed (never a success, or a success before it).
        for commit in [Value::Null, json!(NOW - 9_000)] {
            let h = ok(
                &running(
                    json!({"last_commit_at": commit, "last_error_at": NOW - 3_000,
                                "last_error": "sqlite: database or disk is full"}),
                ),
                true,
            );
            assert!(!h.ready && h.degraded);
            assert!(h.reasons[0].contains("disk is full"), "{:?}", h.reasons);
            assert!(h.reasons[0].contains("3 s ago"), "{:?}", h.reasons);
        }
        // A failed attempt followed by a successful one: storing again.
        let h = ok(
            &running(json!({"last_commit_at": NOW - 1_000, "last_error_at": NOW - 2_000})),
            true,
        );
        assert!(h.ready && !h.degraded);
        // Stuck in one step, or merely busy.
        let stuck = ok(
            &running(
                json!({"busy_since": NOW - STALL_MS - 1_000, "busy_with": "commit",
                            "queue_len": 16_000}),
            ),
            true,
        );
        assert!(!stuck.ready);
        assert!(
            stuck.reasons[0].contains("busy with one commit"),
            "{:?}",
            stuck.reasons
        );
        assert!(ok(&running(json!({"busy_since": NOW - 5_000})), true).ready);
        // Items lost a minute ago: ready again, but degraded, with the count; long ago: ok.
        let h = ok(
            &running(json!({"last_commit_at": NOW - 1_000, "last_loss_at": NOW - 60_000})),
            true,
        );
        assert!(h.ready && h.degraded);
        assert!(h.reasons[0].contains("7 since start"), "{:?}", h.reasons);
        let h = ok(
            &running(json!({"last_loss_at": NOW - RECENT_LOSS_MS - 1})),
            true,
        );
        assert!(h.ready && !h.degraded);
        // Hostile or odd values do not panic.
        let h = ok(
            &running(
                json!({"last_error_at": i64::MIN, "busy_since": i64::MIN, "last_loss_at": "x"}),
            ),
            true,
        );
        assert!(!h.ready);
    }
}
