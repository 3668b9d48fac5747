//! The reader under abuse: hostile parameters, conditional requests racing unconditional ones,
//! foreign `Host` headers, half-open and idle sockets, one address holding too many
//! connections, a storm of heavy requests against a tiny pool, and pages whose expansion would
//! be tens of megabytes. Every wait here is a generous failure limit, never a measurement.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ingest::decode::Decoder;
use ingest::message::{PacketMessage, TopicObserver};
use ingest::writer_thread::Maintenance;
use ingest::{Ingest, IngestConfig};
use meshcore::crypto::Keyring;
use meshcore::report::parse_hex;
use serde_json::Value;
use server::http::HttpLimits;
use server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

/// How long anything here may take before the test gives up: far beyond what any machine
/// needs, so only a server that never answers (or never closes) fails.
const LIMIT: Duration = Duration::from_secs(90);

use support::vector;

fn observer(n: usize) -> String {
    format!("{:064x}", 0xa1a1_0000_u64 + n as u64)
}

fn item_raw(raw: Vec<u8>, observer: &str, at: i64) -> store::Item {
    let d = Decoder {
        keyring: Keyring::with_public(),
        ..Decoder::default()
    };
    let msg = PacketMessage {
        observer: TopicObserver {
            id: observer.into(),
            iata: "SEA".into(),
        },
        origin: Some("obs".into()),
        region: None,
        raw,
        snr: Some(7.25),
        rssi: Some(-95.0),
        score: None,
        airtime_ms: None,
    };
    d.item(msg, at).0
}

/// A database like `tests/api.rs`'s: adverts, channel traffic, a TRACE, heard by two
/// observers.
fn seed(db: &Path) -> store::Writer {
    let mut w = store::Writer::open(db, 0).unwrap();
    let now = server::now_ms();
    let mut items = Vec::new();
    for (i, name) in [
        "advert_flood_zero_hop_repeater",
        "advert_flood_2byte_hash_5hops",
        "advert_flood_room_server_1byte",
        "advert_flood_companion_with_location",
        "grp_txt_public_channel_decrypt",
        "grp_txt_public_channel_2hops",
        "trace_direct_4snr_5hops",
        "txt_msg_flood_4hops",
    ]
    .iter()
    .enumerate()
    {
        let raw = parse_hex(&vector(name)).unwrap();
        items.push(item_raw(
            raw.clone(),
            &observer(0),
            now - 60_000 + i as i64 * 1000,
        ));
        items.push(item_raw(raw, &observer(1), now - 59_000 + i as i64 * 1000));
    }
    w.write_batch(&items).unwrap();
    w
}

/// `n` distinct direct messages (the flood-routed vector with its last two payload bytes
/// varied, so each has its own hash), each heard by `heard_by` observers.
fn many(w: &mut store::Writer, n: usize, heard_by: usize) {
    let base = parse_hex(&vector("txt_msg_flood_4hops")).unwrap();
    let now = server::now_ms();
    let mut batch = Vec::new();
    for i in 0..n {
        let mut raw = base.clone();
        let len = raw.len();
        raw[len - 2] = (i >> 8) as u8;
        raw[len - 1] = i as u8;
        for o in 0..heard_by {
            batch.push(item_raw(
                raw.clone(),
                &observer(10 + o),
                now - 3_600_000 + i as i64 * 10 + o as i64,
            ));
            if batch.len() >= 4096 {
                w.write_batch(&batch).unwrap();
                batch.clear();
            }
        }
    }
    w.write_batch(&batch).unwrap();
}

fn config(db: &Path) -> ServerConfig {
    support::config(db)
}

async fn start_with(cfg: ServerConfig) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Server::start(cfg, listener).unwrap()
}

/// A connection from `from` (any 127.0.0.0/8 address is loopback on Linux), or from the
/// default address.
async fn connect(from: Option<Ipv4Addr>, addr: SocketAddr) -> std::io::Result<TcpStream> {
    match from {
        None => TcpStream::connect(addr).await,
        Some(ip) => {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind(SocketAddr::new(ip.into(), 0))?;
            s.connect(addr).await
        }
    }
}

/// An answer: status (0 if the server closed without one), lowercase head, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then_some(v.trim())
        })
    }
}

fn parse_answer(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).to_string();
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        return Answer {
            status: 0,
            head: text.to_ascii_lowercase(),
            body: String::new(),
        };
    };
    let head = head.to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Answer { status, head, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest.get(n + 2..).unwrap_or_default();
    }
    out
}

/// Sends `GET path` with extra header lines and `Connection: close`; reads to the end.
async fn get_with(from: Option<Ipv4Addr>, addr: SocketAddr, path: &str, extra: &str) -> Answer {
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    send(from, addr, head.as_bytes()).await
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    get_with(None, addr, path, "").await
}

/// Writes `raw` and reads the whole answer (a reset counts as the end).
async fn send(from: Option<Ipv4Addr>, addr: SocketAddr, raw: &[u8]) -> Answer {
    let io = async {
        let mut s = connect(from, addr).await?;
        s.write_all(raw).await?;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        Ok::<_, std::io::Error>(out)
    };
    match tokio::time::timeout(LIMIT, io).await {
        Ok(Ok(out)) => parse_answer(&out),
        Ok(Err(_)) => parse_answer(b""),
        Err(_) => panic!("no answer within {LIMIT:?}"),
    }
}

/// Whether the server has closed `s`: reading gives end of stream or a reset. Waits at most
/// the limit.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before the close is fine; keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

fn counter(s: &Server, name: &str) -> u64 {
    s.http_counters()[name].as_u64().unwrap_or(0)
}

/// `region=,` named no region: a 400 with a JSON error, not a 500 from an empty `IN ()`. The
/// other list-valued parameters behave the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_list_parameter_is_a_400() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start_with(config(&db)).await;
    for path in [
        "/api/nodes?region=,",
        "/api/nodes?region=%20,%20,",
        "/api/nodes?multiByte=,",
        "/api/packets?type=,",
        "/api/packets?type=%20,",
    ] {
        let a = get(s.addr, path).await;
        assert_eq!(a.status, 400, "{path}: {a:?}");
        assert!(a.json()["error"].is_string(), "{path}: {a:?}");
    }
    // Real lists still work, trailing separators and repeats included.
    let a = get(s.addr, "/api/nodes?region=SEA,").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.json()["total"].as_i64().unwrap() > 0, "{a:?}");
    let a = get(s.addr, "/api/packets?type=ADVERT,ADVERT,").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["total"], 4, "{a:?}");
    s.shutdown().await;
}

/// Many concurrent requests for one UI file, half with the file's ETag in `If-None-Match`:
/// every unconditional request gets the body, every conditional one a 304. Keyed on the URI
/// alone, single-flight handed conditional answers to unconditional requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_and_unconditional_requests_never_share_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start_with(config(&db)).await;
    // The largest file of the UI: the longest computation, the widest window for sharing.
    let path = "/vendor/leaflet/leaflet.js";
    let first = get(s.addr, path).await;
    assert_eq!(first.status, 200, "{}", first.head);
    let etag = first.header("etag").expect("an etag").to_string();
    let len = first.body.len();
    assert!(len > 0);
    let addr = s.addr;
    let mut tasks = Vec::new();
    for c in 0..16 {
        let etag = etag.clone();
        tasks.push(tokio::spawn(async move {
            let mut wrong = Vec::new();
            for r in 0..25 {
                let conditional = (c + r) % 2 == 0;
                let extra = if conditional {
                    format!("If-None-Match: {etag}\r\n")
                } else {
                    String::new()
                };
                let a = get_with(None, addr, path, &extra).await;
                let ok = if conditional {
                    a.status == 304 && a.body.is_empty()
                } else {
                    a.status == 200 && a.body.len() == len
                };
                if !ok {
                    wrong.push((conditional, a.status, a.body.len()));
                }
            }
            wrong
        }));
    }
    let mut wrong = Vec::new();
    for t in tasks {
        wrong.extend(t.await.unwrap());
    }
    assert!(
        wrong.is_empty(),
        "(conditional, status, body bytes) of wrong answers: {wrong:?}"
    );
    s.shutdown().await;
}

/// Every answer says `X-Content-Type-Options: nosniff`: API data, errors, refusals and the
/// UI (which keeps its own security headers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_says_nosniff() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start_with(config(&db)).await;
    for (path, status) in [
        ("/api/stats", 200),
        ("/api/nodes", 200),
        ("/api/packets?limit=5", 200),
        ("/api/openapi.json", 200),
        ("/metrics", 200),
        ("/api/nodes?role=wizard", 400),
        ("/api/no/such/route", 404),
        ("/", 200),
    ] {
        let a = get(s.addr, path).await;
        assert_eq!(a.status, status, "{path}: {a:?}");
        assert_eq!(
            a.header("x-content-type-options"),
            Some("nosniff"),
            "{path}: {}",
            a.head
        );
    }
    let ui = get(s.addr, "/").await;
    assert!(
        ui.header("content-security-policy").is_some(),
        "{}",
        ui.head
    );
    assert_eq!(ui.header("x-frame-options"), Some("deny"), "{}", ui.head);
    let refused = send(
        None,
        s.addr,
        b"GET /api/stats HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(refused.status, 421, "{refused:?}");
    assert_eq!(refused.header("x-content-type-options"), Some("nosniff"));
    s.shutdown().await;
}

/// A page served under a foreign name (a DNS-rebinding attack: the attacker's name resolving
/// to this machine) is refused with a JSON 421; loopback names and addresses and the
/// configured names are answered. The WebSocket is checked too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_refused_and_loopback_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start_with(ServerConfig {
        allowed_hosts: vec!["mesh.example.org".into()],
        ..config(&db)
    })
    .await;
    let port = s.addr.port();
    let req = |host: &str, target: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    for host in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        "mesh.example.org.evil.example".into(),
        "localhost.evil.example".into(),
        "not a host".into(),
    ] {
        let a = send(None, s.addr, req(&host, "/api/stats").as_bytes()).await;
        assert_eq!(a.status, 421, "{host}: {a:?}");
        assert!(a.json()["error"].is_string(), "{host}: {a:?}");
        let ui = send(None, s.addr, req(&host, "/").as_bytes()).await;
        assert_eq!(ui.status, 421, "{host}: {ui:?}");
    }
    // An absolute-form target names the host the client meant, whatever `Host` says.
    let a = send(
        None,
        s.addr,
        req(
            &format!("127.0.0.1:{port}"),
            "http://evil.example/api/stats",
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(a.status, 421, "{a:?}");
    let ws = send(
        None,
        s.addr,
        b"GET /ws HTTP/1.1\r\nHost: evil.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(ws.status, 421, "{ws:?}");
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".into(),
        format!("[::1]:{port}"),
        "mesh.example.org".into(),
        format!("MESH.example.org:{port}"),
    ] {
        let a = send(None, s.addr, req(&host, "/api/stats").as_bytes()).await;
        assert_eq!(a.status, 200, "{host}: {a:?}");
    }
    assert!(counter(&s, "hosts_refused") >= 12);
    // The live feed still upgrades on a loopback host.
    let (_ws, resp) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    s.shutdown().await;
}

/// A flood of sockets that send half a request head (or nothing) does not stop the server:
/// a normal request is answered meanwhile, a new observer's message to the embedded broker
/// of the same process is stored, and the server closes every half-open socket once its
/// header deadline has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_are_closed_and_the_rest_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut ingest = Ingest::start(IngestConfig {
        db_path: db.clone(),
        sources: Vec::new(),
        decoder: Decoder::default(),
        maintenance: Maintenance {
            packet_retention: None,
            ..Maintenance::default()
        },
        maintenance_interval: Duration::from_secs(3600),
        source_settings: Default::default(),
        status_file: None,
        mbcap: None,
    })
    .unwrap();
    let broker = ingest::broker::Listener::bind(
        ingest::broker::Transport::Tcp,
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let mqtt = ingest
        .serve_embedded_broker(
            vec![broker],
            None,
            ingest::broker::BrokerSettings::default(),
        )
        .unwrap()[0]
        .1;
    let s = start_with(ServerConfig {
        limits: HttpLimits {
            header_timeout: Duration::from_secs(1),
            // Only the header deadline closes these sockets.
            idle_timeout: Duration::from_secs(3600),
            max_connections: 2_000,
            max_connections_per_address: 1_000,
            ..HttpLimits::default()
        },
        ..config(&db)
    })
    .await;
    let mut flood = Vec::new();
    for i in 0..350 {
        let mut c = connect(None, s.addr).await.unwrap();
        if i % 7 != 0 {
            c.write_all(b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .await
                .unwrap();
        }
        flood.push(c);
    }
    let a = get(s.addr, "/api/stats").await;
    assert_eq!(a.status, 200, "{a:?}");
    // A new observer publishes to the broker of the same process; its message is stored.
    let mut opts = rumqttc::MqttOptions::new("new-observer", mqtt.ip().to_string(), mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 10);
    let events = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let topic = format!("meshcore/SEA/{}/packets", observer(99));
    client
        .publish(
            &topic,
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"raw":"0D04B891647EBB40BA70","SNR":"5"}"#,
        )
        .await
        .unwrap();
    let reader = store::Reader::open(&db).unwrap();
    let started = Instant::now();
    loop {
        let n: i64 = reader
            .conn()
            .query_row("SELECT count(*) FROM observations", [], |r| r.get(0))
            .unwrap();
        if n > 0 {
            break;
        }
        assert!(
            started.elapsed() < LIMIT,
            "the observer's message was never stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (i, c) in flood.iter_mut().enumerate() {
        assert!(closed_by_server(c).await, "socket {i} was never closed");
    }
    assert!(
        counter(&s, "header_timeouts") >= 350,
        "{}",
        s.http_counters()
    );
    // And the server is still there.
    assert_eq!(get(s.addr, "/api/healthz").await.status, 200);
    events.abort();
    s.shutdown().await;
    ingest.shutdown().await;
}

/// A kept-alive connection with nothing more to ask is closed after the idle timeout; a body
/// that never arrives is answered 408 (and one over the bound 413) instead of holding the
/// connection forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_unsent_bodies_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start_with(ServerConfig {
        limits: HttpLimits {
            header_timeout: Duration::from_secs(3600),
            idle_timeout: Duration::from_millis(300),
            body_timeout: Duration::from_millis(300),
            ..HttpLimits::default()
        },
        ..config(&db)
    })
    .await;
    // One request on a kept-alive connection, then silence.
    let mut c = connect(None, s.addr).await.unwrap();
    c.write_all(format!("GET /api/stats HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"version\"") {
        let n = tokio::time::timeout(LIMIT, c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        closed_by_server(&mut c).await,
        "an idle connection stayed open"
    );
    assert!(counter(&s, "idle_closed") >= 1, "{}", s.http_counters());
    // A body announced and never sent.
    let mut c = connect(None, s.addr).await.unwrap();
    c.write_all(
        format!(
            "POST /api/decode HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{\"hex\":",
            s.addr
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LIMIT, c.read_to_end(&mut out))
        .await
        .expect("the connection was held open");
    let a = parse_answer(&out);
    assert_eq!(a.status, 408, "{a:?}");
    assert!(a.json()["error"].is_string());
    // A body over the bound is refused before it is read.
    let a = send(
        None,
        s.addr,
        format!(
            "POST /api/decode HTTP/1.1\r\nHost: {}\r\nContent-Length: 100000000\r\n\r\n",
            s.addr
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(a.status, 413, "{a:?}");
    assert!(counter(&s, "body_timeouts") >= 1);
    s.shutdown().await;
}

/// One address holding its share of connections cannot open another (it is closed without
/// being served), while another address is served; once a slot is given back, the first
/// address is served again. The total cap holds the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_per_address_cap_a_connection_is_refused_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start_with(ServerConfig {
        limits: HttpLimits {
            header_timeout: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(3600),
            max_connections: 6,
            max_connections_per_address: 4,
            ..HttpLimits::default()
        },
        ..config(&db)
    })
    .await;
    let hog = Ipv4Addr::new(127, 0, 0, 1);
    let other = Ipv4Addr::new(127, 0, 0, 2);
    let third = Ipv4Addr::new(127, 0, 0, 3);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(Some(hog), s.addr).await.unwrap());
    }
    // The accept loop admits them in order; wait until all four hold their slots.
    let started = Instant::now();
    while s.http_counters()["connections_open"].as_u64() != Some(4) {
        assert!(started.elapsed() < LIMIT, "{}", s.http_counters());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = get_with(Some(hog), s.addr, "/api/stats", "").await;
    assert_ne!(
        refused.status, 200,
        "a fifth connection was served: {refused:?}"
    );
    assert!(counter(&s, "connections_refused_address_cap") >= 1);
    let served = get_with(Some(other), s.addr, "/api/stats", "").await;
    assert_eq!(served.status, 200, "{served:?}");
    // Total cap: four held plus two more from another address fill it (once the answered
    // connection has given its slot back).
    let started = Instant::now();
    while s.http_counters()["connections_open"].as_u64() != Some(4) {
        assert!(started.elapsed() < LIMIT, "{}", s.http_counters());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut more = Vec::new();
    for _ in 0..2 {
        more.push(connect(Some(other), s.addr).await.unwrap());
    }
    let started = Instant::now();
    while s.http_counters()["connections_open"].as_u64() != Some(6) {
        assert!(started.elapsed() < LIMIT, "{}", s.http_counters());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = get_with(Some(third), s.addr, "/api/stats", "").await;
    assert_ne!(refused.status, 200, "over the total cap: {refused:?}");
    assert!(counter(&s, "connections_refused_total_cap") >= 1);
    drop(more);
    // A slot given back is usable again by the first address (the server notices the close
    // on its own time: retry until then).
    drop(held.pop());
    let started = Instant::now();
    loop {
        let a = get_with(Some(hog), s.addr, "/api/stats", "").await;
        if a.status == 200 {
            break;
        }
        assert!(started.elapsed() < LIMIT, "never served again: {a:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.shutdown().await;
}

/// Many clients fetching 10,000-row pages without pause against one main connection: the
/// cheap routes are still answered (on their own lane), whatever the storm gets (pages, 503
/// with `Retry-After`, or 429). On one FIFO pool they waited behind every page queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheap_routes_are_answered_during_a_heavy_storm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed(&db);
    many(&mut w, 2_000, 1);
    let s = start_with(ServerConfig {
        pool_size: 1,
        limits: HttpLimits {
            cheap_pool_size: 1,
            ..HttpLimits::default()
        },
        ..config(&db)
    })
    .await;
    let addr = s.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut storm = Vec::new();
    for c in 0..32 {
        let stop = stop.clone();
        let answered = answered.clone();
        storm.push(tokio::spawn(async move {
            let from = Ipv4Addr::new(127, 0, 1, 1 + (c % 8) as u8);
            let mut statuses = Vec::new();
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                // Distinct requests (a cache-buster), so none shares another's computation.
                let a = get_with(
                    Some(from),
                    addr,
                    &format!("/api/packets?limit=10000&_={c}.{k}"),
                    "",
                )
                .await;
                answered.fetch_add(1, Ordering::Relaxed);
                if a.status != 200 {
                    assert!(matches!(a.status, 429 | 503), "{}: {}", a.status, a.body);
                    assert_eq!(a.header("retry-after"), Some("1"), "{}", a.head);
                    assert!(a.json()["error"].is_string());
                }
                statuses.push(a.status);
                k += 1;
            }
            statuses
        }));
    }
    // The storm is under way once its first pages are out.
    let started = Instant::now();
    while answered.load(Ordering::Relaxed) < 4 {
        assert!(started.elapsed() < LIMIT, "the storm never got an answer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cheap = async {
        for _ in 0..10 {
            for path in ["/api/stats", "/api/healthz"] {
                let a = get(addr, path).await;
                assert_eq!(a.status, 200, "{path} during the storm: {a:?}");
            }
        }
    };
    let done = tokio::time::timeout(LIMIT, cheap).await;
    stop.store(true, Ordering::Relaxed);
    assert!(
        done.is_ok(),
        "the cheap routes were queued behind the storm"
    );
    let mut pages = 0;
    for t in storm {
        pages += t.await.unwrap().iter().filter(|s| **s == 200).count();
    }
    assert!(pages > 0, "the storm itself was never served");
    s.shutdown().await;
}

/// `expand=observations` adds at most a bounded number of observations to one answer, says
/// when it cut them, and never beyond the per-packet cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expanded_observations_are_bounded_per_answer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed(&db);
    // 40 packets heard by 300 observers each: 12,000 observations.
    many(&mut w, 40, 300);
    let s = start_with(config(&db)).await;
    let cap = server::api::packets::MAX_EXPANDED_OBSERVATIONS;
    let a = get(s.addr, "/api/packets?limit=10000&expand=observations").await;
    assert_eq!(a.status, 200, "{}", a.head);
    let v = a.json();
    assert_eq!(v["truncated"], true, "{}", &a.body[..200.min(a.body.len())]);
    let lists: Vec<usize> = v["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["observations"].as_array().map_or(0, Vec::len))
        .collect();
    // Either every packet came with the answer's cap of observations, or the page's byte
    // budget stopped the rows first (observations carry their resolved hops) and says where
    // to go on.
    match v["nextOffset"].as_u64() {
        None => {
            assert_eq!(lists.len(), 48);
            assert_eq!(lists.iter().sum::<usize>(), cap, "{lists:?}");
        }
        Some(next) => {
            assert_eq!(next as usize, lists.len());
            assert!(
                lists.len() < 48 && lists.iter().sum::<usize>() <= cap,
                "{lists:?}"
            );
        }
    }
    assert!(lists.iter().all(|n| *n <= 500), "{lists:?}");
    // Every packet still says how many observations it has.
    assert!(
        v["packets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["observation_count"].as_i64().unwrap() >= 2)
    );
    // A page within the bound is whole, and says so.
    let a = get(s.addr, "/api/packets?limit=5&order=asc&expand=observations").await;
    let v = a.json();
    assert_eq!(v["truncated"], false);
    assert_eq!(
        v["packets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["observations"].as_array().unwrap().len())
            .sum::<usize>(),
        5 * 300
    );
    // Without expansion there is nothing to cut.
    let a = get(s.addr, "/api/packets?limit=5").await;
    assert!(a.json().get("truncated").is_none());
    s.shutdown().await;
}
