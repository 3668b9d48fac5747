//! meshlens' reader role: it opens the database read-only, answers the HTTP API and pushes
//! new observations to WebSocket clients. It never writes the database (a test fails if write
//! SQL appears in this crate).
//!
//! - [`db`]: a bounded pool of read-only connections with a per-query deadline.
//! - [`api`]: the endpoints, CoreScope's paths and top-level shapes.
//! - [`live`]: commit tailer and `/ws`.
//! - [`web`]: the embedded web UI and its security headers.

pub mod api;
pub mod capability;
pub mod db;
pub mod error;
pub mod live;
pub mod single_flight;
pub mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::{get, post};
use meshcore::report::DecodeOptions;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::db::Db;

/// Where the writer's counters and source states come from.
pub trait IngestStatus: Send + Sync + 'static {
    /// A JSON object with at least `state`; `None` when nothing is known.
    fn snapshot(&self) -> Option<Value>;
}

/// The writer's status file (`<data-dir>/ingest-status.json`), for a reader in another
/// process. Older than 5 s means the writer is not running (or stalled).
pub struct StatusFile(pub PathBuf);

impl IngestStatus for StatusFile {
    fn snapshot(&self) -> Option<Value> {
        let text = std::fs::read(&self.0).ok()?;
        if text.len() > 1 << 20 {
            return None;
        }
        let mut v: Value = serde_json::from_slice(&text).ok()?;
        let written = v.get("written_at").and_then(Value::as_i64).unwrap_or(0);
        let age = now_ms() - written;
        v["state"] = if age <= 5_000 { "running" } else { "stale" }.into();
        v["age_secs"] = (age / 1000).into();
        Some(v)
    }
}

/// What the reader needs.
#[derive(Clone)]
pub struct ServerConfig {
    /// `<data-dir>/meshlens.db`.
    pub db_path: PathBuf,
    /// Keys and regions for decoding stored frames.
    pub decode: DecodeOptions,
    /// Origins (besides the server's own) allowed to open `/ws`; `*` allows any.
    pub allowed_origins: Vec<String>,
    /// The writer's status.
    pub ingest: Option<Arc<dyn IngestStatus>>,
    /// Read connections.
    pub pool_size: usize,
    /// How long one query may run before it is interrupted (an error answer, 503).
    pub query_deadline: Duration,
    /// The capability cycle.
    pub capability: capability::CycleConfig,
    /// The web UI's map tiles.
    pub ui: web::UiConfig,
}

/// Shared state of the handlers.
pub struct AppState {
    db: Arc<Db>,
    decode: DecodeOptions,
    /// The same keys, without signature checks (stored adverts use [`SignatureCache`]).
    decode_no_verify: DecodeOptions,
    signatures: SignatureCache,
    /// Bumped by the live tailer whenever the writer commits; caches of aggregates are
    /// valid for one generation, so they never serve data older than the last commit.
    generation: Arc<AtomicU64>,
    allowed_origins: Vec<String>,
    ingest: Option<Arc<dyn IngestStatus>>,
    live: broadcast::Sender<Arc<str>>,
    started: Instant,
    ws_clients: AtomicUsize,
    live_sent: AtomicU64,
    stats_cache: tokio::sync::Mutex<Option<(u64, Value)>>,
    /// `count(*)` of all transmissions, for one commit generation.
    packets_total: std::sync::Mutex<Option<(u64, i64)>>,
    capability: Arc<capability::CapState>,
    channels_cache: tokio::sync::Mutex<Option<(u64, Value)>>,
    ui: web::UiConfig,
    /// `/api/stats/traffic` answers by window (ms), for a few seconds.
    traffic_cache: std::sync::Mutex<std::collections::HashMap<i64, (Instant, Value)>>,
    hash_sizes_cache: api::analytics::HashSizesCache,
    message_counts: api::channels::MessageCounts,
    /// Observations per observer in the last hour, for a few seconds.
    observers_hour: std::sync::Mutex<Option<(Instant, Arc<HourCounts>)>>,
    /// Whether a background refresh of `observers_hour` is running.
    observers_refreshing: AtomicBool,
}

/// Observations per observer index in the last hour.
pub type HourCounts = std::collections::HashMap<i64, i64>;

/// Advert signature results by packet hash. Bounded: cleared when full.
#[derive(Default)]
pub struct SignatureCache {
    map: std::sync::Mutex<std::collections::HashMap<String, bool>>,
}

impl SignatureCache {
    const CAPACITY: usize = 65_536;

    /// Whether the advert in `raw` (packet `hash`) has a valid signature.
    pub fn verify(&self, hash: &str, raw: &[u8]) -> bool {
        if let Some(v) = self.map.lock().ok().and_then(|m| m.get(hash).copied()) {
            return v;
        }
        let valid = meshcore::Packet::decode(raw)
            .ok()
            .and_then(|p| match p.payload() {
                Ok(meshcore::Payload::Advert(a)) => Some(a.verify_signature()),
                _ => None,
            })
            .unwrap_or(false);
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= Self::CAPACITY {
                m.clear();
            }
            m.insert(hash.to_owned(), valid);
        }
        valid
    }
}

/// The decode report of a frame as the API shows it: everything `meshlens decode` prints
/// except `channel_key`. A channel configured on the server (a private PSK) must not be handed
/// to every visitor, and replaying a captured frame to `POST /api/decode` would otherwise
/// reveal it.
pub fn decode_for_api(raw: &[u8], opts: &DecodeOptions) -> Value {
    let mut v = meshcore::report::decode_to_json(raw, opts);
    if let Some(o) = v.as_object_mut() {
        o.remove("channel_key");
    }
    v
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The OpenAPI description of every route.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Builds the router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/packets", get(api::packets::list))
        .route(
            "/api/packets/observations",
            post(api::packets::batch_observations),
        )
        .route("/api/packets/{id}", get(api::packets::detail))
        .route("/api/decode", post(api::packets::decode))
        .route("/api/nodes", get(api::nodes::list))
        .route("/api/nodes/search", get(api::nodes::search))
        .route("/api/nodes/{pubkey}", get(api::nodes::detail))
        .route("/api/nodes/{pubkey}/health", get(api::node_health::health))
        .route("/api/nodes/{pubkey}/paths", get(api::node_health::paths))
        .route("/api/observers", get(api::observers::list))
        .route("/api/observers/{id}", get(api::observers::detail))
        .route("/api/channels", get(api::channels::list))
        .route(
            "/api/channels/{hash}/messages",
            get(api::channels::messages),
        )
        .route("/api/analytics/hash-sizes", get(api::analytics::hash_sizes))
        .route(
            "/api/analytics/hash-collisions",
            get(api::collisions::hash_collisions),
        )
        .route("/api/stats", get(api::status::stats))
        .route("/api/stats/traffic", get(api::status::traffic))
        .route("/api/health", get(api::status::health))
        .route("/api/healthz", get(api::status::healthz))
        .route("/api/openapi.json", get(openapi))
        .route("/api/spec", get(openapi))
        .route("/api/config/map", get(web::map_config))
        .route("/api/config/client", get(api::config::client))
        .route("/api/config/regions", get(api::config::regions))
        .route("/metrics", get(api::status::metrics))
        .route("/ws", get(live::ws))
        .fallback(web::asset)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(single_flight::InFlight::default()),
            single_flight::single_flight,
        ))
        .layer(axum::middleware::map_response(no_store))
        // gzip for clients that ask (JSON and the UI); the WebSocket upgrade has no body.
        .layer(
            tower_http::compression::CompressionLayer::new()
                .gzip(true)
                .quality(tower_http::CompressionLevel::Fastest),
        )
        .with_state(state)
}

async fn openapi() -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// API answers are live data: never cached by browsers or CDNs. (UI files set their own
/// revalidation policy.)
async fn no_store(mut res: axum::response::Response) -> axum::response::Response {
    res.headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

/// A running reader.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    tailer: Option<std::thread::JoinHandle<()>>,
    cap_thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Opens the database read-only and starts serving on `listener`. Ready at once: nothing
    /// is loaded into memory first.
    pub fn start(cfg: ServerConfig, listener: tokio::net::TcpListener) -> Result<Server, String> {
        let db = Db::open(&cfg.db_path, cfg.pool_size, cfg.query_deadline)
            .map_err(|e| format!("{}: {e}", cfg.db_path.display()))?;
        let (live, _) = broadcast::channel(live::CLIENT_BUFFER);
        let stop = Arc::new(AtomicBool::new(false));
        // The persisted capability is loaded before the first request is served.
        let cap_state = Arc::new(capability::CapState::default());
        let cap_thread = capability::start(
            cfg.db_path.clone(),
            cfg.capability.clone(),
            cap_state.clone(),
            stop.clone(),
        )?;
        let generation = Arc::new(AtomicU64::new(0));
        let tailer = live::spawn_tailer(
            cfg.db_path.clone(),
            cfg.decode.clone(),
            live.clone(),
            generation.clone(),
            stop.clone(),
        )
        .map_err(|e| e.to_string())?;
        let state = Arc::new(AppState {
            db,
            decode_no_verify: DecodeOptions {
                verify_signatures: false,
                ..cfg.decode.clone()
            },
            decode: cfg.decode,
            signatures: SignatureCache::default(),
            generation,
            allowed_origins: cfg.allowed_origins,
            ingest: cfg.ingest,
            live,
            started: Instant::now(),
            ws_clients: AtomicUsize::new(0),
            live_sent: AtomicU64::new(0),
            stats_cache: tokio::sync::Mutex::new(None),
            packets_total: std::sync::Mutex::new(None),
            channels_cache: tokio::sync::Mutex::new(None),
            capability: cap_state,
            ui: cfg.ui,
            traffic_cache: Default::default(),
            observers_hour: Default::default(),
            observers_refreshing: AtomicBool::new(false),
            hash_sizes_cache: Default::default(),
            message_counts: Default::default(),
        });
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (shutdown, mut rx) = tokio::sync::watch::channel(false);
        tokio::spawn(api::observers::warm(state.clone()));
        let app = router(state);
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.changed().await;
            });
            if let Err(e) = serve.await {
                tracing::error!("HTTP server stopped: {e}");
            }
        });
        Ok(Server {
            addr,
            stop,
            shutdown,
            task,
            tailer: Some(tailer),
            cap_thread: Some(cap_thread),
        })
    }

    /// Stops accepting, lets requests finish (bounded), stops the tailer.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(3), &mut self.task).await;
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in [self.tailer.take(), self.cap_thread.take()]
            .into_iter()
            .flatten()
        {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}
