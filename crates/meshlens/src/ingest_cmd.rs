//! `meshlens ingest` (the writer role), `meshlens serve` (the reader role) and `meshlens run`
//! (both, plus the embedded MQTT broker).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ingest::config::{SourceConfig, parse_config_file, parse_duration};
use ingest::decode::Decoder;
use ingest::mqtt::SourceSettings;
use ingest::writer_thread::Maintenance;
use ingest::{Ingest, IngestConfig};

use crate::keys::KeyArgs;

/// Options of the writer role.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Data directory; the database is `<data-dir>/meshlens.db`.
    #[arg(long, env = "MESHLENS_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// CoreScope-compatible config.json (`mqtt`, `mqttSources`, `channelKeys`, `hashChannels`,
    /// `hashRegions`).
    #[arg(long, env = "MESHLENS_CONFIG")]
    pub config: Option<PathBuf>,
    /// MQTT broker to subscribe to (`mqtt://`, `mqtts://`, `ws://`, `wss://`, optionally
    /// `user:pass@`). Repeatable; in the environment, comma-separated.
    #[arg(
        long = "mqtt",
        value_name = "URL",
        env = "MESHLENS_MQTT",
        value_delimiter = ','
    )]
    pub mqtt: Vec<String>,
    /// Topic filter for `--mqtt` sources. Repeatable.
    #[arg(long = "topic", default_value = ingest::config::DEFAULT_TOPIC)]
    pub topics: Vec<String>,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Delete packets last heard longer ago than this (`0` keeps everything).
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    pub retention: Duration,
    /// Move nodes not heard for this long to `inactive_nodes`.
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub node_silence: Duration,
    /// Delete observers silent for this many days once none of their observations remain
    /// (CoreScope's `observerDays`; 0 or less keeps them forever).
    #[arg(long, default_value_t = 14, allow_negative_numbers = true)]
    pub observer_days: i64,
    /// Keep observer history (`observer_metrics`, 5-minute buckets of status and clock) for
    /// this many days (CoreScope's `retention.metricsDays`; 0 or less keeps it forever).
    #[arg(long, default_value_t = 30, allow_negative_numbers = true)]
    pub metrics_days: i64,
    /// New observer keys accepted per minute, all sources together, after a burst of ten
    /// minutes' worth; more are refused and counted (`refused.observer_rate`). 0: no limit.
    #[arg(long, default_value_t = 100)]
    pub new_observers_per_minute: u32,
    /// Reconnect a source that has delivered nothing for this long.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub watchdog: Duration,
    /// How often the reader's capability snapshot is persisted into the database.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub mbcap_persist_interval: Duration,
}

/// Options of the reader role.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Address of the HTTP API, live WebSocket and web UI.
    #[arg(long, env = "MESHLENS_HTTP", default_value = "127.0.0.1:3000")]
    pub http: SocketAddr,
    /// Origin allowed to open the live WebSocket besides the server's own (`*` for any).
    /// Repeatable.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// Host name the HTTP server answers for besides loopback names and IP addresses (`*` for
    /// any; `*.example.org` for every name under it). Repeatable. Other `Host` headers get 421,
    /// which stops DNS-rebinding pages from reading the API. With none given on a non-loopback
    /// `--http` address, any host is accepted (and a warning logged).
    #[arg(
        long = "allow-host",
        value_name = "NAME",
        env = "MESHLENS_ALLOW_HOST",
        value_delimiter = ','
    )]
    pub allow_hosts: Vec<String>,
    /// Most open HTTP connections (WebSockets included); default: half the open-files limit,
    /// at most 1,024.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most open HTTP connections from one client address (an IPv6 /64 counts as one). Behind
    /// a reverse proxy every client has the proxy's address: raise it, or let the proxy limit.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_connections_per_address: usize,
    /// Window of traffic the multi-byte capability is inferred from.
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub capability_window: Duration,
    /// How often analytics (the capability cycle) run.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub analytics_interval: Duration,
    /// How long one database query of the API may run before it is interrupted (503).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub query_deadline: Duration,
    /// Map tile URL template for the web UI (the one outside fetch the UI makes).
    #[arg(
        long,
        env = "MESHLENS_TILE_URL",
        default_value = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    )]
    pub tile_url: String,
    /// Attribution shown under the map tiles.
    #[arg(long, default_value = "© OpenStreetMap contributors")]
    pub tile_attribution: String,
    /// The admin API key (header `X-API-Key`) for `/api/backup`, `POST /api/packets`, the geo
    /// filter and pruning; at least 16 characters. Without one those routes are off.
    /// Overrides `apiKey` in the config file.
    #[arg(
        long,
        env = "MESHLENS_ADMIN_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub admin_key: Option<String>,
    /// POST alerts to this URL as generic JSON (repeatable; more receivers, Discord, Slack
    /// and ntfy formats in the config file's `alerts` object).
    #[arg(long = "alert-webhook", value_name = "URL")]
    pub alert_webhooks: Vec<String>,
    /// A repeater or room silent this long is offline [default: 24h; 0 turns it off].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub alert_node_silence: Option<Duration>,
    /// An observer silent this long is offline [default: 15m; 0 turns it off].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub alert_observer_silence: Option<Duration>,
    /// How often the alert rules run [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub alert_eval_interval: Option<Duration>,
    /// The UI keys of the configuration file (`mapDefaults`, `areas`, `cacheTTL`, theme),
    /// filled from `--config`.
    #[arg(skip)]
    pub ui_file: serde_json::Map<String, serde_json::Value>,
}

impl HttpArgs {
    /// Alerting's settings: the defaults, then the config file's `alerts` object, then the
    /// flags.
    fn alert_settings(
        &self,
        data_dir: &std::path::Path,
        file: Option<&serde_json::Value>,
    ) -> Result<alerts::Settings, String> {
        let mut s = alerts::Settings::new(data_dir);
        if let Some(v) = file {
            s.apply_json(v)?;
        }
        let off_if_zero = |d: Duration| (!d.is_zero()).then_some(d);
        if let Some(d) = self.alert_node_silence {
            s.rules.repeater_silence = off_if_zero(d);
            s.rules.room_silence = off_if_zero(d);
        }
        if let Some(d) = self.alert_observer_silence {
            s.rules.observer_silence = off_if_zero(d);
        }
        if let Some(d) = self.alert_eval_interval {
            if d.is_zero() {
                return Err("--alert-eval-interval must be longer than 0".into());
            }
            s.eval_interval = d;
        }
        for url in &self.alert_webhooks {
            s.add_receiver(None, url, alerts::Format::Generic, None)
                .map_err(|e| format!("--alert-webhook: {e}"))?;
        }
        Ok(s)
    }

    /// The admin key, refused when weak (a short or placeholder key would be guessed).
    fn checked_admin_key(&self) -> Result<Option<String>, String> {
        match self.admin_key.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(k) => match server::api::admin::weak_key_reason(k) {
                Some(why) => Err(format!("--admin-key / apiKey: {why}")),
                None => Ok(Some(k.to_owned())),
            },
        }
    }

    /// The UI settings: the tile flags and the configuration file's UI keys (an error names
    /// a malformed key).
    fn ui(&self) -> Result<server::web::UiConfig, String> {
        let mut ui = server::web::UiConfig {
            tile_url: self.tile_url.clone(),
            tile_attribution: self.tile_attribution.clone(),
            ..Default::default()
        };
        ui.apply_file(&self.ui_file)?;
        Ok(ui)
    }

    fn cycle(&self, data_dir: &std::path::Path) -> server::capability::CycleConfig {
        server::capability::CycleConfig {
            window: self.capability_window,
            interval: self.analytics_interval.max(Duration::from_secs(1)),
            publish_to: Some(data_dir.to_path_buf()),
        }
    }
}

/// Options of `meshlens serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Data directory; the database is `<data-dir>/meshlens.db`.
    #[arg(long, env = "MESHLENS_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// CoreScope-compatible config.json: the reader takes its UI keys (`mapDefaults`,
    /// `areas`, `cacheTTL`, `branding`, `theme`, `themeDark`, `nodeColors`, `typeColors`,
    /// `home`, `markerStroke`).
    #[arg(long, env = "MESHLENS_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Options of `meshlens run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Feed the embedded broker a simulated mesh (60 nodes, 6 observers) at a watchable pace.
    #[arg(long)]
    pub demo: bool,
}

/// The embedded broker's listeners and who may use them.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// Address of the embedded MQTT broker (plain TCP) that observers publish to
    /// [default: 127.0.0.1:1883].
    #[arg(long, value_name = "ADDR")]
    pub mqtt_listen: Option<SocketAddr>,
    /// Also listen for MQTT over TLS here (needs --mqtt-tls-cert and --mqtt-tls-key).
    #[arg(long, value_name = "ADDR")]
    pub mqtt_tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for the TLS and secure WebSocket listeners (reloaded on change).
    #[arg(long, value_name = "FILE")]
    pub mqtt_tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS and secure WebSocket listeners.
    #[arg(long, value_name = "FILE")]
    pub mqtt_tls_key: Option<PathBuf>,
    /// Also listen for MQTT over WebSocket here (any path; subprotocol `mqtt`).
    #[arg(long, value_name = "ADDR")]
    pub mqtt_ws_listen: Option<SocketAddr>,
    /// Also listen for MQTT over secure WebSocket here (needs the TLS certificate and key).
    #[arg(long, value_name = "ADDR")]
    pub mqtt_wss_listen: Option<SocketAddr>,
    /// Users who may sign in with a password: a Mosquitto password file (`mosquitto_passwd`).
    #[arg(long, value_name = "FILE")]
    pub mqtt_passwords: Option<PathBuf>,
    /// Tokens must carry this audience (`aud`), as meshcoretomqtt's `auth.audience` sets it.
    #[arg(long, value_name = "AUD")]
    pub mqtt_token_audience: Option<String>,
    /// Accept anonymous clients on every listener, not only on loopback ones.
    #[arg(long, conflicts_with = "mqtt_require_auth")]
    pub mqtt_allow_anonymous: bool,
    /// Refuse anonymous clients everywhere, loopback included.
    #[arg(long)]
    pub mqtt_require_auth: bool,
    /// Only these observer keys may publish (repeatable; 64 hex digits).
    #[arg(long = "mqtt-allow-observer", value_name = "PUBKEY")]
    pub mqtt_allow_observers: Vec<String>,
    /// These observer keys may not publish (repeatable; 64 hex digits).
    #[arg(long = "mqtt-block-observer", value_name = "PUBKEY")]
    pub mqtt_block_observers: Vec<String>,
}

/// The embedded broker, bound and configured.
struct EmbeddedBroker {
    listeners: Vec<ingest::broker::Listener>,
    tls: Option<ingest::broker::TlsFiles>,
    settings: ingest::broker::BrokerSettings,
}

fn observer_keys(keys: &[String], flag: &str) -> Result<std::collections::HashSet<String>, String> {
    keys.iter()
        .map(|k| {
            let k = k.trim().to_ascii_lowercase();
            let ok = k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then_some(k)
                .ok_or_else(|| format!("{flag}: an observer key is 64 hex digits"))
        })
        .collect()
}

impl BrokerArgs {
    /// Takes what the configuration file's `broker` object says wherever no flag was given.
    fn merge_file(&mut self, f: ingest::config::BrokerFileConfig) {
        self.mqtt_listen = self.mqtt_listen.or(f.listen);
        self.mqtt_tls_listen = self.mqtt_tls_listen.or(f.tls_listen);
        self.mqtt_ws_listen = self.mqtt_ws_listen.or(f.ws_listen);
        self.mqtt_wss_listen = self.mqtt_wss_listen.or(f.wss_listen);
        self.mqtt_tls_cert = self.mqtt_tls_cert.take().or(f.tls_cert);
        self.mqtt_tls_key = self.mqtt_tls_key.take().or(f.tls_key);
        self.mqtt_passwords = self.mqtt_passwords.take().or(f.passwords);
        self.mqtt_token_audience = self.mqtt_token_audience.take().or(f.token_audience);
        // A flag given on the command line decides; the file only fills in.
        if !self.mqtt_allow_anonymous && !self.mqtt_require_auth {
            self.mqtt_allow_anonymous = f.allow_anonymous;
            self.mqtt_require_auth = f.require_auth;
        }
        self.mqtt_allow_observers.extend(f.allow_observers);
        self.mqtt_block_observers.extend(f.block_observers);
    }

    /// Binds every listener (a busy port is an error now, before anything starts) and checks
    /// that nothing is exposed without the operator's decision.
    fn bind(&self) -> Result<EmbeddedBroker, String> {
        use ingest::broker::auth::{AuthConfig, PasswordFile};
        use ingest::broker::{Listener, Transport};
        let tcp = self
            .mqtt_listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 1883)));
        let mut listeners = vec![Listener::bind(Transport::Tcp, tcp)?];
        for (transport, addr) in [
            (Transport::Tls, self.mqtt_tls_listen),
            (Transport::Ws, self.mqtt_ws_listen),
            (Transport::Wss, self.mqtt_wss_listen),
        ] {
            if let Some(addr) = addr {
                listeners.push(Listener::bind(transport, addr)?);
            }
        }
        let tls = match (&self.mqtt_tls_cert, &self.mqtt_tls_key) {
            (Some(cert), Some(key)) => Some(ingest::broker::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => return Err("--mqtt-tls-cert and --mqtt-tls-key go together".into()),
        };
        let passwords = match &self.mqtt_passwords {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--mqtt-passwords {}: {e}", path.display()))?;
                Some(
                    PasswordFile::parse(&text)
                        .map_err(|e| format!("--mqtt-passwords {}: {e}", path.display()))?,
                )
            }
            None => None,
        };
        let defaults = ingest::broker::BrokerSettings::default();
        let auth = AuthConfig {
            require_auth: self.mqtt_require_auth,
            allow_anonymous: self.mqtt_allow_anonymous,
            token_audience: self.mqtt_token_audience.clone(),
            passwords,
            allow_observers: observer_keys(&self.mqtt_allow_observers, "--mqtt-allow-observer")?,
            block_observers: observer_keys(&self.mqtt_block_observers, "--mqtt-block-observer")?,
            ..defaults.auth.clone()
        };
        ingest::broker::check_exposure(&listeners, &auth)?;
        Ok(EmbeddedBroker {
            listeners,
            tls,
            settings: ingest::broker::BrokerSettings { auth, ..defaults },
        })
    }
}

fn build_config(
    args: &IngestArgs,
    extra_sources: Vec<SourceConfig>,
) -> Result<IngestConfig, String> {
    let mut decoder = Decoder {
        keyring: args.keys.keyring(),
        regions: args.keys.regions(),
        ..Decoder::default()
    };
    let mut sources = extra_sources;
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file = parse_config_file(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        sources.extend(file.sources);
        for c in file.channels {
            decoder.keyring.add(c);
        }
        for t in file.hashtags {
            decoder.keyring.add_hashtag(&t);
        }
        for r in file.regions {
            decoder.regions.add(&r);
        }
    }
    for (i, url) in args.mqtt.iter().enumerate() {
        let mut s = SourceConfig::from_url(&format!("mqtt-{}", i + 1), url)
            .map_err(|e| format!("--mqtt {url}: {e}"))?;
        s.topics = args.topics.clone();
        sources.push(s);
    }
    Ok(IngestConfig {
        db_path: store::db_path(&args.data_dir),
        sources,
        decoder,
        maintenance: Maintenance {
            packet_retention: (!args.retention.is_zero()).then_some(args.retention),
            node_silence: args.node_silence,
            observer_retention: (args.observer_days > 0)
                .then(|| Duration::from_secs(args.observer_days.unsigned_abs() * 86_400)),
            metrics_retention: (args.metrics_days > 0)
                .then(|| Duration::from_secs(args.metrics_days.unsigned_abs() * 86_400)),
            new_observers_per_minute: (args.new_observers_per_minute > 0)
                .then_some(args.new_observers_per_minute),
        },
        maintenance_interval: Duration::from_secs(10),
        source_settings: SourceSettings {
            quiet_timeout: args.watchdog,
        },
        status_file: Some(args.data_dir.join("ingest-status.json")),
        mbcap: Some((
            handoff::snapshot_path(&args.data_dir),
            args.mbcap_persist_interval.max(Duration::from_millis(100)),
        )),
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MESHLENS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// `meshlens ingest`.
pub fn ingest(args: IngestArgs) -> ExitCode {
    init_logging();
    let mut cfg = match build_config(&args, Vec::new()) {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    if cfg.sources.is_empty() {
        // CoreScope's default, so a plain `ingest` next to a local Mosquitto just works.
        match SourceConfig::from_url("local", "mqtt://localhost:1883") {
            Ok(s) => cfg.sources.push(s),
            Err(e) => return usage_error(&e),
        }
    }
    let geo_filter = match args.config.as_deref().map(read_file_config).transpose() {
        Ok(f) => f.and_then(|f| f.geo_filter),
        Err(e) => return usage_error(&e),
    };
    serve(cfg, None, None, None, geo_filter)
}

fn read_file_config(path: &std::path::Path) -> Result<ingest::config::FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_config_file(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `meshlens run`.
pub fn run(args: RunArgs) -> ExitCode {
    init_logging();
    let mut args = args;
    let mut geo_filter = None;
    let mut alerts_file = None;
    if let Some(path) = &args.ingest.config {
        match read_file_config(path) {
            Ok(f) => {
                args.broker.merge_file(f.broker);
                args.http.ui_file = f.ui;
                if args.http.admin_key.is_none() {
                    args.http.admin_key = f.api_key;
                }
                geo_filter = f.geo_filter;
                alerts_file = f.alerts;
            }
            Err(e) => return usage_error(&e),
        }
    }
    if let Err(e) = args.http.checked_admin_key() {
        return usage_error(&e);
    }
    let alerting = match args
        .http
        .alert_settings(&args.ingest.data_dir, alerts_file.as_ref())
    {
        Ok(a) => a,
        Err(e) => return usage_error(&e),
    };
    if let Err(e) = args.http.ui() {
        return usage_error(&e);
    }
    // Bound before anything starts, so a busy port or an unsafe exposure is a clear error.
    let broker = match args.broker.bind() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("meshlens run: embedded MQTT broker: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(addr) = broker
        .listeners
        .first()
        .and_then(|l| l.socket.local_addr().ok())
    else {
        eprintln!("meshlens run: embedded MQTT broker: no listener");
        return ExitCode::FAILURE;
    };
    match build_config(&args.ingest, Vec::new()) {
        Ok(mut cfg) => {
            // The reader shares the process: it reads the counters directly.
            cfg.status_file = None;
            let demo = args.demo.then(|| {
                tracing::info!("demo: publishing a simulated mesh to the embedded broker");
                // The simulated mesh talks on Public and #test.
                cfg.decoder.keyring.add_hashtag("test");
                addr
            });
            let mut http = args.http;
            if args.demo {
                // A newcomer should see confirmed and suspected nodes within seconds, not after
                // the first minute.
                http.analytics_interval = http.analytics_interval.min(Duration::from_secs(5));
            }
            serve(cfg, Some((http, alerting)), demo, Some(broker), geo_filter)
        }
        Err(e) => usage_error(&e),
    }
}

/// `meshlens serve`: the reader alone, next to a writer in another process.
pub fn serve_only(mut args: ServeArgs) -> ExitCode {
    init_logging();
    let mut alerts_file = None;
    if let Some(path) = &args.config {
        match read_file_config(path) {
            Ok(f) => {
                args.http.ui_file = f.ui;
                if args.http.admin_key.is_none() {
                    args.http.admin_key = f.api_key;
                }
                alerts_file = f.alerts;
            }
            Err(e) => return usage_error(&e),
        }
    }
    let ui = match args.http.ui() {
        Ok(ui) => ui,
        Err(e) => return usage_error(&e),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let admin_key = match args.http.checked_admin_key() {
        Ok(k) => k,
        Err(e) => return usage_error(&e),
    };
    let alerting = match args
        .http
        .alert_settings(&args.data_dir, alerts_file.as_ref())
    {
        Ok(a) => a,
        Err(e) => return usage_error(&e),
    };
    let server_cfg = server::ServerConfig {
        db_path: store::db_path(&args.data_dir),
        decode: meshcore::report::DecodeOptions {
            keyring: args.keys.keyring(),
            regions: args.keys.regions(),
            verify_signatures: true,
        },
        allowed_origins: args.http.allow_origins.clone(),
        ingest: Some(std::sync::Arc::new(server::StatusFile(
            args.data_dir.join("ingest-status.json"),
        ))),
        pool_size: 4,
        query_deadline: args.http.query_deadline,
        capability: args.http.cycle(&args.data_dir),
        ui,
        allowed_hosts: args.http.allow_hosts.clone(),
        admin_key,
        alerts: Some(alerting),
        limits: server::http::HttpLimits {
            max_connections: args
                .http
                .max_connections
                .unwrap_or_else(server::http::default_max_connections),
            max_connections_per_address: args.http.max_connections_per_address,
            ..Default::default()
        },
    };
    rt.block_on(async move {
        let server = match start_server(server_cfg, args.http.http).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("meshlens serve: {e}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn start_server(
    cfg: server::ServerConfig,
    addr: SocketAddr,
) -> Result<server::Server, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let server = server::Server::start(cfg, listener)?;
    tracing::info!("HTTP API on http://{}", server.addr);
    Ok(server)
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    // Database work runs on the blocking pool; the read pool bounds it already, and a low cap
    // keeps the number of threads (each with its own allocator arena) small under bursts.
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("meshlens: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// The writer's counters, read in-process by a reader running beside it.
struct SharedStats(std::sync::Arc<ingest::stats::Stats>);

impl server::IngestStatus for SharedStats {
    fn snapshot(&self) -> Option<serde_json::Value> {
        let mut v = self.0.to_json();
        v["state"] = "running".into();
        Some(v)
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("meshlens: {msg}");
    ExitCode::from(2)
}

/// Runs the writer role (and, with `http`, the reader beside it) until SIGTERM or Ctrl-C,
/// then drains and exits.
fn serve(
    cfg: IngestConfig,
    http: Option<(HttpArgs, alerts::Settings)>,
    demo: Option<SocketAddr>,
    broker: Option<EmbeddedBroker>,
    geo_filter: Option<analytics::geo::GeoFilter>,
) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let decode = meshcore::report::DecodeOptions {
        keyring: cfg.decoder.keyring.clone(),
        regions: cfg.decoder.regions.clone(),
        verify_signatures: true,
    };
    rt.block_on(async move {
        let db = cfg.db_path.clone();
        let mut ingest = match Ingest::start(cfg) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("meshlens: {}: {e}", db.display());
                return ExitCode::FAILURE;
            }
        };
        tracing::info!("writing {}", db.display());
        let data_dir = db.parent().map_or_else(
            || std::path::PathBuf::from("."),
            std::path::Path::to_path_buf,
        );
        if let Err(e) = ingest.serve_admin_queue(&data_dir, geo_filter).await {
            eprintln!("meshlens: {e}");
            ingest.shutdown().await;
            return ExitCode::FAILURE;
        }
        if let Some(b) = broker {
            match ingest.serve_embedded_broker(b.listeners, b.tls, b.settings) {
                Ok(addrs) => {
                    for (transport, addr) in addrs {
                        tracing::info!("embedded MQTT broker: {transport:?} listener on {addr}");
                    }
                }
                Err(e) => {
                    eprintln!("meshlens run: embedded MQTT broker: {e}");
                    ingest.shutdown().await;
                    return ExitCode::FAILURE;
                }
            }
        }
        // The writer has migrated the database, so the reader can open it now.
        let server = match http {
            Some((http, alerting)) => {
                let cfg = server::ServerConfig {
                    db_path: db.clone(),
                    decode,
                    allowed_origins: http.allow_origins.clone(),
                    ingest: Some(std::sync::Arc::new(SharedStats(ingest.stats()))),
                    pool_size: 4,
                    query_deadline: http.query_deadline,
                    capability: http.cycle(db.parent().unwrap_or(std::path::Path::new("."))),
                    // Validated before anything started.
                    ui: http.ui().unwrap_or_default(),
                    allowed_hosts: http.allow_hosts.clone(),
                    // Checked (and refused when weak) before anything started.
                    admin_key: http.checked_admin_key().ok().flatten(),
                    alerts: Some(alerting),
                    limits: server::http::HttpLimits {
                        max_connections: http
                            .max_connections
                            .unwrap_or_else(server::http::default_max_connections),
                        max_connections_per_address: http.max_connections_per_address,
                        ..Default::default()
                    },
                };
                match start_server(cfg, http.http).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        eprintln!("meshlens: {e}");
                        ingest.shutdown().await;
                        return ExitCode::FAILURE;
                    }
                }
            }
            None => None,
        };
        if let Some(addr) = demo {
            tokio::spawn(async move {
                let broker = ingest::config::BrokerUrl::parse(&format!("mqtt://{addr}"));
                if let Ok(b) = broker {
                    // A year of simulated time at 20× is effectively endless.
                    let cfg = sim::SimConfig::default();
                    let r = crate::simulate_cmd::publish(
                        &b,
                        cfg,
                        Duration::from_secs(365 * 86_400),
                        Some(20.0),
                        None,
                    )
                    .await;
                    if let Err(e) = r {
                        tracing::warn!("demo traffic stopped: {e}");
                    }
                }
            });
        }
        wait_for_signal().await;
        if let Some(s) = server {
            s.shutdown().await;
        }
        tracing::info!("shutting down: committing what was received");
        // The writer commits in milliseconds; the bound keeps a wedged disk from hanging the
        // exit forever.
        match tokio::time::timeout(Duration::from_secs(9), ingest.shutdown()).await {
            Ok(()) => {
                tracing::info!("stopped cleanly");
                ExitCode::SUCCESS
            }
            Err(_) => {
                tracing::error!("shutdown did not finish within 9 s");
                ExitCode::FAILURE
            }
        }
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
