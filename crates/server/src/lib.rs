//! meshlens' reader role: it opens the database read-only, answers the HTTP API and pushes
//! new observations to WebSocket clients. It never writes the database (a test fails if write
//! SQL appears in this crate).
//!
//! - [`db`]: bounded pools of read-only connections (a main lane and a cheap lane) with a
//!   per-query deadline and a bounded wait.
//! - [`api`]: the endpoints, CoreScope's paths and top-level shapes.
//! - [`live`]: commit tailer and `/ws`.
//! - [`web`]: the embedded web UI and its security headers.
//! - [`http`]: what stands between the network and the handlers: the accept loop with its
//!   connection caps and timeouts, the `Host` check, bounded request bodies, and the
//!   per-client budget of expensive requests.

pub mod api;
pub mod budget;
pub mod capability;
pub mod db;
pub mod error;
pub mod live;
pub mod single_flight;
pub mod topology;
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
    /// Host names the server answers for besides IP literals, single-label names and
    /// `*.localhost` (`*.example.org` for every name under one; `*` for any). Empty on a
    /// non-loopback listener turns the check off (logged): see [`http`].
    pub allowed_hosts: Vec<String>,
    /// Timeouts, connection caps and budgets of the HTTP side.
    pub limits: http::HttpLimits,
    /// The admin API key (`X-API-Key`) for backup, injection and the geo filter; `None`
    /// turns those routes off (403). Checked for strength by the CLI.
    pub admin_key: Option<String>,
    /// Alerting (rules, receivers, state file); `None`: off.
    pub alerts: Option<alerts::Settings>,
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
    /// `/api/nodes`' unfiltered total and its role `counts`, for one commit generation.
    nodes_counts: std::sync::Mutex<Option<(u64, (i64, Value))>>,
    /// The fixed parts of packet objects, as JSON bytes, by transmission.
    frame_json: api::packet_json::FrameJsonCache,
    /// The frame-derived part of channel messages, by transmission.
    message_cache: api::packet_json::FrameCache<Box<[u8]>>,
    capability: Arc<capability::CapState>,
    channels_cache: tokio::sync::Mutex<Option<(u64, Value)>>,
    ui: web::UiConfig,
    /// `/api/stats/traffic` answers by window (ms), for a few seconds.
    traffic_cache: std::sync::Mutex<std::collections::HashMap<i64, (Instant, Value)>>,
    hash_sizes_cache: api::analytics::HashSizesCache,
    message_counts: api::channels::MessageCounts,
    /// Answers of the heavier RF, history and clock analytics, for a few seconds.
    analytics_answers: api::rf::AnswerCache,
    /// One background recomputation of a stale analytics answer at a time (see
    /// [`api::rf::cached`]).
    analytics_refresh: Arc<tokio::sync::Semaphore>,
    /// Observations per observer in the last hour, for a few seconds.
    observers_hour: std::sync::Mutex<Option<(Instant, Arc<HourCounts>)>>,
    /// Whether a background refresh of `observers_hour` is running.
    observers_refreshing: AtomicBool,
    /// Held while `observers_hour` is counted with no usable answer, so requests arriving
    /// together wait for one count instead of each running its own.
    observers_counting: tokio::sync::Mutex<()>,
    /// The HTTP side's limits, host check, budgets and counters.
    http: http::Guards,
    /// See [`ServerConfig::admin_key`].
    admin_key: Option<String>,
    /// Requests refused for a wrong or missing admin key.
    admin_refused: AtomicU64,
    /// Whether a `/api/backup` is being made or streamed (one at a time).
    backup_running: AtomicBool,
    /// The running alerting, if configured.
    alerting: Option<alerts::Alerting>,
    /// The newest observation, kept by the live tailer (`/api/healthz` from memory).
    newest: Arc<live::Newest>,
    /// Per-route latency and the runtime's lag (`/api/perf`, `/api/health`).
    perf: api::perf::Recorder,
    /// The previous `/proc/self/io` reading, for `/api/perf/io` rates.
    perf_io: std::sync::Mutex<api::perf::IoSample>,
    /// Stats cache hits and misses (`/api/perf`, `/api/health`).
    stats_hits: AtomicU64,
    stats_misses: AtomicU64,
    /// Packets of the last hour and day and signature refusals, with when they were counted.
    stats_windows: std::sync::Mutex<Option<(Instant, [i64; 3])>>,
    /// The map view fitted to the located nodes, with when (`/api/config/map`).
    map_view: std::sync::Mutex<Option<(Instant, [f64; 2], u8)>>,
}

impl AppState {
    /// The HTTP side's counters (connections open and refused, timeouts, budget and pool
    /// refusals), for health and metrics.
    pub fn http_counters(&self) -> Value {
        self.http.to_json(self.db.busy_count())
    }
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

/// Builds the router. Outermost first: security headers on every answer, gzip, the `Host`
/// check, bounded request bodies, single-flight, then the lane and per-client budget of each
/// request.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/api/packets",
            get(api::packets::list).post(api::admin::post_packet),
        )
        .route(
            "/api/packets/observations",
            post(api::packets::batch_observations),
        )
        .route("/api/packets/timestamps", get(api::packets::timestamps))
        .route("/api/packets/{id}", get(api::packets::detail))
        .route("/api/decode", post(api::packets::decode))
        .route("/api/nodes", get(api::nodes::list))
        .route("/api/nodes/search", get(api::nodes::search))
        .route("/api/nodes/bulk-health", get(api::fleet::bulk_health))
        .route("/api/nodes/network-status", get(api::fleet::network_status))
        .route("/api/nodes/resolve", get(api::fleet::resolve))
        .route("/api/nodes/{pubkey}", get(api::nodes::detail))
        .route("/api/nodes/{pubkey}/health", get(api::node_health::health))
        .route("/api/nodes/{pubkey}/paths", get(api::node_health::paths))
        .route(
            "/api/nodes/{pubkey}/neighbors",
            get(api::neighbors::neighbors),
        )
        .route("/api/nodes/{pubkey}/reach", get(api::neighbors::reach))
        .route("/api/analytics/neighbor-graph", get(api::neighbors::graph))
        .route("/api/debug/affinity", get(api::neighbors::affinity))
        .route("/api/analytics/topology", get(api::paths::topology))
        .route("/api/analytics/distance", get(api::paths::distance))
        .route("/api/analytics/subpaths", get(api::paths::subpaths))
        .route(
            "/api/analytics/subpaths-bulk",
            get(api::paths::subpaths_bulk),
        )
        .route(
            "/api/analytics/subpath-detail",
            get(api::paths::subpath_detail),
        )
        .route("/api/resolve-hops", get(api::inspect::resolve_hops))
        .route("/api/traces/{hash}", get(api::inspect::traces))
        .route("/api/paths/inspect", post(api::inspect::inspect))
        .route("/api/observers", get(api::observers::list))
        .route("/api/observers/{id}", get(api::observers::detail))
        // Fixed segments win over `{id}` in the router, whatever the order.
        .route(
            "/api/observers/metrics/summary",
            get(api::observer_metrics::summary),
        )
        .route(
            "/api/observers/{id}/metrics",
            get(api::observer_metrics::metrics),
        )
        .route(
            "/api/observers/{id}/analytics",
            get(api::observer_metrics::analytics),
        )
        .route("/api/observers/clock-skew", get(api::clock_skew::observers))
        .route("/api/nodes/clock-skew", get(api::clock_skew::fleet))
        .route("/api/nodes/{pubkey}/clock-skew", get(api::clock_skew::node))
        .route("/api/channels", get(api::channels::list))
        .route(
            "/api/channels/{hash}/messages",
            get(api::channels::messages),
        )
        .route("/api/analytics/hash-sizes", get(api::analytics::hash_sizes))
        .route("/api/analytics/rf", get(api::rf::rf))
        .route(
            "/api/analytics/relay-airtime-share",
            get(api::rf::relay_airtime_share),
        )
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
        .route(
            "/api/config/geo-filter",
            get(api::admin::get_geo_filter).put(api::admin::put_geo_filter),
        )
        .route("/api/backup", get(api::admin::backup))
        .route("/api/alerts", get(api::alerts::list))
        .route("/api/analytics/roles", get(api::roles::roles))
        .route("/api/audio-lab/buckets", get(api::audio_lab::buckets))
        .route("/api/analytics/channels", get(api::channel_stats::channels))
        .route("/api/scope-stats", get(api::scopes::scope_stats))
        .route("/api/nodes/{pubkey}/battery", get(api::battery::battery))
        .route(
            "/api/nodes/{pubkey}/analytics",
            get(api::node_analytics::analytics),
        )
        .route(
            "/api/nodes/{pubkey}/rx-coverage",
            get(api::coverage::node_rx_coverage),
        )
        .route("/api/rx-coverage", get(api::coverage::rx_coverage))
        .route("/api/rx-leaderboard", get(api::coverage::rx_leaderboard))
        // CoreScope serves an interactive reference here; meshlens's is a page of its UI.
        .route(
            "/api/docs",
            get(|| async { axum::response::Redirect::temporary("/#/api-docs") }),
        )
        .route(
            "/api/admin/prune-geo-filter",
            post(api::admin::prune_geo_filter),
        )
        .route(
            "/api/admin/prune-geo-filter/status",
            get(api::admin::prune_status),
        )
        .route("/api/config/theme", get(api::config::theme))
        .route("/api/config/cache", get(api::config::cache))
        .route("/api/config/areas", get(api::areas::list))
        .route("/api/config/areas/polygons", get(api::areas::polygons))
        .route("/api/iata-coords", get(api::config::iata_coords))
        .route("/api/perf", get(api::perf::perf))
        .route("/api/perf/io", get(api::perf::io))
        .route("/api/perf/sqlite", get(api::perf::sqlite))
        .route("/api/perf/write-sources", get(api::perf::write_sources))
        .route("/api/perf/reset", post(api::perf::reset))
        .route("/api/mqtt/status", get(api::perf::mqtt_status))
        .route("/api/dropped-packets", get(api::perf::dropped))
        .route("/metrics", get(api::status::metrics))
        .route("/ws", get(live::ws))
        .route("/api/known-channels", get(api::channels::known))
        // On the routes only, so the route pattern is known (and unknown paths are not kept).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::perf::record,
        ))
        // CoreScope's web app opens its WebSocket at "/": any path that is not a route
        // upgrades when asked to, the others are the UI's files.
        .fallback(live::ws_or_asset)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::lanes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(single_flight::InFlight::default()),
            single_flight::single_flight,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::bounded_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::check_host,
        ))
        // gzip for clients that ask (JSON and the UI); the WebSocket upgrade has no body.
        .layer(
            tower_http::compression::CompressionLayer::new()
                .gzip(true)
                .quality(tower_http::CompressionLevel::Fastest),
        )
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn openapi() -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Headers of every answer, errors and refusals included. API answers are live data: never
/// cached by browsers or CDNs (UI files set their own revalidation policy). `nosniff`: a
/// browser must take JSON for JSON, never for script or markup, even where the data holds
/// text from the mesh.
async fn security_headers(mut res: axum::response::Response) -> axum::response::Response {
    let h = res.headers_mut();
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
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
    state: Arc<AppState>,
}

impl Server {
    /// Opens the database read-only and starts serving on `listener`. Ready at once: nothing
    /// is loaded into memory first.
    pub fn start(cfg: ServerConfig, listener: tokio::net::TcpListener) -> Result<Server, String> {
        let db = Db::open_with(
            &cfg.db_path,
            &db::PoolConfig {
                size: cfg.pool_size,
                cheap_size: cfg.limits.cheap_pool_size,
                deadline: cfg.query_deadline,
                wait: cfg.limits.pool_wait,
            },
        )
        .map_err(|e| format!("{}: {e}", cfg.db_path.display()))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let guards = http::Guards::new(&cfg.limits, &cfg.allowed_hosts, addr);
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
        let newest = Arc::new(live::Newest::default());
        let tailer = live::spawn_tailer(
            cfg.db_path.clone(),
            cfg.decode.clone(),
            live.clone(),
            generation.clone(),
            newest.clone(),
            stop.clone(),
            cap_state.clone(),
        )
        .map_err(|e| e.to_string())?;
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let alerting = cfg.alerts.map(|settings| {
            let source = Arc::new(
                api::alerts::DbSource::new(cfg.db_path.clone()).with_topology(cap_state.clone()),
            );
            alerts::Alerting::start(settings, source, rx.clone())
        });
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
            nodes_counts: std::sync::Mutex::new(None),
            frame_json: Default::default(),
            message_cache: Default::default(),
            channels_cache: tokio::sync::Mutex::new(None),
            capability: cap_state,
            ui: cfg.ui,
            traffic_cache: Default::default(),
            observers_hour: Default::default(),
            observers_refreshing: AtomicBool::new(false),
            observers_counting: tokio::sync::Mutex::new(()),
            hash_sizes_cache: Default::default(),
            message_counts: Default::default(),
            analytics_answers: Default::default(),
            analytics_refresh: Arc::new(tokio::sync::Semaphore::new(1)),
            http: guards,
            admin_key: cfg.admin_key,
            admin_refused: AtomicU64::new(0),
            backup_running: AtomicBool::new(false),
            alerting,
            newest,
            perf: Default::default(),
            perf_io: Default::default(),
            stats_hits: AtomicU64::new(0),
            stats_misses: AtomicU64::new(0),
            stats_windows: Default::default(),
            map_view: Default::default(),
        });
        api::perf::spawn_lag_probe(&state);
        tokio::spawn(api::observers::warm(state.clone()));
        let app = router(state.clone());
        let task = tokio::spawn(http::serve(listener, app, state.clone(), rx));
        Ok(Server {
            addr,
            stop,
            shutdown,
            task,
            tailer: Some(tailer),
            cap_thread: Some(cap_thread),
            state,
        })
    }

    /// The HTTP side's counters (see [`AppState::http_counters`]).
    pub fn http_counters(&self) -> Value {
        self.state.http_counters()
    }

    /// Database queries run so far (what a route costs, for tests).
    pub fn db_queries(&self) -> u64 {
        self.state.db.query_count()
    }

    /// Stops accepting, lets requests finish (bounded), stops the tailer.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if tokio::time::timeout(Duration::from_secs(3), &mut self.task)
            .await
            .is_err()
        {
            // Connections that would not finish in time are cut: aborting the accept loop
            // drops every connection task it holds.
            self.task.abort();
        }
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in [self.tailer.take(), self.cap_thread.take()]
            .into_iter()
            .flatten()
        {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

pub mod http {
    //! What stands between the network and the handlers.
    //!
    //! - The accept loop serves each connection with hyper's HTTP/1 server: a deadline for a
    //!   complete request head ([`HttpLimits::header_timeout`]; hyper runs it whenever a
    //!   connection waits for a head, so it also bounds a kept-alive connection between
    //!   requests), and an idle timeout of its own. Without them a socket that sends half a
    //!   header stays open forever, and about 20,000 of them exhausted the descriptors.
    //! - Connections are capped in all and per client address (an IPv6 /64 counts as one
    //!   address), under one lock so the check cannot be raced. The default total is half the
    //!   process's descriptor limit (at most 1,024), leaving the rest to the MQTT listener, the
    //!   database and the writer. A connection over a cap is accepted and closed at once (after
    //!   a best-effort `503` that costs no wait), so it neither lingers in the backlog nor
    //!   holds a descriptor, and it is counted. An upgraded WebSocket keeps its slot: the
    //!   permit travels with the socket.
    //! - The `Host` check ([`check_host`]) against DNS rebinding: a request is answered if its
    //!   host is an IP literal, a single-label name (`localhost`, `meshbox`), a name under
    //!   `.localhost`, or a configured name; a rebinding page's host is the attacker's public
    //!   DNS name, which is none of these. With no name configured on a non-loopback listener
    //!   the check is off (and a warning logged), since the names it is reached by are unknown.
    //! - Request bodies are read in full before a handler runs, within a deadline and a size
    //!   bound ([`bounded_body`]).
    //! - Each API request runs in a database lane ([`lanes`]): cheap routes on their own
    //!   connections, the rest on the main pool, with a budget of concurrent expensive
    //!   requests per client address (more wait briefly, then 429).

    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    use axum::Router;
    use axum::body::{Body, HttpBody};
    use axum::extract::{ConnectInfo, Request, State};
    use axum::http::header;
    use axum::middleware::Next;
    use axum::response::{IntoResponse, Response};
    use hyper_util::rt::{TokioIo, TokioTimer};
    use serde_json::{Value, json};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::TcpStream;
    use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

    use crate::AppState;
    use crate::db::{self, Lane};
    use crate::error::ApiError;

    /// Largest request head (request line and headers) read into memory. hyper's default is
    /// about 400 KiB per connection; real heads are a few KiB, and a thousand connections
    /// each holding 400 KiB would be 400 MiB.
    const MAX_HEAD: usize = 64 * 1024;

    /// Bounds of the HTTP side. `0` for a count means no limit.
    #[derive(Debug, Clone)]
    pub struct HttpLimits {
        /// How long a connection waiting for a request head (a new one, or a kept-alive one
        /// between requests) may take to complete it; then it is closed.
        pub header_timeout: Duration,
        /// How long a request body may take to arrive in full; then 408.
        pub body_timeout: Duration,
        /// How long a kept-alive connection may go without a request before it is closed.
        /// (The header timeout runs too while a connection waits, so the shorter applies.)
        pub idle_timeout: Duration,
        /// Largest request body read; 413 beyond (each route has its own smaller bound).
        pub max_body: usize,
        /// Open HTTP connections (upgraded WebSockets included) in all.
        pub max_connections: usize,
        /// Open HTTP connections from one client address.
        pub max_connections_per_address: usize,
        /// Expensive requests one client address may have computing at once; more wait (at
        /// most `pool_wait`), then 429.
        pub heavy_per_address: usize,
        /// Database connections of the cheap lane.
        pub cheap_pool_size: usize,
        /// How long a request may wait for a database connection; then 503 with
        /// `Retry-After`.
        pub pool_wait: Duration,
        /// Bytes one large answer (a page of packets) may hold; past it the rows stop and
        /// the answer says `truncated` with `nextOffset` ([`crate::budget`]).
        pub answer_bytes: usize,
        /// Bytes all large answers being built or sent may hold at once; then requests wait
        /// (at most `pool_wait`) and get 503.
        pub large_answers_bytes: usize,
    }

    impl Default for HttpLimits {
        fn default() -> Self {
            HttpLimits {
                header_timeout: Duration::from_secs(10),
                body_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(5),
                max_body: 256 * 1024,
                max_connections: default_max_connections(),
                max_connections_per_address: 64,
                heavy_per_address: 8,
                cheap_pool_size: 2,
                pool_wait: db::POOL_WAIT,
                answer_bytes: 4 << 20,
                large_answers_bytes: 32 << 20,
            }
        }
    }

    /// The soft limit on open files of this process (`/proc/self/limits`; `None` when unknown
    /// or unlimited).
    pub fn open_files_limit() -> Option<u64> {
        let text = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        line.get("Max open files".len()..)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Half the descriptor budget, between 16 and 1,024: the other half stays for the MQTT
    /// listener and its observers, the database files and the writer.
    pub fn default_max_connections() -> usize {
        open_files_limit().map_or(1024, |n| {
            usize::try_from(n / 2).unwrap_or(usize::MAX).clamp(16, 1024)
        })
    }

    /// What limits are counted per: the IPv4 address, or the /64 of an IPv6 one (a single
    /// host is routinely given a whole /64).
    pub fn client_key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
        }
    }

    /// A mutex whose holder panicked is still consistent here (counters only): recover it
    /// rather than fail every later request.
    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs at most once per interval (a flood must not become a flood of log lines).
    #[derive(Default)]
    struct Throttle(Mutex<Option<Instant>>);

    impl Throttle {
        fn ready(&self) -> bool {
            let mut last = lock(&self.0);
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
                return false;
            }
            *last = Some(Instant::now());
            true
        }
    }

    /// Counters of the HTTP side.
    #[derive(Default)]
    pub struct HttpCounters {
        accepted: AtomicU64,
        refused_total: AtomicU64,
        refused_address: AtomicU64,
        accept_errors: AtomicU64,
        header_timeouts: AtomicU64,
        idle_closed: AtomicU64,
        body_timeouts: AtomicU64,
        body_too_large: AtomicU64,
        over_budget: AtomicU64,
        hosts_refused: AtomicU64,
        log: Throttle,
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Open connections, in all and per client address.
    struct Conns {
        max: usize,
        per: usize,
        open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    }

    /// Why a connection was refused.
    enum Full {
        Total,
        Address,
    }

    impl Conns {
        /// A slot for a connection from `ip`, or which cap is full. Checked and taken under
        /// one lock, so concurrent accepts cannot overshoot.
        fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Full> {
            let key = client_key(ip);
            let mut open = lock(&self.open);
            if self.max > 0 && open.0 >= self.max {
                return Err(Full::Total);
            }
            let n = open.1.get(&key).copied().unwrap_or(0);
            if self.per > 0 && n >= self.per {
                return Err(Full::Address);
            }
            open.0 += 1;
            open.1.insert(key, n + 1);
            Ok(ConnPermit {
                conns: self.clone(),
                key,
            })
        }

        fn open(&self) -> usize {
            lock(&self.open).0
        }
    }

    /// A connection's slot, given back when the socket closes.
    struct ConnPermit {
        conns: Arc<Conns>,
        key: IpAddr,
    }

    impl Drop for ConnPermit {
        fn drop(&mut self) {
            let mut open = lock(&self.conns.open);
            open.0 = open.0.saturating_sub(1);
            if let Some(n) = open.1.get_mut(&self.key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.1.remove(&self.key);
                }
            }
        }
    }

    /// A socket with its slot: the slot is held as long as the socket, including after a
    /// WebSocket upgrade takes the socket away from the HTTP connection.
    struct Counted {
        stream: TcpStream,
        _permit: ConnPermit,
    }

    impl AsyncRead for Counted {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counted {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.stream.is_write_vectored()
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.get_mut().stream).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
        }
    }

    /// Which host names the server answers for.
    struct HostPolicy {
        any: bool,
        names: Vec<String>,
    }

    /// A `Host` value, parsed.
    #[derive(Debug, PartialEq)]
    enum Host {
        /// An IP literal: never a DNS-rebinding request, which must use the attacker's name.
        Ip,
        /// A registered name, lowercase, without port or trailing dot.
        Name(String),
        /// Not a host at all.
        Invalid,
    }

    fn parse_host(raw: &str) -> Host {
        let raw = raw.trim().to_ascii_lowercase();
        // Userinfo is only legal in an absolute-form request target.
        let raw = raw.rsplit_once('@').map_or(raw.as_str(), |(_, h)| h);
        let port_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if let Some(rest) = raw.strip_prefix('[') {
            return match rest.split_once(']') {
                Some((ip, tail))
                    if ip.parse::<Ipv6Addr>().is_ok()
                        && (tail.is_empty() || tail.strip_prefix(':').is_some_and(port_ok)) =>
                {
                    Host::Ip
                }
                _ => Host::Invalid,
            };
        }
        let name = match raw.rsplit_once(':') {
            Some((h, p)) if port_ok(p) => h,
            _ => raw,
        };
        if name.contains(':') {
            return Host::Invalid;
        }
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.parse::<Ipv4Addr>().is_ok() {
            return Host::Ip;
        }
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if valid {
            Host::Name(name.to_owned())
        } else {
            Host::Invalid
        }
    }

    impl HostPolicy {
        fn new(allowed: &[String], listen: SocketAddr) -> HostPolicy {
            let any = allowed.iter().any(|h| h.trim() == "*");
            let names: Vec<String> = allowed
                .iter()
                .filter_map(|h| {
                    let h = h.trim();
                    // `*.example.org`: every name under example.org.
                    if let Some(rest) = h.strip_prefix("*.") {
                        return match parse_host(rest) {
                            Host::Name(n) => Some(format!(".{n}")),
                            _ => None,
                        };
                    }
                    match parse_host(h) {
                        Host::Name(n) => Some(n),
                        _ => None,
                    }
                })
                .collect();
            if any {
                tracing::warn!(
                    "--allow-host '*': any Host header is accepted; DNS-rebinding protection is off"
                );
                return HostPolicy { any, names };
            }
            // A public listener nobody named: the names it is reached by are unknown, so
            // refusing them would break every existing deployment. Say so, once.
            if names.is_empty() && !listen.ip().is_loopback() {
                tracing::warn!(
                    "HTTP on {listen} with no --allow-host: any Host header is accepted, so DNS-rebinding \
                     protection is off; name the hosts this server is reached by with --allow-host NAME"
                );
                return HostPolicy { any: true, names };
            }
            HostPolicy { any: false, names }
        }

        /// Whether the operator named `name` (exactly, or under a `*.` wildcard); `*` and
        /// the unnamed public listener do not count: they accept any Host, not any origin.
        fn names(&self, name: &str) -> bool {
            let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
            self.names.iter().any(|a| {
                if a.starts_with('.') {
                    n.ends_with(a.as_str())
                } else {
                    *a == n
                }
            })
        }

        fn allows(&self, host: Option<&str>) -> bool {
            if self.any {
                return true;
            }
            // No Host at all (HTTP/1.0): a browser always sends one, so this is no rebinding.
            let Some(host) = host else { return true };
            match parse_host(host) {
                Host::Ip => true,
                Host::Invalid => false,
                Host::Name(n) => {
                    // A rebinding attack needs a name its author can publish in public DNS,
                    // which always has a dot: a single-label name (`meshbox`, from a hosts
                    // file or the LAN) cannot be one. RFC 6761: browsers resolve `localhost`
                    // and `*.localhost` to loopback themselves, so those cannot be rebound
                    // either.
                    !n.contains('.')
                        || n.ends_with(".localhost")
                        || self.names.iter().any(|a| {
                            if a.starts_with('.') {
                                n.ends_with(a.as_str())
                            } else {
                                *a == n
                            }
                        })
                }
            }
        }
    }

    /// Expensive requests computing per client address.
    struct Budgets {
        per: usize,
        wait: Duration,
        map: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
    }

    /// One expensive request's share of its client's budget.
    struct BudgetPermit {
        budgets: Arc<Budgets>,
        key: IpAddr,
        sem: Arc<Semaphore>,
        permit: Option<OwnedSemaphorePermit>,
    }

    impl Budgets {
        /// A share of `ip`'s budget, waiting at most the bound; `None` when it stayed spent.
        async fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<BudgetPermit> {
            let key = client_key(ip);
            let sem = lock(&self.map)
                .entry(key)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per)))
                .clone();
            let got = tokio::time::timeout(self.wait, sem.clone().acquire_owned()).await;
            let permit = BudgetPermit {
                budgets: self.clone(),
                key,
                sem,
                permit: got.ok().and_then(Result::ok),
            };
            // Dropped without a permit, it still forgets an address nobody else uses.
            permit.permit.is_some().then_some(permit)
        }
    }

    impl Drop for BudgetPermit {
        fn drop(&mut self) {
            drop(self.permit.take());
            // The map holds one reference and this permit one: nobody else is running or
            // waiting under this address, so the entry goes (the map stays as small as the
            // set of active clients). Cloned and removed only under the map's lock.
            let mut map = lock(&self.budgets.map);
            if Arc::strong_count(&self.sem) == 2 && self.sem.available_permits() >= self.budgets.per
            {
                map.remove(&self.key);
            }
        }
    }

    /// The HTTP side's shared state.
    pub struct Guards {
        limits: HttpLimits,
        hosts: HostPolicy,
        budgets: Arc<Budgets>,
        conns: Arc<Conns>,
        counters: HttpCounters,
        /// The memory of large answers.
        pub(crate) large: crate::budget::LargeAnswers,
    }

    impl Guards {
        /// The most WebSockets open at once: `max` (the live feed's own cap), and at most
        /// half the HTTP connection cap, because a WebSocket holds its HTTP slot for as long
        /// as it is open: without this bound, viewers of the live feed could take every
        /// slot and leave none for the API (with a low descriptor limit, the HTTP cap is
        /// small).
        pub fn ws_cap(&self, max: usize) -> usize {
            match self.limits.max_connections {
                0 => max,
                http => max.min((http / 2).max(1)),
            }
        }

        /// Whether the operator named this host with `--allow-host` (for the WebSocket's
        /// origin check).
        pub fn names_host(&self, name: &str) -> bool {
            self.hosts.names(name)
        }

        /// Guards for a server listening on `listen`.
        pub fn new(limits: &HttpLimits, allowed_hosts: &[String], listen: SocketAddr) -> Guards {
            Guards {
                hosts: HostPolicy::new(allowed_hosts, listen),
                budgets: Arc::new(Budgets {
                    per: limits.heavy_per_address,
                    wait: limits.pool_wait,
                    map: Mutex::new(HashMap::new()),
                }),
                conns: Arc::new(Conns {
                    max: limits.max_connections,
                    per: limits.max_connections_per_address,
                    open: Mutex::new((0, HashMap::new())),
                }),
                large: crate::budget::LargeAnswers::new(
                    limits.answer_bytes,
                    limits.large_answers_bytes,
                    limits.pool_wait,
                ),
                limits: limits.clone(),
                counters: HttpCounters::default(),
            }
        }

        /// The counters as JSON; `db_busy` is the pool's count of requests it told to retry.
        pub fn to_json(&self, db_busy: u64) -> Value {
            let c = &self.counters;
            let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
            json!({
                "connections_open": self.conns.open(),
                "connections_max": self.limits.max_connections,
                "connections_per_address_max": self.limits.max_connections_per_address,
                "connections_accepted": n(&c.accepted),
                "connections_refused_total_cap": n(&c.refused_total),
                "connections_refused_address_cap": n(&c.refused_address),
                "accept_errors": n(&c.accept_errors),
                "header_timeouts": n(&c.header_timeouts),
                "idle_closed": n(&c.idle_closed),
                "body_timeouts": n(&c.body_timeouts),
                "body_too_large": n(&c.body_too_large),
                "over_budget": n(&c.over_budget),
                "hosts_refused": n(&c.hosts_refused),
                "large_answers_bytes": self.large.held(),
                "large_answers_refused": self.large.refused(),
                "db_busy": db_busy,
            })
        }
    }

    /// Refuses a request whose `Host` is not one the server answers for (421).
    pub async fn check_host(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
        // An absolute-form target carries the authority the client meant; else `Host`.
        let host = match req.uri().authority() {
            Some(a) => Some(a.as_str().to_owned()),
            None => req
                .headers()
                .get(header::HOST)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        };
        if st.http.hosts.allows(host.as_deref()) {
            return next.run(req).await;
        }
        bump(&st.http.counters.hosts_refused);
        ApiError::UnknownHost(
            "this server does not answer for that host name (its operator can allow it with --allow-host)"
                .into(),
        )
        .into_response()
    }

    /// Reads a request body in full, within [`HttpLimits::body_timeout`] and
    /// [`HttpLimits::max_body`], before the handler runs: a body sent slowly or never must
    /// not hold a handler (or a database connection) while it trickles in.
    pub async fn bounded_body(
        State(st): State<Arc<AppState>>,
        req: Request,
        next: Next,
    ) -> Response {
        if req.body().is_end_stream() {
            return next.run(req).await;
        }
        let limits = &st.http.limits;
        let max = limits.max_body;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            bump(&st.http.counters.body_too_large);
            return ApiError::TooLarge(format!("request body over {max} bytes")).into_response();
        }
        let (parts, mut body) = req.into_parts();
        let read = async {
            let mut buf: Vec<u8> = Vec::new();
            while let Some(frame) =
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                let Ok(frame) = frame else {
                    return Err(ApiError::BadRequest(
                        "could not read the request body".into(),
                    ));
                };
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > max {
                        return Err(ApiError::TooLarge(format!("request body over {max} bytes")));
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Ok(buf)
        };
        match tokio::time::timeout(limits.body_timeout, read).await {
            Ok(Ok(buf)) => next.run(Request::from_parts(parts, Body::from(buf))).await,
            Ok(Err(e)) => {
                if matches!(e, ApiError::TooLarge(_)) {
                    bump(&st.http.counters.body_too_large);
                }
                e.into_response()
            }
            Err(_) => {
                bump(&st.http.counters.body_timeouts);
                ApiError::Timeout("the request body did not arrive in time".into()).into_response()
            }
        }
    }

    /// The lane of a path: `None` for what never touches the database (the UI, `/ws`).
    fn lane_of(path: &str) -> Option<Lane> {
        if path == "/metrics" {
            return Some(Lane::Cheap);
        }
        if !path.starts_with("/api/") {
            return None;
        }
        // Bounded work whatever the data: cached or index-end queries, or none at all.
        let cheap = matches!(
            path,
            "/api/stats"
                | "/api/healthz"
                | "/api/health"
                | "/api/openapi.json"
                | "/api/spec"
                | "/api/iata-coords"
                | "/api/perf/io"
                | "/api/perf/sqlite"
                | "/api/perf/write-sources"
                | "/api/perf/reset"
                | "/api/mqtt/status"
        ) || path.starts_with("/api/config/");
        Some(if cheap { Lane::Cheap } else { Lane::Main })
    }

    /// Puts each API request in its database lane; an expensive one first takes a share of
    /// its client's budget (waiting at most the pool wait, then 429). Inside single-flight,
    /// so requests answered by another's computation cost no budget.
    pub async fn lanes(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
        match lane_of(req.uri().path()) {
            None => next.run(req).await,
            Some(Lane::Cheap) => db::in_lane(Lane::Cheap, next.run(req)).await,
            Some(Lane::Main) => {
                let peer = req
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip());
                let budgets = &st.http.budgets;
                let _share = match peer {
                    Some(ip) if budgets.per > 0 => match budgets.acquire(ip).await {
                        Some(p) => Some(p),
                        None => {
                            bump(&st.http.counters.over_budget);
                            return ApiError::TooManyRequests(
                                "too many expensive requests from this address at once".into(),
                            )
                            .into_response();
                        }
                    },
                    _ => None,
                };
                db::in_lane(Lane::Main, next.run(req)).await
            }
        }
    }

    /// When a connection last started or finished a request, and how many it has running.
    struct Activity {
        running: AtomicUsize,
        last: Mutex<Instant>,
    }

    /// A request running on a connection.
    struct Running(Arc<Activity>);

    impl Activity {
        fn begin(self: &Arc<Self>) -> Running {
            self.running.fetch_add(1, Ordering::AcqRel);
            *lock(&self.last) = Instant::now();
            Running(self.clone())
        }

        /// How long the connection has been without a request, if it has none running.
        fn idle_for(&self) -> Option<Duration> {
            (self.running.load(Ordering::Acquire) == 0).then(|| lock(&self.last).elapsed())
        }

        fn last(&self) -> Instant {
            *lock(&self.last)
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            *lock(&self.0.last) = Instant::now();
            self.0.running.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// What a connection over a cap is told before it is closed. Written without waiting (if
    /// the socket cannot take it at once, the client gets a bare close).
    const REFUSAL: &[u8] =
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
        retry-after: 1\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\
        content-length: 32\r\n\r\n{\"error\":\"too many connections\"}";

    /// Accepts connections until `shutdown` turns true, then lets them finish (graceful
    /// shutdown: answers in progress complete, idle connections close).
    pub async fn serve(
        listener: tokio::net::TcpListener,
        app: Router,
        st: Arc<AppState>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(st.http.limits.header_timeout)
            .keep_alive(true)
            .max_buf_size(MAX_HEAD);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = tokio::task::JoinSet::new();
        let counters = &st.http.counters;
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match st.http.conns.admit(peer.ip()) {
                        Ok(permit) => {
                            bump(&counters.accepted);
                            let _ = stream.set_nodelay(true);
                            let io = Counted { stream, _permit: permit };
                            conns.spawn(connection(
                                io,
                                peer,
                                app.clone(),
                                builder.clone(),
                                st.clone(),
                                stop_rx.clone(),
                            ));
                        }
                        Err(full) => {
                            let which = match full {
                                Full::Total => {
                                    bump(&counters.refused_total);
                                    "connections in all"
                                }
                                Full::Address => {
                                    bump(&counters.refused_address);
                                    "connections from one address"
                                }
                            };
                            if counters.log.ready() {
                                tracing::warn!(%peer, "HTTP connection refused: too many {which} (counted; logged once a minute)");
                            }
                            let _ = stream.try_write(REFUSAL);
                        }
                    },
                    Err(e) => {
                        bump(&counters.accept_errors);
                        if counters.log.ready() {
                            tracing::warn!("HTTP accept failed: {e} (counted; logged once a minute)");
                        }
                        // Out of descriptors (or memory): the error repeats until something
                        // closes, so pause instead of spinning.
                        if matches!(e.raw_os_error(), Some(23 | 24 | 12 | 105)) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        while conns.join_next().await.is_some() {}
    }

    /// Serves one connection: HTTP/1.1 with upgrades (the WebSocket), the header timeout
    /// (hyper's), the idle timeout, and graceful shutdown on `stop`.
    async fn connection(
        io: Counted,
        peer: SocketAddr,
        app: Router,
        builder: hyper::server::conn::http1::Builder,
        st: Arc<AppState>,
        mut stop: watch::Receiver<bool>,
    ) {
        let activity = Arc::new(Activity {
            running: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        });
        let svc = {
            let activity = activity.clone();
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                // Handlers and middleware find the client address here (per-client budgets,
                // the WebSocket's per-address cap).
                req.extensions_mut().insert(ConnectInfo(peer));
                let running = activity.begin();
                let mut app = app.clone();
                async move {
                    let res = tower_service::Service::call(&mut app, req).await;
                    drop(running);
                    res
                }
            })
        };
        let conn = builder
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades();
        tokio::pin!(conn);
        let idle = st.http.limits.idle_timeout;
        let mut closing = false;
        loop {
            let idle_at = tokio::time::Instant::from_std(activity.last() + idle);
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done
                        && e.is_timeout()
                    {
                        bump(&st.http.counters.header_timeouts);
                    }
                    break;
                }
                _ = stop.changed(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = tokio::time::sleep_until(idle_at), if !closing => {
                    if activity.idle_for().is_some_and(|d| d >= idle) {
                        bump(&st.http.counters.idle_closed);
                        // Closes at once when no request is under way; a request head
                        // still arriving keeps its header deadline.
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn host_names_are_parsed_strictly() {
            assert_eq!(parse_host("127.0.0.1:3000"), Host::Ip);
            assert_eq!(parse_host("[::1]:3000"), Host::Ip);
            assert_eq!(parse_host("[::1]"), Host::Ip);
            assert_eq!(parse_host("LocalHost:80"), Host::Name("localhost".into()));
            assert_eq!(
                parse_host("mesh.example.org."),
                Host::Name("mesh.example.org".into())
            );
            assert_eq!(parse_host("[::1"), Host::Invalid);
            assert_eq!(parse_host("::1"), Host::Invalid);
            assert_eq!(parse_host("a b"), Host::Invalid);
            assert_eq!(parse_host(""), Host::Invalid);
            assert_eq!(parse_host("[::1]x"), Host::Invalid);
        }

        #[test]
        fn the_host_policy_allows_loopback_literals_and_configured_names() {
            let local: SocketAddr = "127.0.0.1:3000".parse().unwrap();
            let p = HostPolicy::new(&["mesh.example.org".into(), "*.lan.example".into()], local);
            for ok in [
                "localhost:3000",
                "app.localhost",
                "127.0.0.1:3000",
                "[::1]:3000",
                "192.0.2.7",
                "mesh.example.org",
                "MESH.example.org:443",
                "a.lan.example",
                "meshbox:3000",
            ] {
                assert!(p.allows(Some(ok)), "{ok}");
            }
            for bad in [
                "evil.example",
                "example.org",
                "lan.example",
                "mesh.example.org.evil",
                "x y",
            ] {
                assert!(!p.allows(Some(bad)), "{bad}");
            }
            let public: SocketAddr = "0.0.0.0:3000".parse().unwrap();
            assert!(HostPolicy::new(&[], public).allows(Some("evil.example")));
            assert!(!HostPolicy::new(&[], local).allows(Some("evil.example")));
            assert!(HostPolicy::new(&["*".into()], local).allows(Some("evil.example")));
            assert!(
                !HostPolicy::new(&["mesh.example.org".into()], public).allows(Some("evil.example"))
            );
        }

        #[test]
        fn ipv6_clients_count_per_64() {
            let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
            let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
            let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
            assert_eq!(client_key(a), client_key(b));
            assert_ne!(client_key(a), client_key(c));
            let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
            assert_eq!(client_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
        }

        #[test]
        fn the_connection_caps_hold_and_free_their_slots() {
            let conns = Arc::new(Conns {
                max: 3,
                per: 2,
                open: Mutex::new((0, HashMap::new())),
            });
            let a: IpAddr = "192.0.2.1".parse().unwrap();
            let b: IpAddr = "192.0.2.2".parse().unwrap();
            let a1 = conns.admit(a).ok().unwrap();
            let _a2 = conns.admit(a).ok().unwrap();
            assert!(matches!(conns.admit(a), Err(Full::Address)));
            let _b1 = conns.admit(b).ok().unwrap();
            assert!(matches!(conns.admit(b), Err(Full::Total)));
            drop(a1);
            let _a3 = conns.admit(a).ok().unwrap();
            assert_eq!(conns.open(), 3);
        }

        /// An address's budget refuses past its share (after the bounded wait), other
        /// addresses keep theirs, and addresses nobody uses are forgotten.
        #[tokio::test]
        async fn the_budget_per_address_refuses_past_its_share_and_forgets() {
            let b = Arc::new(Budgets {
                per: 2,
                wait: Duration::from_millis(20),
                map: Mutex::new(HashMap::new()),
            });
            let a: IpAddr = "192.0.2.1".parse().unwrap();
            let p1 = b.acquire(a).await.unwrap();
            let p2 = b.acquire(a).await.unwrap();
            assert!(b.acquire(a).await.is_none());
            let other = b.acquire("192.0.2.2".parse().unwrap()).await.unwrap();
            drop(other);
            assert_eq!(lock(&b.map).len(), 1);
            drop(p1);
            let p3 = b.acquire(a).await.unwrap();
            drop((p2, p3));
            assert!(lock(&b.map).is_empty());
        }

        #[test]
        fn the_descriptor_limit_is_read() {
            // Linux always has it; elsewhere the default is fixed.
            if std::path::Path::new("/proc/self/limits").exists() {
                assert!(open_files_limit().is_some_and(|n| n > 0));
            }
            assert!((16..=1024).contains(&default_max_connections()));
        }
    }
}
