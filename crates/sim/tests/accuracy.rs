//! The capability inference scored against the simulator's ground truth: a simulated mesh is
//! written by the writer, read back by the reader's capability cycle, and compared.

use std::collections::HashMap;
use std::time::Duration;

use analytics::capability::Status;
use ingest::decode::Decoder;
use ingest::message::{PacketMessage, TopicObserver};
use meshcore::crypto::Keyring;
use sim::{Firmware, Mesh, Role, SimConfig};

struct Score {
    confirmed: (usize, usize),
    suspected: (usize, usize),
    recall: (usize, usize),
    legacy: (usize, usize),
}

fn ratio((good, all): (usize, usize)) -> f64 {
    if all == 0 {
        1.0
    } else {
        good as f64 / all as f64
    }
}

fn score(seed: u64, nodes: usize, observers: usize, steps: usize) -> Score {
    let mut mesh = Mesh::generate(&SimConfig {
        seed,
        nodes,
        observers,
        modern_share: 0.6,
    });
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let decoder = Decoder {
        keyring: Keyring::with_public(),
        ..Decoder::default()
    };
    let t0 = ingest::writer_thread::now_ms() - 3_600_000;
    let mut heard = mesh.advert_all(t0);
    for s in 0..steps {
        heard.extend(mesh.step(t0 + 1000 + s as i64 * 500));
    }
    let items: Vec<store::Item> = heard
        .iter()
        .map(|h| {
            let msg = PacketMessage {
                observer: TopicObserver {
                    id: mesh.nodes[h.observer].key_hex(),
                    iata: "SEA".into(),
                },
                origin: Some(mesh.nodes[h.observer].name.clone()),
                region: None,
                raw: h.frame.clone(),
                snr: Some(h.snr),
                rssi: Some(h.rssi),
                score: None,
                airtime_ms: None,
            };
            decoder.item(msg, h.at_ms).0
        })
        .collect();
    for chunk in items.chunks(4096) {
        w.write_batch(chunk).unwrap();
    }
    let reader = store::Reader::open(&db).unwrap();
    let idx = server::capability::compute(reader.conn(), Duration::from_secs(7 * 86_400)).unwrap();
    let truth: HashMap<String, &sim::SimNode> =
        mesh.nodes.iter().map(|n| (n.key_hex(), n)).collect();
    let mut s = Score {
        confirmed: (0, 0),
        suspected: (0, 0),
        recall: (0, 0),
        legacy: (0, 0),
    };
    for c in &idx.report.nodes {
        let Some(t) = truth.get(&c.public_key) else {
            continue;
        };
        let capable = t.firmware == Firmware::Modern;
        match c.status {
            Status::Confirmed => {
                s.confirmed.1 += 1;
                s.confirmed.0 += usize::from(capable);
            }
            Status::Suspected => {
                s.suspected.1 += 1;
                s.suspected.0 += usize::from(capable);
            }
            Status::Unknown => {}
        }
        if c.legacy_suspect {
            s.legacy.1 += 1;
            s.legacy.0 += usize::from(!capable);
            if capable && std::env::var_os("SIM_DEBUG").is_some() {
                let i = mesh
                    .nodes
                    .iter()
                    .position(|n| n.key_hex() == c.public_key)
                    .unwrap_or(0);
                eprintln!(
                    "  false legacy suspect {} mode {} forwarded-mb-observed {} adverts {} near {:?}",
                    t.name,
                    t.path_hash_mode,
                    mesh.forwarded_multibyte[i],
                    c.adverts.count,
                    c.heard_by
                );
            }
        }
    }
    // Recall over active capable relays: modern relays that forwarded multi-byte traffic.
    for (i, n) in mesh.nodes.iter().enumerate() {
        if n.role != Role::Companion
            && n.firmware == Firmware::Modern
            && mesh.forwarded_multibyte[i]
        {
            s.recall.1 += 1;
            let found = idx
                .get(&n.key_hex())
                .is_some_and(|c| c.status != Status::Unknown);
            s.recall.0 += usize::from(found);
            if !found && std::env::var_os("SIM_DEBUG").is_some() {
                let k = n.public_key;
                let twins = mesh
                    .nodes
                    .iter()
                    .filter(|m| m.public_key[..2] == k[..2])
                    .count()
                    - 1;
                let known = idx.get(&n.key_hex()).is_some();
                eprintln!(
                    "  recall miss {} {:?} mode {} known {known} 2-byte twins {twins}",
                    n.name, n.role, n.path_hash_mode
                );
            }
        }
    }
    eprintln!(
        "seed {seed}: confirmed {}/{} suspected {}/{} recall {}/{} legacy_suspect {}/{}",
        s.confirmed.0,
        s.confirmed.1,
        s.suspected.0,
        s.suspected.1,
        s.recall.0,
        s.recall.1,
        s.legacy.0,
        s.legacy.1
    );
    s
}

#[test]
fn same_seed_same_mesh() {
    let a = Mesh::generate(&SimConfig::default());
    let b = Mesh::generate(&SimConfig::default());
    assert_eq!(a.truth(), b.truth());
    let c = Mesh::generate(&SimConfig {
        seed: 2,
        ..SimConfig::default()
    });
    assert_ne!(a.truth(), c.truth());
}

#[test]
fn every_simulated_frame_decodes_and_legacy_relays_never_carry_multibyte() {
    let mut mesh = Mesh::generate(&SimConfig {
        seed: 3,
        nodes: 80,
        observers: 8,
        modern_share: 0.5,
    });
    let mut heard = mesh.advert_all(0);
    for s in 0..500 {
        heard.extend(mesh.step(1000 + s * 100));
    }
    assert!(heard.len() > 500, "too little traffic: {}", heard.len());
    let legacy: Vec<[u8; 32]> = mesh
        .nodes
        .iter()
        .filter(|n| n.firmware == Firmware::Legacy)
        .map(|n| n.public_key)
        .collect();
    let mut sizes = [0usize; 3];
    for h in &heard {
        let p = meshcore::Packet::decode(&h.frame).expect("simulated frames are valid");
        assert!(p.payload().is_ok(), "payload of {:02x?}", h.frame);
        let size = p.path_len().hash_size().bytes();
        sizes[size - 1] += 1;
        if size > 1 {
            for hop in p.path_hops() {
                let culprit = legacy.iter().find(|k| {
                    k.starts_with(hop)
                        && mesh
                            .nodes
                            .iter()
                            .filter(|n| n.public_key.starts_with(hop))
                            .count()
                            == 1
                });
                assert!(
                    culprit.is_none(),
                    "a legacy relay forwarded a {size}-byte packet"
                );
            }
        }
    }
    assert!(
        sizes.iter().all(|&n| n > 0),
        "all three sizes appear: {sizes:?}"
    );
}

#[test]
fn inference_accuracy_against_ground_truth() {
    let mut all = Score {
        confirmed: (0, 0),
        suspected: (0, 0),
        recall: (0, 0),
        legacy: (0, 0),
    };
    for seed in [11, 12, 13] {
        let s = score(seed, 150, 12, 3000);
        for (a, b) in [
            (&mut all.confirmed, s.confirmed),
            (&mut all.suspected, s.suspected),
            (&mut all.recall, s.recall),
            (&mut all.legacy, s.legacy),
        ] {
            a.0 += b.0;
            a.1 += b.1;
        }
    }
    eprintln!(
        "total: confirmed precision {:.3} ({}/{}), suspected precision {:.3} ({}/{}), recall {:.3} ({}/{}), legacy_suspect precision {:.3} ({}/{})",
        ratio(all.confirmed),
        all.confirmed.0,
        all.confirmed.1,
        ratio(all.suspected),
        all.suspected.0,
        all.suspected.1,
        ratio(all.recall),
        all.recall.0,
        all.recall.1,
        ratio(all.legacy),
        all.legacy.0,
        all.legacy.1
    );
    // Confirmed rests on signed adverts: it can never be wrong.
    assert_eq!(ratio(all.confirmed), 1.0);
    // The goals of the issue, on these fixed seeds (deterministic, not timings).
    assert!(ratio(all.suspected) >= 0.95, "suspected precision");
    assert!(
        ratio(all.recall) >= 0.9,
        "recall over active capable relays"
    );
    assert!(ratio(all.legacy) >= 0.9, "legacy_suspect precision");
    assert!(
        all.confirmed.1 > 0 && all.recall.1 > 0 && all.legacy.1 > 0,
        "the scenario must exercise every status"
    );
}
