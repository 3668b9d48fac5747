//! Hop tools in CoreScope's shapes, on the hop resolver: `GET /api/resolve-hops`,
//! `GET /api/traces/{hash}` and `POST /api/paths/inspect`.
//!
//! A list of prefixes is resolved as one flood path (from `from_node`, heard by `observer`,
//! when given), so each hop is weighed with its neighbours in the path, the positions and the
//! neighbor graph, exactly as an observed copy would be; prefixes of mixed sizes are resolved
//! one by one.

use std::collections::HashMap;
use std::sync::Arc;

use analytics::hops::{self, Copy, Endpoint, Ends, Hop, NodeId, ObserverAt};
use axum::Json;
use axum::extract::{Path, Query, State};
use meshcore::PathHashSize;
use serde_json::{Map, Value, json};
use store::time::iso;

use super::Params;
use super::resolved::{self, find_node, key_of, name_of, pos_json, round};
use crate::AppState;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};
use crate::topology::Topology;

/// Most hops one request names (CoreScope's inspect limit).
pub const MAX_HOPS: usize = 64;

/// Largest `POST /api/paths/inspect` body (CoreScope's limit).
pub const MAX_INSPECT_BODY: usize = 4096;

/// A validated hop prefix: lowercase hex of 1 to 3 bytes.
fn hop_bytes(s: &str) -> ApiResult<Vec<u8>> {
    let s = s.trim().to_ascii_lowercase();
    if s.is_empty() || s.len() % 2 == 1 || s.len() > 6 {
        return Err(ApiError::BadRequest(format!(
            "hop prefixes must be 1 to 3 bytes of hex, got {s:?}"
        )));
    }
    hex::decode(&s).map_err(|_| ApiError::BadRequest(format!("hop prefix {s:?} is not hex")))
}

/// Resolves `prefixes` with `topo`: one path when they share a size, else each alone.
fn resolve_list(
    topo: &Topology,
    prefixes: &[Vec<u8>],
    origin: Option<NodeId>,
    observer: Option<NodeId>,
) -> Vec<Hop> {
    let ends = Ends {
        origin: origin.map_or(Endpoint::Unknown, Endpoint::Known),
        destination: Endpoint::Unknown,
    };
    let obs = ObserverAt {
        node: observer,
        pos: None,
    };
    let solve = |list: &[Vec<u8>]| -> Vec<Hop> {
        let Some(size) = list.first().and_then(|p| PathHashSize::from_bytes(p.len())) else {
            return Vec::new();
        };
        let path: Vec<u8> = list.concat();
        let copy = Copy {
            direct: false,
            hash_size: size,
            path: &path,
            observer: obs,
        };
        hops::resolve(&topo.dir, &topo.graph, ends, &[copy])
            .into_iter()
            .next()
            .unwrap_or_default()
    };
    let same = prefixes.windows(2).all(|w| w[0].len() == w[1].len());
    if same {
        solve(prefixes)
    } else {
        prefixes
            .iter()
            .flat_map(|p| {
                let one = solve(std::slice::from_ref(p));
                one.into_iter().next()
            })
            .collect()
    }
}

/// `GET /api/resolve-hops?hops=ab,cd&from_node&observer` → `{resolved: {hop: {name, pubkey,
/// ambiguous, candidates: [{name, pubkey, lat, lon, affinityScore}], conflicts, bestCandidate,
/// confidence, probability}}}`. `confidence` is CoreScope's word: `no_match`,
/// `unique_prefix`, `resolved` (the resolver's probability reached 0.5; `bestCandidate` set)
/// or `ambiguous`; `affinityScore` is each candidate's probability.
pub async fn resolve_hops(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    let topo = st.capability.current().topology.clone();
    let Some(list) = p.list("hops", MAX_HOPS)? else {
        return Ok(Json(json!({"resolved": {}})));
    };
    let prefixes: Vec<Vec<u8>> = list
        .iter()
        .map(|h| hop_bytes(h))
        .collect::<Result<_, _>>()?;
    let origin = p
        .str("from_node")
        .map(|k| find_node(&topo, k))
        .transpose()?;
    let observer = p.str("observer").map(|k| find_node(&topo, k)).transpose()?;
    let solved = resolve_list(&topo, &prefixes, origin, observer);
    let mut out = Map::new();
    for (i, pre) in prefixes.iter().enumerate() {
        let h = solved.get(i);
        let cands: Vec<(NodeId, f64)> = h.map(|h| h.candidates.clone()).unwrap_or_default();
        let cand_json: Vec<Value> = cands
            .iter()
            .take(resolved::MAX_CANDIDATES)
            .map(|(n, prob)| {
                let (lat, lon) = pos_json(&topo, *n);
                json!({"name": name_of(&topo, *n), "pubkey": key_of(&topo, *n), "lat": lat,
                       "lon": lon, "affinityScore": round(*prob)})
            })
            .collect();
        let chosen = h.and_then(|h| h.resolved(hops::RESOLVED));
        let top = cands.first().map(|c| c.0);
        let shown = chosen.or(top);
        let mut e = json!({
            "name": shown.and_then(|n| name_of(&topo, n)),
            "candidates": cand_json,
            "conflicts": if cands.len() > 1 { cand_json.clone() } else { Vec::new() },
            "probability": round(h.map_or(0.0, |h| h.confidence)),
        });
        if let Some(n) = shown {
            e["pubkey"] = key_of(&topo, n).into();
        }
        e["confidence"] = match (cands.len(), chosen) {
            (0, _) => "no_match",
            (1, _) => "unique_prefix",
            (_, Some(_)) => "resolved",
            _ => "ambiguous",
        }
        .into();
        if cands.len() > 1 {
            e["ambiguous"] = true.into();
            if let Some(n) = chosen {
                e["bestCandidate"] = key_of(&topo, n).into();
            }
        }
        out.insert(hex::encode(pre), e);
    }
    Ok(Json(json!({ "resolved": out })))
}

/// `GET /api/traces/{hash}` → `{traces: [{observer, observer_name, time, snr, rssi,
/// path_json, resolved_path, resolved_confidence}]}`: every copy of the packet (the first 500,
/// receipt order), each path resolved; an unknown hash is `{traces: []}` (CoreScope's answer).
pub async fn traces(
    State(st): State<Arc<AppState>>,
    Path(hash): Path<String>,
) -> ApiResult<Json<Value>> {
    let hash = hash.trim().to_ascii_lowercase();
    if hash.len() != 16 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest("hash must be 16 hex digits".into()));
    }
    let topo = st.capability.current().topology.clone();
    let t = topo.clone();
    let found = st
        .db
        .query(move |c| {
            let tx: Option<i64> = match c.query_row(
                "SELECT id FROM transmissions WHERE hash = ?1",
                [&hash],
                |r| r.get(0),
            ) {
                Ok(id) => Some(id),
                Err(store::rusqlite::Error::QueryReturnedNoRows) => None,
                Err(e) => return Err(e.into()),
            };
            let Some(tx) = tx else { return Ok(None) };
            let Some(pkt) = resolved::resolve_tx(c, &t, tx)? else {
                return Ok(None);
            };
            let mut stmt = sql(c.prepare_cached(
                "SELECT o.id, ob.id, ob.name, o.rssi FROM observations o
                 JOIN observers ob ON ob.idx = o.observer_idx WHERE o.transmission_id = ?1",
            ))?;
            let meta: HashMap<i64, (String, Option<String>, Option<f64>)> = sql(stmt
                .query_map([tx], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))
                .and_then(|m| m.collect::<Result<_, _>>()))?;
            Ok(Some((pkt, meta)))
        })
        .await?;
    let Some((pkt, meta)) = found else {
        return Ok(Json(json!({"traces": []})));
    };
    let traces: Vec<Value> = pkt
        .copies
        .iter()
        .map(|c| {
            let (id, name, rssi) = meta.get(&c.obs_id).cloned().unwrap_or_default();
            let path: Vec<String> = c.prefixes.iter().map(|p| p.to_ascii_uppercase()).collect();
            let mut v = json!({
                "observer": id,
                "observer_name": name,
                "time": iso(c.received_at),
                "snr": c.snr,
                "rssi": rssi,
                "path_json": Value::from(path.iter().map(|p| Value::from(p.as_str())).collect::<Vec<_>>()).to_string(),
            });
            resolved::annotate_one(&topo, c, &mut v);
            v
        })
        .collect();
    Ok(Json(json!({ "traces": traces })))
}

/// `POST /api/paths/inspect` with `{prefixes: [...], context: {observerId}, limit}` →
/// `{candidates: [{path, names, score, speculative, evidence: {perHop: [{prefix,
/// candidatesConsidered, chosen, edgeWeight, alternatives: [{publicKey, name, score}]}]}}],
/// input, stats}`: the resolver's likeliest node per hop (one candidate path: belief
/// propagation gives each hop's probability, not a beam of whole paths), `score` the geometric
/// mean of the hops' probabilities, `speculative` below 0.7, `edgeWeight` the neighbor graph's
/// confidence in the link to the previous hop. Same size prefixes only, at most 64, 4 KiB of
/// body.
pub async fn inspect(
    State(st): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    if body.len() > MAX_INSPECT_BODY {
        return Err(ApiError::BadRequest(
            "body too large (max 4096 bytes)".into(),
        ));
    }
    let v: Value =
        serde_json::from_slice(&body).map_err(|_| ApiError::BadRequest("invalid JSON".into()))?;
    let list = v
        .get("prefixes")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::BadRequest("prefixes required".into()))?;
    if list.len() > MAX_HOPS {
        return Err(ApiError::BadRequest("too many prefixes (max 64)".into()));
    }
    let prefixes: Vec<Vec<u8>> = list
        .iter()
        .map(|p| {
            p.as_str()
                .ok_or_else(|| ApiError::BadRequest("prefixes must be strings".into()))
                .and_then(hop_bytes)
        })
        .collect::<Result<_, _>>()?;
    if prefixes.windows(2).any(|w| w[0].len() != w[1].len()) {
        return Err(ApiError::BadRequest(
            "mixed prefix lengths not allowed".into(),
        ));
    }
    let limit = match v.get("limit") {
        None | Some(Value::Null) => 10,
        Some(l) => l
            .as_i64()
            .filter(|l| *l >= 0)
            .ok_or_else(|| ApiError::BadRequest("limit must be a non-negative integer".into()))?
            .clamp(1, 50),
    };
    let topo = st.capability.current().topology.clone();
    let observer = match v.get("context").and_then(|c| c.get("observerId")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(find_node(&topo, s)?),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "context.observerId must be a string".into(),
            ));
        }
    };
    let start = std::time::Instant::now();
    let solved = resolve_list(&topo, &prefixes, None, observer);
    let short = |n: NodeId| topo.dir.node(n).map(|d| hops::short_id(&d.public_key));
    let mut per_hop = Vec::with_capacity(prefixes.len());
    let mut path = Vec::with_capacity(prefixes.len());
    let mut names = Vec::with_capacity(prefixes.len());
    let mut log_sum = 0.0;
    let mut prev: Option<NodeId> = None;
    for (i, pre) in prefixes.iter().enumerate() {
        let h = solved.get(i);
        let chosen = h.and_then(|h| h.node);
        let p = h.map_or(0.0, |h| h.confidence);
        log_sum += p.max(1e-9).ln();
        let edge = match (prev, chosen) {
            (Some(a), Some(b)) => match (short(a), short(b)) {
                (Some(a), Some(b)) => topo.graph.get(a, b).map_or(0.0, |e| e.confidence()),
                _ => 0.0,
            },
            _ => 0.0,
        };
        let alternatives: Vec<Value> = h
            .map(|h| {
                h.candidates
                    .iter()
                    .filter(|(n, _)| Some(*n) != chosen)
                    .take(5)
                    .map(|(n, s)| json!({"publicKey": key_of(&topo, *n), "name": name_of(&topo, *n).unwrap_or(""), "score": round(*s)}))
                    .collect()
            })
            .unwrap_or_default();
        per_hop.push(json!({
            "prefix": hex::encode(pre),
            "candidatesConsidered": h.map_or(0, |h| h.candidates.len()),
            "chosen": chosen.and_then(|n| key_of(&topo, n)).unwrap_or(""),
            "edgeWeight": round(edge),
            "alternatives": alternatives,
        }));
        path.push(
            chosen
                .and_then(|n| key_of(&topo, n))
                .unwrap_or("")
                .to_owned(),
        );
        names.push(
            chosen
                .and_then(|n| name_of(&topo, n))
                .unwrap_or("")
                .to_owned(),
        );
        prev = chosen;
    }
    let score = (log_sum / prefixes.len() as f64).exp();
    let candidates = if limit > 0 {
        vec![json!({
            "path": path,
            "names": names,
            "score": round(score),
            "speculative": score < 0.7,
            "evidence": {"perHop": per_hop},
        })]
    } else {
        Vec::new()
    };
    Ok(Json(json!({
        "candidates": candidates,
        "input": {"prefixes": prefixes.iter().map(hex::encode).collect::<Vec<_>>(), "limit": limit},
        "stats": {"candidatesReturned": candidates.len(), "elapsedMs": start.elapsed().as_secs_f64() * 1000.0},
    })))
}
