//! `/api/config/client`, `/api/config/regions`, `/api/config/theme`, `/api/config/cache` and
//! `/api/iata-coords`: the small bootstrap documents a CoreScope-style UI reads at start,
//! filled from what meshlens knows (its roles, limits, version and palette; the regions its
//! observers report; the configuration file's UI keys).

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
/// serves them when unset. `map.tiles` names meshlens's one tile server for both light and
/// dark themes (the Content-Security-Policy allows no other).
pub async fn client(State(st): State<Arc<AppState>>) -> Json<Value> {
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
        "map": {
            "tiles": {
                "lightUrl": st.ui.tile_url,
                "darkUrl": st.ui.tile_url,
                "attribution": st.ui.tile_attribution,
                "providers": {},
            },
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

/// `GET /api/config/cache` → the configuration file's `cacheTTL` object as given (CoreScope's
/// client takes its cache lifetimes from it), `{}` when unset.
pub async fn cache(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(st.ui.cache_ttl.clone().unwrap_or_else(|| json!({})))
}

/// meshlens's own palette (the UI's light and dark colours), in the sections and keys of
/// CoreScope's theme document.
fn default_theme() -> Value {
    let light = json!({
        "accent": "#1f6feb", "accentHover": "#388bfd", "navBg": "#161b22", "navBg2": "#21262d",
        "navText": "#ffffff", "navTextMuted": "#c9d1d9", "background": "#f6f7f9",
        "text": "#1b1f24", "textMuted": "#5b6470", "border": "#d6dbe1", "surface1": "#ffffff",
        "surface2": "#ffffff", "surface3": "#ffffff", "sectionBg": "#f0f2f5",
        "cardBg": "#ffffff", "contentBg": "#f6f7f9", "detailBg": "#ffffff",
        "inputBg": "#ffffff", "rowStripe": "#f0f2f5", "rowHover": "#e6eefc",
        "selectedBg": "#dbe7fb", "statusGreen": "#1a7f37", "statusYellow": "#9a6700",
        "statusRed": "#cf222e",
    });
    let dark = json!({
        "accent": "#58a6ff", "accentHover": "#79b8ff", "navBg": "#0d1117", "navBg2": "#161b22",
        "navText": "#e6edf3", "navTextMuted": "#9aa4b0", "background": "#0d1117",
        "text": "#e6edf3", "textMuted": "#9aa4b0", "border": "#30363d", "surface1": "#161b22",
        "surface2": "#1b2129", "surface3": "#21262d", "sectionBg": "#1b2129",
        "cardBg": "#161b22", "contentBg": "#0d1117", "detailBg": "#1b2129",
        "inputBg": "#1b2129", "rowStripe": "#1b2129", "rowHover": "#1f2d44",
        "selectedBg": "#1f2d44", "statusGreen": "#3fb950", "statusYellow": "#d29922",
        "statusRed": "#f85149",
    });
    json!({
        "branding": {
            "siteName": "meshlens",
            "tagline": "MeshCore mesh analyzer",
        },
        "theme": light,
        "themeDark": dark,
        "nodeColors": {
            "repeater": "#1f6feb", "room": "#8250df", "companion": "#1a7f37",
            "sensor": "#bc4c00", "observer": "#6e7781",
        },
        "typeColors": {
            "REQ": "#8250df", "REQUEST": "#8250df", "RESPONSE": "#0969da", "TXT_MSG": "#bf8700",
            "ACK": "#6e7781", "ADVERT": "#1a7f37", "GRP_TXT": "#1f6feb", "GRP_DATA": "#0a3069",
            "ANON_REQ": "#cf222e", "PATH": "#1b7c83", "TRACE": "#bf3989",
            "MULTIPART": "#953800", "CONTROL": "#57606a", "RAW_CUSTOM": "#6e7781",
            "UNKNOWN": "#6e7781",
        },
        "home": {
            "heroTitle": "meshlens",
            "heroSubtitle": "MeshCore mesh analyzer",
            "steps": [],
            "footerLinks": [],
        },
        "markerStroke": {"color": "rgba(255,255,255,0.85)", "width": 1, "opacity": 1},
    })
}

/// `GET /api/config/theme` → CoreScope's `{branding, theme, themeDark, nodeColors,
/// typeColors, home, markerStroke}`: meshlens's palette with the configuration file's
/// sections merged over it key by key (`home` too; `REQUEST` mirrors `REQ`, as CoreScope
/// serves both).
pub async fn theme(State(st): State<Arc<AppState>>) -> Json<Value> {
    let mut v = default_theme();
    for (section, over) in &st.ui.theme {
        if let (Some(base), Some(over)) = (
            v.get_mut(section.as_str()).and_then(Value::as_object_mut),
            over.as_object(),
        ) {
            for (k, x) in over {
                base.insert(k.clone(), x.clone());
            }
        }
    }
    if let Some(req) = v["typeColors"].get("REQ").cloned() {
        v["typeColors"]["REQUEST"] = req;
    }
    Json(v)
}

/// Most observers whose positions make the region centres: far above a deployment's.
const MAX_COORD_OBSERVERS: i64 = 20_000;

/// `GET /api/iata-coords` → CoreScope's `{coords: {IATA: {lat, lon}}}`: for each region code
/// its observers report, the mean position of those observers that advertise one (their own
/// node's position), where meshlens's data says the region is; codes without a located
/// observer are left out (CoreScope's client treats a missing code as unknown). Computed from
/// the observers table (a few hundred rows), no packet is read.
pub async fn iata_coords(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let rows = st
        .db
        .query(|c| {
            let mut stmt = sql(c.prepare_cached(&format!(
                "SELECT upper(trim(ob.iata)), avg(n.lat), avg(n.lon) FROM
                   (SELECT id, iata FROM observers WHERE iata IS NOT NULL AND trim(iata) != ''
                    LIMIT {MAX_COORD_OBSERVERS}) ob
                 JOIN nodes n ON n.public_key = ob.id
                 WHERE n.lat IS NOT NULL AND n.lon IS NOT NULL AND NOT (n.lat = 0 AND n.lon = 0)
                 GROUP BY 1 ORDER BY 1 LIMIT {MAX_REGIONS}"
            )))?;
            sql(stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, f64>(1)?,
                        r.get::<_, f64>(2)?,
                    ))
                })
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))
        })
        .await?;
    let coords: BTreeMap<String, Value> = rows
        .into_iter()
        .filter(|(_, lat, lon)| lat.is_finite() && lon.is_finite())
        .map(|(code, lat, lon)| (code, json!({"lat": lat, "lon": lon})))
        .collect();
    Ok(Json(json!({"coords": coords})))
}
