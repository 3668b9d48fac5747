//! `/api/observers` and `/api/observers/{id}`.
//!
//! Freshness is what live messages said: `last_seen` and `last_status_at` come from live
//! messages (a status' own time, or its arrival when it had none). A broker's retained status
//! only fills them when unknown, with its own time, so an observer known only from an undated
//! one has them null. `status_timestamp` is the time the last status said it was written;
//! `status_received_at` when the last live one arrived.
//!
//! Anyone who can publish can make observers, so the list is paged (`limit`, at most
//! [`MAX_OBSERVERS`], and `offset`, as CoreScope's other lists; `/api/observers` itself has no
//! parameters in CoreScope, so a client that sends none gets the first page, most recently seen
//! first, with `total` to tell whether there are more).
//!
//! CoreScope's keys beside them: `lat`, `lon` and `nodeRole` from the observer's own node
//! (the node whose public key is the observer's id: its last verified advert), null when that
//! node is unknown; the clock-skew fields (`clock_naive`, `clock_skew_seconds`,
//! `clock_skew_count_24h`, `clock_last_naive_at`) come from the writer's naive-clock
//! detection (`clock_skew::naive_clock`).
//! `area=` keeps the observers whose own node lies in the area (see [`super::areas`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, Query, State};
use store::rusqlite::Row;
use store::time::iso;

use crate::AppState;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};

/// Most observers in one answer (and the default): a real network has a few hundred, and a
/// page of this many is about 1.5 MB of JSON.
pub const MAX_OBSERVERS: i64 = 2000;

const COLUMNS: &str = "ob.idx, ob.id, ob.name, ob.iata, ob.status, ob.model, ob.firmware, \
     ob.client_version, ob.radio, ob.battery_mv, ob.uptime_secs, ob.noise_floor, ob.tx_air_secs, \
     ob.rx_air_secs, ob.recv_errors, ob.first_seen, ob.last_seen, ob.last_packet_at, \
     ob.last_status_at, ob.packet_count, ob.queue_len, ob.debug_flags, ob.status_timestamp, \
     ob.status_received_at, n.lat, n.lon, n.role, ob.clock_skew_seconds, \
     ob.clock_skew_count_24h, ob.clock_last_naive_at";

/// The observers with their own node (a lookup on its primary key per observer).
const FROM: &str = "observers ob LEFT JOIN nodes n ON n.public_key = ob.id";

/// One observer of the list or the detail, serialized as it stands (no `Value` tree: the
/// list is 30-odd keys per observer, and building them as maps was most of its cost).
#[derive(serde::Serialize)]
#[allow(missing_docs)] // the keys are the API's, documented in the OpenAPI document
pub struct ObserverItem {
    #[serde(skip)]
    idx: i64,
    id: String,
    name: Option<String>,
    iata: Option<String>,
    status: Option<String>,
    model: Option<String>,
    firmware: Option<String>,
    client_version: Option<String>,
    radio: Option<String>,
    battery_mv: Option<i64>,
    uptime_secs: Option<i64>,
    noise_floor: Option<f64>,
    tx_air_secs: Option<i64>,
    rx_air_secs: Option<i64>,
    recv_errors: Option<i64>,
    first_seen: Option<String>,
    last_seen: Option<String>,
    last_packet_at: Option<String>,
    last_status_at: Option<String>,
    packet_count: i64,
    queue_len: Option<i64>,
    debug_flags: Option<i64>,
    status_timestamp: Option<String>,
    status_received_at: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    #[serde(rename = "nodeRole")]
    node_role: Option<String>,
    /// The naive-clock fields, with CoreScope's 24-hour decay (`clock_skew::naive_clock`).
    #[serde(flatten)]
    clock: super::clock_skew::NaiveClock,
    #[serde(rename = "packetsLastHour")]
    packets_last_hour: i64,
}

fn observer_item(r: &Row<'_>) -> store::rusqlite::Result<ObserverItem> {
    let t = |i: usize| -> store::rusqlite::Result<Option<String>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(iso))
    };
    Ok(ObserverItem {
        idx: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        iata: r.get(3)?,
        status: r.get(4)?,
        model: r.get(5)?,
        firmware: r.get(6)?,
        client_version: r.get(7)?,
        radio: r.get(8)?,
        battery_mv: r.get(9)?,
        uptime_secs: r.get(10)?,
        noise_floor: r.get(11)?,
        tx_air_secs: r.get(12)?,
        rx_air_secs: r.get(13)?,
        recv_errors: r.get(14)?,
        first_seen: t(15)?,
        last_seen: t(16)?,
        last_packet_at: t(17)?,
        last_status_at: t(18)?,
        packet_count: r.get(19)?,
        queue_len: r.get(20)?,
        debug_flags: r.get(21)?,
        status_timestamp: t(22)?,
        status_received_at: t(23)?,
        lat: r.get(24)?,
        lon: r.get(25)?,
        node_role: r.get(26)?,
        clock: super::clock_skew::naive_clock(crate::now_ms(), r.get(27)?, r.get(28)?, r.get(29)?),
        packets_last_hour: 0,
    })
}

/// The list's envelope.
#[derive(serde::Serialize)]
#[allow(missing_docs)]
pub struct ObserverPage {
    observers: Vec<ObserverItem>,
    total: i64,
    limit: i64,
    offset: i64,
    server_time: String,
}

/// Observations per observer in the last hour: one range of the `(observer_idx,
/// received_at)` index per observer, counted inside the index (no table reads; 7 ms instead
/// of 55 ms for an hour of 200,000 observations).
fn last_hour(c: &store::rusqlite::Connection) -> ApiResult<HashMap<i64, i64>> {
    let since = crate::now_ms() - 3_600_000;
    let mut stmt = sql(c.prepare_cached(
        "SELECT ob.idx, (SELECT count(*) FROM observations o INDEXED BY observations_observer
                         WHERE o.observer_idx = ob.idx AND o.received_at >= ?1)
         FROM observers ob",
    ))?;
    let rows = sql(stmt.query_map([since], |r| Ok((r.get(0)?, r.get(1)?))))?;
    rows.map(sql).collect()
}

/// [`last_hour`], shared for a few seconds: a rate needs no fresher figure, and the count
/// reads an hour of index (about 70 ms for an hour of 2,000,000 observations, more while the
/// capability cycle runs). An answer up to ten minutes old is served while one background
/// refresh runs, so under steady use, and after a quiet spell such as a long ingest, no
/// request waits; without any, requests arriving together wait for one count (at 2,000,000
/// observations sixteen parallel counts after a quiet spell made `/api/observers` p99 150 ms).
async fn hour_counts(st: &Arc<AppState>) -> ApiResult<Arc<crate::HourCounts>> {
    const FRESH: std::time::Duration = std::time::Duration::from_secs(5);
    const USABLE: std::time::Duration = std::time::Duration::from_secs(600);
    let cached = |st: &AppState| {
        st.observers_hour.lock().ok().and_then(|c| {
            c.as_ref()
                .filter(|(at, _)| at.elapsed() < USABLE)
                .map(|(at, v)| (at.elapsed() < FRESH, v.clone()))
        })
    };
    let store = |st: &AppState, v: Arc<crate::HourCounts>| {
        if let Ok(mut c) = st.observers_hour.lock() {
            *c = Some((std::time::Instant::now(), v));
        }
    };
    match cached(st) {
        Some((true, v)) => Ok(v),
        Some((false, v)) => {
            if !st.observers_refreshing.swap(true, Ordering::AcqRel) {
                let st = st.clone();
                tokio::spawn(async move {
                    if let Ok(m) = st.db.query(last_hour).await {
                        store(&st, Arc::new(m));
                    }
                    st.observers_refreshing.store(false, Ordering::Release);
                });
            }
            Ok(v)
        }
        None => {
            let _one = st.observers_counting.lock().await;
            // Counted by whoever held the lock before.
            if let Some((_, v)) = cached(st) {
                return Ok(v);
            }
            let v = Arc::new(st.db.query(last_hour).await?);
            store(st, v.clone());
            Ok(v)
        }
    }
}

/// Computes the last-hour counts once at start, in the background, so no request waits for
/// the first count.
pub async fn warm(st: Arc<AppState>) {
    let _ = hour_counts(&st).await;
}

/// `GET /api/observers?limit=&offset=` → `{observers, total, limit, offset, server_time}`,
/// most recently seen first (never seen last).
pub async fn list(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<ObserverPage>> {
    let p = super::Params(q);
    let limit = p.limit(MAX_OBSERVERS, MAX_OBSERVERS)?;
    let offset = p.offset()?;
    let w = match super::areas::from_params(&p, &st.ui.areas)? {
        Some(area) => format!("WHERE {}", area.sql_contains("n.lat", "n.lon")),
        None => String::new(),
    };
    let hour = hour_counts(&st).await?;
    let (observers, total) = st
        .db
        .query(move |c| {
            let total: i64 = sql(c.query_row(
                &format!("SELECT count(*) FROM {FROM} {w}"),
                [],
                |r| r.get(0),
            ))?;
            // The order of the `observers_last_seen` index read backwards (ties by idx), so a
            // page is a range of the index, not a sort of the table.
            let mut stmt = sql(c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM {FROM} {w} ORDER BY ob.last_seen DESC, ob.idx DESC
                 LIMIT ?1 OFFSET ?2"
            )))?;
            let rows = sql(stmt
                .query_map([limit, offset], observer_item)
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            let observers = rows
                .into_iter()
                .map(|mut o| {
                    o.packets_last_hour = hour.get(&o.idx).copied().unwrap_or(0);
                    o
                })
                .collect::<Vec<_>>();
            Ok((observers, total))
        })
        .await?;
    Ok(Json(ObserverPage {
        observers,
        total,
        limit,
        offset,
        server_time: iso(crate::now_ms()),
    }))
}

/// `GET /api/observers/{id}`.
pub async fn detail(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<ObserverItem>> {
    let id = id.trim().to_ascii_lowercase();
    if id.is_empty() || id.len() > 64 {
        return Err(ApiError::BadRequest(
            "observer id must be 1-64 characters".into(),
        ));
    }
    let hour = hour_counts(&st).await?;
    let found = st
        .db
        .query(move |c| {
            match c.query_row(
                &format!("SELECT {COLUMNS} FROM {FROM} WHERE ob.id = ?1"),
                [&id],
                observer_item,
            ) {
                Ok(mut o) => {
                    o.packets_last_hour = hour.get(&o.idx).copied().unwrap_or(0);
                    Ok(Some(o))
                }
                Err(store::rusqlite::Error::QueryReturnedNoRows) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await?;
    found
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("no such observer".into()))
}
