//! Reader benchmark, all in one process as `meshlens run` is (embedded broker, writer, reader):
//! builds a database of N observations from signed adverts, channel messages and direct
//! traffic; measures restart-to-ready and restart-to-complete; p50/p99 of the core endpoints
//! under 16 concurrent clients; p50/p99 of `/api/stats` and `/api/healthz` during a storm of
//! 10,000-row pages (`STORM_CLIENTS`, default 64, for `STORM_SECS`, default 15; 0 skips it);
//! publish-to-WebSocket latency through MQTT; peak RSS per observation and database bytes per
//! observation.
//!
//! ```sh
//! cargo run --release -p server --example api_load -- [OBSERVATIONS]   # default 200000
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ingest::config::SourceConfig;
use ingest::decode::Decoder;
use ingest::message::{PacketMessage, TopicObserver};
use ingest::mqtt::SourceSettings;
use ingest::writer_thread::Maintenance;
use ingest::{Ingest, IngestConfig};
use meshcore::crypto::{Channel, Keyring};
use meshcore::payload::{Advert, AppData, Envelope, GroupText, Location, NodeType};
use meshcore::report::DecodeOptions;
use meshcore::{Packet, PathHashSize, PathLen, PayloadType, Route};
use server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OBSERVERS: usize = 40;
const HEARD_BY: usize = 5;
const NODES: usize = 2000;

fn observer_id(o: usize) -> String {
    format!("{:064x}", 0x0b5e_0000_u64 + o as u64)
}

fn frame(route: Route, t: PayloadType, hs: PathHashSize, hops: &[u8], payload: &[u8]) -> Vec<u8> {
    let n = (hops.len() / hs.bytes()) as u8;
    let pl = PathLen::new(hs, n).unwrap_or(PathLen::ZERO);
    let path = &hops[..pl.byte_len()];
    Packet::new(route, t, pl, path, payload)
        .map(|p| p.to_bytes())
        .unwrap_or_default()
}

/// Transmission `i` as heard by its `k`-th observer.
fn transmission(i: usize, k: usize, public: &Channel) -> Vec<u8> {
    let hs = PathHashSize::ALL[i % 3];
    let hops: Vec<u8> = (0..(1 + k % 4) * hs.bytes())
        .map(|b| (b * 37 + i) as u8)
        .collect();
    match i % 10 {
        0 => {
            let node = i / 10 % NODES;
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&(node as u64).to_le_bytes());
            let name = format!("node-{node}");
            let mut app = Vec::new();
            let ty = [
                NodeType::REPEATER,
                NodeType::CHAT,
                NodeType::ROOM,
                NodeType::SENSOR,
            ][node % 4];
            let loc = Location {
                lat_raw: 47_000_000 + node as i32 * 100,
                lon_raw: -122_000_000,
            };
            AppData::new(ty, Some(loc), Some(name.as_bytes())).encode(&mut app);
            let mut payload = Vec::new();
            Advert::encode_signed(&seed, 1_700_000_000 + i as u32, &app, &mut payload);
            frame(Route::Flood, PayloadType::Advert, hs, &hops, &payload)
        }
        1..=3 => {
            let mut plain = Vec::new();
            let text = format!("user{}: message number {i}", i % 97);
            GroupText {
                timestamp: i as u32,
                flags: 0,
                text: &text,
            }
            .encode(&mut plain);
            let mut payload = Vec::new();
            public.encrypt_into(&plain, &mut payload);
            frame(Route::Flood, PayloadType::GrpTxt, hs, &hops, &payload)
        }
        _ => {
            let ct = (i as u128).to_le_bytes();
            let mut payload = Vec::new();
            Envelope {
                dest_hash: i as u8,
                src_hash: (i >> 8) as u8,
                mac: [1, 2],
                ciphertext: &ct,
            }
            .encode(&mut payload);
            frame(Route::Flood, PayloadType::TxtMsg, hs, &hops, &payload)
        }
    }
}

fn build(db: &Path, observations: usize) {
    let public = Channel::public();
    let decoder = Decoder {
        keyring: Keyring::with_public(),
        ..Decoder::default()
    };
    let mut w = store::Writer::open(db, 0).expect("writer");
    let now = server::now_ms();
    let transmissions = observations / HEARD_BY;
    let mut batch = Vec::with_capacity(4096);
    for i in 0..transmissions {
        for k in 0..HEARD_BY {
            let msg = PacketMessage {
                observer: TopicObserver {
                    id: observer_id((i + k * 7) % OBSERVERS),
                    iata: ["SEA", "PDX"][k % 2].into(),
                },
                origin: Some(format!("obs-{}", (i + k * 7) % OBSERVERS)),
                region: None,
                raw: transmission(i, k, &public),
                snr: Some((i % 20) as f64 - 5.0),
                rssi: Some(-100.0),
                score: None,
                airtime_ms: None,
            };
            // Spread over the last 6 days.
            let at = now - 6 * 86_400_000
                + (i as i64 * 6 * 86_400_000 / transmissions as i64)
                + k as i64 * 300;
            batch.push(decoder.item(msg, at).0);
            if batch.len() == 4096 {
                w.write_batch(&batch).expect("write");
                batch.clear();
            }
        }
    }
    w.write_batch(&batch).expect("write");
    w.checkpoint().expect("checkpoint");
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, Vec::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, Vec::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let status = std::str::from_utf8(out.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

/// The heavy-request storm: `STORM_CLIENTS` (default 64) clients fetching 10,000-row pages
/// for `STORM_SECS` (default 15) while one client measures the cheap routes, and a writer
/// commits every 100 ms so `/api/stats` is recomputed (as under live ingest) rather than served
/// from its per-commit cache. Each storm request is distinct (a cache-buster parameter). Storm clients come from 127.0.0.1 to 127.0.0.8, eight each at
/// most: the per-address budget is the default one.
async fn storm(addr: SocketAddr, db: &Path) {
    let clients: usize = std::env::var("STORM_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let secs: u64 = std::env::var("STORM_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    if clients == 0 || secs == 0 {
        return;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let db = db.to_path_buf();
        std::thread::spawn(move || {
            let Ok(mut w) = store::Writer::open(&db, 0) else {
                return;
            };
            let public = Channel::public();
            let decoder = Decoder::default();
            let mut i = 10_000_000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let msg = PacketMessage {
                    observer: TopicObserver {
                        id: observer_id(0),
                        iata: "SEA".into(),
                    },
                    origin: None,
                    region: None,
                    raw: transmission(i * 10 + 5, 0, &public),
                    snr: None,
                    rssi: None,
                    score: None,
                    airtime_ms: None,
                };
                let _ = w.write_batch(&[decoder.item(msg, server::now_ms()).0]);
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut heavy = Vec::new();
    for c in 0..clients {
        let stop = stop.clone();
        heavy.push(tokio::spawn(async move {
            let ip = std::net::Ipv4Addr::new(127, 0, 0, 1 + (c % 8) as u8);
            let mut statuses: HashMap<u16, usize> = HashMap::new();
            let mut k = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A cache-buster, as browser libraries add: identical concurrent requests
                // would otherwise share one computation.
                let path = format!("/api/packets?limit=10000&_={c}.{k}");
                *statuses
                    .entry(get_from(ip, addr, &path).await.0)
                    .or_default() += 1;
                k += 1;
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut cheap: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut cheap_errors = 0;
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        for path in ["/api/stats", "/api/healthz"] {
            let t = Instant::now();
            let (status, _) = get(addr, path).await;
            cheap_errors += usize::from(status != 200);
            cheap
                .entry(path)
                .or_default()
                .push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for h in heavy {
        for (s, n) in h.await.unwrap_or_default() {
            *statuses.entry(s).or_default() += n;
        }
    }
    let _ = writer.join();
    let mut statuses: Vec<_> = statuses.into_iter().collect();
    statuses.sort();
    println!(
        "storm: {clients} clients on /api/packets?limit=10000 for {secs} s, answers by status {statuses:?}; cheap routes meanwhile (non-200: {cheap_errors}):"
    );
    for path in ["/api/stats", "/api/healthz"] {
        let v = cheap.entry(path).or_default();
        println!(
            "  {path:<32} p50 {:8.2} ms  p99 {:8.2} ms  (n={})",
            pct(v, 0.5),
            pct(v, 0.99),
            v.len()
        );
    }
}

/// [`get`] from a chosen local address (any 127.0.0.0/8 address is loopback on Linux).
async fn get_from(ip: std::net::Ipv4Addr, addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let Ok(sock) = tokio::net::TcpSocket::new_v4() else {
        return (0, Vec::new());
    };
    if sock.bind(SocketAddr::new(ip.into(), 0)).is_err() {
        return (0, Vec::new());
    }
    let Ok(mut s) = sock.connect(addr).await else {
        return (0, Vec::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, Vec::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let status = std::str::from_utf8(out.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

/// Builds the request path for the n-th request to an endpoint.
type PathFn = Box<dyn Fn(usize) -> String + Send + Sync>;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

fn vm_hwm() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn server_cfg(db: &Path) -> ServerConfig {
    ServerConfig {
        db_path: db.to_path_buf(),
        decode: DecodeOptions::default(),
        allowed_origins: Vec::new(),
        ingest: None,
        pool_size: 4,
        query_deadline: server::db::QUERY_DEADLINE,
        capability: server::capability::CycleConfig {
            window: Duration::from_secs(7 * 86_400),
            interval: Duration::from_secs(3600),
            publish_to: None,
        },
        ui: Default::default(),
        allowed_hosts: Vec::new(),
        limits: Default::default(),
        admin_key: None,
        alerts: None,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let observations: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("meshlens.db");
    let t = Instant::now();
    build(&db, observations);
    let db_bytes = std::fs::metadata(&db).map_or(0, |m| m.len());
    if let Some(keep) = std::env::var_os("KEEP_DB") {
        let _ = std::fs::copy(&db, keep);
    }
    println!(
        "built {observations} observations in {:.1} s; database {:.0} bytes/observation",
        t.elapsed().as_secs_f64(),
        db_bytes as f64 / observations as f64
    );

    // Restart: a fresh reader on the existing database.
    let t = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = Server::start(server_cfg(&db), listener).expect("server");
    let addr = server.addr;
    while get(addr, "/api/healthz").await.0 != 200 {}
    let ready = t.elapsed();
    let (_, stats) = get(addr, "/api/stats").await;
    let complete = t.elapsed();
    let body = String::from_utf8_lossy(&stats);
    let total_ok = body.contains(&format!("\"totalObservations\":{observations}"));
    println!(
        "restart-to-ready {:.1} ms; restart-to-complete {:.1} ms (complete counts: {total_ok})",
        ready.as_secs_f64() * 1e3,
        complete.as_secs_f64() * 1e3
    );

    // The first capability cycle (load from SQLite + inference) over the whole database.
    let cycle = loop {
        let (_, hs) = get(addr, "/api/analytics/hash-sizes").await;
        let text = String::from_utf8_lossy(&hs).to_string();
        if text.contains("\"complete\":true") {
            let ms = text
                .split("\"cycleMs\":")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .unwrap_or("?")
                .to_string();
            break ms;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("capability cycle over {observations} observations: {cycle} ms (load + inference)");

    // Sample keys for detail endpoints.
    let (_, page) = get(addr, "/api/packets?limit=200").await;
    let text = String::from_utf8_lossy(&page).to_string();
    let hashes: Vec<String> = text
        .match_indices("\"hash\":\"")
        .filter_map(|(i, _)| text.get(i + 8..i + 24).map(str::to_owned))
        .collect();
    let (_, nodes) = get(addr, "/api/nodes?limit=200").await;
    let text = String::from_utf8_lossy(&nodes).to_string();
    let keys: Vec<String> = text
        .match_indices("\"public_key\":\"")
        .filter_map(|(i, _)| text.get(i + 14..i + 78).map(str::to_owned))
        .collect();

    let endpoints: Vec<(&str, PathFn)> = vec![
        (
            "/api/packets",
            Box::new(|i| format!("/api/packets?limit=50&offset={}", i * 50 % 5000)),
        ),
        (
            "/api/packets?type=GRP_TXT",
            Box::new(|i| {
                format!(
                    "/api/packets?type=GRP_TXT&limit=50&offset={}",
                    i * 50 % 2000
                )
            }),
        ),
        ("/api/packets/{hash}", {
            let h = hashes.clone();
            Box::new(move |i| format!("/api/packets/{}", h[i % h.len().max(1)]))
        }),
        (
            "/api/nodes",
            Box::new(|i| format!("/api/nodes?limit=50&offset={}", i * 50 % 1000)),
        ),
        ("/api/nodes/{pubkey}", {
            let k = keys.clone();
            Box::new(move |i| format!("/api/nodes/{}", k[i % k.len().max(1)]))
        }),
        ("/api/observers", Box::new(|_| "/api/observers".into())),
        ("/api/channels", Box::new(|_| "/api/channels".into())),
        (
            "/api/channels/Public/messages",
            Box::new(|i| {
                format!(
                    "/api/channels/Public/messages?limit=50&offset={}",
                    i * 50 % 2000
                )
            }),
        ),
        ("/api/stats", Box::new(|_| "/api/stats".into())),
        ("/api/healthz", Box::new(|_| "/api/healthz".into())),
    ];
    let endpoints = Arc::new(endpoints);
    let clients: usize = std::env::var("CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let per_client = 960 / clients;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let endpoints = endpoints.clone();
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(usize, f64, u16)> = Vec::new();
            for r in 0..per_client {
                let e = (c + r) % endpoints.len();
                let path = (endpoints[e].1)(c * per_client + r);
                let t = Instant::now();
                let (status, _) = get(addr, &path).await;
                out.push((e, t.elapsed().as_secs_f64() * 1e3, status));
            }
            out
        }));
    }
    let mut lat: HashMap<usize, Vec<f64>> = HashMap::new();
    let mut errors = 0;
    for t in tasks {
        for (e, ms, status) in t.await.unwrap_or_default() {
            errors += usize::from(status != 200);
            lat.entry(e).or_default().push(ms);
        }
    }
    let wall = t.elapsed().as_secs_f64();
    println!(
        "{clients} concurrent clients, {} requests in {wall:.2} s ({:.0} req/s), non-200: {errors}",
        clients * per_client,
        (clients * per_client) as f64 / wall
    );
    let mut all = Vec::new();
    for (e, (name, _)) in endpoints.iter().enumerate() {
        let v = lat.entry(e).or_default();
        all.extend(v.iter().copied());
        println!(
            "  {name:<32} p50 {:6.2} ms  p99 {:6.2} ms  (n={})",
            pct(v, 0.5),
            pct(v, 0.99),
            v.len()
        );
    }
    println!(
        "  {:<32} p50 {:6.2} ms  p99 {:6.2} ms",
        "all",
        pct(&mut all.clone(), 0.5),
        pct(&mut all, 0.99)
    );
    storm(addr, &db).await;
    server.shutdown().await;

    // Publish-to-WebSocket latency through the embedded broker, the writer and the reader.
    let broker = ingest::broker::start("127.0.0.1:0".parse().expect("addr")).expect("broker");
    let ingest = Ingest::start(IngestConfig {
        db_path: db.clone(),
        sources: vec![SourceConfig::from_url("bench", &format!("mqtt://{broker}")).expect("url")],
        decoder: Decoder::default(),
        maintenance: Maintenance {
            packet_retention: None,
            ..Maintenance::default()
        },
        maintenance_interval: Duration::from_secs(3600),
        source_settings: SourceSettings::default(),
        status_file: None,
        mbcap: None,
    })
    .expect("ingest");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = Server::start(server_cfg(&db), listener).expect("server");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr))
        .await
        .expect("ws");
    let stats = ingest.stats();
    while stats.sources().get("bench").map(|s| s.state) != Some("connected") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut opts = rumqttc::MqttOptions::new("bench-pub", broker.ip().to_string(), broker.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 1000);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = 500;
    let sent: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let pubs = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let topic = format!("meshcore/SEA/{}/packets", observer_id(0));
            for i in 0..n {
                let payload = [0x0d, 0x00, 0xee, (i >> 8) as u8, i as u8, 0x42];
                let hash = Packet::decode(&payload)
                    .map(|p| p.hash().to_string())
                    .unwrap_or_default();
                let msg = format!(r#"{{"raw":"{}","SNR":"5"}}"#, hex::encode(payload));
                if let Ok(mut m) = sent.lock() {
                    m.insert(hash, Instant::now());
                }
                let _ = client
                    .publish(&topic, rumqttc::QoS::AtMostOnce, false, msg)
                    .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            client
        })
    };
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while latencies.len() < n && Instant::now() < deadline {
        let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await
        else {
            break;
        };
        let Ok(text) = msg.to_text() else { continue };
        let Some(i) = text.find("\"hash\":\"") else {
            continue;
        };
        let hash = text.get(i + 8..i + 24).unwrap_or_default();
        if let Some(t0) = sent.lock().ok().and_then(|m| m.get(hash).copied()) {
            latencies.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let _client = pubs.await;
    println!(
        "publish-to-WebSocket: {} of {n} received; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        pct(&mut latencies.clone(), 0.5),
        pct(&mut latencies.clone(), 0.99),
        pct(&mut latencies, 1.0)
    );
    server.shutdown().await;
    ingest.shutdown().await;
    let hwm = vm_hwm();
    println!(
        "peak RSS of the process {:.1} MiB = {:.0} bytes/observation",
        hwm as f64 / 1048576.0,
        hwm as f64 / observations as f64
    );
}
