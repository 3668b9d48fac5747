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
    // Noise floor: the mean of the last 15 minutes' buckets against the median of the 5-minute
    // means of the day before them.
    let recent_from = now - 15 * 60_000;
    let mut floors: std::collections::HashMap<String, (Vec<f64>, f64, i64)> = Default::default();
    let mut stmt = c.prepare_cached(
        "SELECT ob.id, m.bucket, m.noise_floor_sum, m.noise_floor_n
         FROM observer_metrics m JOIN observers ob ON ob.idx = m.observer_idx
         WHERE m.bucket >= ?1 AND m.noise_floor_n > 0",
    )?;
    let rows = stmt.query_map([since], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, f64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (id, bucket, sum, n) = row?;
        let e = floors.entry(id).or_default();
        if bucket >= recent_from {
            e.1 += sum;
            e.2 += n;
        } else {
            e.0.push(sum / n as f64);
        }
    }
    let noise = |id: &str| -> Option<(f64, f64)> {
        let (usual, sum, n) = floors.get(id)?;
        if *n == 0 || usual.len() < 3 {
            return None;
        }
        let mut usual = usual.clone();
        usual.sort_by(f64::total_cmp);
        Some((sum / *n as f64, usual[usual.len() / 2]))
    };
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
        let noise_floor = noise(&id);
        observers.push(ObserverSeen {
            id,
            name,
            last_seen,
            clock_offset_sec,
            noise_floor,
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
