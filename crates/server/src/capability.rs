//! The capability cycle of the reader (`multibyte-capability.md` §7.3): load the window's
//! observations read-only, infer capability ([`analytics::capability`]), swap a new index in
//! atomically, and publish the snapshot the writer persists. Before the first cycle the index
//! holds what was persisted, so a restart serves the last-known capability at once.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use analytics::capability::{
    Capability, CapabilityReport, Inference, Node, Observation, Persisted, ResolvedHop, Source,
    Status, infer,
};
use analytics::hops::{self, Graph};
use serde_json::{Value, json};
use store::Reader;

use crate::topology::{self, Group, Grouper, NodeRow, Pending, Topology};
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
    /// The hop resolver's directory and the neighbor graph of this cycle.
    pub topology: Arc<Topology>,
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

/// The known nodes (capability's view and the resolver's rows, index for index) and what was
/// persisted of their capability.
type NodesLoaded = (Vec<Node>, Vec<NodeRow>, HashMap<String, Persisted>);

fn persisted_and_nodes(c: &Connection) -> rusqlite::Result<NodesLoaded> {
    let mut stmt = c.prepare(
        "SELECT public_key, name, role, multibyte_sup, multibyte_evidence, multibyte_max_hash_size,
                multibyte_upgraded_at, lat, lon FROM nodes",
    )?;
    let mut nodes = Vec::new();
    let mut node_rows = Vec::new();
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
            r.get::<_, Option<f64>>(7)?,
            r.get::<_, Option<f64>>(8)?,
        ))
    })?;
    for row in rows {
        let (node, sup, evidence, max, upgraded, lat, lon) = row?;
        node_rows.push(NodeRow {
            public_key: node.public_key.clone(),
            name: node.name.clone(),
            role: node.role.clone(),
            lat,
            lon,
        });
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
    Ok((nodes, node_rows, persisted))
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
    let (nodes, rows, persisted) = persisted_and_nodes(c)?;
    let report = infer(&nodes, &[], &persisted);
    let (dir, _) = topology::directory(&rows, hops::DEFAULT_LINK_SCALE_KM);
    let graph = persisted_graph(c);
    let scale = scale_from(&graph, &dir);
    let dir = dir.with_link_scale_km(scale);
    Ok(CapIndex {
        serial: 0,
        by_key: report.index(),
        report,
        observer_iata: observer_iata(c)?,
        computed_at: 0,
        complete: false,
        took: Duration::ZERO,
        topology: Arc::new(new_topology(c, dir, &rows, graph)?),
    })
}

/// Every observer's index and id (`observers`): edges name observers by index in memory and
/// by id on disk and in answers.
fn observer_ids(c: &Connection) -> rusqlite::Result<HashMap<u32, String>> {
    let mut out = HashMap::new();
    let mut stmt = c.prepare("SELECT idx, id FROM observers")?;
    let mut q = stmt.query([])?;
    while let Some(r) = q.next()? {
        let idx = r.get::<_, i64>(0)?;
        if let (Ok(idx), Ok(id)) = (u32::try_from(idx), r.get_ref(1)?.as_str()) {
            out.insert(idx, id.to_owned());
        }
    }
    Ok(out)
}

/// The neighbor graph the writer persisted (empty when there is none, or when the database
/// predates the table), with each edge's SNR and observers (ids no longer in `observers`,
/// retired since, are left out).
pub fn persisted_graph(c: &Connection) -> Graph {
    let mut graph = Graph::new();
    let by_id: HashMap<String, u32> = observer_ids(c)
        .unwrap_or_default()
        .into_iter()
        .map(|(idx, id)| (id, idx))
        .collect();
    let Ok(mut stmt) = c.prepare(
        "SELECT a, b, count, weight, last_seen, snr_sum, snr_count, observers, observer_count
         FROM neighbor_edges",
    ) else {
        return graph;
    };
    let Ok(mut rows) = stmt.query([]) else {
        return graph;
    };
    let short = |k: &str| {
        let mut key = [0u8; 32];
        hex::decode_to_slice(k, &mut key)
            .ok()
            .map(|()| hops::short_id(&key))
    };
    while let Ok(Some(r)) = rows.next() {
        let (Ok(a), Ok(b)) = (r.get_ref(0), r.get_ref(1)) else {
            continue;
        };
        let (Some(a), Some(b)) = (
            a.as_str().ok().and_then(short),
            b.as_str().ok().and_then(short),
        ) else {
            continue;
        };
        graph.insert(
            a,
            b,
            hops::EdgeStats {
                count: r
                    .get::<_, i64>(2)
                    .unwrap_or(0)
                    .clamp(0, i64::from(u32::MAX)) as u32,
                weight: r.get::<_, f64>(3).unwrap_or(0.0),
                last_seen: r.get::<_, i64>(4).unwrap_or(0),
                snr_sum: r
                    .get::<_, f64>(5)
                    .ok()
                    .filter(|s| s.is_finite())
                    .unwrap_or(0.0),
                snr_count: r
                    .get::<_, i64>(6)
                    .unwrap_or(0)
                    .clamp(0, i64::from(u32::MAX)) as u32,
                observers: hops::EdgeObservers::from_parts(
                    r.get_ref(7)
                        .ok()
                        .and_then(|v| v.as_str().ok())
                        .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|id| by_id.get(id).copied()),
                    r.get::<_, i64>(8)
                        .unwrap_or(0)
                        .clamp(0, i64::from(u32::MAX)) as u32,
                ),
            },
        );
    }
    graph
}

/// The graph as the handoff file carries it (full keys from the directory).
pub fn graph_edges(topo: &Topology) -> Vec<handoff::GraphEdge> {
    let keys: HashMap<u64, &str> = topo
        .keys
        .iter()
        .filter_map(|k| {
            let mut key = [0u8; 32];
            hex::decode_to_slice(k, &mut key).ok()?;
            Some((hops::short_id(&key), k.as_str()))
        })
        .collect();
    let mut edges: Vec<handoff::GraphEdge> = topo
        .graph
        .edges()
        .filter_map(|((a, b), e)| {
            Some(handoff::GraphEdge {
                a: (*keys.get(a)?).to_owned(),
                b: (*keys.get(b)?).to_owned(),
                count: e.count,
                weight: e.weight.min(f64::from(e.count)),
                last_seen: e.last_seen,
                snr_sum: if e.snr_sum.is_finite() {
                    e.snr_sum
                } else {
                    0.0
                },
                snr_count: if e.snr_sum.is_finite() {
                    e.snr_count
                } else {
                    0
                },
                observers: e
                    .observers
                    .ids()
                    .iter()
                    .filter_map(|o| topo.observer_ids.get(o).cloned())
                    .collect(),
                observer_count: e.observers.distinct(),
            })
        })
        .collect();
    edges.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
    edges
}

fn new_topology(
    c: &Connection,
    dir: analytics::hops::Directory,
    rows: &[NodeRow],
    graph: Graph,
) -> rusqlite::Result<Topology> {
    let mut keys = Vec::with_capacity(dir.len());
    let mut names = Vec::with_capacity(dir.len());
    let mut roles = Vec::with_capacity(dir.len());
    let by_hex: HashMap<&str, &NodeRow> = rows.iter().map(|r| (r.public_key.as_str(), r)).collect();
    for id in 0..dir.len() as u32 {
        let key = dir
            .node(id)
            .map(|n| hex::encode(n.public_key))
            .unwrap_or_default();
        let row = by_hex.get(key.as_str());
        names.push(row.and_then(|r| r.name.clone()));
        roles.push(row.map(|r| r.role.clone()).unwrap_or_default());
        keys.push(key);
    }
    let observer_ids = observer_ids(c)?;
    let observer_node = observer_ids
        .iter()
        .filter_map(|(idx, id)| Some((*idx, dir.id_of_hex(&id.to_ascii_lowercase())?)))
        .collect();
    Ok(Topology {
        dir,
        keys,
        names,
        roles,
        graph,
        observer_node,
        observer_ids,
        stats: Default::default(),
    })
}

/// One full cycle over the window ending now, resolving hops without a prior graph.
pub fn compute(c: &Connection, window: Duration) -> rusqlite::Result<CapIndex> {
    compute_with(c, window, &Graph::new())
}

/// The link scale from the previous graph's confident links between located nodes.
fn scale_from(prev: &Graph, dir: &analytics::hops::Directory) -> f64 {
    let located: HashMap<u64, analytics::hops::LatLon> = (0..dir.len() as u32)
        .filter_map(|i| dir.node(i))
        .filter_map(|n| n.pos.map(|p| (hops::short_id(&n.public_key), p)))
        .collect();
    let distances: Vec<f64> = prev
        .edges()
        .filter(|(_, e)| e.count >= 2 && e.confidence() >= 0.9)
        .filter_map(|((a, b), _)| Some(located.get(a)?.distance_km(*located.get(b)?)))
        .collect();
    topology::link_scale(distances)
}

/// One full cycle over the window ending now. Hops are resolved with `prev`, the previous
/// cycle's neighbor graph; the answer carries this cycle's graph.
pub fn compute_with(c: &Connection, window: Duration, prev: &Graph) -> rusqlite::Result<CapIndex> {
    compute_after(c, window, prev, None)
}

/// One full cycle over the window ending now, after the cycle that produced `prev`: its
/// neighbor graph resolves this cycle's hops, its multi-byte hops (when it had enough) say
/// how many relays are unknown nodes.
pub fn compute_after(
    c: &Connection,
    window: Duration,
    prev: &Graph,
    prev_stats: Option<&topology::CycleStats>,
) -> rusqlite::Result<CapIndex> {
    let start = Instant::now();
    let now = crate::now_ms();
    let since = now - window.as_millis() as i64;
    let (nodes, rows_loaded, persisted) = persisted_and_nodes(c)?;
    let (dir, dir_to_row) = topology::directory(&rows_loaded, hops::DEFAULT_LINK_SCALE_KM);
    let scale = scale_from(prev, &dir);
    let unknown_share = prev_stats.map_or(
        hops::DEFAULT_UNKNOWN_SHARE,
        topology::CycleStats::unknown_share,
    );
    let dir = dir
        .with_link_scale_km(scale)
        .with_unknown_share(unknown_share);
    let mut topo = new_topology(c, dir, &rows_loaded, Graph::new())?;
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
        "SELECT o.received_at, o.observer_idx, o.head, t.hash, t.payload_type, t.from_pubkey,
                o.transmission_id,
                CASE WHEN t.payload_type IN (0, 1, 2, 7, 8) THEN t.raw END,
                o.snr
         FROM observations o INDEXED BY observations_received
         JOIN transmissions t ON t.id = o.transmission_id
         WHERE o.received_at >= ?1",
    )?;
    // Streamed straight from the cursor and grouped by packet for a few seconds: memory does
    // not grow with the window.
    let mut inf = Inference::new(&nodes);
    let mut grouper = Grouper::new();
    let mut graph = Graph::new();
    let flush = |mut g: Group, inf: &mut Inference<'_>, topo: &mut Topology, graph: &mut Graph| {
        // A forged advert names no origin.
        if g.advert_from
            .as_deref()
            .is_some_and(|k| !known.contains(k) || forged.contains(g.hash.as_str()))
        {
            g.advert_from = None;
        }
        let (ends, copies, solved) =
            topology::resolve_group(&topo.dir, prev, &topo.observer_node, &g);
        let hash = u64::from_str_radix(&g.hash, 16).unwrap_or(0);
        let advert_from = g.advert_from.as_deref();
        topo.stats.packets += 1;
        for (copy, hs) in copies.iter().zip(&solved) {
            if copy.is_some_and(|c| c.hash_size.bytes() >= 2) {
                topo.stats.mb_hops += hs.len() as u64;
                topo.stats.mb_unknown +=
                    hs.iter().filter(|h| h.candidates.is_empty()).count() as u64;
            }
        }
        for (p, hs) in g.copies.iter().zip(&solved) {
            topo.stats.copies += 1;
            topo.stats.hops += hs.len() as u64;
            topo.stats.resolved += hs
                .iter()
                .filter(|h| h.resolved(hops::RESOLVED).is_some())
                .count() as u64;
            let resolved: Vec<ResolvedHop> = hs
                .iter()
                .map(|h| ResolvedHop {
                    node: h
                        .node
                        .and_then(|n| dir_to_row.get(n as usize))
                        .map(|&i| i as u32),
                    confidence: h.confidence,
                })
                .collect();
            inf.add_resolved(
                &Observation {
                    received_at: p.received_at,
                    observer: p.observer,
                    head: &p.head,
                    hash,
                    verified_advert_from: advert_from,
                },
                Some(&resolved),
            );
        }
        let present: Vec<analytics::hops::Copy<'_>> = copies.iter().flatten().copied().collect();
        let solved_present: Vec<Vec<analytics::hops::Hop>> = copies
            .iter()
            .zip(solved)
            .filter(|(c, _)| c.is_some())
            .map(|(_, h)| h)
            .collect();
        // Who heard each present copy, and how well: the graph's per-edge observers and SNR.
        let heard: Vec<analytics::hops::Heard> = g
            .copies
            .iter()
            .zip(&copies)
            .filter(|(_, c)| c.is_some())
            .map(|(p, _)| analytics::hops::Heard {
                observer: Some(p.observer),
                snr: p.snr,
            })
            .collect();
        let at = g.copies.last().map_or(0, |p| p.received_at);
        analytics::hops::add_to_graph(
            graph,
            &topo.dir,
            ends,
            &present,
            &solved_present,
            &heard,
            at,
        );
    };
    let mut rows = stmt.query([since])?;
    while let Some(r) = rows.next()? {
        let received_at: i64 = r.get(0)?;
        let pending = Pending {
            received_at,
            observer: r.get::<_, i64>(1)? as u32,
            head: r.get_ref(2)?.as_blob().unwrap_or(&[]).to_vec(),
            snr: r.get::<_, Option<f64>>(8).ok().flatten(),
        };
        let id: i64 = r.get(6)?;
        let done = grouper.push(id, pending, || {
            let payload_type = r.get::<_, i64>(4).unwrap_or(-1);
            Group {
                hash: r
                    .get_ref(3)
                    .ok()
                    .and_then(|v| v.as_str().ok())
                    .unwrap_or("")
                    .to_owned(),
                payload_type,
                advert_from: if payload_type == 4 {
                    r.get::<_, Option<String>>(5).ok().flatten()
                } else {
                    None
                },
                payload: r
                    .get_ref(7)
                    .ok()
                    .and_then(|v| v.as_blob_or_null().ok().flatten())
                    .and_then(topology::payload_of)
                    .map(<[u8]>::to_vec),
                copies: Vec::new(),
            }
        });
        for g in done {
            flush(g, &mut inf, &mut topo, &mut graph);
        }
    }
    drop(rows);
    for g in grouper.drain() {
        flush(g, &mut inf, &mut topo, &mut graph);
    }
    topo.stats.early_flushes = grouper.early_flushes;
    topo.stats.link_scale_km = scale;
    topo.stats.unknown_share = unknown_share;
    topo.graph = graph;
    let report = inf.finish(&persisted);
    Ok(CapIndex {
        serial: 0,
        by_key: report.index(),
        report,
        observer_iata: observer_iata(c)?,
        computed_at: now,
        complete: true,
        took: start.elapsed(),
        topology: Arc::new(topo),
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

/// Puts the calling thread at the lowest scheduling priority (nice 19; on Linux a thread has
/// its own). The cycle is background work that streams the whole window, 6–20 s of one core
/// at 2,000,000 observations, and API answers on a two-core machine queued behind it; at
/// nice 19 they take the CPU first and the cycle takes what is left (BENCHMARKS.md, session 7).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        tracing::debug!("the capability cycle keeps its priority: {e}");
    }
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
    let graph_publisher = cfg.publish_to.as_deref().map(handoff::GraphPublisher::new);
    std::thread::Builder::new()
        .name("meshlens-capability".into())
        .spawn(move || {
            lower_priority();
            let mut next = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if Instant::now() >= next {
                    next = Instant::now() + cfg.interval;
                    let prev = state.current().topology.clone();
                    let prev_stats = (prev.stats.copies > 0).then_some(&prev.stats);
                    match compute_after(reader.conn(), cfg.window, &prev.graph, prev_stats) {
                        Ok(idx) => {
                            tracing::debug!(
                                "capability cycle: {} nodes in {:?}",
                                idx.report.nodes.len(),
                                idx.took
                            );
                            let entries = snapshot_entries(&idx.report);
                            let edges = graph_edges(&idx.topology);
                            state.swap(idx);
                            if let Some(p) = &publisher
                                && let Err(e) = p.publish(entries)
                            {
                                tracing::warn!("capability snapshot not published: {e}");
                            }
                            // An empty graph (a quiet window) would tell the writer nothing.
                            if let Some(p) = &graph_publisher
                                && !edges.is_empty()
                                && let Err(e) = p.publish(&edges)
                            {
                                tracing::warn!("neighbor graph not published: {e}");
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::lower_priority;

    /// The nice value of this process's thread `tid`, from `/proc` (field 19 of `stat`).
    fn nice_of(tid: rustix::thread::Pid) -> i64 {
        let stat =
            std::fs::read_to_string(format!("/proc/self/task/{}/stat", tid.as_raw_nonzero()))
                .expect("stat");
        // The fields after the command name (in parentheses, may hold spaces) start at 3.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        rest.split_whitespace()
            .nth(19 - 3)
            .and_then(|f| f.parse().ok())
            .expect("nice")
    }

    /// The thread that asks runs at nice 19; the others keep theirs.
    #[test]
    fn only_the_calling_thread_is_lowered() {
        let here = nice_of(rustix::thread::gettid());
        let there = std::thread::spawn(|| {
            lower_priority();
            nice_of(rustix::thread::gettid())
        })
        .join()
        .expect("thread");
        assert_eq!(there, 19);
        assert_eq!(nice_of(rustix::thread::gettid()), here);
        assert_ne!(here, 19);
    }
}
