//! The live WebSocket under abuse, over real sockets: one address cannot take every slot, the
//! total cap holds under a storm of concurrent upgrades, a client that stops reading is
//! closed while one that reads stays, and only web pages of this server (or listed origins)
//! may open one. Client sockets bind distinct loopback source addresses (127.0.0.1,
//! 127.0.0.2, … are all loopback on Linux) to stand for distinct clients.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use ingest::decode::Decoder;
use ingest::message::{PacketMessage, TopicObserver};
use serde_json::Value;
use server::live::{MAX_CLIENTS, MAX_CLIENTS_PER_ADDRESS};
use server::{Server, ServerConfig};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod support;

const OBS: &str = "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4";

/// A packet of 176 bytes (the payload limit is 184), distinct for each `i`: big enough that a client that does
/// not read fills its buffers quickly.
fn item(i: u32, at: i64) -> store::Item {
    let mut raw = vec![0x15, 0x00];
    raw.extend_from_slice(&i.to_be_bytes());
    raw.extend_from_slice(&[0xa5; 170]);
    let msg = PacketMessage {
        observer: TopicObserver {
            id: OBS.into(),
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
    Decoder::default().item(msg, at).0
}

fn seed(db: &Path) -> store::Writer {
    let mut w = store::Writer::open(db, 0).unwrap();
    w.write_batch(&[item(0, server::now_ms())]).unwrap();
    w
}

fn config(db: &Path) -> ServerConfig {
    ServerConfig {
        // The HTTP connection caps are not under test here: only the WebSocket's own.
        limits: server::http::HttpLimits {
            max_connections: 0,
            max_connections_per_address: 0,
            ..Default::default()
        },
        ..support::config(db)
    }
}

async fn start(db: &Path) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Server::start(config(db), listener).unwrap()
}

/// `GET /api/health` → its `ws_clients`.
async fn ws_clients(addr: SocketAddr) -> u64 {
    let body = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET /api/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).to_string();
        text.split_once("\r\n\r\n").unwrap().1.to_owned()
    })
    .await
    .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["ws_clients"].as_u64().unwrap()
}

/// Waits until the server counts `n` WebSocket clients (checked every 50 ms). The limit only
/// ends a test that would otherwise hang.
async fn wait_clients(addr: SocketAddr, n: u64) {
    for _ in 0..2_400 {
        if ws_clients(addr).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server never counted {n} WebSocket clients");
}

/// Opens `/ws` from source address `from`, with `origin` if given. Err(status) when the
/// server refused the upgrade.
async fn connect(
    server: SocketAddr,
    from: Ipv4Addr,
    origin: Option<&str>,
    recv_buffer: Option<u32>,
) -> Result<WebSocketStream<TcpStream>, u16> {
    let sock = TcpSocket::new_v4().unwrap();
    if let Some(n) = recv_buffer {
        sock.set_recv_buffer_size(n).unwrap();
    }
    sock.bind(SocketAddr::new(from.into(), 0)).unwrap();
    let stream = sock.connect(server).await.unwrap();
    let mut req = format!("ws://{server}/ws").into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    match tokio_tungstenite::client_async(req, stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("upgrade from {from} failed without an answer: {e}"),
    }
}

fn loopback(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_slot() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start(&db).await;
    let mut mine = Vec::new();
    for _ in 0..MAX_CLIENTS_PER_ADDRESS {
        mine.push(connect(s.addr, loopback(1), None, None).await.unwrap());
    }
    // One more from the same address is refused, and so are the next ones.
    for _ in 0..3 {
        assert_eq!(
            connect(s.addr, loopback(1), None, None).await.err(),
            Some(429)
        );
    }
    // Another address still gets in.
    let other = connect(s.addr, loopback(2), None, None).await.unwrap();
    assert_eq!(ws_clients(s.addr).await, MAX_CLIENTS_PER_ADDRESS as u64 + 1);
    // A closed socket gives its slot back.
    drop(mine.pop());
    wait_clients(s.addr, MAX_CLIENTS_PER_ADDRESS as u64).await;
    mine.push(connect(s.addr, loopback(1), None, None).await.unwrap());
    drop(mine);
    drop(other);
    wait_clients(s.addr, 0).await;
    s.shutdown().await;
}

/// More upgrades than the total cap at once, from enough addresses that the per-address cap
/// alone would let them all in: exactly the cap is admitted, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_cap_holds_under_concurrent_connects() {
    let addresses = MAX_CLIENTS.div_ceil(MAX_CLIENTS_PER_ADDRESS) + 8;
    let attempts = addresses * MAX_CLIENTS_PER_ADDRESS;
    // Each attempt costs two descriptors in this process (client and server side).
    if server::http::open_files_limit().is_some_and(|n| n < 2 * attempts as u64 + 512) {
        eprintln!("the open-files limit is too low for {attempts} sockets: total-cap test skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start(&db).await;
    let addr = s.addr;
    let tasks: Vec<_> = (0..attempts)
        .map(|i| {
            let from = loopback(1 + (i % addresses) as u8);
            tokio::spawn(async move { connect(addr, from, None, None).await })
        })
        .collect();
    let mut open = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(ws) => open.push(ws),
            Err(503) => refused += 1,
            Err(other) => panic!("refused with {other}"),
        }
    }
    assert_eq!(open.len(), MAX_CLIENTS);
    assert_eq!(refused, attempts - MAX_CLIENTS);
    assert_eq!(ws_clients(addr).await, MAX_CLIENTS as u64);
    drop(open);
    wait_clients(addr, 0).await;
    s.shutdown().await;
}

/// A client that never reads while packets flow is closed (its sends cannot complete); a
/// client that reads the same feed stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed(&db);
    let s = start(&db).await;
    // Never polled: the client reads nothing, not even pings.
    let _deaf = connect(s.addr, loopback(1), None, Some(4096))
        .await
        .unwrap();
    let mut reader = connect(s.addr, loopback(2), None, None).await.unwrap();
    let read = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(Ok(m)) = reader.next().await {
            if m.is_text() {
                n += 1;
            }
        }
        n
    });
    wait_clients(s.addr, 2).await;
    // Packets until the server has given up on the deaf client; the limit only ends a test
    // that would otherwise run forever.
    let mut i = 1;
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let batch: Vec<store::Item> = (0..100).map(|k| item(i + k, server::now_ms())).collect();
        w.write_batch(&batch).unwrap();
        i += 100;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if i % 1_000 == 1 && ws_clients(s.addr).await == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a client that never reads was never closed"
        );
    }
    // The reader is the one left, and it was fed; it is closed when the server stops.
    assert!(!read.is_finished(), "the reading client was closed");
    s.shutdown().await;
    let fed = tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .expect("a live client outlived the server")
        .unwrap();
    assert!(fed > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_this_servers_pages_may_open_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let s = start(&db).await;
    let own = format!("http://{}", s.addr);
    assert!(connect(s.addr, loopback(1), Some(&own), None).await.is_ok());
    let ftp = format!("ftp://{}", s.addr);
    assert_eq!(
        connect(s.addr, loopback(1), Some(&ftp), None).await.err(),
        Some(403)
    );
    for origin in ["https://evil.example", "null", "http://192.0.2.1:3000"] {
        assert_eq!(
            connect(s.addr, loopback(1), Some(origin), None).await.err(),
            Some(403),
            "{origin}"
        );
    }
    s.shutdown().await;
}

/// Behind a reverse proxy the UI's origin is the name the operator allowed with
/// `--allow-host`: its pages may open `/ws` without a separate `--allow-origin`; a name not
/// allowed, or one that only ends like an allowed one, may not, and `ftp:` never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_named_with_allow_host_are_the_servers_own_pages() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let cfg = ServerConfig {
        allowed_hosts: vec!["mesh.example.org".into(), "*.lan.example".into()],
        ..config(&db)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s = Server::start(cfg, listener).unwrap();
    for ok in [
        "https://mesh.example.org",
        "http://MESH.example.org:8080",
        "https://ui.lan.example",
    ] {
        assert!(
            connect(s.addr, loopback(1), Some(ok), None).await.is_ok(),
            "{ok}"
        );
    }
    for refused in [
        "https://evil.example",
        "https://mesh.example.org.evil.example",
        "https://notmesh.example.org",
        "ftp://mesh.example.org",
    ] {
        assert_eq!(
            connect(s.addr, loopback(1), Some(refused), None)
                .await
                .err(),
            Some(403),
            "{refused}"
        );
    }
    s.shutdown().await;
}

/// With a small HTTP connection cap (a low descriptor limit), the live feed may take at
/// most half of it: the API keeps connections of its own however many viewers arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_leaves_the_api_half_of_a_small_connection_cap() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed(&db);
    let cfg = ServerConfig {
        limits: server::http::HttpLimits {
            max_connections: 8,
            max_connections_per_address: 0,
            ..Default::default()
        },
        ..config(&db)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s = Server::start(cfg, listener).unwrap();
    let mut open = Vec::new();
    let mut refused = 0;
    for i in 0..8u8 {
        match connect(s.addr, loopback(10 + i), None, None).await {
            Ok(ws) => open.push(ws),
            Err(503) => refused += 1,
            Err(other) => panic!("refused with {other}"),
        }
    }
    assert_eq!((open.len(), refused), (4, 4));
    // Four HTTP slots are left: the API answers.
    assert_eq!(ws_clients(s.addr).await, 4);
    drop(open);
    wait_clients(s.addr, 0).await;
    s.shutdown().await;
}
