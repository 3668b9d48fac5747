//! The hop-resolver benchmark against the simulator's truth (BENCHMARKS.md): accuracy,
//! coverage and calibration of the resolver and of the naive first-candidate resolver, on a
//! normal mesh and on the heavy 1-byte-collision mesh, with the time the resolution took.
//!
//! `cargo run --release -p analytics --example hop_accuracy -- [steps]`

#[path = "../tests/support/hop_score.rs"]
mod hop_score;

fn main() {
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000);
    let normal = sim::SimConfig {
        seed: 21,
        nodes: 150,
        observers: 12,
        ..sim::SimConfig::default()
    };
    let r = hop_score::run(&normal, &sim::RoleMix::default(), steps);
    print!(
        "{}",
        hop_score::report("normal mesh (150 nodes, 12 observers)", &r)
    );
    let (cfg, roles) = sim::collision_mesh(5);
    let r = hop_score::run(&cfg, &roles, steps);
    print!("{}", hop_score::report("collision mesh", &r));
}
