//! `/api/analytics/hash-collisions`: which public-key prefixes of 1, 2 and 3 bytes are shared
//! by more than one known node, in CoreScope's shape (`{inconsistent_nodes, by_size}`). A path
//! hop names a relay by such a prefix, so a shared prefix makes the hop ambiguous.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Map, Value, json};
use store::rusqlite::params_from_iter;

use super::Params;
use crate::AppState;
use crate::capability::CapIndex;
use crate::db::sql;
use crate::error::ApiResult;

/// Most nodes read for one answer: a bound on the work and the response, far above any mesh.
pub const MAX_COLLISION_NODES: usize = 100_000;

/// A known node as the collision analysis sees it.
struct CNode {
    public_key: String,
    name: Option<String>,
    role: String,
    lat: Option<f64>,
    lon: Option<f64>,
    hash_size: u8,
    inconsistent: bool,
}

impl CNode {
    /// CoreScope's node object (`hash_size` 0: no advert seen in the capability window).
    fn to_json(&self) -> Value {
        json!({
            "public_key": self.public_key,
            "name": self.name,
            "role": self.role,
            "lat": self.lat,
            "lon": self.lon,
            "hash_size": self.hash_size,
            "hash_size_inconsistent": self.inconsistent,
        })
    }

    /// The position, when the node advertised a non-null one.
    fn coords(&self) -> Option<(f64, f64)> {
        match (self.lat, self.lon) {
            (Some(a), Some(o)) if a != 0.0 || o != 0.0 => Some((a, o)),
            _ => None,
        }
    }

    /// The uppercase hex prefix of `bytes` bytes, if the key is long enough.
    fn prefix(&self, bytes: usize) -> Option<String> {
        self.public_key
            .get(..bytes * 2)
            .map(str::to_ascii_uppercase)
    }
}

/// Great-circle distance in km.
fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

/// One shared prefix: its nodes, their greatest pairwise distance and CoreScope's class
/// (local < 50 km ≤ regional < 200 km ≤ distant; incomplete with fewer than two positions).
fn collision_entry(prefix: &str, bytes: usize, nodes: &[&CNode]) -> (u8, Value) {
    let coords: Vec<(f64, f64)> = nodes.iter().filter_map(|n| n.coords()).collect();
    let mut max_km = 0.0_f64;
    for (i, a) in coords.iter().enumerate() {
        for b in coords.iter().skip(i + 1) {
            max_km = max_km.max(haversine_km(*a, *b));
        }
    }
    let (rank, class) = match (coords.len() >= 2, max_km) {
        (false, _) => (3, "incomplete"),
        (true, d) if d < 50.0 => (0, "local"),
        (true, d) if d < 200.0 => (1, "regional"),
        _ => (2, "distant"),
    };
    (
        rank,
        json!({
            "prefix": prefix,
            "byte_size": bytes,
            "appearances": nodes.len(),
            "nodes": nodes.iter().map(|n| n.to_json()).collect::<Vec<_>>(),
            "max_dist_km": max_km,
            "classification": class,
            "with_coords": coords.len(),
        }),
    )
}

/// The answer for one prefix size: stats, the collisions (closest first, then the most
/// crowded), and for 1 and 2 bytes the per-first-byte cells of CoreScope's matrix view.
fn by_size(nodes: &[CNode], bytes: usize) -> Value {
    let mut groups: BTreeMap<String, Vec<&CNode>> = BTreeMap::new();
    for n in nodes {
        if let Some(p) = n.prefix(bytes) {
            groups.entry(p).or_default().push(n);
        }
    }
    let mut collisions: Vec<(u8, usize, Value)> = groups
        .iter()
        .filter(|(_, ns)| ns.len() > 1)
        .map(|(p, ns)| {
            let (rank, v) = collision_entry(p, bytes, ns);
            (rank, ns.len(), v)
        })
        .collect();
    // Stable: equal rank and size keep prefix order.
    collisions.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let space: u64 = 1 << (8 * bytes);
    let mut out = json!({
        "stats": {
            "total_nodes": nodes.len(),
            "nodes_for_byte": nodes.len(),
            "using_this_size": nodes.iter().filter(|n| usize::from(n.hash_size) == bytes).count(),
            "unique_prefixes": groups.len(),
            "collision_count": collisions.len(),
            "space_size": space,
            "pct_used": groups.len() as f64 / space as f64 * 100.0,
        },
        "collisions": collisions.into_iter().map(|(_, _, v)| v).collect::<Vec<_>>(),
    });
    let cell_keys = (0..=255u8).map(|b| format!("{b:02X}"));
    if bytes == 1 {
        let cells: Map<String, Value> = cell_keys
            .map(|k| {
                let ns = groups.get(&k).map_or(&[][..], Vec::as_slice);
                let v = Value::Array(ns.iter().map(|n| n.to_json()).collect());
                (k, v)
            })
            .collect();
        out["one_byte_cells"] = Value::Object(cells);
    } else if bytes == 2 {
        let cells: Map<String, Value> = cell_keys
            .map(|k| {
                let in_cell: Vec<(&String, &Vec<&CNode>)> =
                    groups.iter().filter(|(p, _)| p.starts_with(&k)).collect();
                let group: Vec<Value> = in_cell
                    .iter()
                    .flat_map(|(_, ns)| ns.iter().map(|n| n.to_json()))
                    .collect();
                let map: Map<String, Value> = in_cell
                    .iter()
                    .map(|(p, ns)| {
                        let v = Value::Array(ns.iter().map(|n| n.to_json()).collect());
                        ((*p).clone(), v)
                    })
                    .collect();
                let shared: Vec<usize> = in_cell
                    .iter()
                    .map(|(_, ns)| ns.len())
                    .filter(|n| *n > 1)
                    .collect();
                let v = json!({
                    "group_nodes": group,
                    "two_byte_map": map,
                    "max_collision": shared.iter().max().copied().unwrap_or(0),
                    "collision_count": shared.len(),
                });
                (k, v)
            })
            .collect();
        out["two_byte_cells"] = Value::Object(cells);
    }
    out
}

/// `GET /api/analytics/hash-collisions` (`region`: comma-separated IATA codes; nodes whose
/// adverts observers there heard) → `{inconsistent_nodes, by_size: {"1", "2", "3"}, region}`.
/// Every known node counts at every size; `hash_size` says which size each one uses.
pub async fn hash_collisions(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    let region: Option<Vec<String>> = p.str("region").map(|r| {
        let mut v: Vec<String> = r
            .split(',')
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
            .take(50)
            .collect();
        v.sort();
        v.dedup();
        v
    });
    let codes = region.clone();
    let rows = st
        .db
        .query(move |c| {
            let (w, args) = match codes {
                None => (String::new(), Vec::new()),
                // Only separators: no code, so no node was heard there.
                Some(codes) if codes.is_empty() => return Ok(Vec::new()),
                Some(codes) => {
                    let marks = vec!["?"; codes.len().max(1)].join(",");
                    (
                        format!(
                            "WHERE public_key IN (SELECT t.from_pubkey FROM transmissions t \
                             JOIN observations o ON o.transmission_id = t.id \
                             JOIN observers ob ON ob.idx = o.observer_idx \
                             WHERE t.payload_type = 4 AND ob.iata IN ({marks}))"
                        ),
                        codes,
                    )
                }
            };
            let mut stmt = sql(c.prepare(&format!(
                "SELECT public_key, name, role, lat, lon FROM nodes {w} \
                 ORDER BY public_key LIMIT {MAX_COLLISION_NODES}"
            )))?;
            let rows = sql(stmt
                .query_map(params_from_iter(args.iter()), |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<f64>>(3)?,
                        r.get::<_, Option<f64>>(4)?,
                    ))
                })
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            Ok(rows)
        })
        .await?;
    let cap: Arc<CapIndex> = st.capability.current();
    let nodes: Vec<CNode> = rows
        .into_iter()
        .map(|(public_key, name, role, lat, lon)| {
            let c = cap.get(&public_key);
            CNode {
                hash_size: c.and_then(|c| c.latest_advert_size).unwrap_or(0),
                // Both 1-byte and multi-byte adverts seen in the window.
                inconsistent: c
                    .is_some_and(|c| c.advert_mb.count > 0 && c.advert_mb.count < c.adverts.count),
                public_key,
                name,
                role,
                lat,
                lon,
            }
        })
        .collect();
    let inconsistent: Vec<Value> = nodes
        .iter()
        .filter(|n| n.inconsistent && (n.role == "repeater" || n.role == "room"))
        .map(CNode::to_json)
        .collect();
    Ok(Json(json!({
        "inconsistent_nodes": inconsistent,
        "by_size": {"1": by_size(&nodes, 1), "2": by_size(&nodes, 2), "3": by_size(&nodes, 3)},
        "region": region,
    })))
}
