//! `GET /api/nodes/{pubkey}/analytics?days=7`: one node over time, in CoreScope's
//! `NodeAnalyticsResponse` shape (`node`, `timeRange`, `activityTimeline`, `snrTrend`,
//! `packetTypeBreakdown`, `observerCoverage`, `hopDistribution`, `peerInteractions`,
//! `uptimeHeatmap`, `computedStats`), plus `relayed`: the packets the node carried.
//!
//! - The node's own packets are the transmissions naming it as sender (its adverts: only they
//!   carry a verified sender key), the newest [`MAX_OWN`] of the window, and their
//!   observations (at most [`MAX_OWN_OBSERVATIONS`]); `truncated` when a cap was reached.
//!   `observerCoverage` counts, per observer, the distinct packets it heard, with their
//!   average SNR/RSSI. `peerInteractions` is empty: meshlens cannot name the peers of a
//!   node's messages (CoreScope's come from decoded sender/recipient keys it has not either
//!   for encrypted traffic). `hopDistribution` and `computedStats.relayPct` are CoreScope's:
//!   the hops of the node's own packets as first heard, and the share of them with more than
//!   one hop.
//! - `relayed` uses the hop resolver: the newest [`RELAY_SCAN`] observations of the window
//!   whose path has a hop equal to the node's key prefix (at that path's hash size) name
//!   candidate packets, at most [`MAX_RELAY_PACKETS`] of them; each is resolved whole (all
//!   its copies, [`crate::topology::resolve_group`] with the last cycle's graph), and the
//!   node relayed it when one of its hops resolves to the node at
//!   [`analytics::hops::RESOLVED`], not when a hop merely shares its prefix. `sampled` says
//!   a bound was reached, so the counts cover the most recent part of the window.
//!
//! `days` is 1 to 365 (CoreScope's range; its "All" asks for 365); the row caps bound the
//! cost whatever the window.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use analytics::hops;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use store::rusqlite::{Connection, OptionalExtension};
use store::time::iso;

use super::{Params, hex_prefix};
use crate::AppState;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};
use crate::topology::{self, Group, Pending, Topology};

/// Most of the node's own transmissions read.
pub const MAX_OWN: i64 = 5_000;
/// Most observations of those read.
pub const MAX_OWN_OBSERVATIONS: i64 = 50_000;
/// Most recent observations scanned for paths with the node's prefix.
pub const RELAY_SCAN: i64 = 50_000;
/// Most candidate packets resolved.
pub const MAX_RELAY_PACKETS: usize = 2_000;
/// Most copies of one packet read to resolve it.
const MAX_COPIES: i64 = 256;

/// The full key of the path segment, or 400.
pub fn full_key(pubkey: &str) -> ApiResult<String> {
    let pk = hex_prefix("public key", pubkey)?;
    if pk.len() != 64 {
        return Err(ApiError::BadRequest(
            "public key must be 64 hex digits".into(),
        ));
    }
    Ok(pk)
}

/// `days`, default 7, 1 to 365, or 400.
fn days(p: &Params) -> ApiResult<i64> {
    match p.str("days") {
        None => Ok(7),
        Some(d) => d
            .parse()
            .ok()
            .filter(|d| (1..=365).contains(d))
            .ok_or_else(|| ApiError::BadRequest(format!("days must be 1 to 365, got {d:?}"))),
    }
}

/// CoreScope's node object for `key`, active or inactive, or `None`.
pub fn node_json(c: &Connection, key: &str) -> ApiResult<Option<Value>> {
    for (table, active) in [("nodes", true), ("inactive_nodes", false)] {
        let mut stmt = sql(c.prepare_cached(&format!(
            "SELECT public_key, name, role, lat, lon, first_seen, last_seen, advert_count
             FROM {table} WHERE public_key = ?1"
        )))?;
        let row = sql(stmt
            .query_row([key], |r| {
                Ok(json!({
                    "public_key": r.get::<_, String>(0)?,
                    "name": r.get::<_, Option<String>>(1)?,
                    "role": r.get::<_, String>(2)?,
                    "lat": r.get::<_, Option<f64>>(3)?,
                    "lon": r.get::<_, Option<f64>>(4)?,
                    "first_seen": iso(r.get(5)?),
                    "last_seen": iso(r.get(6)?),
                    "advert_count": r.get::<_, i64>(7)?,
                    "active": active,
                }))
            })
            .optional())?;
        if row.is_some() {
            return Ok(row);
        }
    }
    Ok(None)
}

/// Served from the analytics answer cache for a few seconds.
pub async fn analytics(
    State(st): State<Arc<AppState>>,
    Path(pubkey): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    let key = full_key(&pubkey)?;
    let route = format!("node-analytics/{key}");
    super::rf::cached(&st, &route, &q, answer(st.clone(), key, q.clone())).await
}

/// One observer's reception of the node's packets.
#[derive(Default)]
struct Obs {
    name: Option<String>,
    iata: Option<String>,
    packets: HashSet<i64>,
    snr: (f64, u64),
    rssi: (f64, u64),
    first: i64,
    last: i64,
}

/// A packet's first observation: time, SNR, RSSI, observer id, observer name.
type First = (i64, Option<f64>, Option<f64>, String, Option<String>);

/// What the relay scan found.
#[derive(Default)]
struct Relayed {
    /// Hour number → packets relayed.
    hours: BTreeMap<i64, u64>,
    packets: u64,
    candidates: usize,
    scanned: i64,
    sampled: bool,
    /// Hops of those packets resolved to the node, by hop position (1 = first relay).
    positions: BTreeMap<usize, u64>,
}

async fn answer(
    st: Arc<AppState>,
    key: String,
    q: HashMap<String, String>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    let days = days(&p)?;
    let now = crate::now_ms();
    let since = now.saturating_sub(days.saturating_mul(86_400_000));
    let topo = st.capability.current().topology.clone();
    let found = st
        .db
        .query(move |c| {
            let Some(node) = node_json(c, &key)? else {
                return Ok(None);
            };
            let mut stmt = sql(c.prepare_cached(
                "SELECT id, first_seen, payload_type, raw FROM transmissions INDEXED BY transmissions_from
                 WHERE from_pubkey = ?1 AND first_seen >= ?2 ORDER BY first_seen DESC LIMIT ?3",
            ))?;
            let own = sql(stmt
                .query_map(store::rusqlite::params![key, since, MAX_OWN], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                    ))
                })
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            let mut stmt = sql(c.prepare_cached(
                "SELECT o.transmission_id, o.received_at, o.snr, o.rssi, ob.id, ob.name, ob.iata
                 FROM (SELECT t.id FROM transmissions t INDEXED BY transmissions_from
                       WHERE t.from_pubkey = ?1 AND t.first_seen >= ?2
                       ORDER BY t.first_seen DESC LIMIT ?3) t
                 JOIN observations o ON o.transmission_id = t.id
                 JOIN observers ob ON ob.idx = o.observer_idx
                 LIMIT ?4",
            ))?;
            let mut rows = sql(stmt.query(store::rusqlite::params![
                key,
                since,
                MAX_OWN,
                MAX_OWN_OBSERVATIONS
            ]))?;
            let mut observers: HashMap<String, Obs> = HashMap::new();
            // Per packet: its first observation.
            let mut firsts: HashMap<i64, First> = HashMap::new();
            let mut n_obs = 0i64;
            while let Some(r) = sql(rows.next())? {
                n_obs += 1;
                let tx: i64 = sql(r.get(0))?;
                let at: i64 = sql(r.get(1))?;
                let snr: Option<f64> = sql(r.get::<_, Option<f64>>(2))?.filter(|v| v.is_finite());
                let rssi: Option<f64> = sql(r.get::<_, Option<f64>>(3))?.filter(|v| v.is_finite());
                let id: String = sql(r.get(4))?;
                let name: Option<String> = sql(r.get(5))?;
                let o = observers.entry(id.clone()).or_insert_with(|| Obs {
                    first: at,
                    last: at,
                    ..Obs::default()
                });
                o.name.clone_from(&name);
                o.iata = sql(r.get(6))?;
                o.packets.insert(tx);
                o.first = o.first.min(at);
                o.last = o.last.max(at);
                if let Some(v) = snr {
                    o.snr.0 += v;
                    o.snr.1 += 1;
                }
                if let Some(v) = rssi {
                    o.rssi.0 += v;
                    o.rssi.1 += 1;
                }
                let e = firsts.entry(tx).or_insert((at, snr, rssi, id.clone(), name.clone()));
                if at < e.0 {
                    *e = (at, snr, rssi, id, name);
                }
            }
            drop(rows);
            let relayed = relay_scan(c, &topo, &key, since)?;
            Ok(Some((node, own, observers, firsts, n_obs, relayed)))
        })
        .await?;
    let Some((node, own, observers, firsts, n_obs, relayed)) = found else {
        return Err(ApiError::NotFound("no such node".into()));
    };

    // Per hour, per type, per hop count, per weekday and hour.
    let mut hours: BTreeMap<i64, u64> = BTreeMap::new();
    let mut types: BTreeMap<i64, u64> = BTreeMap::new();
    let mut hop_counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut heat: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    let (mut with_path, mut multi_hop) = (0u64, 0u64);
    for (_, at, ptype, raw) in &own {
        *hours.entry(at.div_euclid(3_600_000)).or_default() += 1;
        *types.entry(*ptype).or_default() += 1;
        let hops = meshcore::Packet::decode(raw).map_or(0, |p| p.path_hops().len());
        let label = match hops {
            0 => "0",
            1 => "1",
            2 => "2",
            3 => "3",
            _ => "4+",
        };
        *hop_counts.entry(label).or_default() += 1;
        if hops > 0 {
            with_path += 1;
            if hops > 1 {
                multi_hop += 1;
            }
        }
        let day = at.div_euclid(86_400_000);
        // 1970-01-01 was a Thursday (4); Sunday is 0.
        let dow = (day + 4).rem_euclid(7);
        let hour = at.rem_euclid(86_400_000) / 3_600_000;
        *heat.entry((dow, hour)).or_default() += 1;
    }
    let bucket = |h: i64| {
        iso(h.saturating_mul(3_600_000))
            .get(..13)
            .unwrap_or("")
            .to_owned()
            + ":00:00Z"
    };
    let timeline: Vec<Value> = hours
        .iter()
        .map(|(h, n)| json!({"bucket": bucket(*h), "count": n}))
        .collect();
    let mut longest: (i64, Option<i64>) = (0, None);
    let keys: Vec<i64> = hours.keys().copied().collect();
    for w in keys.windows(2) {
        if let [a, b] = w {
            let gap = (b - a).saturating_mul(3_600_000);
            if gap > longest.0 {
                longest = (gap, Some(*a));
            }
        }
    }
    let mut trend: Vec<&First> = firsts.values().filter(|f| f.1.is_some()).collect();
    trend.sort_by(|a, b| a.0.cmp(&b.0).then(a.3.cmp(&b.3)));
    let snrs: Vec<f64> = trend.iter().filter_map(|f| f.1).collect();
    let (mean, sd) = if snrs.is_empty() {
        (0.0, 0.0)
    } else {
        let m = snrs.iter().sum::<f64>() / snrs.len() as f64;
        let var = snrs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / snrs.len() as f64;
        (m, var.sqrt())
    };
    let grade = if mean > 15.0 && sd < 2.0 {
        "A"
    } else if mean > 15.0 {
        "A-"
    } else if mean > 12.0 && sd < 3.0 {
        "B+"
    } else if mean > 8.0 {
        "B"
    } else if mean > 3.0 {
        "C"
    } else {
        "D"
    };
    let round1 = |x: f64| (x * 10.0).round() / 10.0;
    let snr_trend: Vec<Value> = trend
        .iter()
        .map(|(at, snr, rssi, id, name)| {
            json!({"timestamp": iso(*at), "snr": snr, "rssi": rssi, "observer_id": id, "observer_name": name})
        })
        .collect();
    let avg = |(s, n): (f64, u64)| (n > 0).then(|| s / n as f64);
    let mut cov: Vec<(&String, &Obs)> = observers.iter().collect();
    cov.sort_by(|a, b| b.1.packets.len().cmp(&a.1.packets.len()).then(a.0.cmp(b.0)));
    let coverage: Vec<Value> = cov
        .iter()
        .map(|(id, o)| {
            json!({
                "observer_id": id,
                "observer_name": o.name,
                "packetCount": o.packets.len(),
                "avgSnr": avg(o.snr),
                "avgRssi": avg(o.rssi),
                "iata": o.iata,
                "firstSeen": iso(o.first),
                "lastSeen": iso(o.last),
            })
        })
        .collect();
    let hop_distribution: Vec<Value> = ["0", "1", "2", "3", "4+"]
        .iter()
        .filter_map(|h| hop_counts.get(h).map(|n| json!({"hops": h, "count": n})))
        .collect();
    let total = own.len() as f64;
    let pct = |a: f64, b: f64| if b > 0.0 { round1(a * 100.0 / b) } else { 0.0 };
    let relay_timeline: Vec<Value> = relayed
        .hours
        .iter()
        .map(|(h, n)| json!({"bucket": bucket(*h), "count": n}))
        .collect();
    Ok(Json(json!({
        "node": node,
        "timeRange": {"from": iso(since), "to": iso(now), "days": days},
        "activityTimeline": timeline,
        "snrTrend": snr_trend,
        "packetTypeBreakdown": types.iter()
            .map(|(t, n)| json!({"payload_type": t, "count": n}))
            .collect::<Vec<_>>(),
        "observerCoverage": coverage,
        "hopDistribution": hop_distribution,
        "peerInteractions": [],
        "uptimeHeatmap": heat.iter()
            .map(|((d, h), n)| json!({"dayOfWeek": d, "hour": h, "count": n}))
            .collect::<Vec<_>>(),
        "computedStats": {
            "availabilityPct": pct(hours.len() as f64, days as f64 * 24.0).min(100.0),
            "longestSilenceMs": longest.0,
            "longestSilenceStart": longest.1.map(bucket),
            "signalGrade": grade,
            "snrMean": round1(mean),
            "snrStdDev": round1(sd),
            "relayPct": pct(multi_hop as f64, with_path as f64),
            "totalPackets": own.len(),
            "uniqueObservers": observers.len(),
            "uniquePeers": 0,
            "avgPacketsPerDay": round1(total / days as f64),
        },
        "relayed": {
            "packets": relayed.packets,
            "timeline": relay_timeline,
            "hopPositions": relayed.positions.iter()
                .map(|(p, n)| json!({"position": p, "count": n}))
                .collect::<Vec<_>>(),
            "prefixMatches": relayed.candidates,
            "scanned": relayed.scanned,
            "sampled": relayed.sampled,
        },
        "truncated": own.len() as i64 >= MAX_OWN || n_obs >= MAX_OWN_OBSERVATIONS,
    })))
}

/// The packets of the window the node relayed, as the resolver sees them.
fn relay_scan(c: &Connection, topo: &Topology, key: &str, since: i64) -> ApiResult<Relayed> {
    let mut out = Relayed::default();
    let Ok(key_bytes) = hex::decode(key) else {
        return Ok(out);
    };
    let node_id = topo.dir.id_of_hex(key);
    let mut stmt = sql(c.prepare_cached(
        "SELECT transmission_id, head, received_at FROM observations INDEXED BY observations_received
         WHERE received_at >= ?1 ORDER BY received_at DESC LIMIT ?2",
    ))?;
    let mut rows = sql(stmt.query(store::rusqlite::params![since, RELAY_SCAN]))?;
    // Candidate packet → its newest copy's time.
    let mut candidates: HashMap<i64, i64> = HashMap::new();
    while let Some(r) = sql(rows.next())? {
        out.scanned += 1;
        let tx: i64 = sql(r.get(0))?;
        if candidates.contains_key(&tx) {
            continue;
        }
        let head = sql(r.get_ref(1))?.as_blob().unwrap_or(&[]);
        let Ok(p) = meshcore::Packet::decode(head) else {
            continue;
        };
        if !p.path_bytes_are_hops() || p.payload_type() == meshcore::PayloadType::Trace {
            continue;
        }
        let size = p.path_len().hash_size().bytes();
        let Some(prefix) = key_bytes.get(..size) else {
            continue;
        };
        if !p.path_hops().any(|h| h == prefix) {
            continue;
        }
        if candidates.len() >= MAX_RELAY_PACKETS {
            out.sampled = true;
            break;
        }
        candidates.insert(tx, sql(r.get(2))?);
    }
    drop(rows);
    out.sampled |= out.scanned >= RELAY_SCAN;
    out.candidates = candidates.len();
    // A node the resolver does not know can have relayed nothing it can name.
    let Some(node_id) = node_id else {
        return Ok(out);
    };
    let mut tx_stmt = sql(c.prepare_cached(
        "SELECT t.hash, t.payload_type, t.from_pubkey, t.raw,
                EXISTS(SELECT 1 FROM rejected_packets r WHERE r.hash = t.hash)
         FROM transmissions t WHERE t.id = ?1",
    ))?;
    let mut obs_stmt = sql(c.prepare_cached(
        "SELECT observer_idx, head, received_at FROM observations
         WHERE transmission_id = ?1 ORDER BY received_at LIMIT ?2",
    ))?;
    let mut ids: Vec<(i64, i64)> = candidates.into_iter().collect();
    ids.sort_unstable();
    for (tx, at) in ids {
        let Some((hash, payload_type, from, raw, forged)) = sql(tx_stmt
            .query_row([tx], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, bool>(4)?,
                ))
            })
            .optional())?
        else {
            continue;
        };
        let copies = sql(obs_stmt
            .query_map(store::rusqlite::params![tx, MAX_COPIES], |r| {
                Ok(Pending {
                    observer: u32::try_from(r.get::<_, i64>(0)?).unwrap_or(u32::MAX),
                    head: r.get::<_, Vec<u8>>(1)?,
                    received_at: r.get(2)?,
                    snr: None,
                })
            })
            .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
        let group = Group {
            hash,
            payload_type,
            advert_from: (payload_type == 4 && !forged).then_some(from).flatten(),
            payload: topology::needs_payload(payload_type)
                .then(|| topology::payload_of(&raw).map(<[u8]>::to_vec))
                .flatten(),
            copies,
        };
        let (_, _, solved) =
            topology::resolve_group(&topo.dir, &topo.graph, &topo.observer_node, &group);
        let positions: HashSet<usize> = solved
            .iter()
            .flat_map(|hs| {
                hs.iter()
                    .enumerate()
                    .filter(|(_, h)| h.resolved(hops::RESOLVED) == Some(node_id))
                    .map(|(i, _)| i + 1)
            })
            .collect();
        if positions.is_empty() {
            continue;
        }
        out.packets += 1;
        *out.hours.entry(at.div_euclid(3_600_000)).or_default() += 1;
        if let Some(first) = positions.iter().min() {
            *out.positions.entry(*first).or_default() += 1;
        }
    }
    Ok(out)
}
