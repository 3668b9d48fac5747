//! The embedded MQTT broker behind `meshlens run`: observers publish to it directly, and each
//! publish goes straight into the ingest [`Pipeline`] on the connection's own task.
//!
//! Why not a general-purpose broker with meshlens subscribed to it (the design before this
//! one, with rumqttd): a broker acknowledges a publish when it is in its own log, and rumqttd's
//! log drops its oldest segment when it is full whether or not the subscriber has read it
//! (`segments::CommitLog::apply_retention`), then moves the slow subscriber's cursor to the
//! head. Under a burst the writer fell behind, and acknowledged messages vanished without a
//! counter (121,138 of 200,000 stored in one run). Here nothing stands between the socket and
//! the writer's bounded queue:
//!
//! - A publish is read, parsed and decoded on the connection's task, then waits for room in
//!   the writer's queue. While it waits, the connection reads nothing more, so TCP flow control
//!   slows the publisher: backpressure, whatever the QoS, instead of loss.
//! - QoS 1 is acknowledged (PUBACK; PUBREC for QoS 2) only once the writer has *committed* the
//!   item, in the order the publishes arrived. An acknowledged observation survives `kill -9`.
//! - Other MQTT clients may still subscribe (`mosquitto_sub`, a second meshlens): they get
//!   QoS 0 copies through a bounded queue each; a subscriber that does not keep up has copies
//!   shed, counted per source (`shed` in `/api/healthz`, `broker.subscriber_shed` in
//!   `/metrics`), never slowing ingest. Retained messages are kept, bounded in count and bytes.
//!
//! [`start`] runs a standalone broker (no pipeline) on its own thread, for tests and tools that
//! need a broker to subscribe to.

pub mod codec;
mod connection;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use crate::pipeline::Pipeline;
use crate::stats::Stats;

/// Limits of the embedded broker.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Connections open at once; more are refused and counted.
    pub max_connections: usize,
    /// Largest packet read into memory. A PUBLISH beyond it is skipped (read and discarded
    /// in small pieces), counted and acknowledged; the connection lives on.
    pub max_packet: usize,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout: Duration,
    /// Copies queued per subscriber before they are shed.
    pub subscriber_queue: usize,
    /// Retained messages kept (topics, bytes).
    pub max_retained: (usize, usize),
    /// QoS 1 and 2 publishes of one connection awaiting their commit; at the limit the
    /// connection reads nothing more until acknowledgements go out.
    pub max_pending_acks: usize,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            max_connections: 4_096,
            max_packet: 128 * 1024,
            connect_timeout: Duration::from_secs(10),
            subscriber_queue: 1_024,
            max_retained: (4_096, 8 * 1024 * 1024),
            max_pending_acks: 1_024,
        }
    }
}

/// State shared by every connection of one broker.
struct Shared {
    pipeline: Option<Pipeline>,
    stats: Arc<Stats>,
    /// Name of the per-source entry in the health output.
    source: String,
    settings: BrokerSettings,
    connections: AtomicUsize,
    next_id: AtomicU64,
    router: Mutex<Router>,
}

/// Who is subscribed to what, retained messages, and which connection holds a client id.
#[derive(Default)]
struct Router {
    subscribers: HashMap<u64, Subscriber>,
    retained: BTreeMap<String, Vec<u8>>,
    retained_bytes: usize,
    /// Client id → (connection, its takeover signal).
    clients: HashMap<String, (u64, Arc<Notify>)>,
}

struct Subscriber {
    filters: Vec<String>,
    out: mpsc::Sender<Vec<u8>>,
}

impl Shared {
    fn new(
        pipeline: Option<Pipeline>,
        stats: Arc<Stats>,
        source: String,
        settings: BrokerSettings,
    ) -> Shared {
        Shared {
            pipeline,
            stats,
            source,
            settings,
            connections: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            router: Mutex::new(Router::default()),
        }
    }

    /// Hands a publish to subscribers (QoS 0 copies) and keeps it if retained.
    fn route(&self, topic: &str, payload: &[u8], retain: bool) {
        let Ok(mut r) = self.router.lock() else {
            return;
        };
        if retain {
            self.retain(&mut r, topic, payload);
        }
        if r.subscribers.is_empty() {
            return;
        }
        let mut frame: Option<Vec<u8>> = None;
        let mut shed = 0u64;
        for sub in r.subscribers.values() {
            if !sub.filters.iter().any(|f| codec::matches(f, topic)) {
                continue;
            }
            let f = frame
                .get_or_insert_with(|| codec::encode_publish(topic, payload, false))
                .clone();
            if sub.out.try_send(f).is_err() {
                shed += 1;
            }
        }
        drop(r);
        if shed > 0 {
            self.stats.add("broker.subscriber_shed", shed);
            self.stats.source(&self.source, |s| s.shed += shed);
            if let Some(n) = self.stats.should_log("broker.subscriber_shed") {
                tracing::warn!(
                    "embedded broker: a subscriber is not keeping up; QoS 0 copies shed ({n} more reports suppressed)"
                );
            }
        }
    }

    fn retain(&self, r: &mut Router, topic: &str, payload: &[u8]) {
        if let Some(old) = r.retained.remove(topic) {
            r.retained_bytes -= old.len() + topic.len();
        }
        if payload.is_empty() {
            return;
        }
        let (max_topics, max_bytes) = self.settings.max_retained;
        if r.retained.len() >= max_topics
            || r.retained_bytes + payload.len() + topic.len() > max_bytes
        {
            self.stats.incr("broker.retained_refused");
            return;
        }
        r.retained_bytes += payload.len() + topic.len();
        r.retained.insert(topic.to_owned(), payload.to_vec());
    }
}

/// A broker serving inside the current Tokio runtime.
pub struct EmbeddedBroker {
    /// The address it listens on.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Waits until the accept loop and every connection have ended (after the shutdown signal
    /// given to [`serve`] turned true).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Binds `listen` now, so that a busy port is a clear error before anything else starts.
pub fn bind(listen: SocketAddr) -> Result<std::net::TcpListener, String> {
    let l = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(l)
}

/// Serves MQTT on `listener` until `shutdown` turns true. Publishes go to `pipeline` (when
/// given) and to subscribers; `stats` gets the broker's counters under source `source`. Must be
/// called inside a Tokio runtime.
pub fn serve(
    listener: std::net::TcpListener,
    pipeline: Option<Pipeline>,
    stats: Arc<Stats>,
    settings: BrokerSettings,
    mut shutdown: watch::Receiver<bool>,
) -> Result<EmbeddedBroker, String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    let source = pipeline
        .as_ref()
        .map_or_else(|| "embedded".to_owned(), |p| p.source_name().to_owned());
    stats.source(&source, |s| {
        s.state = "listening";
        s.broker = format!("mqtt://{addr} (embedded)");
    });
    let shared = Arc::new(Shared::new(pipeline, stats, source, settings));
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        break;
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let n = shared.connections.fetch_add(1, Ordering::AcqRel);
                        if n >= shared.settings.max_connections {
                            shared.connections.fetch_sub(1, Ordering::AcqRel);
                            shared.stats.incr("broker.connections_refused");
                            drop(stream);
                            continue;
                        }
                        let shared = shared.clone();
                        let stop = shutdown.clone();
                        conns.spawn(async move {
                            connection::run(stream, peer, &shared, stop).await;
                            shared.connections.fetch_sub(1, Ordering::AcqRel);
                            shared.stats.source(&shared.source, |s| {
                                s.clients = shared.connections.load(Ordering::Acquire) as u64;
                            });
                        });
                    }
                    Err(e) => {
                        // Out of descriptors or a reset before accept: wait a little, go on.
                        shared.stats.incr("broker.accept_errors");
                        if shared.stats.should_log("broker.accept_error").is_some() {
                            tracing::warn!("embedded broker: accept failed: {e}");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        while conns.join_next().await.is_some() {}
        shared.stats.source(&shared.source, |s| s.state = "stopped");
    });
    Ok(EmbeddedBroker { addr, task })
}

/// Starts a standalone broker (no ingest pipeline: publishes only go to subscribers) on its
/// own thread and returns its address; for tests and tools. It runs until the process ends.
pub fn start(listen: SocketAddr) -> Result<SocketAddr, String> {
    let listener = bind(listen)?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("meshlens-broker".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let (_keep, stop) = watch::channel(false);
                let stats = Arc::new(Stats::default());
                // Forward what a general broker would (up to 1 MiB), so that subscribers'
                // own size limits are what gets tested.
                let settings = BrokerSettings {
                    max_packet: 1024 * 1024 + 1024,
                    ..BrokerSettings::default()
                };
                match serve(listener, None, stats, settings, stop) {
                    Ok(b) => {
                        let _ = ready_tx.send(Ok(()));
                        b.join().await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| e.to_string())?;
    ready_rx
        .recv()
        .map_err(|_| "embedded broker thread ended".to_owned())??;
    Ok(addr)
}
