//! Who carried it, on the reader's side: the node directory and neighbor graph the hop
//! resolver ([`analytics::hops`]) works with, built in the capability cycle from the window's
//! observations, and the helpers that resolve one packet's copies on demand for the API.
//!
//! The cycle streams observations in receipt order and groups them by packet (all copies of a
//! packet arrive within seconds), resolves each group with the previous cycle's graph, and
//! accumulates this cycle's graph from the answers. Groups wait at most [`GROUP_WAIT_MS`] and
//! at most [`MAX_PENDING`] observations are held, so memory does not grow with the window.

use std::collections::{HashMap, VecDeque};

use analytics::hops::{
    self, Copy, DirNode, Directory, Endpoint, Ends, Graph, Hop, LatLon, NodeId, ObserverAt,
};
use meshcore::Packet;

/// The resolver's world at one moment: replaced wholesale each cycle.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Known nodes by key prefix.
    pub dir: Directory,
    /// Hex public key per [`NodeId`].
    pub keys: Vec<String>,
    /// Name per [`NodeId`] (untrusted text).
    pub names: Vec<Option<String>>,
    /// Role per [`NodeId`].
    pub roles: Vec<String>,
    /// The neighbor graph of the last cycle.
    pub graph: Graph,
    /// Observer index → the observer's node, when it adverts.
    pub observer_node: HashMap<u32, NodeId>,
    /// Observer index → its id: the graph's edges name observers by index
    /// ([`analytics::hops::EdgeObservers`]), answers and the handoff file by id.
    pub observer_ids: HashMap<u32, String>,
    /// What the last cycle did.
    pub stats: CycleStats,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            dir: Directory::new([]),
            keys: Vec::new(),
            names: Vec::new(),
            roles: Vec::new(),
            graph: Graph::new(),
            observer_node: HashMap::new(),
            observer_ids: HashMap::new(),
            stats: CycleStats::default(),
        }
    }
}

/// Counts of one cycle's resolution.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CycleStats {
    /// Packets resolved.
    pub packets: u64,
    /// Observations resolved.
    pub copies: u64,
    /// Hops seen.
    pub hops: u64,
    /// Hops resolved at [`hops::RESOLVED`] or more.
    pub resolved: u64,
    /// Groups flushed early because [`MAX_PENDING`] was reached.
    pub early_flushes: u64,
    /// The link scale used, km.
    pub link_scale_km: f64,
    /// 2- and 3-byte hops seen.
    pub mb_hops: u64,
    /// Of those, matching no known node: unknown relays.
    pub mb_unknown: u64,
    /// The share of unknown relays used.
    pub unknown_share: f64,
}

impl CycleStats {
    /// The share of relays that are unknown nodes, from this cycle's multi-byte hops (nearly
    /// collision-free, so a miss is an unknown relay); the default until there are 200.
    pub fn unknown_share(&self) -> f64 {
        if self.mb_hops < 200 {
            return hops::DEFAULT_UNKNOWN_SHARE;
        }
        self.mb_unknown as f64 / self.mb_hops as f64
    }
}

/// One node row as the cycle loads it.
#[derive(Debug, Clone)]
pub struct NodeRow {
    /// Hex key.
    pub public_key: String,
    /// Name.
    pub name: Option<String>,
    /// Role.
    pub role: String,
    /// Degrees.
    pub lat: Option<f64>,
    /// Degrees.
    pub lon: Option<f64>,
}

/// The directory of `rows`: nodes whose key is not 64 hex digits are left out (they cannot be
/// hops). The returned vector maps each [`NodeId`] to its index in `rows`.
pub fn directory(rows: &[NodeRow], link_scale_km: f64) -> (Directory, Vec<usize>) {
    let mut map = Vec::with_capacity(rows.len());
    let mut dir_nodes = Vec::with_capacity(rows.len());
    let mut seen = std::collections::HashSet::new();
    for (i, r) in rows.iter().enumerate() {
        let mut key = [0u8; 32];
        if hex::decode_to_slice(&r.public_key, &mut key).is_err() || !seen.insert(key) {
            continue;
        }
        map.push(i);
        dir_nodes.push(DirNode {
            public_key: key,
            forwards: hops::role_forwards(&r.role),
            pos: match (r.lat, r.lon) {
                (Some(a), Some(b)) => LatLon::new(a, b),
                _ => None,
            },
        });
    }
    (
        Directory::new(dir_nodes).with_link_scale_km(link_scale_km),
        map,
    )
}

/// The link scale from distances of links known for certain (km): robust to a few wrong
/// positions (a high quantile, not the maximum), [`hops::DEFAULT_LINK_SCALE_KM`] until there
/// are enough of them.
pub fn link_scale(mut distances: Vec<f64>) -> f64 {
    distances.retain(|d| d.is_finite() && *d >= 0.0);
    if distances.len() < 20 {
        return hops::DEFAULT_LINK_SCALE_KM;
    }
    distances.sort_by(f64::total_cmp);
    let p95 = distances[(distances.len() - 1) * 95 / 100];
    (p95 / 1.6).clamp(1.0, 150.0)
}

/// The ends of a packet from its payload type, the verified advert origin, and (for peer
/// datagrams) the payload's first bytes.
pub fn ends_of(
    dir: &Directory,
    payload_type: i64,
    advert_from: Option<&str>,
    payload: Option<&[u8]>,
) -> Ends {
    let origin_known = advert_from.and_then(|k| dir.id_of_hex(k));
    match (payload_type, payload) {
        (4, _) => Ends {
            origin: origin_known.map_or(Endpoint::Unknown, Endpoint::Known),
            destination: Endpoint::Unknown,
        },
        // REQ, RESPONSE, TXT_MSG, PATH: destination hash, source hash.
        (0 | 1 | 2 | 8, Some([dest, src, ..])) => Ends {
            origin: Endpoint::Hash(*src),
            destination: Endpoint::Hash(*dest),
        },
        // ANON_REQ: destination hash, the sender's whole key.
        (7, Some([dest, rest @ ..])) if rest.len() >= 32 => {
            let mut key = [0u8; 32];
            key.copy_from_slice(&rest[..32]);
            Ends {
                origin: dir
                    .id_of(&key)
                    .map_or(Endpoint::Hash(key[0]), Endpoint::Known),
                destination: Endpoint::Hash(*dest),
            }
        }
        _ => Ends::default(),
    }
}

/// The payload of a stored frame (`transmissions.raw`), if it frames.
pub fn payload_of(raw: &[u8]) -> Option<&[u8]> {
    Packet::decode(raw).ok().map(|p| p.payload_bytes())
}

/// Whether a payload type carries a hash-addressed envelope whose bytes [`ends_of`] reads.
pub fn needs_payload(payload_type: i64) -> bool {
    matches!(payload_type, 0 | 1 | 2 | 7 | 8)
}

/// One observation waiting for the rest of its packet.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Unix ms.
    pub received_at: i64,
    /// Observer index.
    pub observer: u32,
    /// Frame head.
    pub head: Vec<u8>,
    /// SNR as the observer reported it, dB: credited to the neighbor-graph links the copy
    /// shows (only the capability cycle needs it; on-demand resolution may leave it out).
    pub snr: Option<f64>,
}

/// One packet's copies, gathered from the stream.
#[derive(Debug, Clone)]
pub struct Group {
    /// Packet hash (16 hex).
    pub hash: String,
    /// Payload type.
    pub payload_type: i64,
    /// The verified advert origin.
    pub advert_from: Option<String>,
    /// The payload, for types whose ends it names.
    pub payload: Option<Vec<u8>>,
    /// Copies in receipt order.
    pub copies: Vec<Pending>,
}

/// How long a packet's group stays open after its first copy, ms: copies of one packet arrive
/// within seconds, so anything later belongs to a new group (flushed separately, still right).
pub const GROUP_WAIT_MS: i64 = 30_000;
/// Most observations held in open groups at once.
pub const MAX_PENDING: usize = 20_000;

/// Groups a receipt-ordered stream of observations by packet.
#[derive(Debug, Default)]
pub struct Grouper {
    open: HashMap<i64, Group>,
    order: VecDeque<(i64, i64)>,
    held: usize,
    /// Groups flushed before their time because too much was held.
    pub early_flushes: u64,
}

impl Grouper {
    /// An empty grouper.
    pub fn new() -> Grouper {
        Grouper::default()
    }

    /// Adds one observation of packet `id`; `make` builds its group when it is the first.
    /// Returns the groups that are complete now.
    pub fn push(&mut self, id: i64, obs: Pending, make: impl FnOnce() -> Group) -> Vec<Group> {
        let now = obs.received_at;
        let mut done = Vec::new();
        while let Some(&(first, oldest)) = self.order.front() {
            let expired = now - first > GROUP_WAIT_MS;
            let full = self.held >= MAX_PENDING;
            if !expired && !full {
                break;
            }
            self.order.pop_front();
            if let Some(g) = self.open.remove(&oldest) {
                self.held -= g.copies.len();
                if full && !expired {
                    self.early_flushes += 1;
                }
                done.push(g);
            }
        }
        let g = self.open.entry(id).or_insert_with(|| {
            self.order.push_back((now, id));
            make()
        });
        g.copies.push(obs);
        self.held += 1;
        done
    }

    /// Every group still open, oldest first.
    pub fn drain(&mut self) -> Vec<Group> {
        let mut out = Vec::with_capacity(self.order.len());
        while let Some((_, id)) = self.order.pop_front() {
            if let Some(g) = self.open.remove(&id) {
                out.push(g);
            }
        }
        self.held = 0;
        out
    }
}

/// Resolves one group: per copy, one [`Hop`] per path hop (empty for copies whose path is not
/// hops, TRACE among them).
pub fn resolve_group<'g>(
    topo_dir: &Directory,
    graph: &Graph,
    observer_node: &HashMap<u32, NodeId>,
    g: &'g Group,
) -> (Ends, Vec<Option<Copy<'g>>>, Vec<Vec<Hop>>) {
    let ends = ends_of(
        topo_dir,
        g.payload_type,
        g.advert_from.as_deref(),
        g.payload.as_deref(),
    );
    let copies: Vec<Option<Copy<'g>>> = g
        .copies
        .iter()
        .map(|p| {
            let node = observer_node.get(&p.observer).copied();
            Copy::from_head(&p.head, ObserverAt { node, pos: None })
        })
        .collect();
    let present: Vec<Copy<'g>> = copies.iter().flatten().copied().collect();
    let mut solved = hops::resolve(topo_dir, graph, ends, &present).into_iter();
    let per_copy = copies
        .iter()
        .map(|c| match c {
            Some(_) => solved.next().unwrap_or_default(),
            None => Vec::new(),
        })
        .collect();
    (ends, copies, per_copy)
}
