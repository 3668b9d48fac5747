//! One capability cycle over 200,000 observations and 5,000 nodes, and the O(1) lookup.
//!
//! `cargo bench -p analytics --bench capability`

use std::collections::HashMap;

use analytics::capability::{Node, Observation, infer};
use criterion::{Criterion, criterion_group, criterion_main};

/// Deterministic pseudo-random numbers (xorshift), so every run sees the same mesh.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One stored observation: time, observer, frame head, verified advertiser.
type Row = (i64, u32, Vec<u8>, Option<String>);

fn mesh() -> (Vec<Node>, Vec<Row>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let roles = ["repeater", "companion", "companion", "room", "sensor"];
    let nodes: Vec<Node> = (0..5000)
        .map(|i| Node {
            public_key: format!("{:016x}{:048x}", rng.next(), i),
            name: Some(format!("node-{i}")),
            role: roles[i % roles.len()].into(),
        })
        .collect();
    let keys: Vec<Vec<u8>> = nodes
        .iter()
        .map(|n| hex::decode(&n.public_key[..6]).unwrap())
        .collect();
    let mut obs = Vec::with_capacity(200_000);
    for i in 0..200_000u64 {
        let size = 1 + (rng.next() % 3) as usize;
        let hops = 1 + (rng.next() % 6) as usize;
        let advert = i % 10 == 0;
        let mut head = vec![
            if advert { 0x11 } else { 0x15 },
            (((size - 1) << 6) | hops) as u8,
        ];
        for _ in 0..hops {
            let k = &keys[(rng.next() % keys.len() as u64) as usize];
            head.extend_from_slice(&k[..size]);
        }
        let from = advert.then(|| nodes[(rng.next() % 5000) as usize].public_key.clone());
        obs.push((
            1_700_000_000_000 + i as i64 * 3000,
            (i % 40) as u32,
            head,
            from,
        ));
    }
    (nodes, obs)
}

fn bench(c: &mut Criterion) {
    let (nodes, rows) = mesh();
    let obs: Vec<Observation<'_>> = rows
        .iter()
        .enumerate()
        .map(|(i, (at, o, head, from))| Observation {
            received_at: *at,
            observer: *o,
            head,
            hash: i as u64,
            verified_advert_from: from.as_deref(),
        })
        .collect();
    let persisted = HashMap::new();
    let mut g = c.benchmark_group("capability");
    g.sample_size(10);
    g.bench_function("infer/200k_observations_5k_nodes", |b| {
        b.iter(|| infer(&nodes, &obs, &persisted))
    });
    g.finish();
    let report = infer(&nodes, &obs, &persisted);
    let index = report.index();
    let keys: Vec<&str> = nodes.iter().map(|n| n.public_key.as_str()).collect();
    let mut i = 0;
    c.bench_function("capability/lookup", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            index
                .get(keys[i])
                .and_then(|&j| report.nodes.get(j))
                .map(|c| c.status)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
