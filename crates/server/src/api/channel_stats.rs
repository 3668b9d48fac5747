//! `/api/analytics/channels`: messages per channel over time and who sends them, in
//! CoreScope's `ChannelAnalyticsResponse` shape (`activeChannels`, `decryptable`, `channels`,
//! `topSenders`, `channelTimeline`, `msgLengths`).
//!
//! Reads the channel messages (GRP_TXT) first seen in a window, newest first, at most
//! [`MAX_MESSAGES`] (then `truncated`), decrypting each with the reader's keys: the sender is
//! the unauthenticated `"<sender>: "` prefix of the text, returned as plain JSON text. A
//! message nobody here has the key of counts on its channel-hash byte (`ch<hash>`,
//! `encrypted: true`), as CoreScope counts it. Channels group by that byte, so a hashtag
//! channel and Public never merge unless their key hashes collide (then by name within it).
//!
//! Windows (shared with the other coverage and node analytics): `window` (`1h`, `24h`, `7d`,
//! … at most [`MAX_WINDOW_MS`], default `7d`) or `from`/`to` (at most as long). `region`
//! keeps messages heard by an observer of those IATA codes. `area` (CoreScope's node-area
//! filter, which channel messages cannot satisfy: they name no sender key) is a 400.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use meshcore::payload::{Group, GroupText};
use meshcore::{Packet, PayloadType};
use serde_json::{Value, json};
use store::rusqlite::params_from_iter;
use store::time::{iso, parse_duration};

use super::Params;
use crate::AppState;
use crate::db::sql;
use crate::error::{ApiError, ApiResult};

/// Longest window.
pub const MAX_WINDOW_MS: i64 = 30 * 86_400_000;

/// Messages one answer reads at most.
pub const MAX_MESSAGES: i64 = 50_000;

/// Senders listed (CoreScope lists 15).
const TOP_SENDERS: usize = 15;

/// Distinct senders tallied at most: past it new names are not counted (the text is
/// attacker-controlled, so its variety must not grow memory).
const MAX_SENDERS: usize = 20_000;

/// Region codes one filter may name.
const MAX_REGIONS: usize = 32;

/// A window `[since, until)` in Unix ms and its label (`7d`, or `""` for a from/to range).
pub struct Window {
    /// Start, inclusive.
    pub since: i64,
    /// End, exclusive.
    pub until: i64,
    /// The `window` value, or empty for an absolute range.
    pub label: String,
}

/// The window of `window` or `from`/`to` (CoreScope's `ParseTimeWindow`), `default` when
/// neither is given; any bad value is a 400.
pub fn window(p: &Params, default: &str) -> ApiResult<Window> {
    let now = crate::now_ms();
    let (from, to) = (p.time("from")?, p.time("to")?);
    if from.is_some() || to.is_some() {
        if p.str("window").is_some() {
            return Err(ApiError::BadRequest(
                "give window or from/to, not both".into(),
            ));
        }
        let until = to.unwrap_or(now).min(now.saturating_add(1));
        let since = from.unwrap_or(until.saturating_sub(MAX_WINDOW_MS));
        if since >= until || until - since > MAX_WINDOW_MS {
            return Err(ApiError::BadRequest(
                "from must be before to, at most 30 days apart".into(),
            ));
        }
        return Ok(Window {
            since,
            until,
            label: String::new(),
        });
    }
    let label = p.str("window").unwrap_or(default).to_owned();
    let d =
        parse_duration(&label).map_err(|e| ApiError::BadRequest(format!("invalid window: {e}")))?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if ms <= 0 || ms > MAX_WINDOW_MS {
        return Err(ApiError::BadRequest(format!(
            "invalid window: {label:?} (more than 0, at most 30 days)"
        )));
    }
    Ok(Window {
        since: now.saturating_sub(ms),
        until: now.saturating_add(1),
        label,
    })
}

/// A 400 for a CoreScope filter this route does not apply.
pub fn refuse(p: &Params, names: &[&str]) -> ApiResult<()> {
    for n in names {
        if p.str(n).is_some() {
            return Err(ApiError::BadRequest(format!(
                "{n} is not supported on this route"
            )));
        }
    }
    Ok(())
}

/// `region`: upper-cased IATA codes, or `None`.
pub fn regions(p: &Params) -> ApiResult<Option<Vec<String>>> {
    let Some(codes) = p.list("region", MAX_REGIONS)? else {
        return Ok(None);
    };
    let mut codes: Vec<String> = codes.iter().map(|c| c.to_ascii_uppercase()).collect();
    codes.sort_unstable();
    codes.dedup();
    Ok(Some(codes))
}

/// One channel's tally.
struct Chan {
    name: String,
    messages: u64,
    senders: HashSet<String>,
    last: i64,
    encrypted: bool,
}

/// Served from the analytics answer cache for a few seconds.
pub async fn channels(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::response::Response> {
    super::rf::cached(
        &st,
        "analytics-channels",
        &q,
        channels_answer(st.clone(), q.clone()),
    )
    .await
}

/// `GET /api/analytics/channels?window=|from=&to=&region=` → CoreScope's keys plus `window`,
/// `from`, `to`, `totalMessages` and `truncated`.
async fn channels_answer(st: Arc<AppState>, q: HashMap<String, String>) -> ApiResult<Json<Value>> {
    let p = Params(q);
    refuse(&p, &["area"])?;
    let w = window(&p, "7d")?;
    let codes = regions(&p)?;
    let (since, until) = (w.since, w.until);
    let state = st.clone();
    let out = st
        .db
        .query(move |c| {
            let region = match &codes {
                Some(codes) => format!(
                    " AND EXISTS (SELECT 1 FROM observations o JOIN observers ob ON ob.idx = o.observer_idx
                      WHERE o.transmission_id = t.id AND upper(trim(ob.iata)) IN ({}))",
                    vec!["?"; codes.len()].join(",")
                ),
                None => String::new(),
            };
            let mut stmt = sql(c.prepare_cached(&format!(
                "SELECT t.raw, t.first_seen, t.channel FROM transmissions t INDEXED BY transmissions_type
                 WHERE t.payload_type = 5 AND t.first_seen >= ? AND t.first_seen < ?{region}
                 ORDER BY t.first_seen DESC LIMIT ?"
            )))?;
            let mut args: Vec<store::rusqlite::types::Value> = vec![since.into(), until.into()];
            args.extend(codes.iter().flatten().map(|c| c.clone().into()));
            args.push(MAX_MESSAGES.into());
            let mut rows = sql(stmt.query(params_from_iter(args)))?;
            let keyring = &state.decode.keyring;
            let mut chans: BTreeMap<(u8, String), Chan> = BTreeMap::new();
            let mut senders: HashMap<String, u64> = HashMap::new();
            let mut lengths: Vec<usize> = Vec::new();
            // (hour number, channel name) → messages.
            let mut timeline: BTreeMap<(i64, String), u64> = BTreeMap::new();
            let mut n = 0i64;
            while let Some(r) = sql(rows.next())? {
                n += 1;
                let raw = sql(r.get_ref(0))?.as_blob().unwrap_or(&[]);
                let at: i64 = sql(r.get(1))?;
                let stored: Option<String> = sql(r.get(2))?;
                let Some(group) = Packet::decode(raw)
                    .ok()
                    .and_then(|p| Group::decode(PayloadType::GrpTxt, p.payload_bytes()).ok())
                else {
                    continue;
                };
                let hash = group.channel_hash;
                let decrypted = keyring.decrypt(PayloadType::GrpTxt, &group);
                let name = decrypted
                    .as_ref()
                    .and_then(|d| keyring.get(d.channel))
                    .map(|ch| ch.name().to_owned())
                    .or_else(|| stored.filter(|s| !s.starts_with("enc_")))
                    .unwrap_or_else(|| format!("ch{hash}"));
                let text = decrypted.as_ref().and_then(|d| GroupText::decode(&d.plaintext));
                let (sender, message) = match text.as_ref().map(|t| (t, t.sender_and_message())) {
                    Some((_, Some((s, m)))) => (Some(s), Some(m)),
                    Some((t, None)) => (None, Some(t.text)),
                    None => (None, None),
                };
                let ch = chans.entry((hash, name.clone())).or_insert_with(|| Chan {
                    name: name.clone(),
                    messages: 0,
                    senders: HashSet::new(),
                    last: at,
                    encrypted: true,
                });
                ch.messages += 1;
                ch.last = ch.last.max(at);
                if message.is_some() {
                    ch.encrypted = false;
                }
                if let Some(s) = sender {
                    if ch.senders.len() < MAX_SENDERS {
                        ch.senders.insert(s.to_owned());
                    }
                    if let Some(c) = senders.get_mut(s) {
                        *c += 1;
                    } else if senders.len() < MAX_SENDERS {
                        senders.insert(s.to_owned(), 1);
                    }
                }
                if let Some(m) = message.filter(|m| !m.is_empty()) {
                    lengths.push(m.len());
                }
                *timeline.entry((at.div_euclid(3_600_000), name)).or_default() += 1;
            }
            Ok((chans, senders, lengths, timeline, n))
        })
        .await?;
    let (chans, senders, lengths, timeline, n) = out;
    let mut list: Vec<(&(u8, String), &Chan)> = chans.iter().collect();
    list.sort_by(|a, b| {
        b.1.messages
            .cmp(&a.1.messages)
            .then(b.1.last.cmp(&a.1.last))
            .then(a.0.cmp(b.0))
    });
    let channels: Vec<Value> = list
        .iter()
        .map(|((hash, _), c)| {
            json!({
                // CoreScope's hash is the channel byte in decimal, as a string.
                "hash": hash.to_string(),
                "hashHex": format!("{hash:02x}"),
                "name": c.name,
                "messages": c.messages,
                "senders": c.senders.len(),
                "lastActivity": iso(c.last),
                "encrypted": c.encrypted,
            })
        })
        .collect();
    let mut top: Vec<(&String, &u64)> = senders.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let top: Vec<Value> = top
        .into_iter()
        .take(TOP_SENDERS)
        .map(|(name, count)| json!({"name": name, "count": count}))
        .collect();
    let timeline: Vec<Value> = timeline
        .iter()
        .map(|((hour, channel), count)| {
            let t = iso(hour.saturating_mul(3_600_000));
            json!({"hour": t.get(..13).unwrap_or(""), "channel": channel, "count": count})
        })
        .collect();
    Ok(Json(json!({
        "activeChannels": channels.len(),
        "decryptable": chans.values().filter(|c| !c.encrypted).count(),
        "channels": channels,
        "topSenders": top,
        "channelTimeline": timeline,
        "msgLengths": lengths,
        "totalMessages": n,
        "window": w.label,
        "from": iso(since),
        "to": iso(until.min(crate::now_ms())),
        "truncated": n >= MAX_MESSAGES,
    })))
}
