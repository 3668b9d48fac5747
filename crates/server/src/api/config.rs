//! `/api/config/client` and `/api/config/regions`: the small bootstrap documents a
//! CoreScope-style UI reads at start, filled from what meshlens knows (its roles, limits and
//! version; the regions its observers report).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;
use crate::db::sql;
use crate::error::ApiResult;

/// Most regions listed: a bound on the answer, far above any deployment.
pub const MAX_REGIONS: usize = 1_000;

/// `GET /api/config/client` → CoreScope's client config: `roles`, `healthThresholds` (ms),
/// `limits`, `propagationBufferMs`, `liveMapMaxNodes`, `timestamps`, `customizer`, and
/// `version`; knobs meshlens does not have (`snrThresholds`, `distThresholds`, `maxHopDist`,
/// `perfSlowMs`, `wsReconnectMs`, `cacheInvalidateMs`, `externalUrls`) are null, as CoreScope
/// serves them when unset.
pub async fn client() -> Json<Value> {
    const HOUR_MS: i64 = 3_600_000;
    const MIN_MS: i64 = 60_000;
    Json(json!({
        "roles": {
            "repeater": "Repeater",
            "room": "Room server",
            "companion": "Companion",
            "sensor": "Sensor",
        },
        "healthThresholds": {
            "infraDegradedMs": 24 * HOUR_MS,
            "infraSilentMs": 72 * HOUR_MS,
            "nodeDegradedMs": HOUR_MS,
            "nodeSilentMs": 24 * HOUR_MS,
            "observerOnlineMs": 60 * MIN_MS,
            "observerStaleMs": 1_440 * MIN_MS,
        },
        "snrThresholds": null,
        "distThresholds": null,
        "maxHopDist": null,
        "limits": {
            "packetsMax": super::packets::MAX_PACKETS,
            "nodesMax": super::nodes::MAX_NODES,
        },
        "perfSlowMs": null,
        "wsReconnectMs": null,
        "cacheInvalidateMs": null,
        "externalUrls": null,
        "propagationBufferMs": 5_000,
        "liveMapMaxNodes": super::nodes::MAX_NODES,
        "timestamps": {
            "defaultMode": "ago",
            "timezone": "local",
            "formatPreset": "iso",
            "customFormat": "",
            "allowCustomFormat": false,
        },
        "customizer": {"disabledTabs": []},
        "clientRxCoverage": false,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// `GET /api/config/regions` → `{IATA: label}` for every IATA code an observer reports
/// (meshlens has no region names, so each label is the code itself, as CoreScope labels codes
/// it discovers), in code order.
pub async fn regions(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let codes = st
        .db
        .query(|c| {
            let mut stmt = sql(c.prepare_cached(&format!(
                "SELECT DISTINCT upper(trim(iata)) FROM observers
                 WHERE iata IS NOT NULL AND trim(iata) != ''
                 ORDER BY 1 LIMIT {MAX_REGIONS}"
            )))?;
            sql(stmt
                .query_map([], |r| r.get::<_, String>(0))
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))
        })
        .await?;
    let map: BTreeMap<String, Value> = codes
        .into_iter()
        .map(|c| (c.clone(), Value::from(c)))
        .collect();
    Ok(Json(json!(map)))
}
