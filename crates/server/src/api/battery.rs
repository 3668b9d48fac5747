//! `GET /api/nodes/{pubkey}/battery?days=7`: a node's battery over time, where it reports
//! one: MeshCore adverts carry no telemetry, so the samples are the node's own observer
//! status history (a repeater that is also an observer), one per 5-minute bucket (its last
//! reading). CoreScope's shape, with its thresholds (low < 3,300 mV, critical < 3,000 mV).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use store::time::iso;

use crate::AppState;
use crate::api::{Params, hex_prefix};
use crate::db::sql;
use crate::error::{ApiError, ApiResult};

/// Below this a battery is low (mV).
pub const LOW_MV: i64 = 3300;
/// Below this a battery is critical (mV).
pub const CRITICAL_MV: i64 = 3000;

/// The handler: 400 for a malformed key or `days`, 404 for a node never heard.
pub async fn battery(
    State(st): State<Arc<AppState>>,
    Path(pubkey): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let pk = hex_prefix("public key", &pubkey)?;
    if pk.len() != 64 {
        return Err(ApiError::BadRequest(
            "public key must be 64 hex digits".into(),
        ));
    }
    let p = Params(q);
    let days: i64 = match p.str("days") {
        None => 7,
        Some(d) => d
            .parse()
            .ok()
            .filter(|d| (1..=365).contains(d))
            .ok_or_else(|| ApiError::BadRequest("days must be 1 to 365".into()))?,
    };
    let since = crate::now_ms() - days * 86_400_000;
    let key = pk.clone();
    let found = st
        .db
        .query(move |c| {
            let known: bool = sql(c.query_row(
                "SELECT EXISTS(SELECT 1 FROM nodes WHERE public_key = ?1)
                     OR EXISTS(SELECT 1 FROM inactive_nodes WHERE public_key = ?1)",
                [&key],
                |r| r.get(0),
            ))?;
            if !known {
                return Ok(None);
            }
            let mut stmt = sql(c.prepare_cached(
                "SELECT m.bucket, m.battery_mv_last FROM observer_metrics m
                 JOIN observers ob ON ob.idx = m.observer_idx
                 WHERE ob.id = ?1 AND m.bucket >= ?2 AND m.battery_mv_last IS NOT NULL
                 ORDER BY m.bucket LIMIT 105120",
            ))?;
            let rows = sql(stmt.query_map(store::rusqlite::params![key, since], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            }))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(sql(r)?);
            }
            Ok(Some(out))
        })
        .await?;
    let Some(samples) = found else {
        return Err(ApiError::NotFound("node not found".into()));
    };
    let latest = samples.last().copied();
    let status = match latest {
        None => "unknown",
        Some((_, mv)) if mv < CRITICAL_MV => "critical",
        Some((_, mv)) if mv < LOW_MV => "low",
        Some(_) => "ok",
    };
    Ok(Json(json!({
        "public_key": pk,
        "days": days,
        "samples": samples.iter().map(|&(t, mv)| json!({"timestamp": iso(t), "battery_mv": mv})).collect::<Vec<_>>(),
        "latest_mv": latest.map(|l| l.1),
        "latest_ts": latest.map(|l| iso(l.0)),
        "status": status,
        "thresholds": {"low_mv": LOW_MV, "critical_mv": CRITICAL_MV},
    })))
}
