//! Hop resolution: which node relayed each hop of a path, with a calibrated confidence.
//!
//! A hop is the first 1, 2 or 3 bytes of a relay's public key, so one hop can name several
//! nodes. The resolver weighs, per hop, every node the prefix allows:
//!
//! - **Role.** Only nodes that forward by default (repeater, room, sensor) are candidates;
//!   companions only when no forwarding node has the prefix.
//! - **Radio range.** Consecutive transmitters must hear each other: a link's likelihood falls
//!   with distance on the scale of the mesh's own links ([`Directory::link_scale_km`], measured
//!   from links that are certain). A node 100 km from its neighbours in the path loses to one
//!   nearby.
//! - **The neighbor graph** ([`Graph`]): pairs already seen next to each other are likelier.
//! - **The ends.** A flood's first hop hears the origin (known for adverts, a 1-byte hash for
//!   peer datagrams), its last hop is heard by the observer; a direct packet's path is the
//!   remaining route, whose first entry is two links from the observer and whose last entry
//!   hears the destination.
//! - **Every observer of the packet at once.** All copies of one packet share their relays:
//!   flood paths form a tree rooted at the origin (a prefix trie of the paths), direct paths a
//!   tree rooted at the destination (a trie of the reversed paths). An observer that heard a
//!   relay's transmission and then forwarded it is the child hop carrying its own prefix.
//!
//! The tree is solved exactly by belief propagation (sum-product), so each hop's confidence is
//! the posterior probability of its chosen node under this model, and is calibrated against the
//! simulator's ground truth (`BENCHMARKS.md`). Pure: no I/O, bounded by the packet's size.

use std::collections::HashMap;

use meshcore::{Packet, PathHashSize, PayloadType};

/// Index of a node in a [`Directory`].
pub type NodeId = u32;

/// A position in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLon {
    /// Degrees north.
    pub lat: f64,
    /// Degrees east.
    pub lon: f64,
}

impl LatLon {
    /// A plausible position: finite, in range, and not the `0,0` that nodes without a
    /// location advertise.
    pub fn new(lat: f64, lon: f64) -> Option<LatLon> {
        let valid = lat.is_finite()
            && lon.is_finite()
            && (-90.0..=90.0).contains(&lat)
            && (-180.0..=180.0).contains(&lon)
            && !(lat.abs() < 1e-6 && lon.abs() < 1e-6);
        valid.then_some(LatLon { lat, lon })
    }

    /// Great-circle distance, km (haversine).
    pub fn distance_km(self, other: LatLon) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * 6371.0 * a.sqrt().clamp(0.0, 1.0).asin()
    }
}

/// A known node, as the resolver needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct DirNode {
    /// Public key.
    pub public_key: [u8; 32],
    /// Whether its role forwards by default (repeater, room, sensor).
    pub forwards: bool,
    /// Its advertised position, if plausible.
    pub pos: Option<LatLon>,
}

/// Whether a meshlens role name forwards by default.
pub fn role_forwards(role: &str) -> bool {
    matches!(role, "repeater" | "room" | "sensor")
}

/// The nodes under one prefix: forwarding ones, companions.
type Bucket = (Vec<NodeId>, Vec<NodeId>);

/// The known nodes, indexed by key prefix.
#[derive(Debug, Clone)]
pub struct Directory {
    nodes: Vec<DirNode>,
    by_key: HashMap<[u8; 32], NodeId>,
    /// Per prefix width (1–3 bytes): prefix → forwarding nodes, companions.
    by_prefix: [HashMap<u32, Bucket>; 3],
    link_scale_km: f64,
    unknown_share: f64,
    forwarding: usize,
    /// [`short_id`] per node, computed once.
    short: Vec<u64>,
}

/// The link scale used until the mesh's own links say otherwise, km.
pub const DEFAULT_LINK_SCALE_KM: f64 = 15.0;

/// The share of relays that are not known nodes, until the mesh's multi-byte hops say
/// otherwise ([`Directory::with_unknown_share`]).
pub const DEFAULT_UNKNOWN_SHARE: f64 = 0.05;

fn prefix_key(p: &[u8]) -> u32 {
    p.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
}

impl Directory {
    /// A directory of `nodes` (later duplicates of a key are ignored).
    pub fn new(nodes: impl IntoIterator<Item = DirNode>) -> Directory {
        let mut dir = Directory {
            nodes: Vec::new(),
            by_key: HashMap::new(),
            by_prefix: Default::default(),
            link_scale_km: DEFAULT_LINK_SCALE_KM,
            unknown_share: DEFAULT_UNKNOWN_SHARE,
            forwarding: 0,
            short: Vec::new(),
        };
        for n in nodes {
            if dir.by_key.contains_key(&n.public_key) {
                continue;
            }
            let id = dir.nodes.len() as NodeId;
            dir.by_key.insert(n.public_key, id);
            for (w, map) in dir.by_prefix.iter_mut().enumerate() {
                let entry = map.entry(prefix_key(&n.public_key[..=w])).or_default();
                if n.forwards {
                    entry.0.push(id);
                } else {
                    entry.1.push(id);
                }
            }
            dir.forwarding += usize::from(n.forwards);
            dir.short.push(short_id(&n.public_key));
            dir.nodes.push(n);
        }
        dir
    }

    /// Sets the share of relays that are not known nodes (0.01–0.5; out-of-range values are
    /// clamped, non-finite ones ignored). Measured where it can be: a 2- or 3-byte hop that
    /// matches no known node is almost surely an unknown relay.
    pub fn with_unknown_share(mut self, share: f64) -> Directory {
        if share.is_finite() {
            self.unknown_share = share.clamp(0.01, 0.5);
        }
        self
    }

    /// The share of unknown relays in use.
    pub fn unknown_share(&self) -> f64 {
        self.unknown_share
    }

    /// The prior weight of "an unknown relay" for a hop of `width` bytes, against each known
    /// candidate's weight of 1. Among relays, a share `u` is unknown and has a given prefix
    /// with probability `256^-width`; the known ones have it `c / N` of the time (`c`
    /// candidates of `N` forwarding nodes), each candidate a priori `1 / c` of that. So the
    /// odds of unknown against one candidate are `u / (1 − u) · N / 256^width`: a 2-byte hop
    /// that a known node matches is almost never someone else, a 1-byte hop in a big mesh
    /// often is.
    fn unknown_prior(&self, width: usize) -> f64 {
        let u = self.unknown_share;
        let space = 256f64.powi(width.clamp(1, 3) as i32);
        (u / (1.0 - u)) * (self.forwarding.max(1) as f64) / space
    }

    /// Sets the link scale (km): the distance at which a link's likelihood has fallen to
    /// `e^-0.5` of a short one's. Non-positive or non-finite values are ignored.
    pub fn with_link_scale_km(mut self, km: f64) -> Directory {
        if km.is_finite() && km > 0.0 {
            self.link_scale_km = km;
        }
        self
    }

    /// The link scale in use, km.
    pub fn link_scale_km(&self) -> f64 {
        self.link_scale_km
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// One node.
    pub fn node(&self, id: NodeId) -> Option<&DirNode> {
        self.nodes.get(id as usize)
    }

    /// The node with this key.
    pub fn id_of(&self, key: &[u8; 32]) -> Option<NodeId> {
        self.by_key.get(key).copied()
    }

    /// The node with this hex key (any case).
    pub fn id_of_hex(&self, hex_key: &str) -> Option<NodeId> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex_key, &mut key).ok()?;
        self.id_of(&key)
    }

    /// Nodes whose key starts with `hop` (1–3 bytes): forwarding nodes, or companions when
    /// no forwarding node matches. The second value says whether they are companions.
    pub fn candidates(&self, hop: &[u8]) -> (&[NodeId], bool) {
        let found = hop
            .len()
            .checked_sub(1)
            .and_then(|w| self.by_prefix.get(w))
            .and_then(|m| m.get(&prefix_key(hop)));
        match found {
            Some((fwd, _)) if !fwd.is_empty() => (fwd, false),
            Some((_, comp)) => (comp, true),
            None => (&[], false),
        }
    }

    /// Every node whose key starts with `hop`, forwarding or not.
    pub fn all_with_prefix(&self, hop: &[u8]) -> Vec<NodeId> {
        hop.len()
            .checked_sub(1)
            .and_then(|w| self.by_prefix.get(w))
            .and_then(|m| m.get(&prefix_key(hop)))
            .map(|(f, c)| f.iter().chain(c).copied().collect())
            .unwrap_or_default()
    }

    fn pos(&self, id: NodeId) -> Option<LatLon> {
        self.nodes.get(id as usize).and_then(|n| n.pos)
    }
}

/// A stable 64-bit id of a node (its key's first 8 bytes): graph keys that survive a
/// rebuilt directory.
pub fn short_id(key: &[u8; 32]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_be_bytes(b)
}

/// What is known of one neighbor link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EdgeStats {
    /// Packets whose resolved hops put the two next to each other.
    pub count: u32,
    /// Sum of those attributions' confidences (count × mean confidence).
    pub weight: f64,
    /// Last seen, Unix ms.
    pub last_seen: i64,
    /// Sum of the SNRs (dB, as each observer reported it) of the observations that showed the
    /// link: every copy adds its SNR to every edge it contributes, so a link heard well by
    /// many observers and badly by one shows both.
    pub snr_sum: f64,
    /// How many finite SNRs are in [`EdgeStats::snr_sum`].
    pub snr_count: u32,
    /// Who heard the observations that showed the link (bounded).
    pub observers: EdgeObservers,
}

impl EdgeStats {
    /// Mean confidence of the attributions, 0–1.
    pub fn confidence(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            (self.weight / f64::from(self.count)).clamp(0.0, 1.0)
        }
    }

    /// Mean SNR of the observations that showed the link, dB; `None` without a sample.
    pub fn avg_snr(&self) -> Option<f64> {
        (self.snr_count > 0)
            .then(|| self.snr_sum / f64::from(self.snr_count))
            .filter(|s| s.is_finite())
    }
}

/// Most observers an edge names: enough to show who hears a link, while a graph of
/// [`MAX_EDGES`] stays a fixed size (the count beyond is [`EdgeObservers::distinct`]).
pub const MAX_EDGE_OBSERVERS: usize = 8;

/// The observers (as the caller numbers them: the reader uses `observers.idx`) whose copies
/// showed a link: the first [`MAX_EDGE_OBSERVERS`] distinct ones by name, and how many distinct
/// ones there were in all (exact up to the bound, estimated beyond it). Fixed size: an edge
/// never grows with the number of observers, so memory stays `MAX_EDGES` × a constant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EdgeObservers {
    ids: [u32; MAX_EDGE_OBSERVERS],
    len: u8,
    /// One bit per hashed observer (linear counting): estimates the distinct count once the
    /// names no longer fit.
    bits: u64,
    distinct: u32,
}

/// The bit of the linear-counting sketch for observer `id` (Fibonacci hashing: consecutive
/// indexes spread over all 64 bits).
fn sketch_bit(id: u32) -> u64 {
    1u64 << (u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
}

impl EdgeObservers {
    /// Records one observation by observer `id`.
    pub fn add(&mut self, id: u32) {
        self.bits |= sketch_bit(id);
        let len = usize::from(self.len);
        if self.ids[..len].contains(&id) {
            return;
        }
        if len < MAX_EDGE_OBSERVERS {
            self.ids[len] = id;
            self.len += 1;
            self.distinct = self.distinct.max(u32::from(self.len));
            return;
        }
        // Full: the sketch estimates how many distinct observers there are (never below
        // what is already known, so a persisted count is not lowered).
        let zeros = f64::from(self.bits.count_zeros()).max(0.5);
        let estimate = (-64.0 * (zeros / 64.0).ln()).round() as u32;
        self.distinct = self
            .distinct
            .max(estimate)
            .max(MAX_EDGE_OBSERVERS as u32 + 1);
    }

    /// Rebuilds a persisted set: `ids` (the first [`MAX_EDGE_OBSERVERS`] distinct ones are
    /// kept) out of `distinct` in all.
    pub fn from_parts(ids: impl IntoIterator<Item = u32>, distinct: u32) -> EdgeObservers {
        let mut o = EdgeObservers::default();
        for id in ids {
            if usize::from(o.len) < MAX_EDGE_OBSERVERS {
                o.add(id);
            }
        }
        o.distinct = o.distinct.max(distinct);
        o
    }

    /// The observers named, in the order first seen.
    pub fn ids(&self) -> &[u32] {
        &self.ids[..usize::from(self.len).min(MAX_EDGE_OBSERVERS)]
    }

    /// How many distinct observers showed the link: exact up to [`MAX_EDGE_OBSERVERS`], an
    /// estimate beyond.
    pub fn distinct(&self) -> u32 {
        self.distinct
    }
}

/// Who heard one copy, for the graph: the observer (the caller's number for it) and the SNR
/// it reported.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Heard {
    /// The observer, if known.
    pub observer: Option<u32>,
    /// dB as reported; non-finite values are ignored.
    pub snr: Option<f64>,
}

/// Most edges a graph holds: far more than a real mesh has links, so only a flood of
/// invented keys reaches it (new edges are then refused and counted).
pub const MAX_EDGES: usize = 250_000;

/// The neighbor graph: undirected links between nodes heard next to each other, keyed by
/// [`short_id`].
#[derive(Debug, Clone, Default)]
pub struct Graph {
    edges: HashMap<(u64, u64), EdgeStats>,
    /// Edges refused because the graph was full.
    pub refused: u64,
}

fn ordered(a: u64, b: u64) -> (u64, u64) {
    if a <= b { (a, b) } else { (b, a) }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Adds one attribution of the link `a`–`b` with `confidence` at `at` (Unix ms).
    pub fn add(&mut self, a: u64, b: u64, confidence: f64, at: i64) {
        if a == b || !confidence.is_finite() || confidence <= 0.0 {
            return;
        }
        let key = ordered(a, b);
        let len = self.edges.len();
        let e = match self.edges.get_mut(&key) {
            Some(e) => e,
            None if len >= MAX_EDGES => {
                self.refused += 1;
                return;
            }
            None => self.edges.entry(key).or_default(),
        };
        e.count = e.count.saturating_add(1);
        e.weight += confidence.min(1.0);
        e.last_seen = e.last_seen.max(at);
    }

    /// Inserts a whole edge (from a persisted graph).
    pub fn insert(&mut self, a: u64, b: u64, stats: EdgeStats) {
        if a != b && (self.edges.len() < MAX_EDGES || self.edges.contains_key(&ordered(a, b))) {
            self.edges.insert(ordered(a, b), stats);
        }
    }

    /// Credits an existing link `a`–`b` with one observation: its observer and its SNR
    /// (finite values only). A link the graph does not hold (refused when full) is left alone.
    pub fn observe(&mut self, a: u64, b: u64, heard: Heard) {
        let Some(e) = self.edges.get_mut(&ordered(a, b)) else {
            return;
        };
        if let Some(o) = heard.observer {
            e.observers.add(o);
        }
        if let Some(snr) = heard.snr.filter(|s| s.is_finite()) {
            e.snr_sum += snr;
            e.snr_count = e.snr_count.saturating_add(1);
        }
    }

    /// The link between two nodes, if seen.
    pub fn get(&self, a: u64, b: u64) -> Option<&EdgeStats> {
        self.edges.get(&ordered(a, b))
    }

    /// Every edge `((a, b), stats)` with `a <= b`.
    pub fn edges(&self) -> impl Iterator<Item = (&(u64, u64), &EdgeStats)> {
        self.edges.iter()
    }

    /// Number of edges.
    pub fn len(&self) -> usize {
        self.edges.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// How strongly the graph supports the link, 0 (never seen) to 1 (often, confidently).
    fn support(&self, a: u64, b: u64) -> f64 {
        match self.get(a, b) {
            Some(e) => e.weight / (e.weight + 2.0),
            None => 0.0,
        }
    }
}

/// Who observed a copy.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ObserverAt {
    /// The observer as a known node (its own adverts), if it is one.
    pub node: Option<NodeId>,
    /// Its position (its advert, or configuration), if known.
    pub pos: Option<LatLon>,
}

/// One end of a packet's journey, as far as the packet tells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Endpoint {
    /// A known node (the verified origin of an advert).
    Known(NodeId),
    /// The first byte of its key (peer datagrams carry source and destination hashes).
    Hash(u8),
    /// Nothing said.
    #[default]
    Unknown,
}

/// One observation of a packet: its route, its path and who heard it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Copy<'a> {
    /// Direct route (the path is the remaining route) rather than flood (the relays so far).
    pub direct: bool,
    /// Bytes per hop.
    pub hash_size: PathHashSize,
    /// The path bytes (a whole number of hops).
    pub path: &'a [u8],
    /// The observer.
    pub observer: ObserverAt,
}

impl<'a> Copy<'a> {
    /// A copy from a stored frame head (header, transport codes, path-length byte, path).
    /// `None` when the head does not frame or its path is not hops (TRACE carries SNRs).
    pub fn from_head(head: &'a [u8], observer: ObserverAt) -> Option<Copy<'a>> {
        let p = Packet::decode(head).ok()?;
        if !p.path_bytes_are_hops() || p.payload_type() == PayloadType::Trace {
            return None;
        }
        Some(Copy {
            direct: p.route_type().is_direct(),
            hash_size: p.path_len().hash_size(),
            path: p.path(),
            observer,
        })
    }

    /// Number of hops.
    pub fn hop_count(&self) -> usize {
        self.path.len() / self.hash_size.bytes()
    }

    fn hop(&self, i: usize) -> Option<&'a [u8]> {
        let w = self.hash_size.bytes();
        self.path.get(i * w..(i + 1) * w)
    }
}

/// The packet's two ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ends {
    /// Who sent it.
    pub origin: Endpoint,
    /// Who it is for (direct routes end there).
    pub destination: Endpoint,
}

/// The resolution of one hop.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    /// The likeliest known node, if a known node is likelier than an unknown relay.
    pub node: Option<NodeId>,
    /// Posterior probability of `node` (0 when none).
    pub confidence: f64,
    /// Every candidate with its posterior probability, likeliest first.
    pub candidates: Vec<(NodeId, f64)>,
    /// Whether the candidates are companions (no forwarding node has the prefix).
    pub companions: bool,
}

impl Hop {
    /// The node when its confidence reaches `threshold`.
    pub fn resolved(&self, threshold: f64) -> Option<NodeId> {
        self.node.filter(|_| self.confidence >= threshold)
    }
}

/// The confidence from which a hop counts as resolved in the API (`resolved_path`).
pub const RESOLVED: f64 = 0.5;

/// Model constants (see the module doc; tuned on the simulator, `BENCHMARKS.md`).
mod model {
    /// Link likelihood when a position is missing (that of a link at one scale).
    pub const NO_POSITION: f64 = 0.6;
    /// Share of links far beyond the usual range (hilltops, ducting, wrong positions).
    pub const LONG_TAIL: f64 = 0.01;
    /// How much a known neighbor link multiplies a link's likelihood, at most.
    pub const GRAPH_BOOST: f64 = 4.0;
    /// How much likelier an observer is to be the hop after the transmission it heard.
    pub const OWN_HOP: f64 = 8.0;
}

/// A state of a tree node: a known node or an unknown one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Node(NodeId),
    Unknown,
}

/// One transmission in the packet's tree: a hop shared by every copy whose path passes it.
#[derive(Debug)]
struct TreeNode {
    parent: Option<usize>,
    states: Vec<State>,
    /// Local evidence per state.
    local: Vec<f64>,
    /// Whether the states are companions.
    companions: bool,
    /// Whether this is a real hop (false for the origin / destination root).
    is_hop: bool,
}

/// The likelihood that two positions `d` km apart hear each other at scale `s`.
fn geo(d: f64, s: f64) -> f64 {
    let x = d / s;
    (1.0 - model::LONG_TAIL) * (-0.5 * x * x).exp() + model::LONG_TAIL * (-x / 5.0).exp()
}

struct Solver<'d> {
    dir: &'d Directory,
    graph: &'d Graph,
}

impl Solver<'_> {
    fn short(&self, id: NodeId) -> u64 {
        self.dir.short.get(id as usize).copied().unwrap_or(0)
    }

    /// Likelihood that the transmitter in state `a` is heard by the one in state `b`
    /// (`hops` links apart: 1, or 2 for a direct copy's observer).
    fn link(&self, a: State, b: State, hops: f64) -> f64 {
        let (State::Node(x), State::Node(y)) = (a, b) else {
            return model::NO_POSITION;
        };
        if x == y {
            return 0.0;
        }
        let g = match (self.dir.pos(x), self.dir.pos(y)) {
            (Some(p), Some(q)) => geo(p.distance_km(q), self.dir.link_scale_km * hops),
            _ => model::NO_POSITION,
        };
        let support = if hops > 1.0 {
            0.0
        } else {
            self.graph.support(self.short(x), self.short(y))
        };
        g * (1.0 + model::GRAPH_BOOST * support)
    }

    /// Likelihood of an observer hearing a transmitter in state `s`.
    fn observed_by(&self, s: State, obs: &ObserverAt, hops: f64) -> f64 {
        let State::Node(x) = s else {
            return model::NO_POSITION;
        };
        if obs.node == Some(x) {
            return 0.01; // An observer does not hear itself as the previous hop.
        }
        let pos = obs.node.and_then(|o| self.dir.pos(o)).or(obs.pos);
        let g = match (self.dir.pos(x), pos) {
            (Some(p), Some(q)) => geo(p.distance_km(q), self.dir.link_scale_km * hops),
            _ => model::NO_POSITION,
        };
        let support = match (obs.node, hops > 1.0) {
            (Some(o), false) => self.graph.support(self.short(x), self.short(o)),
            _ => 0.0,
        };
        g * (1.0 + model::GRAPH_BOOST * support)
    }
}

fn hop_states(dir: &Directory, hop: &[u8]) -> (Vec<State>, Vec<f64>, bool) {
    let (cands, companions) = dir.candidates(hop);
    let mut states: Vec<State> = cands.iter().map(|&c| State::Node(c)).collect();
    let mut local = vec![1.0; states.len()];
    states.push(State::Unknown);
    // No candidate at all: an unknown relay for sure (the weight only has to be positive).
    local.push(if cands.is_empty() {
        1.0
    } else {
        dir.unknown_prior(hop.len())
    });
    (states, local, companions)
}

fn endpoint_states(dir: &Directory, e: Endpoint) -> (Vec<State>, Vec<f64>) {
    match e {
        Endpoint::Known(id) => (vec![State::Node(id)], vec![1.0]),
        Endpoint::Hash(b) => {
            let mut s: Vec<State> = dir
                .all_with_prefix(&[b])
                .into_iter()
                .map(State::Node)
                .collect();
            let mut l = vec![1.0; s.len()];
            s.push(State::Unknown);
            // Origins are often companions that never advertised: as likely as any one
            // candidate.
            l.push(1.0);
            (s, l)
        }
        Endpoint::Unknown => (vec![State::Unknown], vec![1.0]),
    }
}

/// Resolves every hop of every copy of one packet. The answer has one entry per copy, each
/// with one [`Hop`] per path hop, in path order.
pub fn resolve(dir: &Directory, graph: &Graph, ends: Ends, copies: &[Copy<'_>]) -> Vec<Vec<Hop>> {
    let solver = Solver { dir, graph };
    // The forest: tree nodes in creation order (parents before children).
    let mut tree: Vec<TreeNode> = Vec::new();
    // Per copy: the tree node of each hop, in path order.
    let mut placed: Vec<Vec<usize>> = Vec::with_capacity(copies.len());
    let mut children: HashMap<(usize, u32), usize> = HashMap::new();
    let mut roots: [Option<usize>; 2] = [None, None];
    for copy in copies {
        let n = copy.hop_count();
        let root_slot = usize::from(copy.direct);
        let root = match roots[root_slot] {
            Some(r) => r,
            None => {
                let end = if copy.direct {
                    ends.destination
                } else {
                    ends.origin
                };
                let (states, local) = endpoint_states(dir, end);
                tree.push(TreeNode {
                    parent: None,
                    states,
                    local,
                    companions: false,
                    is_hop: false,
                });
                roots[root_slot] = Some(tree.len() - 1);
                tree.len() - 1
            }
        };
        // Floods grow from the origin: hop 1 first. Direct paths shrink towards the
        // destination: the last hop is the one every copy shares.
        let order: Vec<usize> = if copy.direct {
            (0..n).rev().collect()
        } else {
            (0..n).collect()
        };
        let mut at = root;
        let mut nodes = vec![0usize; n];
        for i in order {
            let Some(hop) = copy.hop(i) else { break };
            let key = (at, prefix_key(hop));
            at = match children.get(&key) {
                Some(&c) => c,
                None => {
                    let (states, local, companions) = hop_states(dir, hop);
                    tree.push(TreeNode {
                        parent: Some(at),
                        states,
                        local,
                        companions,
                        is_hop: true,
                    });
                    children.insert(key, tree.len() - 1);
                    tree.len() - 1
                }
            };
            nodes[i] = at;
        }
        placed.push(nodes);
    }
    // Observer evidence: a flood copy's last hop was heard by the observer; a direct copy's
    // first remaining hop is two links from it. And an observer that heard a flood relay's
    // transmission is likely the next hop carrying its prefix (it forwards what it hears).
    let mut heard_at: HashMap<usize, Vec<NodeId>> = HashMap::new();
    for (copy, nodes) in copies.iter().zip(&placed) {
        let (target, hops) = if copy.direct {
            (nodes.first(), 2.0)
        } else {
            (nodes.last(), 1.0)
        };
        let target = match target {
            Some(&t) => t,
            None if !copy.direct => match roots[0] {
                Some(r) => r,
                None => continue,
            },
            None => continue,
        };
        if let Some(t) = tree.get_mut(target) {
            for (s, l) in t.states.iter().zip(t.local.iter_mut()) {
                *l *= solver.observed_by(*s, &copy.observer, hops);
            }
        }
        if !copy.direct
            && let Some(o) = copy.observer.node
        {
            heard_at.entry(target).or_default().push(o);
        }
    }
    for t in tree.iter_mut() {
        let Some(parent) = t.parent else { continue };
        if let Some(observers) = heard_at.get(&parent) {
            for (s, l) in t.states.iter().zip(t.local.iter_mut()) {
                if matches!(s, State::Node(x) if observers.contains(x)) {
                    *l *= model::OWN_HOP;
                }
            }
        }
    }
    let marginals = belief_propagation(&solver, &tree);
    copies
        .iter()
        .zip(&placed)
        .map(|(copy, nodes)| {
            nodes
                .iter()
                .take(copy.hop_count())
                .map(|&t| hop_of(&tree[t], &marginals[t]))
                .collect()
        })
        .collect()
}

fn hop_of(t: &TreeNode, m: &[f64]) -> Hop {
    let mut candidates: Vec<(NodeId, f64)> = t
        .states
        .iter()
        .zip(m)
        .filter_map(|(s, &p)| match s {
            State::Node(id) => Some((*id, p)),
            State::Unknown => None,
        })
        .collect();
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let unknown = t
        .states
        .iter()
        .zip(m)
        .find(|(s, _)| **s == State::Unknown)
        .map_or(0.0, |(_, &p)| p);
    let (node, confidence) = match candidates.first() {
        Some(&(id, p)) if p > unknown => (Some(id), p),
        _ => (None, 0.0),
    };
    debug_assert!(t.is_hop);
    Hop {
        node,
        confidence,
        candidates,
        companions: t.companions,
    }
}

/// Exact marginals on the forest by sum-product: messages up (children before parents, so in
/// reverse creation order), then down.
fn belief_propagation(solver: &Solver<'_>, tree: &[TreeNode]) -> Vec<Vec<f64>> {
    let n = tree.len();
    // up[v][s]: evidence from v's subtree for v in state s (local included).
    let mut up: Vec<Vec<f64>> = tree.iter().map(|t| t.local.clone()).collect();
    // msg[v][s_parent]: v's message to its parent.
    let mut msg: Vec<Vec<f64>> = vec![Vec::new(); n];
    // links[v][i * |states(v)| + j]: parent state i heard by v in state j (computed once, used
    // on the way up and down).
    let mut links: Vec<Vec<f64>> = vec![Vec::new(); n];
    for v in (0..n).rev() {
        let Some(p) = tree[v].parent else { continue };
        let width = tree[v].states.len();
        let matrix: Vec<f64> = tree[p]
            .states
            .iter()
            .flat_map(|&sp| tree[v].states.iter().map(move |&sv| (sp, sv)))
            .map(|(sp, sv)| solver.link(sp, sv, 1.0))
            .collect();
        let m: Vec<f64> = matrix
            .chunks(width.max(1))
            .map(|row| row.iter().zip(&up[v]).map(|(l, u)| l * u).sum::<f64>())
            .collect();
        links[v] = matrix;
        let m = normalised(m);
        for (u, x) in up[p].iter_mut().zip(&m) {
            *u *= x;
        }
        let norm = normalised(std::mem::take(&mut up[p]));
        up[p] = norm;
        msg[v] = m;
    }
    // down[v][s]: evidence from outside v's subtree.
    let mut belief: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut down: Vec<Vec<f64>> = tree.iter().map(|t| vec![1.0; t.states.len()]).collect();
    for v in 0..n {
        if let Some(p) = tree[v].parent {
            // The parent's belief without v's own message.
            let outside: Vec<f64> = belief[p]
                .iter()
                .zip(&msg[v])
                .map(|(&b, &m)| if m > 0.0 { b / m } else { 0.0 })
                .collect();
            let width = tree[v].states.len();
            let matrix = &links[v];
            let d: Vec<f64> = (0..width)
                .map(|j| {
                    outside
                        .iter()
                        .enumerate()
                        .map(|(i, &o)| matrix.get(i * width + j).copied().unwrap_or(0.0) * o)
                        .sum::<f64>()
                })
                .collect();
            down[v] = normalised(d);
        }
        let b: Vec<f64> = up[v].iter().zip(&down[v]).map(|(u, d)| u * d).collect();
        belief[v] = normalised(b);
    }
    belief
}

fn normalised(mut v: Vec<f64>) -> Vec<f64> {
    let sum: f64 = v.iter().sum();
    if sum > 0.0 && sum.is_finite() {
        for x in &mut v {
            *x /= sum;
        }
    } else if !v.is_empty() {
        let u = 1.0 / v.len() as f64;
        v.iter_mut().for_each(|x| *x = u);
    }
    v
}

/// The naive resolver every comparison starts from: the first forwarding node with the prefix
/// (companions when none), whatever else is known.
pub fn naive(dir: &Directory, copy: &Copy<'_>) -> Vec<Option<NodeId>> {
    (0..copy.hop_count())
        .map(|i| {
            copy.hop(i)
                .and_then(|h| dir.candidates(h).0.first().copied())
        })
        .collect()
}

/// Feeds one resolved packet into a neighbor graph: consecutive resolved hops, the last hop
/// of a flood and its observer, an advert's origin and its first hop, and zero-hop copies
/// (origin heard by the observer directly, certain). Links count once per packet; each copy
/// credits every link it shows with its observer and SNR (`heard`, one per copy, in the same
/// order; a missing entry credits nothing), as CoreScope's per-edge observers and SNR do.
pub fn add_to_graph(
    graph: &mut Graph,
    dir: &Directory,
    ends: Ends,
    copies: &[Copy<'_>],
    hops: &[Vec<Hop>],
    heard: &[Heard],
    at: i64,
) {
    let id = |n: NodeId| dir.node(n).map(|d| short_id(&d.public_key));
    let mut seen: std::collections::HashSet<(u64, u64)> = std::collections::HashSet::new();
    // The links of one copy, deduplicated (a path may show a link twice).
    let mut links: Vec<(u64, u64)> = Vec::new();
    let mut add =
        |graph: &mut Graph, links: &mut Vec<(u64, u64)>, a: Option<u64>, b: Option<u64>, c: f64| {
            if let (Some(a), Some(b)) = (a, b)
                && a != b
                && c >= RESOLVED
            {
                let key = ordered(a, b);
                if seen.insert(key) {
                    graph.add(a, b, c, at);
                }
                if !links.contains(&key) {
                    links.push(key);
                }
            }
        };
    let origin = match ends.origin {
        Endpoint::Known(o) => id(o),
        _ => None,
    };
    for (i, (copy, hs)) in copies.iter().zip(hops).enumerate() {
        links.clear();
        let conf = |h: &Hop| h.node.map(|n| (id(n), h.confidence));
        for w in hs.windows(2) {
            if let (Some((a, ca)), Some((b, cb))) = (conf(&w[0]), conf(&w[1])) {
                add(graph, &mut links, a, b, ca * cb);
            }
        }
        let observer = copy.observer.node.and_then(id);
        if !copy.direct {
            match (hs.first(), hs.last()) {
                (Some(first), Some(last)) => {
                    if let Some((l, c)) = conf(last) {
                        add(graph, &mut links, l, observer, c);
                    }
                    if let Some((f, c)) = conf(first) {
                        add(graph, &mut links, origin, f, c);
                    }
                }
                _ => add(graph, &mut links, origin, observer, 1.0),
            }
        }
        if let Some(h) = heard.get(i) {
            for &(a, b) in &links {
                graph.observe(a, b, *h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(first: &[u8], fill: u8) -> [u8; 32] {
        let mut k = [fill; 32];
        k[..first.len()].copy_from_slice(first);
        k
    }

    /// Three forwarding nodes 0x10, 0x20, 0x30 in a line, and two copies of one packet relayed
    /// 0x10 → 0x20: one heard by node 0x30 (index 2), one by an observer that is no node.
    fn three_in_a_line() -> (Directory, [Copy<'static>; 2]) {
        let dir = Directory::new([
            node(&[0x10], 1, true, LAT, 8.0),
            node(&[0x20], 2, true, LAT + 0.05, 8.0),
            node(&[0x30], 3, true, LAT + 0.1, 8.0),
        ]);
        let o = ObserverAt {
            node: Some(2),
            pos: None,
        };
        let copies = [
            flood(&[0x10, 0x20], o),
            flood(&[0x10, 0x20], ObserverAt::default()),
        ];
        (dir, copies)
    }

    fn node(first: &[u8], fill: u8, forwards: bool, lat: f64, lon: f64) -> DirNode {
        DirNode {
            public_key: key(first, fill),
            forwards,
            pos: LatLon::new(lat, lon),
        }
    }

    fn flood<'a>(path: &'a [u8], observer: ObserverAt) -> Copy<'a> {
        Copy {
            direct: false,
            hash_size: PathHashSize::One,
            path,
            observer,
        }
    }

    /// 0.1° of latitude ≈ 11 km.
    const LAT: f64 = 47.0;

    #[test]
    fn a_companion_is_never_chosen_while_a_forwarding_node_explains_the_hop() {
        // The companion sits right next to the observer; the repeater further away but in
        // range. The hop is the repeater's.
        let dir = Directory::new([
            node(&[0xAB], 1, false, LAT, 8.0),
            node(&[0xAB], 2, true, LAT + 0.08, 8.0),
            node(&[0xCC], 3, true, LAT, 8.001),
        ]);
        let obs = ObserverAt {
            node: Some(2),
            pos: None,
        };
        let hops = resolve(&dir, &Graph::new(), Ends::default(), &[flood(&[0xAB], obs)]);
        assert_eq!(hops[0][0].node, Some(1));
        assert!(!hops[0][0].companions);
        assert!(hops[0][0].candidates.iter().all(|&(c, _)| c != 0));
        // With no forwarding node under the prefix, the companion is the explanation.
        let dir = Directory::new([
            node(&[0xAB], 1, false, LAT, 8.0),
            node(&[0xCC], 3, true, LAT, 8.001),
        ]);
        let obs = ObserverAt {
            node: Some(1),
            pos: None,
        };
        let hops = resolve(&dir, &Graph::new(), Ends::default(), &[flood(&[0xAB], obs)]);
        assert_eq!(hops[0][0].node, Some(0));
        assert!(hops[0][0].companions);
    }

    #[test]
    fn two_repeaters_sharing_a_prefix_100_km_apart_are_told_apart_by_geography() {
        // 0x5A near the observer, another 0x5A ~100 km north.
        let dir = Directory::new([
            node(&[0x5A], 1, true, LAT + 0.05, 8.0),
            node(&[0x5A], 2, true, LAT + 0.95, 8.0),
            node(&[0x01], 3, true, LAT, 8.0),
        ])
        .with_link_scale_km(10.0);
        let obs = ObserverAt {
            node: Some(2),
            pos: None,
        };
        let hops = resolve(&dir, &Graph::new(), Ends::default(), &[flood(&[0x5A], obs)]);
        assert_eq!(hops[0][0].node, Some(0));
        assert!(hops[0][0].confidence > 0.9, "{:?}", hops[0][0]);
        // An observer up north sees the other one.
        let far = ObserverAt {
            node: None,
            pos: LatLon::new(LAT + 1.0, 8.0),
        };
        let hops = resolve(&dir, &Graph::new(), Ends::default(), &[flood(&[0x5A], far)]);
        assert_eq!(hops[0][0].node, Some(1));
    }

    #[test]
    fn the_neighbours_in_the_path_place_a_hop() {
        // Hop 2 (0x77) has two candidates, each far from the observer's side... resolved by
        // the hop before it: a unique 0x10 next to one of them.
        let dir = Directory::new([
            node(&[0x10], 1, true, LAT, 8.0),
            node(&[0x77], 2, true, LAT + 0.07, 8.0),
            node(&[0x77], 3, true, LAT - 0.07, 8.0),
            node(&[0x20], 4, true, LAT + 0.14, 8.0),
        ])
        .with_link_scale_km(8.0);
        let obs = ObserverAt {
            node: None,
            pos: None,
        };
        let hops = resolve(
            &dir,
            &Graph::new(),
            Ends::default(),
            &[flood(&[0x10, 0x77, 0x20], obs)],
        );
        assert_eq!(hops[0][1].node, Some(1));
        assert_eq!(hops[0][0].node, Some(0));
        assert_eq!(hops[0][2].node, Some(3));
    }

    #[test]
    fn the_graph_decides_what_geography_cannot() {
        // No positions at all: two 0x42 repeaters; the graph has seen one next to 0x10.
        let dir = Directory::new([
            node(&[0x10], 1, true, 0.0, 0.0),
            node(&[0x42], 2, true, 0.0, 0.0),
            node(&[0x42], 3, true, 0.0, 0.0),
        ]);
        let mut g = Graph::new();
        for _ in 0..20 {
            g.add(
                short_id(&key(&[0x10], 1)),
                short_id(&key(&[0x42], 3)),
                0.9,
                1,
            );
        }
        let obs = ObserverAt::default();
        let hops = resolve(&dir, &g, Ends::default(), &[flood(&[0x10, 0x42], obs)]);
        assert_eq!(hops[0][1].node, Some(2));
        assert!(hops[0][1].confidence > 0.7);
        // Without the graph it is a coin toss, and says so.
        let hops = resolve(
            &dir,
            &Graph::new(),
            Ends::default(),
            &[flood(&[0x10, 0x42], obs)],
        );
        assert!(hops[0][1].confidence < 0.6, "{:?}", hops[0][1]);
    }

    #[test]
    fn copies_of_one_packet_share_their_relays() {
        // Two observers: one near each 0x33 candidate would disagree alone; together, the
        // shared first hop 0x33 must be the one both can explain: observer A hears it
        // directly, observer B hears it through 0x44, which is next to the southern one.
        let dir = Directory::new([
            node(&[0x33], 1, true, LAT + 0.3, 8.0),
            node(&[0x33], 2, true, LAT - 0.3, 8.0),
            node(&[0x44], 3, true, LAT - 0.36, 8.0),
        ])
        .with_link_scale_km(10.0);
        let a = ObserverAt {
            node: None,
            pos: LatLon::new(LAT - 0.25, 8.0),
        };
        let b = ObserverAt {
            node: None,
            pos: LatLon::new(LAT - 0.42, 8.0),
        };
        let copies = [flood(&[0x33], a), flood(&[0x33, 0x44], b)];
        let hops = resolve(&dir, &Graph::new(), Ends::default(), &copies);
        assert_eq!(hops[0][0].node, Some(1));
        assert_eq!(hops[1][0], hops[0][0]);
        assert_eq!(hops[1][1].node, Some(2));
    }

    #[test]
    fn an_advert_origin_places_the_first_hop() {
        let dir = Directory::new([
            node(&[0x99], 1, false, LAT, 8.0),
            node(&[0x61], 2, true, LAT + 0.04, 8.0),
            node(&[0x61], 3, true, LAT + 0.9, 8.0),
        ])
        .with_link_scale_km(10.0);
        let ends = Ends {
            origin: Endpoint::Known(0),
            destination: Endpoint::Unknown,
        };
        let hops = resolve(
            &dir,
            &Graph::new(),
            ends,
            &[flood(&[0x61], ObserverAt::default())],
        );
        assert_eq!(hops[0][0].node, Some(1));
    }

    #[test]
    fn an_observer_that_forwarded_is_the_hop_after_what_it_heard() {
        // Observer O (0x70…) heard 0x10's transmission; another observer heard 0x10 then 0x70:
        // that 0x70 is O, not the other 0x70 (positions unknown, so only this rule tells).
        let dir = Directory::new([
            node(&[0x10], 1, true, 0.0, 0.0),
            node(&[0x70], 2, true, 0.0, 0.0),
            node(&[0x70], 3, true, 0.0, 0.0),
        ]);
        let o = ObserverAt {
            node: Some(2),
            pos: None,
        };
        let copies = [
            flood(&[0x10], o),
            flood(&[0x10, 0x70], ObserverAt::default()),
        ];
        let hops = resolve(&dir, &Graph::new(), Ends::default(), &copies);
        assert_eq!(hops[1][1].node, Some(2));
        assert!(hops[1][1].confidence > 0.8);
    }

    #[test]
    fn a_prefix_no_known_node_has_is_unresolved_and_so_is_an_impossible_one() {
        let dir = Directory::new([node(&[0x5A], 1, true, LAT + 3.0, 8.0)]).with_link_scale_km(10.0);
        let obs = ObserverAt {
            node: None,
            pos: LatLon::new(LAT, 8.0),
        };
        let hops = resolve(
            &dir,
            &Graph::new(),
            Ends::default(),
            &[flood(&[0x01, 0x5A], obs)],
        );
        assert_eq!(hops[0][0].node, None);
        assert!(hops[0][0].candidates.is_empty());
        // The only 0x5A is 330 km from the observer that heard it directly: not it.
        assert_eq!(hops[0][1].node, None, "{:?}", hops[0][1]);
    }

    #[test]
    fn direct_copies_share_the_end_of_their_route() {
        // Route …→0x21→0x22→dest; one observer hears [0x21,0x22], another [0x22].
        let dir = Directory::new([
            node(&[0x21], 1, true, LAT, 8.0),
            node(&[0x22], 2, true, LAT + 0.06, 8.0),
            node(&[0x22], 3, true, LAT + 2.0, 8.0),
        ])
        .with_link_scale_km(8.0);
        let d = |path| Copy {
            direct: true,
            hash_size: PathHashSize::One,
            path,
            observer: ObserverAt {
                node: None,
                pos: LatLon::new(LAT - 0.05, 8.0),
            },
        };
        let copies = [d(&[0x21, 0x22]), d(&[0x22])];
        let hops = resolve(&dir, &Graph::new(), Ends::default(), &copies);
        assert_eq!(hops[0][0].node, Some(0));
        assert_eq!(hops[0][1].node, Some(1));
        assert_eq!(hops[1][0], hops[0][1]);
    }

    #[test]
    fn confidences_are_probabilities() {
        let dir = Directory::new(
            (0..6u8).map(|i| node(&[0x42], i, true, LAT + f64::from(i) * 0.01, 8.0)),
        );
        let hops = resolve(
            &dir,
            &Graph::new(),
            Ends::default(),
            &[flood(&[0x42, 0x42], ObserverAt::default())],
        );
        for h in &hops[0] {
            let total: f64 = h.candidates.iter().map(|c| c.1).sum();
            assert!(total <= 1.0 + 1e-9 && total > 0.5, "{h:?}");
            assert!(h.candidates.windows(2).all(|w| w[0].1 >= w[1].1));
        }
    }

    #[test]
    fn the_graph_counts_each_link_once_per_packet_and_is_bounded() {
        let (dir, copies) = three_in_a_line();
        let hops = resolve(&dir, &Graph::new(), Ends::default(), &copies);
        let mut g = Graph::new();
        add_to_graph(&mut g, &dir, Ends::default(), &copies, &hops, &[], 5);
        let (a, b, c) = (
            short_id(&key(&[0x10], 1)),
            short_id(&key(&[0x20], 2)),
            short_id(&key(&[0x30], 3)),
        );
        assert_eq!(g.get(a, b).map(|e| e.count), Some(1));
        assert_eq!(
            g.get(b, c).map(|e| e.count),
            Some(1),
            "last hop and its observer"
        );
        assert_eq!(g.len(), 2);
        let mut full = Graph::new();
        for i in 0..(MAX_EDGES as u64 + 10) {
            full.add(i, i + 1_000_000_000, 1.0, 0);
        }
        assert_eq!(full.len(), MAX_EDGES);
        assert_eq!(full.refused, 10);
    }

    #[test]
    fn each_copy_credits_its_links_with_its_observer_and_snr() {
        // Two observers hear the same relays 0x10 → 0x20; observer 7 is node 0x30 itself.
        let (dir, copies) = three_in_a_line();
        let hops = resolve(&dir, &Graph::new(), Ends::default(), &copies);
        let heard = [
            Heard {
                observer: Some(7),
                snr: Some(8.0),
            },
            Heard {
                observer: Some(9),
                snr: Some(-3.0),
            },
        ];
        let mut g = Graph::new();
        add_to_graph(&mut g, &dir, Ends::default(), &copies, &hops, &heard, 5);
        let (a, b, c) = (
            short_id(&key(&[0x10], 1)),
            short_id(&key(&[0x20], 2)),
            short_id(&key(&[0x30], 3)),
        );
        let ab = g.get(a, b).copied().unwrap();
        assert_eq!(ab.count, 1, "still once per packet");
        assert_eq!(ab.observers.ids(), &[7, 9]);
        assert_eq!(ab.observers.distinct(), 2);
        assert_eq!(ab.snr_count, 2);
        assert_eq!(ab.avg_snr(), Some(2.5));
        // Only the first copy shows the last hop and its observer.
        let bc = g.get(b, c).copied().unwrap();
        assert_eq!(bc.observers.ids(), &[7]);
        assert_eq!(bc.avg_snr(), Some(8.0));
        // No SNR, a NaN SNR and no observer credit nothing of theirs.
        let mut g = Graph::new();
        let heard = [
            Heard {
                observer: None,
                snr: Some(f64::NAN),
            },
            Heard::default(),
        ];
        add_to_graph(&mut g, &dir, Ends::default(), &copies, &hops, &heard, 5);
        let ab = g.get(a, b).copied().unwrap();
        assert_eq!((ab.snr_count, ab.avg_snr()), (0, None));
        assert!(ab.observers.ids().is_empty());
        // Observing a link the graph does not hold adds nothing.
        g.observe(a, 12345, heard[1]);
        assert!(g.get(a, 12345).is_none());
    }

    #[test]
    fn an_edge_names_at_most_eight_observers_and_counts_the_rest() {
        let mut e = EdgeObservers::default();
        for round in 0..3 {
            for id in 0..5u32 {
                e.add(id);
            }
            assert_eq!(
                e.distinct(),
                5,
                "repeats are not new observers (round {round})"
            );
        }
        for id in 5..200u32 {
            e.add(id);
            e.add(id);
        }
        assert_eq!(
            e.ids(),
            &[0, 1, 2, 3, 4, 5, 6, 7],
            "the first eight, in order"
        );
        // 200 distinct observers: the sketch's estimate is rough but of the right size.
        let d = e.distinct();
        assert!((100..=320).contains(&d), "{d}");
        for id in 0..200u32 {
            e.add(id);
        }
        assert_eq!(e.distinct(), d, "nothing new, no change");
        assert_eq!(
            std::mem::size_of::<EdgeObservers>(),
            48,
            "fixed size per edge"
        );
        let p = EdgeObservers::from_parts([3, 3, 4], 40);
        assert_eq!((p.ids(), p.distinct()), (&[3, 4][..], 40));
        let p = EdgeObservers::from_parts(0..20, 0);
        assert_eq!((p.ids().len(), p.distinct()), (8, 8));
    }

    #[test]
    fn hostile_heads_resolve_to_nothing_instead_of_panicking() {
        let dir = Directory::new([node(&[0x10], 1, true, LAT, 8.0)]);
        for head in [
            &[][..],
            &[0x15][..],
            &[0x15, 0xFF, 1, 2][..],
            &[0x25, 0x03, 0x10][..],
        ] {
            if let Some(c) = Copy::from_head(head, ObserverAt::default()) {
                let _ = resolve(&dir, &Graph::new(), Ends::default(), &[c]);
            }
        }
        assert!(LatLon::new(f64::NAN, 1.0).is_none());
        assert!(LatLon::new(0.0, 0.0).is_none());
        assert!(LatLon::new(91.0, 0.0).is_none());
    }
}
