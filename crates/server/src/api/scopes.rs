//! `GET /api/scope-stats?window=1h|24h|7d`: transport-code scopes (MeshCore's regions) in
//! CoreScope's shape: how many transport-routed packets carried a scope, how many of those
//! were of a region this deployment knows (`hashRegions`) and which, and the series over the
//! window (5-minute, 1-hour or 6-hour buckets).
//!
//! A packet's scope is its first transport code (bytes 1–2 of the frame on a transport route);
//! 0 means unscoped. The writer names the region when a configured one matches
//! (`transmissions.scope`), so "scoped but unknown" is a non-zero code without a name.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};

use crate::AppState;
use crate::api::Params;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};

/// Transport routes (0 and 3) whose first transport code is not 0.
const SCOPED: &str = "(route_type IN (0, 3) AND substr(raw, 2, 2) != x'0000')";

/// Served from the analytics answer cache for a few seconds.
pub async fn scope_stats(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    let p = Params(q.clone());
    let window = p.str("window").unwrap_or("24h").to_owned();
    let (span, bucket) = match window.as_str() {
        "1h" => (3_600_000i64, 300_000i64),
        "24h" => (86_400_000, 3_600_000),
        "7d" => (7 * 86_400_000, 6 * 3_600_000),
        _ => {
            return Err(ApiError::BadRequest("window must be 1h, 24h, or 7d".into()));
        }
    };
    super::rf::cached(
        &st,
        "scope-stats",
        &q,
        answer(st.clone(), window, span, bucket),
    )
    .await
}

async fn answer(
    st: Arc<AppState>,
    window: String,
    span: i64,
    bucket: i64,
) -> ApiResult<Json<Value>> {
    let since = crate::now_ms() - span;
    let v = st
        .db
        .query(move |c| {
            let (transport, scoped, named, other): (i64, i64, i64, i64) = sql(c.query_row(
                &format!(
                    "SELECT coalesce(sum(route_type IN (0, 3)), 0),
                            coalesce(sum({SCOPED}), 0),
                            coalesce(sum({SCOPED} AND scope IS NOT NULL), 0),
                            coalesce(sum(route_type NOT IN (0, 3)), 0)
                     FROM transmissions WHERE first_seen >= ?1"
                ),
                [since],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            ))?;
            let mut stmt = sql(c.prepare_cached(
                "SELECT scope, count(*) AS n FROM transmissions
                 WHERE first_seen >= ?1 AND scope IS NOT NULL AND route_type IN (0, 3)
                 GROUP BY scope ORDER BY n DESC, scope LIMIT 1000",
            ))?;
            let rows = sql(stmt.query_map([since], |r| {
                Ok(json!({"name": r.get::<_, String>(0)?, "count": r.get::<_, i64>(1)?}))
            }))?;
            let mut by_region = Vec::new();
            for r in rows {
                by_region.push(sql(r)?);
            }
            let mut stmt = sql(c.prepare_cached(&format!(
                "SELECT (first_seen / ?2) * ?2 AS b, coalesce(sum({SCOPED}), 0),
                        coalesce(sum(route_type IN (0, 3) AND NOT {SCOPED}), 0)
                 FROM transmissions WHERE first_seen >= ?1 AND route_type IN (0, 3)
                 GROUP BY b ORDER BY b"
            )))?;
            let rows = sql(stmt.query_map([since, bucket], |r| {
                Ok(json!({
                    "t": store::time::iso(r.get::<_, i64>(0)?),
                    "scoped": r.get::<_, i64>(1)?,
                    "unscoped": r.get::<_, i64>(2)?,
                }))
            }))?;
            let mut series = Vec::new();
            for r in rows {
                series.push(sql(r)?);
            }
            Ok(json!({
                "window": window,
                "summary": {
                    "transportTotal": transport,
                    "scoped": scoped,
                    // Transport packets without a scope, and every packet on another route
                    // (which cannot carry one), as CoreScope counts them.
                    "unscoped": transport - scoped + other,
                    "unknownScope": scoped - named,
                },
                "byRegion": by_region,
                "timeSeries": series,
            }))
        })
        .await?;
    Ok(Json(v))
}
