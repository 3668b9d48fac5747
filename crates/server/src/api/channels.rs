//! `/api/channels` and `/api/channels/{hash}/messages`. Channel messages are decrypted at read
//! time with the server's keys; the text is untrusted and returned as plain JSON strings.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::{Value, json};
use store::rusqlite::params_from_iter;
use store::time::iso;

use super::Params;
use super::packet_json::{put, put_key};
use super::packets::{FirstObs, TxRow, first_observations, tx_row};
use crate::AppState;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};

/// Most messages one request may return.
pub const MAX_MESSAGES: i64 = 500;

/// Most region codes one `region` filter may name.
const MAX_REGIONS: usize = 32;

/// A `region` filter: the clause (heard by an observer of one of these IATA codes, as
/// CoreScope filters) on transmission `t`, and its bound codes.
fn region_clause(p: &Params) -> ApiResult<Option<(String, Vec<String>)>> {
    let Some(codes) = p.list("region", MAX_REGIONS)? else {
        return Ok(None);
    };
    let mut codes: Vec<String> = codes.iter().map(|c| c.to_ascii_uppercase()).collect();
    codes.sort_unstable();
    codes.dedup();
    let marks = vec!["?"; codes.len()].join(",");
    Ok(Some((
        format!(
            " AND EXISTS (SELECT 1 FROM observations o JOIN observers ob ON ob.idx = o.observer_idx \
             WHERE o.transmission_id = t.id AND upper(trim(ob.iata)) IN ({marks}))"
        ),
        codes,
    )))
}

/// `GET /api/channels` → `{channels}`: the decrypted channels by name; with
/// `includeEncrypted=true` also the undecrypted ones (`enc_<hash>`, `encrypted: true`), as
/// CoreScope answers; `region` keeps channels heard in those regions, counting only those
/// messages.
pub async fn list(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params(q);
    let include_encrypted = p.flag("includeEncrypted")?;
    let region = region_clause(&p)?;
    let keep = |v: &Value| -> Value {
        let all = v["channels"].as_array().cloned().unwrap_or_default();
        let channels: Vec<Value> = all
            .into_iter()
            .filter(|c| include_encrypted || c["encrypted"] != Value::Bool(true))
            .collect();
        json!({ "channels": channels })
    };
    // The unfiltered list is computed once per commit generation (see `/api/stats`).
    let generation = st.generation.load(std::sync::atomic::Ordering::Relaxed);
    let mut cache = if region.is_none() {
        let cache = st.channels_cache.lock().await;
        if let Some((g, v)) = cache.as_ref()
            && *g == generation
        {
            return Ok(Json(keep(v)));
        }
        Some(cache)
    } else {
        None
    };
    let (clause, codes) = region.unwrap_or_default();
    let rows = st
        .db
        .query(move |c| {
            let args = || params_from_iter(codes.iter());
            let mut stmt = sql(c.prepare(&format!(
                "SELECT t.channel, count(*), max(t.first_seen) FROM transmissions t
                 WHERE t.channel IS NOT NULL AND t.payload_type = 5{clause}
                 GROUP BY t.channel ORDER BY 3 DESC LIMIT 1000",
            )))?;
            let rows = sql(stmt
                .query_map(args(), |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            let mut last = sql(c.prepare_cached(
                "SELECT t.id, t.hash, t.raw, t.first_seen, t.last_seen, t.observation_count, t.channel, t.scope, t.from_pubkey
                 FROM transmissions t WHERE t.channel = ?1 AND t.payload_type = 5 AND t.first_seen = ?2
                 ORDER BY t.id DESC LIMIT 1",
            ))?;
            let mut out = Vec::with_capacity(rows.len());
            for (name, count, at) in rows {
                let latest = sql(last.query_row(store::rusqlite::params![&name, at], tx_row))?;
                out.push((name, count, at, latest));
            }
            Ok(out)
        })
        .await?;
    let channels: Vec<Value> = rows
        .into_iter()
        .map(|(name, count, at, latest)| {
            let encrypted = name.starts_with("enc_");
            let m = message_json(&latest.to_json_lean(&st, None));
            json!({
                "hash": name,
                "name": if encrypted {
                    // CoreScope's label for a channel nobody has the key of.
                    format!("Encrypted (0x{})", name.trim_start_matches("enc_").to_ascii_uppercase()).into()
                } else {
                    Value::from(name.clone())
                },
                "encrypted": encrypted,
                "messageCount": count,
                "lastActivity": iso(at),
                "lastMessage": if encrypted { Value::Null } else { m.get("message").cloned().unwrap_or(Value::Null) },
                "lastSender": if encrypted { Value::Null } else { m.get("sender").cloned().unwrap_or(Value::Null) },
            })
        })
        .collect();
    let v = json!({"channels": channels});
    let answer = keep(&v);
    if let Some(cache) = cache.as_mut() {
        **cache = Some((generation, v));
    }
    Ok(Json(answer))
}

/// `GET /api/known-channels` → CoreScope's catalogue of community hashtag channels
/// (`{fetchedAt, source, entries}`). meshlens fetches no catalogue, so it is the empty one
/// CoreScope serves when none is configured; `region` is accepted (2 letters) and filters
/// nothing out of nothing.
pub async fn known(Query(q): Query<HashMap<String, String>>) -> ApiResult<Json<Value>> {
    let p = Params(q);
    if let Some(r) = p.str("region")
        && !(r.len() == 2 && r.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        return Err(ApiError::BadRequest(
            "region must be a two-letter country code".into(),
        ));
    }
    Ok(Json(json!({
        "fetchedAt": "0001-01-01T00:00:00Z",
        "source": "",
        "entries": [],
    })))
}

/// A chat message from a packet's API object: meshlens's keys (`message` without the sender,
/// `sender`, the full decode's fields) and CoreScope's (`text` without the "Sender: " prefix,
/// `packetHash`, `first_seen`). [`messages`] adds the ones that need the observations.
fn message_json(p: &Value) -> Value {
    let d = &p["decoded"];
    let pt = &d["plaintext"];
    let full = pt.get("text").cloned().unwrap_or(Value::Null);
    let message = pt.get("message").cloned().unwrap_or_else(|| full.clone());
    json!({
        "hash": p["hash"],
        "packetHash": p["hash"],
        "timestamp": p["first_seen"],
        "first_seen": p["first_seen"],
        "sender_timestamp": pt.get("timestamp").cloned().unwrap_or(Value::Null),
        "sender": pt.get("sender").cloned().unwrap_or(Value::Null),
        "message": message,
        "text": message,
        "full_text": full,
        "encrypted": d.get("decrypted") != Some(&Value::Bool(true)),
        "observation_count": p["observation_count"],
        "hop_count": p["hop_count"],
        "hash_size": p["hash_size"],
    })
}

/// The keys of a message object that depend on its frame alone (the decrypted text,
/// sender, hops), as a JSON fragment `,"sender_timestamp":…,"hops":…`, kept per transmission
/// in a bounded cache: a channel page decrypts and decodes nothing it has shown before.
fn frame_fragment(st: &AppState, r: &TxRow) -> Arc<Box<[u8]>> {
    st.message_cache.get_or(r.id(), r.raw(), || {
        let m = message_json(&r.to_json_lean(st, None));
        let mut out = Vec::with_capacity(256);
        for k in [
            "sender_timestamp",
            "sender",
            "message",
            "text",
            "full_text",
            "encrypted",
            "hop_count",
            "hash_size",
        ] {
            put_key(&mut out, k);
            put(&mut out, &m[k]);
        }
        put_key(&mut out, "hops");
        put(&mut out, &m["hop_count"].as_i64().unwrap_or(0));
        let n = out.len();
        (out.into_boxed_slice(), n)
    })
}

/// Writes the message object of transmission `r` (first observation `first`): the keys of
/// [`message_json`] and CoreScope's that need the row and its observations.
fn write_message(out: &mut Vec<u8>, st: &AppState, r: &TxRow, first: &FirstObs) {
    let seen = store::time::iso(r.first_seen());
    out.extend_from_slice(b"{\"hash\":");
    put(out, r.hash());
    put_key(out, "packetHash");
    put(out, r.hash());
    put_key(out, "timestamp");
    put(out, &seen);
    put_key(out, "first_seen");
    put(out, &seen);
    out.extend_from_slice(&frame_fragment(st, r));
    put_key(out, "observation_count");
    put(out, &r.observation_count());
    put_key(out, "packetId");
    put(out, &r.id());
    put_key(out, "repeats");
    put(out, &r.observation_count());
    put_key(out, "observers");
    let who = first.observer_name().or(first.observer_id());
    put(out, &who.into_iter().collect::<Vec<_>>());
    put_key(out, "snr");
    put(out, &first.snr());
    out.push(b'}');
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

/// `GET /api/channels/{hash}/messages` → `{messages, total, limit, offset}`: the newest
/// page, listed oldest first as CoreScope lists it (its app scrolls to the newest at the
/// bottom). Besides meshlens's keys each message has CoreScope's `packetId` (the transmission),
/// `packetHash`, `repeats` (observations), `observers` (who heard it first), `hops`, `snr`
/// and `first_seen`. `region` keeps messages heard in those regions.
pub async fn messages(
    State(st): State<Arc<AppState>>,
    Path(channel): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let p = Params(q);
    let limit = p.limit(50, MAX_MESSAGES)?;
    let offset = p.offset()?;
    if channel.is_empty() || channel.len() > 128 {
        return Err(ApiError::BadRequest(
            "channel must be 1-128 characters".into(),
        ));
    }
    let region = region_clause(&p)?;
    let state = st.clone();
    // Read, decrypted and built on the blocking thread that holds the connection: decoding
    // a page of messages on an async worker would hold up every other connection.
    let (mut body, total) = st
        .db
        .query(move |c| {
            let (clause, codes) = region.clone().unwrap_or_default();
            let mut args: Vec<&dyn store::rusqlite::ToSql> = vec![&channel];
            args.extend(codes.iter().map(|c| c as &dyn store::rusqlite::ToSql));
            let total = if region.is_none() {
                message_count(&state, c, &channel)?
            } else {
                sql(c.prepare_cached(&format!(
                    "SELECT count(*) FROM transmissions t WHERE t.channel = ? AND t.payload_type = 5{clause}"
                ))
                .and_then(|mut s| s.query_row(params_from_iter(args.iter()), |r| r.get(0))))?
            };
            args.push(&limit);
            args.push(&offset);
            let mut stmt = sql(c.prepare_cached(&format!(
                "SELECT t.id, t.hash, t.raw, t.first_seen, t.last_seen, t.observation_count, t.channel, t.scope, t.from_pubkey
                 FROM transmissions t WHERE t.channel = ? AND t.payload_type = 5{clause}
                 ORDER BY t.first_seen DESC LIMIT ? OFFSET ?",
            )))?;
            let rows = sql(stmt
                .query_map(params_from_iter(args.iter()), tx_row)
                .and_then(|m| m.collect::<Result<Vec<_>, _>>()))?;
            let ids: Vec<i64> = rows.iter().map(TxRow::id).collect();
            let firsts = first_observations(c, &ids)?;
            let none = FirstObs::default();
            // Read newest first (the page), listed oldest first (CoreScope's order), each
            // message written straight to bytes.
            let mut out = Vec::with_capacity(rows.len() * 512 + 64);
            out.extend_from_slice(b"{\"messages\":[");
            for (i, r) in rows.iter().rev().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_message(&mut out, &state, r, firsts.get(&r.id()).unwrap_or(&none));
            }
            Ok((out, total))
        })
        .await?;
    if total == 0 {
        return Err(ApiError::NotFound("no messages on this channel".into()));
    }
    body.extend_from_slice(
        format!("],\"total\":{total},\"limit\":{limit},\"offset\":{offset}}}").as_bytes(),
    );
    Ok(super::json_response(body))
}
