//! Aggregates over a window's resolved paths, in CoreScope's shapes:
//! `/api/analytics/topology`, `/api/analytics/distance`, `/api/analytics/subpaths`,
//! `/subpaths-bulk` and `/subpath-detail`.
//!
//! Each reads the window's packets resolved by [`resolved::scan_cached`] (newest
//! [`resolved::MAX_SCAN_ROWS`] observations, resolution within [`resolved::SCAN_DEADLINE`];
//! `truncated` when a bound cut it). Hops are attributed to the NODE they resolve to, so a
//! repeater heard under 1-, 2- and 3-byte prefixes is one entry (CoreScope counts each
//! prefix); a hop below [`analytics::hops::RESOLVED`] stays its prefix with `pubkey: null`.
//! A packet's path is its first copy's (in receipt order, of the region's observers when
//! `region` is given), as CoreScope takes one path per transmission; per-observer reach uses
//! every copy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use analytics::hops::NodeId;
use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};
use store::time::iso;

use super::Params;
use super::resolved::{
    self, ResolvedCopy, ResolvedPacket, Scan, distance_km, key_of, name_of, role_of,
};
use crate::AppState;
use crate::error::ApiResult;
use crate::topology::Topology;

/// What a hop is attributed to: the node it resolves to, else its prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ent {
    /// A node (resolved at [`analytics::hops::RESOLVED`]).
    Node(NodeId),
    /// An unresolved prefix (lowercase hex).
    Prefix(String),
}

impl Ent {
    fn of(copy: &ResolvedCopy, i: usize) -> Ent {
        match copy.node(i) {
            Some(n) => Ent::Node(n),
            None => Ent::Prefix(copy.prefixes.get(i).cloned().unwrap_or_default()),
        }
    }

    fn pubkey(&self, topo: &Topology) -> Value {
        match self {
            Ent::Node(n) => key_of(topo, *n).map_or(Value::Null, |k| k.into()),
            Ent::Prefix(_) => Value::Null,
        }
    }

    fn name(&self, topo: &Topology) -> Value {
        match self {
            Ent::Node(n) => name_of(topo, *n).map_or(Value::Null, |k| k.into()),
            Ent::Prefix(_) => Value::Null,
        }
    }
}

/// The prefix shown for an entity: the longest seen for it, uppercase (CoreScope's hops).
struct Labels(HashMap<Ent, String>);

impl Labels {
    fn see(&mut self, e: &Ent, prefix: &str) {
        let l = self.0.entry(e.clone()).or_default();
        if prefix.len() > l.len() {
            *l = prefix.to_owned();
        }
    }

    fn get(&self, e: &Ent) -> String {
        self.0
            .get(e)
            .map(|s| s.to_ascii_uppercase())
            .unwrap_or_default()
    }
}

/// The copies of `pkt` the region allows.
fn copies_in<'a>(
    pkt: &'a ResolvedPacket,
    region: Option<&'a HashSet<u32>>,
) -> impl Iterator<Item = &'a ResolvedCopy> + 'a {
    pkt.copies
        .iter()
        .filter(move |c| region.is_none_or(|r| r.contains(&c.observer)))
}

/// The window's scan and the region's observers, read on a database connection.
async fn load(
    st: &Arc<AppState>,
    p: &Params,
    default_window_ms: i64,
) -> ApiResult<(Arc<Topology>, Arc<Scan>, Option<HashSet<u32>>, i64)> {
    let (since, until) = resolved::window_of(p, default_window_ms)?;
    let topo = st.capability.current().topology.clone();
    let generation = st.generation.load(std::sync::atomic::Ordering::Relaxed);
    let t = topo.clone();
    let week = crate::now_ms() - 7 * 86_400_000;
    let (scan, active) = st
        .db
        .query(move |c| {
            let active: i64 = c
                .query_row(
                    "SELECT count(*) FROM nodes WHERE last_seen >= ?1",
                    [week],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            Ok((
                resolved::scan_cached(c, &t, generation, since, until)?,
                active,
            ))
        })
        .await?;
    let region = resolved::region_filter(p, &scan)?;
    Ok((topo, scan, region, active))
}

/// Default window of the aggregate routes: a day.
pub const DEFAULT_WINDOW_MS: i64 = 86_400_000;

/// Per observer and entity: fewest and most hops from the observer, and how often.
#[derive(Clone, Copy)]
struct Reach {
    min: usize,
    max: usize,
    count: u64,
}

fn observer_name(scan: &Scan, o: u32) -> (String, String) {
    let info = scan.observers.get(&o).cloned().unwrap_or_default();
    let name = info
        .name
        .filter(|n| !n.is_empty())
        .unwrap_or(info.id.clone());
    (info.id, name)
}

/// `GET /api/analytics/topology?window&from&to&region` → CoreScope's `{uniqueNodes, avgHops,
/// medianHops, maxHops, hopDistribution, topRepeaters, topPairs, hopsVsSnr, observers,
/// perObserverReach, multiObsNodes, bestPathList}` plus `truncated`, one entry per node.
pub async fn topology(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    let st2 = st.clone();
    super::rf::cached(&st, "topology", &q.clone(), async move {
        let p = Params(q);
        resolved::refuse(&p, &["area"])?;
        let (topo, scan, region, active) = load(&st2, &p, DEFAULT_WINDOW_MS).await?;
        Ok(Json(topology_json(&topo, &scan, region.as_ref(), active)))
    })
    .await
}

fn topology_json(
    topo: &Topology,
    scan: &Scan,
    region: Option<&HashSet<u32>>,
    active: i64,
) -> Value {
    let mut labels = Labels(HashMap::new());
    let mut hop_counts: BTreeMap<usize, u64> = BTreeMap::new();
    let mut all_hops: Vec<usize> = Vec::new();
    let mut hop_snr: BTreeMap<usize, (f64, u64)> = BTreeMap::new();
    let mut freq: HashMap<Ent, u64> = HashMap::new();
    let mut pairs: HashMap<(Ent, Ent), u64> = HashMap::new();
    let mut per_obs: HashMap<u32, HashMap<Ent, Reach>> = HashMap::new();
    for pkt in &scan.packets {
        let mut first = true;
        for copy in copies_in(pkt, region) {
            let n = copy.prefixes.len();
            let ents: Vec<Ent> = (0..n).map(|i| Ent::of(copy, i)).collect();
            for (e, pre) in ents.iter().zip(&copy.prefixes) {
                labels.see(e, pre);
            }
            if first && n > 0 {
                first = false;
                *hop_counts.entry(n).or_default() += 1;
                all_hops.push(n);
                if let Some(s) = copy.snr {
                    let e = hop_snr.entry(n).or_default();
                    e.0 += s;
                    e.1 += 1;
                }
                for e in &ents {
                    *freq.entry(e.clone()).or_default() += 1;
                }
                for w in ents.windows(2) {
                    let (a, b) = if w[0] <= w[1] {
                        (w[0].clone(), w[1].clone())
                    } else {
                        (w[1].clone(), w[0].clone())
                    };
                    if a != b {
                        *pairs.entry((a, b)).or_default() += 1;
                    }
                }
            }
            let m = per_obs.entry(copy.observer).or_default();
            for (i, e) in ents.iter().enumerate() {
                let d = n - i;
                let r = m.entry(e.clone()).or_insert(Reach {
                    min: d,
                    max: d,
                    count: 0,
                });
                r.min = r.min.min(d);
                r.max = r.max.max(d);
                r.count += 1;
            }
        }
    }
    let ent_json = |e: &Ent| (labels.get(e), e.name(topo), e.pubkey(topo));
    let hop_dist: Vec<Value> = hop_counts
        .iter()
        .filter(|(h, _)| **h <= 25)
        .map(|(h, c)| json!({"hops": h, "count": c}))
        .collect();
    let avg = if all_hops.is_empty() {
        0.0
    } else {
        all_hops.iter().sum::<usize>() as f64 / all_hops.len() as f64
    };
    all_hops.sort_unstable();
    let median = all_hops.get(all_hops.len() / 2).copied().unwrap_or(0);
    let max = all_hops.last().copied().unwrap_or(0);
    let mut freq_list: Vec<(Ent, u64)> = freq.into_iter().collect();
    freq_list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let top_repeaters: Vec<Value> = freq_list
        .iter()
        .take(20)
        .map(|(e, c)| {
            let (hop, name, pk) = ent_json(e);
            json!({"hop": hop, "count": c, "name": name, "pubkey": pk})
        })
        .collect();
    let mut pair_list: Vec<((Ent, Ent), u64)> = pairs.into_iter().collect();
    pair_list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let top_pairs: Vec<Value> = pair_list
        .iter()
        .take(15)
        .map(|((a, b), c)| {
            let (ha, na, pa) = ent_json(a);
            let (hb, nb, pb) = ent_json(b);
            json!({"hopA": ha, "hopB": hb, "count": c, "nameA": na, "nameB": nb,
                   "pubkeyA": pa, "pubkeyB": pb})
        })
        .collect();
    let hops_vs_snr: Vec<Value> = hop_snr
        .iter()
        .filter(|(h, _)| **h <= 20)
        .map(|(h, (sum, n))| json!({"hops": h, "count": n, "avgSnr": sum / *n as f64}))
        .collect();
    let mut obs_ids: Vec<u32> = per_obs.keys().copied().collect();
    obs_ids.sort_unstable();
    let observers: Vec<Value> = obs_ids
        .iter()
        .map(|o| {
            let (id, name) = observer_name(scan, *o);
            json!({"id": id, "name": name})
        })
        .collect();
    let mut reach = serde_json::Map::new();
    let mut cross: HashMap<Ent, Vec<(u32, Reach)>> = HashMap::new();
    for o in &obs_ids {
        let (id, name) = observer_name(scan, *o);
        let mut rings: BTreeMap<usize, Vec<(Ent, Reach)>> = BTreeMap::new();
        if let Some(m) = per_obs.get(o) {
            for (e, r) in m {
                cross.entry(e.clone()).or_default().push((*o, *r));
                if r.min <= 15 {
                    rings.entry(r.min).or_default().push((e.clone(), *r));
                }
            }
        }
        let rings: Vec<Value> = rings
            .into_iter()
            .map(|(d, mut list)| {
                list.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
                let nodes: Vec<Value> = list
                    .iter()
                    .map(|(e, r)| {
                        let (hop, name, pk) = ent_json(e);
                        json!({"hop": hop, "name": name, "pubkey": pk, "count": r.count,
                           "distRange": if r.min != r.max { Value::from(format!("{}-{}", r.min, r.max)) } else { Value::Null }})
                    })
                    .collect();
                json!({"hops": d, "nodes": nodes})
            })
            .collect();
        reach.insert(id, json!({"observer_name": name, "rings": rings}));
    }
    let mut multi: Vec<(Ent, Vec<(u32, Reach)>)> = cross
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(e, v)| (e.clone(), v.clone()))
        .collect();
    multi.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    multi.truncate(50);
    let multi_json: Vec<Value> = multi
        .iter_mut()
        .map(|(e, obs)| {
            obs.sort_by(|a, b| a.1.min.cmp(&b.1.min).then(a.0.cmp(&b.0)));
            let (hop, name, pk) = ent_json(e);
            let list: Vec<Value> = obs
                .iter()
                .map(|(o, r)| {
                    let (id, oname) = observer_name(scan, *o);
                    json!({"observer_id": id, "observer_name": oname, "minDist": r.min, "count": r.count})
                })
                .collect();
            json!({"hop": hop, "name": name, "pubkey": pk, "observers": list})
        })
        .collect();
    let mut best: Vec<(Ent, u32, Reach)> = cross
        .iter()
        .filter_map(|(e, v)| {
            v.iter()
                .min_by(|a, b| a.1.min.cmp(&b.1.min).then(a.0.cmp(&b.0)))
                .map(|(o, r)| (e.clone(), *o, *r))
        })
        .collect();
    best.sort_by(|a, b| a.2.min.cmp(&b.2.min).then(a.0.cmp(&b.0)));
    best.truncate(50);
    let best_json: Vec<Value> = best
        .iter()
        .map(|(e, o, r)| {
            let (hop, name, pk) = ent_json(e);
            let (id, oname) = observer_name(scan, *o);
            json!({"hop": hop, "name": name, "pubkey": pk, "minDist": r.min,
                   "observer_id": id, "observer_name": oname})
        })
        .collect();
    json!({
        "uniqueNodes": active,
        "avgHops": avg,
        "medianHops": median,
        "maxHops": max,
        "hopDistribution": hop_dist,
        "topRepeaters": top_repeaters,
        "topPairs": top_pairs,
        "hopsVsSnr": hops_vs_snr,
        "observers": observers,
        "perObserverReach": reach,
        "multiObsNodes": multi_json,
        "bestPathList": best_json,
        "truncated": scan.truncated,
    })
}

/// `2026-12-01T13`: an hour as CoreScope names it.
fn hour_name(ms: i64) -> String {
    iso(ms).get(..13).unwrap_or("").to_owned()
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// CoreScope's link class from the two ends' roles.
fn link_type(topo: &Topology, a: NodeId, b: NodeId) -> &'static str {
    let rep = |n| matches!(role_of(topo, n), "repeater" | "room");
    match (rep(a), rep(b)) {
        (true, true) => "R↔R",
        (false, false) => "C↔C",
        _ => "C↔R",
    }
}

/// `GET /api/analytics/distance?window&from&to&region` → CoreScope's `{summary: {totalHops,
/// totalPaths, avgDist, maxDist}, topHops: [{fromName, fromPk, toName, toPk, dist, type,
/// bestSnr, medianSnr, obsCount, hash, timestamp}], topPaths: [{hash, totalDist, hopCount,
/// timestamp, hops: [{fromName, fromPk, toName, toPk, dist}]}], catStats, distHistogram,
/// distOverTime}` plus `truncated`: links between consecutive transmitters of each packet's
/// path (the advert's origin first) that both RESOLVE and are both located.
pub async fn distance(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    let st2 = st.clone();
    super::rf::cached(&st, "distance", &q.clone(), async move {
        let p = Params(q);
        resolved::refuse(&p, &["area"])?;
        let (topo, scan, region, _) = load(&st2, &p, DEFAULT_WINDOW_MS).await?;
        Ok(Json(distance_json(&topo, &scan, region.as_ref())))
    })
    .await
}

/// One link of a path: from, to, km.
type Leg = (NodeId, NodeId, f64);

fn distance_json(topo: &Topology, scan: &Scan, region: Option<&HashSet<u32>>) -> Value {
    struct HopRec {
        a: NodeId,
        b: NodeId,
        dist: f64,
        snrs: Vec<f64>,
        hash: String,
        at: i64,
    }
    let mut hops: HashMap<(NodeId, NodeId), HopRec> = HashMap::new();
    let mut all: Vec<(f64, &'static str, i64)> = Vec::new();
    let mut paths: Vec<(f64, &ResolvedPacket, Vec<Leg>)> = Vec::new();
    for pkt in &scan.packets {
        let Some(copy) = copies_in(pkt, region).find(|c| !c.prefixes.is_empty()) else {
            continue;
        };
        let mut chain: Vec<Option<NodeId>> = Vec::with_capacity(copy.prefixes.len() + 1);
        if !copy.direct {
            chain.push(pkt.origin);
        }
        chain.extend((0..copy.prefixes.len()).map(|i| copy.node(i)));
        let mut legs = Vec::new();
        for w in chain.windows(2) {
            let (Some(a), Some(b)) = (w[0], w[1]) else {
                continue;
            };
            let Some(d) = distance_km(topo, a, b).filter(|_| a != b) else {
                continue;
            };
            legs.push((a, b, d));
            all.push((d, link_type(topo, a, b), copy.received_at));
            let key = if a < b { (a, b) } else { (b, a) };
            let rec = hops.entry(key).or_insert_with(|| HopRec {
                a,
                b,
                dist: d,
                snrs: Vec::new(),
                hash: pkt.hash.clone(),
                at: copy.received_at,
            });
            if let Some(s) = copy.snr {
                rec.snrs.push(s);
            }
            if copy.received_at > rec.at {
                rec.at = copy.received_at;
                rec.hash = pkt.hash.clone();
            }
        }
        if !legs.is_empty() {
            paths.push((legs.iter().map(|l| l.2).sum(), pkt, legs));
        }
    }
    let name = |n: NodeId| name_of(topo, n).unwrap_or("").to_owned();
    let key = |n: NodeId| key_of(topo, n).unwrap_or("").to_owned();
    let mut hop_list: Vec<HopRec> = hops.into_values().collect();
    hop_list.sort_by(|a, b| b.dist.total_cmp(&a.dist).then((a.a, a.b).cmp(&(b.a, b.b))));
    let top_hops: Vec<Value> = hop_list
        .iter_mut()
        .take(20)
        .map(|h| {
            h.snrs.sort_by(f64::total_cmp);
            json!({
                "fromName": name(h.a), "fromPk": key(h.a), "toName": name(h.b), "toPk": key(h.b),
                "dist": r2(h.dist), "type": link_type(topo, h.a, h.b),
                "bestSnr": h.snrs.last(), "medianSnr": h.snrs.get(h.snrs.len() / 2),
                "obsCount": h.snrs.len(), "hash": h.hash, "timestamp": iso(h.at),
            })
        })
        .collect();
    let total_paths = paths.len();
    paths.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.tx.cmp(&b.1.tx)));
    let top_paths: Vec<Value> = paths
        .iter()
        .take(20)
        .map(|(total, pkt, legs)| {
            json!({
                "hash": pkt.hash, "totalDist": r2(*total), "hopCount": legs.len(),
                "timestamp": iso(pkt.first_seen),
                "hops": legs.iter().map(|(a, b, d)| json!({"fromName": name(*a), "fromPk": key(*a),
                    "toName": name(*b), "toPk": key(*b), "dist": r2(*d)})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut cat = serde_json::Map::new();
    for c in ["R↔R", "C↔R", "C↔C"] {
        let mut v: Vec<f64> = all.iter().filter(|x| x.1 == c).map(|x| x.0).collect();
        v.sort_by(f64::total_cmp);
        let (n, sum) = (v.len(), v.iter().sum::<f64>());
        cat.insert(
            c.into(),
            json!({
                "count": n,
                "avg": if n > 0 { r2(sum / n as f64) } else { 0.0 },
                "median": r2(v.get(n / 2).copied().unwrap_or(0.0)),
                "min": r2(v.first().copied().unwrap_or(0.0)),
                "max": r2(v.last().copied().unwrap_or(0.0)),
            }),
        );
    }
    let dists: Vec<f64> = all.iter().map(|x| x.0).collect();
    let histogram = match (
        dists.iter().copied().reduce(f64::min),
        dists.iter().copied().reduce(f64::max),
    ) {
        (Some(lo), Some(hi)) => {
            let w = if hi > lo { (hi - lo) / 25.0 } else { 1.0 };
            let mut bins = [0u64; 25];
            for d in &dists {
                let i = (((d - lo) / w).floor().max(0.0) as usize).min(24);
                bins[i] += 1;
            }
            json!({"bins": bins.iter().enumerate().map(|(i, c)| json!({
                "x": (((lo + i as f64 * w) * 10.0).round() / 10.0), "w": (w * 10.0).round() / 10.0, "count": c,
            })).collect::<Vec<_>>(), "min": lo, "max": hi})
        }
        _ => json!([]),
    };
    let mut by_hour: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for (d, _, at) in &all {
        let e = by_hour.entry(hour_name(*at)).or_default();
        e.0 += d;
        e.1 += 1;
    }
    let over_time: Vec<Value> = by_hour
        .iter()
        .map(|(h, (s, n))| json!({"hour": h, "avg": r2(s / *n as f64), "count": n}))
        .collect();
    let (sum, max) = dists
        .iter()
        .fold((0.0, 0.0_f64), |(s, m), d| (s + d, m.max(*d)));
    json!({
        "summary": {
            "totalHops": dists.len(),
            "totalPaths": total_paths,
            "avgDist": if dists.is_empty() { 0.0 } else { r2(sum / dists.len() as f64) },
            "maxDist": r2(max),
        },
        "topHops": top_hops,
        "topPaths": top_paths,
        "catStats": cat,
        "distHistogram": histogram,
        "distOverTime": over_time,
        "truncated": scan.truncated,
    })
}

/// Longest subpath counted.
pub const MAX_SUBPATH_LEN: i64 = 16;

/// Per window and region: how often each run of consecutive hops (by entity) occurs in the
/// packets' paths, with the labels of its hops, and how many paths have 2 hops or more.
type SubpathCounts = (HashMap<Vec<Ent>, u64>, Labels, u64);

fn subpath_counts(
    scan: &Scan,
    region: Option<&HashSet<u32>>,
    min: usize,
    max: usize,
) -> SubpathCounts {
    let mut counts: HashMap<Vec<Ent>, u64> = HashMap::new();
    let mut labels = Labels(HashMap::new());
    let mut total = 0u64;
    for pkt in &scan.packets {
        let Some(copy) = copies_in(pkt, region).find(|c| !c.prefixes.is_empty()) else {
            continue;
        };
        let ents: Vec<Ent> = (0..copy.prefixes.len()).map(|i| Ent::of(copy, i)).collect();
        for (e, p) in ents.iter().zip(&copy.prefixes) {
            labels.see(e, p);
        }
        if ents.len() < 2 {
            continue;
        }
        total += 1;
        // Each distinct run once per packet.
        let mut seen: HashSet<&[Ent]> = HashSet::new();
        for len in min..=max.min(ents.len()) {
            for w in ents.windows(len) {
                if seen.insert(w) {
                    *counts.entry(w.to_vec()).or_default() += 1;
                }
            }
        }
    }
    (counts, labels, total)
}

fn subpaths_json(
    topo: &Topology,
    c: &SubpathCounts,
    min: usize,
    max: usize,
    limit: usize,
) -> Value {
    let (counts, labels, total) = c;
    let mut list: Vec<(&Vec<Ent>, &u64)> = counts
        .iter()
        .filter(|(k, _)| (min..=max).contains(&k.len()))
        .collect();
    list.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    list.truncate(limit);
    let subpaths: Vec<Value> = list
        .iter()
        .map(|(ents, n)| {
            let names: Vec<String> = ents
                .iter()
                .map(|e| match e {
                    Ent::Node(n) => name_of(topo, *n).map_or_else(|| labels.get(e), str::to_owned),
                    Ent::Prefix(_) => labels.get(e),
                })
                .collect();
            json!({
                "path": names.join(" → "),
                "rawHops": ents.iter().map(|e| labels.get(e)).collect::<Vec<_>>(),
                "pubkeys": ents.iter().map(|e| e.pubkey(topo)).collect::<Vec<_>>(),
                "count": n,
                "hops": ents.len(),
                "pct": if *total > 0 { r2(**n as f64 * 100.0 / *total as f64) } else { 0.0 },
            })
        })
        .collect();
    json!({"subpaths": subpaths, "totalPaths": total})
}

/// `GET /api/analytics/subpaths?minLen=2&maxLen=8&limit=100&window&region` → CoreScope's
/// `{subpaths: [{path, rawHops, count, hops, pct}], totalPaths}` plus each run's `pubkeys`
/// and `truncated`: runs of consecutive hops of each packet's path, by the nodes they resolve
/// to (a run heard under several prefix sizes counts once).
pub async fn subpaths(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    let st2 = st.clone();
    super::rf::cached(&st, "subpaths", &q.clone(), async move {
        let p = Params(q);
        let min = resolved::int_param(&p, "minLen", 2, 2, MAX_SUBPATH_LEN)? as usize;
        let max = resolved::int_param(&p, "maxLen", 8, 2, MAX_SUBPATH_LEN)? as usize;
        if max < min {
            return Err(crate::error::ApiError::BadRequest(
                "maxLen must be at least minLen".into(),
            ));
        }
        let limit = p.limit(100, 200)? as usize;
        let (topo, scan, region, _) = load(&st2, &p, DEFAULT_WINDOW_MS).await?;
        let c = subpath_counts(&scan, region.as_ref(), min, max);
        let mut v = subpaths_json(&topo, &c, min, max, limit);
        v["truncated"] = scan.truncated.into();
        Ok(Json(v))
    })
    .await
}

/// `GET /api/analytics/subpaths-bulk?groups=2-2:50,3-3:30` → `{results: [{subpaths,
/// totalPaths}, ...]}`, one per group (`minLen-maxLen:limit`, limit at most 200, at most 10
/// groups), from one pass over the window.
pub async fn subpaths_bulk(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    let st2 = st.clone();
    super::rf::cached(&st, "subpaths-bulk", &q.clone(), async move {
        let p = Params(q);
        let bad = |g: &str| {
            crate::error::ApiError::BadRequest(format!(
                "invalid group: {g:?} (minLen-maxLen:limit)"
            ))
        };
        let list = p.list("groups", 10)?.ok_or_else(|| {
            crate::error::ApiError::BadRequest(
                "groups parameter required (e.g. groups=2-2:50,3-3:30)".into(),
            )
        })?;
        let mut groups = Vec::new();
        for g in list {
            let (range, lim) = g.split_once(':').ok_or_else(|| bad(g))?;
            let (a, b) = range.split_once('-').ok_or_else(|| bad(g))?;
            let (a, b, lim) = match (a.parse::<i64>(), b.parse::<i64>(), lim.parse::<i64>()) {
                (Ok(a), Ok(b), Ok(l)) if a >= 2 && b >= a && b <= MAX_SUBPATH_LEN && l >= 1 => {
                    (a, b, l.min(200))
                }
                _ => return Err(bad(g)),
            };
            groups.push((a as usize, b as usize, lim as usize));
        }
        let (topo, scan, region, _) = load(&st2, &p, DEFAULT_WINDOW_MS).await?;
        let lo = groups.iter().map(|g| g.0).min().unwrap_or(2);
        let hi = groups.iter().map(|g| g.1).max().unwrap_or(2);
        let c = subpath_counts(&scan, region.as_ref(), lo, hi);
        let results: Vec<Value> = groups
            .iter()
            .map(|(a, b, l)| subpaths_json(&topo, &c, *a, *b, *l))
            .collect();
        Ok(Json(
            json!({"results": results, "truncated": scan.truncated}),
        ))
    })
    .await
}

/// `GET /api/analytics/subpath-detail?hops=AB,CD` → CoreScope's `{hops, nodes: [{hop, name,
/// lat, lon, pubkey}], totalMatches, firstSeen, lastSeen, signal: {avgSnr, avgRssi, samples},
/// hourDistribution (24), parentPaths: [{path, count}], observers: [{name, count}]}`: packets
/// whose path has that run of hops (a hop matches when the node it resolves to has that key
/// prefix, or, unresolved, the prefix itself), each counted once.
pub async fn subpath_detail(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    let raw = p.str("hops").unwrap_or("");
    let want: Vec<String> = raw
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if want.len() < 2 || raw.is_empty() {
        return Err(crate::error::ApiError::BadRequest(
            "Need at least 2 hops".into(),
        ));
    }
    if want.len() > 64
        || want
            .iter()
            .any(|h| h.is_empty() || h.len() > 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(crate::error::ApiError::BadRequest(
            "hops must be at most 64 hex prefixes".into(),
        ));
    }
    let (topo, scan, region, _) = load(&st, &p, DEFAULT_WINDOW_MS).await?;
    let matches = |copy: &ResolvedCopy, i: usize, w: &str| match copy.node(i) {
        Some(n) => key_of(&topo, n).is_some_and(|k| k.starts_with(w)),
        None => copy.prefixes.get(i).is_some_and(|p| p == w),
    };
    let mut total = 0u64;
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let (mut snr_sum, mut snr_n) = (0.0, 0u64);
    let mut hours = [0u64; 24];
    let mut parents: HashMap<String, u64> = HashMap::new();
    let mut observers: HashMap<u32, u64> = HashMap::new();
    let mut nodes: Vec<Option<NodeId>> = vec![None; want.len()];
    for pkt in &scan.packets {
        let Some(copy) = copies_in(pkt, region.as_ref()).find(|c| {
            let n = c.prefixes.len();
            n >= want.len()
                && (0..=n - want.len())
                    .any(|s| want.iter().enumerate().all(|(j, w)| matches(c, s + j, w)))
        }) else {
            continue;
        };
        total += 1;
        if let Some(s) = (0..=copy.prefixes.len() - want.len()).find(|s| {
            want.iter()
                .enumerate()
                .all(|(j, w)| matches(copy, s + j, w))
        }) {
            for (j, slot) in nodes.iter_mut().enumerate() {
                if slot.is_none() {
                    *slot = copy.node(s + j);
                }
            }
        }
        first = first.min(copy.received_at);
        last = last.max(copy.received_at);
        if let Some(s) = copy.snr {
            snr_sum += s;
            snr_n += 1;
        }
        if let Some(h) = usize::try_from(copy.received_at.rem_euclid(86_400_000) / 3_600_000)
            .ok()
            .and_then(|h| hours.get_mut(h))
        {
            *h += 1;
        }
        let names: Vec<String> = (0..copy.prefixes.len())
            .map(|i| {
                copy.node(i)
                    .and_then(|n| name_of(&topo, n))
                    .map_or_else(|| copy.prefixes[i].to_ascii_uppercase(), str::to_owned)
            })
            .collect();
        *parents.entry(names.join(" → ")).or_default() += 1;
        *observers.entry(copy.observer).or_default() += 1;
    }
    let nodes_json: Vec<Value> = want
        .iter()
        .zip(&nodes)
        .map(|(h, n)| {
            let (lat, lon) = n.map_or((Value::Null, Value::Null), |n| resolved::pos_json(&topo, n));
            json!({"hop": h.to_ascii_uppercase(), "name": n.and_then(|n| name_of(&topo, n)).unwrap_or(h),
                   "lat": lat, "lon": lon, "pubkey": n.and_then(|n| key_of(&topo, n))})
        })
        .collect();
    let mut parent_list: Vec<(String, u64)> = parents.into_iter().collect();
    parent_list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    parent_list.truncate(10);
    let mut obs_list: Vec<(u32, u64)> = observers.into_iter().collect();
    obs_list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    obs_list.truncate(20);
    Ok(Json(json!({
        "hops": want,
        "nodes": nodes_json,
        "totalMatches": total,
        "firstSeen": (total > 0).then(|| iso(first)),
        "lastSeen": (total > 0).then(|| iso(last)),
        "signal": {"avgSnr": (snr_n > 0).then(|| snr_sum / snr_n as f64), "avgRssi": Value::Null, "samples": snr_n},
        "hourDistribution": hours,
        "parentPaths": parent_list.iter().map(|(p, c)| json!({"path": p, "count": c})).collect::<Vec<_>>(),
        "observers": obs_list.iter().map(|(o, c)| json!({"name": observer_name(&scan, *o).1, "count": c})).collect::<Vec<_>>(),
        "truncated": scan.truncated,
    })))
}
