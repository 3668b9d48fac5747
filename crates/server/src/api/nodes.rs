//! `/api/nodes`, `/api/nodes/search`, `/api/nodes/{pubkey}`.
//!
//! Nodes carry CoreScope's keys beside meshlens's: `last_heard` (the last advert, as
//! `last_seen`), `foreign` (its latest advert placed it outside the geo filter: the writer
//! flags it, as CoreScope's ingest does, and keeps it),
//! `battery_mv` (from the node's own observer status, when the node is an observer: adverts
//! carry no telemetry) and `temperature_c` (null: nothing meshlens receives carries it).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::{Value, json};
use store::rusqlite::{Connection, Row, ToSql, params_from_iter};
use store::time::{iso, parse_duration};

use super::{Params, hex_prefix, json_response, like_escape, role};
use crate::AppState;
use crate::capability::CapIndex;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};

/// Most nodes one request may return.
pub const MAX_NODES: i64 = 2_000;

/// Most region codes one `region` filter may name.
const MAX_REGIONS: usize = 50;

/// Most nodes a capability-filtered list looks at.
const MAX_FILTER_SCAN: usize = 100_000;

/// One value of `multiByte`.
enum CapFilter {
    Status(analytics::capability::Status),
    Legacy,
}

const NODE_COLUMNS: &str =
    "public_key, name, role, lat, lon, first_seen, last_seen, advert_count, foreign_advert";

struct NodeRow {
    public_key: String,
    name: Option<String>,
    role: String,
    lat: Option<f64>,
    lon: Option<f64>,
    first_seen: i64,
    last_seen: i64,
    advert_count: i64,
    foreign: bool,
}

impl NodeRow {
    fn from_row(r: &Row<'_>) -> store::rusqlite::Result<NodeRow> {
        Ok(NodeRow {
            public_key: r.get(0)?,
            name: r.get(1)?,
            role: r.get(2)?,
            lat: r.get(3)?,
            lon: r.get(4)?,
            first_seen: r.get(5)?,
            last_seen: r.get(6)?,
            advert_count: r.get(7)?,
            foreign: r.get(8)?,
        })
    }

    /// The API object, as a typed view borrowing the row: serialized straight to bytes, it
    /// skips the 18-entry JSON map (and its key strings) that `json!` built per node.
    fn view<'a>(
        &'a self,
        sizes: &HashMap<String, (u8, bool)>,
        cap: &'a CapIndex,
        battery: &HashMap<String, i64>,
    ) -> NodeView<'a> {
        let size = sizes.get(&self.public_key);
        let c = cap.get(&self.public_key);
        let (status, evidence, max) = crate::capability::row_fields(c);
        let seen = iso(self.last_seen);
        NodeView {
            public_key: &self.public_key,
            name: self.name.as_deref(),
            role: &self.role,
            lat: self.lat,
            lon: self.lon,
            first_seen: iso(self.first_seen),
            last_heard: seen.clone(),
            last_seen: seen,
            foreign: self.foreign,
            battery_mv: battery.get(&self.public_key).copied(),
            temperature_c: None,
            advert_count: self.advert_count,
            hash_size: size.map(|s| s.0),
            hash_size_inconsistent: size.is_some_and(|s| s.1),
            multi_byte_status: status,
            multi_byte_evidence: evidence,
            multi_byte_max_hash_size: max,
            multi_byte_legacy_suspect: c.is_some_and(|c| c.legacy_suspect),
        }
    }

    fn to_json(
        &self,
        sizes: &HashMap<String, (u8, bool)>,
        cap: &CapIndex,
        battery: &HashMap<String, i64>,
    ) -> Value {
        serde_json::to_value(self.view(sizes, cap, battery)).unwrap_or(Value::Null)
    }
}

/// A node as the API shows it (CoreScope's keys beside meshlens's; see the module doc).
#[derive(serde::Serialize)]
struct NodeView<'a> {
    public_key: &'a str,
    name: Option<&'a str>,
    role: &'a str,
    lat: Option<f64>,
    lon: Option<f64>,
    first_seen: String,
    last_seen: String,
    last_heard: String,
    foreign: bool,
    battery_mv: Option<i64>,
    temperature_c: Option<f64>,
    advert_count: i64,
    hash_size: Option<u8>,
    hash_size_inconsistent: bool,
    multi_byte_status: &'static str,
    multi_byte_evidence: &'static str,
    multi_byte_max_hash_size: u8,
    multi_byte_legacy_suspect: bool,
}

/// The path-hash size each node advertises with, from its flood adverts (the originator sets
/// the size bits and forwarders keep them, so the first-heard frame of a transmission tells;
/// zero-hop direct adverts say nothing): the size of the latest one, and whether more than
/// one size was seen. One grouped query over the `(from_pubkey, first_seen)` index, reading
/// only transmissions (not their observations), for all `keys` at once. (Left to itself the
/// planner prefers the type index and reads every advert of the week: 16 ms instead of 0.3 ms
/// for a page of 50 at 200,000 observations.)
fn advert_hash_sizes(c: &Connection, keys: &[&str]) -> ApiResult<HashMap<String, (u8, bool)>> {
    let mut out: HashMap<String, (u8, bool)> = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    // The top two bits of the path-length byte, which follows the header (and the 4 bytes of
    // transport codes on route 0): hex digit 0-3 → 1 byte, 4-7 → 2, 8-B → 3, C-F reserved.
    let marks = vec!["?"; keys.len()].join(",");
    let mut stmt = sql(c.prepare_cached(&format!(
        "SELECT from_pubkey,
                (instr('0123456789ABCDEF',
                       substr(hex(substr(raw, CASE WHEN route_type = 0 THEN 6 ELSE 2 END, 1)), 1, 1))
                 - 1) / 4 + 1 AS size,
                max(first_seen)
         FROM transmissions INDEXED BY transmissions_from
         WHERE from_pubkey IN ({marks}) AND first_seen >= ? AND payload_type = 4
           AND route_type IN (0, 1)
         GROUP BY 1, 2"
    )))?;
    // The last week of adverts, as the capability window: bounded by traffic, not by the age
    // of the database.
    let since = crate::now_ms() - 7 * 86_400_000;
    let mut args: Vec<&dyn ToSql> = keys.iter().map(|k| k as &dyn ToSql).collect();
    args.push(&since);
    let rows = sql(stmt
        .query_map(params_from_iter(args), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
    let mut latest: HashMap<String, (i64, i64, usize)> = HashMap::new();
    for (key, size, at) in rows {
        let e = latest.entry(key).or_insert((size, at, 0));
        e.2 += 1;
        if at > e.1 {
            (e.0, e.1) = (size, at);
        }
    }
    for (key, (size, _, sizes)) in latest {
        // Reserved size bits never yield a size 4.
        if let Ok(size @ 1..=3) = u8::try_from(size) {
            out.insert(key, (size, sizes > 1));
        }
    }
    Ok(out)
}

/// [`advert_hash_sizes`], answered from the capability index where it knows the node's
/// adverts (as of the last cycle: an O(1) lookup instead of reading every advert of the week,
/// which took 7-11 ms for a page of 50 at 2,000,000 observations), and from SQL for the rest
/// (nodes first heard since the cycle, or before the first one).
fn hash_sizes(
    c: &Connection,
    keys: &[&str],
    cap: &CapIndex,
) -> ApiResult<HashMap<String, (u8, bool)>> {
    let mut out = HashMap::new();
    let mut missing = Vec::new();
    for &k in keys {
        match cap.get(k) {
            Some(n) if let Some(latest @ 1..=3) = n.latest_advert_size => {
                // Multi-byte and 1-byte adverts both seen in the window.
                let mixed = n.advert_mb.count > 0 && n.advert_mb.count < n.adverts.count;
                out.insert(k.to_owned(), (latest, mixed));
            }
            _ => missing.push(k),
        }
    }
    out.extend(advert_hash_sizes(c, &missing)?);
    Ok(out)
}

/// The battery voltage each of `keys` last reported as an observer (a node that is also an
/// observer sends status messages under its own key), over the observers' unique id index.
/// The keys travel as one JSON array, so the statement is the same for every page size (one
/// entry in the statement cache, no limit on bound variables).
pub fn observer_battery(c: &Connection, keys: &[&str]) -> ApiResult<HashMap<String, i64>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let list = serde_json::to_string(keys).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut stmt = sql(c.prepare_cached(
        "SELECT id, battery_mv FROM observers
         WHERE id IN (SELECT value FROM json_each(?1)) AND battery_mv IS NOT NULL",
    ))?;
    let rows = sql(stmt
        .query_map([list], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .and_then(|m| m.collect::<Result<HashMap<_, _>, _>>()))?;
    Ok(rows)
}

/// `GET /api/nodes` → `{nodes, total, counts}`.
pub async fn list(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let p = Params(q);
    let limit = p.limit(50, MAX_NODES)?;
    let offset = p.offset()?;
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Box<dyn ToSql + Send>> = Vec::new();
    if let Some(r) = p.str("role") {
        clauses.push("role = ?".into());
        args.push(Box::new(role(r)?));
    }
    if let Some(s) = p.str("search") {
        if s.chars().count() > 64 {
            return Err(ApiError::BadRequest("search is too long".into()));
        }
        clauses.push("(name LIKE ? ESCAPE '\\' OR public_key LIKE ? ESCAPE '\\')".into());
        args.push(Box::new(format!("%{}%", like_escape(s))));
        args.push(Box::new(format!(
            "{}%",
            like_escape(&s.to_ascii_lowercase())
        )));
    }
    if let Some(h) = p.str("lastHeard") {
        let d = parse_duration(h).map_err(|e| ApiError::BadRequest(format!("lastHeard: {e}")))?;
        clauses.push("last_seen >= ?".into());
        args.push(Box::new(crate::now_ms() - d.as_millis() as i64));
    }
    // CoreScope's `before`: first heard at or before that time.
    if let Some(before) = p.time("before")? {
        clauses.push("first_seen <= ?".into());
        args.push(Box::new(before));
    }
    if let Some(area) = super::areas::from_params(&p, &st.ui.areas)? {
        clauses.push(area.sql_contains("lat", "lon"));
    }
    if let Some(codes) = p.list("region", MAX_REGIONS)? {
        let mut codes: Vec<String> = codes.iter().map(|s| s.to_ascii_uppercase()).collect();
        codes.sort_unstable();
        codes.dedup();
        let marks = vec!["?"; codes.len()].join(",");
        clauses.push(format!(
            "public_key IN (SELECT t.from_pubkey FROM transmissions t JOIN observations o ON o.transmission_id = t.id \
             JOIN observers ob ON ob.idx = o.observer_idx WHERE t.payload_type = 4 AND ob.iata IN ({marks}))"
        ));
        args.extend(
            codes
                .into_iter()
                .map(|c| Box::new(c) as Box<dyn ToSql + Send>),
        );
    }
    let order = match p.str("sortBy").unwrap_or("last_seen") {
        "last_seen" | "lastSeen" => "last_seen DESC",
        "first_seen" | "firstSeen" => "first_seen DESC",
        "name" => "name COLLATE NOCASE ASC",
        "advert_count" | "adverts" | "packetCount" => "advert_count DESC",
        "role" => "role ASC, name COLLATE NOCASE ASC",
        other => {
            return Err(ApiError::BadRequest(format!(
                "sortBy: unknown field {other:?}"
            )));
        }
    };
    let multi_byte_key = if p.str("multiByte").is_some() {
        "multiByte"
    } else {
        "multi_byte"
    };
    let multi_byte = match p.list(multi_byte_key, 4)? {
        None => None,
        Some(m) => Some(
            m.into_iter()
                .map(|s| match s {
                    "confirmed" => Ok(CapFilter::Status(analytics::capability::Status::Confirmed)),
                    "suspected" => Ok(CapFilter::Status(analytics::capability::Status::Suspected)),
                    "unknown" => Ok(CapFilter::Status(analytics::capability::Status::Unknown)),
                    "legacy" => Ok(CapFilter::Legacy),
                    other => Err(ApiError::BadRequest(format!(
                        "multiByte: expected confirmed, suspected, unknown or legacy, got {other:?}"
                    ))),
                })
                .collect::<ApiResult<Vec<_>>>()?,
        ),
    };
    let cap_q = st.capability.current();
    // The unfiltered total and the role counts change only with a commit: one generation's
    // worth is reused (a sort of every node per request otherwise).
    let generation = st.generation.load(std::sync::atomic::Ordering::Relaxed);
    let cached_counts = st.nodes_counts.lock().ok().and_then(|c| {
        c.as_ref()
            .filter(|(g, _)| *g == generation)
            .map(|(_, v)| v.clone())
    });
    let unfiltered = clauses.is_empty() && multi_byte.is_none();
    let state = st.clone();
    // The page is serialized on the blocking thread that read it: up to 2,000 nodes of JSON
    // are not built on an async worker, where they would hold up every other connection.
    let body = st
        .db
        .query(move |c| {
            let w = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
            // The statements differ only by filter and order (a bounded set): prepared once,
            // with the page bounds bound last.
            let page_args = [limit, offset];
            let a = || params_from_iter(args.iter().map(|a| a.as_ref() as &dyn ToSql));
            let paged = || {
                params_from_iter(
                    args.iter()
                        .map(|a| a.as_ref() as &dyn ToSql)
                        .chain(page_args.iter().map(|v| v as &dyn ToSql)),
                )
            };
            let counts = match &cached_counts {
                Some((_, counts)) => counts.clone(),
                None => super::status::role_counts(c)?,
            };
            let (rows, total) = match multi_byte {
                None => {
                    let total: i64 = match &cached_counts {
                        Some((total, _)) if unfiltered => *total,
                        _ => sql(c.prepare_cached(&format!("SELECT count(*) FROM nodes {w}")).and_then(|mut s| s.query_row(a(), |r| r.get(0))))?,
                    };
                    let mut stmt = sql(c.prepare_cached(&format!(
                        "SELECT {NODE_COLUMNS} FROM nodes {w} ORDER BY {order}, public_key LIMIT ? OFFSET ?"
                    )))?;
                    (sql(stmt.query_map(paged(), NodeRow::from_row).and_then(|m| m.collect::<Result<Vec<_>, _>>()))?, total)
                }
                // The capability lives in the reader's index, not in SQL: walk the keys in
                // order (bounded by the number of nodes, not by traffic), keep the matching
                // page, then read its rows.
                Some(filters) => {
                    let mut stmt = sql(c.prepare_cached(&format!(
                        "SELECT public_key FROM nodes {w} ORDER BY {order}, public_key LIMIT {MAX_FILTER_SCAN}"
                    )))?;
                    let keys = sql(stmt.query_map(a(), |r| r.get::<_, String>(0)).and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
                    let matching: Vec<String> = keys
                        .into_iter()
                        .filter(|k| {
                            let c = cap_q.get(k);
                            filters.iter().any(|f| match f {
                                CapFilter::Legacy => c.is_some_and(|c| c.legacy_suspect),
                                CapFilter::Status(s) => c.map_or(analytics::capability::Status::Unknown, |c| c.status) == *s,
                            })
                        })
                        .collect();
                    let total = matching.len() as i64;
                    let page: Vec<&String> = matching.iter().skip(offset as usize).take(limit as usize).collect();
                    let mut by_key: HashMap<String, NodeRow> = HashMap::new();
                    if !page.is_empty() {
                        let list = serde_json::to_string(&page).map_err(|e| ApiError::Internal(e.to_string()))?;
                        let mut stmt = sql(c.prepare_cached(&format!(
                            "SELECT {NODE_COLUMNS} FROM nodes WHERE public_key IN (SELECT value FROM json_each(?1))"
                        )))?;
                        for r in sql(stmt.query_map([list], NodeRow::from_row))? {
                            let r = sql(r)?;
                            by_key.insert(r.public_key.clone(), r);
                        }
                    }
                    (page.iter().filter_map(|k| by_key.remove(*k)).collect(), total)
                }
            };
            if unfiltered && cached_counts.is_none() && let Ok(mut cache) = state.nodes_counts.lock() {
                *cache = Some((generation, (total, counts.clone())));
            }
            let keys: Vec<&str> = rows.iter().map(|r| r.public_key.as_str()).collect();
            let sizes = hash_sizes(c, &keys, &cap_q)?;
            let battery = observer_battery(c, &keys)?;
            let nodes: Vec<NodeView<'_>> = rows.iter().map(|r| r.view(&sizes, &cap_q, &battery)).collect();
            #[derive(serde::Serialize)]
            struct Answer<'a> {
                nodes: Vec<NodeView<'a>>,
                total: i64,
                counts: Value,
            }
            serde_json::to_vec(&Answer { nodes, total, counts })
                .map_err(|e| ApiError::Internal(e.to_string()))
        })
        .await?;
    Ok(json_response(body))
}

/// `GET /api/nodes/search?q=` → `{nodes}`: name substring or public-key prefix, 20 at most.
/// `?prefix=` matches public-key prefixes only (resolving a path hop to its candidates).
pub async fn search(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    // Key prefix only, or name substring / key prefix.
    let (condition, args) = if let Some(prefix) = p.str("prefix") {
        let prefix = hex_prefix("prefix", prefix)?;
        let end = format!("{prefix}g");
        ("public_key >= ?1 AND public_key < ?2", [prefix, end])
    } else {
        let Some(q) = p.str("q") else {
            return Ok(Json(json!({"nodes": []})));
        };
        if q.chars().count() > 64 {
            return Err(ApiError::BadRequest("q is too long".into()));
        }
        (
            "name LIKE ?1 ESCAPE '\\' OR public_key LIKE ?2 ESCAPE '\\'",
            [
                format!("%{}%", like_escape(q)),
                format!("{}%", like_escape(&q.to_ascii_lowercase())),
            ],
        )
    };
    let rows = st
        .db
        .query(move |c| {
            let mut stmt = sql(c.prepare_cached(&format!(
                "SELECT {NODE_COLUMNS} FROM nodes WHERE {condition} ORDER BY last_seen DESC LIMIT 20"
            )))?;
            let rows = sql(stmt
                .query_map(args, NodeRow::from_row)
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            let keys: Vec<&str> = rows.iter().map(|r| r.public_key.as_str()).collect();
            let battery = observer_battery(c, &keys)?;
            Ok((rows, battery))
        })
        .await?;
    let (rows, battery) = rows;
    let cap = st.capability.current();
    let nodes: Vec<Value> = rows
        .iter()
        .map(|r| r.to_json(&HashMap::new(), &cap, &battery))
        .collect();
    Ok(Json(json!({"nodes": nodes})))
}

/// `GET /api/nodes/{pubkey}` → `{node, recentAdverts}`; a unique prefix is accepted.
pub async fn detail(
    State(st): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> ApiResult<Response> {
    // A CoreScope path meshlens does not serve (`/api/nodes/clock-skew`, …) is not a
    // malformed key: 404, as for any unknown endpoint.
    if key.contains('-') {
        return Err(ApiError::NotFound("no such endpoint".into()));
    }
    let key = hex_prefix("public key", &key)?;
    if key.len() < 2 {
        return Err(ApiError::BadRequest(
            "public key prefix must be at least 2 hex digits".into(),
        ));
    }
    let cap_q = st.capability.current();
    let found = st
        .db
        .query(move |c| {
            let range = [key.clone(), format!("{key}g")];
            let mut matches = Vec::new();
            for (table, active) in [("nodes", true), ("inactive_nodes", false)] {
                let mut stmt = sql(c.prepare_cached(&format!(
                    "SELECT {NODE_COLUMNS} FROM {table} WHERE public_key >= ?1 AND public_key < ?2 LIMIT 2"
                )))?;
                let rows = sql(stmt.query_map([&range[0], &range[1]], NodeRow::from_row).and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
                matches.extend(rows.into_iter().map(|r| (r, active)));
            }
            if matches.len() > 1 {
                return Err(ApiError::BadRequest("ambiguous public key prefix; give more digits".into()));
            }
            let Some((row, active)) = matches.pop() else { return Ok(None) };
            let sizes = hash_sizes(c, &[row.public_key.as_str()], &cap_q)?;
            let battery = observer_battery(c, &[row.public_key.as_str()])?;
            let mut stmt = sql(c.prepare_cached(
                "SELECT t.id, t.hash, t.raw, t.first_seen, t.last_seen, t.observation_count, t.channel, t.scope, t.from_pubkey
                 FROM transmissions t INDEXED BY transmissions_from
                 WHERE t.from_pubkey = ?1 AND t.payload_type = 4
                 ORDER BY t.first_seen DESC LIMIT 20",
            ))?;
            let adverts = sql(stmt
                .query_map([&row.public_key], super::packets::tx_row)
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            Ok(Some((row, active, sizes, adverts, battery)))
        })
        .await?;
    let Some((row, active, sizes, adverts, battery)) = found else {
        return Err(ApiError::NotFound("no such node".into()));
    };
    let cap = st.capability.current();
    let mut node = row.to_json(&sizes, &cap, &battery);
    node["active"] = active.into();
    node["multi_byte"] = crate::capability::detail(cap.get(&row.public_key));
    // The adverts are packet objects, written from the per-frame fragments the packet list
    // caches (the same object as `/api/packets/{hash}` without its observations).
    let mut out = Vec::with_capacity(1024 + adverts.len() * 1536);
    out.extend_from_slice(b"{\"node\":");
    super::packet_json::put(&mut out, &node);
    out.extend_from_slice(b",\"recentAdverts\":[");
    for (i, a) in adverts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        a.write_open(
            &mut out,
            &st.frame_json,
            &st.decode_no_verify,
            &st.signatures,
            None,
        );
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok(super::json_response(out))
}
