//! The capability cycle of the reader (`multibyte-capability.md` §7.3): load the window's
//! observations read-only, infer capability ([`analytics::capability`]), swap a new index in
//! atomically, and publish the snapshot the writer persists. Before the first cycle the index
//! holds what was persisted, so a restart serves the last-known capability at once.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use analytics::capability::{
    Capability, CapabilityReport, Inference, Node, Observation, Persisted, Source, Status, infer,
};
use serde_json::{Value, json};
use store::Reader;
use store::rusqlite::{self, Connection};
use store::time::iso;

/// The served capability: one report and its O(1) index, replaced wholesale each cycle.
#[derive(Default)]
pub struct CapIndex {
    /// The report.
    pub report: CapabilityReport,
    by_key: HashMap<String, usize>,
    /// Observer index → IATA, for region filters.
    pub observer_iata: HashMap<u32, String>,
    /// Unix ms of the computation (0 before the first cycle).
    pub computed_at: i64,
    /// Whether this came from a full cycle (false: persisted values only).
    pub complete: bool,
    /// How long the cycle took.
    pub took: Duration,
    /// Which swap produced this index (1, 2, ...; 0 before the first): a key for caches of
    /// answers derived from it.
    pub serial: u64,
}

impl CapIndex {
    /// The capability of one node.
    pub fn get(&self, public_key: &str) -> Option<&Capability> {
        self.by_key
            .get(public_key)
            .and_then(|&i| self.report.nodes.get(i))
    }
}

/// Settings of the cycle.
#[derive(Debug, Clone)]
pub struct CycleConfig {
    /// Evidence window.
    pub window: Duration,
    /// Period.
    pub interval: Duration,
    /// Where to publish the snapshot (`<data-dir>`), if anywhere.
    pub publish_to: Option<PathBuf>,
}

/// Shared, swappable capability state.
#[derive(Default)]
pub struct CapState {
    current: RwLock<Arc<CapIndex>>,
    swaps: std::sync::atomic::AtomicU64,
}

impl CapState {
    /// The current index (a cheap clone of an `Arc`; readers never wait on a computation).
    pub fn current(&self) -> Arc<CapIndex> {
        self.current.read().map(|g| g.clone()).unwrap_or_default()
    }

    fn swap(&self, mut idx: CapIndex) {
        idx.serial = self
            .swaps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if let Ok(mut g) = self.current.write() {
            *g = Arc::new(idx);
        }
    }
}

fn persisted_and_nodes(
    c: &Connection,
) -> rusqlite::Result<(Vec<Node>, HashMap<String, Persisted>)> {
    let mut stmt = c.prepare(
        "SELECT public_key, name, role, multibyte_sup, multibyte_evidence, multibyte_max_hash_size,
                multibyte_upgraded_at FROM nodes",
    )?;
    let mut nodes = Vec::new();
    let mut persisted = HashMap::new();
    let rows = stmt.query_map([], |r| {
        Ok((
            Node {
                public_key: r.get(0)?,
                name: r.get(1)?,
                role: r.get(2)?,
            },
            r.get::<_, i64>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<i64>>(5)?,
            r.get::<_, Option<i64>>(6)?,
        ))
    })?;
    for row in rows {
        let (node, sup, evidence, max, upgraded) = row?;
        let status = Status::from_int(sup);
        if status != Status::Unknown {
            persisted.insert(
                node.public_key.clone(),
                Persisted {
                    status,
                    evidence: evidence.unwrap_or_default(),
                    max_hash_size: max
                        .and_then(|m| u8::try_from(m).ok())
                        .filter(|m| (2..=3).contains(m)),
                    upgraded_at: upgraded,
                },
            );
        }
        nodes.push(node);
    }
    Ok((nodes, persisted))
}

fn observer_iata(c: &Connection) -> rusqlite::Result<HashMap<u32, String>> {
    let mut stmt = c.prepare("SELECT idx, iata FROM observers WHERE iata IS NOT NULL")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, i64>(0)? as u32, r.get::<_, String>(1)?))
    })?;
    rows.collect()
}

/// Persisted values only: what is served before the first cycle.
pub fn cold_index(c: &Connection) -> rusqlite::Result<CapIndex> {
    let (nodes, persisted) = persisted_and_nodes(c)?;
    let report = infer(&nodes, &[], &persisted);
    Ok(CapIndex {
        serial: 0,
        by_key: report.index(),
        report,
        observer_iata: observer_iata(c)?,
        computed_at: 0,
        complete: false,
        took: Duration::ZERO,
    })
}

/// One full cycle over the window ending now.
pub fn compute(c: &Connection, window: Duration) -> rusqlite::Result<CapIndex> {
    let start = Instant::now();
    let now = crate::now_ms();
    let since = now - window.as_millis() as i64;
    let (nodes, persisted) = persisted_and_nodes(c)?;
    let known: HashSet<&str> = nodes.iter().map(|n| n.public_key.as_str()).collect();
    // Adverts whose signature failed are recorded by the writer; they are never evidence.
    let mut forged = HashSet::new();
    {
        // Only those heard in the window: what is held here is bounded by traffic, not by the
        // age of the database.
        let mut stmt = c.prepare(
            "SELECT hash FROM rejected_packets WHERE reason = 'invalid_signature' AND hash IN
               (SELECT hash FROM transmissions WHERE payload_type = 4 AND last_seen >= ?1)",
        )?;
        for h in stmt.query_map([since], |r| r.get::<_, String>(0))? {
            forged.insert(h?);
        }
    }
    let mut stmt = c.prepare(
        "SELECT o.received_at, o.observer_idx, o.head, t.hash, t.payload_type, t.from_pubkey
         FROM observations o INDEXED BY observations_received
         JOIN transmissions t ON t.id = o.transmission_id
         WHERE o.received_at >= ?1",
    )?;
    // Streamed straight from the cursor: memory does not grow with the window.
    let mut inf = Inference::new(&nodes);
    let mut rows = stmt.query([since])?;
    while let Some(r) = rows.next()? {
        let hash = r.get_ref(3)?.as_str().unwrap_or("");
        let advert_from = if r.get::<_, i64>(4)? == 4 {
            r.get_ref(5)?
                .as_str_or_null()
                .ok()
                .flatten()
                .filter(|k| known.contains(k) && !forged.contains(hash))
        } else {
            None
        };
        inf.add(&Observation {
            received_at: r.get(0)?,
            observer: r.get::<_, i64>(1)? as u32,
            head: r.get_ref(2)?.as_blob().unwrap_or(&[]),
            hash: u64::from_str_radix(hash, 16).unwrap_or(0),
            verified_advert_from: advert_from,
        });
    }
    drop(rows);
    let report = inf.finish(&persisted);
    Ok(CapIndex {
        serial: 0,
        by_key: report.index(),
        report,
        observer_iata: observer_iata(c)?,
        computed_at: now,
        complete: true,
        took: start.elapsed(),
    })
}

/// The snapshot entries of a report: confirmed and suspected nodes only.
pub fn snapshot_entries(report: &CapabilityReport) -> Vec<handoff::Entry> {
    report
        .nodes
        .iter()
        .filter(|c| c.status != Status::Unknown)
        .map(|c| handoff::Entry {
            public_key: c.public_key.clone(),
            status: if c.status == Status::Confirmed {
                handoff::Status::Confirmed
            } else {
                handoff::Status::Suspected
            },
            evidence: c.evidence.to_owned(),
            max_hash_size: c.max_hash_size,
            upgraded_at: c.upgraded_at.map(iso),
        })
        .collect()
}

/// Loads the persisted capability now (before serving), then runs a cycle immediately and
/// every `interval` on a thread of its own, until `stop` is set.
pub fn start(
    db: PathBuf,
    cfg: CycleConfig,
    state: Arc<CapState>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let reader = Reader::open(&db).map_err(|e| e.to_string())?;
    // The cycle streams the window once a minute: a page cache would hold nothing it reads
    // twice, so keep it small (bounded memory).
    let _ = reader
        .conn()
        .pragma_update(None, "cache_size", -crate::db::SCAN_CACHE_KIB);
    state.swap(cold_index(reader.conn()).map_err(|e| e.to_string())?);
    let publisher = cfg.publish_to.as_deref().map(handoff::Publisher::new);
    std::thread::Builder::new()
        .name("meshlens-capability".into())
        .spawn(move || {
            let mut next = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if Instant::now() >= next {
                    next = Instant::now() + cfg.interval;
                    match compute(reader.conn(), cfg.window) {
                        Ok(idx) => {
                            tracing::debug!(
                                "capability cycle: {} nodes in {:?}",
                                idx.report.nodes.len(),
                                idx.took
                            );
                            let entries = snapshot_entries(&idx.report);
                            state.swap(idx);
                            if let Some(p) = &publisher
                                && let Err(e) = p.publish(entries)
                            {
                                tracing::warn!("capability snapshot not published: {e}");
                            }
                        }
                        Err(e) => tracing::warn!("capability cycle failed: {e}"),
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .map_err(|e| e.to_string())
}

fn counter(c: &analytics::capability::Counter) -> Value {
    if c.count == 0 {
        return json!({"count": 0, "first": null, "last": null});
    }
    json!({"count": c.count, "first": iso(c.first), "last": iso(c.last)})
}

/// The three compatible fields for node rows.
pub fn row_fields(c: Option<&Capability>) -> (&'static str, &'static str, u8) {
    match c {
        Some(c) => (c.status.as_str(), c.evidence, c.max_hash_size),
        None => ("unknown", "", 1),
    }
}

/// The `multi_byte` object of a node's detail.
pub fn detail(c: Option<&Capability>) -> Value {
    let Some(c) = c else {
        return json!({"status": "unknown", "evidence": "", "max_hash_size": 1, "confidence": "",
            "source": "computed", "advert": counter(&Default::default()),
            "path": {"unique": counter(&Default::default()), "ambiguous": counter(&Default::default())},
            "samples": [], "upgraded_at": null, "legacy_suspect": false});
    };
    json!({
        "status": c.status.as_str(),
        "evidence": c.evidence,
        "max_hash_size": c.max_hash_size,
        "confidence": c.confidence,
        "source": if c.source == Source::Persisted { "persisted" } else { "computed" },
        "advert": counter(&c.advert_mb),
        "adverts_any_size": counter(&c.adverts),
        "latest_advert_hash_size": c.latest_advert_size,
        "path": {"unique": counter(&c.path_unique), "ambiguous": counter(&c.path_ambiguous)},
        "samples": c.samples.iter().map(|h| format!("{h:016x}")).collect::<Vec<_>>(),
        "upgraded_at": c.upgraded_at.map(iso),
        "legacy_suspect": c.legacy_suspect,
    })
}
