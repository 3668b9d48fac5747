//! `meshlens ingest` (the writer role) and, for now, `meshlens run` (the writer role plus the
//! embedded MQTT broker; the reader role joins it when the server lands).

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
    /// `user:pass@`). Repeatable.
    #[arg(long = "mqtt", value_name = "URL")]
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
    /// Reconnect a source that has delivered nothing for this long.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub watchdog: Duration,
}

/// Options of `meshlens run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub ingest: IngestArgs,
    /// Address of the embedded MQTT broker that observers publish to.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub mqtt_listen: SocketAddr,
}

fn build_config(
    args: &IngestArgs,
    extra_sources: Vec<SourceConfig>,
) -> Result<IngestConfig, String> {
    let mut decoder = Decoder {
        keyring: args.keys.keyring(),
        regions: args.keys.regions(),
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
        },
        maintenance_interval: Duration::from_secs(10),
        source_settings: SourceSettings {
            quiet_timeout: args.watchdog,
        },
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MESHLENS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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
    serve(cfg, None)
}

/// `meshlens run`.
pub fn run(args: RunArgs) -> ExitCode {
    init_logging();
    let addr = match ingest::broker::start(args.mqtt_listen) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("meshlens run: embedded MQTT broker: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("embedded MQTT broker listening on {addr}; observers publish to mqtt://{addr}");
    let local = match SourceConfig::from_url("embedded", &format!("mqtt://{addr}")) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    match build_config(&args.ingest, vec![local]) {
        Ok(cfg) => serve(cfg, Some(addr)),
        Err(e) => usage_error(&e),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("meshlens: {msg}");
    ExitCode::from(2)
}

/// Runs the writer role until SIGTERM or Ctrl-C, then drains and exits.
fn serve(cfg: IngestConfig, _broker: Option<SocketAddr>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshlens: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let db = cfg.db_path.clone();
        let ingest = match Ingest::start(cfg) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("meshlens: {}: {e}", db.display());
                return ExitCode::FAILURE;
            }
        };
        tracing::info!("writing {}", db.display());
        wait_for_signal().await;
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
