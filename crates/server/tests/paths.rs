//! Issue 13's routes over the hop resolver (`src/api/resolved.rs`, `paths.rs`,
//! `neighbors.rs`): observations' `resolved_path`, `/api/analytics/topology`, `/distance`,
//! `/neighbor-graph`, `/api/nodes/{pk}/neighbors`, `/reach`, `/paths`, `/api/resolve-hops`,
//! `/api/traces/{hash}`, `POST /api/paths/inspect`, the subpath routes and
//! `/api/debug/affinity`, in CoreScope's keys and types, on a small mesh with known positions:
//! two repeaters share a 1-byte prefix 100 km apart, and the API must attribute each hop to the
//! one near the packet's ends.

use meshcore::payload::{Advert, AppData, Location, NodeType};
use meshcore::{PathHashSize, PathLen, Route};
use serde_json::Value;

mod support;

use support::*;

/// A signed flood advert of `seed` (`kind`, `name`, at `pos`), its clock at `ts`, relayed
/// along `path` (hops of `size` bytes).
fn advert_via(
    seed: &[u8; 32],
    kind: NodeType,
    name: &str,
    pos: (f64, f64),
    ts: u32,
    size: PathHashSize,
    path: &[u8],
) -> String {
    let loc = Location {
        lat_raw: (pos.0 * 1e6).round() as i32,
        lon_raw: (pos.1 * 1e6).round() as i32,
    };
    let mut appdata = Vec::new();
    AppData::new(kind, Some(loc), Some(name.as_bytes())).encode(&mut appdata);
    let mut payload = Vec::new();
    Advert::encode_signed(seed, ts, &appdata, &mut payload);
    let len = PathLen::new(size, (path.len() / size.bytes()) as u8).unwrap();
    let p = meshcore::Packet::new(
        Route::Flood,
        meshcore::PayloadType::Advert,
        len,
        path,
        &payload,
    )
    .unwrap();
    hex::encode(p.to_bytes())
}

fn seed(n: u8) -> [u8; 32] {
    let mut s = [n; 32];
    s[0] = 0xa0;
    s
}

const NORTH_POS: (f64, f64) = (47.60, -122.33);
const SOUTH_POS: (f64, f64) = (46.70, -122.33);

/// The mesh: `North` and `South` repeaters share their first key byte and stand 100 km
/// apart; an observer and an origin near each. North's adverts are relayed by North and
/// heard near North under 1-, 2- and 3-byte prefixes; South's origin is relayed by South
/// (1-byte prefix) and heard near South.
struct Mesh {
    _dir: tempfile::TempDir,
    server: server::Server,
    north: String,
    south: String,
    obs_n: String,
    obs_s: String,
    origin_n: String,
    /// Hash of one packet from the north origin relayed under North's 1-byte prefix.
    hash_n1: String,
}

async fn mesh() -> Mesh {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let seeds = colliding_seeds();
    let (north_seed, south_seed) = (seeds[0], seeds[2]);
    let north = key_of(&north_seed);
    let south = key_of(&south_seed);
    assert_eq!(north[..2], south[..2]);
    assert_ne!(north[..4], south[..4]);
    let (obs_n_seed, obs_s_seed, origin_n_seed, origin_s_seed) =
        (seed(1), seed(2), seed(3), seed(4));
    let obs_n = key_of(&obs_n_seed);
    let obs_s = key_of(&obs_s_seed);
    let origin_n = key_of(&origin_n_seed);
    let now = server::now_ms();
    let nb = hex::decode(&north).unwrap();
    let sb = hex::decode(&south).unwrap();
    let mut items = Vec::new();
    // Everyone's own zero-hop advert, heard by the observer near them: positions, names.
    let near_n = (47.62, -122.30);
    let near_s = (46.72, -122.30);
    for (s, kind, name, pos, obs) in [
        (north_seed, NodeType::REPEATER, "North", NORTH_POS, &obs_n),
        (south_seed, NodeType::REPEATER, "South", SOUTH_POS, &obs_s),
        (obs_n_seed, NodeType::CHAT, "ObsN", near_n, &obs_n),
        (obs_s_seed, NodeType::CHAT, "ObsS", near_s, &obs_s),
        (
            origin_n_seed,
            NodeType::CHAT,
            "OriginN",
            (47.58, -122.36),
            &obs_n,
        ),
        (
            origin_s_seed,
            NodeType::CHAT,
            "OriginS",
            (46.68, -122.36),
            &obs_s,
        ),
    ] {
        let iata = if *obs == obs_n { "SEA" } else { "PDX" };
        items.push(item_in(
            &advert_via(&s, kind, name, pos, 1_700_000_000, PathHashSize::One, &[]),
            obs,
            iata,
            now - 600_000,
        ));
    }
    // North relays OriginN's adverts under each prefix size; South relays OriginS's.
    let mut hash_n1 = String::new();
    for i in 0..6u32 {
        let size = [PathHashSize::One, PathHashSize::Two, PathHashSize::Three][i as usize % 3];
        let hex = advert_via(
            &origin_n_seed,
            NodeType::CHAT,
            "OriginN",
            (47.58, -122.36),
            1_700_000_100 + i,
            size,
            &nb[..size.bytes()],
        );
        if i == 0 {
            let raw = hex::decode(&hex).unwrap();
            hash_n1 = hex::encode(meshcore::Packet::decode(&raw).unwrap().hash().0);
        }
        items.push(item_in(
            &hex,
            &obs_n,
            "SEA",
            now - 300_000 + i64::from(i) * 1000,
        ));
        let hex = advert_via(
            &origin_s_seed,
            NodeType::CHAT,
            "OriginS",
            (46.68, -122.36),
            1_700_000_200 + i,
            PathHashSize::One,
            &sb[..1],
        );
        items.push(item_in(
            &hex,
            &obs_s,
            "PDX",
            now - 200_000 + i64::from(i) * 1000,
        ));
    }
    w.write_batch(&items).unwrap();
    drop(w);
    let server = start(config(&db)).await;
    wait_complete(server.addr).await;
    Mesh {
        _dir: dir,
        server,
        north,
        south,
        obs_n,
        obs_s,
        origin_n,
        hash_n1,
    }
}

fn arr<'a>(v: &'a Value, k: &str) -> &'a Vec<Value> {
    v[k].as_array()
        .unwrap_or_else(|| panic!("{k} must be an array: {v}"))
}

async fn bad(addr: std::net::SocketAddr, path: &str, status: u16) {
    let (s, v) = get(addr, path).await;
    assert_eq!(s, status, "{path}: {v}");
    assert!(v["error"].is_string(), "{path}: {v}");
}

/// Packet detail's observations carry `resolved_path` (full keys), `resolved_confidence`
/// and meshlens's `hops`: the 1-byte hop shared by North and South resolves to North, near
/// the packet's ends; `expand=observations` and the batch route carry the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observations_carry_resolved_path() {
    let m = mesh().await;
    let (s, d) = get(m.server.addr, &format!("/api/packets/{}", m.hash_n1)).await;
    assert_eq!(s, 200, "{d}");
    let o = &arr(&d, "observations")[0];
    assert_eq!(o["resolved_path"], serde_json::json!([m.north]), "{o}");
    let conf = arr(o, "resolved_confidence");
    assert_eq!(conf.len(), 1);
    assert!(conf[0].as_f64().unwrap() >= 0.5, "{o}");
    let hop = &arr(o, "hops")[0];
    for (k, t) in [
        ("prefix", "string"),
        ("pubkey", "string"),
        ("name", "string"),
        ("confidence", "number"),
        ("candidates", "array"),
    ] {
        has(hop, k, t);
    }
    assert_eq!(hop["prefix"], m.north[..2]);
    assert_eq!(hop["name"], "North");
    let cands = arr(hop, "candidates");
    assert!(
        cands.iter().any(|c| c["pubkey"] == m.south.as_str()),
        "{hop}"
    );
    assert_eq!(cands[0]["pubkey"], m.north.as_str());
    // South's packets resolve the same byte to South.
    let (_, list) = get(
        m.server.addr,
        "/api/packets?expand=observations&type=ADVERT&limit=100",
    )
    .await;
    let mut south_seen = 0;
    for p in arr(&list, "packets") {
        for o in arr(p, "observations") {
            assert!(o["resolved_path"].is_array() && o["hops"].is_array(), "{o}");
            if o["observer_id"] == m.obs_s.as_str() && !arr(o, "resolved_path").is_empty() {
                assert_eq!(o["resolved_path"][0], m.south.as_str(), "{o}");
                south_seen += 1;
            }
        }
    }
    assert_eq!(south_seen, 6, "{list}");
    let (s, b) = post_observations(
        m.server.addr,
        format!("{{\"hashes\": [\"{}\"]}}", m.hash_n1),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        b["results"][&m.hash_n1][0]["resolved_path"][0],
        m.north.as_str()
    );
}

/// `/api/analytics/topology`: CoreScope's keys; North, heard under 1-, 2- and 3-byte
/// prefixes, is ONE entry of `topRepeaters` with all six packets, and South is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_topology_is_one_entry_per_node() {
    let m = mesh().await;
    let (s, t) = get(m.server.addr, "/api/analytics/topology").await;
    assert_eq!(s, 200, "{t}");
    for (k, ty) in [
        ("uniqueNodes", "integer"),
        ("avgHops", "number"),
        ("medianHops", "integer"),
        ("maxHops", "integer"),
        ("hopDistribution", "array"),
        ("topRepeaters", "array"),
        ("topPairs", "array"),
        ("hopsVsSnr", "array"),
        ("observers", "array"),
        ("perObserverReach", "object"),
        ("multiObsNodes", "array"),
        ("bestPathList", "array"),
    ] {
        has(&t, k, ty);
    }
    let reps = arr(&t, "topRepeaters");
    let north: Vec<&Value> = reps
        .iter()
        .filter(|r| r["pubkey"] == m.north.as_str())
        .collect();
    assert_eq!(north.len(), 1, "{t}");
    assert_eq!(north[0]["count"], 6);
    assert_eq!(north[0]["name"], "North");
    assert_eq!(north[0]["hop"], m.north[..6].to_ascii_uppercase());
    let south: Vec<&Value> = reps
        .iter()
        .filter(|r| r["pubkey"] == m.south.as_str())
        .collect();
    assert_eq!(
        (south.len(), &south[0]["count"]),
        (1, &Value::from(6)),
        "{t}"
    );
    assert_eq!(reps.len(), 2, "{t}");
    assert_eq!(
        t["hopDistribution"],
        serde_json::json!([{"hops": 1, "count": 12}])
    );
    assert_eq!(t["maxHops"], 1);
    let reach = &t["perObserverReach"][&m.obs_n];
    assert_eq!(reach["rings"][0]["hops"], 1, "{t}");
    assert_eq!(reach["rings"][0]["nodes"][0]["pubkey"], m.north.as_str());
    // The region filter keeps SEA's observer only.
    let (_, sea) = get(m.server.addr, "/api/analytics/topology?region=sea").await;
    let reps = arr(&sea, "topRepeaters");
    assert_eq!(reps.len(), 1, "{sea}");
    assert_eq!(reps[0]["pubkey"], m.north.as_str());
    bad(m.server.addr, "/api/analytics/topology?area=x", 400).await;
    bad(m.server.addr, "/api/analytics/topology?window=99d", 400).await;
    bad(m.server.addr, "/api/analytics/topology?window=junk", 400).await;
    bad(m.server.addr, "/api/analytics/topology?region=,", 400).await;
}

/// `/api/analytics/distance`: links between resolved, located transmitters: OriginN→North
/// is a few km, never the 100 km a first-prefix match to South would make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_distance_uses_resolved_links() {
    let m = mesh().await;
    let (s, d) = get(m.server.addr, "/api/analytics/distance").await;
    assert_eq!(s, 200, "{d}");
    for (k, ty) in [
        ("summary", "object"),
        ("topHops", "array"),
        ("topPaths", "array"),
        ("catStats", "object"),
        ("distHistogram", "object|array"),
        ("distOverTime", "array"),
    ] {
        has(&d, k, ty);
    }
    for (k, ty) in [
        ("totalHops", "integer"),
        ("totalPaths", "integer"),
        ("avgDist", "number"),
        ("maxDist", "number"),
    ] {
        has(&d["summary"], k, ty);
    }
    assert_eq!(d["summary"]["totalPaths"], 12, "{d}");
    assert!(d["summary"]["maxDist"].as_f64().unwrap() < 10.0, "{d}");
    let hop = &arr(&d, "topHops")[0];
    for (k, ty) in [
        ("fromName", "string"),
        ("fromPk", "string"),
        ("toName", "string"),
        ("toPk", "string"),
        ("dist", "number"),
        ("type", "string"),
        ("obsCount", "integer"),
        ("hash", "string"),
        ("timestamp", "string"),
    ] {
        has(hop, k, ty);
    }
    assert!(d["catStats"]["C↔R"]["count"].as_u64().unwrap() == 12, "{d}");
    bad(m.server.addr, "/api/analytics/distance?area=x", 400).await;
}

/// `/api/analytics/neighbor-graph` and `/api/nodes/{pk}/neighbors`: edges between resolved
/// nodes with count, last seen, score and distance; North's neighbors are OriginN and ObsN,
/// never South. Filters: `min_count`, `min_score`, `role`; `region` is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbor_graph_and_node_neighbors() {
    let m = mesh().await;
    let (s, g) = get(
        m.server.addr,
        "/api/analytics/neighbor-graph?min_count=1&min_score=0",
    )
    .await;
    assert_eq!(s, 200, "{g}");
    has(&g, "nodes", "array");
    has(&g, "edges", "array");
    for (k, ty) in [
        ("total_nodes", "integer"),
        ("total_edges", "integer"),
        ("ambiguous_edges", "integer"),
        ("avg_cluster_size", "number"),
    ] {
        has(&g["stats"], k, ty);
    }
    let edges = arr(&g, "edges");
    let e = edges
        .iter()
        .find(|e| {
            (e["source"] == m.north.as_str() && e["target"] == m.origin_n.as_str())
                || (e["target"] == m.north.as_str() && e["source"] == m.origin_n.as_str())
        })
        .unwrap_or_else(|| panic!("no North–OriginN edge: {g}"));
    for (k, ty) in [
        ("source", "string"),
        ("target", "string"),
        ("weight", "integer"),
        ("score", "number"),
        ("bidirectional", "boolean"),
        ("avg_snr", "number"),
        ("observer_count", "integer"),
        ("ambiguous", "boolean"),
        ("last_seen", "string"),
        ("distance_km", "number"),
    ] {
        has(e, k, ty);
    }
    assert_eq!(e["weight"], 6);
    // Every copy was heard by ObsN at SNR 6.5 (`item_in`).
    assert_eq!(
        (e["avg_snr"].as_f64(), e["observer_count"].as_u64()),
        (Some(6.5), Some(1))
    );
    assert!(e["distance_km"].as_f64().unwrap() < 10.0);
    assert!(
        !edges
            .iter()
            .any(|e| e["source"] == m.south.as_str() && e["target"] == m.obs_n.as_str())
    );
    let node = arr(&g, "nodes")
        .iter()
        .find(|n| n["pubkey"] == m.north.as_str())
        .unwrap()
        .clone();
    assert_eq!(node["name"], "North");
    assert_eq!(node["neighbor_count"], 2, "{g}");
    // Defaults (min_count 5) keep the six-packet edges and drop the zero-hop ones.
    let (_, d) = get(m.server.addr, "/api/analytics/neighbor-graph").await;
    assert!(
        arr(&d, "edges")
            .iter()
            .all(|e| e["weight"].as_u64().unwrap() >= 5),
        "{d}"
    );
    let (_, r) = get(
        m.server.addr,
        "/api/analytics/neighbor-graph?min_count=1&role=repeater",
    )
    .await;
    assert!(!arr(&r, "edges").is_empty());
    bad(
        m.server.addr,
        "/api/analytics/neighbor-graph?region=SEA",
        400,
    )
    .await;
    bad(
        m.server.addr,
        "/api/analytics/neighbor-graph?min_count=-1",
        400,
    )
    .await;
    bad(
        m.server.addr,
        "/api/analytics/neighbor-graph?min_score=2",
        400,
    )
    .await;
    bad(
        m.server.addr,
        "/api/analytics/neighbor-graph?role=wizard",
        400,
    )
    .await;

    let (s, n) = get(m.server.addr, &format!("/api/nodes/{}/neighbors", m.north)).await;
    assert_eq!(s, 200, "{n}");
    assert_eq!(n["node"], m.north.as_str());
    has(&n, "total_observations", "integer");
    let list = arr(&n, "neighbors");
    let keys: Vec<&str> = list.iter().map(|x| x["pubkey"].as_str().unwrap()).collect();
    assert!(
        keys.contains(&m.origin_n.as_str()) && keys.contains(&m.obs_n.as_str()),
        "{n}"
    );
    assert!(!keys.contains(&m.south.as_str()));
    let x = &list[0];
    for (k, ty) in [
        ("pubkey", "string"),
        ("prefix", "string"),
        ("name", "string"),
        ("role", "string"),
        ("count", "integer"),
        ("score", "number"),
        ("last_seen", "string"),
        ("observers", "array"),
        ("ambiguous", "boolean"),
        ("distance_km", "number"),
    ] {
        has(x, k, ty);
    }
    let (_, few) = get(
        m.server.addr,
        &format!("/api/nodes/{}/neighbors?min_count=100", m.north),
    )
    .await;
    assert_eq!(few["neighbors"], serde_json::json!([]));
    bad(m.server.addr, "/api/nodes/zz/neighbors", 400).await;
    bad(
        m.server.addr,
        &format!("/api/nodes/{}/neighbors", "ab".repeat(32)),
        404,
    )
    .await;
    bad(
        m.server.addr,
        &format!("/api/nodes/{}/neighbors?min_count=x", m.north),
        400,
    )
    .await;
    bad(
        m.server.addr,
        &format!("/api/nodes/{}/neighbors?include_ambiguous=maybe", m.north),
        400,
    )
    .await;
}

/// `/api/nodes/{pk}/reach`: North hears OriginN (the advert's origin before it) and is heard
/// by ObsN (the observer after it, its last hop); South is nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_reach_from_resolved_hops() {
    let m = mesh().await;
    let (s, r) = get(m.server.addr, &format!("/api/nodes/{}/reach", m.north)).await;
    assert_eq!(s, 200, "{r}");
    for (k, ty) in [
        ("node", "object"),
        ("window", "object"),
        ("reliable_tokens", "array"),
        ("importance", "object"),
        ("direct_observers", "array"),
        ("links", "array"),
    ] {
        has(&r, k, ty);
    }
    assert_eq!(r["importance"]["relay_observations"], 6, "{r}");
    let links = arr(&r, "links");
    let origin = links
        .iter()
        .find(|l| l["pubkey"] == m.origin_n.as_str())
        .unwrap();
    assert_eq!(
        (origin["we_hear"].as_u64(), origin["they_hear"].as_u64()),
        (Some(6), Some(0))
    );
    let obs = links
        .iter()
        .find(|l| l["pubkey"] == m.obs_n.as_str())
        .unwrap();
    assert_eq!(obs["they_hear"], 6);
    assert_eq!(arr(&r, "direct_observers")[0]["pubkey"], m.obs_n.as_str());
    // North's 2- and 3-byte prefixes name it alone; its first byte does not.
    assert_eq!(
        r["reliable_tokens"],
        serde_json::json!([
            m.north[..4].to_ascii_uppercase(),
            m.north[..6].to_ascii_uppercase()
        ])
    );
    bad(
        m.server.addr,
        &format!("/api/nodes/{}/reach?days=abc", m.north),
        400,
    )
    .await;
    bad(
        m.server.addr,
        &format!("/api/nodes/{}/reach?days=1000", m.north),
        400,
    )
    .await;
    bad(m.server.addr, "/api/nodes/not-hex/reach", 400).await;
    bad(
        m.server.addr,
        &format!("/api/nodes/{}/reach", "cd".repeat(32)),
        404,
    )
    .await;
    let _ = &m.obs_s;
}

/// `/api/nodes/{pk}/paths` goes through the resolver: the six 1-byte-prefix packets near
/// North run through North, those near South through South, never both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_paths_use_the_resolver() {
    let m = mesh().await;
    for (key, name) in [(&m.north, "North"), (&m.south, "South")] {
        let (s, v) = get(m.server.addr, &format!("/api/nodes/{key}/paths")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["totalTransmissions"], 6, "{name}: {v}");
        for p in arr(&v, "paths") {
            let h = &p["hops"][0];
            assert_eq!(h["pubkey"], key.as_str(), "{v}");
            assert_eq!(h["name"], name);
            has(h, "confidence", "number");
        }
    }
}

/// `/api/resolve-hops`: CoreScope's `{resolved: {hop: {...}}}`; the shared byte heard from
/// OriginN resolves to North, from OriginS to South; junk is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_hops_weighs_the_path_ends() {
    let m = mesh().await;
    let b = &m.north[..2];
    let (s, v) = get(
        m.server.addr,
        &format!("/api/resolve-hops?hops={b}&from_node={}", m.origin_n),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let r = &v["resolved"][b];
    for (k, ty) in [
        ("name", "string"),
        ("pubkey", "string"),
        ("candidates", "array"),
        ("conflicts", "array"),
        ("confidence", "string"),
        ("ambiguous", "boolean"),
    ] {
        has(r, k, ty);
    }
    assert_eq!(
        (r["pubkey"].as_str(), r["confidence"].as_str()),
        (Some(m.north.as_str()), Some("resolved")),
        "{v}"
    );
    assert_eq!(r["bestCandidate"], m.north.as_str());
    assert_eq!(arr(r, "candidates").len(), 2);
    has(&arr(r, "candidates")[0], "affinityScore", "number");
    let origin_s = key_of(&seed(4));
    let (_, v) = get(
        m.server.addr,
        &format!("/api/resolve-hops?hops={b}&from_node={origin_s}"),
    )
    .await;
    assert_eq!(v["resolved"][b]["pubkey"], m.south.as_str(), "{v}");
    let (_, v) = get(
        m.server.addr,
        &format!("/api/resolve-hops?hops={}", &m.north[..4]),
    )
    .await;
    assert_eq!(v["resolved"][&m.north[..4]]["confidence"], "unique_prefix");
    let (_, v) = get(m.server.addr, "/api/resolve-hops?hops=").await;
    assert_eq!(v, serde_json::json!({"resolved": {}}));
    bad(m.server.addr, "/api/resolve-hops?hops=xyz", 400).await;
    bad(m.server.addr, "/api/resolve-hops?hops=abcdef01", 400).await;
    bad(
        m.server.addr,
        &format!(
            "/api/resolve-hops?hops={}",
            (0..70u8)
                .map(|i| format!("{i:02x}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
        400,
    )
    .await;
    bad(
        m.server.addr,
        &format!("/api/resolve-hops?hops=ab&from_node={}", "ef".repeat(32)),
        404,
    )
    .await;
}

/// `/api/traces/{hash}`: every copy with its path and resolution; unknown → `[]`; junk → 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_by_hash() {
    let m = mesh().await;
    let (s, v) = get(m.server.addr, &format!("/api/traces/{}", m.hash_n1)).await;
    assert_eq!(s, 200, "{v}");
    let t = &arr(&v, "traces")[0];
    for (k, ty) in [
        ("observer", "string"),
        ("observer_name", "string"),
        ("time", "string"),
        ("snr", "number"),
        ("rssi", "number"),
        ("path_json", "string"),
        ("resolved_path", "array"),
    ] {
        has(t, k, ty);
    }
    assert_eq!(t["observer"], m.obs_n.as_str());
    assert_eq!(t["resolved_path"][0], m.north.as_str());
    let (s, v) = get(m.server.addr, "/api/traces/0123456789abcdef").await;
    assert_eq!((s, v), (200, serde_json::json!({"traces": []})));
    bad(m.server.addr, "/api/traces/nothex", 400).await;
}

async fn post(addr: std::net::SocketAddr, path: &str, body: String) -> (u16, Value) {
    let p = path.to_string();
    let (s, text) =
        tokio::task::spawn_blocking(move || http_with_body(addr, "POST", &p, Some(&body)))
            .await
            .unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

/// `POST /api/paths/inspect`: the likeliest node per hop with evidence; hostile bodies are
/// 400s with a JSON error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_inspect_resolves_a_prefix_path() {
    let m = mesh().await;
    let b = &m.north[..2];
    let (s, v) = post(
        m.server.addr,
        "/api/paths/inspect",
        format!(
            "{{\"prefixes\": [\"{b}\"], \"context\": {{\"observerId\": \"{}\"}}}}",
            m.obs_n
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    has(&v, "candidates", "array");
    has(&v, "input", "object");
    has(&v, "stats", "object");
    let c = &arr(&v, "candidates")[0];
    for (k, ty) in [
        ("path", "array"),
        ("names", "array"),
        ("score", "number"),
        ("speculative", "boolean"),
        ("evidence", "object"),
    ] {
        has(c, k, ty);
    }
    assert_eq!(c["path"][0], m.north.as_str(), "{v}");
    let hop = &c["evidence"]["perHop"][0];
    assert_eq!(hop["candidatesConsidered"], 2);
    assert_eq!(hop["alternatives"][0]["publicKey"], m.south.as_str());
    for body in [
        "not json".to_string(),
        "{}".into(),
        "{\"prefixes\": []}".into(),
        "{\"prefixes\": [\"zz\"]}".into(),
        "{\"prefixes\": [\"ab\", \"abcd\"]}".into(),
        "{\"prefixes\": [1]}".into(),
        "{\"prefixes\": [\"ab\"], \"limit\": \"x\"}".into(),
        format!("{{\"prefixes\": [{}]}}", vec!["\"ab\""; 65].join(",")),
        format!(
            "{{\"prefixes\": [\"ab\"], \"pad\": \"{}\"}}",
            "x".repeat(5000)
        ),
    ] {
        let (s, v) = post(m.server.addr, "/api/paths/inspect", body.clone()).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }
}

/// The subpath routes: CoreScope's keys; the mesh's paths are single hops, so there is no run
/// of two (`totalPaths` 0, arrays empty, never null); junk groups and lengths are 400s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_subpaths_shapes_and_hostile_input() {
    let m = mesh().await;
    let (s, v) = get(m.server.addr, "/api/analytics/subpaths").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["subpaths"].clone(), v["totalPaths"].clone()),
        (serde_json::json!([]), Value::from(0)),
        "{v}"
    );
    let (s, v) = get(
        m.server.addr,
        "/api/analytics/subpaths-bulk?groups=2-2:50,3-8:15",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(arr(&v, "results").len(), 2);
    has(&v["results"][0], "subpaths", "array");
    let (s, v) = get(
        m.server.addr,
        &format!(
            "/api/analytics/subpath-detail?hops={},{}",
            &m.origin_n[..2],
            &m.north[..2]
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    for (k, ty) in [
        ("hops", "array"),
        ("nodes", "array"),
        ("totalMatches", "integer"),
        ("signal", "object"),
        ("hourDistribution", "array"),
        ("parentPaths", "array"),
        ("observers", "array"),
    ] {
        has(&v, k, ty);
    }
    assert_eq!(arr(&v, "hourDistribution").len(), 24);
    for path in [
        "/api/analytics/subpaths?minLen=1",
        "/api/analytics/subpaths?maxLen=99",
        "/api/analytics/subpaths?minLen=5&maxLen=3",
        "/api/analytics/subpaths?limit=0",
        "/api/analytics/subpaths-bulk",
        "/api/analytics/subpaths-bulk?groups=2-2",
        "/api/analytics/subpaths-bulk?groups=1-2:5",
        "/api/analytics/subpaths-bulk?groups=a-b:c",
        "/api/analytics/subpath-detail",
        "/api/analytics/subpath-detail?hops=ab",
        "/api/analytics/subpath-detail?hops=ab,zz",
    ] {
        bad(m.server.addr, path, 400).await;
    }
}

/// `/api/debug/affinity` is behind the admin key, as CoreScope's: 403 without one configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_affinity_needs_the_admin_key() {
    let m = mesh().await;
    bad(m.server.addr, "/api/debug/affinity", 403).await;
}

/// `bridges` of `/api/analytics/neighbor-graph`: OriginN – North – ObsN is a chain (each link
/// seen six times, confidently), so North holds it together and its loss cuts off one node
/// from the rest; the chain's ends are no bridges. The list is the whole graph's, whatever
/// the answer's filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbor_graph_lists_bridges() {
    let m = mesh().await;
    let (s, g) = get(m.server.addr, "/api/analytics/neighbor-graph").await;
    assert_eq!(s, 200, "{g}");
    let bridges = arr(&g, "bridges");
    let north = bridges
        .iter()
        .find(|b| b["pubkey"] == m.north.as_str())
        .unwrap_or_else(|| panic!("North is not a bridge: {g}"));
    for (k, ty) in [
        ("pubkey", "string"),
        ("name", "string"),
        ("cut_off", "integer"),
        ("pieces", "integer"),
    ] {
        has(north, k, ty);
    }
    assert_eq!(north["name"], "North");
    assert_eq!(north["cut_off"], 1, "{g}");
    assert_eq!(north["pieces"], 2, "{g}");
    for end in [&m.origin_n, &m.obs_n] {
        assert!(
            !bridges.iter().any(|b| b["pubkey"] == end.as_str()),
            "{end} is a chain's end, not a bridge: {g}"
        );
    }
    // Most cut off first.
    let cut: Vec<u64> = bridges
        .iter()
        .map(|b| b["cut_off"].as_u64().unwrap())
        .collect();
    assert!(cut.windows(2).all(|w| w[0] >= w[1]), "{cut:?}");
    let (_, none) = get(
        m.server.addr,
        "/api/analytics/neighbor-graph?min_count=1000",
    )
    .await;
    assert_eq!(arr(&none, "edges").len(), 0);
    assert_eq!(none["bridges"], g["bridges"]);
}
