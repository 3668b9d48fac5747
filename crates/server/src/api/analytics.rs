//! `/api/analytics/hash-sizes`: path-hash size distribution and multi-byte capability, in
//! CoreScope's shape plus adoption counts and the legacy-suspect list. The capability is
//! computed once per cycle, globally; `region` and `window` only choose what is shown.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
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

/// `GET /api/analytics/hash-sizes`.
pub async fn hash_sizes(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
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
    let idx = st.capability.current();
    let r = &idx.report;
    let rows: Vec<&Capability> = r
        .nodes
        .iter()
        .filter(|c| in_region(c, &idx, &region))
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
    let cutoff = window.map(|w| idx.computed_at.max(crate::now_ms()) - w.as_millis() as i64);
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
    Ok(Json(json!({
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
    })))
}
