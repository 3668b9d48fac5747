//! meshlens' writer role: MQTT sources → decode → the single SQLite writer, plus the
//! maintenance jobs (retention, node deactivation) that run whether or not a broker is
//! reachable.
//!
//! ```text
//! source task (per broker) ──┐  bounded channel   ┌──────────────┐
//! source task ───────────────┼──────────────────▶ │ writer thread │──▶ SQLite (WAL)
//! maintenance ticker ────────┘   (backpressure)   └──────────────┘
//! ```
//!
//! - [`message`]: topic and JSON parsing, lenient as observers require.
//! - [`decode`]: framing, hashing, advert verification, channel and region.
//! - [`mqtt`]: one task per broker, with backoff and a watchdog.
//! - [`pipeline`]: what happens to one publish, whichever broker delivered it.
//! - [`writer_thread`]: group commit, retention.
//! - [`stats`]: counters and per-source state for the health output.
//! - [`admin`]: the reader's admin requests (injected packets, node pruning, the geo
//!   filter), carried out by the writer.

pub mod admin;
#[cfg(feature = "embedded-broker")]
pub mod broker;
pub mod config;
pub mod decode;
pub mod graph;
pub mod mbcap;
pub mod message;
pub mod mqtt;
pub mod pipeline;
pub mod stats;
pub mod token;
pub mod writer_thread;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use store::{Delivery, Item, Observer, Status, Writer};
use tokio::sync::{mpsc, watch};

use crate::config::SourceConfig;
use crate::decode::Decoder;
use crate::message::StatusMessage;
use crate::mqtt::SourceSettings;
use crate::stats::Stats;
use crate::writer_thread::{Maintenance, WriterMsg, now_ms};

/// Everything the writer role needs.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// `<data-dir>/meshlens.db`.
    pub db_path: PathBuf,
    /// Brokers to subscribe to.
    pub sources: Vec<SourceConfig>,
    /// Channel keys and regions.
    pub decoder: Decoder,
    /// Retention.
    pub maintenance: Maintenance,
    /// How often a maintenance step runs.
    pub maintenance_interval: Duration,
    /// Watchdog.
    pub source_settings: SourceSettings,
    /// Where to publish counters and source states every second for a separate reader
    /// process (`<data-dir>/ingest-status.json`); `None` when the reader shares the process.
    pub status_file: Option<PathBuf>,
    /// The reader's capability snapshot to persist, and how often (at start, then every).
    pub mbcap: Option<(PathBuf, Duration)>,
}

/// A running writer role.
pub struct Ingest {
    stats: Arc<Stats>,
    decoder: Arc<Decoder>,
    shutdown: watch::Sender<bool>,
    writer_tx: mpsc::Sender<WriterMsg>,
    writer: std::thread::JoinHandle<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Ingest {
    /// Opens (and migrates) the database, starts the writer thread, the maintenance ticker and
    /// one task per source. Must be called inside a Tokio runtime.
    pub fn start(cfg: IngestConfig) -> Result<Ingest, store::Error> {
        let writer = Writer::open(&cfg.db_path, now_ms())?;
        let stats = Arc::new(Stats::default());
        let (writer_tx, writer_rx) = mpsc::channel(writer_thread::QUEUE_CAPACITY);
        let writer = {
            let stats = stats.clone();
            let maint = cfg.maintenance;
            std::thread::Builder::new()
                .name("meshlens-writer".into())
                .spawn(move || writer_thread::run(writer, writer_rx, stats, maint))
                .map_err(|source| store::Error::DataDir {
                    path: cfg.db_path.clone(),
                    source,
                })?
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        {
            // Maintenance runs on its own clock, independent of any broker.
            let tx = writer_tx.clone();
            let mut stop = shutdown_rx.clone();
            let every = cfg.maintenance_interval.max(Duration::from_millis(10));
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if tx.send(WriterMsg::Maintain).await.is_err() {
                                return;
                            }
                        }
                        _ = stop.changed() => return,
                    }
                }
            }));
        }
        if let Some((path, every)) = cfg.mbcap.clone() {
            let tx = writer_tx.clone();
            let mut stop = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if tx.send(WriterMsg::ApplySnapshot(path.clone())).await.is_err() {
                                return;
                            }
                        }
                        _ = stop.changed() => return,
                    }
                }
            }));
        }
        if let Some(path) = cfg.status_file.clone() {
            let stats = stats.clone();
            let mut stop = shutdown_rx.clone();
            let started_at = now_ms();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop.changed() => return,
                    }
                    let mut v = stats.to_json();
                    v["pid"] = std::process::id().into();
                    v["started_at"] = started_at.into();
                    v["written_at"] = now_ms().into();
                    let path = path.clone();
                    let written = tokio::task::spawn_blocking(move || {
                        crate::stats::write_json_atomically(&path, &v)
                    })
                    .await;
                    if let Ok(Err(e)) = written
                        && stats.should_log("status_file").is_some()
                    {
                        tracing::warn!("cannot write the ingest status file: {e}");
                    }
                }
            }));
        }
        let decoder = Arc::new(cfg.decoder);
        for src in cfg.sources {
            tasks.push(tokio::spawn(mqtt::run(
                src,
                cfg.source_settings.clone(),
                decoder.clone(),
                writer_tx.clone(),
                stats.clone(),
                shutdown_rx.clone(),
            )));
        }
        Ok(Ingest {
            stats,
            decoder,
            shutdown,
            writer_tx,
            writer,
            tasks,
        })
    }

    /// Counters and source states.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// A publish pipeline into this writer for an in-process source named `name`.
    pub fn pipeline(&self, name: &str, broker: &str) -> Result<pipeline::Pipeline, String> {
        let cfg = SourceConfig::from_url(name, broker)?;
        Ok(pipeline::Pipeline::new(
            cfg,
            self.decoder.clone(),
            self.writer_tx.clone(),
            self.stats.clone(),
        ))
    }

    /// Serves the embedded MQTT broker on `listeners`, its publishes going straight into this
    /// writer (source `embedded`). It stops with [`Ingest::shutdown`], before the writer drains.
    #[cfg(feature = "embedded-broker")]
    pub fn serve_embedded_broker(
        &mut self,
        listeners: Vec<broker::Listener>,
        tls: Option<broker::TlsFiles>,
        settings: broker::BrokerSettings,
    ) -> Result<Vec<(broker::Transport, std::net::SocketAddr)>, String> {
        let first = listeners
            .first()
            .and_then(|l| l.socket.local_addr().ok())
            .ok_or_else(|| "no MQTT listener".to_owned())?;
        let pipeline = self.pipeline("embedded", &format!("mqtt://{first}"))?;
        let b = broker::serve(
            listeners,
            tls,
            Some(pipeline),
            self.stats.clone(),
            settings,
            self.shutdown.subscribe(),
        )?;
        let addrs = b.listeners.clone();
        self.tasks.push(tokio::spawn(b.join()));
        Ok(addrs)
    }

    /// Serves the reader's admin requests from `<data_dir>/admin-requests/` ([`admin`]), and
    /// seeds the stored geo filter with the config file's (`None`: the file has none).
    pub async fn serve_admin_queue(
        &mut self,
        data_dir: &std::path::Path,
        config_geo_filter: Option<analytics::geo::GeoFilter>,
    ) -> Result<(), String> {
        let seeded = admin::run_on_writer(
            &self.writer_tx,
            admin::WriterOp::SeedGeoFilter(config_geo_filter),
        )
        .await;
        if seeded["ok"] != true {
            return Err(format!("cannot store the geo filter: {}", seeded["error"]));
        }
        // Adverts are judged by the filter in force (the file's, or the API's since).
        self.decoder.set_geo_filter(
            analytics::geo::GeoFilter::from_json(&seeded["geo_filter"])
                .ok()
                .flatten(),
        );
        let pipeline = self.pipeline("api", "mqtt://127.0.0.1:1883")?;
        self.tasks.push(tokio::spawn(admin::run(
            handoff::Queue::new(data_dir, handoff::admin::ADMIN_QUEUE),
            pipeline,
            self.writer_tx.clone(),
            self.decoder.clone(),
            self.stats.clone(),
            self.shutdown.subscribe(),
        )));
        Ok(())
    }

    /// A sender into the writer (for in-process producers such as an embedded broker link).
    pub fn sender(&self) -> mpsc::Sender<WriterMsg> {
        self.writer_tx.clone()
    }

    /// Waits until everything queued so far is committed.
    pub async fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.writer_tx.send(WriterMsg::Flush(tx)).await.is_ok() {
            let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
        }
    }

    /// Stops the sources, lets the writer commit everything received, and waits for it.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        drop(self.writer_tx);
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }
}

/// A writer item from a packet message received at `received_at`, with what its envelope's
/// `timestamp` (`sent_at`) says about the observer's clock. What the pipeline does with every
/// packet; public so that tests can choose the receipt time.
pub fn packet_item(
    decoder: &Decoder,
    msg: message::PacketMessage,
    sent_at: Option<message::SentAt>,
    received_at: i64,
) -> (Item, decode::Outcome) {
    let (mut item, outcome) = decoder.item(msg, received_at);
    if let Item::Packet(r) = &mut item {
        r.clock = sent_at.and_then(|t| t.clock_reading(received_at));
    }
    (item, outcome)
}

/// A writer item from a status message. `retained` marks a broker's stored copy: history,
/// which the writer lets fill in unknown fields but never lets make the observer look alive.
/// The status' own `timestamp` is kept only when plausible ([`message::SentAt::plausible`]).
pub fn status_item(s: StatusMessage, received_at: i64, retained: bool) -> Item {
    Item::Status(Status {
        observer: s.observer.map(|o| Observer {
            id: o.id,
            name: s.origin.clone(),
            iata: Some(o.iata),
        }),
        received_at,
        delivery: if retained {
            Delivery::Retained
        } else {
            Delivery::Live
        },
        sent_at: s.sent_at.and_then(|t| t.plausible(received_at)),
        // A retained status' time is history, not a reading of the clock; so is an `offline`
        // status' (an uploader's last will carries the time it was written, at connect).
        clock: (!retained
            && !s
                .status
                .as_deref()
                .is_some_and(|v| v.eq_ignore_ascii_case("offline")))
        .then(|| s.sent_at.and_then(|t| t.clock_reading(received_at)))
        .flatten(),
        status: s.status,
        model: s.model,
        firmware: s.firmware,
        client_version: s.client_version,
        radio: s.radio,
        battery_mv: s.battery_mv,
        uptime_secs: s.uptime_secs,
        noise_floor: s.noise_floor,
        tx_air_secs: s.tx_air_secs,
        rx_air_secs: s.rx_air_secs,
        recv_errors: s.recv_errors,
        queue_len: s.queue_len,
        debug_flags: s.debug_flags,
    })
}
