//! The simulator's traffic follows the firmware's routing: direct paths shrink hop by hop
//! and keep their size bits, every kind of peer traffic appears, and frames re-encode.

use std::collections::{BTreeSet, HashMap};

use meshcore::{Packet, PayloadType, RouteType};
use sim::{Mesh, SimConfig};

#[test]
fn direct_routes_shrink_hop_by_hop_and_all_traffic_kinds_appear() {
    let mut mesh = Mesh::generate(&SimConfig {
        seed: 21,
        nodes: 150,
        observers: 15,
        ..SimConfig::default()
    });
    let mut heard = mesh.advert_all(0);
    for s in 0..6_000 {
        heard.extend(mesh.step(60_000 + s * 1_000));
    }
    let mut kinds: BTreeSet<(u8, &'static str)> = BTreeSet::new();
    // Direct packets by hash: (time, hop count, size) as observers heard them.
    let mut direct: HashMap<u64, Vec<(i64, u8, usize)>> = HashMap::new();
    for h in &heard {
        let p = Packet::decode(&h.frame).expect("every simulated frame decodes");
        assert_eq!(p.to_bytes(), h.frame, "re-encodes byte for byte");
        let route = match p.route_type() {
            RouteType::Direct => "direct",
            RouteType::Flood => "flood",
            _ => "transport",
        };
        kinds.insert((p.payload_type() as u8, route));
        if p.route_type() == RouteType::Direct && p.payload_type() != PayloadType::Trace {
            direct.entry(p.hash().to_u64()).or_default().push((
                h.at_ms,
                p.hop_count(),
                p.path_len().hash_size().bytes(),
            ));
        }
    }
    for (t, route) in [
        (PayloadType::TxtMsg, "direct"),
        (PayloadType::TxtMsg, "flood"),
        (PayloadType::Ack, "direct"),
        (PayloadType::Req, "direct"),
        (PayloadType::Response, "direct"),
        (PayloadType::Path, "flood"),
        (PayloadType::GrpTxt, "flood"),
        (PayloadType::Advert, "flood"),
        (PayloadType::Advert, "direct"),
        (PayloadType::Trace, "direct"),
    ] {
        assert!(
            kinds.contains(&(t as u8, route)),
            "no {route} {t:?} in {kinds:?}"
        );
    }
    let mut shrinking = 0;
    let mut multibyte_last_leg = 0;
    for (hash, mut seen) in direct {
        seen.sort();
        // The remaining route only ever gets shorter, and the size bits never change.
        for w in seen.windows(2) {
            assert!(w[1].1 <= w[0].1, "{hash:016x}: path grew: {seen:?}");
            assert_eq!(w[1].2, w[0].2, "{hash:016x}: size changed: {seen:?}");
        }
        let counts: BTreeSet<u8> = seen.iter().map(|s| s.1).collect();
        shrinking += usize::from(counts.len() >= 2);
        multibyte_last_leg += usize::from(seen.iter().any(|s| s.1 == 0 && s.2 >= 2));
    }
    assert!(
        shrinking >= 10,
        "only {shrinking} direct packets seen at several hop counts"
    );
    assert!(
        multibyte_last_leg >= 1,
        "no direct multi-byte packet heard on its last leg (count 0, size bits kept)"
    );
}
