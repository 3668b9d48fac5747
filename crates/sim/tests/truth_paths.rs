//! The simulator's truth paths ([`Heard::relays`], [`Heard::origin`]) are the path a hop
//! resolver should find: one relay per hop, each with the hop's key prefix, each within radio
//! range of the next; and the collision mesh really is the hard case (most 1-byte prefixes
//! name several forwarding nodes).

use std::collections::HashMap;

use meshcore::{Packet, PayloadType, RouteType};
use sim::{Heard, Mesh, RoleMix, SimConfig};

/// What [`check_truth_paths`] saw, to make sure the invariant was tested on real paths.
#[derive(Debug, Default)]
struct Seen {
    /// Flood observations with at least 3 hops.
    long_floods: usize,
    /// Direct observations with at least 1 relay ahead.
    direct_with_relays: usize,
    /// TRACE observations.
    traces: usize,
    /// Zero-hop observations (no relay) of any type but TRACE.
    zero_hop: usize,
}

/// Asserts the truth-path invariant on every observation and counts what it checked.
fn check_truth_paths(mesh: &Mesh, heard: &[Heard]) -> Seen {
    let mut seen = Seen::default();
    for h in heard {
        let p = Packet::decode(&h.frame).expect("every simulated frame decodes");
        assert!(h.origin < mesh.nodes.len());
        if p.payload_type() == PayloadType::Trace {
            assert!(h.relays.is_empty(), "TRACE paths hold SNRs, not relays");
            seen.traces += 1;
            continue;
        }
        assert_eq!(
            h.relays.len(),
            usize::from(p.hop_count()),
            "one relay per hop: {h:?}"
        );
        for (hop, &r) in p.path_hops().zip(&h.relays) {
            let node = &mesh.nodes[r];
            assert!(
                node.public_key.starts_with(hop),
                "hop {} is not a prefix of relay {r}'s key {}",
                hex::encode(hop),
                node.key_hex()
            );
            assert!(node.role != sim::Role::Companion, "companion {r} on a path");
        }
        for w in h.relays.windows(2) {
            assert!(
                mesh.is_neighbour(w[0], w[1]),
                "consecutive relays {} → {} out of range",
                w[0],
                w[1]
            );
        }
        match p.route_type() {
            RouteType::Flood => {
                // origin → relays → observer, each link within range.
                let first = h.relays.first().copied().unwrap_or(h.observer);
                let last = h.relays.last().copied().unwrap_or(h.origin);
                assert!(mesh.is_neighbour(h.origin, first), "origin → first: {h:?}");
                assert!(
                    mesh.is_neighbour(last, h.observer),
                    "last → observer: {h:?}"
                );
                assert!(!h.relays.contains(&h.origin), "origin relays its own flood");
                seen.long_floods += usize::from(h.relays.len() >= 3);
            }
            _ => {
                seen.direct_with_relays += usize::from(!h.relays.is_empty());
                seen.zero_hop += usize::from(h.relays.is_empty());
            }
        }
    }
    seen
}

/// Runs `steps` traffic events after the initial advert burst (if `adverts`).
fn traffic(mesh: &mut Mesh, adverts: bool, steps: i64) -> Vec<Heard> {
    let mut heard = if adverts {
        mesh.advert_all(0)
    } else {
        Vec::new()
    };
    for s in 0..steps {
        heard.extend(mesh.step(60_000 + s * 1_000));
    }
    heard
}

#[test]
fn truth_paths_match_the_frames_on_the_default_mesh() {
    let mut mesh = Mesh::generate(&SimConfig::default());
    let heard = traffic(&mut mesh, true, 600);
    let seen = check_truth_paths(&mesh, &heard);
    assert!(seen.long_floods >= 20, "{seen:?}");
    assert!(seen.direct_with_relays >= 5, "{seen:?}");
    assert!(seen.traces >= 1, "{seen:?}");
    assert!(seen.zero_hop >= 1, "{seen:?}");
}

#[test]
fn truth_paths_match_the_frames_on_a_larger_mesh() {
    // More nodes and observers than the default: longer floods, more direct routes heard.
    let mut mesh = Mesh::generate(&SimConfig {
        seed: 21,
        nodes: 150,
        observers: 15,
        ..SimConfig::default()
    });
    let heard = traffic(&mut mesh, true, 500);
    let seen = check_truth_paths(&mesh, &heard);
    assert!(seen.long_floods >= 100, "{seen:?}");
    assert!(seen.direct_with_relays >= 10, "{seen:?}");
}

/// Share of 1-byte hops heard whose prefix has ≥ 2 forwarding candidates, and the mean
/// number of candidates per 1-byte hop.
fn one_byte_ambiguity(mesh: &Mesh, heard: &[Heard]) -> (f64, f64, usize) {
    let mut by_byte: HashMap<u8, usize> = HashMap::new();
    for n in mesh.nodes.iter().filter(|n| n.role != sim::Role::Companion) {
        *by_byte.entry(n.public_key[0]).or_default() += 1;
    }
    let (mut hops, mut ambiguous, mut candidates) = (0usize, 0usize, 0usize);
    for h in heard {
        let Ok(p) = Packet::decode(&h.frame) else {
            continue;
        };
        if p.path_len().hash_size().bytes() != 1 {
            continue;
        }
        for hop in p.path_hops() {
            let c = by_byte.get(&hop[0]).copied().unwrap_or(0);
            hops += 1;
            ambiguous += usize::from(c >= 2);
            candidates += c;
        }
    }
    let share = ambiguous as f64 / hops.max(1) as f64;
    let mean = candidates as f64 / hops.max(1) as f64;
    (share, mean, hops)
}

#[test]
fn collision_mesh_has_heavy_one_byte_collisions_and_true_paths() {
    let (cfg, roles) = sim::collision_mesh(3);
    let mut mesh = Mesh::generate_with(&cfg, &roles);
    assert_eq!(mesh.nodes.len(), 1_500);
    assert_eq!(mesh.observers().len(), 40);
    let forwarding: Vec<&sim::SimNode> = mesh
        .nodes
        .iter()
        .filter(|n| n.role != sim::Role::Companion)
        .collect();
    let share_forwarding = forwarding.len() as f64 / mesh.nodes.len() as f64;
    assert!(
        (0.65..0.75).contains(&share_forwarding),
        "{share_forwarding}"
    );
    let mut by_byte: HashMap<u8, usize> = HashMap::new();
    for n in &forwarding {
        *by_byte.entry(n.public_key[0]).or_default() += 1;
    }
    let shared = forwarding
        .iter()
        .filter(|n| by_byte[&n.public_key[0]] >= 2)
        .count() as f64
        / forwarding.len() as f64;
    assert!(
        shared > 0.5,
        "only {shared:.2} of forwarding nodes share their first key byte"
    );
    // The disc grows with the node count: the mesh spans well over 100 km.
    let span = (0..mesh.nodes.len())
        .filter_map(|i| mesh.distance_km(0, i))
        .fold(0.0f64, f64::max);
    assert!(span > 100.0, "span {span:.0} km");

    let heard = traffic(&mut mesh, false, 300);
    let seen = check_truth_paths(&mesh, &heard);
    assert!(seen.long_floods >= 100, "{seen:?}");
    assert!(seen.direct_with_relays >= 10, "{seen:?}");
    let (share, mean, hops) = one_byte_ambiguity(&mesh, &heard);
    eprintln!(
        "collision mesh: {:.1} % forwarding, {:.3} of forwarding nodes share a first byte; \
         {hops} 1-byte hops heard, {:.3} with ≥ 2 candidates, {mean:.2} candidates each",
        share_forwarding * 100.0,
        shared,
        share
    );
    assert!(hops >= 1_000, "{hops}");
    assert!(share > 0.5, "{share}");
    assert!(mean > 2.0, "{mean}");
}

#[test]
fn the_default_role_mix_is_the_one_generate_uses() {
    let cfg = SimConfig {
        seed: 9,
        ..SimConfig::default()
    };
    let a = Mesh::generate(&cfg);
    let b = Mesh::generate_with(&cfg, &RoleMix::default());
    assert_eq!(a.truth(), b.truth());
    // Another mix changes roles only: same keys and places.
    let c = Mesh::generate_with(&cfg, &RoleMix::collision());
    assert!(
        a.nodes
            .iter()
            .zip(&c.nodes)
            .all(|(x, y)| x.public_key == y.public_key && x.lat == y.lat && x.lon == y.lon)
    );
    assert!((RoleMix::collision().forwarding_share() - 0.7).abs() < 1e-9);
    assert!((RoleMix::default().forwarding_share() - 0.45).abs() < 1e-9);
}
