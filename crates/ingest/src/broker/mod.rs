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
//! Listeners: plain TCP, TLS, WebSocket and secure WebSocket, each on its own address
//! ([`Listener`]); who may connect and publish is [`auth`]'s decision.
//!
//! [`start`] runs a standalone broker (no pipeline) on its own thread, for tests and tools that
//! need a broker to subscribe to.

pub mod auth;
pub mod codec;
mod connection;
mod tls;
mod ws;

pub use tls::TlsFiles;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
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
    /// Who may connect and publish.
    pub auth: auth::AuthConfig,
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
            auth: auth::AuthConfig {
                clock_skew: Duration::from_secs(60),
                ..auth::AuthConfig::default()
            },
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

/// How clients reach a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// MQTT over TCP (`mqtt://`).
    Tcp,
    /// MQTT over TLS (`mqtts://`).
    Tls,
    /// MQTT over WebSocket (`ws://`).
    Ws,
    /// MQTT over WebSocket over TLS (`wss://`).
    Wss,
}

impl Transport {
    fn scheme(self) -> &'static str {
        match self {
            Transport::Tcp => "mqtt",
            Transport::Tls => "mqtts",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    fn needs_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }
}

/// A bound listener of the broker.
#[derive(Debug)]
pub struct Listener {
    /// What it speaks.
    pub transport: Transport,
    /// The bound socket (see [`bind`]).
    pub socket: std::net::TcpListener,
}

impl Listener {
    /// Binds `addr` for `transport`.
    pub fn bind(transport: Transport, addr: SocketAddr) -> Result<Listener, String> {
        Ok(Listener {
            transport,
            socket: bind(addr)?,
        })
    }

    fn addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    /// Whether only this machine can reach it.
    pub fn is_loopback(&self) -> bool {
        self.addr().is_some_and(|a| is_loopback(a.ip()))
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Refuses a configuration that would let anyone on the network publish without the operator
/// having said so: a listener reachable from other machines needs `--mqtt-require-auth` (token
/// or password sign-in only), `--mqtt-passwords`, or `--mqtt-allow-anonymous`.
pub fn check_exposure(listeners: &[Listener], auth: &auth::AuthConfig) -> Result<(), String> {
    let decided = auth.require_auth || auth.allow_anonymous || auth.passwords.is_some();
    match listeners.iter().find(|l| !l.is_loopback()) {
        Some(l) if !decided => Err(format!(
            "the {} listener on {} is reachable from other machines, where anyone could \
             publish as any observer. Choose one: --mqtt-require-auth (observers sign in with \
             meshcoretomqtt's token auth, or as users of --mqtt-passwords FILE), or \
             --mqtt-allow-anonymous (anyone may publish). Anonymous clients are always \
             accepted on loopback listeners unless --mqtt-require-auth is given.",
            l.transport.scheme(),
            l.addr().map_or_else(|| "?".to_owned(), |a| a.to_string()),
        )),
        _ => Ok(()),
    }
}

/// A broker serving inside the current Tokio runtime.
pub struct EmbeddedBroker {
    /// The address of the first listener.
    pub addr: SocketAddr,
    /// Every listener's transport and address.
    pub listeners: Vec<(Transport, SocketAddr)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Waits until the accept loops and every connection have ended (after the shutdown
    /// signal given to [`serve`] turned true).
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds `listen` now, so that a busy port is a clear error before anything else starts.
pub fn bind(listen: SocketAddr) -> Result<std::net::TcpListener, String> {
    let l = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(l)
}

/// Serves MQTT on `listeners` until `shutdown` turns true. Publishes go to `pipeline` (when
/// given) and to subscribers; `stats` gets the broker's counters under the pipeline's source
/// name (`embedded` without one). TLS listeners need `tls`. Must be called inside a Tokio
/// runtime.
pub fn serve(
    listeners: Vec<Listener>,
    tls: Option<TlsFiles>,
    pipeline: Option<Pipeline>,
    stats: Arc<Stats>,
    settings: BrokerSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<EmbeddedBroker, String> {
    if listeners.is_empty() {
        return Err("no MQTT listener".into());
    }
    let tls = match (listeners.iter().any(|l| l.transport.needs_tls()), tls) {
        (true, Some(files)) => Some(Arc::new(tls::Reloader::new(files, stats.clone())?)),
        (true, None) => {
            return Err(
                "TLS listeners need a certificate and key (--mqtt-tls-cert, --mqtt-tls-key)".into(),
            );
        }
        (false, _) => None,
    };
    let source = pipeline
        .as_ref()
        .map_or_else(|| "embedded".to_owned(), |p| p.source_name().to_owned());
    let mut addrs = Vec::new();
    for l in &listeners {
        let a = l.socket.local_addr().map_err(|e| e.to_string())?;
        addrs.push((l.transport, a));
    }
    let shown: Vec<String> = addrs
        .iter()
        .map(|(t, a)| format!("{}://{a}", t.scheme()))
        .collect();
    stats.source(&source, |s| {
        s.state = "listening";
        s.broker = format!("{} (embedded)", shown.join(" "));
    });
    let shared = Arc::new(Shared::new(pipeline, stats, source, settings));
    let mut tasks = Vec::new();
    for l in listeners {
        let loopback = l.is_loopback();
        let listener = tokio::net::TcpListener::from_std(l.socket).map_err(|e| e.to_string())?;
        tasks.push(tokio::spawn(accept_loop(
            listener,
            l.transport,
            loopback,
            tls.clone(),
            shared.clone(),
            shutdown.clone(),
        )));
    }
    Ok(EmbeddedBroker {
        addr: addrs[0].1,
        listeners: addrs,
        tasks,
    })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    transport: Transport,
    loopback: bool,
    tls: Option<Arc<tls::Reloader>>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
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
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    let stop = shutdown.clone();
                    let tls = tls.clone();
                    conns.spawn(async move {
                        handshake_and_run(stream, peer, transport, loopback, tls, &shared, stop).await;
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
}

/// The TLS and WebSocket layers a transport needs, then the MQTT connection. Handshakes share
/// the CONNECT timeout, so a client that opens a socket and says nothing costs one slot for at
/// most that long.
async fn handshake_and_run(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    transport: Transport,
    loopback: bool,
    tls: Option<Arc<tls::Reloader>>,
    shared: &Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let limit = shared.settings.connect_timeout;
    let ws_max = shared.settings.max_packet + 1024;
    let stats = &shared.stats;
    let tls_accept = |stream| {
        let acceptor = tls.as_ref().and_then(|t| t.acceptor());
        async move {
            let acceptor = acceptor.ok_or_else(|| "no TLS configuration".to_owned())?;
            match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("TLS handshake timed out".to_owned()),
            }
        }
    };
    match transport {
        Transport::Tcp => connection::run(stream, peer, loopback, shared, stop).await,
        Transport::Tls => match tls_accept(stream).await {
            Ok(s) => connection::run(s, peer, loopback, shared, stop).await,
            Err(_) => stats.incr("broker.tls_handshake_failures"),
        },
        Transport::Ws => match tokio::time::timeout(limit, ws::accept(stream, ws_max)).await {
            Ok(Ok(s)) => connection::run(s, peer, loopback, shared, stop).await,
            _ => stats.incr("broker.ws_handshake_failures"),
        },
        Transport::Wss => match tls_accept(stream).await {
            Ok(s) => match tokio::time::timeout(limit, ws::accept(s, ws_max)).await {
                Ok(Ok(s)) => connection::run(s, peer, loopback, shared, stop).await,
                _ => stats.incr("broker.ws_handshake_failures"),
            },
            Err(_) => stats.incr("broker.tls_handshake_failures"),
        },
    }
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
                let listeners = vec![Listener {
                    transport: Transport::Tcp,
                    socket: listener,
                }];
                match serve(listeners, None, None, stats, settings, stop) {
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
