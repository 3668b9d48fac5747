//! `meshlens simulate`: a simulated mesh (crate `sim`) published over MQTT exactly as
//! meshcoretomqtt observers publish, at simulated time scaled by `--speed`, and the same
//! traffic generator behind `meshlens run --demo`. Besides the frames it can write the ground
//! truth: the nodes (`--truth`) and, for scoring a hop resolver, the relay behind every hop of
//! every published observation (`--truth-paths`); `--collision-mesh` switches to the mesh
//! where 1-byte hops are most ambiguous.

use std::fs::File;
use std::future::Future;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ingest::config::{BrokerUrl, parse_duration};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, QoS};
use sim::{Heard, Mesh, RoleMix, SimConfig};

/// Options of `meshlens simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Broker to publish to.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt: String,
    /// Seed: the same seed gives the same mesh and traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of nodes [default: 60, or 1500 with --collision-mesh].
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Number of observers [default: 6, or 40 with --collision-mesh].
    #[arg(long)]
    pub observers: Option<usize>,
    /// Simulated time to run.
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    pub duration: Duration,
    /// Simulated seconds per real second, or `max` for as fast as possible.
    #[arg(long, default_value = "10")]
    pub speed: String,
    /// Write the ground truth (nodes, roles, firmware, capability) to this file.
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// Write the truth path of every published observation to this file, one JSON line each:
    /// {"hash": packet hash (16 hex), "observer": observer's public key, "relays": public keys
    /// of the nodes behind the path's hops, in path order}. TRACE paths hold SNRs, not hops,
    /// so their relays are empty, as are zero-hop packets'.
    #[arg(long, value_name = "FILE")]
    pub truth_paths: Option<PathBuf>,
    /// The heavy-collision mesh: 1,500 nodes, 70 % of them forwarding, 40 observers, so most
    /// 1-byte hops have several candidate relays. --nodes and --observers still apply.
    #[arg(long)]
    pub collision_mesh: bool,
}

/// Writes one JSON line per published observation: its packet hash, its observer and the
/// relays behind its path's hops (`--truth-paths`).
struct TruthPaths {
    out: BufWriter<File>,
    path: PathBuf,
}

impl TruthPaths {
    /// Creates (or truncates) the file.
    fn create(path: &Path) -> Result<TruthPaths, String> {
        let file =
            File::create(path).map_err(|e| format!("--truth-paths {}: {e}", path.display()))?;
        Ok(TruthPaths {
            out: BufWriter::new(file),
            path: path.to_path_buf(),
        })
    }

    /// One line: `{"hash", "observer", "relays"}`, keys and hash in lowercase hex.
    fn write(&mut self, mesh: &Mesh, hash: &str, h: &Heard) -> Result<(), String> {
        let line = serde_json::json!({
            "hash": hash.to_ascii_lowercase(),
            "observer": mesh.nodes[h.observer].key_hex(),
            "relays": h.relays.iter().map(|&r| mesh.nodes[r].key_hex()).collect::<Vec<_>>(),
        });
        serde_json::to_writer(&mut self.out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|e| format!("--truth-paths {}: {e}", self.path.display()))
    }

    /// Flushes what is buffered.
    fn flush(&mut self) -> Result<(), String> {
        self.out
            .flush()
            .map_err(|e| format!("--truth-paths {}: {e}", self.path.display()))
    }
}

/// What [`simulate`] writes besides the MQTT traffic.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outputs<'a> {
    /// `--truth`: the nodes, written once at the start.
    pub truth: Option<&'a Path>,
    /// `--truth-paths`: one line per published observation.
    pub truth_paths: Option<&'a Path>,
}

/// How a simulation run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Observations handed to the MQTT client (one `--truth-paths` line each).
    pub published: u64,
    /// Whether the run was stopped early (by a signal) rather than reaching its duration.
    pub stopped: bool,
    /// Whether the MQTT client sent everything and disconnected before the process went on
    /// (false when the broker was unreachable at the end).
    pub drained: bool,
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

/// The packet hash of a frame as 16 lowercase hex digits (empty if it does not decode, which
/// no simulated frame does).
fn frame_hash(frame: &[u8]) -> String {
    meshcore::Packet::decode(frame)
        .map(|p| p.hash().to_string())
        .unwrap_or_default()
}

/// The JSON an observer's bridge publishes for one received frame whose packet hash is `hash`.
fn packet_json(mesh: &Mesh, h: &Heard, hash: &str) -> String {
    let n = &mesh.nodes[h.observer];
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
        "hash": hash.to_uppercase(),
    })
    .to_string()
}

/// The JSON an observer's bridge publishes as its periodic status.
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

/// Publishes a simulated mesh to `broker` until `duration` of simulated time has passed
/// (`meshlens run --demo` uses this with the default mesh).
pub async fn publish(
    broker: &BrokerUrl,
    cfg: SimConfig,
    duration: Duration,
    speed: Option<f64>,
    truth: Option<&std::path::Path>,
) -> Result<u64, String> {
    let outputs = Outputs {
        truth,
        truth_paths: None,
    };
    let roles = RoleMix::default();
    let run = simulate(
        broker,
        &cfg,
        &roles,
        duration,
        speed,
        outputs,
        std::future::pending(),
    );
    run.await.map(|o| o.published)
}

/// Generates the mesh of `cfg` and `roles`, writes `outputs.truth`, and publishes its traffic
/// to `broker` until `duration` of simulated time has passed or `stop` completes, writing a
/// `--truth-paths` line for each published observation. At the end the truth paths are
/// flushed and the MQTT client sends what it queued and disconnects (bounded in time).
pub async fn simulate(
    broker: &BrokerUrl,
    cfg: &SimConfig,
    roles: &RoleMix,
    duration: Duration,
    speed: Option<f64>,
    outputs: Outputs<'_>,
    stop: impl Future<Output = ()>,
) -> Result<Outcome, String> {
    // Open the outputs first, so that a bad path fails before anything is published.
    let mut truth_paths = outputs.truth_paths.map(TruthPaths::create).transpose()?;
    let mut mesh = Mesh::generate_with(cfg, roles);
    if let Some(path) = outputs.truth {
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
    // Runs the connection until the client's DISCONNECT has been written (everything queued
    // before it was written first) or the client is gone; reconnects on errors.
    let connection = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(rumqttc::ConnectionError::RequestsDone) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    });
    let mut stop = std::pin::pin!(stop);
    let mut stopped = false;
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
    let mean_gap_ms = 60_000.0 / mesh.nodes.len().max(1) as f64;
    'run: while sim_t < end {
        if sim_t >= next_status {
            for &o in &observers {
                let topic = format!(
                    "meshcore/SEA/{}/status",
                    mesh.nodes[o].key_hex().to_uppercase()
                );
                let sent = client.publish(topic, QoS::AtMostOnce, false, status_json(&mesh, o));
                tokio::select! {
                    biased;
                    () = &mut stop => { stopped = true; break 'run; }
                    _ = sent => {}
                }
            }
            next_status += 300_000;
        }
        batch.sort_by_key(|h| h.at_ms);
        for h in batch.drain(..) {
            if let Some(s) = speed {
                let due =
                    wall0 + Duration::from_secs_f64(((h.at_ms - t0).max(0) as f64 / 1000.0) / s);
                tokio::select! {
                    biased;
                    () = &mut stop => { stopped = true; break 'run; }
                    () = tokio::time::sleep_until(due) => {}
                }
            }
            let topic = format!(
                "meshcore/SEA/{}/packets",
                mesh.nodes[h.observer].key_hex().to_uppercase()
            );
            let hash = frame_hash(&h.frame);
            let sent = client.publish(topic, QoS::AtMostOnce, false, packet_json(&mesh, &h, &hash));
            let ok = tokio::select! {
                biased;
                () = &mut stop => { stopped = true; break 'run; }
                r = sent => r.is_ok(),
            };
            if ok {
                published += 1;
                if let Some(tp) = truth_paths.as_mut() {
                    tp.write(&mesh, &hash, &h)?;
                }
            }
        }
        sim_t += (-(1.0 - rng.unit()).ln() * mean_gap_ms) as i64 + 1;
        batch = mesh.step(sim_t);
    }
    if let Some(tp) = truth_paths.as_mut() {
        tp.flush()?;
    }
    // Let the client send what it queued, then disconnect; a broker that is gone does not
    // hold the exit for long (less after a signal: whoever sent it wants out).
    let bound = Duration::from_secs(if stopped { 3 } else { 10 });
    let drained = tokio::time::timeout(bound, async {
        client.disconnect().await.is_ok() && connection.await.is_ok()
    })
    .await
    .unwrap_or(false);
    Ok(Outcome {
        published,
        stopped,
        drained,
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
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
    let (base, roles) = if args.collision_mesh {
        sim::collision_mesh(args.seed)
    } else {
        (
            SimConfig {
                seed: args.seed,
                ..SimConfig::default()
            },
            RoleMix::default(),
        )
    };
    let cfg = SimConfig {
        nodes: args.nodes.unwrap_or(base.nodes).clamp(2, 20_000),
        observers: args.observers.unwrap_or(base.observers),
        ..base
    };
    let outputs = Outputs {
        truth: args.truth.as_deref(),
        truth_paths: args.truth_paths.as_deref(),
    };
    match rt.block_on(simulate(
        &broker,
        &cfg,
        &roles,
        args.duration,
        speed,
        outputs,
        signal(),
    )) {
        Ok(o) => {
            if !o.drained {
                eprintln!(
                    "meshlens simulate: the broker did not take everything before the exit; \
                     some observations may not have arrived"
                );
            }
            let how = if o.stopped { " (stopped early)" } else { "" };
            eprintln!(
                "meshlens simulate: published {} observations{how}",
                o.published
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meshlens simulate: {e}");
            ExitCode::FAILURE
        }
    }
}
