//! Multi-byte path-hash capability inference (`multibyte-capability.md` §7.1–7.3).
//!
//! Evidence, per node, over a window of observations:
//! - **advert**: a verified ADVERT whose path-length byte says 2 or 3 bytes. A DIRECT or
//!   TRANSPORT_DIRECT advert with path-length byte exactly `0x00` carries no information and is
//!   skipped; `0x40` on a direct route *is* information.
//! - **path**: a packet whose header payload type is not TRACE (PATH counts) and whose path uses
//!   2- or 3-byte hashes: each hop is matched by key prefix against known nodes. Nodes whose role
//!   forwards by default (repeater, room, sensor) are the candidates; companions only when none
//!   of those match. One candidate is *unique* evidence, several are *ambiguous* evidence for
//!   each, none counts an *unknown relay* prefix.
//!
//! Status: `confirmed` (advert), `suspected` (path), `unknown`, merged monotonically with what
//! was persisted so that a node never regresses when its evidence ages out of the window.

use std::collections::{HashMap, HashSet};

use meshcore::{Packet, PayloadType};

/// Capability status, ordered: unknown < suspected < confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// No evidence.
    Unknown = 0,
    /// Path evidence only.
    Suspected = 1,
    /// Advert evidence.
    Confirmed = 2,
}

impl Status {
    /// `confirmed`, `suspected` or `unknown`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Suspected => "suspected",
            Status::Confirmed => "confirmed",
        }
    }

    /// From the stored integer (0, 1, 2); anything else is unknown.
    pub const fn from_int(v: i64) -> Status {
        match v {
            2 => Status::Confirmed,
            1 => Status::Suspected,
            _ => Status::Unknown,
        }
    }
}

/// A known node (from `nodes`).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Public key, 64 lowercase hex digits.
    pub public_key: String,
    /// Name, untrusted text.
    pub name: Option<String>,
    /// `repeater`, `room`, `companion`, `sensor` or `type-N`.
    pub role: String,
}

/// What the writer persisted for a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Persisted {
    /// Status (suspected or confirmed).
    pub status: Status,
    /// `advert` or `path`.
    pub evidence: String,
    /// Largest size seen, when known.
    pub max_hash_size: Option<u8>,
    /// First multi-byte evidence ever, Unix ms, when known.
    pub upgraded_at: Option<i64>,
}

/// One stored observation, as the reader loads it.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Unix ms.
    pub received_at: i64,
    /// Observer (any stable small id).
    pub observer: u32,
    /// The frame up to its payload (header, transport codes, path-length byte, path).
    pub head: &'a [u8],
    /// Packet hash (for samples).
    pub hash: u64,
    /// For adverts with a verified signature: the advertiser's public key.
    pub verified_advert_from: Option<&'a str>,
}

/// The hop resolver's answer for one hop (`crate::hops`), in terms of this inference's nodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResolvedHop {
    /// Index into the inference's nodes of the likeliest relay, if any.
    pub node: Option<u32>,
    /// Its posterior probability.
    pub confidence: f64,
}

/// Confidence from which a resolved hop is evidence as strong as a unique prefix.
pub const SURE_HOP: f64 = 0.9;
/// Confidence from which a resolved hop is weak (`low`) evidence for its node alone.
pub const LIKELY_HOP: f64 = 0.5;

/// Evidence counters of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    /// Observations.
    pub count: u64,
    /// First, Unix ms.
    pub first: i64,
    /// Last, Unix ms.
    pub last: i64,
}

impl Counter {
    fn add(&mut self, at: i64) {
        if self.count == 0 {
            self.first = at;
            self.last = at;
        } else {
            self.first = self.first.min(at);
            self.last = self.last.max(at);
        }
        self.count += 1;
    }
}

/// Where a status came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This cycle's evidence.
    Computed,
    /// The persisted value, higher than this cycle's evidence.
    Persisted,
}

/// The capability of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Capability {
    /// Public key.
    pub public_key: String,
    /// Name.
    pub name: Option<String>,
    /// Role.
    pub role: String,
    /// Served status (max of computed and persisted).
    pub status: Status,
    /// `advert`, `path` or empty.
    pub evidence: &'static str,
    /// Largest size in the evidence used; 1 when unknown.
    pub max_hash_size: u8,
    /// `high` (advert or unique path) or `low` (ambiguous path only); empty when unknown.
    pub confidence: &'static str,
    /// Which won.
    pub source: Source,
    /// Multi-byte adverts (size 2 or 3).
    pub advert_mb: Counter,
    /// All informative adverts (any size).
    pub adverts: Counter,
    /// Size of the latest informative advert.
    pub latest_advert_size: Option<u8>,
    /// Multi-byte hops where this node was the only candidate.
    pub path_unique: Counter,
    /// Multi-byte hops shared with other candidates.
    pub path_ambiguous: Counter,
    /// Up to 5 packet hashes of the evidence.
    pub samples: Vec<u64>,
    /// First multi-byte evidence ever seen (persisted or this window), Unix ms.
    pub upgraded_at: Option<i64>,
    /// A repeater relaying actively in the window, next to a relay that carries multi-byte
    /// traffic, in a neighbourhood where observers hear enough multi-byte traffic that it would
    /// have shown up on it, yet with no multi-byte evidence of its own: who is holding the
    /// region back.
    pub legacy_suspect: bool,
    /// Observers that heard this node's own adverts in the window (sorted).
    pub heard_by: Vec<u32>,
}

/// The result of one cycle.
#[derive(Debug, Clone, Default)]
pub struct CapabilityReport {
    /// Every known node, ordered confirmed, suspected, unknown; then name (case-insensitive);
    /// then public key.
    pub nodes: Vec<Capability>,
    /// Multi-byte hop prefixes that matched no known node, with counts.
    pub unknown_relays: Vec<(String, u64)>,
    /// Observations per path hash size (1, 2, 3), TRACE excluded.
    pub distribution: [u64; 3],
    /// The same per hour (start of the hour, Unix ms), ascending.
    pub hourly: Vec<(i64, [u64; 3])>,
    /// Most frequent multi-byte hops: hex, size, count, and the public key of the only
    /// candidate when there is exactly one.
    pub top_hops: Vec<(String, u8, u64, Option<String>)>,
}

impl CapabilityReport {
    /// O(1) lookup by public key.
    pub fn index(&self) -> HashMap<String, usize> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.public_key.clone(), i))
            .collect()
    }
}

/// Unambiguous 1-byte relay hops that make a repeater "active" for the legacy-suspect rule.
pub const LEGACY_MIN_RELAYS: u64 = 3;
/// Multi-byte observations an observer must hear for its area to count as "where multi-byte
/// flows".
pub const LEGACY_MIN_MB_TRAFFIC: u64 = 5;
/// Multi-byte paths a capable relay would have been expected on before its absence from all of
/// them makes it a legacy suspect.
pub const LEGACY_MIN_EXPECTED: f64 = 3.0;

/// Roles whose firmware forwards by default.
fn forwards_by_default(role: &str) -> bool {
    matches!(role, "repeater" | "room" | "sensor")
}

#[derive(Default)]
struct Acc {
    advert_mb: Counter,
    advert_max: u8,
    adverts: Counter,
    latest_advert: Option<(i64, u8)>,
    path_unique: Counter,
    path_ambiguous: Counter,
    path_max: u8,
    samples: Vec<u64>,
    relay_1byte_unique: u64,
    advert_observers: HashSet<u32>,
    /// Observers that heard its adverts directly or through one relay: its neighbourhood.
    near_observers: HashSet<u32>,
    /// Relays seen next to it on 1-byte paths (both hops unambiguous).
    neighbours: HashSet<u32>,
}

impl Acc {
    fn sample(&mut self, h: u64) {
        if self.samples.len() < 5 && !self.samples.contains(&h) {
            self.samples.push(h);
        }
    }
}

/// Key prefixes of width 1, 2 and 3 bytes → node indices.
struct Prefixes {
    by_width: [HashMap<u32, Vec<u32>>; 3],
}

fn prefix_key(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |k, b| (k << 8) | u32::from(*b))
}

impl Prefixes {
    fn new(nodes: &[Node]) -> Prefixes {
        let mut by_width: [HashMap<u32, Vec<u32>>; 3] = Default::default();
        for (i, n) in nodes.iter().enumerate() {
            let Ok(key) = hex::decode(n.public_key.get(..6).unwrap_or_default()) else {
                continue;
            };
            for (w, map) in by_width.iter_mut().enumerate() {
                if let Some(p) = key.get(..=w) {
                    map.entry(prefix_key(p)).or_default().push(i as u32);
                }
            }
        }
        Prefixes { by_width }
    }

    /// Candidates for a hop: forwarding roles first, companions only if none.
    fn candidates(&self, hop: &[u8], nodes: &[Node]) -> Vec<u32> {
        let Some(map) = hop.len().checked_sub(1).and_then(|w| self.by_width.get(w)) else {
            return Vec::new();
        };
        let Some(all) = map.get(&prefix_key(hop)) else {
            return Vec::new();
        };
        let fwd: Vec<u32> = all
            .iter()
            .copied()
            .filter(|&i| {
                nodes
                    .get(i as usize)
                    .is_some_and(|n| forwards_by_default(&n.role))
            })
            .collect();
        if fwd.is_empty() { all.clone() } else { fwd }
    }
}

/// Incremental inference: feed observations one at a time (straight from the database
/// cursor), so memory is bounded by the number of nodes and distinct hops, not by the window.
pub struct Inference<'n> {
    nodes: &'n [Node],
    by_key: HashMap<&'n str, usize>,
    prefixes: Prefixes,
    acc: Vec<Acc>,
    mb_observers: HashMap<u32, u64>,
    all_observers: HashMap<u32, u64>,
    unknown: HashMap<Vec<u8>, u64>,
    distribution: [u64; 3],
    hourly: HashMap<i64, [u64; 3]>,
    hops: HashMap<Vec<u8>, (u64, Option<usize>)>,
}

impl<'n> Inference<'n> {
    /// Starts an inference over `nodes`.
    pub fn new(nodes: &'n [Node]) -> Inference<'n> {
        Inference {
            nodes,
            by_key: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.public_key.as_str(), i))
                .collect(),
            prefixes: Prefixes::new(nodes),
            acc: (0..nodes.len()).map(|_| Acc::default()).collect(),
            mb_observers: HashMap::new(),
            all_observers: HashMap::new(),
            unknown: HashMap::new(),
            distribution: [0; 3],
            hourly: HashMap::new(),
            hops: HashMap::new(),
        }
    }

    /// Accounts for one observation (already restricted to the window), matching hops by
    /// key prefix alone.
    pub fn add(&mut self, o: &Observation<'_>) {
        self.add_resolved(o, None);
    }

    /// Accounts for one observation whose hops the resolver attributed (`resolved`, one per
    /// path hop). A resolved hop is evidence for its node only: unique-strength from
    /// [`SURE_HOP`], weak from [`LIKELY_HOP`], none below (it no longer spreads over every node
    /// sharing the prefix). Without `resolved` (or with the wrong length), prefixes decide.
    pub fn add_resolved(&mut self, o: &Observation<'_>, resolved: Option<&[ResolvedHop]>) {
        let nodes: &[Node] = self.nodes;
        let Inference {
            by_key,
            prefixes,
            acc,
            mb_observers,
            all_observers,
            unknown,
            distribution,
            hourly,
            hops,
            ..
        } = self;
        // The head frames on its own (an empty payload is framing-valid); reserved sizes and
        // impossible paths fail here and never count.
        let Ok(p) = Packet::decode(o.head) else {
            return;
        };
        let resolved = resolved.filter(|r| r.len() == usize::from(p.hop_count()));
        let size = p.path_len().hash_size().bytes();
        let is_trace = p.payload_type() == PayloadType::Trace;

        if let Some(key) = o.verified_advert_from
            && p.payload_type() == PayloadType::Advert
            && let Some(&i) = by_key.get(key)
        {
            let no_info = p.route_type().is_direct() && p.path_len().to_byte() == 0;
            if let (false, Some(a)) = (no_info, acc.get_mut(i)) {
                a.adverts.add(o.received_at);
                a.advert_observers.insert(o.observer);
                if p.hop_count() <= 1 {
                    a.near_observers.insert(o.observer);
                }
                if a.latest_advert.is_none_or(|(t, _)| o.received_at >= t) {
                    a.latest_advert = Some((o.received_at, size as u8));
                }
                if size >= 2 {
                    a.advert_mb.add(o.received_at);
                    a.advert_max = a.advert_max.max(size as u8);
                    a.sample(o.hash);
                }
            }
        }
        if is_trace {
            return; // TRACE paths are SNRs; its route width comes from flags.
        }
        if let Some(d) = distribution.get_mut(size - 1) {
            *d += 1;
        }
        let hour = o.received_at.div_euclid(3_600_000) * 3_600_000;
        if let Some(d) = hourly.entry(hour).or_default().get_mut(size - 1) {
            *d += 1;
        }
        if size >= 2 {
            *mb_observers.entry(o.observer).or_default() += 1;
        }
        *all_observers.entry(o.observer).or_default() += 1;
        if size == 1 {
            // Adjacency from consecutive unambiguous 1-byte hops: who relays next to whom.
            let unique: Vec<Option<u32>> = match resolved {
                Some(r) => r
                    .iter()
                    .map(|h| h.node.filter(|_| h.confidence >= SURE_HOP))
                    .collect(),
                None => p
                    .path_hops()
                    .map(|h| match prefixes.candidates(h, nodes).as_slice() {
                        [only] => Some(*only),
                        _ => None,
                    })
                    .collect(),
            };
            for w in unique.windows(2) {
                if let [Some(a), Some(b)] = w
                    && a != b
                {
                    if let Some(x) = acc.get_mut(*a as usize) {
                        x.neighbours.insert(*b);
                    }
                    if let Some(x) = acc.get_mut(*b as usize) {
                        x.neighbours.insert(*a);
                    }
                }
            }
        }
        for (i, hop) in p.path_hops().enumerate() {
            let c = prefixes.candidates(hop, nodes);
            let r = resolved.and_then(|r| r.get(i));
            if size == 1 {
                // 1-byte relays only tell us a node is active (for legacy suspects).
                let sure = match r {
                    Some(r) => r.node.filter(|_| r.confidence >= SURE_HOP),
                    None => match c.as_slice() {
                        [only] => Some(*only),
                        _ => None,
                    },
                };
                if let Some(a) = sure.and_then(|n| acc.get_mut(n as usize)) {
                    a.relay_1byte_unique += 1;
                }
                continue;
            }
            let e = hops.entry(hop.to_vec()).or_insert((0, None));
            e.0 += 1;
            if let [only] = c.as_slice() {
                e.1 = Some(*only as usize);
            }
            if let Some(r) = r
                && !c.is_empty()
            {
                if let Some(n) = r.node.filter(|_| r.confidence >= LIKELY_HOP)
                    && let Some(a) = acc.get_mut(n as usize)
                {
                    if r.confidence >= SURE_HOP {
                        a.path_unique.add(o.received_at);
                    } else {
                        a.path_ambiguous.add(o.received_at);
                    }
                    a.path_max = a.path_max.max(size as u8);
                    a.sample(o.hash);
                }
                continue;
            }
            match c.as_slice() {
                [] => *unknown.entry(hop.to_vec()).or_default() += 1,
                [only] => {
                    if let Some(a) = acc.get_mut(*only as usize) {
                        a.path_unique.add(o.received_at);
                        a.path_max = a.path_max.max(size as u8);
                        a.sample(o.hash);
                    }
                }
                many => {
                    for i in many {
                        if let Some(a) = acc.get_mut(*i as usize) {
                            a.path_ambiguous.add(o.received_at);
                            a.path_max = a.path_max.max(size as u8);
                            a.sample(o.hash);
                        }
                    }
                }
            }
        }
    }

    /// Statuses for every node, merged with `persisted` (by public key).
    pub fn finish(self, persisted: &HashMap<String, Persisted>) -> CapabilityReport {
        let nodes: &[Node] = self.nodes;
        let Inference {
            acc,
            mb_observers,
            all_observers,
            unknown,
            distribution,
            hourly,
            hops,
            ..
        } = self;
        // Whether each node carried multi-byte traffic (for its neighbours' legacy rule).
        let carried_mb: Vec<bool> = acc
            .iter()
            .map(|a| a.advert_mb.count + a.path_unique.count + a.path_ambiguous.count > 0)
            .collect();
        let mut out: Vec<Capability> = nodes
            .iter()
            .zip(acc)
            .map(|(n, a)| {
                let (computed, evidence, max, confidence) = if a.advert_mb.count > 0 {
                    (
                        Status::Confirmed,
                        "advert",
                        a.advert_max.max(a.path_max),
                        "high",
                    )
                } else if a.path_unique.count > 0 {
                    (Status::Suspected, "path", a.path_max, "high")
                } else if a.path_ambiguous.count > 0 {
                    (Status::Suspected, "path", a.path_max, "low")
                } else {
                    (Status::Unknown, "", 1, "")
                };
                let first_mb = [a.advert_mb, a.path_unique, a.path_ambiguous]
                    .iter()
                    .filter(|c| c.count > 0)
                    .map(|c| c.first)
                    .min();
                let p = persisted.get(&n.public_key);
                let (status, evidence, max, confidence, source) = match p {
                    Some(p) if p.status > computed => (
                        p.status,
                        if p.evidence == "advert" {
                            "advert"
                        } else {
                            "path"
                        },
                        p.max_hash_size.unwrap_or(2).clamp(2, 3).max(max),
                        if p.status == Status::Confirmed {
                            "high"
                        } else {
                            "low"
                        },
                        Source::Persisted,
                    ),
                    _ => (computed, evidence, max, confidence, Source::Computed),
                };
                let upgraded_at = match (p.and_then(|p| p.upgraded_at), first_mb) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                // Holding back = relaying actively (several unambiguous 1-byte hops) where observers
                // regularly hear multi-byte traffic, yet never on a multi-byte path itself. A
                // capable relay that busy would have shown up on one.
                let active = a.relay_1byte_unique >= LEGACY_MIN_RELAYS;
                let mut heard_by: Vec<u32> = a.advert_observers.iter().copied().collect();
                heard_by.sort_unstable();
                // Where multi-byte flows: the share of multi-byte traffic at the observers in
                // this node's neighbourhood (they hear its adverts directly or via one relay). A capable relay carrying `relay_1byte_unique` 1-byte packets
                // there would be expected on about `n × f / (1 − f)` multi-byte paths.
                let (mb, all) = a.near_observers.iter().fold((0u64, 0u64), |(m, t), o| {
                    (
                        m + mb_observers.get(o).copied().unwrap_or(0),
                        t + all_observers.get(o).copied().unwrap_or(0),
                    )
                });
                let f = if all == 0 {
                    0.0
                } else {
                    mb as f64 / all as f64
                };
                let expected_mb = a.relay_1byte_unique as f64 * f / (1.0 - f).max(0.05);
                // And multi-byte traffic reached its doorstep: a relay next to it carried some.
                let neighbour_carries_mb = a
                    .neighbours
                    .iter()
                    .any(|&x| carried_mb.get(x as usize).copied().unwrap_or(false));
                let heard_where_mb_flows = mb >= LEGACY_MIN_MB_TRAFFIC
                    && expected_mb >= LEGACY_MIN_EXPECTED
                    && neighbour_carries_mb;
                Capability {
                    public_key: n.public_key.clone(),
                    name: n.name.clone(),
                    role: n.role.clone(),
                    status,
                    evidence,
                    max_hash_size: max.max(1),
                    confidence,
                    source,
                    advert_mb: a.advert_mb,
                    adverts: a.adverts,
                    latest_advert_size: a.latest_advert.map(|(_, s)| s),
                    path_unique: a.path_unique,
                    path_ambiguous: a.path_ambiguous,
                    samples: a.samples,
                    upgraded_at,
                    legacy_suspect: n.role == "repeater"
                        && status == Status::Unknown
                        && active
                        && heard_where_mb_flows,
                    heard_by,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.status
                .cmp(&a.status)
                .then_with(|| {
                    let na = a.name.as_deref().unwrap_or("").to_lowercase();
                    let nb = b.name.as_deref().unwrap_or("").to_lowercase();
                    na.cmp(&nb)
                })
                .then_with(|| a.public_key.cmp(&b.public_key))
        });
        let mut unknown_relays: Vec<(String, u64)> = unknown
            .into_iter()
            .map(|(k, v)| (hex::encode(k), v))
            .collect();
        unknown_relays.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        unknown_relays.truncate(50);
        let mut hourly: Vec<(i64, [u64; 3])> = hourly.into_iter().collect();
        hourly.sort_unstable_by_key(|h| h.0);
        let mut top_hops: Vec<(String, u8, u64, Option<String>)> = hops
            .into_iter()
            .map(|(k, (n, who))| {
                let size = k.len() as u8;
                let key = who.and_then(|i| nodes.get(i)).map(|n| n.public_key.clone());
                (hex::encode(k), size, n, key)
            })
            .collect();
        top_hops.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        top_hops.truncate(50);
        CapabilityReport {
            nodes: out,
            unknown_relays,
            distribution,
            hourly,
            top_hops,
        }
    }
}

/// Infers capability for `nodes` from `observations` (already restricted to the window) and
/// merges it with `persisted` (by public key).
pub fn infer(
    nodes: &[Node],
    observations: &[Observation<'_>],
    persisted: &HashMap<String, Persisted>,
) -> CapabilityReport {
    let mut inf = Inference::new(nodes);
    for o in observations {
        inf.add(o);
    }
    inf.finish(persisted)
}
