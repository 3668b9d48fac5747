//! `/api/analytics/hash-sizes`: path-hash size distribution and multi-byte capability, in
//! CoreScope's shape plus adoption counts and the legacy-suspect list. The capability is
//! computed once per cycle, globally; `region` and `window` only choose what is shown.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Query, State};
use serde_json::{Value, json};
use store::time::{iso, parse_duration};

use super::Params;
use crate::AppState;
use crate::capability::CapIndex;
use crate::error::{ApiError, ApiResult};
use analytics::capability::{Capability, Source, Status};

fn entry(c: &Capability) -> Value {
    json!({
        "pubkey": c.public_key,
        "name": c.name,
        "role": c.role,
        "status": c.status.as_str(),
        "evidence": c.evidence,
        "maxHashSize": c.max_hash_size,
        "confidence": c.confidence,
        "source": if c.source == Source::Persisted { "persisted" } else { "computed" },
        "upgradedAt": c.upgraded_at.map(iso),
        "legacySuspect": c.legacy_suspect,
        "lastSeen": (c.adverts.count > 0).then(|| iso(c.adverts.last)),
    })
}

fn in_region(c: &Capability, idx: &CapIndex, region: &Option<HashSet<String>>) -> bool {
    let Some(codes) = region else { return true };
    c.heard_by
        .iter()
        .any(|o| idx.observer_iata.get(o).is_some_and(|i| codes.contains(i)))
}

/// Serialized answers of [`hash_sizes`] for the current capability index, by query: the
/// index changes once per cycle, and the answer for a large mesh is most of a megabyte of
/// JSON that would otherwise be rebuilt for every request.
#[derive(Default)]
pub struct HashSizesCache {
    inner: std::sync::Mutex<Option<(u64, HashMap<String, axum::body::Bytes>)>>,
}

impl HashSizesCache {
    /// Distinct queries kept per cycle.
    const CAPACITY: usize = 16;
    /// Bytes kept per cycle: varied `window`/`region` strings must not make the cache a way
    /// to pin memory (one answer is ~0.9 MB for 2,000 nodes).
    const MAX_BYTES: usize = 4 << 20;
}

/// `GET /api/analytics/hash-sizes`.
pub async fn hash_sizes(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let idx = st.capability.current();
    let cycle = idx.serial;
    let key = format!(
        "{}|{}",
        q.get("region").map_or("", |s| s.as_str()),
        q.get("window").map_or("", |s| s.as_str())
    );
    let cached = st.hash_sizes_cache.inner.lock().ok().and_then(|c| {
        c.as_ref()
            .filter(|(id, _)| *id == cycle)
            .and_then(|(_, m)| m.get(&key).cloned())
    });
    let body = match cached {
        Some(b) => b,
        None => {
            let v = hash_sizes_json(&idx, Params(q))?;
            let b = axum::body::Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
            if let Ok(mut c) = st.hash_sizes_cache.inner.lock() {
                if c.as_ref().is_none_or(|(id, _)| *id != cycle) {
                    *c = Some((cycle, HashMap::new()));
                }
                if let Some((_, m)) = c.as_mut()
                    && m.len() < HashSizesCache::CAPACITY
                    && m.values().map(|v| v.len()).sum::<usize>() + b.len()
                        <= HashSizesCache::MAX_BYTES
                {
                    m.insert(key, b.clone());
                }
            }
            b
        }
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

fn hash_sizes_json(idx: &Arc<CapIndex>, p: Params) -> ApiResult<Value> {
    let region: Option<HashSet<String>> = p.str("region").map(|r| {
        r.split(',')
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
            .take(50)
            .collect()
    });
    let window = match p.str("window") {
        None => None,
        Some(w) => {
            Some(parse_duration(w).map_err(|e| ApiError::BadRequest(format!("window: {e}")))?)
        }
    };
    let r = &idx.report;
    let rows: Vec<&Capability> = r
        .nodes
        .iter()
        .filter(|c| in_region(c, idx, &region))
        .collect();
    let count = |s: Status| rows.iter().filter(|c| c.status == s).count();
    let legacy: Vec<Value> = rows
        .iter()
        .filter(|c| c.legacy_suspect)
        .map(|c| entry(c))
        .collect();
    let mut by_repeaters = json!({"1": 0, "2": 0, "3": 0});
    for c in rows.iter().filter(|c| c.role == "repeater") {
        if let Some(s) = c.latest_advert_size {
            let k = s.to_string();
            by_repeaters[&k] = (by_repeaters[&k].as_u64().unwrap_or(0) + 1).into();
        }
    }
    let mut adopters: Vec<&&Capability> = rows
        .iter()
        .filter(|c| c.latest_advert_size.is_some_and(|s| s >= 2))
        .collect();
    adopters.sort_by(|a, b| {
        b.adverts
            .count
            .cmp(&a.adverts.count)
            .then_with(|| a.public_key.cmp(&b.public_key))
    });
    // Relative to the computation, so the cached answer is the same all cycle long.
    let cutoff = window.map(|w| idx.computed_at - w.as_millis() as i64);
    let hourly: Vec<Value> = r
        .hourly
        .iter()
        .filter(|(h, _)| cutoff.is_none_or(|c| *h + 3_600_000 > c))
        .map(|(h, d)| json!({"hour": iso(*h).get(..13).unwrap_or_default(), "1": d[0], "2": d[1], "3": d[2]}))
        .collect();
    let top_hops: Vec<Value> = r
        .top_hops
        .iter()
        .map(|(hex, size, n, key)| {
            let c = key.as_deref().and_then(|k| idx.get(k));
            json!({"hex": hex, "size": size, "count": n, "name": c.and_then(|c| c.name.clone()), "pubkey": key})
        })
        .collect();
    Ok(json!({
        "total": r.distribution.iter().sum::<u64>(),
        "distribution": {"1": r.distribution[0], "2": r.distribution[1], "3": r.distribution[2]},
        "distributionByRepeaters": by_repeaters,
        "hourly": hourly,
        "topHops": top_hops,
        "multiByteNodes": adopters.iter().map(|c| json!({
            "name": c.name, "hashSize": c.latest_advert_size, "packets": c.adverts.count,
            "lastSeen": iso(c.adverts.last), "pubkey": c.public_key, "role": c.role,
        })).collect::<Vec<_>>(),
        "multiByteCapability": rows.iter().map(|c| entry(c)).collect::<Vec<_>>(),
        "adoption": {
            "confirmed": count(Status::Confirmed),
            "suspected": count(Status::Suspected),
            "unknown": count(Status::Unknown),
            "legacySuspects": legacy.len(),
        },
        "legacySuspects": legacy,
        "unknownRelays": r.unknown_relays.iter().map(|(h, n)| json!({"hex": h, "count": n})).collect::<Vec<_>>(),
        "computedAt": (idx.computed_at > 0).then(|| iso(idx.computed_at)),
        "complete": idx.complete,
        "cycleMs": idx.took.as_millis() as u64,
        "region": region.map(|r| { let mut v: Vec<String> = r.into_iter().collect(); v.sort(); v }),
    }))
}
