//! Scores the hop resolver against the simulator's ground truth: shared by the accuracy test
//! (`tests/hop_accuracy.rs`) and the benchmark (`examples/hop_accuracy.rs`).

use std::collections::HashMap;

use analytics::hops::{self, Copy, DirNode, Directory, Endpoint, Ends, Graph, LatLon, ObserverAt};
use meshcore::{Packet, PayloadType};
use sim::{Heard, Mesh, RoleMix, SimConfig};

/// Accuracy figures of one resolver on one run.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    /// Hops whose relay is a known node (every hop in the simulator).
    pub hops: u64,
    /// Hops the resolver attributed.
    pub resolved: u64,
    /// Of those, attributed to the right node.
    pub correct: u64,
    /// Per confidence band (lower bound in tenths, 5..=9, and 95 % as 10): (hops, correct).
    pub bands: [(u64, u64); 6],
}

impl Figures {
    /// Correct among resolved.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct, self.resolved)
    }
    /// Resolved among hops of known relays.
    pub fn coverage(&self) -> f64 {
        ratio(self.resolved, self.hops)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// The labels of [`Figures::bands`].
pub const BANDS: [&str; 6] = [
    "0.5-0.6", "0.6-0.7", "0.7-0.8", "0.8-0.9", "0.9-0.95", "0.95-1",
];

fn band(c: f64) -> usize {
    match c {
        c if c >= 0.95 => 5,
        c if c >= 0.9 => 4,
        c if c >= 0.8 => 3,
        c if c >= 0.7 => 2,
        c if c >= 0.6 => 1,
        _ => 0,
    }
}

/// One run's result: the resolver's figures and the naive resolver's, all hops and 1-byte
/// hops only (the hard case), and the candidate statistics of the mesh.
#[derive(Debug, Default, Clone)]
pub struct Run {
    /// The resolver, all hop sizes.
    pub resolver: Figures,
    /// The resolver, 1-byte hops.
    pub resolver_1byte: Figures,
    /// First candidate, all hop sizes.
    pub naive: Figures,
    /// First candidate, 1-byte hops.
    pub naive_1byte: Figures,
    /// 1-byte hops with two or more forwarding candidates / 1-byte hops.
    pub ambiguous_1byte_share: f64,
    /// Packets and observations scored.
    pub packets: usize,
    /// Observations.
    pub copies: usize,
    /// Neighbor-graph edges after the first pass.
    pub graph_edges: usize,
    /// Time of the scored pass (resolution only).
    pub resolve_time: std::time::Duration,
}

/// The simulator's nodes as the resolver's directory (every node adverts its position).
pub fn directory(mesh: &Mesh) -> Directory {
    Directory::new(mesh.nodes.iter().map(|n| DirNode {
        public_key: n.public_key,
        forwards: n.role.name() != "companion",
        pos: LatLon::new(n.lat, n.lon),
    }))
}

fn ends(dir: &Directory, frame: &[u8]) -> Ends {
    let Ok(p) = Packet::decode(frame) else {
        return Ends::default();
    };
    let pl = p.payload_bytes();
    match p.payload_type() {
        PayloadType::Advert => Ends {
            origin: pl
                .get(..32)
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .and_then(|k| dir.id_of(&k))
                .map_or(Endpoint::Unknown, Endpoint::Known),
            destination: Endpoint::Unknown,
        },
        PayloadType::Req | PayloadType::Response | PayloadType::TxtMsg | PayloadType::Path => {
            match pl {
                [d, s, ..] => Ends {
                    origin: Endpoint::Hash(*s),
                    destination: Endpoint::Hash(*d),
                },
                _ => Ends::default(),
            }
        }
        _ => Ends::default(),
    }
}

/// Runs `steps` traffic events on the mesh of `cfg` and `roles` and scores the resolver
/// (second pass, with the graph the first pass built, as the reader's cycle does) and the
/// naive resolver.
pub fn run(cfg: &SimConfig, roles: &RoleMix, steps: usize) -> Run {
    let mut mesh = Mesh::generate_with(cfg, roles);
    let mut heard = mesh.advert_all(0);
    for s in 0..steps {
        heard.extend(mesh.step(60_000 + s as i64 * 500));
    }
    let dir = directory(&mesh);
    // Group the copies of each packet (by packet hash, in order of first copy).
    let mut groups: Vec<Vec<&Heard>> = Vec::new();
    let mut by_hash: HashMap<u64, usize> = HashMap::new();
    for h in &heard {
        let Ok(p) = Packet::decode(&h.frame) else {
            continue;
        };
        let key = u64::from_be_bytes(p.hash().0);
        let i = *by_hash.entry(key).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[i].push(h);
    }
    let observer_at = |h: &Heard| ObserverAt {
        node: dir.id_of(&mesh.nodes[h.observer].public_key),
        pos: None,
    };
    // Pass 1: build the graph and measure the unknown relays on multi-byte hops, as the
    // reader's cycle does for the next one.
    let mut graph = Graph::new();
    let (mut mb_hops, mut mb_unknown) = (0u64, 0u64);
    for g in &groups {
        let e = ends(&dir, &g[0].frame);
        let copies: Vec<Copy<'_>> = g
            .iter()
            .filter_map(|h| Copy::from_head(&h.frame, observer_at(h)))
            .collect();
        let solved = hops::resolve(&dir, &Graph::new(), e, &copies);
        for (c, hs) in copies.iter().zip(&solved) {
            if c.hash_size.bytes() >= 2 {
                mb_hops += hs.len() as u64;
                mb_unknown += hs.iter().filter(|h| h.candidates.is_empty()).count() as u64;
            }
        }
        hops::add_to_graph(&mut graph, &dir, e, &copies, &solved, &[], 0);
    }
    let dir = if mb_hops >= 200 {
        dir.clone()
            .with_unknown_share(mb_unknown as f64 / mb_hops as f64)
    } else {
        dir.clone()
    };
    // Node ids are the same in the clone: observers resolve the same way.
    let observer_at = |h: &Heard| ObserverAt {
        node: dir.id_of(&mesh.nodes[h.observer].public_key),
        pos: None,
    };
    let mut out = Run {
        packets: groups.len(),
        copies: heard.len(),
        graph_edges: graph.len(),
        ..Run::default()
    };
    let (mut one_byte, mut ambiguous) = (0u64, 0u64);
    let started = std::time::Instant::now();
    let mut scored: Vec<(Vec<&Heard>, Vec<Vec<hops::Hop>>)> = Vec::with_capacity(groups.len());
    for g in &groups {
        let e = ends(&dir, &g[0].frame);
        let with: Vec<&Heard> = g
            .iter()
            .copied()
            .filter(|h| Copy::from_head(&h.frame, observer_at(h)).is_some())
            .collect();
        let copies: Vec<Copy<'_>> = with
            .iter()
            .filter_map(|h| Copy::from_head(&h.frame, observer_at(h)))
            .collect();
        let solved = hops::resolve(&dir, &graph, e, &copies);
        scored.push((with, solved));
    }
    out.resolve_time = started.elapsed();
    for (with, solved) in &scored {
        for (h, hs) in with.iter().zip(solved) {
            let Some(copy) = Copy::from_head(&h.frame, observer_at(h)) else {
                continue;
            };
            let naive = hops::naive(&dir, &copy);
            let one = copy.hash_size.bytes() == 1;
            for (i, hop) in hs.iter().enumerate() {
                let Some(&truth) = h.relays.get(i) else {
                    continue;
                };
                let truth = dir.id_of(&mesh.nodes[truth].public_key);
                let Some(truth) = truth else { continue };
                if one {
                    one_byte += 1;
                    let fwd = hop.candidates.len();
                    ambiguous += u64::from(fwd >= 2 && !hop.companions);
                }
                let mine = hop.resolved(hops::RESOLVED);
                let theirs = naive.get(i).copied().flatten();
                let tally = |f: &mut Figures, guess: Option<u32>, conf: Option<f64>| {
                    f.hops += 1;
                    if let Some(g) = guess {
                        f.resolved += 1;
                        f.correct += u64::from(g == truth);
                        if let Some(c) = conf {
                            let b = &mut f.bands[band(c)];
                            b.0 += 1;
                            b.1 += u64::from(g == truth);
                        }
                    }
                };
                tally(&mut out.resolver, mine, Some(hop.confidence));
                tally(&mut out.naive, theirs, None);
                if one {
                    tally(&mut out.resolver_1byte, mine, Some(hop.confidence));
                    tally(&mut out.naive_1byte, theirs, None);
                }
            }
        }
    }
    out.ambiguous_1byte_share = ratio(ambiguous, one_byte);
    out
}

/// A report of one run, one line per figure.
pub fn report(name: &str, r: &Run) -> String {
    let mut s = format!(
        "{name}: {} packets, {} observations, graph {} edges, 1-byte hops with >= 2 forwarding candidates {:.1} %, resolve {:?}\n",
        r.packets,
        r.copies,
        r.graph_edges,
        r.ambiguous_1byte_share * 100.0,
        r.resolve_time
    );
    for (label, f) in [
        ("resolver, all hops", &r.resolver),
        ("resolver, 1-byte hops", &r.resolver_1byte),
        ("naive, all hops", &r.naive),
        ("naive, 1-byte hops", &r.naive_1byte),
    ] {
        s += &format!(
            "  {label}: accuracy {:.4} ({}/{}), coverage {:.4} ({}/{})\n",
            f.accuracy(),
            f.correct,
            f.resolved,
            f.coverage(),
            f.resolved,
            f.hops
        );
    }
    s += "  calibration (resolver, all hops): ";
    for (label, (n, ok)) in BANDS.iter().zip(r.resolver.bands) {
        s += &format!("{label}: {:.3} of {n}; ", ratio(ok, n));
    }
    s.push('\n');
    s
}
