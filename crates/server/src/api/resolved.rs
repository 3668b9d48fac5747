//! Resolved paths for the API: one packet's copies resolved on demand with the current
//! [`Topology`] (observations' `resolved_path`, `resolved_confidence` and `hops`), and a bounded
//! scan of a window's observations resolved packet by packet, shared by the aggregate routes
//! (`/api/analytics/topology`, `/distance`, `/subpaths*`, `/api/nodes/{pk}/paths`, `/reach`).
//!
//! Per packet: one indexed query for its own rows (observations by transmission id), then
//! [`topology::resolve_group`] (belief propagation over the packet's copies; bounded by the
//! packet's size). A hop counts as resolved from [`hops::RESOLVED`]; below it the API says
//! `null` and lists the candidates with their probabilities.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use analytics::hops::{self, Hop, NodeId};
use serde_json::{Value, json};
use store::rusqlite::Connection;

use crate::db::sql;
use crate::error::{ApiError, ApiResult};
use crate::topology::{self, Group, Pending, Topology};

/// Most copies of one packet resolved on demand (the detail lists at most 500).
pub const MAX_COPIES: i64 = 500;

/// Candidates listed per hop at most.
pub const MAX_CANDIDATES: usize = 8;

/// One copy of a packet, resolved.
#[derive(Debug, Clone)]
pub struct ResolvedCopy {
    /// `observations.id`.
    pub obs_id: i64,
    /// Observer index.
    pub observer: u32,
    /// Unix ms.
    pub received_at: i64,
    /// SNR, dB.
    pub snr: Option<f64>,
    /// Direct route (the path is the remaining route).
    pub direct: bool,
    /// Hop prefixes, lowercase hex, in path order (empty when the path is not hops).
    pub prefixes: Vec<String>,
    /// One resolution per prefix.
    pub hops: Vec<Hop>,
}

impl ResolvedCopy {
    /// The node of hop `i` when it resolves at [`hops::RESOLVED`].
    pub fn node(&self, i: usize) -> Option<NodeId> {
        self.hops.get(i).and_then(|h| h.resolved(hops::RESOLVED))
    }
}

/// One packet with its copies resolved.
#[derive(Debug, Clone)]
pub struct ResolvedPacket {
    /// `transmissions.id`.
    pub tx: i64,
    /// Packet hash, 16 hex.
    pub hash: String,
    /// Payload type.
    pub payload_type: i64,
    /// Unix ms.
    pub first_seen: i64,
    /// The verified origin, when it is a known node (adverts, anonymous requests).
    pub origin: Option<NodeId>,
    /// Copies in receipt order.
    pub copies: Vec<ResolvedCopy>,
}

/// The copies' rows of one packet as read: observation id, SNR, and the pending copy.
type CopyRow = (i64, Option<f64>, Pending);

/// Resolves one group and turns it into a [`ResolvedPacket`].
fn resolve_rows(
    topo: &Topology,
    tx: i64,
    first_seen: i64,
    group: &Group,
    rows: &[CopyRow],
) -> ResolvedPacket {
    let (ends, copies, solved) =
        topology::resolve_group(&topo.dir, &topo.graph, &topo.observer_node, group);
    let out = rows
        .iter()
        .zip(copies.iter().zip(solved))
        .map(|((obs_id, snr, p), (copy, hops))| {
            let (direct, prefixes) = match copy {
                Some(c) => (
                    c.direct,
                    c.path
                        .chunks(c.hash_size.bytes())
                        .map(hex::encode)
                        .collect(),
                ),
                None => (false, Vec::new()),
            };
            ResolvedCopy {
                obs_id: *obs_id,
                observer: p.observer,
                received_at: p.received_at,
                snr: *snr,
                direct,
                prefixes,
                hops,
            }
        })
        .collect();
    ResolvedPacket {
        tx,
        hash: group.hash.clone(),
        payload_type: group.payload_type,
        first_seen,
        origin: match ends.origin {
            hops::Endpoint::Known(n) => Some(n),
            _ => None,
        },
        copies: out,
    }
}

/// SQL of a transmission's advert origin only when its signature did not fail.
const VERIFIED_FROM: &str = "CASE WHEN t.payload_type = 4 AND NOT EXISTS (SELECT 1 FROM \
     rejected_packets r WHERE r.hash = t.hash AND r.reason = 'invalid_signature') \
     THEN t.from_pubkey END";

/// Resolves the copies of transmission `tx` (its first [`MAX_COPIES`] observations) with
/// `topo`; `None` when there is no such transmission.
pub fn resolve_tx(c: &Connection, topo: &Topology, tx: i64) -> ApiResult<Option<ResolvedPacket>> {
    let mut stmt = sql(c.prepare_cached(&format!(
        "SELECT t.hash, t.payload_type, {VERIFIED_FROM}, t.raw, t.first_seen
         FROM transmissions t WHERE t.id = ?1"
    )))?;
    let head = stmt.query_row([tx], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Vec<u8>>(3)?,
            r.get::<_, i64>(4)?,
        ))
    });
    let (hash, payload_type, advert_from, raw, first_seen) = match head {
        Ok(h) => h,
        Err(store::rusqlite::Error::QueryReturnedNoRows) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut stmt = sql(c.prepare_cached(
        "SELECT id, observer_idx, received_at, head, snr FROM observations
         WHERE transmission_id = ?1 ORDER BY received_at, id LIMIT ?2",
    ))?;
    let rows: Vec<CopyRow> = sql(stmt
        .query_map(store::rusqlite::params![tx, MAX_COPIES], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<f64>>(4)?,
                Pending {
                    observer: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(u32::MAX),
                    received_at: r.get(2)?,
                    head: r.get(3)?,
                    snr: r.get(4)?,
                },
            ))
        })
        .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
    let group = Group {
        hash,
        payload_type,
        advert_from,
        payload: topology::needs_payload(payload_type)
            .then(|| topology::payload_of(&raw).map(<[u8]>::to_vec))
            .flatten(),
        copies: rows.iter().map(|(_, _, p)| p.clone()).collect(),
    };
    Ok(Some(resolve_rows(topo, tx, first_seen, &group, &rows)))
}

/// A node's key and name as JSON values (`null` for an unknown id).
pub fn node_ref(topo: &Topology, id: NodeId) -> (Value, Value) {
    let i = id as usize;
    (
        topo.keys.get(i).map_or(Value::Null, |k| k.clone().into()),
        topo.names
            .get(i)
            .and_then(Clone::clone)
            .map_or(Value::Null, Value::String),
    )
}

/// The hex key of a node.
pub fn key_of(topo: &Topology, id: NodeId) -> Option<&str> {
    topo.keys.get(id as usize).map(String::as_str)
}

/// The name of a node.
pub fn name_of(topo: &Topology, id: NodeId) -> Option<&str> {
    topo.names.get(id as usize).and_then(|n| n.as_deref())
}

/// meshlens's per-hop objects: `{prefix, pubkey, name, confidence, candidates: [{pubkey,
/// name, confidence}]}`; `pubkey`/`name` are null below [`hops::RESOLVED`].
pub fn hops_json(topo: &Topology, copy: &ResolvedCopy) -> Vec<Value> {
    copy.prefixes
        .iter()
        .enumerate()
        .map(|(i, prefix)| {
            let h = copy.hops.get(i);
            let (pubkey, name) = copy
                .node(i)
                .map_or((Value::Null, Value::Null), |n| node_ref(topo, n));
            let candidates: Vec<Value> = h
                .map(|h| {
                    h.candidates
                        .iter()
                        .take(MAX_CANDIDATES)
                        .map(|&(n, p)| {
                            let (k, nm) = node_ref(topo, n);
                            json!({"pubkey": k, "name": nm, "confidence": round(p)})
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "prefix": prefix,
                "pubkey": pubkey,
                "name": name,
                "confidence": round(h.map_or(0.0, |h| h.confidence)),
                "candidates": candidates,
            })
        })
        .collect()
}

/// A probability rounded to 4 decimals (the model is not more precise than that).
pub fn round(p: f64) -> f64 {
    if p.is_finite() {
        (p * 10_000.0).round() / 10_000.0
    } else {
        0.0
    }
}

/// Adds `resolved_path`, `resolved_confidence` and `hops` to one observation object.
pub fn annotate_one(topo: &Topology, copy: &ResolvedCopy, o: &mut Value) {
    let path: Vec<Value> = (0..copy.prefixes.len())
        .map(|i| {
            copy.node(i)
                .and_then(|n| key_of(topo, n))
                .map_or(Value::Null, |k| k.into())
        })
        .collect();
    let conf: Vec<Value> = (0..copy.prefixes.len())
        .map(|i| round(copy.hops.get(i).map_or(0.0, |h| h.confidence)).into())
        .collect();
    o["resolved_path"] = Value::Array(path);
    o["resolved_confidence"] = Value::Array(conf);
    o["hops"] = Value::Array(hops_json(topo, copy));
}

/// Adds the resolution of transmission `tx` to its observation objects (matched by their
/// `id`); observations past [`MAX_COPIES`] get empty arrays.
pub fn annotate(c: &Connection, topo: &Topology, tx: i64, list: &mut [Value]) -> ApiResult<()> {
    if list.is_empty() {
        return Ok(());
    }
    let resolved = resolve_tx(c, topo, tx)?;
    let by_id: HashMap<i64, &ResolvedCopy> = resolved
        .as_ref()
        .map(|p| p.copies.iter().map(|c| (c.obs_id, c)).collect())
        .unwrap_or_default();
    for o in list.iter_mut() {
        match o
            .get("id")
            .and_then(Value::as_i64)
            .and_then(|id| by_id.get(&id))
        {
            Some(copy) => annotate_one(topo, copy, o),
            None => {
                o["resolved_path"] = json!([]);
                o["resolved_confidence"] = json!([]);
                o["hops"] = json!([]);
            }
        }
    }
    Ok(())
}

/// Adds resolutions to every list of a page's observations (keyed by transmission id).
pub fn annotate_all(
    c: &Connection,
    topo: &Topology,
    obs: &mut HashMap<i64, Vec<Value>>,
) -> ApiResult<()> {
    for (tx, list) in obs.iter_mut() {
        annotate(c, topo, *tx, list)?;
    }
    Ok(())
}

// ---- The window scan ----

/// Most observations one scan reads (newest first).
pub const MAX_SCAN_ROWS: i64 = 100_000;

/// Most time one scan spends resolving; past it the rest is left out and `truncated` says so.
pub const SCAN_DEADLINE: Duration = Duration::from_secs(5);

/// Longest window, ms.
pub const MAX_WINDOW_MS: i64 = 30 * 86_400_000;

/// How long a scan is reused (for one topology and commit generation at most).
const SCAN_FRESH: Duration = Duration::from_secs(10);

/// Scans kept at once.
const SCAN_CACHE: usize = 4;

/// An observer as the scans name it.
#[derive(Debug, Clone, Default)]
pub struct ObserverInfo {
    /// Its id (a public key, normally).
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// Its region code.
    pub iata: Option<String>,
}

/// A window's packets, each resolved, newest first.
#[derive(Debug, Default)]
pub struct Scan {
    /// The packets.
    pub packets: Vec<ResolvedPacket>,
    /// Whether a bound (rows or time) cut the window.
    pub truncated: bool,
    /// Observers by index.
    pub observers: HashMap<u32, ObserverInfo>,
    /// Window start, Unix ms.
    pub since: i64,
    /// Window end, Unix ms.
    pub until: i64,
}

/// The window the aggregate routes accept: `window` (`1h`, `24h`, `7d`, …; default
/// `default_ms`) or `from`/`to` (ISO 8601 or Unix time), at most [`MAX_WINDOW_MS`].
pub fn window_of(p: &super::Params, default_ms: i64) -> ApiResult<(i64, i64)> {
    let now = crate::now_ms();
    let (from, to) = (p.time("from")?, p.time("to")?);
    if from.is_some() || to.is_some() {
        if p.str("window").is_some() {
            return Err(ApiError::BadRequest(
                "give window or from/to, not both".into(),
            ));
        }
        let until = to.unwrap_or(now).min(now);
        let since = from.unwrap_or(until.saturating_sub(default_ms));
        if since >= until || until - since > MAX_WINDOW_MS {
            return Err(ApiError::BadRequest(
                "from must be before to, at most 30 days apart".into(),
            ));
        }
        return Ok((since, until));
    }
    let ms = match p.str("window") {
        None => default_ms,
        Some(w) => {
            let d = store::time::parse_duration(w)
                .map_err(|e| ApiError::BadRequest(format!("invalid window: {e}")))?;
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        }
    };
    if ms <= 0 || ms > MAX_WINDOW_MS {
        return Err(ApiError::BadRequest(
            "invalid window (more than 0, at most 30 days)".into(),
        ));
    }
    Ok((now.saturating_sub(ms), now))
}

type ScanKey = (usize, u64, i64, i64);
type ScanEntry = (Weak<Topology>, ScanKey, Instant, Arc<Scan>);

fn scan_cache() -> &'static Mutex<Vec<ScanEntry>> {
    static CACHE: std::sync::OnceLock<Mutex<Vec<ScanEntry>>> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Vec::new()))
}

/// The scan of `[since, until)` with `topo`, from the cache when one of the same topology,
/// commit generation and window (to the minute) is fresh, else read now (blocking: call from
/// a database closure).
pub fn scan_cached(
    c: &Connection,
    topo: &Arc<Topology>,
    generation: u64,
    since: i64,
    until: i64,
) -> ApiResult<Arc<Scan>> {
    let key: ScanKey = (
        Arc::as_ptr(topo) as usize,
        generation,
        since / 60_000,
        until / 60_000,
    );
    if let Ok(cache) = scan_cache().lock()
        && let Some((_, _, _, s)) = cache.iter().find(|(w, k, at, _)| {
            *k == key
                && at.elapsed() < SCAN_FRESH
                && w.upgrade().is_some_and(|t| Arc::ptr_eq(&t, topo))
        })
    {
        return Ok(s.clone());
    }
    let s = Arc::new(scan(c, topo, since, until, MAX_SCAN_ROWS, SCAN_DEADLINE)?);
    if let Ok(mut cache) = scan_cache().lock() {
        cache.retain(|(w, _, at, _)| at.elapsed() < SCAN_FRESH && w.strong_count() > 0);
        while cache.len() >= SCAN_CACHE {
            cache.remove(0);
        }
        cache.push((Arc::downgrade(topo), key, Instant::now(), s.clone()));
    }
    Ok(s)
}

/// Reads the newest `max_rows` observations of `[since, until)`, groups them by packet and
/// resolves each packet with `topo`, spending at most `deadline` on resolution.
pub fn scan(
    c: &Connection,
    topo: &Topology,
    since: i64,
    until: i64,
    max_rows: i64,
    deadline: Duration,
) -> ApiResult<Scan> {
    let start = Instant::now();
    let mut stmt = sql(c.prepare_cached(&format!(
        "SELECT o.id, o.transmission_id, o.observer_idx, o.received_at, o.head, o.snr,
                t.hash, t.payload_type, {VERIFIED_FROM},
                CASE WHEN t.payload_type IN (0, 1, 2, 7, 8) THEN t.raw END, t.first_seen
         FROM observations o INDEXED BY observations_received
         JOIN transmissions t ON t.id = o.transmission_id
         WHERE o.received_at >= ?1 AND o.received_at < ?2
         ORDER BY o.received_at DESC LIMIT ?3"
    )))?;
    struct Acc {
        group: Group,
        first_seen: i64,
        rows: Vec<CopyRow>,
    }
    let mut by_tx: HashMap<i64, Acc> = HashMap::new();
    let mut order: Vec<i64> = Vec::new();
    let mut n = 0i64;
    let mut rows = sql(stmt.query(store::rusqlite::params![since, until, max_rows]))?;
    while let Some(r) = sql(rows.next())? {
        n += 1;
        let tx: i64 = sql(r.get(1))?;
        let pending = Pending {
            observer: u32::try_from(sql(r.get::<_, i64>(2))?).unwrap_or(u32::MAX),
            received_at: sql(r.get(3))?,
            head: sql(r.get(4))?,
            snr: sql(r.get(5))?,
        };
        let row = (
            sql(r.get::<_, i64>(0))?,
            sql(r.get::<_, Option<f64>>(5))?,
            pending,
        );
        let acc = match by_tx.entry(tx) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                order.push(tx);
                let payload_type: i64 = sql(r.get(7))?;
                let raw: Option<Vec<u8>> = sql(r.get(9))?;
                e.insert(Acc {
                    group: Group {
                        hash: sql(r.get(6))?,
                        payload_type,
                        advert_from: sql(r.get(8))?,
                        payload: raw
                            .as_deref()
                            .and_then(topology::payload_of)
                            .map(<[u8]>::to_vec),
                        copies: Vec::new(),
                    },
                    first_seen: sql(r.get(10))?,
                    rows: Vec::new(),
                })
            }
        };
        if acc.rows.len() < MAX_COPIES as usize {
            acc.rows.push(row);
        }
    }
    drop(rows);
    let mut truncated = n >= max_rows;
    let mut packets = Vec::with_capacity(order.len());
    for tx in order {
        if start.elapsed() > deadline {
            truncated = true;
            break;
        }
        let Some(mut acc) = by_tx.remove(&tx) else {
            continue;
        };
        // Receipt order, as the resolver and the detail see them.
        acc.rows.sort_by_key(|(id, _, p)| (p.received_at, *id));
        acc.group.copies = acc.rows.iter().map(|(_, _, p)| p.clone()).collect();
        packets.push(resolve_rows(
            topo,
            tx,
            acc.first_seen,
            &acc.group,
            &acc.rows,
        ));
    }
    let mut observers = HashMap::new();
    let mut stmt = sql(c.prepare_cached("SELECT idx, id, name, iata FROM observers"))?;
    let mut q = sql(stmt.query([]))?;
    while let Some(r) = sql(q.next())? {
        if let Ok(idx) = u32::try_from(sql(r.get::<_, i64>(0))?) {
            observers.insert(
                idx,
                ObserverInfo {
                    id: sql(r.get(1))?,
                    name: sql(r.get(2))?,
                    iata: sql(r.get(3))?,
                },
            );
        }
    }
    Ok(Scan {
        packets,
        truncated,
        observers,
        since,
        until,
    })
}

/// The observers of `region` (comma-separated IATA codes, case-insensitive), or `None`
/// without the parameter; 400 for a malformed list.
pub fn region_filter(
    p: &super::Params,
    scan: &Scan,
) -> ApiResult<Option<std::collections::HashSet<u32>>> {
    let Some(list) = p.list("region", 50)? else {
        return Ok(None);
    };
    let codes: Vec<String> = list.iter().map(|s| s.to_ascii_uppercase()).collect();
    Ok(Some(
        scan.observers
            .iter()
            .filter(|(_, o)| {
                o.iata
                    .as_deref()
                    .is_some_and(|i| codes.iter().any(|c| c.eq_ignore_ascii_case(i)))
            })
            .map(|(i, _)| *i)
            .collect(),
    ))
}

/// 400 for parameters an aggregate route does not implement (CoreScope's `area` among
/// them): never silently ignored.
pub fn refuse(p: &super::Params, names: &[&str]) -> ApiResult<()> {
    for n in names {
        if p.str(n).is_some() {
            return Err(ApiError::BadRequest(format!(
                "{n} is not supported on this route"
            )));
        }
    }
    Ok(())
}

/// The node of `topo` whose key is `key` or starts with it (at least 2 hex digits): 400 for a
/// malformed or ambiguous key, 404 for none.
pub fn find_node(topo: &Topology, key: &str) -> ApiResult<NodeId> {
    let key = super::hex_prefix("public key", key)?;
    if key.len() < 2 {
        return Err(ApiError::BadRequest(
            "public key prefix must be at least 2 hex digits".into(),
        ));
    }
    if key.len() == 64 {
        return topo
            .dir
            .id_of_hex(&key)
            .ok_or_else(|| ApiError::NotFound("no such node".into()));
    }
    let mut found = topo
        .keys
        .iter()
        .enumerate()
        .filter(|(_, k)| k.starts_with(&key))
        .map(|(i, _)| i);
    match (found.next(), found.next()) {
        (Some(i), None) => Ok(i as NodeId),
        (None, _) => Err(ApiError::NotFound("no such node".into())),
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "ambiguous public key prefix; give more digits".into(),
        )),
    }
}

/// Graph key ([`hops::short_id`]) → node, for every node of the directory.
pub fn short_ids(topo: &Topology) -> HashMap<u64, NodeId> {
    (0..topo.dir.len() as NodeId)
        .filter_map(|i| topo.dir.node(i).map(|n| (hops::short_id(&n.public_key), i)))
        .collect()
}

/// The distance between two nodes, km, when both are located.
pub fn distance_km(topo: &Topology, a: NodeId, b: NodeId) -> Option<f64> {
    let pa = topo.dir.node(a)?.pos?;
    let pb = topo.dir.node(b)?.pos?;
    Some(pa.distance_km(pb))
}

/// A node's position as `(lat, lon)` JSON values.
pub fn pos_json(topo: &Topology, id: NodeId) -> (Value, Value) {
    match topo.dir.node(id).and_then(|n| n.pos) {
        Some(p) => (p.lat.into(), p.lon.into()),
        None => (Value::Null, Value::Null),
    }
}

/// The role of a node (`""` when unknown).
pub fn role_of(topo: &Topology, id: NodeId) -> &str {
    topo.roles.get(id as usize).map_or("", String::as_str)
}

/// A positive integer parameter, default `default`, at most `max`; 400 otherwise.
pub fn int_param(p: &super::Params, k: &str, default: i64, min: i64, max: i64) -> ApiResult<i64> {
    match p.str(k) {
        None => Ok(default),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "{k} must be an integer from {min} to {max}, got {s:?}"
            ))),
        },
    }
}

/// A number parameter within `[min, max]`, default `default`; 400 otherwise.
pub fn num_param(p: &super::Params, k: &str, default: f64, min: f64, max: f64) -> ApiResult<f64> {
    match p.str(k) {
        None => Ok(default),
        Some(s) => match s.parse::<f64>() {
            Ok(n) if n.is_finite() && n >= min && n <= max => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "{k} must be a number from {min} to {max}, got {s:?}"
            ))),
        },
    }
}
