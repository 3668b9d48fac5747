//! The web UI: static files from `web/`, embedded in release builds (read from disk in debug
//! builds, so the UI can be edited without a rebuild), served with security headers.
//!
//! Every page gets a Content-Security-Policy that forbids inline script and any origin but
//! our own, except the map tile server, which is the one outside fetch (configurable with
//! `--tile-url`). Hashed paths are not used, so files are revalidated by ETag.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;

#[derive(rust_embed::RustEmbed)]
#[folder = "../../web/"]
#[exclude = "tests/*"]
#[exclude = "node_modules/*"]
#[exclude = "*.md"]
struct Assets;

/// Map tiles for the UI: the one outside fetch the UI makes.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// Leaflet tile URL template, e.g. `https://tile.openstreetmap.org/{z}/{x}/{y}.png`.
    pub tile_url: String,
    /// Attribution shown on the map (text, not markup).
    pub tile_attribution: String,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            tile_url: "https://tile.openstreetmap.org/{z}/{x}/{y}.png".into(),
            tile_attribution: "© OpenStreetMap contributors".into(),
        }
    }
}

impl UiConfig {
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

/// `GET /api/config/map`: what the map needs to fetch tiles.
pub async fn map_config(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(json!({
        "tileUrl": st.ui.tile_url,
        "attribution": st.ui.tile_attribution,
    }))
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
