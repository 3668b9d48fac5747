//! `/api/nodes/{pubkey}/health` and `/api/nodes/{pubkey}/paths`, in CoreScope's shapes: how
//! well observers hear a node's own packets, and which observed paths run through it. Both
//! read a bounded recent window (a week, capped row counts), so their cost follows traffic,
//! not the age of the database.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use store::rusqlite::Connection;
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
    sample: (usize, usize),
}

/// `GET /api/nodes/{pubkey}/paths` → `{node, paths, totalPaths, totalTransmissions}`: the
/// observed paths (of the last week's newest [`super::resolved::MAX_SCAN_ROWS`]
/// observations) with a hop the resolver ATTRIBUTES to the node (confidence
/// [`analytics::hops::RESOLVED`] or more; a prefix it merely shares is not enough), one entry
/// per hop sequence (`count` transmissions, `lastSeen`, `sampleHash`), newest first, each hop
/// as the resolver sees it in the newest copy: `pubkey`/`name` of the node it resolves to
/// (`name` is the prefix when unresolved), `confidence`, and `ambiguous` when several known
/// nodes share the prefix.
pub async fn paths(
    State(st): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    let key = key_param(&key)?;
    let until = crate::now_ms();
    let since = until - WINDOW_MS;
    let topo = st.capability.current().topology.clone();
    let generation = st.generation.load(std::sync::atomic::Ordering::Relaxed);
    let t = topo.clone();
    let found = st
        .db
        .query(move |c| {
            let Some(node) = find_node(c, &key)? else {
                return Ok(None);
            };
            let scan = super::resolved::scan_cached(c, &t, generation, since, until)?;
            Ok(Some((node, scan)))
        })
        .await?;
    let Some((node, scan)) = found else {
        return Err(ApiError::NotFound("no such node".into()));
    };
    let me = topo.dir.id_of_hex(&node.key);
    // Per transmission: the longest copy through the node, and when it was last heard.
    let mut per_tx: HashMap<usize, ((usize, usize), i64)> = HashMap::new();
    for (pi, pkt) in scan.packets.iter().enumerate() {
        for (ci, copy) in pkt.copies.iter().enumerate() {
            if me.is_none() || !(0..copy.prefixes.len()).any(|i| copy.node(i) == me) {
                continue;
            }
            let e = per_tx.entry(pi).or_insert(((pi, ci), copy.received_at));
            let longest = &scan.packets[pi].copies[e.0.1];
            if copy.prefixes.len() > longest.prefixes.len()
                || (copy.prefixes.len() == longest.prefixes.len() && copy.received_at > e.1)
            {
                e.0 = (pi, ci);
            }
            e.1 = e.1.max(copy.received_at);
        }
    }
    let total_tx = per_tx.len();
    let mut groups: HashMap<Vec<String>, PathGroup> = HashMap::new();
    for (_, ((pi, ci), at)) in per_tx {
        let hops = scan.packets[pi].copies[ci].prefixes.clone();
        let g = groups.entry(hops.clone()).or_insert(PathGroup {
            hops,
            count: 0,
            last: at,
            sample: (pi, ci),
        });
        g.count += 1;
        if at > g.last || (at == g.last && scan.packets[pi].tx > scan.packets[g.sample.0].tx) {
            (g.last, g.sample) = (at, (pi, ci));
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
    let paths: Vec<Value> = list
        .iter()
        .map(|g| {
            let pkt = &scan.packets[g.sample.0];
            let copy = &pkt.copies[g.sample.1];
            let hops: Vec<Value> = g
                .hops
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let n = copy.node(i);
                    let (lat, lon) =
                        n.map_or((Value::Null, Value::Null), |n| super::resolved::pos_json(&topo, n));
                    json!({
                        "prefix": h,
                        "name": n.and_then(|n| super::resolved::name_of(&topo, n)).unwrap_or(h),
                        "pubkey": n.and_then(|n| super::resolved::key_of(&topo, n)),
                        "lat": lat,
                        "lon": lon,
                        "confidence": super::resolved::round(copy.hops.get(i).map_or(0.0, |x| x.confidence)),
                        "ambiguous": copy.hops.get(i).is_some_and(|x| x.candidates.len() > 1),
                    })
                })
                .collect();
            json!({
                "hops": hops,
                "count": g.count,
                "lastSeen": iso(g.last),
                "sampleHash": pkt.hash,
            })
        })
        .collect();
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
        "truncated": scan.truncated,
    })))
}
