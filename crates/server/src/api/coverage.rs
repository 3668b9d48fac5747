//! Receive coverage in CoreScope's shapes: `/api/rx-coverage`, `/api/nodes/{pubkey}/rx-coverage`
//! (GeoJSON `FeatureCollection`s of hexagons) and `/api/rx-leaderboard` (receivers ranked).
//!
//! CoreScope fills these from mobile companions that publish GPS-tagged receptions on
//! `meshcore/client/<key>/packets` (an opt-in table meshlens does not ingest). meshlens
//! answers the same question from what it has: its observers are receivers at a fixed place,
//! their own node's advertised position. Each observation is a reception of the node heard
//! directly, by CoreScope's rule: the last hop of a flood path when hops are 2 or 3 bytes
//! (1-byte hops are too ambiguous), the advertiser of a zero-hop advert; direct-routed and
//! other copies name nobody and are skipped. Observers without a position are not on the map
//! (`unpositioned` counts their receptions). `mobile_receptions`/`mobile_clients` carry the
//! node's receptions and receivers (observers here, not phones).
//!
//! Hexagons are pointy-top on Web Mercator, their size fixed in screen terms: resolution
//! `z` (the map's zoom, 3 to 18) gives cells about [`HEX_PX`] pixels across; a cell is named
//! `res:q:r` (axial coordinates). The newest [`MAX_ROWS`] observations of the window are read
//! (then `truncated`); features are capped at [`MAX_FEATURES`] (densest kept), nodes per cell
//! at [`MAX_CELL_NODES`] (`nodes_truncated`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::f64::consts::PI;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use super::node_analytics::{full_key, node_json};
use super::{Params, hex_prefix};
use crate::AppState;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};
use crate::topology::Topology;

/// Observations one answer reads at most.
pub const MAX_ROWS: i64 = 200_000;
/// Cells in one collection at most (CoreScope's cap).
pub const MAX_FEATURES: usize = 5_000;
/// Nodes listed per cell (CoreScope's cap).
pub const MAX_CELL_NODES: usize = 25;
/// Hexagon radius on screen, pixels of a 256-pixel tile.
pub const HEX_PX: f64 = 12.0;
/// The leaderboard's fixed resolution (cells of about 150 m).
const LEADERBOARD_RES: u32 = 13;

/// Web Mercator in [0, 1] (y down), latitude clamped to its ±85.05°.
fn project(lat: f64, lon: f64) -> (f64, f64) {
    let lat = lat.clamp(-85.051_128, 85.051_128).to_radians();
    let x = (lon.clamp(-180.0, 180.0) + 180.0) / 360.0;
    let y = (1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / PI) / 2.0;
    (x, y)
}

fn unproject(x: f64, y: f64) -> (f64, f64) {
    let lon = x * 360.0 - 180.0;
    let lat = (PI * (1.0 - 2.0 * y)).sinh().atan().to_degrees();
    (lat, lon)
}

/// Hexagon radius in world units at `res`.
fn hex_size(res: u32) -> f64 {
    HEX_PX / (256.0 * f64::from(1u32 << res.min(30)))
}

/// The cell `(q, r)` at `res` holding a point.
pub fn cell_at(lat: f64, lon: f64, res: u32) -> (i64, i64) {
    let (x, y) = project(lat, lon);
    let s = hex_size(res);
    let q = (3f64.sqrt() / 3.0 * x - y / 3.0) / s;
    let r = (2.0 / 3.0 * y) / s;
    // Cube rounding.
    let (cx, cz) = (q, r);
    let cy = -cx - cz;
    let (mut rx, ry, mut rz) = (cx.round(), cy.round(), cz.round());
    let (dx, dy, dz) = ((rx - cx).abs(), (ry - cy).abs(), (rz - cz).abs());
    if dx > dy && dx > dz {
        rx = -ry - rz;
    } else if dy <= dz {
        rz = -rx - ry;
    }
    (rx as i64, rz as i64)
}

/// The closed ring of a cell, `[lon, lat]` pairs.
fn ring(q: i64, r: i64, res: u32) -> Vec<[f64; 2]> {
    let s = hex_size(res);
    let cx = s * 3f64.sqrt() * (q as f64 + r as f64 / 2.0);
    let cy = s * 1.5 * r as f64;
    let mut out: Vec<[f64; 2]> = (0..6)
        .map(|i| {
            let a = (60.0 * f64::from(i) - 30.0).to_radians();
            let (lat, lon) = unproject(cx + s * a.cos(), cy + s * a.sin());
            [lon, lat]
        })
        .collect();
    if let Some(&first) = out.first() {
        out.push(first);
    }
    out
}

/// `bbox=minLat,minLon,maxLat,maxLon`, required.
fn bbox(p: &Params) -> ApiResult<[f64; 4]> {
    let bad = || ApiError::BadRequest("bbox required as minLat,minLon,maxLat,maxLon".into());
    let s = p.str("bbox").ok_or_else(bad)?;
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let [a, b, c, d] = <[f64; 4]>::try_from(v).map_err(|_| bad())?;
    let ok = [a, b, c, d].iter().all(|x| x.is_finite())
        && (-90.0..=90.0).contains(&a)
        && (-90.0..=90.0).contains(&c)
        && (-180.0..=180.0).contains(&b)
        && (-180.0..=180.0).contains(&d)
        && a <= c
        && b <= d;
    if !ok {
        return Err(ApiError::BadRequest(
            "bbox: latitudes -90..90, longitudes -180..180, min before max".into(),
        ));
    }
    Ok([a, b, c, d])
}

/// `z`: the zoom, an integer 0 to 30, as a resolution 3 to 18 (default 3).
fn resolution(p: &Params) -> ApiResult<u32> {
    match p.str("z") {
        None => Ok(3),
        Some(z) => z
            .parse::<u32>()
            .ok()
            .filter(|z| *z <= 30)
            .map(|z| z.clamp(3, 18))
            .ok_or_else(|| ApiError::BadRequest(format!("z must be a zoom 0 to 30, got {z:?}"))),
    }
}

/// `days`: 1 to 30 (CoreScope's range).
fn days(p: &Params, default: i64) -> ApiResult<i64> {
    match p.str("days") {
        None => Ok(default),
        Some(d) => d
            .parse()
            .ok()
            .filter(|d| (1..=30).contains(d))
            .ok_or_else(|| ApiError::BadRequest(format!("days must be 1 to 30, got {d:?}"))),
    }
}

/// One direct reception by a positioned (or not) observer.
struct Reception {
    heard: String,
    snr: Option<f64>,
    at: i64,
    observer: String,
    observer_name: Option<String>,
    pos: Option<(f64, f64)>,
}

/// The node an observation heard directly, by CoreScope's rule, lowercase hex.
fn heard_key(head: &[u8], payload_type: i64, from: Option<&str>) -> Option<String> {
    let p = meshcore::Packet::decode(head).ok()?;
    if !p.path_bytes_are_hops() || p.payload_type() == meshcore::PayloadType::Trace {
        return None;
    }
    let hops: Vec<&[u8]> = p.path_hops().collect();
    match hops.last() {
        None => (payload_type == 4)
            .then(|| from.map(str::to_ascii_lowercase))
            .flatten(),
        Some(last) if !p.route_type().is_direct() && last.len() >= 2 => Some(hex::encode(last)),
        Some(_) => None,
    }
}

/// The receptions of the window, newest first, at most [`MAX_ROWS`] read; `keep` filters the
/// heard key. Returns them and whether the cap was reached.
fn receptions(
    c: &store::rusqlite::Connection,
    since: i64,
    rx: Option<&str>,
    keep: &dyn Fn(&str) -> bool,
) -> ApiResult<(Vec<Reception>, bool)> {
    let mut stmt = sql(c.prepare_cached(
        "SELECT o.head, o.snr, o.received_at, t.payload_type, t.from_pubkey, ob.id, ob.name, n.lat, n.lon
         FROM (SELECT * FROM observations INDEXED BY observations_received
               WHERE received_at >= ?1 ORDER BY received_at DESC LIMIT ?2) o
         JOIN observers ob ON ob.idx = o.observer_idx
         JOIN transmissions t ON t.id = o.transmission_id
         LEFT JOIN nodes n ON n.public_key = ob.id",
    ))?;
    let mut rows = sql(stmt.query(store::rusqlite::params![since, MAX_ROWS]))?;
    let mut out = Vec::new();
    let mut n = 0i64;
    while let Some(r) = sql(rows.next())? {
        n += 1;
        let observer: String = sql(r.get(5))?;
        if rx.is_some_and(|x| !observer.starts_with(x)) {
            continue;
        }
        let head = sql(r.get_ref(0))?.as_blob().unwrap_or(&[]);
        let from: Option<String> = sql(r.get(4))?;
        let Some(heard) = heard_key(head, sql(r.get(3))?, from.as_deref()) else {
            continue;
        };
        if !keep(&heard) {
            continue;
        }
        let lat: Option<f64> = sql(r.get(7))?;
        let lon: Option<f64> = sql(r.get(8))?;
        out.push(Reception {
            heard,
            snr: sql(r.get::<_, Option<f64>>(1))?.filter(|v| v.is_finite()),
            at: sql(r.get(2))?,
            observer,
            observer_name: sql(r.get(6))?,
            pos: lat.zip(lon).filter(|(a, b)| a.is_finite() && b.is_finite()),
        });
    }
    Ok((out, n >= MAX_ROWS))
}

/// The node a heard key names when exactly one known node has it: (key, name).
fn resolve(topo: &Topology, heard: &str) -> Option<(String, Option<String>)> {
    let bytes = hex::decode(heard).ok()?;
    if bytes.len() == 32 {
        let id = topo.dir.id_of_hex(heard)?;
        return Some((
            heard.to_owned(),
            topo.names.get(id as usize).cloned().flatten(),
        ));
    }
    match topo.dir.all_with_prefix(&bytes).as_slice() {
        [id] => Some((
            topo.keys.get(*id as usize)?.clone(),
            topo.names.get(*id as usize).cloned().flatten(),
        )),
        _ => None,
    }
}

/// A cell's tally: per node (by resolved key or heard key) count, latest SNR, display prefix.
/// Per node in a cell: receptions, latest time, its SNR, display prefix, name.
type NodeTally = (u64, i64, Option<f64>, String, Option<String>);

#[derive(Default)]
struct Cell {
    count: u64,
    best: Option<f64>,
    nodes: HashMap<String, NodeTally>,
}

/// The GeoJSON of `recs` inside `bb` at `res`, and how many had no position.
fn collection(topo: &Topology, recs: &[Reception], bb: [f64; 4], res: u32) -> (Value, u64) {
    let mut cells: BTreeMap<(i64, i64), Cell> = BTreeMap::new();
    let mut unpositioned = 0u64;
    let mut names: HashMap<String, Option<(String, Option<String>)>> = HashMap::new();
    for r in recs {
        let Some((lat, lon)) = r.pos else {
            unpositioned += 1;
            continue;
        };
        if lat < bb[0] || lat > bb[2] || lon < bb[1] || lon > bb[3] {
            continue;
        }
        let c = cells.entry(cell_at(lat, lon, res)).or_default();
        c.count += 1;
        if let Some(s) = r.snr {
            c.best = Some(c.best.map_or(s, |b: f64| b.max(s)));
        }
        let resolved = names
            .entry(r.heard.clone())
            .or_insert_with(|| resolve(topo, &r.heard))
            .clone();
        let (key, name) = resolved.unwrap_or_else(|| (r.heard.clone(), None));
        let e = c
            .nodes
            .entry(key)
            .or_insert_with(|| (0, i64::MIN, None, r.heard.clone(), None));
        e.0 += 1;
        if r.at >= e.1 {
            e.1 = r.at;
            e.2 = r.snr;
        }
        if r.heard.len() > e.3.len() {
            e.3.clone_from(&r.heard);
        }
        if name.is_some() {
            e.4 = name;
        }
    }
    let truncated = cells.len() > MAX_FEATURES;
    let mut list: Vec<((i64, i64), Cell)> = cells.into_iter().collect();
    if truncated {
        list.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
        list.truncate(MAX_FEATURES);
    }
    let mut features: Vec<(String, Value)> = list
        .into_iter()
        .map(|((q, r), c)| {
            let mut nodes: Vec<(u64, Option<f64>, String, Option<String>)> = c
                .nodes
                .into_values()
                .map(|(n, _, snr, prefix, name)| (n, snr, prefix, name))
                .collect();
            nodes.sort_by(|a, b| {
                b.1.is_some()
                    .cmp(&a.1.is_some())
                    .then(b.1.unwrap_or(0.0).total_cmp(&a.1.unwrap_or(0.0)))
                    .then(b.0.cmp(&a.0))
                    .then(a.2.cmp(&b.2))
            });
            let nodes_truncated = nodes.len() > MAX_CELL_NODES;
            nodes.truncate(MAX_CELL_NODES);
            let id = format!("{res}:{q}:{r}");
            let mut props = json!({
                "cell": id,
                "count": c.count,
                "best_snr": c.best,
                "has_sig": c.best.is_some(),
                "nodes": nodes.iter().map(|(n, snr, prefix, name)| {
                    let mut v = json!({"prefix": prefix, "snr": snr, "count": n});
                    if let Some(name) = name {
                        v["name"] = name.as_str().into();
                    }
                    v
                }).collect::<Vec<_>>(),
            });
            if nodes_truncated {
                props["nodes_truncated"] = true.into();
            }
            (
                id,
                json!({
                    "type": "Feature",
                    "geometry": {"type": "Polygon", "coordinates": [ring(q, r, res)]},
                    "properties": props,
                }),
            )
        })
        .collect();
    features.sort_by(|a, b| a.0.cmp(&b.0));
    let mut v = json!({
        "type": "FeatureCollection",
        "features": features.into_iter().map(|(_, f)| f).collect::<Vec<_>>(),
    });
    if truncated {
        v["truncated"] = true.into();
    }
    (v, unpositioned)
}

/// The keys a node is heard under: its full key and its 3- and 2-byte prefixes.
fn heard_as(key: &str) -> [String; 3] {
    [
        key.to_owned(),
        key.get(..6).unwrap_or(key).to_owned(),
        key.get(..4).unwrap_or(key).to_owned(),
    ]
}

/// `GET /api/rx-coverage?bbox=&z=&days=7&node=&rx=` → GeoJSON cells where observers heard
/// nodes directly, plus `days`, `unpositioned` and `scanTruncated`.
pub async fn rx_coverage(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    let p = Params(q.clone());
    let bb = bbox(&p)?;
    let res = resolution(&p)?;
    let days = days(&p, 7)?;
    let node = p.str("node").map(|n| hex_prefix("node", n)).transpose()?;
    let rx = p.str("rx").map(|n| hex_prefix("rx", n)).transpose()?;
    let since = crate::now_ms().saturating_sub(days * 86_400_000);
    let state = st.clone();
    super::rf::cached(&st, "rx-coverage", &q, async move {
        let topo = state.capability.current().topology.clone();
        let (recs, cut) = state
            .db
            .query(move |c| {
                let keep = |h: &str| {
                    node.as_deref().is_none_or(|n| {
                        if n.len() >= 64 {
                            heard_as(n).iter().any(|k| k == h)
                        } else {
                            n.starts_with(h) || h.starts_with(n)
                        }
                    })
                };
                receptions(c, since, rx.as_deref(), &keep)
            })
            .await?;
        let (mut v, unpositioned) = collection(&topo, &recs, bb, res);
        v["days"] = days.into();
        v["unpositioned"] = unpositioned.into();
        v["scanTruncated"] = cut.into();
        Ok(Json(v))
    })
    .await
}

/// `GET /api/nodes/{pubkey}/rx-coverage?bbox=&z=&days=30` → GeoJSON cells where observers
/// heard the node directly (by its key or 2-/3-byte prefix), with `mobile_receptions` and
/// `mobile_clients` over the whole window (any position).
pub async fn node_rx_coverage(
    State(st): State<Arc<AppState>>,
    Path(pubkey): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    let key = full_key(&pubkey)?;
    let p = Params(q.clone());
    let bb = bbox(&p)?;
    let res = resolution(&p)?;
    let days = days(&p, 30)?;
    let since = crate::now_ms().saturating_sub(days * 86_400_000);
    let state = st.clone();
    let route = format!("node-rx-coverage/{key}");
    super::rf::cached(&st, &route, &q, async move {
        let topo = state.capability.current().topology.clone();
        let found = state
            .db
            .query(move |c| {
                if node_json(c, &key)?.is_none() {
                    return Ok(None);
                }
                let keys = heard_as(&key);
                let keep = |h: &str| keys.iter().any(|k| k == h);
                receptions(c, since, None, &keep).map(Some)
            })
            .await?;
        let Some((recs, cut)) = found else {
            return Err(ApiError::NotFound("no such node".into()));
        };
        let (mut v, unpositioned) = collection(&topo, &recs, bb, res);
        let clients: HashSet<&str> = recs.iter().map(|r| r.observer.as_str()).collect();
        v["mobile_receptions"] = recs.len().into();
        v["mobile_clients"] = clients.len().into();
        v["days"] = days.into();
        v["unpositioned"] = unpositioned.into();
        v["scanTruncated"] = cut.into();
        Ok(Json(v))
    })
    .await
}

/// `GET /api/rx-leaderboard?days=7&limit=20` → `{days, observers: [{pubkey, name, receptions,
/// nodes, cells, score}]}`: observers (with a position) ranked by the rarity of where they
/// hear from: each cell (at a fixed ~150 m resolution) counts 1/(observers in it); ties by
/// receptions. `truncated` when the scan cap was reached.
pub async fn rx_leaderboard(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    let p = Params(q.clone());
    let days = days(&p, 7)?;
    let limit = p.limit(20, 100)?;
    let since = crate::now_ms().saturating_sub(days * 86_400_000);
    let state = st.clone();
    super::rf::cached(&st, "rx-leaderboard", &q, async move {
        let (recs, cut) = state
            .db
            .query(move |c| receptions(c, since, None, &|_| true))
            .await?;
        // Observer → (name, receptions, heard keys, cells).
        type Agg<'a> = (Option<&'a str>, u64, HashSet<&'a str>, HashSet<(i64, i64)>);
        let mut by: HashMap<&str, Agg<'_>> = HashMap::new();
        let mut per_cell: HashMap<(i64, i64), HashSet<&str>> = HashMap::new();
        for r in &recs {
            let Some((lat, lon)) = r.pos else { continue };
            let cell = cell_at(lat, lon, LEADERBOARD_RES);
            let e = by.entry(r.observer.as_str()).or_default();
            e.0 = r.observer_name.as_deref();
            e.1 += 1;
            e.2.insert(r.heard.as_str());
            e.3.insert(cell);
            per_cell
                .entry(cell)
                .or_default()
                .insert(r.observer.as_str());
        }
        let mut list: Vec<(f64, u64, &str, Value)> = by
            .iter()
            .map(|(id, (name, n, nodes, cells))| {
                let score: f64 = cells
                    .iter()
                    .map(|c| 1.0 / per_cell.get(c).map_or(1, HashSet::len).max(1) as f64)
                    .sum();
                (
                    score,
                    *n,
                    *id,
                    json!({
                        "pubkey": id,
                        "name": name.unwrap_or(""),
                        "receptions": n,
                        "nodes": nodes.len(),
                        "cells": cells.len(),
                        "score": score,
                    }),
                )
            })
            .collect();
        list.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
        let observers: Vec<Value> = list
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(20))
            .map(|x| x.3)
            .collect();
        Ok(Json(
            json!({"days": days, "observers": observers, "truncated": cut}),
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_lies_in_its_cell() {
        for (lat, lon, res) in [
            (47.6, -122.3, 12),
            (-33.9, 151.2, 8),
            (0.0, 0.0, 3),
            (51.05, 3.72, 18),
        ] {
            let (q, r) = cell_at(lat, lon, res);
            let ring = ring(q, r, res);
            assert_eq!(ring.len(), 7);
            let (la, lo): (Vec<f64>, Vec<f64>) = ring.iter().map(|p| (p[1], p[0])).unzip();
            let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert!(min(&la) <= lat && lat <= max(&la), "{lat} {la:?}");
            assert!(min(&lo) <= lon && lon <= max(&lo), "{lon} {lo:?}");
            // Nearby points share it, far ones do not.
            assert_eq!(cell_at(lat + 1e-9, lon + 1e-9, res), (q, r));
            assert_ne!(cell_at(lat + 10.0, lon + 10.0, res), (q, r));
        }
    }
}
