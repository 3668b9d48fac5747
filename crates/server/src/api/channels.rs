//! `/api/channels` and `/api/channels/{hash}/messages`. Channel messages are decrypted at read
//! time with the server's keys; the text is untrusted and returned as plain JSON strings.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use store::time::iso;

use super::Params;
use super::packets::tx_row;
use crate::AppState;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};

/// Most messages one request may return.
pub const MAX_MESSAGES: i64 = 500;

/// `GET /api/channels` → `{channels}`: every channel seen, decrypted ones by name, the others
/// as `enc_<hash>`.
pub async fn list(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    // Computed once per commit generation (see `/api/stats`).
    let generation = st.generation.load(std::sync::atomic::Ordering::Relaxed);
    let mut cache = st.channels_cache.lock().await;
    if let Some((g, v)) = cache.as_ref()
        && *g == generation
    {
        return Ok(Json(v.clone()));
    }
    let rows = st
        .db
        .query(|c| {
            let mut stmt = sql(c.prepare_cached(
                "SELECT channel, count(*), max(first_seen) FROM transmissions
                 WHERE channel IS NOT NULL AND payload_type = 5 GROUP BY channel ORDER BY 3 DESC LIMIT 1000",
            ))?;
            let rows = sql(stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            let mut last = sql(c.prepare_cached(
                "SELECT t.id, t.hash, t.raw, t.first_seen, t.last_seen, t.observation_count, t.channel, t.scope, t.from_pubkey
                 FROM transmissions t WHERE t.channel = ?1 AND t.payload_type = 5 ORDER BY t.first_seen DESC LIMIT 1",
            ))?;
            let mut out = Vec::with_capacity(rows.len());
            for (name, count, at) in rows {
                let latest = sql(last.query_row([&name], tx_row))?;
                out.push((name, count, at, latest));
            }
            Ok(out)
        })
        .await?;
    let channels: Vec<Value> = rows
        .into_iter()
        .map(|(name, count, at, latest)| {
            let encrypted = name.starts_with("enc_");
            let m = message_json(&latest.to_json(&st));
            json!({
                "hash": name,
                "name": if encrypted { Value::Null } else { name.clone().into() },
                "encrypted": encrypted,
                "messageCount": count,
                "lastActivity": iso(at),
                "lastMessage": m.get("message").cloned().unwrap_or(Value::Null),
                "lastSender": m.get("sender").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    let v = json!({"channels": channels});
    *cache = Some((generation, v.clone()));
    Ok(Json(v))
}

/// A chat message from a packet's API object.
fn message_json(p: &Value) -> Value {
    let d = &p["decoded"];
    let pt = &d["plaintext"];
    json!({
        "hash": p["hash"],
        "timestamp": p["first_seen"],
        "sender_timestamp": pt.get("timestamp").cloned().unwrap_or(Value::Null),
        "sender": pt.get("sender").cloned().unwrap_or(Value::Null),
        "message": pt.get("message").or_else(|| pt.get("text")).cloned().unwrap_or(Value::Null),
        "text": pt.get("text").cloned().unwrap_or(Value::Null),
        "encrypted": d.get("decrypted") != Some(&Value::Bool(true)),
        "observation_count": p["observation_count"],
        "hop_count": p["hop_count"],
        "hash_size": p["hash_size"],
    })
}

/// Messages counted per channel: a full count at most once a minute (retention deletes old
/// rows), and in between the full count plus the rows first seen since it, a seek on the
/// `(channel, payload_type, first_seen)` index (a full count of a busy channel's index took
/// ~10 ms at 2,000,000 observations, on every page).
#[derive(Default)]
pub struct MessageCounts {
    by_channel: std::sync::Mutex<HashMap<String, (std::time::Instant, i64, i64)>>,
}

impl MessageCounts {
    const FULL_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
    const CAPACITY: usize = 256;
}

fn message_count(st: &AppState, c: &store::rusqlite::Connection, channel: &str) -> ApiResult<i64> {
    let cached = st
        .message_counts
        .by_channel
        .lock()
        .ok()
        .and_then(|m| m.get(channel).copied())
        .filter(|(at, _, _)| at.elapsed() < MessageCounts::FULL_EVERY);
    // Messages first seen before `since` (`older`) or at/after it.
    let count = |older: bool, since: i64| -> ApiResult<i64> {
        let op = if older { "<" } else { ">=" };
        sql(c.query_row(
            &format!(
                "SELECT count(*) FROM transmissions
                 WHERE channel = ?1 AND payload_type = 5 AND first_seen {op} ?2"
            ),
            store::rusqlite::params![channel, since],
            |r| r.get(0),
        ))
    };
    if let Some((_, since, base)) = cached {
        return Ok(base + count(false, since)?);
    }
    // Everything first seen before `since` now; newer rows are counted on top of it.
    let since = crate::now_ms();
    let base = count(true, since)?;
    let newer = count(false, since)?;
    if let Ok(mut m) = st.message_counts.by_channel.lock() {
        if m.len() >= MessageCounts::CAPACITY {
            m.clear();
        }
        m.insert(channel.to_owned(), (std::time::Instant::now(), since, base));
    }
    Ok(base + newer)
}

/// `GET /api/channels/{hash}/messages` → `{messages, total}`, newest first.
pub async fn messages(
    State(st): State<Arc<AppState>>,
    Path(channel): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    let limit = p.limit(50, MAX_MESSAGES)?;
    let offset = p.offset()?;
    if channel.is_empty() || channel.len() > 128 {
        return Err(ApiError::BadRequest(
            "channel must be 1-128 characters".into(),
        ));
    }
    let state = st.clone();
    let (rows, total) = st
        .db
        .query(move |c| {
            let total = message_count(&state, c, &channel)?;
            let mut stmt = sql(c.prepare_cached(
                "SELECT t.id, t.hash, t.raw, t.first_seen, t.last_seen, t.observation_count, t.channel, t.scope, t.from_pubkey
                 FROM transmissions t WHERE t.channel = ?1 AND t.payload_type = 5
                 ORDER BY t.first_seen DESC LIMIT ?2 OFFSET ?3",
            ))?;
            let rows = sql(stmt
                .query_map(store::rusqlite::params![channel, limit, offset], tx_row)
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            Ok((rows, total))
        })
        .await?;
    if total == 0 {
        return Err(ApiError::NotFound("no messages on this channel".into()));
    }
    let messages: Vec<Value> = rows.iter().map(|r| message_json(&r.to_json(&st))).collect();
    Ok(Json(
        json!({"messages": messages, "total": total, "limit": limit, "offset": offset}),
    ))
}
