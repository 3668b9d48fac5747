//! `meshlens simulate`: a simulated mesh (crate `sim`) published over MQTT exactly as
//! meshcoretomqtt observers publish, at simulated time scaled by `--speed`, and the same
//! traffic generator behind `meshlens run --demo`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ingest::config::{BrokerUrl, parse_duration};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use sim::{Heard, Mesh, SimConfig};

/// Options of `meshlens simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Broker to publish to.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt: String,
    /// Seed: the same seed gives the same mesh and traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of nodes.
    #[arg(long, default_value_t = 60)]
    pub nodes: usize,
    /// Number of observers.
    #[arg(long, default_value_t = 6)]
    pub observers: usize,
    /// Simulated time to run.
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    pub duration: Duration,
    /// Simulated seconds per real second, or `max` for as fast as possible.
    #[arg(long, default_value = "10")]
    pub speed: String,
    /// Write the ground truth (nodes, roles, firmware, capability) to this file.
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

/// `None` means as fast as possible.
fn speed(s: &str) -> Result<Option<f64>, String> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(None);
    }
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(Some(v)),
        _ => Err(format!(
            "--speed must be a positive number or max, got {s:?}"
        )),
    }
}

/// The JSON an observer's bridge publishes for one received frame.
fn packet_json(mesh: &Mesh, h: &Heard) -> String {
    let n = &mesh.nodes[h.observer];
    let hash = meshcore::Packet::decode(&h.frame)
        .map(|p| p.hash().to_string().to_uppercase())
        .unwrap_or_default();
    serde_json::json!({
        "origin": n.name,
        "origin_id": n.key_hex().to_uppercase(),
        "timestamp": store::time::iso(h.at_ms),
        "type": "PACKET",
        "direction": "rx",
        "len": h.frame.len().to_string(),
        "raw": hex::encode_upper(&h.frame),
        "SNR": format!("{}", h.snr.trunc()),
        "RSSI": format!("{}", h.rssi.trunc()),
        "score": "1000",
        "hash": hash,
    })
    .to_string()
}

fn status_json(mesh: &Mesh, i: usize) -> String {
    let n = &mesh.nodes[i];
    let fw = if n.firmware == sim::Firmware::Modern {
        "1.14.1"
    } else {
        "1.13.0"
    };
    serde_json::json!({
        "status": "online", "origin": n.name, "origin_id": n.key_hex().to_uppercase(),
        "model": "Heltec V3", "firmware_version": fw, "client_version": "meshlens-sim",
        "radio": "910.525,62.5,7,5",
        "stats": {"battery_mv": 4000 + (i % 200), "uptime_secs": 3600, "noise_floor": -112},
    })
    .to_string()
}

/// Publishes a simulated mesh to `broker` until `duration` of simulated time has passed.
pub async fn publish(
    broker: &BrokerUrl,
    cfg: SimConfig,
    duration: Duration,
    speed: Option<f64>,
    truth: Option<&std::path::Path>,
) -> Result<u64, String> {
    let mut mesh = Mesh::generate(&cfg);
    if let Some(path) = truth {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&mesh.truth()).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let mut opts = MqttOptions::new(
        format!("meshlens-sim-{}", std::process::id()),
        broker.host.clone(),
        broker.port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    if let Some(u) = &broker.username {
        opts.set_credentials(u.clone(), broker.password.clone().unwrap_or_default());
    }
    let (client, mut el) = AsyncClient::new(opts, 1000);
    tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let wall0 = tokio::time::Instant::now();
    let t0 =
        store::time::parse_time(&store::time::iso(ingest::writer_thread::now_ms())).unwrap_or(0);
    let end = t0 + duration.as_millis() as i64;
    let mut sim_t = t0;
    let mut next_status = t0;
    let mut published = 0u64;
    let mut rng = sim::Rng::new(cfg.seed ^ 0xdead_beef);
    let mut batch = mesh.advert_all(t0);
    let observers = mesh.observers();
    // Each node acts about once a minute.
    let mean_gap_ms = 60_000.0 / cfg.nodes.max(1) as f64;
    while sim_t < end {
        if sim_t >= next_status {
            for &o in &observers {
                let topic = format!(
                    "meshcore/SEA/{}/status",
                    mesh.nodes[o].key_hex().to_uppercase()
                );
                let _ = client
                    .publish(topic, QoS::AtMostOnce, false, status_json(&mesh, o))
                    .await;
            }
            next_status += 300_000;
        }
        batch.sort_by_key(|h| h.at_ms);
        for h in batch.drain(..) {
            if let Some(s) = speed {
                let due =
                    wall0 + Duration::from_secs_f64(((h.at_ms - t0).max(0) as f64 / 1000.0) / s);
                tokio::time::sleep_until(due).await;
            }
            let topic = format!(
                "meshcore/SEA/{}/packets",
                mesh.nodes[h.observer].key_hex().to_uppercase()
            );
            if client
                .publish(topic, QoS::AtMostOnce, false, packet_json(&mesh, &h))
                .await
                .is_ok()
            {
                published += 1;
            }
        }
        sim_t += (-(1.0 - rng.unit()).ln() * mean_gap_ms) as i64 + 1;
        batch = mesh.step(sim_t);
    }
    // Let the client flush its queue.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(published)
}

/// `meshlens simulate`.
pub fn run(args: SimulateArgs) -> ExitCode {
    let speed = match speed(&args.speed) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("meshlens simulate: {e}");
            return ExitCode::from(2);
        }
    };
    let broker = match BrokerUrl::parse(&args.mqtt) {
        Ok(b) if b.scheme == ingest::config::Scheme::Mqtt => b,
        Ok(_) => {
            eprintln!("meshlens simulate: only mqtt:// brokers are supported for publishing");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("meshlens simulate: --mqtt: {e}");
            return ExitCode::from(2);
        }
    };
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        return ExitCode::FAILURE;
    };
    let cfg = SimConfig {
        seed: args.seed,
        nodes: args.nodes.clamp(2, 20_000),
        observers: args.observers,
        ..SimConfig::default()
    };
    match rt.block_on(publish(
        &broker,
        cfg,
        args.duration,
        speed,
        args.truth.as_deref(),
    )) {
        Ok(n) => {
            eprintln!("meshlens simulate: published {n} observations");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meshlens simulate: {e}");
            ExitCode::FAILURE
        }
    }
}
