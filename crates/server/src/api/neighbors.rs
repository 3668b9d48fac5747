//! The neighbor graph in CoreScope's shapes: `/api/nodes/{pubkey}/neighbors`,
//! `/api/analytics/neighbor-graph`, `/api/nodes/{pubkey}/reach` and `/api/debug/affinity`.
//!
//! The graph is the capability cycle's ([`crate::topology::Topology::graph`]): an edge joins
//! two nodes heard next to each other with hops resolved at [`analytics::hops::RESOLVED`] or more
//! (consecutive hops, last hop and observer, advert origin and first hop, zero-hop copies),
//! with how many packets showed it, when last, and a confidence. Edges are between nodes,
//! never prefixes, so nothing is `ambiguous`. As CoreScope's, an edge keeps the observers whose
//! observations showed it and the mean SNR of those observations (each copy's SNR as its
//! observer reported it, credited to every link the copy shows): `observers` lists observer
//! ids (at most [`analytics::hops::MAX_EDGE_OBSERVERS`], the first heard; `observer_count`,
//! meshlens's own, counts them all), `avg_snr` is null without a sample. `first_seen` is not
//! kept (null).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use analytics::hops::{EdgeStats, NodeId};
use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use store::time::iso;

use super::Params;
use super::resolved::{
    self, distance_km, find_node, int_param, key_of, name_of, num_param, pos_json, role_of, round,
    short_ids,
};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::topology::Topology;

/// Most edges one neighbor-graph answer lists (the strongest first); `truncated` says so.
pub const MAX_GRAPH_EDGES: usize = 20_000;

/// Most neighbors listed for one node.
pub const MAX_NEIGHBORS: usize = 500;

/// Every edge of the graph between two known nodes: `(a, b, stats)`.
fn edges(topo: &Topology) -> Vec<(NodeId, NodeId, EdgeStats)> {
    let ids = short_ids(topo);
    topo.graph
        .edges()
        .filter_map(|((a, b), e)| Some((*ids.get(a)?, *ids.get(b)?, *e)))
        .collect()
}

/// The ids of the observers named on an edge (ids of observers since retired are left out).
fn observers_json(topo: &Topology, e: &EdgeStats) -> Vec<Value> {
    e.observers
        .ids()
        .iter()
        .filter_map(|o| topo.observer_ids.get(o))
        .map(|id| Value::from(id.as_str()))
        .collect()
}

/// An edge's mean SNR, dB (to 0.01), or null when no observation reported one.
fn avg_snr_json(e: &EdgeStats) -> Value {
    e.avg_snr()
        .map_or(Value::Null, |s| ((s * 100.0).round() / 100.0).into())
}

fn opt_str(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |s| s.into())
}

/// The hex prefix CoreScope shows for a neighbor: its first byte.
fn prefix_of(topo: &Topology, id: NodeId) -> String {
    key_of(topo, id)
        .and_then(|k| k.get(..2))
        .unwrap_or("")
        .to_owned()
}

/// `GET /api/nodes/{pubkey}/neighbors?min_count&min_score&include_ambiguous` →
/// `{node, neighbors: [{pubkey, prefix, name, role, count, score, first_seen, last_seen,
/// avg_snr, distance_km, observers, observer_count, ambiguous, confidence}],
/// total_observations}`, the strongest first.
pub async fn neighbors(
    State(st): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    let min_count = int_param(&p, "min_count", 1, 1, 1_000_000_000)?;
    let min_score = num_param(&p, "min_score", 0.0, 0.0, 1.0)?;
    // Every edge is between resolved nodes: there is nothing ambiguous to leave out.
    p.flag("include_ambiguous")?;
    let topo = st.capability.current().topology.clone();
    let me = find_node(&topo, &key)?;
    let mut list: Vec<(NodeId, EdgeStats)> = edges(&topo)
        .into_iter()
        .filter_map(|(a, b, e)| match (a == me, b == me) {
            (true, false) => Some((b, e)),
            (false, true) => Some((a, e)),
            _ => None,
        })
        .filter(|(_, e)| i64::from(e.count) >= min_count && e.confidence() >= min_score)
        .collect();
    list.sort_by(|x, y| {
        y.1.confidence()
            .total_cmp(&x.1.confidence())
            .then(y.1.count.cmp(&x.1.count))
            .then(x.0.cmp(&y.0))
    });
    list.truncate(MAX_NEIGHBORS);
    let total: u64 = list.iter().map(|(_, e)| u64::from(e.count)).sum();
    let neighbors: Vec<Value> = list
        .iter()
        .map(|(n, e)| {
            json!({
                "pubkey": key_of(&topo, *n),
                "prefix": prefix_of(&topo, *n),
                "name": opt_str(name_of(&topo, *n)),
                "role": role_of(&topo, *n),
                "count": e.count,
                "score": round(e.confidence()),
                "confidence": round(e.confidence()),
                "first_seen": Value::Null,
                "last_seen": iso(e.last_seen),
                "avg_snr": avg_snr_json(e),
                "distance_km": distance_km(&topo, me, *n),
                "observers": observers_json(&topo, e),
                "observer_count": e.observers.distinct(),
                "ambiguous": false,
            })
        })
        .collect();
    Ok(Json(json!({
        "node": key_of(&topo, me),
        "neighbors": neighbors,
        "total_observations": total,
    })))
}

/// The bridge nodes of the whole graph (whatever an answer's filters), from the edges the
/// "mesh split" alert rests on ([`super::alerts::bridge_edge`]): `[{pubkey, name, cut_off,
/// pieces}]`, those that cut off the most nodes first.
fn bridges_json(topo: &Topology) -> Vec<Value> {
    let ids = short_ids(topo);
    let confident = topo
        .graph
        .edges()
        .filter(|(_, e)| super::alerts::bridge_edge(e))
        .map(|(&(a, b), _)| (a, b));
    analytics::bridges::bridges(confident)
        .into_iter()
        .filter_map(|b| {
            let n = *ids.get(&b.node)?;
            Some(json!({
                "pubkey": key_of(topo, n),
                "name": name_of(topo, n).unwrap_or(""),
                "cut_off": b.cut_off,
                "pieces": b.pieces,
            }))
        })
        .collect()
}

/// `GET /api/analytics/neighbor-graph?min_count=5&min_score=0.1&role` → `{nodes: [{pubkey,
/// name, role, neighbor_count}], edges: [{source, target, weight, score, bidirectional,
/// avg_snr, observer_count, ambiguous, last_seen, distance_km}], stats: {total_nodes,
/// total_edges, ambiguous_edges, avg_cluster_size, rejected_edges_geo_far}, truncated,
/// bridges}` (`bridges` and `observer_count`, meshlens's own: ids are left out of the graph,
/// whose 20,000 edges would carry up to 8 each; ask a node's neighbors for them). `region` is a
/// 400: an edge names only its first observers, too few to say which regions hear it.
pub async fn graph(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    resolved::refuse(&p, &["region", "area"])?;
    let min_count = int_param(&p, "min_count", 5, 1, 1_000_000_000)?;
    let min_score = num_param(&p, "min_score", 0.1, 0.0, 1.0)?;
    let role = p.str("role").map(super::role).transpose()?;
    let topo = st.capability.current().topology.clone();
    let mut list: Vec<(NodeId, NodeId, EdgeStats)> = edges(&topo)
        .into_iter()
        .filter(|(_, _, e)| i64::from(e.count) >= min_count && e.confidence() >= min_score)
        .filter(|(a, b, _)| role.is_none_or(|r| role_of(&topo, *a) == r || role_of(&topo, *b) == r))
        .collect();
    list.sort_by(|x, y| {
        y.2.count
            .cmp(&x.2.count)
            .then(y.2.confidence().total_cmp(&x.2.confidence()))
            .then((x.0, x.1).cmp(&(y.0, y.1)))
    });
    let truncated = list.len() > MAX_GRAPH_EDGES;
    list.truncate(MAX_GRAPH_EDGES);
    let mut degree: HashMap<NodeId, u64> = HashMap::new();
    for (a, b, _) in &list {
        *degree.entry(*a).or_default() += 1;
        *degree.entry(*b).or_default() += 1;
    }
    let mut nodes: Vec<(NodeId, u64)> = degree.into_iter().collect();
    nodes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let nodes_json: Vec<Value> = nodes
        .iter()
        .map(|(n, d)| {
            json!({
                "pubkey": key_of(&topo, *n),
                "name": name_of(&topo, *n).unwrap_or(""),
                "role": role_of(&topo, *n),
                "neighbor_count": d,
            })
        })
        .collect();
    let edges_json: Vec<Value> = list
        .iter()
        .map(|(a, b, e)| {
            json!({
                "source": key_of(&topo, *a),
                "target": key_of(&topo, *b),
                "weight": e.count,
                "score": round(e.confidence()),
                "bidirectional": true,
                "avg_snr": avg_snr_json(e),
                "observer_count": e.observers.distinct(),
                "ambiguous": false,
                "last_seen": iso(e.last_seen),
                "distance_km": distance_km(&topo, *a, *b),
            })
        })
        .collect();
    let avg_cluster = if nodes.is_empty() {
        0.0
    } else {
        (list.len() * 2) as f64 / nodes.len() as f64
    };
    Ok(Json(json!({
        "nodes": nodes_json,
        "edges": edges_json,
        "stats": {
            "total_nodes": nodes.len(),
            "total_edges": list.len(),
            "ambiguous_edges": 0,
            "avg_cluster_size": avg_cluster,
            "rejected_edges_geo_far": 0,
        },
        "truncated": truncated,
        "bridges": bridges_json(&topo),
    })))
}

/// Directional evidence of one neighbor.
#[derive(Default)]
struct Link {
    we_hear: u64,
    they_hear: u64,
}

/// Reception of the node by one observer (the node as a path's last hop).
#[derive(Default)]
struct Heard {
    count: u64,
    snr_sum: f64,
    snr_n: u64,
}

/// `GET /api/nodes/{pubkey}/reach?days=7` → `{node: {pubkey, name, role, lat, lon,
/// first_seen}, window: {days, since}, reliable_tokens, importance: {neighbor_degree,
/// degree_rank, nodes_with_edges, relay_observations, bidirectional_links, direct_observers},
/// direct_observers: [{pubkey, name, count, avg_snr, lat, lon, distance_km}], links:
/// [{pubkey, name, role, lat, lon, we_hear, they_hear, bottleneck, bidir, distance_km}],
/// truncated}`: from flood copies whose hop RESOLVES to the node, the resolved hop before it
/// (or the advert's origin) is one it hears, the one after it (or the observer, when it is the
/// last hop) one that hears it.
pub async fn reach(
    State(st): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    // A scan of the window per node: served from the analytics answer cache (stale while
    // the next is computed) so a dashboard's polling never waits for it.
    let route = format!("reach/{}", key.to_ascii_lowercase());
    let answer = reach_answer(State(st.clone()), Path(key), Query(q.clone()));
    super::rf::cached(&st, &route, &q, answer).await
}

async fn reach_answer(
    State(st): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    let days = int_param(&p, "days", 7, 1, 30)?;
    let idx = st.capability.current();
    let topo = idx.topology.clone();
    let me = find_node(&topo, &key)?;
    let until = crate::now_ms();
    let since = until - days * 86_400_000;
    let generation = st.generation.load(std::sync::atomic::Ordering::Relaxed);
    let t = topo.clone();
    let (scan, first_seen) = st
        .db
        .query(move |c| {
            let first: Option<i64> = c
                .query_row(
                    "SELECT first_seen FROM nodes WHERE public_key = ?1",
                    [key_of(&t, me).unwrap_or("")],
                    |r| r.get(0),
                )
                .ok();
            Ok((
                resolved::scan_cached(c, &t, generation, since, until)?,
                first,
            ))
        })
        .await?;
    let mut links: HashMap<NodeId, Link> = HashMap::new();
    let mut heard: HashMap<u32, Heard> = HashMap::new();
    let mut relay = 0u64;
    for pkt in &scan.packets {
        for copy in pkt.copies.iter().filter(|c| !c.direct) {
            let n = copy.prefixes.len();
            let mut hit = false;
            for i in 0..n {
                if copy.node(i) != Some(me) {
                    continue;
                }
                hit = true;
                let before = if i == 0 { pkt.origin } else { copy.node(i - 1) };
                if let Some(b) = before.filter(|b| *b != me) {
                    links.entry(b).or_default().we_hear += 1;
                }
                if i + 1 < n {
                    if let Some(a) = copy.node(i + 1).filter(|a| *a != me) {
                        links.entry(a).or_default().they_hear += 1;
                    }
                } else {
                    if let Some(o) = topo.observer_node.get(&copy.observer).filter(|o| **o != me) {
                        links.entry(*o).or_default().they_hear += 1;
                    }
                    let h = heard.entry(copy.observer).or_default();
                    h.count += 1;
                    if let Some(s) = copy.snr {
                        h.snr_sum += s;
                        h.snr_n += 1;
                    }
                }
            }
            if hit {
                relay += 1;
            }
        }
    }
    // Degree in the graph, and this node's rank among nodes with edges.
    let mut degree: HashMap<NodeId, u64> = HashMap::new();
    for (a, b, _) in edges(&topo) {
        *degree.entry(a).or_default() += 1;
        *degree.entry(b).or_default() += 1;
    }
    let my_degree = degree.get(&me).copied().unwrap_or(0);
    let rank = if my_degree == 0 {
        0
    } else {
        1 + degree.values().filter(|d| **d > my_degree).count()
    };
    let mut link_list: Vec<(NodeId, Link)> = links.into_iter().collect();
    link_list.sort_by(|a, b| {
        let (ba, bb) = (
            a.1.we_hear.min(a.1.they_hear),
            b.1.we_hear.min(b.1.they_hear),
        );
        bb.cmp(&ba)
            .then((b.1.we_hear + b.1.they_hear).cmp(&(a.1.we_hear + a.1.they_hear)))
            .then(a.0.cmp(&b.0))
    });
    link_list.truncate(MAX_NEIGHBORS);
    let bidir = link_list
        .iter()
        .filter(|(_, l)| l.we_hear > 0 && l.they_hear > 0)
        .count();
    let links_json: Vec<Value> = link_list
        .iter()
        .map(|(n, l)| {
            let (lat, lon) = pos_json(&topo, *n);
            json!({
                "pubkey": key_of(&topo, *n),
                "name": name_of(&topo, *n).unwrap_or(""),
                "role": role_of(&topo, *n),
                "lat": lat,
                "lon": lon,
                "we_hear": l.we_hear,
                "they_hear": l.they_hear,
                "bottleneck": l.we_hear.min(l.they_hear),
                "bidir": l.we_hear > 0 && l.they_hear > 0,
                "distance_km": distance_km(&topo, me, *n),
            })
        })
        .collect();
    let mut heard_list: Vec<(u32, Heard)> = heard.into_iter().collect();
    heard_list.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
    heard_list.truncate(MAX_NEIGHBORS);
    let observers_json: Vec<Value> = heard_list
        .iter()
        .map(|(o, h)| {
            let info = scan.observers.get(o).cloned().unwrap_or_default();
            let node = topo.observer_node.get(o).copied();
            let (lat, lon) = node.map_or((Value::Null, Value::Null), |n| pos_json(&topo, n));
            json!({
                "pubkey": info.id,
                "name": info.name.unwrap_or_default(),
                "count": h.count,
                "avg_snr": (h.snr_n > 0).then(|| h.snr_sum / h.snr_n as f64),
                "lat": lat,
                "lon": lon,
                "distance_km": node.and_then(|n| distance_km(&topo, me, n)),
            })
        })
        .collect();
    let (lat, lon) = pos_json(&topo, me);
    // The node's prefixes that name it alone among forwarding nodes.
    let reliable: Vec<String> = [1usize, 2, 3]
        .iter()
        .filter_map(|&n| {
            let key = topo.dir.node(me)?.public_key;
            let prefix = key.get(..n)?;
            let (ids, _) = topo.dir.candidates(prefix);
            (ids == [me]).then(|| hex::encode(prefix).to_ascii_uppercase())
        })
        .collect();
    Ok(Json(json!({
        "node": {
            "pubkey": key_of(&topo, me),
            "name": name_of(&topo, me).unwrap_or(""),
            "role": role_of(&topo, me),
            "lat": lat,
            "lon": lon,
            "first_seen": first_seen.map(iso),
        },
        "window": {"days": days, "since": iso(since)},
        "reliable_tokens": reliable,
        "importance": {
            "neighbor_degree": my_degree,
            "degree_rank": rank,
            "nodes_with_edges": degree.len(),
            "relay_observations": relay,
            "bidirectional_links": bidir,
            "direct_observers": heard_list.len(),
        },
        "direct_observers": observers_json,
        "links": links_json,
        "truncated": scan.truncated,
    })))
}

/// `GET /api/debug/affinity?prefix&node` (behind the admin key, as CoreScope) → `{edges:
/// [{nodeA, nodeAName, nodeB, nodeBName, prefix, weight, observationCount, lastSeen,
/// firstSeen, score, observers, ambiguous, resolved}], resolutions: [{prefix, chosen,
/// chosenName, confidence, candidates: [{pubkey, name, score}], method, tier}], stats:
/// {totalEdges, totalNodes, resolvedCount, ambiguousCount, unresolvedCount, avgConfidence,
/// coldStartCoverage, cacheAge, lastRebuild}}`. `resolutions` lists, per 1-byte prefix
/// shared by several forwarding nodes (or the one asked for), how the graph weighs them.
pub async fn affinity(
    State(st): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    super::admin::require_admin(&st, &headers)?;
    let p = Params(q);
    let prefix = p
        .str("prefix")
        .map(|s| super::hex_prefix("prefix", s))
        .transpose()?;
    if prefix
        .as_ref()
        .is_some_and(|s| s.len() > 6 || s.len() % 2 == 1)
    {
        return Err(ApiError::BadRequest(
            "prefix must be 1 to 3 bytes of hex".into(),
        ));
    }
    let idx = st.capability.current();
    let topo = idx.topology.clone();
    let node = p.str("node").map(|k| find_node(&topo, k)).transpose()?;
    let all = edges(&topo);
    let matches = |a: NodeId, b: NodeId| {
        node.is_none_or(|n| a == n || b == n)
            && prefix.as_ref().is_none_or(|pre| {
                key_of(&topo, a).is_some_and(|k| k.starts_with(pre.as_str()))
                    || key_of(&topo, b).is_some_and(|k| k.starts_with(pre.as_str()))
            })
    };
    let mut list: Vec<&(NodeId, NodeId, EdgeStats)> =
        all.iter().filter(|(a, b, _)| matches(*a, *b)).collect();
    list.sort_by(|x, y| y.2.count.cmp(&x.2.count).then((x.0, x.1).cmp(&(y.0, y.1))));
    list.truncate(MAX_GRAPH_EDGES);
    let mut nodes = HashSet::new();
    let mut score_sum = 0.0;
    let edges_json: Vec<Value> = list
        .iter()
        .map(|(a, b, e)| {
            nodes.insert(*a);
            nodes.insert(*b);
            score_sum += e.confidence();
            json!({
                "nodeA": key_of(&topo, *a),
                "nodeAName": name_of(&topo, *a).unwrap_or(""),
                "nodeB": key_of(&topo, *b),
                "nodeBName": name_of(&topo, *b).unwrap_or(""),
                "prefix": prefix_of(&topo, *b),
                "weight": e.count,
                "observationCount": e.count,
                "lastSeen": iso(e.last_seen),
                "firstSeen": Value::Null,
                "score": round(e.confidence()),
                "observers": observers_json(&topo, e),
                "ambiguous": false,
                "resolved": true,
            })
        })
        .collect();
    // Resolutions: shared 1-byte prefixes of forwarding nodes, each candidate's graph
    // degree as its score.
    let mut degree: HashMap<NodeId, u64> = HashMap::new();
    for (a, b, e) in &all {
        *degree.entry(*a).or_default() += u64::from(e.count);
        *degree.entry(*b).or_default() += u64::from(e.count);
    }
    let mut resolutions = Vec::new();
    for byte in 0..=255u8 {
        let hexp = hex::encode([byte]);
        if prefix.as_ref().is_some_and(|p| !p.starts_with(&hexp)) {
            continue;
        }
        let (ids, companions) = topo.dir.candidates(&[byte]);
        if ids.len() < 2 || companions || node.is_some_and(|n| !ids.contains(&n)) {
            continue;
        }
        let mut cands: Vec<(NodeId, u64)> = ids
            .iter()
            .map(|i| (*i, degree.get(i).copied().unwrap_or(0)))
            .collect();
        cands.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let (best, second) = (
            cands.first().map_or(0, |c| c.1),
            cands.get(1).map_or(0, |c| c.1),
        );
        let chosen = (best > 0 && best >= 3 * second.max(1)).then(|| cands[0].0);
        resolutions.push(json!({
            "prefix": hexp,
            "chosen": chosen.and_then(|c| key_of(&topo, c)).unwrap_or(""),
            "chosenName": chosen.and_then(|c| name_of(&topo, c)).unwrap_or(""),
            "chosenScore": best,
            "confidence": if chosen.is_some() { "neighbor_affinity" } else { "ambiguous" },
            "candidates": cands.iter().take(resolved::MAX_CANDIDATES).map(|(i, s)| json!({
                "pubkey": key_of(&topo, *i), "name": name_of(&topo, *i).unwrap_or(""), "score": s,
            })).collect::<Vec<_>>(),
            "ratio": if second > 0 { best as f64 / second as f64 } else { 0.0 },
            "method": "graph_degree",
            "tier": "per_packet_resolver",
        }));
    }
    let one_byte_total = (0..=255u8)
        .filter(|b| !topo.dir.candidates(&[*b]).0.is_empty())
        .count();
    let one_byte_seen = (0..=255u8)
        .filter(|b| {
            topo.dir
                .candidates(&[*b])
                .0
                .iter()
                .any(|i| degree.get(i).copied().unwrap_or(0) >= 3)
        })
        .count();
    let age = if idx.computed_at > 0 {
        format!(
            "{:.1}s",
            (crate::now_ms() - idx.computed_at) as f64 / 1000.0
        )
    } else {
        String::new()
    };
    Ok(Json(json!({
        "edges": edges_json,
        "resolutions": resolutions,
        "stats": {
            "totalEdges": list.len(),
            "totalNodes": nodes.len(),
            "resolvedCount": list.len(),
            "ambiguousCount": 0,
            "unresolvedCount": 0,
            "avgConfidence": if list.is_empty() { 0.0 } else { round(score_sum / list.len() as f64) },
            "coldStartCoverage": if one_byte_total > 0 { one_byte_seen as f64 / one_byte_total as f64 } else { 0.0 },
            "cacheAge": age,
            "lastRebuild": if idx.computed_at > 0 { iso(idx.computed_at) } else { String::new() },
        },
    })))
}
