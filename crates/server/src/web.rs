//! The web UI: static files from `web/`, embedded in release builds (read from disk in debug
//! builds, so the UI can be edited without a rebuild), served with security headers.
//!
//! Every page gets a Content-Security-Policy that forbids inline script and any origin but
//! our own, except the map tile server, which is the one outside fetch (configurable with
//! `--tile-url`). Hashed paths are not used, so files are revalidated by ETag.
//!
//! [`UiConfig`] also carries what the configuration file says about the UI in CoreScope's
//! keys (`mapDefaults`, `areas`, `cacheTTL`, `branding`, `theme`, …), and `/api/config/map`
//! lives here: the map's starting view, configured or fitted to the located nodes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::api::areas::Area;

#[derive(rust_embed::RustEmbed)]
#[folder = "../../web/"]
#[exclude = "tests/*"]
#[exclude = "node_modules/*"]
#[exclude = "*.md"]
struct Assets;

/// Map tiles for the UI (the one outside fetch the UI makes), and the UI settings of the
/// configuration file.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// Leaflet tile URL template, e.g. `https://tile.openstreetmap.org/{z}/{x}/{y}.png`.
    pub tile_url: String,
    /// Attribution shown on the map (text, not markup).
    pub tile_attribution: String,
    /// `mapDefaults.center` (`[lat, lon]`); `None`: the centre of the located nodes.
    pub map_center: Option<[f64; 2]>,
    /// `mapDefaults.zoom`; `None`: fitted to the located nodes.
    pub map_zoom: Option<u8>,
    /// `areas`: named polygons for the `area=` filter.
    pub areas: Vec<Area>,
    /// `cacheTTL`: served as is by `/api/config/cache` (CoreScope's client reads its TTLs).
    pub cache_ttl: Option<Value>,
    /// Overrides of `/api/config/theme` by section (`branding`, `theme`, `themeDark`,
    /// `nodeColors`, `typeColors`, `home`, `markerStroke`).
    pub theme: Map<String, Value>,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            tile_url: "https://tile.openstreetmap.org/{z}/{x}/{y}.png".into(),
            tile_attribution: "© OpenStreetMap contributors".into(),
            map_center: None,
            map_zoom: None,
            areas: Vec::new(),
            cache_ttl: None,
            theme: Map::new(),
        }
    }
}

/// The sections of `/api/config/theme` a configuration file may override.
pub const THEME_SECTIONS: [&str; 7] = [
    "branding",
    "theme",
    "themeDark",
    "nodeColors",
    "typeColors",
    "home",
    "markerStroke",
];

impl UiConfig {
    /// Takes the UI keys of a CoreScope-style configuration object: `mapDefaults`
    /// (`{center: [lat, lon], zoom}`), `areas`, `cacheTTL` and the theme sections. A key
    /// with the wrong shape is an error that names it; unknown keys are left alone.
    pub fn apply_file(&mut self, obj: &Map<String, Value>) -> Result<(), String> {
        if let Some(m) = obj.get("mapDefaults") {
            let m = m.as_object().ok_or("mapDefaults must be an object")?;
            if let Some(c) = m.get("center") {
                let pair = c
                    .as_array()
                    .filter(|a| a.len() == 2)
                    .and_then(|a| Some([a[0].as_f64()?, a[1].as_f64()?]))
                    .filter(|[lat, lon]| {
                        lat.is_finite()
                            && lon.is_finite()
                            && lat.abs() <= 90.0
                            && lon.abs() <= 180.0
                    })
                    .ok_or("mapDefaults.center must be [lat, lon] in degrees")?;
                self.map_center = Some(pair);
            }
            if let Some(z) = m.get("zoom") {
                let z = z
                    .as_u64()
                    .filter(|z| (1..=20).contains(z))
                    .ok_or("mapDefaults.zoom must be an integer from 1 to 20")?;
                self.map_zoom = u8::try_from(z).ok();
            }
        }
        self.areas = crate::api::areas::from_config(obj)?;
        if let Some(c) = obj.get("cacheTTL") {
            if !c.is_object() {
                return Err("cacheTTL must be an object".into());
            }
            self.cache_ttl = Some(c.clone());
        }
        for k in THEME_SECTIONS {
            if let Some(v) = obj.get(k) {
                if !v.is_object() {
                    return Err(format!("{k} must be an object"));
                }
                self.theme.insert(k.to_owned(), v.clone());
            }
        }
        Ok(())
    }

    /// The origin (`scheme://host[:port]`) of the tile URL, for the CSP; `None` when the URL
    /// is relative or malformed (then tiles must come from our own origin).
    fn tile_origin(&self) -> Option<String> {
        let (scheme, rest) = self.tile_url.split_once("://")?;
        if scheme != "https" && scheme != "http" {
            return None;
        }
        let host = rest.split('/').next()?;
        // Template placeholders in the host (`{s}.tile...`) become a wildcard subdomain.
        let host = if let Some(stripped) = host.strip_prefix("{s}.") {
            format!("*.{stripped}")
        } else {
            host.to_owned()
        };
        let ok = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '*'));
        (ok && !host.is_empty()).then(|| format!("{scheme}://{host}"))
    }

    /// The Content-Security-Policy of every UI response.
    pub fn csp(&self) -> String {
        let tiles = self.tile_origin().unwrap_or_default();
        format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: {tiles}; \
             connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'"
        )
    }
}

/// The map's starting view fitted to the located nodes: the median latitude and longitude
/// (a few nodes with bogus positions do not drag it away, as they would a mean) and the
/// largest zoom at which the middle 90 % of them fit a 512-pixel map. No located node: the
/// whole world.
pub fn fit_view(mut lats: Vec<f64>, mut lons: Vec<f64>) -> ([f64; 2], u8) {
    if lats.is_empty() || lats.len() != lons.len() {
        return ([0.0, 0.0], 2);
    }
    lats.sort_by(f64::total_cmp);
    lons.sort_by(f64::total_cmp);
    let at = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    let centre = [at(&lats, 0.5), at(&lons, 0.5)];
    let span = (at(&lats, 0.95) - at(&lats, 0.05)).max(at(&lons, 0.95) - at(&lons, 0.05));
    // A 256-pixel tile covers 360° at zoom 0; two of them across.
    let zoom = if span <= 0.0 {
        12.0
    } else {
        (720.0 / span).log2().floor()
    };
    (centre, zoom.clamp(2.0, 15.0) as u8)
}

/// How long a fitted view is reused: the map needs no fresher starting point.
const VIEW_FRESH: std::time::Duration = std::time::Duration::from_secs(60);

/// `GET /api/config/map` → CoreScope's `{center: [lat, lon], zoom}` (from `mapDefaults`, else
/// fitted to the located nodes by [`fit_view`]), and meshlens's `tileUrl` and `attribution`.
pub async fn map_config(
    State(st): State<Arc<AppState>>,
) -> crate::error::ApiResult<axum::Json<Value>> {
    let (center, zoom) = match (st.ui.map_center, st.ui.map_zoom) {
        (Some(c), Some(z)) => (c, z),
        (c, z) => {
            let cached = st
                .map_view
                .lock()
                .ok()
                .and_then(|v| v.filter(|(at, _, _)| at.elapsed() < VIEW_FRESH));
            let (fc, fz) = match cached {
                Some((_, c, z)) => (c, z),
                None => {
                    let (lats, lons) = st
                        .db
                        .query(|c| {
                            // Bounded by the number of nodes, not by traffic; once a minute.
                            let mut stmt = crate::db::sql(c.prepare_cached(
                                "SELECT lat, lon FROM nodes WHERE lat IS NOT NULL AND lon IS NOT NULL
                                 AND NOT (lat = 0 AND lon = 0) AND abs(lat) <= 90 AND abs(lon) <= 180",
                            ))?;
                            let rows = crate::db::sql(stmt.query_map([], |r| {
                                Ok((r.get::<_, f64>(0)?, r.get::<_, f64>(1)?))
                            }))?;
                            let (mut lats, mut lons) = (Vec::new(), Vec::new());
                            for r in rows {
                                let (a, o) = crate::db::sql(r)?;
                                lats.push(a);
                                lons.push(o);
                            }
                            Ok((lats, lons))
                        })
                        .await?;
                    let (c, z) = fit_view(lats, lons);
                    if let Ok(mut v) = st.map_view.lock() {
                        *v = Some((std::time::Instant::now(), c, z));
                    }
                    (c, z)
                }
            };
            (c.unwrap_or(fc), z.unwrap_or(fz))
        }
    };
    Ok(axum::Json(json!({
        "center": center,
        "zoom": zoom,
        "tileUrl": st.ui.tile_url,
        "attribution": st.ui.tile_attribution,
    })))
}

/// Serves `/` and every static file of the UI; unknown `/api/...` paths are left to the
/// API's 404.
pub async fn asset(State(st): State<Arc<AppState>>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.starts_with("api/") || path == "api" {
        return crate::error::ApiError::NotFound("no such endpoint".into()).into_response();
    }
    let path = if path.is_empty() { "index.html" } else { path };
    let Some(file) = Assets::get(path) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "not found",
        )
            .into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..12]));
    let mut res = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mime = file.metadata.mimetype();
        let mime = if mime.starts_with("text/") || mime.ends_with("javascript") {
            format!("{mime}; charset=utf-8")
        } else {
            mime.to_owned()
        };
        let mut r = file.data.into_owned().into_response();
        if let Ok(v) = HeaderValue::from_str(&mime) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&st.ui.csp()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_names_tile_origin_and_forbids_inline_script() {
        let ui = UiConfig::default();
        let csp = ui.csp();
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("https://tile.openstreetmap.org"), "{csp}");
        let sub = UiConfig {
            tile_url: "https://{s}.basemaps.example.com/{z}/{x}/{y}.png".into(),
            ..UiConfig::default()
        };
        assert!(sub.csp().contains("https://*.basemaps.example.com;"));
        let hostile = UiConfig {
            tile_url: "https://x.com; script-src *;/{z}".into(),
            ..UiConfig::default()
        };
        assert!(!hostile.csp().contains("script-src *"), "{}", hostile.csp());
        let relative = UiConfig {
            tile_url: "/tiles/{z}/{x}/{y}.png".into(),
            ..UiConfig::default()
        };
        assert!(relative.csp().contains("img-src 'self' data: ;"));
    }

    #[test]
    fn index_is_embedded() {
        let f = Assets::get("index.html").expect("web/index.html");
        let text = String::from_utf8_lossy(&f.data);
        assert!(text.contains("<script"), "index.html loads a script");
        assert!(
            !text.contains("onclick=") && !text.contains("<script>"),
            "no inline script in index.html"
        );
    }
}
