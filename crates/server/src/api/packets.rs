//! `/api/packets`, `/api/packets/timestamps`, `/api/packets/{id|hash}`,
//! `POST /api/packets/observations` and `POST /api/decode`.
//!
//! Each packet object carries CoreScope's keys beside meshlens's own: `decoded_json` and
//! `path_json` (JSON strings, as CoreScope stores them), and the observer, SNR and RSSI of its
//! first observation, read for a whole page in one query ([`first_observations`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use meshcore::report::{breakdown, parse_hex};
use meshcore::{PayloadType, RouteType};
use serde_json::{Map, Value, json};
use store::rusqlite::{Connection, Row, ToSql, params_from_iter};

use super::{Params, hex_prefix, json_response};
use crate::AppState;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};
use store::time::iso;

/// Most packets one request may return.
pub const MAX_PACKETS: i64 = 10_000;

/// Most observations listed for one packet (the first heard); `observation_count` still says
/// how many there are. Keeps every response bounded however dense the mesh.
pub const MAX_OBSERVATIONS: i64 = 500;

/// Most observations `GET /api/packets?expand=observations` adds to one answer in all (a few
/// hundred bytes of JSON each, under 1 KiB even for the largest frame: a few MiB at most);
/// past it the later packets' lists are cut and `truncated` is true. Unbounded, a 10,000-row
/// page of a dense mesh was 28 MB of JSON and left the process hundreds of MiB larger.
pub const MAX_EXPANDED_OBSERVATIONS: usize = 5_000;

/// The columns [`tx_row`] reads, in its order (transmissions aliased `t`).
pub const TX_COLUMNS: &str = "t.id, t.hash, t.raw, t.first_seen, t.last_seen, t.observation_count, \
     t.channel, t.scope, t.from_pubkey";

/// A transmission row from the database.
pub struct TxRow {
    id: i64,
    hash: String,
    raw: Vec<u8>,
    first_seen: i64,
    last_seen: i64,
    observation_count: i64,
    channel: Option<String>,
    scope: Option<String>,
    from_pubkey: Option<String>,
}

/// Reads a transmission row selected with the standard column list.
pub fn tx_row(r: &Row<'_>) -> store::rusqlite::Result<TxRow> {
    TxRow::from_row(r)
}

impl TxRow {
    /// The transmission's id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The packet hash (hex).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The first-heard frame.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// When it was first heard (Unix ms).
    pub fn first_seen(&self) -> i64 {
        self.first_seen
    }

    /// Observations stored so far.
    pub fn observation_count(&self) -> i64 {
        self.observation_count
    }

    fn from_row(r: &Row<'_>) -> store::rusqlite::Result<TxRow> {
        Ok(TxRow {
            id: r.get(0)?,
            hash: r.get(1)?,
            raw: r.get(2)?,
            first_seen: r.get(3)?,
            last_seen: r.get(4)?,
            observation_count: r.get(5)?,
            channel: r.get(6)?,
            scope: r.get(7)?,
            from_pubkey: r.get(8)?,
        })
    }

    /// The API object: identity, times, header fields, the full decode as an object, and
    /// CoreScope's `decoded_json`/`path_json` strings. The observer keys need
    /// [`TxRow::to_json_with`].
    pub fn to_json(&self, st: &AppState) -> Value {
        self.to_json_with(st, None)
    }

    /// [`TxRow::to_json`] plus CoreScope's keys of the first observation (`observer_id`,
    /// `observer_name`, `observer_iata`, `snr`, `rssi`, `direction`); null when none is known.
    pub fn to_json_with(&self, st: &AppState, first: Option<&FirstObs>) -> Value {
        self.build(st, first, true)
    }

    /// [`TxRow::to_json_with`] without `decoded_json` and `path_json`, for answers built from
    /// the packet object that do not include it (channel messages): serializing the payload
    /// a second time was most of their added cost.
    pub fn to_json_lean(&self, st: &AppState, first: Option<&FirstObs>) -> Value {
        self.build(st, first, false)
    }

    fn build(&self, st: &AppState, first: Option<&FirstObs>, strings: bool) -> Value {
        self.build_with(&st.decode_no_verify, &st.signatures, first, strings)
    }

    fn build_with(
        &self,
        opts: &meshcore::report::DecodeOptions,
        signatures: &crate::SignatureCache,
        first: Option<&FirstObs>,
        strings: bool,
    ) -> Value {
        let mut decoded = crate::decode_for_api(&self.raw, opts);
        if decoded.get("payload_type_name") == Some(&Value::from("ADVERT")) {
            // Stored frames never change, so each advert is verified once per cache lifetime.
            decoded["signature_valid"] = signatures.verify(&self.hash, &self.raw).into();
        }
        let mut o = Map::new();
        o.insert("id".into(), self.id.into());
        o.insert("hash".into(), self.hash.clone().into());
        o.insert("first_seen".into(), iso(self.first_seen).into());
        o.insert("last_seen".into(), iso(self.last_seen).into());
        o.insert("timestamp".into(), iso(self.first_seen).into());
        for k in super::packet_json::HEADER_KEYS {
            if let Some(v) = decoded.get(k) {
                o.insert(k.into(), v.clone());
            }
        }
        o.insert("raw_hex".into(), hex::encode(&self.raw).into());
        o.insert("observation_count".into(), self.observation_count.into());
        o.insert("channel".into(), self.channel.clone().into());
        o.insert("scope".into(), self.scope.clone().into());
        // CoreScope's name for it: null without transport codes, "" for codes of a region
        // nobody configured.
        let transport = matches!(
            decoded.get("route_type").and_then(Value::as_i64),
            Some(0 | 3)
        );
        o.insert(
            "scope_name".into(),
            match (&self.scope, transport) {
                (Some(s), _) => s.clone().into(),
                (None, true) => "".into(),
                (None, false) => Value::Null,
            },
        );
        o.insert("from_pubkey".into(), self.from_pubkey.clone().into());
        if strings {
            o.insert(
                "decoded_json".into(),
                super::corescope::decoded_json(&decoded).into(),
            );
            o.insert(
                "path_json".into(),
                super::corescope::path_json(&decoded).into(),
            );
        }
        if let Some(f) = first {
            o.insert("observer_id".into(), f.observer_id.clone().into());
            o.insert("observer_name".into(), f.observer_name.clone().into());
            o.insert("observer_iata".into(), f.observer_iata.clone().into());
            o.insert("snr".into(), f.snr.into());
            o.insert("rssi".into(), f.rssi.into());
            // Observers do not report a direction to meshlens: unknown, as CoreScope says
            // when its observer did not either.
            o.insert("direction".into(), Value::Null);
        }
        o.insert("decoded".into(), decoded);
        Value::Object(o)
    }
}

impl TxRow {
    /// [`TxRow::to_json_with`] written to `out` as bytes, without the closing brace (see
    /// [`super::packet_json::write_open`]); the frame's fixed parts come from `frames`.
    pub fn write_open(
        &self,
        out: &mut Vec<u8>,
        frames: &super::packet_json::FrameJsonCache,
        opts: &meshcore::report::DecodeOptions,
        signatures: &crate::SignatureCache,
        first: Option<&FirstObs>,
    ) {
        use super::packet_json::{FirstFields, RowFields};
        let frame = frames.get_or_build(self.id, &self.hash, &self.raw, opts, signatures);
        let row = RowFields {
            id: self.id,
            hash: &self.hash,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            observation_count: self.observation_count,
            channel: self.channel.as_deref(),
            scope: self.scope.as_deref(),
            from_pubkey: self.from_pubkey.as_deref(),
        };
        let first = first.map(|f| FirstFields {
            observer_id: f.observer_id.as_deref(),
            observer_name: f.observer_name.as_deref(),
            observer_iata: f.observer_iata.as_deref(),
            snr: f.snr,
            rssi: f.rssi,
        });
        super::packet_json::write_open(out, &row, &frame, first.as_ref());
    }
}

/// What CoreScope's packet object says about a transmission's observations: who heard it
/// first (with what SNR and RSSI), how many observers heard it and in which regions.
#[derive(Debug, Default, Clone)]
pub struct FirstObs {
    observer_id: Option<String>,
    observer_name: Option<String>,
    observer_iata: Option<String>,
    snr: Option<f64>,
    rssi: Option<f64>,
    /// Distinct observers.
    pub observer_count: i64,
    /// Distinct observer regions (IATA codes), sorted.
    pub iatas: Vec<String>,
}

impl FirstObs {
    /// The name of the observer that heard it first.
    pub fn observer_name(&self) -> Option<&str> {
        self.observer_name.as_deref()
    }

    /// The id of the observer that heard it first.
    pub fn observer_id(&self) -> Option<&str> {
        self.observer_id.as_deref()
    }

    /// The SNR of the first observation.
    pub fn snr(&self) -> Option<f64> {
        self.snr
    }
}

/// The rows of `select` (ending in `IN`) for `ids`, which come from the database, never from
/// a request, and so are written into the SQL as a list of integers.
fn rows_by_ids<T>(
    c: &Connection,
    select: &str,
    ids: impl Iterator<Item = i64>,
    row: impl FnMut(&Row<'_>) -> store::rusqlite::Result<T>,
) -> ApiResult<Vec<T>> {
    let list = ids.map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let mut stmt = sql(c.prepare(&format!("{select} ({list})")))?;
    let rows = sql(stmt.query_map([], row))?;
    rows.map(sql).collect()
}

/// [`FirstObs`] of each transmission in `ids`, for a whole page at once (the first
/// observation is the one stored first, whose frame is `transmissions.raw`). The ids come from
/// the database, never from the request, so they are written into the SQL as integers.
///
/// Three reads, each of an index or by key: the page's observations from the
/// `(transmission_id, observer_idx, head)` index alone (their ids and observers: which came
/// first, how many observers), then the first ones' SNR and RSSI by id, then those observers
/// by idx. One query with `count(DISTINCT)` and `group_concat(DISTINCT)` over a join read
/// every observation's row and its observer's and built two temporary trees per page, a
/// third of the packet list's time.
pub fn first_observations(
    c: &Connection,
    ids: &[i64],
) -> ApiResult<std::collections::HashMap<i64, FirstObs>> {
    use std::collections::{BTreeSet, HashMap};
    let mut out = HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(out);
    }
    // Per transmission: the smallest observation id and the distinct observers.
    let mut by_tx: HashMap<i64, (i64, BTreeSet<i64>)> = HashMap::with_capacity(ids.len());
    let copies = rows_by_ids(
        c,
        "SELECT transmission_id, id, observer_idx FROM observations WHERE transmission_id IN",
        ids.iter().copied(),
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        },
    )?;
    for (tx, id, observer) in copies {
        let e = by_tx.entry(tx).or_insert((id, BTreeSet::new()));
        e.0 = e.0.min(id);
        e.1.insert(observer);
    }
    if by_tx.is_empty() {
        return Ok(out);
    }
    // The first observations' signal.
    let signal: HashMap<i64, (i64, Option<f64>, Option<f64>)> = rows_by_ids(
        c,
        "SELECT id, observer_idx, snr, rssi FROM observations WHERE id IN",
        by_tx.values().map(|(first, _)| *first),
        |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))),
    )?
    .into_iter()
    .collect();
    // The observers named by any of them.
    let observers: BTreeSet<i64> = by_tx
        .values()
        .flat_map(|(_, o)| o.iter().copied())
        .collect();
    let named: HashMap<i64, (String, Option<String>, Option<String>)> = rows_by_ids(
        c,
        "SELECT idx, id, name, iata FROM observers WHERE idx IN",
        observers.into_iter(),
        |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))),
    )?
    .into_iter()
    .collect();
    for (tx, (first, seen)) in by_tx {
        let (observer, snr, rssi) = signal.get(&first).copied().unwrap_or((-1, None, None));
        let who = named.get(&observer);
        // IATA codes are stored cleaned (letters, digits and '-').
        let iatas: BTreeSet<&str> = seen
            .iter()
            .filter_map(|o| named.get(o)?.2.as_deref())
            .filter(|s| !s.is_empty())
            .collect();
        out.insert(
            tx,
            FirstObs {
                observer_id: who.map(|w| w.0.clone()),
                observer_name: who.and_then(|w| w.1.clone()),
                observer_iata: who.and_then(|w| w.2.clone()),
                snr,
                rssi,
                // Observers the join would have counted (an observation's observer row is
                // never deleted while it has observations, so this is all of them).
                observer_count: seen.iter().filter(|o| named.contains_key(o)).count() as i64,
                iatas: iatas.into_iter().map(str::to_owned).collect(),
            },
        );
    }
    Ok(out)
}

fn parse_type(s: &str) -> ApiResult<u8> {
    PayloadType::parse(s)
        .map(PayloadType::value)
        .ok_or_else(|| ApiError::BadRequest(format!("type: unknown payload type {s:?}")))
}

fn parse_route(s: &str) -> ApiResult<u8> {
    if let Ok(n) = s.parse::<u8>() {
        return (n < 4)
            .then_some(n)
            .ok_or_else(|| ApiError::BadRequest("route must be 0-3".into()));
    }
    RouteType::ALL
        .into_iter()
        .find(|r| r.name().eq_ignore_ascii_case(s))
        .map(RouteType::value)
        .ok_or_else(|| ApiError::BadRequest(format!("route: unknown route type {s:?}")))
}

/// Most nodes one `nodes` filter may name.
pub const MAX_NODES: usize = 64;

/// Most region codes one `region` filter may name.
pub const MAX_REGIONS: usize = 32;

/// Most first-seen times `GET /api/packets/timestamps` returns (the earliest after `since`).
pub const MAX_TIMESTAMPS: i64 = 100_000;

/// The filters of `/api/packets`, validated.
struct Filter {
    clauses: Vec<String>,
    args: Vec<Box<dyn ToSql + Send>>,
}

impl Filter {
    fn from_params(p: &Params, areas: &[super::areas::Area]) -> ApiResult<Filter> {
        let mut f = Filter {
            clauses: Vec::new(),
            args: Vec::new(),
        };
        if let Some(t) = p.list("type", 16)? {
            let mut types: Vec<u8> = t.into_iter().map(parse_type).collect::<ApiResult<_>>()?;
            types.sort_unstable();
            types.dedup();
            let marks = vec!["?"; types.len()].join(",");
            f.clauses.push(format!("t.payload_type IN ({marks})"));
            f.args.extend(
                types
                    .into_iter()
                    .map(|v| Box::new(v) as Box<dyn ToSql + Send>),
            );
        }
        if let Some(r) = p.str("route") {
            f.clauses.push("t.route_type = ?".into());
            f.args.push(Box::new(parse_route(r)?));
        }
        if let Some(h) = p.str("hash") {
            let h = hex_prefix("hash", h)?;
            if h.len() == 16 {
                f.clauses.push("t.hash = ?".into());
                f.args.push(Box::new(h));
            } else {
                // A prefix: a range on the unique index.
                f.clauses.push("t.hash >= ? AND t.hash < ?".into());
                f.args.push(Box::new(h.clone()));
                f.args.push(Box::new(format!("{h}g")));
            }
        }
        if let Some(n) = p.str("node") {
            let n = hex_prefix("node", n)?;
            f.clauses
                .push("t.from_pubkey >= ? AND t.from_pubkey < ?".into());
            f.args.push(Box::new(n.clone()));
            f.args.push(Box::new(format!("{n}g")));
        }
        if let Some(nodes) = p.list("nodes", MAX_NODES)? {
            // CoreScope's multi-node filter: packets from any of these nodes (full keys or
            // prefixes), each a range on the from_pubkey index.
            let mut ors = Vec::with_capacity(nodes.len());
            for n in nodes {
                let n = hex_prefix("nodes", n)?;
                ors.push("(t.from_pubkey >= ? AND t.from_pubkey < ?)");
                f.args.push(Box::new(n.clone()));
                f.args.push(Box::new(format!("{n}g")));
            }
            f.clauses.push(format!("({})", ors.join(" OR ")));
        }
        if let Some(codes) = p.list("region", MAX_REGIONS)? {
            // CoreScope's region: heard by at least one observer of these IATA codes.
            let mut codes: Vec<String> = codes.iter().map(|c| c.to_ascii_uppercase()).collect();
            codes.sort_unstable();
            codes.dedup();
            let marks = vec!["?"; codes.len()].join(",");
            f.clauses.push(format!(
                "t.id IN (SELECT o.transmission_id FROM observations o \
                 JOIN observers ob ON ob.idx = o.observer_idx WHERE upper(trim(ob.iata)) IN ({marks}))"
            ));
            f.args.extend(
                codes
                    .into_iter()
                    .map(|c| Box::new(c) as Box<dyn ToSql + Send>),
            );
        }
        if let Some(o) = p.str("observer") {
            let o = o.to_ascii_lowercase();
            f.clauses.push(
                "t.id IN (SELECT o.transmission_id FROM observations o \
                 JOIN observers ob ON ob.idx = o.observer_idx WHERE ob.id = ?)"
                    .into(),
            );
            f.args.push(Box::new(o));
        }
        if let Some(h) = p.str("hash_size").or_else(|| p.str("hashSize")) {
            // The path-length byte's top two bits (wire-format.md §path): its first hex digit
            // is 0-3 for 1-byte, 4-7 for 2-byte and 8-B for 3-byte hashes. The byte follows
            // the header, after the 4 bytes of transport codes on TRANSPORT_* routes.
            let digits = match h {
                "1" => "'0','1','2','3'",
                "2" => "'4','5','6','7'",
                "3" => "'8','9','A','B'",
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "hash_size must be 1, 2 or 3, got {h:?}"
                    )));
                }
            };
            f.clauses.push(format!(
                "substr(hex(substr(t.raw, CASE WHEN t.route_type IN (0, 3) THEN 6 ELSE 2 END, 1)), 1, 1) IN ({digits})"
            ));
        }
        if let Some(c) = p.str("channel") {
            f.clauses.push("t.channel = ?".into());
            f.args.push(Box::new(c.to_owned()));
        }
        if let Some(since) = p.time("since")? {
            f.clauses.push("t.first_seen >= ?".into());
            f.args.push(Box::new(since));
        }
        if let Some(until) = p.time("until")? {
            f.clauses.push("t.first_seen <= ?".into());
            f.args.push(Box::new(until));
        }
        // `area` (CoreScope's): adverts of nodes located in the area; other packets do not
        // name their sender in the clear (see `areas`).
        if let Some(area) = super::areas::from_params(p, areas)? {
            f.clauses.push(super::areas::packets_clause(area));
        }
        Ok(f)
    }

    fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

/// `GET /api/packets` → `{packets, total, limit, offset}` (and `truncated` with
/// `expand=observations`); `truncated: true` and `nextOffset` when the answer's byte budget
/// ([`crate::budget`]) stopped the rows early. With `groupByHash=true`, CoreScope's grouped rows: latest heard
/// first, each with `count`, `observer_count`, `latest` and `distinct_iatas` besides the
/// packet object.
pub async fn list(
    State(st): State<Arc<AppState>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Response> {
    let p = Params(q);
    let limit = p.limit(50, MAX_PACKETS)?;
    let offset = p.offset()?;
    let order = match p.str("order").map(str::to_ascii_lowercase).as_deref() {
        None | Some("desc") => "DESC",
        Some("asc") => "ASC",
        Some(o) => {
            return Err(ApiError::BadRequest(format!(
                "order must be asc or desc, got {o:?}"
            )));
        }
    };
    let expand = p.str("expand") == Some("observations");
    let grouped = p.flag("groupByHash")?;
    // Grouped rows come latest-heard first, as CoreScope sorts them.
    let sort = if grouped {
        "t.last_seen"
    } else {
        "t.first_seen"
    };
    let filter = Filter::from_params(&p, &st.ui.areas)?;
    // The unfiltered total counts every transmission: reuse it for one commit generation.
    let generation = st.generation.load(std::sync::atomic::Ordering::Relaxed);
    let cached_total = if filter.clauses.is_empty() {
        st.packets_total
            .lock()
            .ok()
            .and_then(|c| c.filter(|(g, _)| *g == generation).map(|(_, t)| t))
    } else {
        None
    };
    let unfiltered = filter.clauses.is_empty();
    let state = st.clone();
    // The answer's share of the memory of large answers, taken before anything is read (503
    // with `Retry-After` when every share is in use); its bytes may not exceed it.
    let reservation = st.http.large.reserve().await?;
    let budget = reservation.limit();
    let topo = st.capability.current().topology.clone();
    // The page is read, decoded and serialized on the blocking thread holding the connection:
    // a 10,000-row page is a second of CPU in a debug build, which on an async worker would
    // stall every other connection of the process (the embedded broker's among them). Rows
    // are read from the cursor [`PAGE_BATCH`] at a time and each packet is written out as soon
    // as it is built, so the output (at most `budget` bytes) is the only large allocation.
    let (body, total) = st
        .db
        .query(move |c| {
            let w = filter.where_sql();
            let args = || params_from_iter(filter.args.iter().map(|a| a.as_ref() as &dyn ToSql));
            let total: i64 = match cached_total {
                Some(t) => t,
                None => sql(c.query_row(&format!("SELECT count(*) FROM transmissions t {w}"), args(), |r| r.get(0)))?,
            };
            let mut stmt = sql(c.prepare(&format!(
                "SELECT {TX_COLUMNS} FROM transmissions t {w} ORDER BY {sort} {order}, t.id {order} LIMIT {limit} OFFSET {offset}"
            )))?;
            let mut cursor = sql(stmt.query(args()))?;
            let page = Page { grouped, expand, budget, topo };
            let out = page.render(c, &state, &mut cursor, PageEnd { total, limit, offset })?;
            Ok((out, total))
        })
        .await?;
    let body = reservation.into_bytes(body);
    if unfiltered && let Ok(mut c) = st.packets_total.lock() {
        *c = Some((generation, total));
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// Packets read from the cursor at a time: their first observers (and observations) are
/// read in one go, and no more than this many rows are in memory at once.
const PAGE_BATCH: usize = 256;

/// Room kept in the byte budget for the envelope's closing keys.
const ENVELOPE_TAIL: usize = 160;

/// How one page of `GET /api/packets` is written.
struct Page {
    grouped: bool,
    expand: bool,
    /// Most bytes of the whole answer. The first packet is always written (one packet with
    /// its [`MAX_OBSERVATIONS`] observations is far below any budget), so a client paging by
    /// `nextOffset` always makes progress.
    budget: usize,
    /// The resolver's world, for the observations' `resolved_path`.
    topo: std::sync::Arc<crate::topology::Topology>,
}

/// The envelope's numbers.
struct PageEnd {
    total: i64,
    limit: i64,
    offset: i64,
}

impl Page {
    /// `{"packets":[...],"total","limit","offset"}`, with `truncated` under
    /// `expand=observations` (true when observation lists were cut) and `truncated: true` plus
    /// `nextOffset` when the byte budget stopped the rows before the page's end.
    fn render(
        &self,
        c: &Connection,
        state: &AppState,
        cursor: &mut store::rusqlite::Rows<'_>,
        end: PageEnd,
    ) -> ApiResult<Vec<u8>> {
        let none = FirstObs::default();
        let mut out: Vec<u8> = Vec::with_capacity(self.budget.min(256 * 1024));
        out.extend_from_slice(b"{\"packets\":[");
        let mut written: i64 = 0;
        let mut cut = false;
        let mut obs_left = MAX_EXPANDED_OBSERVATIONS;
        let mut obs_cut = false;
        let mut one: Vec<u8> = Vec::with_capacity(4096);
        'page: loop {
            let mut batch: Vec<TxRow> = Vec::with_capacity(PAGE_BATCH);
            while batch.len() < PAGE_BATCH {
                match sql(cursor.next())? {
                    Some(r) => batch.push(sql(TxRow::from_row(r))?),
                    None => break,
                }
            }
            let last = batch.len() < PAGE_BATCH;
            let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
            let firsts = first_observations(c, &ids)?;
            let mut obs = if self.expand && !ids.is_empty() {
                let (obs, truncated) = observations_for(c, &ids, obs_left)?;
                obs_cut |= truncated;
                obs_left = obs_left.saturating_sub(obs.values().map(Vec::len).sum());
                obs
            } else {
                Default::default()
            };
            super::resolved::annotate_all(c, &self.topo, &mut obs)?;
            for r in &batch {
                let first = firsts.get(&r.id).unwrap_or(&none);
                one.clear();
                r.write_open(
                    &mut one,
                    &state.frame_json,
                    &state.decode_no_verify,
                    &state.signatures,
                    Some(first),
                );
                if self.grouped {
                    use super::packet_json::{put, put_key};
                    put_key(&mut one, "count");
                    put(&mut one, &r.observation_count);
                    put_key(&mut one, "observer_count");
                    put(&mut one, &first.observer_count);
                    put_key(&mut one, "latest");
                    put(&mut one, &iso(r.last_seen));
                    put_key(&mut one, "distinct_iatas");
                    put(&mut one, &first.iatas);
                }
                if self.expand {
                    super::packet_json::put_key(&mut one, "observations");
                    super::packet_json::put(&mut one, &obs.remove(&r.id).unwrap_or_default());
                }
                one.push(b'}');
                if written > 0 && out.len() + 1 + one.len() + ENVELOPE_TAIL > self.budget {
                    cut = true;
                    break 'page;
                }
                if written > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&one);
                written += 1;
            }
            if last {
                break;
            }
        }
        let PageEnd {
            total,
            limit,
            offset,
        } = end;
        out.extend_from_slice(
            format!("],\"total\":{total},\"limit\":{limit},\"offset\":{offset}").as_bytes(),
        );
        if self.expand || cut {
            out.extend_from_slice(format!(",\"truncated\":{}", cut || obs_cut).as_bytes());
        }
        if cut {
            out.extend_from_slice(
                format!(",\"nextOffset\":{}", offset.saturating_add(written)).as_bytes(),
            );
        }
        out.push(b'}');
        Ok(out)
    }
}

/// `GET /api/packets/timestamps?since=<time>` → the first-seen times (ISO 8601) of the
/// packets first seen after `since`, oldest first, at most [`MAX_TIMESTAMPS`] (CoreScope's
/// route; `since` is required).
pub async fn timestamps(
    State(st): State<Arc<AppState>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Response> {
    let p = Params(q);
    let since = p
        .time("since")?
        .ok_or_else(|| ApiError::BadRequest("since required".into()))?;
    // Up to a few MB of JSON: built on the blocking thread, as the packet list is.
    let body = st
        .db
        .query(move |c| {
            let mut stmt = sql(c.prepare_cached(
                "SELECT first_seen FROM transmissions WHERE first_seen > ?1
                 ORDER BY first_seen LIMIT ?2",
            ))?;
            let times = sql(stmt
                .query_map([since, MAX_TIMESTAMPS], |r| r.get::<_, i64>(0))
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            let times: Vec<String> = times.into_iter().map(iso).collect();
            serde_json::to_vec(&times).map_err(|e| ApiError::Internal(e.to_string()))
        })
        .await?;
    Ok(json_response(body))
}

/// Observations of the given transmissions (the first [`MAX_OBSERVATIONS`] heard of each), as
/// API objects keyed by transmission id, at most `budget` in all: past it the later
/// transmissions get fewer or none, nothing more is read, and the flag says so.
fn observations_for(
    c: &Connection,
    ids: &[i64],
    budget: usize,
) -> ApiResult<(std::collections::HashMap<i64, Vec<Value>>, bool)> {
    let mut out: std::collections::HashMap<i64, Vec<Value>> = Default::default();
    let mut stmt = sql(c.prepare_cached(
        "SELECT o.id, o.transmission_id, ob.id, ob.name, ob.iata, o.received_at, o.snr, o.rssi, o.score, o.head, t.raw,
                o.airtime_ms
         FROM observations o JOIN observers ob ON ob.idx = o.observer_idx
         JOIN transmissions t ON t.id = o.transmission_id
         WHERE o.transmission_id = ?1 ORDER BY o.received_at, o.id LIMIT ?2",
    ))?;
    let mut left = budget;
    for id in ids {
        // One row past what is left tells whether the budget cut this list.
        let want = (MAX_OBSERVATIONS as usize).min(left + 1);
        let rows = sql(stmt.query_map([*id, want as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<f64>>(6)?,
                r.get::<_, Option<f64>>(7)?,
                r.get::<_, Option<i64>>(8)?,
                r.get::<_, Vec<u8>>(9)?,
                r.get::<_, Vec<u8>>(10)?,
                r.get::<_, Option<i64>>(11)?,
            ))
        }))?;
        for row in rows {
            if left == 0 {
                return Ok((out, true));
            }
            let (oid, obs_id, name, iata, at, snr, rssi, score, head, raw, airtime_ms) = sql(row)?;
            out.entry(*id).or_default().push(observation_json(
                oid, &obs_id, name, iata, at, snr, rssi, score, airtime_ms, &head, &raw,
            ));
            left -= 1;
        }
    }
    Ok((out, false))
}

/// One observation: who heard it, when, how well, its airtime as the observer's firmware
/// estimated it, and the path as that observer heard it.
#[allow(clippy::too_many_arguments)]
pub fn observation_json(
    id: i64,
    observer_id: &str,
    observer_name: Option<String>,
    iata: Option<String>,
    received_at: i64,
    snr: Option<f64>,
    rssi: Option<f64>,
    score: Option<i64>,
    airtime_ms: Option<i64>,
    head: &[u8],
    tx_raw: &[u8],
) -> Value {
    // The observed frame is this observer's head plus the shared payload.
    let frame = meshcore::Packet::decode(tx_raw)
        .map(|p| [head, p.payload_bytes()].concat())
        .unwrap_or_else(|_| head.to_vec());
    let (path, hash_size, hop_count, path_len) = match meshcore::Packet::decode(&frame) {
        Ok(p) => {
            let size = p.path_len().hash_size().bytes();
            let path: Vec<Value> = if p.path_bytes_are_hops() {
                p.path()
                    .chunks(size)
                    .map(|c| hex::encode(c).into())
                    .collect()
            } else {
                p.path().iter().map(|b| hex::encode([*b]).into()).collect()
            };
            (path, size, p.hop_count(), p.path_len().to_byte())
        }
        Err(_) => (Vec::new(), 1, 0, 0),
    };
    // CoreScope's path: the hops as a JSON-encoded string, uppercase as it writes them.
    let path_json = Value::Array(
        path.iter()
            .filter_map(Value::as_str)
            .map(|h| h.to_ascii_uppercase().into())
            .collect(),
    )
    .to_string();
    json!({
        "id": id,
        "observer_id": observer_id,
        "observer_name": observer_name,
        "observer_iata": iata,
        "iata": iata,
        "path_json": path_json,
        "direction": Value::Null,
        "timestamp": iso(received_at),
        "snr": snr,
        "rssi": rssi,
        "score": score,
        "airtime_ms": airtime_ms,
        "path_len_byte": path_len,
        "hash_size": hash_size,
        "hop_count": hop_count,
        "path": path,
        "raw_hex": hex::encode(&frame),
    })
}

/// `GET /api/packets/{id or hash}` → `{packet, path, observation_count, breakdown: {ranges},
/// observations}`; the packet's observer keys are those of its first observation.
pub async fn detail(
    State(st): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    let key = key.trim().to_ascii_lowercase();
    let by_hash = key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit());
    let id =
        if by_hash {
            None
        } else {
            Some(key.parse::<i64>().map_err(|_| {
                ApiError::BadRequest("expected a numeric id or a 16-hex hash".into())
            })?)
        };
    let topo = st.capability.current().topology.clone();
    let found = st
        .db
        .query(move |c| {
            let row = if let Some(id) = id {
                sql(c.prepare_cached(&format!(
                    "SELECT {TX_COLUMNS} FROM transmissions t WHERE t.id = ?1"
                )))?
                .query_row([id], TxRow::from_row)
            } else {
                sql(c.prepare_cached(&format!(
                    "SELECT {TX_COLUMNS} FROM transmissions t WHERE t.hash = ?1"
                )))?
                .query_row([&key], TxRow::from_row)
            };
            let row = match row {
                Ok(r) => r,
                Err(store::rusqlite::Error::QueryReturnedNoRows) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let (mut obs, _) = observations_for(c, &[row.id], MAX_OBSERVATIONS as usize)?;
            super::resolved::annotate_all(c, &topo, &mut obs)?;
            Ok(Some((obs.remove(&row.id).unwrap_or_default(), row)))
        })
        .await?;
    let Some((mut observations, row)) = found else {
        return Err(ApiError::NotFound("no such packet".into()));
    };
    // CoreScope's observation objects name their transmission.
    for o in &mut observations {
        o["transmission_id"] = row.id.into();
        o["hash"] = row.hash.clone().into();
    }
    let first = observations.first().map(|o| FirstObs {
        observer_id: o["observer_id"].as_str().map(str::to_owned),
        observer_name: o["observer_name"].as_str().map(str::to_owned),
        observer_iata: o["iata"].as_str().map(str::to_owned),
        snr: o["snr"].as_f64(),
        rssi: o["rssi"].as_f64(),
        ..FirstObs::default()
    });
    let packet = row.to_json_with(&st, Some(&first.unwrap_or_default()));
    let ranges: Vec<Value> = breakdown(&row.raw)
        .into_iter()
        .map(|r| {
            json!({"start": r.start, "end": r.end, "label": r.label,
                   "hex": hex::encode(row.raw.get(r.start..r.end).unwrap_or_default())})
        })
        .collect();
    Ok(Json(json!({
        "packet": packet,
        "path": packet.get("path").cloned().unwrap_or_else(|| json!([])),
        // Every observation, however many are listed (at most MAX_OBSERVATIONS); CoreScope
        // says 1 for a packet it has none of.
        "observation_count": row.observation_count.max(1),
        "breakdown": {"ranges": ranges},
        "observations": observations,
    })))
}

/// `POST /api/decode` with `{"hex": "..."}`: decodes without storing.
pub async fn decode(
    State(st): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    if body.len() > 16 * 1024 {
        return Err(ApiError::BadRequest("body too large".into()));
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::BadRequest("body must be JSON {\"hex\": \"...\"}".into()))?;
    let hex = v
        .get("hex")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("missing \"hex\"".into()))?;
    let bytes = parse_hex(hex).map_err(|e| ApiError::BadRequest(format!("hex: {e}")))?;
    // A frame that does not parse stays a 200 with `valid: false` and its error code (the
    // report says more than CoreScope's 400 would).
    let decoded = crate::decode_for_api(&bytes, &st.decode);
    Ok(Json(json!({
        "decoded": super::corescope::decoded_object(&decoded),
        "breakdown": {"ranges": breakdown(&bytes).into_iter()
            .map(|r| json!({"start": r.start, "end": r.end, "label": r.label}))
            .collect::<Vec<_>>()},
    })))
}

/// Most hashes one `POST /api/packets/observations` may ask for (CoreScope's limit).
pub const MAX_BATCH_HASHES: usize = 200;

/// Most observations one `POST /api/packets/observations` answer holds in all (200 dense-mesh
/// adverts at 500 each would be 100,000 rows, tens of megabytes of JSON); past it the lists
/// are cut and `truncated` is true.
pub const MAX_BATCH_OBSERVATIONS: usize = 10_000;

/// Largest accepted body of `POST /api/packets/observations`: 200 quoted 16-digit hashes fit
/// in under 5 KiB, so anything near this is not a real request.
pub const MAX_BATCH_BODY: usize = 64 * 1024;

/// Validates the `{"hashes": [...]}` body: at most [`MAX_BATCH_HASHES`] strings of 16 hex
/// digits each, returned lowercase and deduplicated in request order.
fn batch_hashes(body: &[u8]) -> ApiResult<Vec<String>> {
    if body.len() > MAX_BATCH_BODY {
        return Err(ApiError::BadRequest("body too large".into()));
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        ApiError::BadRequest("body must be JSON {\"hashes\": [\"<16 hex digits>\", ...]}".into())
    })?;
    let list = v
        .get("hashes")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::BadRequest("missing \"hashes\" array".into()))?;
    if list.len() > MAX_BATCH_HASHES {
        return Err(ApiError::BadRequest(format!(
            "too many hashes (max {MAX_BATCH_HASHES})"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for h in list {
        let h = h
            .as_str()
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| ApiError::BadRequest("each hash must be 16 hex digits".into()))?;
        if !out.contains(&h) {
            out.push(h);
        }
    }
    Ok(out)
}

/// `POST /api/packets/observations` with `{"hashes": [...]}` → `{"results": {hash:
/// [observation, ...]}, "truncated"}`: the observations of each transmission (the first
/// [`MAX_OBSERVATIONS`] heard), as in the packet detail plus CoreScope's per-observation
/// fields. A hash nobody stored maps to `[]`. The answer is written one transmission at a
/// time within the large-answer byte budget (as a page of packets is): past it, or past
/// [`MAX_BATCH_OBSERVATIONS`], the later hashes get `[]` and `truncated` is true, so no
/// request holds more than one packet's observations as objects, nor more than its budget as
/// bytes.
pub async fn batch_observations(
    State(st): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let hashes = batch_hashes(&body)?;
    let topo = st.capability.current().topology.clone();
    let reservation = st.http.large.reserve().await?;
    let budget = reservation.limit();
    let out = st
        .db
        .query(move |c| {
            let mut stmt = sql(c.prepare_cached("SELECT id FROM transmissions WHERE hash = ?1"))?;
            let mut out: Vec<u8> = Vec::with_capacity(budget.min(256 * 1024));
            out.extend_from_slice(b"{\"results\":{");
            let mut left = MAX_BATCH_OBSERVATIONS;
            let mut truncated = false;
            let mut one: Vec<u8> = Vec::with_capacity(4096);
            let n = hashes.len();
            for (i, h) in hashes.into_iter().enumerate() {
                let later = n - i - 1;
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut out, &h)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                out.extend_from_slice(b":[");
                let id = match stmt.query_row([&h], |r| r.get::<_, i64>(0)) {
                    Ok(id) => Some(id),
                    Err(store::rusqlite::Error::QueryReturnedNoRows) => None,
                    Err(e) => return Err(e.into()),
                };
                if let (Some(id), false) = (id, truncated) {
                    let (mut obs, cut) = observations_for(c, &[id], left)?;
                    truncated |= cut;
                    super::resolved::annotate_all(c, &topo, &mut obs)?;
                    let mut first = true;
                    for mut o in obs.remove(&id).unwrap_or_default() {
                        // CoreScope's names: the transmission it belongs to (`observer_iata`
                        // and `path_json` are in every observation object).
                        o["transmission_id"] = id.into();
                        o["hash"] = h.clone().into();
                        one.clear();
                        serde_json::to_writer(&mut one, &o)
                            .map_err(|e| ApiError::Internal(e.to_string()))?;
                        // Room for the closing brackets and every later hash's `,"…":[]`.
                        if out.len() + one.len() + 64 + later * 24 > budget {
                            truncated = true;
                            break;
                        }
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        out.extend_from_slice(&one);
                        left = left.saturating_sub(1);
                    }
                    truncated |= left == 0;
                }
                out.push(b']');
            }
            out.extend_from_slice(format!("}},\"truncated\":{truncated}}}").as_bytes());
            Ok(out)
        })
        .await?;
    // The bytes own their share of the budget until they are sent.
    let body = reservation.into_bytes(out);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SignatureCache;
    use crate::api::packet_json::FrameJsonCache;

    /// The one-query form [`first_observations`] replaced, kept as the oracle.
    fn first_observations_by_join(c: &Connection, ids: &[i64]) -> Vec<(i64, String)> {
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let mut stmt = c
            .prepare(&format!(
                "SELECT o.transmission_id, ob.id, ob.name, ob.iata, o.snr, o.rssi,
                        count(DISTINCT o.observer_idx), group_concat(DISTINCT ob.iata), min(o.id)
                 FROM observations o JOIN observers ob ON ob.idx = o.observer_idx
                 WHERE o.transmission_id IN ({list}) GROUP BY o.transmission_id"
            ))
            .unwrap();
        let mut rows: Vec<(i64, String)> = stmt
            .query_map([], |r| {
                let mut iatas: Vec<String> = r
                    .get::<_, Option<String>>(7)?
                    .unwrap_or_default()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                iatas.sort_unstable();
                iatas.dedup();
                let f = FirstObs {
                    observer_id: r.get(1)?,
                    observer_name: r.get(2)?,
                    observer_iata: r.get(3)?,
                    snr: r.get(4)?,
                    rssi: r.get(5)?,
                    observer_count: r.get(6)?,
                    iatas,
                };
                Ok((r.get(0)?, format!("{f:?}")))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows.sort();
        rows
    }

    /// On a store-written database of transmissions heard by 1–9 of 12 observers in four
    /// regions (one without a region), with varied SNR and RSSI, the three-read
    /// [`first_observations`] answers exactly what the join did, page after page.
    #[test]
    fn first_observations_equal_the_join() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meshlens.db");
        let mut w = store::Writer::open(&path, 1).unwrap();
        let iatas = [Some("SEA"), Some("PDX"), None, Some("YVR")];
        let mut items = Vec::new();
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        for tx in 0..300u64 {
            let heard_by = 1 + next() % 9;
            for k in 0..heard_by {
                let o = ((tx + k * 5) % 12) as u8;
                let mut raw = vec![0x15, 1, o];
                let head_len = raw.len();
                raw.extend_from_slice(&tx.to_be_bytes());
                items.push(store::Item::Packet(store::PacketRecord {
                    observer: store::Observer {
                        id: format!("{o:02x}").repeat(32),
                        name: Some(format!("obs <{o}>")),
                        iata: iatas[o as usize % 4].map(str::to_owned),
                    },
                    received_at: 1_000 + (tx * 10 + k) as i64,
                    raw,
                    head_len,
                    hash: tx,
                    route_type: 1,
                    payload_type: 5,
                    payload_version: 0,
                    path_len: 1,
                    snr: (k % 3 != 0).then(|| next() as f64 % 20.0 - 10.0),
                    rssi: (k % 4 != 0).then(|| -((next() % 60) as f64) - 60.0),
                    score: None,
                    airtime_ms: None,
                    clock: None,
                    from_pubkey: None,
                    channel: None,
                    scope: None,
                    advert: None,
                    reject_reason: None,
                }));
            }
        }
        w.write_batch(&items).unwrap();
        let reader = store::Reader::open(&path).unwrap();
        let c = reader.conn();
        let all: Vec<i64> = c
            .prepare("SELECT id FROM transmissions ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(all.len(), 300);
        for page in all.chunks(50).chain([&all[..1], &[-5][..]]) {
            let want = first_observations_by_join(c, page);
            let mut got: Vec<(i64, String)> = first_observations(c, page)
                .unwrap()
                .into_iter()
                .map(|(id, f)| (id, format!("{f:?}")))
                .collect();
            got.sort();
            assert_eq!(got, want);
        }
        let many = first_observations(c, &all).unwrap();
        assert!(
            many.values()
                .any(|f| f.iatas.len() >= 3 && f.observer_count >= 5)
        );
    }

    /// The bytes written for a page row and the `Value` of the other routes are the same
    /// object, on every real frame of the vectors (with and without a first observer, with
    /// and without a scope), including from the cache on the second pass.
    #[test]
    fn page_rows_equal_the_packet_object_on_real_frames() {
        let text = include_str!("../../../../testdata/vectors/corpus.txt");
        let frames: Vec<Vec<u8>> = text
            .lines()
            .filter_map(|l| hex::decode(l.trim()).ok())
            .filter(|f| !f.is_empty())
            .collect();
        assert!(frames.len() > 100, "vectors: {}", frames.len());
        let opts = meshcore::report::DecodeOptions::default();
        let sigs = SignatureCache::default();
        let cache = FrameJsonCache::default();
        let first = FirstObs {
            observer_id: Some("ab".repeat(32)),
            observer_name: Some("<b>\"quoted\" name</b>".into()),
            observer_iata: Some("SEA".into()),
            snr: Some(-7.25),
            rssi: None,
            observer_count: 3,
            iatas: vec!["SEA".into()],
        };
        let mut adverts = 0;
        for pass in 0..2 {
            for (i, raw) in frames.iter().enumerate() {
                let row = TxRow {
                    id: i as i64,
                    hash: format!("{i:016x}"),
                    raw: raw.clone(),
                    first_seen: 1_764_000_000_000 + i as i64,
                    last_seen: 1_764_000_100_000 + i as i64,
                    observation_count: i as i64 % 7,
                    channel: (i % 3 == 0).then(|| "Public".into()),
                    scope: (i % 5 == 0).then(|| "#sea".into()),
                    from_pubkey: (i % 2 == 0).then(|| "cd".repeat(32)),
                };
                for f in [None, Some(&first)] {
                    let want = row.build_with(&opts, &sigs, f, true);
                    adverts += usize::from(want["payload_type_name"] == "ADVERT");
                    let mut out = Vec::new();
                    row.write_open(&mut out, &cache, &opts, &sigs, f);
                    out.push(b'}');
                    let got: Value = serde_json::from_slice(&out).expect("valid JSON");
                    assert_eq!(got, want, "frame {i}, pass {pass}");
                    let keys =
                        |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
                    assert_eq!(keys(&got), keys(&want), "key order, frame {i}");
                }
            }
        }
        assert!(adverts > 0, "no advert among the vectors");
    }
}
