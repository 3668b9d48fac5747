//! `GET /api/audio-lab/buckets`: sample packets of each payload type for CoreScope's
//! sonification page (its "Audio Lab"), in CoreScope's shape: `{buckets: {TYPE: [packet]}}`
//! (TYPE as CoreScope names it: its payload object's `type`, so `CHAN` for decrypted channel
//! messages and `GRP_TXT` for the rest),
//! at most 8 per type, spread evenly over the type's frame lengths from shortest to longest.
//! Each sample has `hash`, `raw_hex`, `decoded_json`, `observation_count`, `payload_type`,
//! `path_json`, `observer_id` (who heard it first) and `timestamp` (first seen).
//!
//! CoreScope samples whatever its in-memory store holds; meshlens samples the latest
//! [`SCAN`] transmissions, so the work does not grow with the age of the database.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use super::packets::{TX_COLUMNS, first_observations, tx_row};
use crate::AppState;
use crate::db::sql;
use crate::error::ApiResult;

/// Most recent transmissions looked at.
pub const SCAN: i64 = 10_000;

/// Samples per payload type.
pub const PER_TYPE: usize = 8;

/// `PER_TYPE` picks spread evenly over `n` items sorted by length: item `i·n/k` for
/// `i < k = min(PER_TYPE, n)` (CoreScope's choice).
pub fn picks(n: usize) -> Vec<usize> {
    let k = PER_TYPE.min(n);
    (0..k).map(|i| i * n / k).collect()
}

/// Served from the analytics answer cache (it reads the latest transmissions).
pub async fn buckets(State(st): State<Arc<AppState>>) -> ApiResult<axum::response::Response> {
    super::rf::cached(
        &st,
        "audio-lab-buckets",
        &HashMap::new(),
        answer(st.clone()),
    )
    .await
}

async fn answer(st: Arc<AppState>) -> ApiResult<Json<Value>> {
    let state = st.clone();
    let out = st
        .db
        .query(move |c| {
            // (frame length, id) of the latest transmissions, by payload type.
            let mut stmt = sql(c.prepare_cached(
                "SELECT id, payload_type, length(raw) FROM transmissions ORDER BY id DESC LIMIT ?1",
            ))?;
            let mut by_type: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
            for r in sql(stmt.query_map([SCAN], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            }))? {
                let (id, ptype, len) = sql(r)?;
                by_type.entry(ptype).or_default().push((len, id));
            }
            let mut wanted: Vec<i64> = Vec::new();
            for rows in by_type.values_mut() {
                // Shortest first; among equal lengths the older first, so the picks are stable.
                rows.sort_unstable();
                wanted.extend(picks(rows.len()).into_iter().filter_map(|i| rows.get(i).map(|r| r.1)));
            }
            if wanted.is_empty() {
                return Ok(Map::new());
            }
            let list = serde_json::to_string(&wanted).map_err(|e| crate::error::ApiError::Internal(e.to_string()))?;
            let mut stmt = sql(c.prepare_cached(&format!(
                "SELECT {TX_COLUMNS} FROM transmissions t WHERE t.id IN (SELECT value FROM json_each(?1))"
            )))?;
            let rows = sql(stmt
                .query_map([list], tx_row)
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            let firsts = first_observations(c, &wanted)?;
            let mut by_id: HashMap<i64, Value> = HashMap::new();
            for r in &rows {
                let first = firsts.get(&r.id());
                by_id.insert(r.id(), r.to_json_with(&state, first));
            }
            let mut buckets: Map<String, Value> = Map::new();
            for id in wanted {
                let Some(p) = by_id.remove(&id) else { continue };
                // CoreScope buckets by its payload object's `type` ("CHAN" for a decrypted
                // channel message), else by the payload type's name.
                let name = super::corescope::payload(&p["decoded"])["type"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .or_else(|| p["payload_type_name"].as_str())
                    .unwrap_or("UNKNOWN")
                    .to_owned();
                let sample = json!({
                    "hash": p["hash"],
                    "raw_hex": p["raw_hex"],
                    "decoded_json": p["decoded_json"],
                    "observation_count": p["observation_count"].as_i64().unwrap_or(0).max(1),
                    "payload_type": p["payload_type"].as_i64().unwrap_or(0),
                    "path_json": p["path_json"],
                    "observer_id": p["observer_id"],
                    "timestamp": p["first_seen"],
                });
                if let Some(list) = buckets.entry(name).or_insert_with(|| Value::Array(Vec::new())).as_array_mut() {
                    list.push(sample);
                }
            }
            Ok(buckets)
        })
        .await?;
    Ok(Json(json!({"buckets": out})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_spread_over_the_lengths() {
        assert_eq!(picks(0), Vec::<usize>::new());
        assert_eq!(picks(3), vec![0, 1, 2]);
        assert_eq!(picks(8), (0..8).collect::<Vec<_>>());
        assert_eq!(picks(16), vec![0, 2, 4, 6, 8, 10, 12, 14]);
        assert_eq!(picks(20), vec![0, 2, 5, 7, 10, 12, 15, 17]);
    }
}
