//! `/api/alerts` and the alerting's view of the mesh: the [`alerts::Source`] that reads
//! nodes, observers and the newest observation through its own read-only connection (not a
//! pooled one: evaluations must not take an API connection, nor wait behind a storm).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use alerts::{Inputs, NodeSeen, ObserverSeen};
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;

/// Reads the inputs of the rules from the database, read-only.
pub struct DbSource {
    path: PathBuf,
    reader: Mutex<Option<store::Reader>>,
}

impl DbSource {
    /// A source over the database at `path` (opened at the first evaluation).
    pub fn new(path: PathBuf) -> DbSource {
        DbSource {
            path,
            reader: Mutex::new(None),
        }
    }
}

fn read(c: &store::rusqlite::Connection, now: i64) -> store::rusqlite::Result<Inputs> {
    let mut nodes = Vec::new();
    let mut stmt = c.prepare_cached(
        "SELECT public_key, name, role, first_seen, last_seen,
                multibyte_sup = 2 AND multibyte_evidence = 'advert', last_advert_path_len
         FROM nodes
         UNION ALL
         SELECT public_key, name, role, first_seen, last_seen,
                multibyte_sup = 2 AND multibyte_evidence = 'advert', last_advert_path_len
         FROM inactive_nodes",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(NodeSeen {
            public_key: r.get(0)?,
            name: r.get(1)?,
            role: r.get(2)?,
            first_seen: r.get(3)?,
            last_seen: r.get(4)?,
            multibyte_by_advert: r.get::<_, Option<bool>>(5)?.unwrap_or(false),
            // The path-length byte's top two bits are the hash size minus one (0b11 is
            // reserved, never stored).
            last_advert_hash_size: r
                .get::<_, Option<i64>>(6)?
                .and_then(|b| u8::try_from((b >> 6) & 3).ok())
                .filter(|s| *s < 3)
                .map(|s| s + 1),
        })
    })?;
    for n in rows {
        nodes.push(n?);
    }
    // Each observer's clock offset over the last day, as `/api/observers/clock-skew` has it.
    let mut buckets: std::collections::HashMap<String, Vec<(i64, i64)>> = Default::default();
    let mut stmt = c.prepare_cached(
        "SELECT ob.id, m.clock_skew_ms, m.clock_samples
         FROM observer_metrics m JOIN observers ob ON ob.idx = m.observer_idx
         WHERE m.bucket >= ?1 AND m.clock_skew_ms IS NOT NULL",
    )?;
    let since = now - super::clock_skew::OBSERVER_WINDOW_MS;
    let rows = stmt.query_map([since], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (id, ms, n) = row?;
        buckets.entry(id).or_default().push((ms, n));
    }
    let mut observers = Vec::new();
    let mut stmt = c.prepare_cached("SELECT id, name, last_seen FROM observers")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for o in rows {
        let (id, name, last_seen) = o?;
        let clock_offset_sec = buckets
            .get(&id)
            .and_then(|b| analytics::clock::observer_offset(b))
            .map(|o| o.offset_sec);
        observers.push(ObserverSeen {
            id,
            name,
            last_seen,
            clock_offset_sec,
        });
    }
    // The newest row by id is the newest committed: no scan of the table.
    let last_observation_at = match c.query_row(
        "SELECT received_at FROM observations ORDER BY id DESC LIMIT 1",
        [],
        |r| r.get(0),
    ) {
        Ok(t) => Some(t),
        Err(store::rusqlite::Error::QueryReturnedNoRows) => None,
        Err(e) => return Err(e),
    };
    Ok(Inputs {
        now,
        nodes,
        observers,
        last_observation_at,
    })
}

impl alerts::Source for DbSource {
    fn inputs(&self, now_ms: i64) -> Result<Inputs, String> {
        let mut guard = self.reader.lock().map_err(|_| "reader lock poisoned")?;
        if guard.is_none() {
            *guard = Some(store::Reader::open(&self.path).map_err(|e| e.to_string())?);
        }
        let reader = guard.as_ref().ok_or("no reader")?;
        let out = read(reader.conn(), now_ms).map_err(|e| e.to_string());
        if out.is_err() {
            // Reopen next time: the file may have been replaced.
            *guard = None;
        }
        out
    }
}

/// `GET /api/alerts`: `{enabled, active, history, rules, receivers, …}`: the alerts firing or
/// settling, the notifications sent (newest first), and the configuration, read-only.
pub async fn list(State(st): State<Arc<AppState>>) -> Json<Value> {
    match &st.alerting {
        Some(a) => {
            let mut v = a.snapshot();
            v["enabled"] = true.into();
            Json(v)
        }
        None => Json(json!({
            "enabled": false, "active": [], "history": [], "rules": {}, "receivers": [],
        })),
    }
}
