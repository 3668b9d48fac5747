//! `/api/stats`, `/api/health`, `/api/healthz` and `/metrics`.

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

/// `GET /api/stats`.
pub async fn stats(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    // The counts scan whole indexes: computed once per commit generation, and holding the
    // lock while computing makes concurrent callers share one computation.
    let generation = st.generation.load(Ordering::Relaxed);
    let mut cache = st.stats_cache.lock().await;
    if let Some((g, v)) = cache.as_ref()
        && *g == generation
    {
        return Ok(Json(v.clone()));
    }
    let v = st
        .db
        .query(|c| {
            let count = |sql_text: &str| sql(c.query_row(sql_text, [], |r| r.get::<_, i64>(0)));
            let mut counts = json!({"repeater": 0, "room": 0, "companion": 0, "sensor": 0});
            let mut stmt = sql(c.prepare_cached("SELECT role, count(*) FROM nodes GROUP BY role"))?;
            for row in
                sql(stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))))?
            {
                let (role, n) = sql(row)?;
                counts[role] = n.into();
            }
            Ok(json!({
                "totalTransmissions": count("SELECT count(*) FROM transmissions")?,
                "totalObservations": count("SELECT count(*) FROM observations")?,
                "totalNodes": count("SELECT count(*) FROM nodes")?,
                "totalInactiveNodes": count("SELECT count(*) FROM inactive_nodes")?,
                "totalObservers": count("SELECT count(*) FROM observers")?,
                "counts": counts,
                "version": env!("CARGO_PKG_VERSION"),
            }))
        })
        .await?;
    *cache = Some((generation, v.clone()));
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

/// `GET /api/health`.
pub async fn health(State(st): State<Arc<AppState>>) -> Json<Value> {
    let db_bytes = std::fs::metadata(st.db.path()).map_or(0, |m| m.len());
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": st.started.elapsed().as_secs(),
        "rss_bytes": rss_bytes(),
        "ws_clients": st.ws_clients.load(Ordering::Relaxed),
        "live_messages": st.live_sent.load(Ordering::Relaxed),
        "db": {"path": st.db.path().display().to_string(), "bytes": db_bytes},
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

/// `GET /api/healthz`: ready as soon as the database is open (there is no loading phase);
/// also how fresh the data is, so a stalled ingest is visible.
pub async fn healthz(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let (obs, last) = st
        .db
        .query(|c| {
            // Two statements: SQLite answers a lone max() from an index end, but not a pair.
            let id = sql(
                c.query_row("SELECT coalesce(max(id), 0) FROM observations", [], |r| {
                    r.get::<_, i64>(0)
                }),
            )?;
            let at = sql(
                c.query_row("SELECT max(received_at) FROM observations", [], |r| {
                    r.get::<_, Option<i64>>(0)
                }),
            )?;
            Ok((id, at))
        })
        .await?;
    let now = crate::now_ms();
    Ok(Json(json!({
        "ready": true,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": st.started.elapsed().as_secs(),
        "last_observation_id": obs,
        "last_observation_at": last.map(iso),
        "seconds_since_last_observation": last.map(|t| (now - t) / 1000),
        "ingest": ingest_json(&st),
    })))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(st): State<Arc<AppState>>) -> ApiResult<impl IntoResponse> {
    let Json(stats) = stats(State(st.clone())).await?;
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
    if let Some(ingest) = st.ingest.as_ref().and_then(|i| i.snapshot())
        && let Some(counters) = ingest.get("counters").and_then(Value::as_object)
    {
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
    if let Some(ingest) = st.ingest.as_ref().and_then(|i| i.snapshot())
        && let Some(sources) = ingest.get("sources").and_then(Value::as_object)
    {
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
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
