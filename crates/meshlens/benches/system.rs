//! The whole-system benchmark: a simulated mesh published through real MQTT into a
//! `meshlens run` process, measured from the outside.
//!
//! ```sh
//! cargo bench -p meshlens --bench system -- 200000     # observations (default 200,000)
//! cargo bench -p meshlens --bench system -- 2000000
//! MESHLENS_BIN=/path/to/other/meshlens cargo bench -p meshlens --bench system   # A/B
//! ```
//! Reports ingest rate and keep-up, peak RSS per observation of the meshlens process, API
//! p50/p99 under 16 concurrent clients, publish-to-WebSocket latency, restart-to-ready and
//! restart-to-complete, and database bytes per observation.

#[path = "../tests/support/http.rs"]
mod http;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http::get;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use sim::{Mesh, SimConfig};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn spawn(data: &Path, mqtt: SocketAddr, http: SocketAddr) -> Child {
    // `MESHLENS_BIN` runs the same load against another build (an A/B of two commits with
    // one driver).
    let bin =
        std::env::var_os("MESHLENS_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_meshlens").into());
    Command::new(bin)
        .args(["run", "--data-dir"])
        .arg(data)
        .args([
            "--mqtt-listen",
            &mqtt.to_string(),
            "--http",
            &http.to_string(),
            "--retention",
            "0",
        ])
        .args([
            "--analytics-interval",
            &std::env::var("ANALYTICS_INTERVAL").unwrap_or_else(|_| "60s".into()),
        ])
        .env(
            "MESHLENS_LOG",
            std::env::var("MESHLENS_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .envs(
            std::env::var("MESHLENS_MALLOC_ARENA_MAX")
                .ok()
                .map(|v| ("MALLOC_ARENA_MAX", v)),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("meshlens")
}

fn json_num(body: &str, key: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get(key)?.as_u64()
}

fn vm_hwm(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:") * 1024
}

fn vm_rss(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:") / 1024
}

/// A field of `/proc/<pid>/status` in KiB (0 when unreadable).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// RSS split into the process's own memory (heap, stacks) and mapped file pages (mostly the
/// binary's code, which grows with features and is shared with the page cache).
fn rss_split(pid: u32) -> String {
    format!(
        "{:.1} MiB anonymous + {:.1} MiB file",
        status_kib(pid, "RssAnon:") as f64 / 1024.0,
        status_kib(pid, "RssFile:") as f64 / 1024.0
    )
}

/// CPU time (user + system) the process has used, in milliseconds: the cost of a phase is
/// the difference across it, which unlike latency does not depend on what else the machine
/// runs.
fn cpu_ms(pid: u32) -> u64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may contain spaces.
            let rest = s.get(s.rfind(')')? + 2..)?.to_owned();
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
            Some(f.get(11)? + f.get(12)?)
        })
        .unwrap_or(0);
    ticks * 10 // USER_HZ is 100 on Linux
}

/// Endpoint `e` of the mix as a route, for the reports (`/api/nodes/{id}`, no parameters).
fn endpoint_name(e: usize, hashes: &[String], keys: &[String]) -> String {
    let path = endpoint(e, 0, hashes, keys);
    let path = path.split('?').next().unwrap_or_default();
    match (e, path.rsplit_once('/')) {
        (1 | 3, Some((route, _))) => format!("{route}/{{id}}"),
        _ => path.to_owned(),
    }
}

/// The `i`-th request to endpoint `e` (0–7) of the mix.
fn endpoint(e: usize, i: usize, hashes: &[String], keys: &[String]) -> String {
    let pick = |v: &[String]| v.get(i % v.len().max(1)).cloned().unwrap_or_default();
    match e {
        0 => format!("/api/packets?limit=50&offset={}", i * 50 % 5000),
        1 => format!("/api/packets/{}", pick(hashes)),
        2 => format!("/api/nodes?limit=50&offset={}", i * 50 % 1000),
        3 => format!("/api/nodes/{}", pick(keys)),
        4 => "/api/observers".into(),
        5 => format!(
            "/api/channels/Public/messages?limit=50&offset={}",
            i * 50 % 2000
        ),
        6 => "/api/stats".into(),
        _ => "/api/analytics/hash-sizes".into(),
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

async fn wait_ready(http: SocketAddr) -> Duration {
    let t = Instant::now();
    while get(http, "/api/healthz").await.0 != 200 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(t.elapsed() < Duration::from_secs(60), "never ready");
    }
    t.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let target: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let rate: u64 = std::env::var("RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let mqtt: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut child = spawn(dir.path(), mqtt, http);
    let pid = child.id();
    wait_ready(http).await;
    println!("RSS at start: {} MiB ({})", vm_rss(pid), rss_split(pid));
    println!(
        "system benchmark: {target} observations offered at {rate}/s into `meshlens run` (pid {pid})"
    );

    // Load: a simulated mesh (2,000 nodes, 40 observers), one MQTT client per observer.
    let mut mesh = Mesh::generate(&SimConfig {
        seed: 42,
        nodes: 2000,
        observers: 40,
        modern_share: 0.6,
    });
    let mut clients = std::collections::HashMap::new();
    for o in mesh.observers() {
        let mut opts = MqttOptions::new(format!("obs-{o}"), mqtt.ip().to_string(), mqtt.port());
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (c, mut el) = AsyncClient::new(opts, 4096);
        tokio::spawn(async move { while el.poll().await.is_ok() {} });
        clients.insert(o, c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Generate everything first, so the generator does not compete with meshlens for the
    // two cores while the load runs.
    let t0 = ingest::writer_thread::now_ms();
    let mut msgs: Vec<(usize, String, String)> = Vec::with_capacity(target as usize);
    let mut batch = mesh.advert_all(t0);
    let mut sim_t = t0;
    while (msgs.len() as u64) < target {
        for h in batch.drain(..) {
            let n = &mesh.nodes[h.observer];
            let topic = format!("meshcore/SEA/{}/packets", n.key_hex());
            let msg = format!(
                r#"{{"origin":"{}","raw":"{}","SNR":"{}","RSSI":"{}"}}"#,
                n.name,
                hex::encode_upper(&h.frame),
                h.snr.trunc(),
                h.rssi.trunc()
            );
            msgs.push((h.observer, topic, msg));
        }
        sim_t += 30;
        batch = mesh.step(sim_t);
    }
    msgs.truncate(target as usize);
    let mut sent = 0u64;
    let start = Instant::now();
    for (o, topic, msg) in msgs {
        let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        if let Some(c) = clients.get(&o) {
            let _ = c.publish(topic, QoS::AtMostOnce, false, msg).await;
            sent += 1;
        }
    }
    let published = start.elapsed();
    // Keep-up: how long after the last publish the last observation is committed.
    let mut stored = 0;
    let mut last_change = Instant::now();
    loop {
        let (_, body) = get(http, "/api/healthz").await;
        let now = json_num(&body, "last_observation_id").unwrap_or(0);
        if now != stored {
            stored = now;
            last_change = Instant::now();
        }
        if stored >= sent || last_change.elapsed() > Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lag = last_change.saturating_duration_since(start + published);
    println!(
        "ingest: published {sent} in {:.1} s ({:.0}/s); stored {stored} observation rows; last commit {:.0} ms after the last publish",
        published.as_secs_f64(),
        sent as f64 / published.as_secs_f64(),
        lag.as_secs_f64() * 1e3
    );
    println!("RSS after ingest: {} MiB ({})", vm_rss(pid), rss_split(pid));
    // Wait for a capability cycle over the full data (analytics run every 60 s by default).
    let (_, stats) = get(http, "/api/stats").await;
    let total_obs = json_num(&stats, "totalObservations").unwrap_or(stored);

    // API latency under 16 concurrent clients.
    let (_, page) = get(http, "/api/packets?limit=100").await;
    let hashes: Vec<String> = page
        .match_indices("\"hash\":\"")
        .filter_map(|(i, _)| page.get(i + 8..i + 24).map(str::to_owned))
        .collect();
    let (_, nodes) = get(http, "/api/nodes?limit=100").await;
    let keys: Vec<String> = nodes
        .match_indices("\"public_key\":\"")
        .filter_map(|(i, _)| nodes.get(i + 14..i + 78).map(str::to_owned))
        .collect();
    if std::env::var_os("RSS_BY_ENDPOINT").is_some() {
        for e in 0..8usize {
            let mut ts = Vec::new();
            for c in 0..16usize {
                let (hashes, keys) = (hashes.clone(), keys.clone());
                ts.push(tokio::spawn(async move {
                    for r in 0..8usize {
                        let i = c * 8 + r;
                        let path = endpoint(e, i, &hashes, &keys);
                        let _ = get(http, &path).await;
                    }
                }));
            }
            for t in ts {
                let _ = t.await;
            }
            println!("RSS after endpoint {e}: {} MiB", vm_rss(pid));
        }
    }
    // The process's own CPU while idle, then per request under the load: background work
    // (analytics cycles, maintenance) shows in the first, the cost of an answer in the second.
    let idle0 = cpu_ms(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = cpu_ms(pid).saturating_sub(idle0);
    let cpu0 = cpu_ms(pid);
    let mut tasks = Vec::new();
    for c in 0..16usize {
        let (hashes, keys) = (hashes.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for r in 0..60usize {
                let i = c * 60 + r;
                let path = endpoint(i % 8, i, &hashes, &keys);
                let t = Instant::now();
                let (st, body) = get(http, &path).await;
                if st != 200 && r < 8 {
                    eprintln!(
                        "non-200 {st} for {path}: {}",
                        body.get(..200).unwrap_or(&body)
                    );
                }
                lat.push((t.elapsed().as_secs_f64() * 1e3, st, i % 8));
            }
            lat
        }));
    }
    let mut all = Vec::new();
    let mut by_endpoint: Vec<Vec<f64>> = vec![Vec::new(); 8];
    let mut errors = 0;
    for t in tasks {
        for (ms, st, e) in t.await.unwrap_or_default() {
            errors += usize::from(st != 200);
            all.push(ms);
            by_endpoint[e].push(ms);
        }
    }
    for (e, lat) in by_endpoint.iter_mut().enumerate() {
        let name = endpoint_name(e, &hashes, &keys);
        println!(
            "  {name:<32} p50 {:7.2} ms  p99 {:7.2} ms",
            pct(&mut lat.clone(), 0.5),
            pct(lat, 0.99)
        );
    }
    println!(
        "api: 16 clients x 60 requests over 8 endpoints: p50 {:.2} ms, p99 {:.2} ms, non-200 {errors}",
        pct(&mut all.clone(), 0.5),
        pct(&mut all, 0.99)
    );

    let cpu = cpu_ms(pid).saturating_sub(cpu0);
    println!(
        "meshlens CPU: {idle} ms in 2 s idle before the load; {cpu} ms for the 960 requests = {:.0} us/request",
        cpu as f64 * 1e3 / 960.0
    );
    println!(
        "RSS after the API load: {} MiB ({})",
        vm_rss(pid),
        rss_split(pid)
    );
    // Publish-to-WebSocket latency.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .expect("ws");
    let probe = clients.values().next().cloned().expect("a client");
    let obs_key = mesh.nodes[mesh.observers()[0]].key_hex();
    let sent_at: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> =
        Default::default();
    let pubs = {
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            for i in 0..300u32 {
                let raw = [&[0x0du8, 0x00, 0xfe][..], &i.to_le_bytes()].concat();
                let hash = meshcore::Packet::decode(&raw)
                    .map(|p| p.hash().to_string())
                    .unwrap_or_default();
                if let Ok(mut m) = sent_at.lock() {
                    m.insert(hash, Instant::now());
                }
                let msg = format!(r#"{{"raw":"{}"}}"#, hex::encode(&raw));
                let _ = probe
                    .publish(
                        format!("meshcore/SEA/{obs_key}/packets"),
                        QoS::AtMostOnce,
                        false,
                        msg,
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // How long the writer's current step has lasted (the `meshlens_writer_busy_seconds` gauge
    // of `/metrics`), sampled every 50 ms: tells a stalled writer from a stalled feed.
    let sampler = tokio::spawn(async move {
        let mut longest = 0f64;
        for _ in 0..80 {
            let (_, body) = get(http, "/metrics").await;
            let busy = body
                .lines()
                .find_map(|l| l.strip_prefix("meshlens_writer_busy_seconds "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            longest = longest.max(busy);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        longest
    });
    let mut lat = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lat.len() < 300 && Instant::now() < deadline {
        let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await else {
            break;
        };
        let Ok(text) = m.to_text() else { continue };
        let Some(i) = text.find("\"hash\":\"") else {
            continue;
        };
        let h = text.get(i + 8..i + 24).unwrap_or_default();
        if let Some(t) = sent_at.lock().ok().and_then(|m| m.get(h).copied()) {
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let _ = pubs.await;
    if let Ok(secs) = sampler.await {
        println!("  longest writer step seen during it: {:.0} ms", secs * 1e3);
    }
    println!(
        "publish-to-WebSocket: {} of 300; p50 {:.1} ms, p99 {:.1} ms",
        lat.len(),
        pct(&mut lat.clone(), 0.5),
        pct(&mut lat, 0.99)
    );

    let hwm = vm_hwm(pid);
    // (after the peak is read, so the peak stays comparable with earlier runs)
    // What each endpoint costs the process: 400 requests of one endpoint from 4 clients, CPU
    // time across them (10 ms ticks: 25 us per request).
    for e in 0..8usize {
        let cpu0 = cpu_ms(pid);
        let mut ts = Vec::new();
        for c in 0..4usize {
            let (hashes, keys) = (hashes.clone(), keys.clone());
            ts.push(tokio::spawn(async move {
                for r in 0..100usize {
                    let _ = get(http, &endpoint(e, c * 100 + r, &hashes, &keys)).await;
                }
            }));
        }
        for t in ts {
            let _ = t.await;
        }
        println!(
            "  CPU per request {:<32} {:5.0} us",
            endpoint_name(e, &hashes, &keys),
            cpu_ms(pid).saturating_sub(cpu0) as f64 * 1e3 / 400.0
        );
    }
    let db_bytes: u64 = ["meshlens.db", "meshlens.db-wal"]
        .iter()
        .map(|f| std::fs::metadata(dir.path().join(f)).map_or(0, |m| m.len()))
        .sum();
    println!(
        "peak RSS of meshlens {:.1} MiB = {:.0} bytes/observation; database {:.0} bytes/observation",
        hwm as f64 / 1048576.0,
        hwm as f64 / total_obs as f64,
        db_bytes as f64 / total_obs as f64
    );

    // Restart.
    let t = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = child.wait().expect("wait");
    println!(
        "SIGTERM to exit {:.0} ms ({status})",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let mut child = spawn(dir.path(), mqtt, http);
    let ready = wait_ready(http).await;
    loop {
        let (_, body) = get(http, "/api/stats").await;
        if json_num(&body, "totalObservations").unwrap_or(0) >= total_obs {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!(
        "restart-to-ready {:.0} ms, restart-to-complete {:.0} ms",
        ready.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    if let Some(keep) = std::env::var_os("KEEP_DIR") {
        let _ = std::fs::copy(
            dir.path().join("meshlens.db"),
            std::path::Path::new(&keep).join("meshlens.db"),
        );
    }
}
