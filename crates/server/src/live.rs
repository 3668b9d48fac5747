//! The live feed: a tailer notices commits within milliseconds (`PRAGMA data_version`, checked
//! every 20 ms on its own read-only connection), reads every new observation past its
//! watermark and broadcasts it; each WebSocket client reads from a bounded ring and is told
//! when it lagged, so a slow client never slows ingest or anyone else.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meshcore::report::DecodeOptions;
use serde_json::{Value, json};
use store::Reader;
use store::time::iso;
use tokio::sync::broadcast;

use crate::AppState;

/// Messages buffered per client before it is told it lagged.
pub const CLIENT_BUFFER: usize = 1024;

/// Most WebSocket clients at once.
pub const MAX_CLIENTS: usize = 1000;

/// How often the tailer checks for commits.
const POLL: Duration = Duration::from_millis(20);

/// Observations read per query while catching up.
const CHUNK: i64 = 2000;

/// Starts the tailer thread. It stops when `stop` is set.
pub fn spawn_tailer(
    db: PathBuf,
    decode: DecodeOptions,
    tx: broadcast::Sender<Arc<str>>,
    generation: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("meshlens-live".into())
        .spawn(move || {
            let reader = match Reader::open(&db) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("live feed disabled: {e}");
                    return;
                }
            };
            let c = reader.conn();
            // It reads only the newest rows, which the WAL and the OS cache hold anyway.
            let _ = c.pragma_update(None, "cache_size", -crate::db::SCAN_CACHE_KIB);
            let mut watermark: i64 = c
                .query_row("SELECT coalesce(max(id), 0) FROM observations", [], |r| {
                    r.get(0)
                })
                .unwrap_or(0);
            let mut version: i64 = -1;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(POLL);
                let v: i64 = c
                    .query_row("PRAGMA data_version", [], |r| r.get(0))
                    .unwrap_or(version);
                if v == version {
                    continue;
                }
                version = v;
                generation.fetch_add(1, Ordering::Relaxed);
                if tx.receiver_count() == 0 {
                    // Nobody is watching: skip decoding and serializing what nobody would
                    // receive (at 20,000 observations/s that is most of this thread's work).
                    if let Ok(max) =
                        c.query_row("SELECT coalesce(max(id), 0) FROM observations", [], |r| {
                            r.get::<_, i64>(0)
                        })
                    {
                        watermark = watermark.max(max);
                    }
                    continue;
                }
                loop {
                    match new_observations(c, watermark, &decode) {
                        Ok(rows) => {
                            let n = rows.len() as i64;
                            for (id, msg) in rows {
                                watermark = watermark.max(id);
                                // No receivers is fine: nobody is watching.
                                let _ = tx.send(msg);
                            }
                            if n < CHUNK {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!("live feed query failed: {e}");
                            break;
                        }
                    }
                }
            }
        })
}

fn new_observations(
    c: &store::rusqlite::Connection,
    after: i64,
    decode: &DecodeOptions,
) -> store::rusqlite::Result<Vec<(i64, Arc<str>)>> {
    let mut stmt = c.prepare_cached(
        "SELECT o.id, o.received_at, o.snr, o.rssi, o.head, ob.id, ob.name, ob.iata,
                t.id, t.hash, t.raw, t.observation_count, t.channel
         FROM observations o JOIN transmissions t ON t.id = o.transmission_id
         JOIN observers ob ON ob.idx = o.observer_idx
         WHERE o.id > ?1 ORDER BY o.id LIMIT ?2",
    )?;
    let rows = stmt.query_map(store::rusqlite::params![after, CHUNK], |r| {
        let head: Vec<u8> = r.get(4)?;
        let raw: Vec<u8> = r.get(10)?;
        let frame = meshcore::Packet::decode(&raw)
            .map(|p| [head.as_slice(), p.payload_bytes()].concat())
            .unwrap_or(raw);
        let decoded = crate::decode_for_api(&frame, decode);
        let id: i64 = r.get(0)?;
        let msg = json!({"type": "packet", "data": {
            "id": id,
            "transmission_id": r.get::<_, i64>(8)?,
            "hash": r.get::<_, String>(9)?,
            "timestamp": iso(r.get(1)?),
            "snr": r.get::<_, Option<f64>>(2)?,
            "rssi": r.get::<_, Option<f64>>(3)?,
            "observer": r.get::<_, String>(5)?,
            "observer_name": r.get::<_, Option<String>>(6)?,
            "iata": r.get::<_, Option<String>>(7)?,
            "observation_count": r.get::<_, i64>(11)?,
            "channel": r.get::<_, Option<String>>(12)?,
            "raw_hex": hex::encode(&frame),
            "path": decoded.get("path").cloned().unwrap_or(Value::Array(Vec::new())),
            "hash_size": decoded.get("hash_size").cloned().unwrap_or(Value::Null),
            "decoded": decoded,
        }});
        Ok((id, Arc::<str>::from(msg.to_string())))
    })?;
    rows.collect()
}

/// Whether a browser at `origin` may open the socket: same host as the request, or listed.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        // Not a browser (curl, scripts): no cross-site risk.
        return true;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// `GET /ws`.
pub async fn ws(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &st.allowed_origins) {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"error": "origin not allowed"})),
        )
            .into_response();
    }
    if st.ws_clients.load(Ordering::Relaxed) >= MAX_CLIENTS {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "too many live clients"})),
        )
            .into_response();
    }
    let rx = st.live.subscribe();
    upgrade
        .max_message_size(4096)
        .on_upgrade(move |socket| client(socket, rx, st))
}

async fn client(mut socket: WebSocket, mut rx: broadcast::Receiver<Arc<str>>, st: Arc<AppState>) {
    st.ws_clients.fetch_add(1, Ordering::Relaxed);
    let every = Duration::from_secs(30);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Ok(text) => {
                    if socket.send(Message::Text(text.as_ref().into())).await.is_err() {
                        break;
                    }
                    st.live_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let notice = json!({"type": "lagged", "missed": missed}).to_string();
                    if socket.send(Message::Text(notice.into())).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                // The feed is one-way; client messages are read (and discarded) only to
                // notice closes.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    st.ws_clients.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let mut h = HeaderMap::new();
        assert!(origin_allowed(&h, &[]));
        h.insert(header::HOST, "meshlens.local:3000".parse().unwrap());
        h.insert(
            header::ORIGIN,
            "http://meshlens.local:3000".parse().unwrap(),
        );
        assert!(origin_allowed(&h, &[]));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!origin_allowed(&h, &[]));
        assert!(origin_allowed(&h, &["https://evil.example".into()]));
    }
}
