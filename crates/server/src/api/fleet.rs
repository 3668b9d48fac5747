//! The node fleet at a glance, in CoreScope's shapes: `/api/nodes/bulk-health` (the reception
//! of many nodes' own packets at once), `/api/nodes/network-status` (how many nodes are
//! active, degraded or silent) and `/api/nodes/resolve` (a key prefix to a node name).
//!
//! All read the `nodes` table (bounded by the number of nodes, not by traffic) and, for
//! bulk health, each listed node's own transmissions of the last week with caps per node,
//! so one request's work is bounded whatever the data.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};
use store::rusqlite::{ToSql, params_from_iter};
use store::time::iso;

use super::Params;
use super::node_health::WINDOW_MS;
use crate::AppState;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};

/// Most nodes in one bulk-health answer (CoreScope's default bound).
pub const MAX_BULK: i64 = 200;
/// Most transmissions of one node bulk health reads.
const BULK_TX_PER_NODE: i64 = 500;
/// Most observations of one node bulk health aggregates.
const BULK_OBS_PER_NODE: i64 = 2_000;
/// Most region codes one `region` filter may name.
const MAX_REGIONS: usize = 50;

/// How long since its last advert a node of `role` counts as degraded, then silent (ms): the
/// thresholds `/api/config/client` announces (infrastructure adverts less often).
pub fn thresholds(role: &str) -> (i64, i64) {
    const HOUR: i64 = 3_600_000;
    match role {
        "repeater" | "room" => (24 * HOUR, 72 * HOUR),
        _ => (HOUR, 24 * HOUR),
    }
}

/// `GET /api/nodes/network-status` → `{total, active, degraded, silent, roleCounts}` over the
/// active nodes table, by the age of each node's last advert ([`thresholds`]).
pub async fn network_status(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    let area = super::areas::from_params(&p, &st.ui.areas)?.map(|a| a.sql_contains("lat", "lon"));
    let now = crate::now_ms();
    let rows = st
        .db
        .query(move |c| {
            let w = area.map_or_else(String::new, |a| format!("WHERE {a}"));
            let mut stmt = sql(c.prepare(&format!("SELECT role, last_seen FROM nodes {w}")))?;
            let rows = sql(stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            Ok(rows)
        })
        .await?;
    let (mut active, mut degraded, mut silent) = (0u64, 0u64, 0u64);
    let mut roles: std::collections::BTreeMap<String, u64> = Default::default();
    for (role, last) in &rows {
        let (d, s) = thresholds(role);
        let age = now.saturating_sub(*last);
        if age < d {
            active += 1;
        } else if age < s {
            degraded += 1;
        } else {
            silent += 1;
        }
        *roles.entry(role.clone()).or_default() += 1;
    }
    Ok(Json(json!({
        "total": rows.len(),
        "active": active,
        "degraded": degraded,
        "silent": silent,
        "roleCounts": roles,
    })))
}

/// `GET /api/nodes/resolve?prefix=` → `{prefix, pubkey, name, ambiguous}`: the node whose key
/// starts with `prefix` (4-64 hex digits; shorter prefixes would let anyone list every name
/// 256 at a time). No match: `pubkey` and `name` absent, `ambiguous` false; several:
/// `ambiguous` true.
pub async fn resolve(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    let prefix = super::hex_prefix(
        "prefix",
        p.str("prefix")
            .ok_or_else(|| ApiError::BadRequest("prefix is required".into()))?,
    )?;
    if prefix.len() < 4 {
        return Err(ApiError::BadRequest(
            "prefix must be at least 4 hex digits".into(),
        ));
    }
    let range = [prefix.clone(), format!("{prefix}g")];
    let rows = st
        .db
        .query(move |c| {
            let mut stmt = sql(c.prepare_cached(
                "SELECT public_key, coalesce(name, '') FROM nodes
                 WHERE public_key >= ?1 AND public_key < ?2 LIMIT 2",
            ))?;
            sql(stmt
                .query_map(range, |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))
        })
        .await?;
    let mut v = json!({"prefix": prefix, "ambiguous": rows.len() > 1});
    if let [(key, name)] = rows.as_slice() {
        v["pubkey"] = key.as_str().into();
        v["name"] = name.as_str().into();
    }
    Ok(Json(v))
}

/// `GET /api/nodes/bulk-health?limit=&region=&area=` → `[{public_key, name, role, lat, lon,
/// stats: {totalTransmissions, totalObservations, totalPackets, packetsToday, avgSnr,
/// lastHeard}, observers: [{observer_id, observer_name, avgSnr, avgRssi, packetCount}]}]`:
/// the most recently heard nodes (default 50, at most [`MAX_BULK`]), each with the reception
/// of its own transmissions of the last week (at most 500 of them and 2,000 observations per
/// node). `region` keeps nodes whose adverts observers of those IATA codes heard; `area`
/// nodes located in the area.
pub async fn bulk_health(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    let limit = p.limit(50, MAX_BULK)?;
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Box<dyn ToSql + Send>> = Vec::new();
    if let Some(area) = super::areas::from_params(&p, &st.ui.areas)? {
        clauses.push(area.sql_contains("lat", "lon"));
    }
    if let Some(codes) = p.list("region", MAX_REGIONS)? {
        let codes: Vec<String> = codes.iter().map(|s| s.to_ascii_uppercase()).collect();
        let marks = vec!["?"; codes.len()].join(",");
        clauses.push(format!(
            "public_key IN (SELECT t.from_pubkey FROM transmissions t JOIN observations o ON o.transmission_id = t.id \
             JOIN observers ob ON ob.idx = o.observer_idx WHERE t.payload_type = 4 AND ob.iata IN ({marks}))"
        ));
        args.extend(
            codes
                .into_iter()
                .map(|c| Box::new(c) as Box<dyn ToSql + Send>),
        );
    }
    let now = crate::now_ms();
    let since = now - WINDOW_MS;
    let today = now - now.rem_euclid(86_400_000);
    let out = st
        .db
        .query(move |c| {
            let w = if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            };
            let mut stmt = sql(c.prepare(&format!(
                "SELECT public_key, name, role, lat, lon FROM nodes {w}
                 ORDER BY last_seen DESC, public_key LIMIT {limit}"
            )))?;
            let nodes = sql(stmt
                .query_map(params_from_iter(args.iter().map(|a| a.as_ref() as &dyn ToSql)), |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<f64>>(3)?,
                        r.get::<_, Option<f64>>(4)?,
                    ))
                })
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            let recent_tx = format!(
                "SELECT id, first_seen, observation_count FROM transmissions INDEXED BY transmissions_from
                 WHERE from_pubkey = ?1 AND first_seen >= ?2
                 ORDER BY first_seen DESC LIMIT {BULK_TX_PER_NODE}"
            );
            let mut tx_stmt = sql(c.prepare_cached(&format!(
                "SELECT count(*), total(observation_count), count(CASE WHEN first_seen >= ?3 THEN 1 END),
                        max(first_seen)
                 FROM ({recent_tx})"
            )))?;
            let mut obs_stmt = sql(c.prepare_cached(&format!(
                "SELECT ob.id, ob.name, count(DISTINCT o.transmission_id),
                        total(o.snr), count(o.snr), total(o.rssi), count(o.rssi)
                 FROM (SELECT o.observer_idx, o.transmission_id, o.snr, o.rssi
                       FROM ({recent_tx}) t JOIN observations o ON o.transmission_id = t.id
                       LIMIT {BULK_OBS_PER_NODE}) o
                 JOIN observers ob ON ob.idx = o.observer_idx
                 GROUP BY o.observer_idx
                 ORDER BY 3 DESC, ob.id"
            )))?;
            let avg = |sum: f64, n: i64| (n > 0).then(|| sum / n as f64);
            let mut out = Vec::with_capacity(nodes.len());
            for (key, name, role, lat, lon) in nodes {
                let (txs, obs_total, today_n, last): (i64, f64, i64, Option<i64>) = sql(tx_stmt
                    .query_row(store::rusqlite::params![key, since, today], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    }))?;
                let rows = sql(obs_stmt
                    .query_map(store::rusqlite::params![key, since], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, f64>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, f64>(5)?,
                            r.get::<_, i64>(6)?,
                        ))
                    })
                    .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
                let (snr_sum, snr_n) = rows.iter().fold((0.0, 0), |(s, n), o| (s + o.3, n + o.4));
                let observers: Vec<Value> = rows
                    .iter()
                    .map(|(id, name, packets, snr, snr_n, rssi, rssi_n)| {
                        json!({
                            "observer_id": id,
                            "observer_name": name,
                            "avgSnr": avg(*snr, *snr_n),
                            "avgRssi": avg(*rssi, *rssi_n),
                            "packetCount": packets,
                        })
                    })
                    .collect();
                out.push(json!({
                    "public_key": key,
                    "name": name,
                    "role": role,
                    "lat": lat,
                    "lon": lon,
                    "stats": {
                        "totalTransmissions": txs,
                        "totalObservations": obs_total as i64,
                        "totalPackets": txs,
                        "packetsToday": today_n,
                        "avgSnr": avg(snr_sum, snr_n),
                        "lastHeard": last.map(iso),
                    },
                    "observers": observers,
                }));
            }
            Ok(out)
        })
        .await?;
    Ok(Json(Value::Array(out)))
}
