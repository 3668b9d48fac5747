//! Every rule of `multibyte-capability.md` §7.1–7.3 and the adapted reference cases of §5.

use std::collections::HashMap;

use analytics::capability::{Capability, Node, Observation, Persisted, Source, Status, infer};

fn node(key_prefix: &str, name: &str, role: &str) -> Node {
    Node {
        public_key: format!("{key_prefix}{}", "0".repeat(64 - key_prefix.len())),
        name: Some(name.into()),
        role: role.into(),
    }
}

/// A frame head: header byte, optional transport codes, path-length byte, path.
fn head(header: u8, path_len: u8, path: &[u8]) -> Vec<u8> {
    let mut h = vec![header];
    if matches!(header & 3, 0 | 3) {
        h.extend_from_slice(&[0x34, 0x12, 0, 0]);
    }
    h.push(path_len);
    h.extend_from_slice(path);
    h
}

struct Obs {
    at: i64,
    observer: u32,
    head: Vec<u8>,
    advert_from: Option<String>,
}

fn run(
    nodes: &[Node],
    obs: &[Obs],
    persisted: &HashMap<String, Persisted>,
) -> HashMap<String, Capability> {
    let o: Vec<Observation<'_>> = obs
        .iter()
        .enumerate()
        .map(|(i, o)| Observation {
            received_at: o.at,
            observer: o.observer,
            head: &o.head,
            hash: i as u64,
            verified_advert_from: o.advert_from.as_deref(),
        })
        .collect();
    infer(nodes, &o, persisted)
        .nodes
        .into_iter()
        .map(|c| (c.public_key.clone(), c))
        .collect()
}

fn advert(n: &Node, header: u8, path_len: u8, path: &[u8], at: i64, observer: u32) -> Obs {
    Obs {
        at,
        observer,
        head: head(header, path_len, path),
        advert_from: Some(n.public_key.clone()),
    }
}

fn packet(header: u8, path_len: u8, path: &[u8], at: i64, observer: u32) -> Obs {
    Obs {
        at,
        observer,
        head: head(header, path_len, path),
        advert_from: None,
    }
}

const FLOOD_ADVERT: u8 = 0x11;
const DIRECT_ADVERT: u8 = 0x12;
const TRANSPORT_FLOOD_ADVERT: u8 = 0x10;
const TRANSPORT_DIRECT_ADVERT: u8 = 0x13;
const FLOOD_TXT: u8 = 0x09;
const FLOOD_PATH: u8 = 0x21;
const DIRECT_TRACE: u8 = 0x26;

#[test]
fn two_byte_flood_advert_confirms() {
    let a = node("aabb", "A", "repeater");
    let r = run(
        std::slice::from_ref(&a),
        &[advert(&a, FLOOD_ADVERT, 0x40, &[], 10, 1)],
        &HashMap::new(),
    );
    let c = &r[&a.public_key];
    assert_eq!(
        (c.status, c.evidence, c.max_hash_size, c.confidence),
        (Status::Confirmed, "advert", 2, "high")
    );
    assert_eq!(c.source, Source::Computed);
    assert_eq!(c.upgraded_at, Some(10));
    assert_eq!(c.samples, [0]);
}

#[test]
fn transport_routes_read_the_path_length_after_the_codes() {
    let a = node("aabb", "A", "repeater");
    let b = node("ccdd", "B", "repeater");
    let r = run(
        &[a.clone(), b.clone()],
        &[
            advert(&a, TRANSPORT_FLOOD_ADVERT, 0x41, &[0x12, 0x34], 10, 1),
            // TRANSPORT_DIRECT with a 3-byte, zero-hop byte: information, not the 0x00 case.
            advert(&b, TRANSPORT_DIRECT_ADVERT, 0x80, &[], 10, 1),
        ],
        &HashMap::new(),
    );
    assert_eq!(
        (r[&a.public_key].status, r[&a.public_key].max_hash_size),
        (Status::Confirmed, 2)
    );
    assert_eq!(
        (r[&b.public_key].status, r[&b.public_key].max_hash_size),
        (Status::Confirmed, 3)
    );
}

#[test]
fn only_one_byte_adverts_is_unknown() {
    let a = node("aabb", "A", "repeater");
    let r = run(
        std::slice::from_ref(&a),
        &[advert(&a, FLOOD_ADVERT, 0x02, &[1, 2], 10, 1)],
        &HashMap::new(),
    );
    let c = &r[&a.public_key];
    assert_eq!(
        (c.status, c.evidence, c.max_hash_size, c.confidence),
        (Status::Unknown, "", 1, "")
    );
    assert_eq!(c.latest_advert_size, Some(1));
}

#[test]
fn a_direct_zero_advert_never_resets_a_node() {
    let a = node("aabb", "A", "repeater");
    let r = run(
        std::slice::from_ref(&a),
        &[
            advert(&a, FLOOD_ADVERT, 0x40, &[], 10, 1),
            advert(&a, DIRECT_ADVERT, 0x00, &[], 20, 1),
        ],
        &HashMap::new(),
    );
    let c = &r[&a.public_key];
    assert_eq!(c.status, Status::Confirmed);
    assert_eq!(
        c.latest_advert_size,
        Some(2),
        "the 0x00 direct advert carries no size"
    );
    assert_eq!(c.adverts.count, 1);
}

#[test]
fn a_direct_advert_with_size_bits_is_evidence() {
    let a = node("aabb", "A", "repeater");
    let r = run(
        std::slice::from_ref(&a),
        &[advert(&a, DIRECT_ADVERT, 0x40, &[], 10, 1)],
        &HashMap::new(),
    );
    assert_eq!(r[&a.public_key].status, Status::Confirmed);
}

#[test]
fn unverified_adverts_never_confirm() {
    let a = node("aabb", "A", "companion");
    let forged = Obs {
        at: 10,
        observer: 1,
        head: head(FLOOD_ADVERT, 0x40, &[]),
        advert_from: None,
    };
    let r = run(std::slice::from_ref(&a), &[forged], &HashMap::new());
    assert_eq!(r[&a.public_key].status, Status::Unknown);
}

#[test]
fn a_unique_multibyte_hop_suspects_its_relay() {
    let a = node("aabb", "A", "repeater");
    let r = run(
        std::slice::from_ref(&a),
        &[packet(FLOOD_TXT, 0x41, &[0xaa, 0xbb], 10, 1)],
        &HashMap::new(),
    );
    let c = &r[&a.public_key];
    assert_eq!(
        (c.status, c.evidence, c.max_hash_size, c.confidence),
        (Status::Suspected, "path", 2, "high")
    );
    assert_eq!(c.path_unique.count, 1);
}

#[test]
fn three_byte_hops_match_three_byte_prefixes() {
    let a = node("aabbcc", "A", "room");
    let b = node("aabbdd", "B", "room");
    let r = run(
        &[a.clone(), b.clone()],
        &[packet(FLOOD_TXT, 0x81, &[0xaa, 0xbb, 0xcc], 10, 1)],
        &HashMap::new(),
    );
    assert_eq!(
        (r[&a.public_key].status, r[&a.public_key].max_hash_size),
        (Status::Suspected, 3)
    );
    assert_eq!(r[&b.public_key].status, Status::Unknown);
}

#[test]
fn path_packets_count() {
    let a = node("aabb", "A", "repeater");
    let r = run(
        std::slice::from_ref(&a),
        &[packet(FLOOD_PATH, 0x41, &[0xaa, 0xbb], 10, 1)],
        &HashMap::new(),
    );
    assert_eq!(r[&a.public_key].status, Status::Suspected);
}

#[test]
fn trace_routes_never_count() {
    let a = node("aabb", "A", "repeater");
    // Even a TRACE whose path-length byte claims 2-byte entries matching the node.
    let r = run(
        std::slice::from_ref(&a),
        &[
            packet(DIRECT_TRACE, 0x41, &[0xaa, 0xbb], 10, 1),
            packet(DIRECT_TRACE, 0x02, &[0xaa, 0xbb], 10, 1),
        ],
        &HashMap::new(),
    );
    assert_eq!(r[&a.public_key].status, Status::Unknown);
}

#[test]
fn reserved_size_never_yields_size_four() {
    let a = node("aabbccdd", "A", "repeater");
    let r = run(
        std::slice::from_ref(&a),
        &[
            advert(&a, FLOOD_ADVERT, 0xC1, &[0xaa, 0xbb, 0xcc, 0xdd], 10, 1),
            packet(FLOOD_TXT, 0xC1, &[0xaa, 0xbb, 0xcc, 0xdd], 10, 1),
        ],
        &HashMap::new(),
    );
    let c = &r[&a.public_key];
    assert_eq!((c.status, c.max_hash_size), (Status::Unknown, 1));
}

#[test]
fn relays_sharing_a_prefix_are_both_suspected_with_low_confidence() {
    let a = node("aabb01", "A", "repeater");
    let b = node("aabb02", "B", "repeater");
    let r = run(
        &[a.clone(), b.clone()],
        &[packet(FLOOD_TXT, 0x41, &[0xaa, 0xbb], 10, 1)],
        &HashMap::new(),
    );
    for k in [&a.public_key, &b.public_key] {
        let c = &r[k];
        assert_eq!((c.status, c.confidence), (Status::Suspected, "low"));
        assert_eq!(c.path_ambiguous.count, 1);
    }
}

#[test]
fn companions_are_candidates_only_when_no_relay_role_matches() {
    let rep = node("aabb01", "R", "repeater");
    let comp = node("aabb02", "C", "companion");
    let lone = node("ccdd01", "L", "companion");
    let r = run(
        &[rep.clone(), comp.clone(), lone.clone()],
        &[packet(FLOOD_TXT, 0x42, &[0xaa, 0xbb, 0xcc, 0xdd], 10, 1)],
        &HashMap::new(),
    );
    assert_eq!(
        (r[&rep.public_key].status, r[&rep.public_key].confidence),
        (Status::Suspected, "high")
    );
    assert_eq!(
        r[&comp.public_key].status,
        Status::Unknown,
        "a repeater explains the hop"
    );
    assert_eq!(
        r[&lone.public_key].status,
        Status::Suspected,
        "no relay role has this prefix"
    );
}

#[test]
fn unknown_relay_prefixes_are_counted() {
    let a = node("aabb", "A", "repeater");
    let nodes = [a];
    let obs = [
        packet(FLOOD_TXT, 0x41, &[0x12, 0x34], 10, 1),
        packet(FLOOD_TXT, 0x41, &[0x12, 0x34], 11, 1),
    ];
    let o: Vec<Observation<'_>> = obs
        .iter()
        .map(|o| Observation {
            received_at: o.at,
            observer: 1,
            head: &o.head,
            hash: 0,
            verified_advert_from: None,
        })
        .collect();
    let report = analytics::capability::infer(&nodes, &o, &HashMap::new());
    assert_eq!(report.unknown_relays, [("1234".to_string(), 2)]);
    assert_eq!(report.distribution, [0, 2, 0]);
}

#[test]
fn persisted_capability_is_never_lowered() {
    let a = node("aabb", "A", "repeater");
    let b = node("ccdd", "B", "repeater");
    let mut persisted = HashMap::new();
    persisted.insert(
        a.public_key.clone(),
        Persisted {
            status: Status::Confirmed,
            evidence: "advert".into(),
            max_hash_size: Some(3),
            upgraded_at: Some(5),
        },
    );
    persisted.insert(
        b.public_key.clone(),
        Persisted {
            status: Status::Suspected,
            evidence: "path".into(),
            max_hash_size: None,
            upgraded_at: None,
        },
    );
    // A's evidence aged out of the window; B now has advert evidence.
    let r = run(
        &[a.clone(), b.clone()],
        &[advert(&b, FLOOD_ADVERT, 0x40, &[], 50, 1)],
        &persisted,
    );
    let ca = &r[&a.public_key];
    assert_eq!(
        (ca.status, ca.source, ca.max_hash_size, ca.upgraded_at),
        (Status::Confirmed, Source::Persisted, 3, Some(5))
    );
    let cb = &r[&b.public_key];
    assert_eq!(
        (cb.status, cb.source, cb.evidence),
        (Status::Confirmed, Source::Computed, "advert")
    );
}

#[test]
fn legacy_suspects_are_active_repeaters_where_multibyte_flows() {
    let legacy = node("1111", "Old", "repeater");
    let quiet = node("5555", "Quiet", "repeater");
    let isolated = node("2222", "Far", "repeater");
    let comp = node("3333", "Phone", "companion");
    let modern = node("4444", "New", "repeater");
    let mut obs = Vec::new();
    // Observer 1 hears plenty of multi-byte traffic (through the modern repeater)…
    for t in 0..5 {
        obs.push(packet(FLOOD_TXT, 0x41, &[0x44, 0x44], 10 + t, 1));
    }
    // …and the legacy repeater relaying 1-byte traffic next to the modern one, and adverting.
    for t in 0..6 {
        obs.push(packet(FLOOD_TXT, 0x02, &[0x44, 0x11], 20 + t, 1));
    }
    obs.push(advert(&legacy, FLOOD_ADVERT, 0x00, &[], 11, 1));
    // A repeater that only adverts (no relaying seen) is not called out.
    obs.push(advert(&quiet, FLOOD_ADVERT, 0x00, &[], 11, 1));
    obs.push(advert(&comp, FLOOD_ADVERT, 0x00, &[], 11, 1));
    // Observer 2 only ever hears 1-byte traffic, from the isolated repeater.
    for t in 0..6 {
        obs.push(packet(FLOOD_TXT, 0x01, &[0x22], 30 + t, 2));
    }
    obs.push(advert(&isolated, FLOOD_ADVERT, 0x00, &[], 12, 2));
    let r = run(
        &[
            legacy.clone(),
            quiet.clone(),
            isolated.clone(),
            comp.clone(),
            modern.clone(),
        ],
        &obs,
        &HashMap::new(),
    );
    assert!(
        r[&legacy.public_key].legacy_suspect,
        "{:?}",
        r[&legacy.public_key]
    );
    assert!(!r[&quiet.public_key].legacy_suspect, "not seen relaying");
    assert!(
        !r[&isolated.public_key].legacy_suspect,
        "not heard where multi-byte flows"
    );
    assert!(
        !r[&comp.public_key].legacy_suspect,
        "companions do not hold a region back"
    );
    assert!(!r[&modern.public_key].legacy_suspect);
}

#[test]
fn order_is_status_then_name_then_key() {
    let nodes = [
        node("01", "b", "repeater"),
        node("02", "A", "repeater"),
        node("03", "c", "repeater"),
        node("04", "a", "repeater"),
    ];
    let obs = [advert(&nodes[2], FLOOD_ADVERT, 0x40, &[], 1, 1)];
    let o: Vec<Observation<'_>> = obs
        .iter()
        .map(|o| Observation {
            received_at: o.at,
            observer: 1,
            head: &o.head,
            hash: 0,
            verified_advert_from: o.advert_from.as_deref(),
        })
        .collect();
    let names: Vec<String> = infer(&nodes, &o, &HashMap::new())
        .nodes
        .iter()
        .map(|c| c.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["c", "A", "a", "b"]);
    assert!(infer(&[], &[], &HashMap::new()).nodes.is_empty());
}

#[test]
fn a_companion_with_a_two_byte_advert_is_confirmed_with_its_role() {
    let c = node("aabb", "Phone", "companion");
    let r = run(
        std::slice::from_ref(&c),
        &[advert(&c, FLOOD_ADVERT, 0x41, &[0x12, 0x34], 10, 1)],
        &HashMap::new(),
    );
    let cap = &r[&c.public_key];
    assert_eq!(
        (cap.status, cap.role.as_str()),
        (Status::Confirmed, "companion")
    );
}

#[test]
fn the_latest_advert_size_is_by_receive_time_not_input_order() {
    let a = node("aabb", "A", "repeater");
    // Given out of order: the 1-byte advert is the newest.
    let r = run(
        std::slice::from_ref(&a),
        &[
            advert(&a, FLOOD_ADVERT, 0x00, &[], 30, 1),
            advert(&a, FLOOD_ADVERT, 0x40, &[], 10, 1),
        ],
        &HashMap::new(),
    );
    let c = &r[&a.public_key];
    assert_eq!(c.latest_advert_size, Some(1));
    // Still confirmed: it was seen sending 2-byte adverts in the window.
    assert_eq!((c.status, c.max_hash_size), (Status::Confirmed, 2));
    assert_eq!((c.advert_mb.first, c.adverts.last), (10, 30));
}

#[test]
fn the_incremental_and_batch_forms_agree() {
    use analytics::capability::Inference;
    let a = node("aabb01", "A", "repeater");
    let b = node("aabb02", "B", "repeater");
    let nodes = [a.clone(), b.clone()];
    let obs = [
        advert(&a, FLOOD_ADVERT, 0x40, &[], 10, 1),
        packet(FLOOD_TXT, 0x41, &[0xaa, 0xbb], 11, 2),
    ];
    let o: Vec<Observation<'_>> = obs
        .iter()
        .map(|o| Observation {
            received_at: o.at,
            observer: o.observer,
            head: &o.head,
            hash: 1,
            verified_advert_from: o.advert_from.as_deref(),
        })
        .collect();
    let mut inf = Inference::new(&nodes);
    for x in &o {
        inf.add(x);
    }
    let one = inf.finish(&HashMap::new());
    let two = analytics::capability::infer(&nodes, &o, &HashMap::new());
    assert_eq!(one.nodes, two.nodes);
    assert_eq!(one.hourly, two.hourly);
    assert_eq!(one.top_hops, two.top_hops);
}
