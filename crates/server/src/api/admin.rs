//! The operator's routes, behind the admin API key (`X-API-Key`, CoreScope's header): a
//! database backup, manual packet injection, the geo filter and pruning the nodes outside
//! it. Without a key configured they answer 403; a wrong or missing key is 401; keys are
//! compared in constant time.
//!
//! The reader never writes the database, so everything that changes it is a request to the
//! writer through the handoff queue (`<data-dir>/admin-requests/`, see
//! `ingest::admin`): the handler validates, submits, and waits a bounded time for the result
//! (then answers 202 with a request id to poll). The backup reads a consistent snapshot
//! through its own read-only connection (SQLite's vacuum-into to a temporary file,
//! streamed, then gone).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use analytics::geo::GeoFilter;
use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use handoff::admin::{ADMIN_QUEUE, AdminRequest, Injection, valid_observer_id, valid_region};
use handoff::{Queue, RequestId, RequestStatus};
use serde_json::{Value, json};

use crate::AppState;
use crate::api::Params;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};

/// The header CoreScope's admin clients send the key in.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Requests waiting for the writer beyond which new ones are refused (503): a writer that is
/// not running must not let the queue directory grow without bound.
pub const MAX_PENDING: usize = 64;
/// How long a handler waits for the writer's result before answering 202.
pub const RESULT_WAIT: Duration = Duration::from_secs(10);
/// Largest admin request body.
pub const MAX_BODY: usize = 256 * 1024;
/// The observer an injected packet is stored under when the request names none.
pub const DEFAULT_OBSERVER: &str = "manual";
/// The region an injected packet is stored under when the request names none.
pub const DEFAULT_REGION: &str = "LOCAL";

/// Keys an operator might leave in place from an example; refused at start like short ones.
const WEAK_KEYS: &[&str] = &[
    "changeme",
    "change-me",
    "password",
    "secret",
    "admin",
    "apikey",
    "api-key",
    "default",
    "test",
    "example",
    "your-api-key",
    "your-secret-key",
];

/// Why an admin key is not acceptable, or `None` when it is: at least 16 characters, not a
/// placeholder.
pub fn weak_key_reason(key: &str) -> Option<&'static str> {
    if key.chars().count() < 16 {
        return Some("an admin key needs at least 16 characters");
    }
    if WEAK_KEYS.iter().any(|w| w.eq_ignore_ascii_case(key)) {
        return Some("the admin key is a well-known placeholder");
    }
    None
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// 403 without a configured key, 401 without the right one.
pub fn require_admin(st: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(key) = st.admin_key.as_deref() else {
        return Err(ApiError::Forbidden(
            "admin endpoints are off: start meshlens with --admin-key (or apiKey in the config file)"
                .into(),
        ));
    };
    let given = headers
        .get(API_KEY_HEADER)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if constant_time_eq(given, key.as_bytes()) {
        Ok(())
    } else {
        st.admin_refused.fetch_add(1, Ordering::Relaxed);
        Err(ApiError::Unauthorized("unauthorized".into()))
    }
}

fn data_dir(st: &AppState) -> PathBuf {
    st.db
        .path()
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn queue(st: &AppState) -> Queue {
    Queue::new(&data_dir(st), ADMIN_QUEUE)
}

/// Submits `req` unless too many are waiting already.
async fn submit(st: &AppState, req: AdminRequest) -> ApiResult<RequestId> {
    let q = queue(st);
    let mut v = req.to_json();
    v["requested_at"] = handoff::format_rfc3339_ms(crate::now_ms().max(0) as u64).into();
    tokio::task::spawn_blocking(move || {
        if q.pending_len(MAX_PENDING)? >= MAX_PENDING {
            return Ok(None);
        }
        q.submit(&v).map(Some)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("queue task: {e}")))?
    .map_err(|e| ApiError::Internal(format!("admin queue: {e}")))?
    .ok_or_else(|| {
        ApiError::Busy(format!(
            "{MAX_PENDING} admin requests are already waiting for the writer (is it running?)"
        ))
    })
}

async fn status_of(st: &AppState, id: &RequestId) -> ApiResult<RequestStatus> {
    let q = queue(st);
    let id = id.clone();
    tokio::task::spawn_blocking(move || q.status(&id))
        .await
        .map_err(|e| ApiError::Internal(format!("queue task: {e}")))?
        .map_err(|e| ApiError::Internal(format!("admin queue: {e}")))
}

/// The writer's result, or `None` if it has not answered within [`RESULT_WAIT`].
async fn wait_result(st: &AppState, id: &RequestId) -> ApiResult<Option<Value>> {
    let until = Instant::now() + RESULT_WAIT;
    let mut pause = Duration::from_millis(20);
    loop {
        if let RequestStatus::Done(v) = status_of(st, id).await? {
            return Ok(Some(v));
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

fn accepted(id: &RequestId, status_url: Option<String>, mut extra: Value) -> Response {
    extra["accepted"] = true.into();
    extra["requestId"] = id.as_str().into();
    if let Some(url) = status_url {
        extra["statusUrl"] = url.into();
    }
    (StatusCode::ACCEPTED, Json(extra)).into_response()
}

fn writer_error(v: &Value) -> ApiError {
    ApiError::Unprocessable(
        v.get("error")
            .and_then(Value::as_str)
            .unwrap_or("the writer refused the request")
            .to_owned(),
    )
}

fn body_json(body: &[u8]) -> ApiResult<Value> {
    if body.len() > MAX_BODY {
        return Err(ApiError::TooLarge("body too large".into()));
    }
    serde_json::from_slice(body).map_err(|_| ApiError::BadRequest("body must be JSON".into()))
}

// ---------------------------------------------------------------------------------------
// The geo filter

/// The stored geo filter (`None`: none set).
async fn stored_geo_filter(st: &AppState) -> ApiResult<Option<GeoFilter>> {
    let text = st
        .db
        .query(|c| {
            store::settings::read_setting(c, store::settings::GEO_FILTER)
                .map_err(|e| ApiError::Internal(e.to_string()))
        })
        .await?;
    let Some(text) = text else {
        return Ok(None);
    };
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    // The writer validated it; a row that no longer parses is treated as no filter.
    Ok(GeoFilter::from_json(&v).ok().flatten())
}

fn geo_filter_json(f: Option<&GeoFilter>) -> Value {
    match f {
        Some(f) => f.to_json(),
        None => json!({"polygon": null, "bufferKm": 0}),
    }
}

/// `GET /api/config/geo-filter`: `{polygon, bufferKm, writeEnabled}` (`polygon` null when
/// none is set; a legacy bounding box adds `latMin`…`lonMax`).
pub async fn get_geo_filter(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let f = stored_geo_filter(&st).await?;
    let mut v = geo_filter_json(f.as_ref());
    if v.get("polygon").is_none() {
        v["polygon"] = Value::Null;
        v["bufferKm"] = 0.into();
    }
    v["writeEnabled"] = st.admin_key.is_some().into();
    Ok(Json(v))
}

/// `PUT /api/config/geo-filter` with `{polygon, bufferKm}` (an empty or missing polygon
/// clears the filter): validated here, stored by the writer.
pub async fn put_geo_filter(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    require_admin(&st, &headers)?;
    let v = body_json(&body)?;
    let filter = GeoFilter::from_json(&v).map_err(ApiError::BadRequest)?;
    let geo_filter = filter.as_ref().map_or(Value::Null, GeoFilter::to_json);
    let id = submit(&st, AdminRequest::SetGeoFilter { geo_filter }).await?;
    match wait_result(&st, &id).await? {
        Some(r) if r["ok"] == true => Ok(Json(geo_filter_json(filter.as_ref())).into_response()),
        Some(r) => Err(writer_error(&r)),
        None => Ok(accepted(&id, None, json!({}))),
    }
}

/// `POST /api/admin/prune-geo-filter`: without `confirm=true`, a preview of the nodes with a
/// position outside the filter (`{dryRun, count, nodes}`); with it and
/// `{"pubkeys": [...]}` from the preview, deletes those of them still outside (so a node
/// that moved in between is spared), answering 202 with a request id.
pub async fn prune_geo_filter(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    require_admin(&st, &headers)?;
    let p = Params(q);
    let confirm = p.flag("confirm")?;
    let Some(filter) = stored_geo_filter(&st).await? else {
        return Err(ApiError::BadRequest("no geo filter is set".into()));
    };
    let located: Vec<(String, Option<String>, f64, f64)> = st
        .db
        .query(|c| {
            let mut stmt = sql(c.prepare(
                "SELECT public_key, name, lat, lon FROM nodes
                 WHERE lat IS NOT NULL AND lon IS NOT NULL
                 UNION ALL
                 SELECT public_key, name, lat, lon FROM inactive_nodes
                 WHERE lat IS NOT NULL AND lon IS NOT NULL",
            ))?;
            let rows =
                sql(stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(sql(row)?);
            }
            Ok(out)
        })
        .await?;
    let outside: Vec<(String, Option<String>, f64, f64)> = located
        .into_iter()
        .filter(|(_, _, lat, lon)| !filter.passes(*lat, *lon))
        .collect();
    let node_json = |n: &(String, Option<String>, f64, f64)| json!({"pubkey": n.0, "name": n.1, "lat": n.2, "lon": n.3});
    if !confirm {
        return Ok(Json(json!({
            "dryRun": true,
            "count": outside.len(),
            "nodes": outside.iter().map(node_json).collect::<Vec<_>>(),
        }))
        .into_response());
    }
    let v = body_json(&body).map_err(|_| {
        ApiError::BadRequest("confirm needs {\"pubkeys\": [...]} from the preview".into())
    })?;
    let chosen: Vec<String> = v
        .get("pubkeys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    if chosen.is_empty() {
        return Err(ApiError::BadRequest(
            "confirm needs {\"pubkeys\": [...]} from the preview".into(),
        ));
    }
    let to_delete: Vec<&(String, Option<String>, f64, f64)> =
        outside.iter().filter(|n| chosen.contains(&n.0)).collect();
    let public_keys: Vec<String> = to_delete.iter().map(|n| n.0.clone()).collect();
    let count = public_keys.len();
    let id = submit(&st, AdminRequest::PruneNodes { public_keys }).await?;
    let url = format!("/api/admin/prune-geo-filter/status?id={id}");
    Ok(accepted(
        &id,
        Some(url),
        json!({
            "dryRun": false,
            "count": count,
            "nodes": to_delete.into_iter().map(node_json).collect::<Vec<_>>(),
        }),
    ))
}

/// `GET /api/admin/prune-geo-filter/status?id=…`: `pending`, then `done` (with `deleted`)
/// or `error`; 404 for an id nobody submitted (or whose result has expired).
pub async fn prune_status(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    require_admin(&st, &headers)?;
    let p = Params(q);
    let raw = p
        .str("id")
        .ok_or_else(|| ApiError::BadRequest("missing id".into()))?;
    let id = RequestId::parse(raw).ok_or_else(|| ApiError::BadRequest("invalid id".into()))?;
    match status_of(&st, &id).await? {
        RequestStatus::Pending => Ok(Json(json!({"requestId": id.as_str(), "status": "pending"}))),
        RequestStatus::Done(r) => {
            let ok = r["ok"] == true;
            Ok(Json(json!({
                "requestId": id.as_str(),
                "status": if ok { "done" } else { "error" },
                "deleted": r.get("deleted").cloned().unwrap_or(0.into()),
                "requestedAt": r.get("requestedAt").cloned().unwrap_or(Value::Null),
                "completedAt": r.get("completedAt").cloned().unwrap_or(Value::Null),
                "error": r.get("error").cloned().unwrap_or_else(|| "".into()),
            })))
        }
        RequestStatus::Unknown => Err(ApiError::NotFound("unknown request id".into())),
    }
}

// ---------------------------------------------------------------------------------------
// Packet injection

/// `POST /api/packets` with `{"hex", "observer"?, "snr"?, "rssi"?, "region"?}`: stores the
/// packet as if `observer` (default `manual`, region `LOCAL`) had heard it. Answers
/// CoreScope's `{id, decoded}` once the writer has committed it, 202 with a request id if
/// the writer is slow, 422 if it refused the packet (an IATA filter, an observer limit).
pub async fn post_packet(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    require_admin(&st, &headers)?;
    let v = body_json(&body)?;
    let hex = v
        .get("hex")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ApiError::BadRequest("hex is required".into()))?;
    let bytes =
        meshcore::report::parse_hex(hex).map_err(|e| ApiError::BadRequest(format!("hex: {e}")))?;
    let packet = meshcore::Packet::decode(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("not a MeshCore frame: {}", e.kind.code())))?;
    let hash = store::hash_hex(packet.hash().to_u64());
    let text = |k: &str| -> ApiResult<Option<String>> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(_) => Err(ApiError::BadRequest(format!("{k} must be a string"))),
        }
    };
    let observer = text("observer")?.unwrap_or_else(|| DEFAULT_OBSERVER.into());
    if !valid_observer_id(&observer) {
        return Err(ApiError::BadRequest(
            "observer must be 1-64 of A-Z, a-z, 0-9, - and _".into(),
        ));
    }
    let region = text("region")?
        .map(|r| r.to_ascii_uppercase())
        .unwrap_or_else(|| DEFAULT_REGION.into());
    if !valid_region(&region) {
        return Err(ApiError::BadRequest(
            "region must be 1-16 of A-Z, a-z, 0-9 and -".into(),
        ));
    }
    let number = |k: &str| -> ApiResult<Option<f64>> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(n) => n
                .as_f64()
                .filter(|x| x.is_finite() && x.abs() <= 1000.0)
                .map(Some)
                .ok_or_else(|| ApiError::BadRequest(format!("{k} must be a number"))),
        }
    };
    let injection = Injection {
        hex: hex::encode(&bytes),
        observer,
        region,
        snr: number("snr")?,
        rssi: number("rssi")?,
    };
    // CoreScope's `{header, path, payload}` beside meshlens's flat keys, as `/api/decode`.
    let decoded = crate::api::corescope::decoded_object(&crate::decode_for_api(&bytes, &st.decode));
    let id = submit(&st, AdminRequest::InjectPacket(injection)).await?;
    let result = wait_result(&st, &id).await?;
    let Some(result) = result else {
        return Ok(accepted(
            &id,
            None,
            json!({"hash": hash, "decoded": decoded}),
        ));
    };
    if result["ok"] != true {
        return Err(writer_error(&result));
    }
    let h = hash.clone();
    let tx_id: Option<i64> = st
        .db
        .query(move |c| {
            match c.query_row("SELECT id FROM transmissions WHERE hash = ?1", [&h], |r| {
                r.get(0)
            }) {
                Ok(id) => Ok(Some(id)),
                Err(store::rusqlite::Error::QueryReturnedNoRows) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await?;
    Ok(Json(json!({"id": tx_id, "hash": hash, "decoded": decoded})).into_response())
}

// ---------------------------------------------------------------------------------------
// Backup

/// Frees the one-backup slot when the stream ends or the client goes away.
struct BackupSlot {
    st: Arc<AppState>,
}

impl Drop for BackupSlot {
    fn drop(&mut self) {
        self.st.backup_running.store(false, Ordering::Release);
    }
}

/// Makes the consistent copy (SQLite's vacuum-into) from a fresh read-only connection (not
/// a pooled one: a backup of a large database takes long and must not hold an API connection or
/// run under the API's query deadline). Returns the open file; its directory is already
/// removed, so nothing is left on disk whatever happens to the stream.
fn make_backup(db: &Path, work_dirs: &[PathBuf]) -> Result<(std::fs::File, u64), String> {
    let mut last = String::from("no directory for the temporary copy");
    for dir in work_dirs {
        let tmp = match tempfile::Builder::new()
            .prefix(".meshlens-backup-")
            .tempdir_in(dir)
        {
            Ok(t) => t,
            Err(e) => {
                last = format!("{}: {e}", dir.display());
                continue;
            }
        };
        let target = tmp.path().join("backup.db");
        let reader = store::Reader::open(db).map_err(|e| e.to_string())?;
        if let Err(e) = reader.backup_to(&target) {
            last = format!("snapshot failed: {e}");
            continue;
        }
        let file = std::fs::File::open(&target).map_err(|e| e.to_string())?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        drop(tmp);
        return Ok((file, len));
    }
    Err(last)
}

/// `GET /api/backup`: the whole database as a consistent SQLite file
/// (`meshlens-backup-<unix>.db`), one backup at a time (409 while one runs).
pub async fn backup(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Response> {
    require_admin(&st, &headers)?;
    if st
        .backup_running
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(ApiError::Conflict("a backup is already running".into()));
    }
    let slot = BackupSlot { st: st.clone() };
    let db = st.db.path().to_path_buf();
    let dirs = vec![data_dir(&st), std::env::temp_dir()];
    let (file, len) = tokio::task::spawn_blocking(move || make_backup(&db, &dirs))
        .await
        .map_err(|e| ApiError::Internal(format!("backup task: {e}")))?
        .map_err(ApiError::Internal)?;
    tracing::info!(bytes = len, "serving a database backup");
    let file = tokio::fs::File::from_std(file);
    let stream = futures_util::stream::unfold(
        (file, slot, vec![0u8; 256 * 1024]),
        |(mut file, slot, mut buf)| async move {
            use tokio::io::AsyncReadExt;
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    let chunk = axum::body::Bytes::copy_from_slice(&buf[..n]);
                    Some((Ok::<_, std::io::Error>(chunk), (file, slot, buf)))
                }
                Err(e) => Some((Err(e), (file, slot, buf))),
            }
        },
    );
    let name = format!("meshlens-backup-{}.db", crate::now_ms() / 1000);
    let mut res = Response::new(Body::from_stream(stream));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}
