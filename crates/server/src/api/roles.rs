//! `GET /api/analytics/roles`: how many nodes of each role the mesh has, and how their clocks
//! stand: per role, the nodes with a clock-skew estimate (from their adverts, as
//! `/api/nodes/clock-skew` computes it), the mean and median absolute skew, and how many are
//! ok, warning, critical, absurd or without a clock. CoreScope's shape.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};

use crate::AppState;
use crate::db::sql;
use crate::error::ApiResult;

#[derive(Default)]
struct Bucket {
    nodes: u64,
    abs_skews: Vec<f64>,
    severities: HashMap<String, u64>,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Groups `roles` (public key → role) with `skews` (public key → (severity, |skew| s)).
pub fn role_stats(roles: &[(String, String)], skews: &HashMap<String, (String, f64)>) -> Value {
    let mut buckets: HashMap<String, Bucket> = HashMap::new();
    for (pk, role) in roles {
        let role = match role.trim().to_ascii_lowercase() {
            r if r.is_empty() => "unknown".to_owned(),
            r => r,
        };
        let b = buckets.entry(role).or_default();
        b.nodes += 1;
        if let Some((severity, abs)) = skews.get(pk) {
            b.abs_skews.push(*abs);
            *b.severities.entry(severity.clone()).or_default() += 1;
        }
    }
    let total: u64 = buckets.values().map(|b| b.nodes).sum();
    let mut rows: Vec<(String, Bucket)> = buckets.into_iter().collect();
    rows.sort_by(|a, b| b.1.nodes.cmp(&a.1.nodes).then_with(|| a.0.cmp(&b.0)));
    let roles: Vec<Value> = rows
        .into_iter()
        .map(|(role, mut b)| {
            let n = b.abs_skews.len();
            let (mean, median) = if n == 0 {
                (0.0, 0.0)
            } else {
                b.abs_skews.sort_by(f64::total_cmp);
                let mean = b.abs_skews.iter().sum::<f64>() / n as f64;
                let median = if n % 2 == 1 {
                    b.abs_skews[n / 2]
                } else {
                    (b.abs_skews[n / 2 - 1] + b.abs_skews[n / 2]) / 2.0
                };
                (mean, median)
            };
            let count = |s: &str| b.severities.get(s).copied().unwrap_or(0);
            json!({
                "role": role,
                "nodeCount": b.nodes,
                "withSkew": n,
                "meanAbsSkewSec": round2(mean),
                "medianAbsSkewSec": round2(median),
                "okCount": count("ok"),
                "warningCount": count("warning"),
                "criticalCount": count("critical"),
                "absurdCount": count("absurd"),
                "noClockCount": count("no_clock"),
            })
        })
        .collect();
    json!({"totalNodes": total, "roles": roles})
}

/// Served from the analytics answer cache for a few seconds (it reads a week of adverts).
pub async fn roles(State(st): State<Arc<AppState>>) -> ApiResult<axum::response::Response> {
    let q = HashMap::new();
    super::rf::cached(&st, "analytics-roles", &q, answer(st.clone())).await
}

async fn answer(st: Arc<AppState>) -> ApiResult<Json<Value>> {
    let Json(fleet) =
        super::clock_skew::fleet_answer(State(st.clone()), Query(HashMap::new())).await?;
    let skews: HashMap<String, (String, f64)> = fleet
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let pk = v["pubkey"].as_str()?.to_owned();
            let severity = v["severity"].as_str()?.to_owned();
            let recent = v["recentMedianSkewSec"].as_f64().unwrap_or(0.0).abs();
            let abs = if recent == 0.0 {
                v["lastSkewSec"].as_f64().unwrap_or(0.0).abs()
            } else {
                recent
            };
            Some((pk, (severity, abs)))
        })
        .collect();
    let roles: Vec<(String, String)> = st
        .db
        .query(|c| {
            let mut stmt = sql(c.prepare_cached(
                "SELECT public_key, role FROM nodes UNION ALL SELECT public_key, role FROM inactive_nodes",
            ))?;
            let rows = sql(stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(sql(r)?);
            }
            Ok(out)
        })
        .await?;
    Ok(Json(role_stats(&roles, &skews)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_with_their_clocks() {
        let roles: Vec<(String, String)> = [
            ("a", "repeater"),
            ("b", "repeater"),
            ("c", "companion"),
            ("d", ""),
        ]
        .iter()
        .map(|(k, r)| (k.to_string(), r.to_string()))
        .collect();
        let skews: HashMap<String, (String, f64)> = [
            ("a".to_string(), ("critical".to_string(), 3600.0)),
            ("b".to_string(), ("ok".to_string(), 2.0)),
        ]
        .into_iter()
        .collect();
        let v = role_stats(&roles, &skews);
        assert_eq!(v["totalNodes"], 4);
        assert_eq!(v["roles"][0]["role"], "repeater");
        assert_eq!(v["roles"][0]["nodeCount"], 2);
        assert_eq!(v["roles"][0]["withSkew"], 2);
        assert_eq!(v["roles"][0]["meanAbsSkewSec"], 1801.0);
        assert_eq!(v["roles"][0]["medianAbsSkewSec"], 1801.0);
        assert_eq!(v["roles"][0]["criticalCount"], 1);
        assert_eq!(v["roles"][0]["okCount"], 1);
        assert_eq!(v["roles"][1]["role"], "companion");
        assert_eq!(v["roles"][2]["role"], "unknown");
        assert_eq!(v["roles"][2]["withSkew"], 0);
    }
}
