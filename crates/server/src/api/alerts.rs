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
    let mut observers = Vec::new();
    let mut stmt = c.prepare_cached("SELECT id, name, last_seen FROM observers")?;
    let rows = stmt.query_map([], |r| {
        Ok(ObserverSeen {
            id: r.get(0)?,
            name: r.get(1)?,
            last_seen: r.get(2)?,
        })
    })?;
    for o in rows {
        observers.push(o?);
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
