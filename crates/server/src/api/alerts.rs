//! `/api/alerts` and the alerting's view of the mesh: the [`alerts::Source`] that reads
//! nodes, observers and the newest observation through its own read-only connection (not a
//! pooled one: evaluations must not take an API connection, nor wait behind a storm).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use std::collections::HashMap;

use alerts::{BridgeSeen, Inputs, NodeSeen, ObserverSeen};
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;

/// Reads the inputs of the rules from the database, read-only.
pub struct DbSource {
    path: PathBuf,
    reader: Mutex<Option<store::Reader>>,
    topology: Option<Arc<crate::capability::CapState>>,
}

impl DbSource {
    /// A source over the database at `path` (opened at the first evaluation).
    pub fn new(path: PathBuf) -> DbSource {
        DbSource {
            path,
            reader: Mutex::new(None),
            topology: None,
        }
    }

    /// Takes bridge nodes from the capability cycle's neighbor graph.
    pub fn with_topology(mut self, state: Arc<crate::capability::CapState>) -> DbSource {
        self.topology = Some(state);
        self
    }
}

/// Links a bridge must rest on: attributed at least this often, with at least this mean
/// confidence (one doubtful attribution does not make a node hold the mesh together).
const BRIDGE_MIN_COUNT: u32 = 2;
const BRIDGE_MIN_CONFIDENCE: f64 = 0.7;

/// Whether a neighbor-graph edge is confident enough for a bridge to rest on.
pub fn bridge_edge(e: &analytics::hops::EdgeStats) -> bool {
    e.count >= BRIDGE_MIN_COUNT && e.confidence() >= BRIDGE_MIN_CONFIDENCE
}

/// The bridge nodes of the current neighbor graph, with when each was last heard or seen
/// relaying (`nodes`: for the last advert).
pub fn bridges_of(topo: &crate::topology::Topology, nodes: &[NodeSeen]) -> Vec<BridgeSeen> {
    use analytics::hops::short_id;
    let mut key_of: HashMap<u64, usize> = HashMap::new();
    for (i, k) in topo.keys.iter().enumerate() {
        let mut key = [0u8; 32];
        if hex::decode_to_slice(k, &mut key).is_ok() {
            key_of.insert(short_id(&key), i);
        }
    }
    let mut last_relay: HashMap<u64, i64> = HashMap::new();
    let edges: Vec<(u64, u64)> = topo
        .graph
        .edges()
        .filter(|(_, e)| bridge_edge(e))
        .map(|(&(a, b), e)| {
            for x in [a, b] {
                let t = last_relay.entry(x).or_insert(e.last_seen);
                *t = (*t).max(e.last_seen);
            }
            (a, b)
        })
        .collect();
    let heard: HashMap<&str, i64> = nodes
        .iter()
        .map(|n| (n.public_key.as_str(), n.last_seen))
        .collect();
    analytics::bridges::bridges(edges)
        .into_iter()
        .filter_map(|b| {
            let i = *key_of.get(&b.node)?;
            let key = topo.keys.get(i)?;
            let last_active = last_relay
                .get(&b.node)
                .copied()
                .unwrap_or(0)
                .max(heard.get(key.as_str()).copied().unwrap_or(0));
            Some(BridgeSeen {
                public_key: key.clone(),
                name: topo.names.get(i).cloned().flatten(),
                cut_off: b.cut_off,
                last_active,
            })
        })
        .collect()
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
        bridges: Vec::new(),
    })
}

impl alerts::Source for DbSource {
    fn inputs(&self, now_ms: i64) -> Result<Inputs, String> {
        let mut guard = self.reader.lock().map_err(|_| "reader lock poisoned")?;
        if guard.is_none() {
            *guard = Some(store::Reader::open(&self.path).map_err(|e| e.to_string())?);
        }
        let reader = guard.as_ref().ok_or("no reader")?;
        let mut out = read(reader.conn(), now_ms).map_err(|e| e.to_string());
        if let (Ok(inputs), Some(state)) = (&mut out, &self.topology) {
            inputs.bridges = bridges_of(&state.current().topology, &inputs.nodes);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use analytics::hops::{Graph, short_id};

    #[test]
    fn bridge_nodes_come_from_confident_links_with_their_last_activity() {
        // Confident links a–b, b–c, b–d make b the centre of a star; the doubtful c–a link
        // (confidence 0.3) and the single c–d attribution do not count, so b alone holds the
        // other three together: without it, two of them lose the third.
        let keys: Vec<String> = ["aa", "bb", "cc", "dd"]
            .iter()
            .map(|k| k.repeat(32))
            .collect();
        let id = |i: usize| {
            let mut k = [0u8; 32];
            hex::decode_to_slice(&keys[i], &mut k).unwrap();
            short_id(&k)
        };
        let mut graph = Graph::new();
        for _ in 0..3 {
            graph.add(id(0), id(1), 0.95, 1_000);
            graph.add(id(1), id(2), 0.95, 5_000);
            graph.add(id(2), id(0), 0.3, 5_000);
        }
        graph.add(id(2), id(3), 0.95, 9_000);
        graph.add(id(1), id(3), 0.95, 9_000);
        graph.add(id(1), id(3), 0.95, 9_000);
        let topo = crate::topology::Topology {
            keys: keys.clone(),
            names: vec![None, Some("<b>B</b>".into()), None, None],
            graph,
            ..Default::default()
        };
        let nodes = vec![NodeSeen {
            public_key: keys[1].clone(),
            name: None,
            role: "repeater".into(),
            first_seen: 0,
            last_seen: 20_000,
            multibyte_by_advert: false,
            last_advert_hash_size: None,
        }];
        let b = bridges_of(&topo, &nodes);
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(b[0].public_key, keys[1]);
        assert_eq!(b[0].name.as_deref(), Some("<b>B</b>"));
        assert_eq!(b[0].cut_off, 2);
        assert_eq!(
            b[0].last_active, 20_000,
            "its own advert is newer than its links"
        );
    }
}
