//! Latency of the RF, observer-history and clock-skew routes over a synthetic database:
//! OBSERVERS observers with a status every 5 minutes for DAYS days, OBSERVATIONS observations
//! of the last 24 hours (each transmission heard by 5 observers, with envelope timestamps),
//! and NODES nodes advertising every 3 hours for 7 days. Seven sequential requests per route;
//! prints the first (computed; later ones may come from the answer cache), median and maximum;
//! then 16 concurrent clients cycle through every route for `LOAD_SECS` (default 20): p50/p99
//! per route and the process's peak RSS.
//!
//! ```sh
//! cargo run -p server --example rf_load -- [OBSERVATIONS] [OBSERVERS] [DAYS] [NODES]
//! RF_DB=/tmp/rf.db cargo run ...   # keep the database; run again to measure without the writer
//! MALLOC_ARENA_MAX=2 ...            # as `meshlens run`/`serve` set it for themselves
//! ```

use std::time::{Duration, Instant};

use meshcore::payload::{Advert, AppData, NodeType, public_key_of};
use store::{
    Advert as NodeAdvert, ClockReading, Item, Observer, PacketRecord, Role, Status, Writer,
};

/// A memory figure of this process from `/proc/self/status` (`VmRSS:`, `VmHWM:`), in MiB.
fn status_mib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

fn arg(i: usize, default: i64) -> i64 {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn observer(o: i64) -> Observer {
    Observer {
        id: format!("{:064x}", 0xfeed_0000_i64 + o),
        name: Some(format!("obs {o}")),
        iata: Some(if o % 2 == 0 { "SEA" } else { "PDX" }.into()),
    }
}

fn record(o: i64, at: i64, hash: u64, raw: Vec<u8>, head_len: usize) -> PacketRecord {
    PacketRecord {
        observer: observer(o),
        received_at: at,
        path_len: raw.get(1).copied().unwrap_or(0),
        raw,
        head_len,
        hash,
        route_type: 1,
        payload_type: 2,
        payload_version: 0,
        snr: Some((hash % 25) as f64 - 12.5),
        rssi: Some(-80.0 - (hash % 40) as f64),
        score: None,
        airtime_ms: hash.is_multiple_of(2).then_some(150),
        clock: Some(ClockReading::Offset(o * 1000 + (hash % 50) as i64)),
        from_pubkey: None,
        channel: None,
        scope: None,
        advert: None,
        reject_reason: None,
    }
}

fn main() {
    let observations = arg(1, 500_000);
    let observers = arg(2, 20);
    let days = arg(3, 30);
    let nodes = arg(4, 500);
    let dir = tempfile::tempdir().unwrap();
    // RF_DB=<file> keeps the database there; a second run with the same file skips the build,
    // so its peak RSS is the reader's and the clients' alone (no writer in the process).
    let kept = std::env::var_os("RF_DB").map(std::path::PathBuf::from);
    let reuse = kept.as_ref().is_some_and(|p| p.exists());
    let db = kept.unwrap_or_else(|| dir.path().join("rf.db"));
    let now = server::now_ms();
    if reuse {
        println!("reusing {} (no writer in this process)", db.display());
    } else {
        build_db(&db, now, observations, observers, days, nodes);
    }
    serve_and_load(db, now, days);
}

/// Writes the synthetic database (see the module doc).
fn build_db(
    db: &std::path::Path,
    now: i64,
    observations: i64,
    observers: i64,
    days: i64,
    nodes: i64,
) {
    let mut w = Writer::open(db, 0).unwrap();
    let build = Instant::now();
    let mut batch: Vec<Item> = Vec::with_capacity(4096);
    let flush = |batch: &mut Vec<Item>, w: &mut Writer| {
        w.write_batch(batch).unwrap();
        batch.clear();
    };
    // Statuses.
    let step = 300_000;
    let mut t = now - days * 86_400_000;
    while t < now {
        for o in 0..observers {
            batch.push(Item::Status(Status {
                observer: Some(observer(o)),
                received_at: t + o,
                noise_floor: Some(-110.0 + (t / step % 10) as f64),
                battery_mv: Some(4000),
                tx_air_secs: Some(t / 10_000),
                rx_air_secs: Some(t / 5_000),
                radio: Some("910.525,62.5,7,5".into()),
                clock: Some(ClockReading::Offset(o * 1000)),
                ..Status::default()
            }));
        }
        if batch.len() >= 4000 {
            flush(&mut batch, &mut w);
        }
        t += step;
    }
    flush(&mut batch, &mut w);
    // Observations over the last day.
    let tx_count = observations / 5;
    for i in 0..tx_count {
        let at = now - 86_400_000 + i * 86_400_000 / tx_count.max(1);
        let hops = 1 + (i % 4) as usize;
        let size = 1 + (i % 3) as usize;
        for k in 0..5 {
            let mut raw = vec![0x09, (((size - 1) << 6) | hops) as u8];
            raw.extend(std::iter::repeat_n(k as u8, hops * size));
            let head = raw.len();
            raw.extend_from_slice(&(i as u64).to_be_bytes());
            raw.extend_from_slice(&[0x33; 30]);
            batch.push(Item::Packet(record(
                (i + k) % observers,
                at + k,
                i as u64,
                raw,
                head,
            )));
        }
        if batch.len() >= 4000 {
            flush(&mut batch, &mut w);
        }
    }
    flush(&mut batch, &mut w);
    // Adverts.
    for n in 0..nodes {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(n as u64).to_le_bytes());
        let key = hex::encode(public_key_of(&seed));
        let mut at = now - 7 * 86_400_000 + n * 1000;
        while at < now {
            let ts = (at / 1000 + (n % 7) * 60 - 30) as u32;
            let mut appdata = Vec::new();
            AppData::new(NodeType::REPEATER, None, Some(b"node")).encode(&mut appdata);
            let mut payload = Vec::new();
            Advert::encode_signed(&seed, ts, &appdata, &mut payload);
            let mut raw = vec![0x11, 0x00];
            raw.extend_from_slice(&payload);
            let hash = (1u64 << 62) | ((n as u64) << 20) | ((at as u64 / 3_600_000) & 0xFFFFF);
            let mut p = record(n % observers, at, hash, raw, 2);
            p.payload_type = 4;
            p.from_pubkey = Some(key.clone());
            p.advert = Some(NodeAdvert {
                public_key: key.clone(),
                name: Some("node".into()),
                role: Role::Repeater,
                location: None,
                advert_time: ts,
                foreign: false,
            });
            batch.push(Item::Packet(p));
            if batch.len() >= 4000 {
                flush(&mut batch, &mut w);
            }
            at += 3 * 3_600_000;
        }
    }
    flush(&mut batch, &mut w);
    println!("built in {:.1} s", build.elapsed().as_secs_f64());
    drop(w);
}

/// Starts a reader on `db` and drives every route (see the module doc).
fn serve_and_load(db: std::path::PathBuf, now: i64, days: i64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let cfg = server::ServerConfig {
            db_path: db.clone(),
            decode: Default::default(),
            allowed_origins: Vec::new(),
            ingest: None,
            pool_size: 4,
            query_deadline: Duration::from_secs(60),
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
        };
        println!("RSS before the reader starts: {} MiB", status_mib("VmRSS:"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let srv = server::Server::start(cfg, listener).unwrap();
        println!(
            "RSS after the reader started: {} / peak {} MiB",
            status_mib("VmRSS:"),
            status_mib("VmHWM:")
        );
        let addr = srv.addr;
        let o0 = observer(0).id;
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&0u64.to_le_bytes());
        let n0 = hex::encode(public_key_of(&seed));
        let routes = [
            format!("/api/observers/{o0}/metrics"),
            format!(
                "/api/observers/{o0}/metrics?since={}&resolution=1h",
                now - days * 86_400_000
            ),
            "/api/observers/metrics/summary".to_string(),
            "/api/observers/metrics/summary?window=30d".to_string(),
            format!("/api/observers/{o0}/analytics?days=1"),
            "/api/observers/clock-skew".to_string(),
            "/api/nodes/clock-skew".to_string(),
            format!("/api/nodes/{n0}/clock-skew"),
            "/api/analytics/rf".to_string(),
            "/api/analytics/relay-airtime-share".to_string(),
            "/api/observers".to_string(),
            "/api/analytics/roles".to_string(),
            "/api/scope-stats".to_string(),
            "/api/analytics/topology".to_string(),
            "/api/analytics/neighbor-graph".to_string(),
            "/api/analytics/distance".to_string(),
            "/api/analytics/subpaths".to_string(),
            format!("/api/nodes/{n0}/neighbors"),
            format!("/api/nodes/{n0}/reach"),
            format!("/api/nodes/{n0}/battery"),
            "/api/analytics/channels".to_string(),
            format!("/api/nodes/{n0}/analytics"),
            "/api/rx-coverage?bbox=47,-123,48,-122".to_string(),
            format!("/api/nodes/{n0}/rx-coverage?bbox=47,-123,48,-122"),
            "/api/rx-leaderboard".to_string(),
        ];
        for r in routes.clone() {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..7 {
                let path = r.clone();
                let start = Instant::now();
                let body = tokio::task::spawn_blocking(move || {
                    use std::io::{Read, Write};
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    write!(
                        s,
                        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
                    )
                    .unwrap();
                    let mut v = Vec::new();
                    s.read_to_end(&mut v).unwrap();
                    v
                })
                .await
                .unwrap();
                assert!(
                    body.starts_with(b"HTTP/1.1 200"),
                    "{r}: {}",
                    String::from_utf8_lossy(&body[..200.min(body.len())])
                );
                times.push(start.elapsed());
                bytes = body.len();
            }
            let first = times[0];
            times.sort();
            println!(
                "{r}: first {:.1} ms, median {:.1} ms, max {:.1} ms, {} bytes; RSS {} / peak {} MiB",
                first.as_secs_f64() * 1e3,
                times[times.len() / 2].as_secs_f64() * 1e3,
                times[times.len() - 1].as_secs_f64() * 1e3,
                bytes,
                status_mib("VmRSS:"),
                status_mib("VmHWM:"),
            );
        }
        // Then 16 concurrent clients cycling through every route for LOAD_SECS (default 20),
        // as dashboards poll: p50/p99 per route.
        let secs: u64 = std::env::var("LOAD_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut clients = Vec::new();
        for c in 0..16usize {
            let routes = routes.clone();
            clients.push(tokio::task::spawn_blocking(move || {
                use std::io::{Read, Write};
                let mut out: Vec<(usize, Duration)> = Vec::new();
                let mut i = c;
                while Instant::now() < deadline {
                    let k = i % routes.len();
                    i += 1;
                    let start = Instant::now();
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    write!(
                        s,
                        "GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                        routes[k]
                    )
                    .unwrap();
                    let mut v = Vec::new();
                    s.read_to_end(&mut v).unwrap();
                    assert!(v.starts_with(b"HTTP/1.1 200"), "{}", routes[k]);
                    out.push((k, start.elapsed()));
                }
                out
            }));
        }
        let mut per: Vec<Vec<Duration>> = vec![Vec::new(); routes.len()];
        for c in clients {
            for (k, d) in c.await.unwrap() {
                per[k].push(d);
            }
        }
        println!("16 concurrent clients for {secs} s:");
        for (r, mut t) in routes.iter().zip(per) {
            t.sort();
            let q = |f: f64| t[((t.len() as f64 - 1.0) * f) as usize].as_secs_f64() * 1e3;
            println!(
                "  {r}: n={} p50 {:.2} ms p99 {:.2} ms",
                t.len(),
                q(0.5),
                q(0.99)
            );
        }
        let rss = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
            })
            .unwrap_or_default();
        println!("peak RSS {rss} kB");
        srv.shutdown().await;
    });
}
