//! What the reader's integration tests share: the real vectors and a test configuration.
//! Each test file includes it with `mod support;` and uses what it needs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use meshcore::report::DecodeOptions;
use server::ServerConfig;

/// The vectors directory: `$MESHLENS_VECTORS`, else the repository's `testdata/vectors`.
pub fn vectors_dir() -> PathBuf {
    std::env::var_os("MESHLENS_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors"))
}

/// The hex frame of the vector called `name` in `packets.jsonl`.
pub fn vector(name: &str) -> String {
    std::fs::read_to_string(vectors_dir().join("packets.jsonl"))
        .expect("testdata/vectors/packets.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["name"] == name)
        .map(|v| v["hex"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no vector {name}"))
}

/// The reader's configuration for tests: default keys, a week's window, cycles hourly (the
/// first runs at start), default HTTP limits.
pub fn config(db: &Path) -> ServerConfig {
    ServerConfig {
        db_path: db.to_path_buf(),
        decode: DecodeOptions::default(),
        allowed_origins: Vec::new(),
        ingest: None,
        pool_size: 2,
        // Generous: a debug build on a loaded machine must not turn a slow query into a 503.
        query_deadline: Duration::from_secs(120),
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

/// One observation of the frame `hex` by `observer` (in region `iata`) at `at` (Unix ms), as
/// the writer gets it from ingest: SNR 7.25, RSSI -95, the Public channel decrypted.
pub fn observed(hex: &str, observer: &str, iata: &str, at: i64) -> store::Item {
    let d = ingest::decode::Decoder {
        keyring: meshcore::crypto::Keyring::with_public(),
        ..ingest::decode::Decoder::default()
    };
    let msg = ingest::message::PacketMessage {
        observer: ingest::message::TopicObserver {
            id: observer.into(),
            iata: iata.into(),
        },
        origin: Some(format!("obs {}", &observer[..2.min(observer.len())])),
        region: None,
        raw: meshcore::report::parse_hex(hex).unwrap(),
        snr: Some(7.25),
        rssi: Some(-95.0),
        score: None,
        airtime_ms: None,
    };
    d.item(msg, at).0
}

/// A minimal HTTP/1.1 client: method, path, optional JSON body, extra header lines →
/// (status, head, body). Blocking: call it from `spawn_blocking`.
pub fn http_raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    extra: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut s = rest;
        loop {
            let (len, rest) = s.split_once("\r\n").unwrap();
            let n = usize::from_str_radix(len.trim(), 16).unwrap();
            if n == 0 {
                break out;
            }
            out.push_str(&rest[..n]);
            s = &rest[n + 2..];
        }
    } else {
        rest.to_string()
    };
    (status, head.to_string(), body)
}

/// `GET path` → (status, JSON body) (the same as [`get`]).
pub async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    get(addr, path).await
}

/// `POST path` with a JSON body → (status, JSON body).
pub async fn post_json(
    addr: std::net::SocketAddr,
    path: &str,
    body: String,
) -> (u16, serde_json::Value) {
    let path = path.to_string();
    let (status, _, text) =
        tokio::task::spawn_blocking(move || http_raw(addr, "POST", &path, Some(&body), ""))
            .await
            .unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, v)
}

/// A server on a free loopback port.
pub async fn start(cfg: ServerConfig) -> server::Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    server::Server::start(cfg, listener).unwrap()
}

// ---- Shared by the resource tests (nodes, observers, stats, config, perf). ----

/// A packet as observer `observer` (region `iata`) heard it at `at`, through the ingest
/// decoder (Public channel key, signature checks on).
pub fn item_in(hex: &str, observer: &str, iata: &str, at: i64) -> store::Item {
    Heard {
        origin: Some(format!("obs {}", &observer[..4])),
        ..heard_by(observer, iata, 6.5, -90.0)
    }
    .item(hex, at)
}

/// How a test observation was heard: the observer's region and name, the reception, and the
/// keys the decoder knows. [`Heard::item`] turns a frame into the writer's item.
pub struct Heard<'a> {
    /// Observer id (its key).
    pub observer: &'a str,
    /// Its region.
    pub iata: &'a str,
    /// The name its bridge reports.
    pub origin: Option<String>,
    /// dB.
    pub snr: f64,
    /// dBm.
    pub rssi: f64,
    /// Channel keys of the decoder.
    pub keyring: meshcore::crypto::Keyring,
}

impl Heard<'_> {
    /// `hex` as this observer heard it at `at`, through an ingest decoder with signature
    /// checks on.
    pub fn item(self, hex: &str, at: i64) -> store::Item {
        let d = ingest::decode::Decoder {
            keyring: self.keyring,
            ..Default::default()
        };
        let msg = ingest::message::PacketMessage {
            observer: ingest::message::TopicObserver {
                id: self.observer.into(),
                iata: self.iata.into(),
            },
            origin: self.origin,
            region: None,
            raw: meshcore::report::parse_hex(hex).unwrap(),
            snr: Some(self.snr),
            rssi: Some(self.rssi),
            score: None,
            airtime_ms: None,
        };
        d.item(msg, at).0
    }
}

/// A [`Heard`] in `iata` with the Public channel key and no origin name.
pub fn heard_by<'a>(observer: &'a str, iata: &'a str, snr: f64, rssi: f64) -> Heard<'a> {
    Heard {
        observer,
        iata,
        origin: None,
        snr,
        rssi,
        keyring: meshcore::crypto::Keyring::with_public(),
    }
}

/// A signed zero-hop 1-byte flood advert, hex: the node with key `seed`, of `kind`, named
/// `name`, at `loc`, its clock at `timestamp`.
fn zero_hop_advert(
    seed: &[u8; 32],
    kind: meshcore::payload::NodeType,
    loc: Option<meshcore::payload::Location>,
    name: &[u8],
    timestamp: u32,
) -> String {
    use meshcore::payload::{Advert, AppData};
    let mut appdata = Vec::new();
    AppData::new(kind, loc, Some(name)).encode(&mut appdata);
    let mut payload = Vec::new();
    Advert::encode_signed(seed, timestamp, &appdata, &mut payload);
    let len = meshcore::PathLen::new(meshcore::PathHashSize::One, 0).unwrap();
    meshcore::Packet::new(
        meshcore::Route::Flood,
        meshcore::PayloadType::Advert,
        len,
        &[],
        &payload,
    )
    .map(|p| hex::encode(p.to_bytes()))
    .unwrap()
}

/// A signed zero-hop flood advert of the node with key `seed`: `kind` (a `NodeType`), `name`,
/// an optional position in degrees.
pub fn advert(seed: &[u8; 32], kind: u8, name: &str, at: Option<(f64, f64)>) -> String {
    use meshcore::payload::{Location, NodeType};
    let loc = at.map(|(lat, lon)| Location {
        lat_raw: (lat * 1e6).round() as i32,
        lon_raw: (lon * 1e6).round() as i32,
    });
    let kind = match kind {
        1 => NodeType::CHAT,
        2 => NodeType::REPEATER,
        3 => NodeType::ROOM,
        _ => NodeType::SENSOR,
    };
    zero_hop_advert(seed, kind, loc, name.as_bytes(), 1_700_000_000)
}

/// The lowercase hex public key of `seed`.
pub fn key_of(seed: &[u8; 32]) -> String {
    hex::encode(meshcore::payload::public_key_of(seed))
}

/// One HTTP/1.1 request without a body (`Connection: close`) → (status, body), de-chunked.
pub fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let (status, _, body) = http_raw(addr, method, path, None, "");
    (status, body)
}

/// `GET path` → (status, JSON body).
pub async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    call(addr, "GET", path).await
}

/// `method path` → (status, JSON body).
pub async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
) -> (u16, serde_json::Value) {
    let (method, path) = (method.to_string(), path.to_string());
    let (status, body) = tokio::task::spawn_blocking(move || http(addr, &method, &path))
        .await
        .unwrap();
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, v)
}

/// Asserts that `v[key]` exists and has the JSON type `ty` (`string`, `number`, `integer`,
/// `boolean`, `array`, `object`, `null`; `string|null` etc. for either).
pub fn has(v: &serde_json::Value, key: &str, ty: &str) {
    let x = v
        .get(key)
        .unwrap_or_else(|| panic!("missing key {key:?} in {v}"));
    let ok = ty.split('|').any(|t| match t {
        "string" => x.is_string(),
        "number" => x.is_number(),
        "integer" => x.is_i64() || x.is_u64(),
        "boolean" => x.is_boolean(),
        "array" => x.is_array(),
        "object" => x.is_object(),
        "null" => x.is_null(),
        other => panic!("unknown type {other}"),
    });
    assert!(ok, "{key:?} should be {ty}, is {x} in {v}");
}

/// The PDX observer of the fleet fixture: no node has its key (the SEA observer's is
/// [`fleet_observer_sea`]).
pub const OBS_PDX: &str = "9d0a9d0a9d0a9d0a9d0a9d0a9d0a9d0a9d0a9d0a9d0a9d0a9d0a9d0a9d0a9d0a";

/// A node of the fleet fixture: `(seed, kind, name, position)`.
pub type FleetNode = ([u8; 32], u8, &'static str, Option<(f64, f64)>);

/// The nodes of the fleet fixture.
pub fn fleet_nodes() -> Vec<FleetNode> {
    let seed = |b: u8| [b; 32];
    vec![
        (seed(1), 2, "Bay-Rpt", Some((37.5, -122.0))),
        (seed(2), 1, "Bay-Phone", Some((37.6, -122.1))),
        (seed(3), 3, "Pdx-Room", Some((45.5, -122.6))),
        (seed(4), 4, "Nowhere-Sensor", None),
        (seed(5), 2, "Zero-Rpt", Some((0.0, 0.0))),
    ]
}

/// A database for the fleet tests: the [`fleet_nodes`] adverts heard by both observers (SEA,
/// whose id is [`fleet_observer_sea`], and [`OBS_PDX`]) a minute ago; the SEA observer's own
/// advert (a repeater in Seattle) and its status (4,012 mV); a Public channel message; a
/// forged advert and a frame too short to be one (two rejected packets). 12 transmissions,
/// 7 nodes.
pub fn fleet_db(db: &Path) -> store::Writer {
    let mut w = store::Writer::open(db, 0).unwrap();
    let now = server::now_ms();
    let sea = fleet_observer_sea();
    let mut items = Vec::new();
    for (i, (seed, kind, name, at)) in fleet_nodes().iter().enumerate() {
        let hex = advert(seed, *kind, name, *at);
        items.push(item_in(&hex, &sea, "SEA", now - 60_000 + i as i64));
        items.push(item_in(&hex, OBS_PDX, "PDX", now - 59_000 + i as i64));
    }
    items.push(item_in(
        &advert(&[6; 32], 2, "Sea-Observer", Some((47.6, -122.3))),
        &sea,
        "SEA",
        now - 30_000,
    ));
    items.push(item_in(
        &vector("grp_txt_public_channel_decrypt"),
        &sea,
        "SEA",
        now - 20_000,
    ));
    items.push(item_in(
        &vector("advert_flood_corrupted_bad_signature"),
        OBS_PDX,
        "PDX",
        now - 10_000,
    ));
    items.push(item_in("11", OBS_PDX, "PDX", now - 5_000));
    items.push(ingest::status_item(
        ingest::message::StatusMessage {
            observer: Some(ingest::message::TopicObserver {
                id: sea.clone(),
                iata: "SEA".into(),
            }),
            battery_mv: Some(4012),
            ..Default::default()
        },
        now,
        false,
    ));
    w.write_batch(&items).unwrap();
    w
}

/// The id of the SEA observer of the fleet fixture: the key of seed 6, the node it
/// advertises as.
pub fn fleet_observer_sea() -> String {
    key_of(&[6; 32])
}

/// The areas of the fleet tests: `BAY` (a polygon around the two Bay Area nodes) and `PDX`
/// (a box around Portland).
pub fn fleet_areas() -> serde_json::Value {
    serde_json::json!({
        "_comment": "skipped",
        "BAY": {"label": "Bay Area", "polygon": [[37.9, -122.55], [37.9, -121.75], [37.25, -121.75], [37.25, -122.55]]},
        "PDX": {"label": "Portland", "latMin": 45.0, "latMax": 46.0, "lonMin": -123.0, "lonMax": -122.0},
    })
}

/// [`config`] with the UI keys of `file` applied.
pub fn config_with(db: &Path, file: serde_json::Value) -> ServerConfig {
    let mut cfg = config(db);
    cfg.ui
        .apply_file(file.as_object().expect("a config object"))
        .unwrap();
    cfg
}

/// A writer item from an observer status published as `json` on `meshcore/SEA/<id>/status`,
/// received (live) at `at`: the writer role's own parsing.
pub fn status_at(id: &str, json: &str, at: i64) -> store::Item {
    match ingest::message::parse(&format!("meshcore/SEA/{id}/status"), json.as_bytes()).unwrap() {
        ingest::message::Message::Status(s) => ingest::status_item(s, at, false),
        m => panic!("not a status: {m:?}"),
    }
}

/// A writer item from a packet message `json` published on `meshcore/SEA/<id>/packets`,
/// received at `at`: the writer role's own parsing and decoding (Public channel key).
pub fn packet_at(id: &str, json: &str, at: i64) -> store::Item {
    let d = ingest::decode::Decoder {
        keyring: meshcore::crypto::Keyring::with_public(),
        ..Default::default()
    };
    match ingest::message::parse(&format!("meshcore/SEA/{id}/packets"), json.as_bytes()).unwrap() {
        ingest::message::Message::Packet(p, sent_at) => ingest::packet_item(&d, p, sent_at, at).0,
        m => panic!("not a packet: {m:?}"),
    }
}

// ---- Shared by the tests split out of the old `api.rs` (packets, nodes, node_health, live,
// capability, collisions, channels, config, observers, stats, health, web, reader). ----

/// Observer `a1…` of [`seed_real_frames`] (region SEA).
pub const OBS_A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
/// Observer `b2…` of [`seed_real_frames`] (region SEA).
pub const OBS_B: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
/// A third observer, not in [`seed_real_frames`]; the tests put it in PDX.
pub const OBS_C: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

/// One observation of `hex` by `observer` in region SEA at `at`: SNR 7.25, RSSI -95, the
/// Public channel decrypted, and an origin name with markup in it (`<b>obs a1</b>`, returned
/// as data; [`observed`] differs only in that name).
pub fn item_sea(hex: &str, observer: &str, at: i64) -> store::Item {
    Heard {
        origin: Some(format!("<b>obs {}</b>", &observer[..2])),
        ..heard_by(observer, "SEA", 7.25, -95.0)
    }
    .item(hex, at)
}

/// Like [`item_sea`], with the observer in region `iata`, no origin name and weaker reception
/// (SNR 5.0, RSSI -100; [`item_in`] has a name and SNR 6.5, RSSI -90).
pub fn weak_item_in(hex: &str, observer: &str, iata: &str, at: i64) -> store::Item {
    heard_by(observer, iata, 5.0, -100.0).item(hex, at)
}

/// A database with adverts (1- and 2-byte mode), channel traffic, a forged advert, a TRACE and
/// a status, heard by two observers.
pub fn seed_real_frames(db: &Path) -> store::Writer {
    let mut w = store::Writer::open(db, 0).unwrap();
    let now = server::now_ms();
    let mut items = Vec::new();
    for (i, name) in [
        "advert_flood_zero_hop_repeater",
        "advert_flood_2byte_hash_5hops",
        "advert_flood_room_server_1byte",
        "advert_flood_companion_with_location",
        "advert_flood_corrupted_bad_signature",
        "grp_txt_public_channel_decrypt",
        "grp_txt_public_channel_2hops",
        "grp_txt_unknown_channel_no_decrypt",
        "trace_direct_4snr_5hops",
        "txt_msg_flood_4hops",
    ]
    .iter()
    .enumerate()
    {
        let hex = vector(name);
        items.push(item_sea(&hex, OBS_A, now - 60_000 + i as i64 * 1000));
        items.push(item_sea(&hex, OBS_B, now - 59_000 + i as i64 * 1000));
    }
    items.push(ingest::status_item(
        ingest::message::StatusMessage {
            observer: Some(ingest::message::TopicObserver {
                id: OBS_A.into(),
                iata: "SEA".into(),
            }),
            model: Some("Heltec V3".into()),
            battery_mv: Some(4100),
            ..Default::default()
        },
        now,
        false,
    ));
    w.write_batch(&items).unwrap();
    w
}

/// A minimal HTTP/1.1 client: method, path, optional JSON body → (status, body), de-chunked
/// ([`http_raw`] without the head). Blocking.
pub fn http_with_body(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let (status, _, body) = http_raw(addr, method, path, body, "");
    (status, body)
}

/// Waits (up to 5 s) for the first capability cycle: `/api/analytics/hash-sizes` once it is
/// complete.
pub async fn wait_complete(addr: std::net::SocketAddr) -> serde_json::Value {
    for _ in 0..200 {
        let (_, v) = get(addr, "/api/analytics/hash-sizes").await;
        if v["complete"] == true {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("capability cycle never completed");
}

/// POSTs `body` to the batch observations endpoint → (status, JSON).
pub async fn post_observations(
    addr: std::net::SocketAddr,
    body: String,
) -> (u16, serde_json::Value) {
    let (status, text) = tokio::task::spawn_blocking(move || {
        http_with_body(addr, "POST", "/api/packets/observations", Some(&body))
    })
    .await
    .unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, v)
}

/// A flood advert signed by the key with `seed`, at `timestamp`, with `hops` hops of `size`.
pub fn signed_advert(
    timestamp: u32,
    size: meshcore::PathHashSize,
    hops: u8,
    route: meshcore::Route,
) -> String {
    use meshcore::payload::{Advert, AppData, NodeType};
    let mut appdata = Vec::new();
    AppData::new(NodeType::REPEATER, None, Some(b"Sizer")).encode(&mut appdata);
    let mut payload = Vec::new();
    Advert::encode_signed(&[7; 32], timestamp, &appdata, &mut payload);
    let len = meshcore::PathLen::new(size, hops).unwrap();
    let path = vec![0x5c; len.byte_len()];
    let frame = meshcore::Packet::new(route, meshcore::PayloadType::Advert, len, &path, &payload)
        .unwrap()
        .to_bytes();
    hex::encode(frame)
}

/// A 1-byte flood advert of a repeater with key `seed`, `name` and an optional position.
pub fn advert_of(seed: &[u8; 32], name: &[u8], at: Option<(i32, i32)>, timestamp: u32) -> String {
    use meshcore::payload::{Location, NodeType};
    let loc = at.map(|(lat_raw, lon_raw)| Location { lat_raw, lon_raw });
    zero_hop_advert(seed, NodeType::REPEATER, loc, name, timestamp)
}

/// Three seeds: the first two keys share 2 bytes, the third shares only the first byte.
pub fn colliding_seeds() -> [[u8; 32]; 3] {
    use meshcore::payload::public_key_of;
    let seed = |i: u32| {
        let mut s = [0x42u8; 32];
        s[..4].copy_from_slice(&i.to_le_bytes());
        s
    };
    let mut by2: std::collections::HashMap<[u8; 2], u32> = Default::default();
    let mut pair = None;
    for i in 0..100_000u32 {
        let k = public_key_of(&seed(i));
        if let Some(j) = by2.insert([k[0], k[1]], i) {
            pair = Some((j, i, k[0], k[1]));
            break;
        }
    }
    let (a, b, first, second) = pair.expect("no 2-byte collision found");
    let c = (0..1_000_000u32)
        .map(|i| i + 200_000)
        .find(|i| {
            let k = public_key_of(&seed(*i));
            k[0] == first && k[1] != second
        })
        .expect("no 1-byte collision found");
    [seed(a), seed(b), seed(c)]
}

/// The public key (hex) a seeded advert vector carries: the 32 bytes after its path.
pub fn advert_key(hex: &str) -> String {
    let raw = meshcore::report::parse_hex(hex).unwrap();
    let p = meshcore::Packet::decode(&raw).unwrap();
    hex::encode(&p.payload_bytes()[..32])
}

/// Polls `/api/alerts` until an active alert of `rule` shows (every 25 ms; the cap only ends
/// a test that would otherwise hang) and returns it.
pub async fn active_alert(addr: std::net::SocketAddr, rule: &str) -> serde_json::Value {
    for _ in 0..2_400 {
        let (_, v) = get(addr, "/api/alerts").await;
        if let Some(a) = v["active"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["rule"] == rule))
        {
            return a.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no active {rule} alert");
}

/// The reader's test configuration with alerting on, evaluated every 50 ms, its state in
/// `dir`.
pub fn config_with_alerts(db: &Path, dir: &Path) -> ServerConfig {
    let mut alerting = alerts::Settings::new(dir);
    alerting.eval_interval = Duration::from_millis(50);
    ServerConfig {
        alerts: Some(alerting),
        ..config(db)
    }
}

/// Three seeds whose keys start with distinct bytes.
pub fn distinct_seeds() -> [[u8; 32]; 3] {
    let mut out = Vec::new();
    let mut firsts = std::collections::HashSet::new();
    for i in 0u8..=255 {
        let s = [i.wrapping_mul(7).wrapping_add(3); 32];
        if firsts.insert(meshcore::payload::public_key_of(&s)[0]) {
            out.push(s);
        }
        if out.len() == 3 {
            break;
        }
    }
    [out[0], out[1], out[2]]
}

/// The advert frame `hex` (a zero-hop flood) re-framed as heard through `path`.
pub fn advert_through(hex: &str, path: &[u8]) -> String {
    let raw = meshcore::report::parse_hex(hex).unwrap();
    let p = meshcore::Packet::decode(&raw).unwrap();
    let len = meshcore::PathLen::new(meshcore::PathHashSize::One, path.len() as u8).unwrap();
    let framed = meshcore::Packet::new(
        meshcore::Route::Flood,
        meshcore::PayloadType::Advert,
        len,
        path,
        p.payload_bytes(),
    )
    .unwrap();
    hex::encode(framed.to_bytes())
}
