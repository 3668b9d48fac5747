//! `/api/nodes/{pubkey}/health` and `/api/nodes/{pubkey}/paths`, in CoreScope's shapes: how
//! well observers hear a node's own packets, and which observed paths run through it. Both
//! read a bounded recent window (a week, capped row counts), so their cost follows traffic,
//! not the age of the database.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use store::rusqlite::{Connection, OptionalExtension};
use store::time::iso;

use super::hex_prefix;
use crate::AppState;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};

/// How far back both endpoints look.
pub const WINDOW_MS: i64 = 7 * 86_400_000;

/// Most of a node's own transmissions `health` reads.
pub const HEALTH_MAX_TRANSMISSIONS: i64 = 1_000;

/// Most observations of those transmissions `health` aggregates per observer.
pub const HEALTH_MAX_OBSERVATIONS: i64 = 20_000;

/// Packets listed in `recentPackets`, newest first (CoreScope lists 20).
pub const HEALTH_RECENT: i64 = 20;

/// Most recent observations `paths` scans for hops naming the node.
pub const PATHS_MAX_SCAN: i64 = 50_000;

/// Most distinct paths `paths` returns (CoreScope's cap); `totalPaths` counts them all.
pub const MAX_PATHS: usize = 50;

/// A node found by key or unique key prefix: its full key and CoreScope's node object.
struct Found {
    key: String,
    name: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    node: Value,
}

/// The node whose key is `prefix` or starts with it, active or inactive: 400 for a bad or
/// ambiguous prefix, `None` when there is none.
fn find_node(c: &Connection, prefix: &str) -> ApiResult<Option<Found>> {
    let range = [prefix.to_owned(), format!("{prefix}g")];
    let mut found = Vec::new();
    for (table, active) in [("nodes", true), ("inactive_nodes", false)] {
        let mut stmt = sql(c.prepare_cached(&format!(
            "SELECT public_key, name, role, lat, lon, first_seen, last_seen, advert_count
             FROM {table} WHERE public_key >= ?1 AND public_key < ?2 LIMIT 2"
        )))?;
        let rows = sql(stmt
            .query_map([&range[0], &range[1]], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<f64>>(3)?,
                    r.get::<_, Option<f64>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            })
            .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
        found.extend(rows.into_iter().map(|r| (r, active)));
    }
    if found.len() > 1 {
        return Err(ApiError::BadRequest(
            "ambiguous public key prefix; give more digits".into(),
        ));
    }
    Ok(found.pop().map(
        |((key, name, role, lat, lon, first, last, adverts), active)| Found {
            node: json!({
                "public_key": key,
                "name": name,
                "role": role,
                "lat": lat,
                "lon": lon,
                "first_seen": iso(first),
                "last_seen": iso(last),
                "advert_count": adverts,
                "active": active,
            }),
            key,
            name,
            lat,
            lon,
        },
    ))
}

/// The validated key prefix of a path segment (at least 2 hex digits), or 400.
fn key_param(key: &str) -> ApiResult<String> {
    let key = hex_prefix("public key", key)?;
    if key.len() < 2 {
        return Err(ApiError::BadRequest(
            "public key prefix must be at least 2 hex digits".into(),
        ));
    }
    Ok(key)
}

/// One observer's reception of the node: sums so averages can be combined.
struct ObserverStats {
    id: String,
    name: Option<String>,
    packets: i64,
    snr_sum: f64,
    snr_n: i64,
    rssi_sum: f64,
    rssi_n: i64,
}

/// `GET /api/nodes/{pubkey}/health` → `{node, observers, stats, recentPackets}`: per observer
/// the average SNR/RSSI of this node's packets and how many it heard, summary stats, and the
/// latest packets. Only adverts name their sender, so "this node's packets" are its adverts.
pub async fn health(
    State(st): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    let key = key_param(&key)?;
    let now = crate::now_ms();
    let since = now - WINDOW_MS;
    let found = st
        .db
        .query(move |c| {
            let Some(node) = find_node(c, &key)? else {
                return Ok(None);
            };
            // The node's transmissions in the window, newest first.
            let recent_tx = format!(
                "SELECT id FROM transmissions INDEXED BY transmissions_from
                 WHERE from_pubkey = ?1 AND first_seen >= ?2
                 ORDER BY first_seen DESC LIMIT {HEALTH_MAX_TRANSMISSIONS}"
            );
            let mut stmt = sql(c.prepare_cached(&format!(
                "SELECT t.raw, t.first_seen, t.observation_count FROM transmissions t
                 WHERE t.id IN ({recent_tx})"
            )))?;
            let txs = sql(stmt
                .query_map(store::rusqlite::params![node.key, since], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            let mut stmt = sql(c.prepare_cached(&format!(
                "SELECT ob.id, ob.name, count(DISTINCT o.transmission_id),
                        total(o.snr), count(o.snr), total(o.rssi), count(o.rssi)
                 FROM (SELECT o.observer_idx, o.transmission_id, o.snr, o.rssi
                       FROM ({recent_tx}) t JOIN observations o ON o.transmission_id = t.id
                       LIMIT {HEALTH_MAX_OBSERVATIONS}) o
                 JOIN observers ob ON ob.idx = o.observer_idx
                 GROUP BY o.observer_idx
                 ORDER BY 3 DESC, ob.id"
            )))?;
            let observers = sql(stmt
                .query_map(store::rusqlite::params![node.key, since], |r| {
                    Ok(ObserverStats {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        packets: r.get(2)?,
                        snr_sum: r.get(3)?,
                        snr_n: r.get(4)?,
                        rssi_sum: r.get(5)?,
                        rssi_n: r.get(6)?,
                    })
                })
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            let mut stmt = sql(c.prepare_cached(
                "SELECT t.id, t.hash, t.raw, t.first_seen, t.last_seen, t.observation_count,
                        t.channel, t.scope, t.from_pubkey
                 FROM transmissions t INDEXED BY transmissions_from
                 WHERE t.from_pubkey = ?1 AND t.first_seen >= ?2
                 ORDER BY t.first_seen DESC LIMIT ?3",
            ))?;
            let recent = sql(stmt
                .query_map(
                    store::rusqlite::params![node.key, since, HEALTH_RECENT],
                    super::packets::tx_row,
                )
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            Ok(Some((node, txs, observers, recent)))
        })
        .await?;
    let Some((node, txs, observers, recent)) = found else {
        return Err(ApiError::NotFound("no such node".into()));
    };
    let avg = |sum: f64, n: i64| (n > 0).then(|| sum / n as f64);
    let today = now - now.rem_euclid(86_400_000);
    let (mut hops_total, mut with_hops) = (0u64, 0u64);
    for (raw, _, _) in &txs {
        if let Ok(p) = meshcore::Packet::decode(raw) {
            let hops = p.path_hops().len() as u64;
            if hops > 0 {
                hops_total += hops;
                with_hops += 1;
            }
        }
    }
    let (snr_sum, snr_n) = observers
        .iter()
        .fold((0.0, 0), |(s, n), o| (s + o.snr_sum, n + o.snr_n));
    let stats = json!({
        "totalTransmissions": txs.len(),
        "totalObservations": txs.iter().map(|t| t.2).sum::<i64>(),
        "totalPackets": txs.len(),
        "packetsToday": txs.iter().filter(|t| t.1 >= today).count(),
        "avgSnr": avg(snr_sum, snr_n),
        "avgHops": if with_hops > 0 { (hops_total as f64 / with_hops as f64).round() as u64 } else { 0 },
        "lastHeard": txs.iter().map(|t| t.1).max().map(iso),
    });
    let observers: Vec<Value> = observers
        .iter()
        .map(|o| {
            json!({
                "observer_id": o.id,
                "observer_name": o.name,
                "avgSnr": avg(o.snr_sum, o.snr_n),
                "avgRssi": avg(o.rssi_sum, o.rssi_n),
                "packetCount": o.packets,
            })
        })
        .collect();
    let recent: Vec<Value> = recent.iter().map(|t| t.to_json(&st)).collect();
    Ok(Json(json!({
        "node": node.node,
        "observers": observers,
        "stats": stats,
        "recentPackets": recent,
    })))
}

/// Paths through the node, grouped by their hop sequence.
struct PathGroup {
    hops: Vec<String>,
    count: usize,
    last: i64,
    sample_tx: i64,
}

/// A hop resolved to the known nodes whose key starts with it: `(pubkey, name, lat, lon,
/// ambiguous)`. The queried node's own hop resolves to it (these are paths through it);
/// another hop resolves only when exactly one node has that prefix.
type Resolved = (
    Option<String>,
    Option<String>,
    Option<f64>,
    Option<f64>,
    bool,
);

fn resolve_hop(c: &Connection, hop: &str, target: &Found) -> ApiResult<Resolved> {
    let mut stmt = sql(c.prepare_cached(
        "SELECT public_key, name, lat, lon FROM nodes
         WHERE public_key >= ?1 AND public_key < ?2 ORDER BY public_key LIMIT 2",
    ))?;
    let mut rows = sql(stmt
        .query_map([hop.to_owned(), format!("{hop}g")], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<f64>>(2)?,
                r.get::<_, Option<f64>>(3)?,
            ))
        })
        .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
    let ambiguous = rows.len() > 1;
    if target.key.starts_with(hop) {
        return Ok((
            Some(target.key.clone()),
            target.name.clone(),
            target.lat,
            target.lon,
            ambiguous,
        ));
    }
    Ok(match (rows.pop(), ambiguous) {
        (Some((k, n, la, lo)), false) => (Some(k), n, la, lo, false),
        _ => (None, None, None, None, ambiguous),
    })
}

/// `GET /api/nodes/{pubkey}/paths` → `{node, paths, totalPaths, totalTransmissions}`: the
/// observed paths (of the last week's most recent observations) with a hop equal to the
/// node's key prefix at the path's hash size, one entry per hop sequence (`count`
/// transmissions, `lastSeen`, `sampleHash`), newest first, each hop resolved to its node.
/// A 1-byte hop can name several nodes: such hops say `ambiguous: true`.
pub async fn paths(
    State(st): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    let key = key_param(&key)?;
    let since = crate::now_ms() - WINDOW_MS;
    let found = st
        .db
        .query(move |c| {
            let Some(node) = find_node(c, &key)? else {
                return Ok(None);
            };
            let key_bytes = hex::decode(&node.key).unwrap_or_default();
            let mut stmt = sql(c.prepare_cached(&format!(
                "SELECT transmission_id, head, received_at
                 FROM observations INDEXED BY observations_received
                 WHERE received_at >= ?1 ORDER BY received_at DESC LIMIT {PATHS_MAX_SCAN}"
            )))?;
            let mut rows = sql(stmt.query([since]))?;
            // Per transmission: the longest path naming the node, and when it was last heard.
            let mut per_tx: HashMap<i64, (Vec<String>, i64)> = HashMap::new();
            while let Some(r) = sql(rows.next())? {
                let tx: i64 = sql(r.get(0))?;
                let head: Vec<u8> = sql(r.get(1))?;
                let at: i64 = sql(r.get(2))?;
                let Ok(p) = meshcore::Packet::decode(&head) else {
                    continue;
                };
                let size = p.path_len().hash_size().bytes();
                let Some(target) = key_bytes.get(..size) else {
                    continue;
                };
                if !p.path_hops().any(|h| h == target) {
                    continue;
                }
                let hops: Vec<String> = p.path_hops().map(hex::encode).collect();
                let e = per_tx.entry(tx).or_insert_with(|| (Vec::new(), at));
                e.1 = e.1.max(at);
                if hops.len() > e.0.len() {
                    e.0 = hops;
                }
            }
            drop(rows);
            let total_tx = per_tx.len();
            let mut groups: HashMap<Vec<String>, PathGroup> = HashMap::new();
            for (tx, (hops, at)) in per_tx {
                let g = groups.entry(hops.clone()).or_insert(PathGroup {
                    hops,
                    count: 0,
                    last: at,
                    sample_tx: tx,
                });
                g.count += 1;
                if at > g.last || (at == g.last && tx > g.sample_tx) {
                    (g.last, g.sample_tx) = (at, tx);
                }
            }
            let total_paths = groups.len();
            let mut list: Vec<PathGroup> = groups.into_values().collect();
            list.sort_by(|a, b| {
                b.last
                    .cmp(&a.last)
                    .then(b.count.cmp(&a.count))
                    .then(a.hops.cmp(&b.hops))
            });
            list.truncate(MAX_PATHS);
            let distinct: BTreeSet<&String> = list.iter().flat_map(|g| &g.hops).collect();
            let mut resolved: HashMap<String, Resolved> = HashMap::new();
            for hop in distinct {
                resolved.insert(hop.clone(), resolve_hop(c, hop, &node)?);
            }
            let mut stmt = sql(c.prepare_cached("SELECT hash FROM transmissions WHERE id = ?1"))?;
            let mut out = Vec::with_capacity(list.len());
            for g in &list {
                let hash: Option<String> =
                    sql(stmt.query_row([g.sample_tx], |r| r.get(0)).optional())?;
                let hops: Vec<Value> = g
                    .hops
                    .iter()
                    .map(|h| {
                        let (pk, name, lat, lon, ambiguous) = resolved
                            .get(h)
                            .cloned()
                            .unwrap_or((None, None, None, None, false));
                        json!({
                            "prefix": h,
                            "name": name.unwrap_or_else(|| h.clone()),
                            "pubkey": pk,
                            "lat": lat,
                            "lon": lon,
                            "ambiguous": ambiguous,
                        })
                    })
                    .collect();
                out.push(json!({
                    "hops": hops,
                    "count": g.count,
                    "lastSeen": iso(g.last),
                    "sampleHash": hash,
                }));
            }
            Ok(Some((node, out, total_paths, total_tx)))
        })
        .await?;
    let Some((node, paths, total_paths, total_tx)) = found else {
        return Err(ApiError::NotFound("no such node".into()));
    };
    Ok(Json(json!({
        "node": {
            "public_key": node.key,
            "name": node.name,
            "lat": node.lat,
            "lon": node.lon,
        },
        "paths": paths,
        "totalPaths": total_paths,
        "totalTransmissions": total_tx,
    })))
}
