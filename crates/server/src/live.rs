//! The live feed: a tailer notices commits within milliseconds (`PRAGMA data_version`, checked
//! every 20 ms on its own read-only connection), reads every new observation past its
//! watermark and broadcasts it; each WebSocket client reads from a bounded ring and is told
//! when it lagged, so a slow client never slows ingest or anyone else.
//!
//! Sockets are a shared resource anyone can ask for, so each is bounded:
//! - at most [`MAX_CLIENTS`] in all and [`MAX_CLIENTS_PER_ADDRESS`] per client address (an
//!   IPv6 /64 counts as one), checked and taken under one lock, so concurrent upgrades cannot
//!   overshoot; and at most half the HTTP connection cap, which each socket's slot counts
//!   against, so the feed's viewers never take the API's last connection; the slot is held by the socket's task and freed when it ends, however it ends;
//! - a client that does not read is closed: a send that cannot complete within
//!   [`LIVENESS`]`.send_timeout` (the client's TCP window stays shut), or pings that go
//!   unanswered [`LIVENESS`]`.max_missed_pongs` times in a row;
//! - a browser may open one only from an `http(s)` origin that cannot be a DNS-rebinding page
//!   ([`origin_allowed`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meshcore::report::DecodeOptions;
use serde_json::{Value, json};
use store::Reader;
use store::time::iso;
use tokio::sync::broadcast;

use crate::AppState;

/// Messages buffered per client before it is told it lagged.
pub const CLIENT_BUFFER: usize = 1024;

/// Most WebSocket clients at once.
pub const MAX_CLIENTS: usize = 1000;

/// Most WebSocket clients from one address (an IPv6 /64 counts as one). A browser tab holds
/// one; a household or an office behind one address rarely has more tabs open, and one
/// client can no longer take every slot.
pub const MAX_CLIENTS_PER_ADDRESS: usize = 16;

/// How a client shows it is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// A ping every this often.
    pub ping_every: Duration,
    /// Closed when this many pings in a row got no pong (browsers answer pings on their own).
    pub max_missed_pongs: u32,
    /// Closed when one send cannot complete within this: the client is not reading.
    pub send_timeout: Duration,
}

/// The production [`Liveness`]: a client that stopped reading is gone within a minute.
pub const LIVENESS: Liveness = Liveness {
    ping_every: Duration::from_secs(20),
    max_missed_pongs: 2,
    send_timeout: Duration::from_secs(15),
};

/// The tailer's last message, when the server stops: clients end on it. (The channel itself
/// never closes while a client holds the server state, which holds its sender.) Every other
/// message is a JSON object, never empty.
const CLOSING: &str = "";

/// How often the tailer checks for commits.
const POLL: Duration = Duration::from_millis(20);

/// Observations read per query while catching up.
const CHUNK: i64 = 2000;

/// The newest committed observation as the tailer last saw it, so that `/api/healthz` answers
/// from memory (a health probe must not wait for a database connection).
#[derive(Debug, Default)]
pub struct Newest {
    /// Whether the tailer has looked at least once.
    known: AtomicBool,
    id: std::sync::atomic::AtomicI64,
    /// Unix ms, or `i64::MIN` for "no observation yet".
    received_at: std::sync::atomic::AtomicI64,
}

impl Newest {
    /// `(id, received_at)` of the newest observation (`(0, None)` for an empty database), or
    /// `None` before the tailer's first look.
    pub fn get(&self) -> Option<(i64, Option<i64>)> {
        if !self.known.load(Ordering::Acquire) {
            return None;
        }
        let at = self.received_at.load(Ordering::Relaxed);
        Some((
            self.id.load(Ordering::Relaxed),
            (at != i64::MIN).then_some(at),
        ))
    }

    fn set(&self, id: i64, received_at: Option<i64>) {
        self.id.store(id, Ordering::Relaxed);
        self.received_at
            .store(received_at.unwrap_or(i64::MIN), Ordering::Relaxed);
        self.known.store(true, Ordering::Release);
    }

    /// Reads the index end: one row, no scan.
    fn refresh(&self, c: &store::rusqlite::Connection) {
        let row = c.query_row(
            "SELECT id, received_at FROM observations ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        );
        match row {
            Ok((id, at)) => self.set(id, Some(at)),
            Err(store::rusqlite::Error::QueryReturnedNoRows) => self.set(0, None),
            Err(_) => {}
        }
    }
}

/// Starts the tailer thread. It stops when `stop` is set.
pub fn spawn_tailer(
    db: PathBuf,
    decode: DecodeOptions,
    tx: broadcast::Sender<Arc<str>>,
    generation: Arc<AtomicU64>,
    newest: Arc<Newest>,
    stop: Arc<AtomicBool>,
    capability: Arc<crate::capability::CapState>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // The starting point is read before this returns, not on the new thread: a row committed
    // once the server is up (a socket may already be subscribed) must be sent, however late
    // the thread gets to run on a loaded machine.
    let opened = Reader::open(&db).map(|reader| {
        let c = reader.conn();
        // It reads only the newest rows, which the WAL and the OS cache hold anyway.
        let _ = c.pragma_update(None, "cache_size", -crate::db::SCAN_CACHE_KIB);
        let watermark: i64 = c
            .query_row("SELECT coalesce(max(id), 0) FROM observations", [], |r| {
                r.get(0)
            })
            .unwrap_or(0);
        (reader, watermark)
    });
    std::thread::Builder::new()
        .name("meshlens-live".into())
        .spawn(move || {
            let (reader, mut watermark) = match opened {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("live feed disabled: {e}");
                    return;
                }
            };
            let c = reader.conn();
            newest.refresh(c);
            let mut version: i64 = -1;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(POLL);
                let v: i64 = c
                    .query_row("PRAGMA data_version", [], |r| r.get(0))
                    .unwrap_or(version);
                if v == version {
                    continue;
                }
                version = v;
                generation.fetch_add(1, Ordering::Relaxed);
                newest.refresh(c);
                if tx.receiver_count() == 0 {
                    // Nobody is watching: skip decoding and serializing what nobody would
                    // receive (at 20,000 observations/s that is most of this thread's work).
                    if let Ok(max) =
                        c.query_row("SELECT coalesce(max(id), 0) FROM observations", [], |r| {
                            r.get::<_, i64>(0)
                        })
                    {
                        watermark = watermark.max(max);
                    }
                    continue;
                }
                loop {
                    // A backlog of thousands of rows (a burst, a slow debug build) is drained a
                    // chunk at a time: stop between chunks when the server shuts down, so
                    // shutdown does not wait for every message of the backlog to be built.
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let topo = capability.current().topology.clone();
                    match new_observations(c, watermark, &decode, &topo) {
                        Ok(rows) => {
                            let n = rows.len() as i64;
                            for (id, msg) in rows {
                                watermark = watermark.max(id);
                                // No receivers is fine: nobody is watching.
                                let _ = tx.send(msg);
                            }
                            if n < CHUNK {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!("live feed query failed: {e}");
                            break;
                        }
                    }
                }
            }
            let _ = tx.send(Arc::from(CLOSING));
        })
}

/// Each new observation as one message. meshlens's keys (`id` the observation, `timestamp`
/// when it was heard, `observer`, `iata`, `path` as this observer heard it, the flat
/// `decoded`) and CoreScope's beside them: `first_seen`, `route_type`, `payload_type`,
/// `observer_id`, `decoded_json`, `path_json`, `direction`, `decoded.header`,
/// `decoded.payload`, `decoded.path` (its `{hops}` object; the flat hop list is `path` and
/// `decoded.path_hops`) and `packet`, the transmission as CoreScope's packets page reads it
/// (there `id` is the transmission and `timestamp` its first-seen time).
///
/// Each message also carries the copy's `resolved_path`, `resolved_confidence` and `hops`
/// (as observations do in the API), resolved from this copy alone with the current topology:
/// the other copies may not have arrived yet, and the feed must not query per observation.
fn new_observations(
    c: &store::rusqlite::Connection,
    after: i64,
    decode: &DecodeOptions,
    topo: &crate::topology::Topology,
) -> store::rusqlite::Result<Vec<(i64, Arc<str>)>> {
    let mut stmt = c.prepare_cached(
        "SELECT o.id, o.received_at, o.snr, o.rssi, o.head, ob.id, ob.name, ob.iata,
                t.id, t.hash, t.raw, t.observation_count, t.channel, t.first_seen,
                o.observer_idx, t.payload_type,
                CASE WHEN t.payload_type = 4 THEN t.from_pubkey END
         FROM observations o JOIN transmissions t ON t.id = o.transmission_id
         JOIN observers ob ON ob.idx = o.observer_idx
         WHERE o.id > ?1 ORDER BY o.id LIMIT ?2",
    )?;
    let rows = stmt.query_map(store::rusqlite::params![after, CHUNK], |r| {
        let head: Vec<u8> = r.get(4)?;
        let raw: Vec<u8> = r.get(10)?;
        let frame = meshcore::Packet::decode(&raw)
            .map(|p| [head.as_slice(), p.payload_bytes()].concat())
            .unwrap_or(raw);
        let decoded = crate::decode_for_api(&frame, decode);
        let id: i64 = r.get(0)?;
        let tx_id: i64 = r.get(8)?;
        let hash: String = r.get(9)?;
        let observer: String = r.get(5)?;
        let observer_name: Option<String> = r.get(6)?;
        let iata: Option<String> = r.get(7)?;
        let snr: Option<f64> = r.get(2)?;
        let rssi: Option<f64> = r.get(3)?;
        let observation_count: i64 = r.get(11)?;
        let first_seen = iso(r.get(13)?);
        let raw_hex = hex::encode(&frame);
        let decoded_json = crate::api::corescope::decoded_json(&decoded);
        let path_json = crate::api::corescope::path_json(&decoded);
        let route_type = decoded.get("route_type").cloned().unwrap_or(Value::Null);
        let payload_type = decoded.get("payload_type").cloned().unwrap_or(Value::Null);
        let packet = json!({
            "id": tx_id,
            "raw_hex": raw_hex,
            "hash": hash,
            "first_seen": first_seen,
            "timestamp": first_seen,
            "route_type": route_type,
            "payload_type": payload_type,
            "decoded_json": decoded_json,
            "observer_id": observer,
            "observer_name": observer_name,
            "observer_iata": iata,
            "snr": snr,
            "rssi": rssi,
            "path_json": path_json,
            "direction": Value::Null,
            "observation_count": observation_count,
        });
        let resolved = resolve_copy(
            topo,
            crate::topology::Group {
                hash: hash.clone(),
                payload_type: r.get(15)?,
                advert_from: r.get(16)?,
                payload: meshcore::Packet::decode(&frame)
                    .ok()
                    .map(|p| p.payload_bytes().to_vec()),
                copies: vec![crate::topology::Pending {
                    received_at: r.get(1)?,
                    observer: u32::try_from(r.get::<_, i64>(14)?).unwrap_or(u32::MAX),
                    head: head.clone(),
                    snr,
                }],
            },
            id,
            snr,
        );
        let mut msg = json!({"type": "packet", "data": {
            "id": id,
            "transmission_id": tx_id,
            "hash": hash,
            "timestamp": iso(r.get(1)?),
            "first_seen": first_seen,
            "snr": snr,
            "rssi": rssi,
            "observer": observer,
            "observer_id": observer,
            "observer_name": observer_name,
            "observer_iata": iata,
            "iata": iata,
            "observation_count": observation_count,
            "channel": r.get::<_, Option<String>>(12)?,
            "raw_hex": raw_hex,
            "route_type": route_type,
            "payload_type": payload_type,
            "decoded_json": decoded_json,
            "path_json": path_json,
            "direction": Value::Null,
            "path": decoded.get("path").cloned().unwrap_or(Value::Array(Vec::new())),
            "hash_size": decoded.get("hash_size").cloned().unwrap_or(Value::Null),
            "decoded": crate::api::corescope::decoded_object(&decoded),
            "packet": packet,
        }});
        if let Some(copy) = &resolved {
            crate::api::resolved::annotate_one(topo, copy, &mut msg["data"]);
        } else {
            msg["data"]["resolved_path"] = json!([]);
            msg["data"]["resolved_confidence"] = json!([]);
            msg["data"]["hops"] = json!([]);
        }
        Ok((id, Arc::<str>::from(msg.to_string())))
    })?;
    rows.collect()
}

/// One copy resolved alone (see [`new_observations`]); `None` when its path is not hops.
fn resolve_copy(
    topo: &crate::topology::Topology,
    group: crate::topology::Group,
    obs_id: i64,
    snr: Option<f64>,
) -> Option<crate::api::resolved::ResolvedCopy> {
    let (_, copies, mut solved) =
        crate::topology::resolve_group(&topo.dir, &topo.graph, &topo.observer_node, &group);
    let copy = copies.into_iter().next().flatten()?;
    let pending = group.copies.first()?;
    Some(crate::api::resolved::ResolvedCopy {
        obs_id,
        observer: pending.observer,
        received_at: pending.received_at,
        snr,
        direct: copy.direct,
        prefixes: copy
            .path
            .chunks(copy.hash_size.bytes())
            .map(hex::encode)
            .collect(),
        hops: solved.pop().unwrap_or_default(),
    })
}

/// The client's address, when the accept loop recorded it (`ConnectInfo`); without it the
/// per-address cap cannot apply, and only the total one does.
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// The host part of an origin or a `Host` header.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostName {
    Ip(IpAddr),
    /// Lowercase, without a trailing dot.
    Name(String),
}

impl HostName {
    /// Whether it can only be this machine: a loopback address, `localhost` or a name under
    /// `.localhost` (which browsers resolve to loopback themselves, never through DNS).
    fn is_loopback(&self) -> bool {
        match self {
            HostName::Ip(IpAddr::V6(v6)) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
            HostName::Ip(ip) => ip.is_loopback(),
            HostName::Name(n) => n == "localhost" || n.ends_with(".localhost"),
        }
    }
}

/// `host[:port]` (IPv6 in brackets), with `default_port` when none is given. `None` for
/// anything else: userinfo, a path, an empty or malformed host or port.
fn parse_authority(s: &str, default_port: u16) -> Option<(HostName, u16)> {
    let s = s.trim().to_ascii_lowercase();
    let port = |p: &str| -> Option<u16> {
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse().ok())
            .flatten()
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, tail) = rest.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        let port = match tail {
            "" => default_port,
            t => port(t.strip_prefix(':')?)?,
        };
        return Some((HostName::Ip(IpAddr::V6(ip)), port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, port(p)?),
        None => (s.as_str(), default_port),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some((HostName::Ip(IpAddr::V4(ip)), port));
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    valid.then(|| (HostName::Name(host.to_owned()), port))
}

/// An `Origin` header: `http` or `https` only, then exactly an authority. Returns the host,
/// the port (explicit or the scheme's) and the scheme's default port.
fn parse_origin(origin: &str) -> Option<(HostName, u16, u16)> {
    let (scheme, rest) = origin.trim().split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    // An origin has no path, query, fragment or userinfo.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@', '\\']) {
        return None;
    }
    let (host, port) = parse_authority(rest, default_port)?;
    Some((host, port, default_port))
}

/// Whether a browser page at the request's `Origin` may open the socket.
///
/// No `Origin`: not a browser (curl, scripts), no cross-site risk. Otherwise the origin must
/// be `http(s)` and one of:
/// - listed in `allowed` (exactly, or `*`);
/// - loopback (`localhost`, `127.0.0.0/8`, `[::1]`): only a page on this machine has one;
/// - an IP address equal to the request's `Host` (scheme's default port filled in): a
///   DNS-rebinding page has the attacker's *name* as its origin, and a browser only sends an
///   IP origin it really connected to, so such a page is served by this server.
///
/// - an http(s) origin whose host the operator named with `--allow-host` (exactly or under
///   `*.example.org`): the names this server is reached by are its own pages' origins too,
///   so a deployment behind a reverse proxy needs no separate `--allow-origin`.
///
/// A name is never trusted because it equals `Host`: in a rebinding attack the browser sends
/// the attacker's name in both.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    origin_allowed_with(headers, allowed, |_| false)
}

/// [`origin_allowed`], with `named` saying whether a host name was named by the operator.
pub fn origin_allowed_with(
    headers: &HeaderMap,
    allowed: &[String],
    named: impl Fn(&str) -> bool,
) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim();
    let listed = |a: &String| {
        let a = a.trim();
        a == "*"
            || a.trim_end_matches('/')
                .eq_ignore_ascii_case(origin.trim_end_matches('/'))
    };
    if allowed.iter().any(listed) {
        // The operator's own choice, whatever it is.
        return true;
    }
    let Some((host, port, default_port)) = parse_origin(origin) else {
        return false;
    };
    if host.is_loopback() {
        return true;
    }
    if let HostName::Name(n) = &host {
        return named(n);
    }
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| parse_authority(h, default_port))
        .is_some_and(|(h, p)| h == host && p == port)
}

/// The address a client counts under: IPv4-mapped IPv6 as IPv4, other IPv6 by its /64 (one
/// host usually has a whole /64 to pick addresses from).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (!0u128 << 64))),
        },
    }
}

/// Open sockets per (server, client address). The server is named by its `AppState`'s
/// address: `AppState` (in `lib.rs`) has no field for this map, and the address is unique
/// while an entry exists, because every entry belongs to a [`Slot`] that holds the state.
/// The total per server is `AppState::ws_clients`, changed only under the same lock, so the
/// check and the increment are one step.
static SLOTS: LazyLock<Mutex<HashMap<(usize, IpAddr), usize>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn slots() -> std::sync::MutexGuard<'static, HashMap<(usize, IpAddr), usize>> {
    // A panic elsewhere while holding the lock leaves plain counts behind: still usable.
    SLOTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// One admitted socket: its share of the caps, given back when dropped (socket closed, or the
/// upgrade never completed).
pub struct Slot {
    st: Arc<AppState>,
    key: Option<(usize, IpAddr)>,
}

/// Why a socket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// [`MAX_CLIENTS`] are open.
    Total,
    /// [`MAX_CLIENTS_PER_ADDRESS`] are open from this address.
    Address,
}

/// Takes a slot for a client at `peer` (per-address cap only when the address is known).
pub fn admit(st: &Arc<AppState>, peer: Option<IpAddr>) -> Result<Slot, Refused> {
    admit_with(
        st,
        peer,
        st.http.ws_cap(MAX_CLIENTS),
        MAX_CLIENTS_PER_ADDRESS,
    )
}

fn admit_with(
    st: &Arc<AppState>,
    peer: Option<IpAddr>,
    max: usize,
    per_address: usize,
) -> Result<Slot, Refused> {
    let key = peer.map(|ip| (Arc::as_ptr(st) as usize, client_key(ip)));
    let mut map = slots();
    if st.ws_clients.load(Ordering::Acquire) >= max {
        return Err(Refused::Total);
    }
    if let Some(k) = key {
        let n = map.entry(k).or_insert(0);
        if *n >= per_address {
            return Err(Refused::Address);
        }
        *n += 1;
    }
    st.ws_clients.fetch_add(1, Ordering::AcqRel);
    drop(map);
    Ok(Slot {
        st: st.clone(),
        key,
    })
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = slots();
        if let Some(k) = self.key
            && let Some(n) = map.get_mut(&k)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&k);
            }
        }
        self.st.ws_clients.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether a refusal or an eviction may be logged now (at most one a minute, process-wide:
/// a flood of them must not become a flood of log lines).
fn may_log() -> bool {
    static LAST: Mutex<Option<std::time::Instant>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let now = std::time::Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(60)) {
        return false;
    }
    *last = Some(now);
    true
}

/// `GET /ws`.
pub async fn ws(
    State(st): State<Arc<AppState>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed_with(&headers, &st.allowed_origins, |h| st.http.names_host(h)) {
        if may_log() {
            let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
            tracing::info!(
                ?origin,
                "refused a WebSocket from another site's page (list it with --allow-origin if it is yours; logged once a minute)"
            );
        }
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"error": "origin not allowed"})),
        )
            .into_response();
    }
    let slot = match admit(&st, peer.map(|p| p.ip())) {
        Ok(slot) => slot,
        Err(why) => {
            if may_log() {
                tracing::warn!(
                    ?peer,
                    ?why,
                    "refused a WebSocket: too many open (logged once a minute)"
                );
            }
            let (status, error) = match why {
                Refused::Total => (StatusCode::SERVICE_UNAVAILABLE, "too many live clients"),
                Refused::Address => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many live connections from this address",
                ),
            };
            return (
                status,
                [(header::RETRY_AFTER, "10")],
                axum::Json(json!({ "error": error })),
            )
                .into_response();
        }
    };
    let rx = st.live.subscribe();
    // Client messages are read only to notice pongs and closes: small bounds. The write
    // buffer is bounded too (each send waits for its flush, so it never holds more than one
    // message plus a frame).
    upgrade
        .max_message_size(4096)
        .max_frame_size(4096)
        .max_write_buffer_size(1 << 20)
        .on_upgrade(move |socket| client(socket, rx, slot))
}

/// Every path that is not a route: a WebSocket upgrade outside `/api/` (CoreScope's web app
/// opens its feed at `/`) joins the live feed as `/ws` does; anything else is the UI's files.
pub async fn ws_or_asset(State(st): State<Arc<AppState>>, req: axum::extract::Request) -> Response {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let api = req.uri().path().starts_with("/api/") || req.uri().path() == "/api";
    let (mut parts, _) = req.into_parts();
    if upgrade && !api {
        let peer = match Peer::from_request_parts(&mut parts, &st).await {
            Ok(p) => p,
            Err(never) => match never {},
        };
        return match WebSocketUpgrade::from_request_parts(&mut parts, &st).await {
            Ok(u) => ws(State(st), peer, parts.headers, u).await,
            Err(rejection) => rejection.into_response(),
        };
    }
    crate::web::asset(State(st), parts.uri, parts.headers).await
}

async fn client(mut socket: WebSocket, mut rx: broadcast::Receiver<Arc<str>>, slot: Slot) {
    let end = pump(&mut socket, &mut rx, &slot.st.live_sent, LIVENESS).await;
    match end {
        End::Closed | End::FeedClosed => {}
        End::SendTimedOut | End::NoPong => {
            if may_log() {
                tracing::info!(
                    "closed a WebSocket client that stopped reading ({end:?}; logged once a minute)"
                );
            }
            if end == End::NoPong {
                // Polite when it costs nothing; a client that reads nothing gets none.
                let close = Message::Close(Some(CloseFrame {
                    code: 1008,
                    reason: "no pong".into(),
                }));
                let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(close)).await;
            }
        }
    }
    // Dropping the socket closes the connection; dropping the slot frees it.
    drop(socket);
    drop(slot);
}

/// A WebSocket as [`pump`] uses it, so that the pump can be tested without a network.
trait Wire {
    fn send(&mut self, m: Message) -> impl Future<Output = Result<(), ()>> + Send;
    fn recv(&mut self) -> impl Future<Output = Option<Result<Message, ()>>> + Send;
}

impl Wire for WebSocket {
    async fn send(&mut self, m: Message) -> Result<(), ()> {
        WebSocket::send(self, m).await.map_err(|_| ())
    }

    async fn recv(&mut self) -> Option<Result<Message, ()>> {
        WebSocket::recv(self).await.map(|r| r.map_err(|_| ()))
    }
}

/// Why [`pump`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed, or the connection failed.
    Closed,
    /// The server is stopping.
    FeedClosed,
    /// A send could not complete in time: the client does not read.
    SendTimedOut,
    /// Pings went unanswered.
    NoPong,
}

/// Forwards the feed to one client until it closes or stops keeping up with [`Liveness`].
async fn pump<W: Wire>(
    socket: &mut W,
    rx: &mut broadcast::Receiver<Arc<str>>,
    sent: &AtomicU64,
    l: Liveness,
) -> End {
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + l.ping_every, l.ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut missed: u32 = 0;
    loop {
        // Biased: what the client sent (its pongs) counts before a ping is judged unanswered,
        // however late this task runs.
        let (out, packet) = tokio::select! {
            biased;
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return End::Closed,
                Some(Ok(Message::Pong(_))) => {
                    missed = 0;
                    continue;
                }
                // The feed is one-way; other messages are read (and discarded) only to keep
                // the connection flowing.
                Some(Ok(_)) => continue,
            },
            _ = ping.tick() => {
                if missed >= l.max_missed_pongs {
                    return End::NoPong;
                }
                missed += 1;
                (Message::Ping(Vec::new().into()), false)
            }
            m = rx.recv() => match m {
                Ok(text) if &*text == CLOSING => return End::FeedClosed,
                Ok(text) => (Message::Text(text.as_ref().into()), true),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    (Message::Text(json!({"type": "lagged", "missed": n}).to_string().into()), false)
                }
                Err(broadcast::error::RecvError::Closed) => return End::FeedClosed,
            },
        };
        match tokio::time::timeout(l.send_timeout, socket.send(out)).await {
            Ok(Ok(())) => {
                if packet {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Err(())) => return End::Closed,
            Err(_) => return End::SendTimedOut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        if let Some(host) = host {
            h.insert(header::HOST, host.parse().unwrap());
        }
        h
    }

    #[test]
    fn origins() {
        let ok = |o: Option<&str>, host: Option<&str>, allowed: &[&str]| {
            let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
            origin_allowed(&headers(o, host), &allowed)
        };
        let h = Some("192.0.2.5:3000");
        // Not a browser.
        assert!(ok(None, h, &[]));
        // The server's own page by IP, default ports filled in.
        assert!(ok(Some("http://192.0.2.5:3000"), h, &[]));
        assert!(ok(Some("http://192.0.2.5"), Some("192.0.2.5"), &[]));
        assert!(ok(Some("https://192.0.2.5"), Some("192.0.2.5:443"), &[]));
        assert!(ok(
            Some("http://[2001:db8::1]:3000"),
            Some("[2001:db8::1]:3000"),
            &[]
        ));
        // Loopback pages, whatever the Host.
        for o in [
            "http://127.0.0.1:3000",
            "http://localhost:8080",
            "https://app.localhost",
            "http://[::1]:3000",
            "http://127.9.9.9",
        ] {
            assert!(ok(Some(o), h, &[]), "{o}");
        }
        // Other schemes, never.
        for o in [
            "ftp://192.0.2.5:3000",
            "ws://127.0.0.1:3000",
            "file://",
            "null",
            "javascript:alert(1)",
        ] {
            assert!(!ok(Some(o), h, &[]), "{o}");
        }
        // Another site, or another port of this host.
        assert!(!ok(Some("https://evil.example"), h, &[]));
        assert!(!ok(Some("http://192.0.2.5:3001"), h, &[]));
        assert!(!ok(Some("http://192.0.2.6:3000"), h, &[]));
        // A name equal to a forged (or rebound) Host is not trusted...
        assert!(!ok(
            Some("http://evil.example:3000"),
            Some("evil.example:3000"),
            &[]
        ));
        assert!(!ok(
            Some("http://mesh.lan:3000"),
            Some("mesh.lan:3000"),
            &[]
        ));
        // ...but a listed origin is.
        assert!(ok(
            Some("https://mesh.example.org"),
            h,
            &["https://mesh.example.org"]
        ));
        assert!(ok(
            Some("https://MESH.example.org"),
            h,
            &["https://mesh.example.org/"]
        ));
        assert!(ok(Some("https://evil.example"), h, &["*"]));
        // Malformed origins and hosts.
        for o in [
            "http://",
            "http://a b",
            "http://192.0.2.5:3000/path",
            "http://user@192.0.2.5:3000",
            "http://192.0.2.5:99999",
            "http://192.0.2.5:",
            "http://[::1",
            "http://[::1]x",
            "http:192.0.2.5",
        ] {
            assert!(!ok(Some(o), h, &[]), "{o}");
        }
        assert!(!ok(Some("http://192.0.2.5:3000"), None, &[]));
        assert!(!ok(Some("http://192.0.2.5:3000"), Some("192.0.2.5:x"), &[]));
        let mut bad = HeaderMap::new();
        bad.insert(
            header::ORIGIN,
            axum::http::HeaderValue::from_bytes(b"http://\xff").unwrap(),
        );
        assert!(!origin_allowed(&bad, &[]));
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

    /// A socket whose client never sends (unless it answers pings) and whose sends either
    /// complete at once or never.
    struct FakeWire {
        incoming: tokio::sync::mpsc::UnboundedReceiver<Message>,
        loopback: tokio::sync::mpsc::UnboundedSender<Message>,
        sent: Vec<Message>,
        answers_pings: bool,
        sends_block: bool,
    }

    impl FakeWire {
        fn new(answers_pings: bool, sends_block: bool) -> FakeWire {
            let (loopback, incoming) = tokio::sync::mpsc::unbounded_channel();
            FakeWire {
                incoming,
                loopback,
                sent: Vec::new(),
                answers_pings,
                sends_block,
            }
        }
    }

    impl Wire for FakeWire {
        async fn send(&mut self, m: Message) -> Result<(), ()> {
            if self.sends_block {
                std::future::pending::<()>().await;
            }
            if self.answers_pings && matches!(m, Message::Ping(_)) {
                let _ = self.loopback.send(Message::Pong(Vec::new().into()));
            }
            self.sent.push(m);
            Ok(())
        }

        async fn recv(&mut self) -> Option<Result<Message, ()>> {
            self.incoming.recv().await.map(Ok)
        }
    }

    const FAST: Liveness = Liveness {
        ping_every: Duration::from_millis(10),
        max_missed_pongs: 2,
        send_timeout: Duration::from_millis(20),
    };

    /// Only ends a test that would otherwise hang; never reached on any machine.
    const LIMIT: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_client_that_never_answers_pings_is_closed() {
        let (_tx, mut rx) = broadcast::channel::<Arc<str>>(4);
        let mut w = FakeWire::new(false, false);
        let sent = AtomicU64::new(0);
        let end = tokio::time::timeout(LIMIT, pump(&mut w, &mut rx, &sent, FAST))
            .await
            .unwrap();
        assert_eq!(end, End::NoPong);
        // Exactly the allowed number of unanswered pings went out first.
        assert_eq!(w.sent.len(), 2);
        assert!(w.sent.iter().all(|m| matches!(m, Message::Ping(_))));
    }

    #[tokio::test]
    async fn a_client_that_answers_stays_and_gets_the_feed() {
        let (tx, mut rx) = broadcast::channel::<Arc<str>>(64);
        let mut w = FakeWire::new(true, false);
        let sent = AtomicU64::new(0);
        let pumped = async {
            // Many more pings than may go unanswered, then the server stops.
            let run = pump(&mut w, &mut rx, &sent, FAST);
            tokio::pin!(run);
            for _ in 0..10 {
                tokio::select! {
                    end = &mut run => return Some(end),
                    _ = tokio::time::sleep(FAST.ping_every * 2) => {}
                }
            }
            tx.send("{\"type\":\"packet\"}".into()).unwrap();
            // The tailer's last word when the server stops (the channel stays open).
            tx.send(CLOSING.into()).unwrap();
            Some(run.await)
        };
        let end = tokio::time::timeout(LIMIT, pumped).await.unwrap();
        assert_eq!(end, Some(End::FeedClosed));
        assert_eq!(sent.load(Ordering::Relaxed), 1);
        assert!(
            w.sent
                .iter()
                .filter(|m| matches!(m, Message::Ping(_)))
                .count()
                > 2
        );
    }

    #[tokio::test]
    async fn a_send_that_never_completes_closes_the_client() {
        let (tx, mut rx) = broadcast::channel::<Arc<str>>(4);
        tx.send("{}".into()).unwrap();
        let mut w = FakeWire::new(false, true);
        let sent = AtomicU64::new(0);
        let slow = Liveness {
            ping_every: Duration::from_secs(3600),
            ..FAST
        };
        let end = tokio::time::timeout(LIMIT, pump(&mut w, &mut rx, &sent, slow))
            .await
            .unwrap();
        assert_eq!(end, End::SendTimedOut);
        assert_eq!(sent.load(Ordering::Relaxed), 0);
    }
}
