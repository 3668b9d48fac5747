//! `/api/nodes/{pubkey}/health` and `/api/nodes/{pubkey}/paths` (`src/api/node_health.rs`):
//! per-observer reception of a node's recent packets, and the observed paths naming its
//! prefix; bad, ambiguous and unknown prefixes.

use meshcore::report::parse_hex;
use serde_json::Value;

mod support;

use support::*;

/// `hex` (a real frame) with its path replaced by `path` of `size`-byte hops.
fn with_path(hex: &str, size: meshcore::PathHashSize, path: &[u8]) -> String {
    let raw = parse_hex(hex).unwrap();
    let p = meshcore::Packet::decode(&raw).unwrap();
    let len = meshcore::PathLen::new(size, (path.len() / size.bytes()) as u8).unwrap();
    let frame = meshcore::Packet::new(p.route(), p.payload_type(), len, path, p.payload_bytes())
        .unwrap()
        .to_bytes();
    hex::encode(frame)
}

/// Node health: per-observer SNR/RSSI of the node's adverts, summary stats and recent
/// packets, over the last week only; a unique prefix works, bad and ambiguous ones are 400s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_health_is_per_observer_reception_of_its_recent_packets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed_real_frames(&db);
    let now = server::now_ms();
    let ts = (now / 1000) as u32;
    let two_byte = vector("advert_flood_2byte_hash_5hops");
    let seeds = colliding_seeds();
    // A third observer, elsewhere, hears the 2-byte advert worse; the Sizer repeater has one
    // advert 8 days old (outside the window) and one now.
    w.write_batch(&[
        weak_item_in(&two_byte, OBS_C, "PDX", now - 30_000),
        item_sea(
            &signed_advert(
                ts - 8 * 86_400,
                meshcore::PathHashSize::One,
                2,
                meshcore::Route::Flood,
            ),
            OBS_A,
            now - 8 * 86_400_000,
        ),
        item_sea(
            &signed_advert(ts, meshcore::PathHashSize::One, 3, meshcore::Route::Flood),
            OBS_A,
            now,
        ),
        item_sea(
            &advert_of(&seeds[0], b"One", None, ts - 2),
            OBS_A,
            now - 2_000,
        ),
        item_sea(
            &advert_of(&seeds[1], b"Two", None, ts - 1),
            OBS_A,
            now - 1_000,
        ),
    ])
    .unwrap();
    let s = start(config(&db)).await;

    let key = advert_key(&two_byte);
    let (st, v) = get(s.addr, &format!("/api/nodes/{}/health", &key[..6])).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["node"]["public_key"], key.as_str(), "{v}");
    let obs = v["observers"].as_array().unwrap();
    assert_eq!(obs.len(), 3, "{v}");
    for o in obs {
        assert_eq!(o["packetCount"], 1, "{v}");
        let (snr, rssi) = if o["observer_id"] == OBS_C {
            (5.0, -100.0)
        } else {
            (7.25, -95.0)
        };
        assert_eq!(o["avgSnr"], snr, "{v}");
        assert_eq!(o["avgRssi"], rssi, "{v}");
        assert!(o.get("observer_name").is_some(), "{v}");
    }
    let stats = &v["stats"];
    assert_eq!(stats["totalTransmissions"], 1, "{v}");
    assert_eq!(stats["totalPackets"], 1, "{v}");
    assert_eq!(stats["totalObservations"], 3, "{v}");
    assert_eq!(stats["avgSnr"], 6.5, "{v}");
    assert_eq!(stats["avgHops"], 5, "{v}");
    let first_heard = now - 60_000 + 1_000;
    let today = i64::from(first_heard >= now - now.rem_euclid(86_400_000));
    assert_eq!(stats["packetsToday"], today, "{v}");
    assert!(stats["lastHeard"].is_string(), "{v}");
    let recent = v["recentPackets"].as_array().unwrap();
    assert_eq!(recent.len(), 1, "{v}");
    assert_eq!(recent[0]["from_pubkey"], key.as_str(), "{v}");
    assert_eq!(recent[0]["payload_type_name"], "ADVERT", "{v}");

    // Zero-hop adverts: no hops to average.
    let zero = advert_key(&vector("advert_flood_zero_hop_repeater"));
    let (_, v) = get(s.addr, &format!("/api/nodes/{zero}/health")).await;
    assert_eq!(v["stats"]["avgHops"], 0, "{v}");
    assert_eq!(v["observers"].as_array().unwrap().len(), 2, "{v}");

    // The advert 8 days old is outside the window: one transmission, one observer.
    let sizer = hex::encode(meshcore::payload::public_key_of(&[7; 32]));
    let (_, v) = get(s.addr, &format!("/api/nodes/{sizer}/health")).await;
    assert_eq!(v["stats"]["totalTransmissions"], 1, "{v}");
    assert_eq!(v["stats"]["avgHops"], 3, "{v}");
    assert_eq!(v["recentPackets"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["observers"].as_array().unwrap().len(), 1, "{v}");

    // Hostile input: not hex, too short, too long, an ambiguous prefix, an unknown node.
    let shared = hex::encode(&meshcore::payload::public_key_of(&seeds[0])[..2]);
    for what in ["health", "paths"] {
        for bad in ["zz", "a", "%27%3Bdrop", &"a".repeat(65), &shared] {
            let (st, e) = get(s.addr, &format!("/api/nodes/{bad}/{what}")).await;
            assert_eq!(st, 400, "{bad} {e}");
            assert!(e["error"].is_string(), "{e}");
        }
        let known: Vec<String> = [&key, &zero, &sizer]
            .iter()
            .map(|k| k[..4].to_string())
            .collect();
        let unknown = ["0000", "ffff", "1234"]
            .into_iter()
            .find(|u| !known.iter().any(|k| k == u))
            .unwrap();
        let (st, e) = get(s.addr, &format!("/api/nodes/{unknown}0000/{what}")).await;
        assert_eq!(st, 404, "{e}");
        assert!(e["error"].is_string(), "{e}");
    }
    s.shutdown().await;
    drop(w);
}

/// Paths through a node: observed paths with a hop the resolver attributes to it (never TRACE
/// SNR bytes, never a longer hop that merely starts with it, never a prefix it shares with
/// an equally likely node), grouped by hop sequence, with hops resolved to nodes and shared
/// 1-byte hops flagged ambiguous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_paths_are_the_observed_paths_naming_its_prefix() {
    use meshcore::PathHashSize::{One, Two};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let now = server::now_ms();
    let ts = (now / 1000) as u32;
    let rep = vector("advert_flood_zero_hop_repeater");
    let key = advert_key(&rep);
    let k = parse_hex(&key).unwrap();
    let seeds = colliding_seeds();
    let twin_a = hex::encode(meshcore::payload::public_key_of(&seeds[0]));
    let twin_c = hex::encode(meshcore::payload::public_key_of(&seeds[2]));
    let x = parse_hex(&twin_a[..2]).unwrap()[0];
    assert_ne!(
        x, k[0],
        "the colliding keys must not share the repeater's first byte"
    );
    let frames = [
        // Through the repeater, 1-byte hops, two different packets: one group of 2.
        (
            with_path(&vector("txt_msg_flood_4hops"), One, &[0x6f, k[0], 0x7e]),
            now - 9_000,
        ),
        (
            with_path(
                &vector("grp_txt_public_channel_2hops"),
                One,
                &[0x6f, k[0], 0x7e],
            ),
            now - 8_000,
        ),
        // Through it with 2-byte hops.
        (
            with_path(
                &vector("grp_txt_unknown_channel_no_decrypt"),
                Two,
                &[0x10, 0x00, k[0], k[1], 0x20, 0x6d],
            ),
            now - 7_000,
        ),
        // A 2-byte hop starting with its first byte only: not it.
        (
            with_path(
                &vector("grp_txt_public_channel_decrypt"),
                Two,
                &[k[0], k[1] ^ 0xff],
            ),
            now - 6_000,
        ),
        // TRACE: path bytes are SNRs, not hops.
        (
            with_path(
                &vector("trace_direct_4snr_5hops"),
                One,
                &[k[0], k[0], 0x01, 0x02],
            ),
            now - 5_000,
        ),
        // Through the colliding keys' shared first byte, then the repeater.
        (
            with_path(&vector("advert_flood_2byte_hash_5hops"), One, &[x, k[0]]),
            now - 4_000,
        ),
    ];
    let mut items = vec![
        item_sea(&rep, OBS_A, now - 20_000),
        item_sea(
            &advert_of(&seeds[0], b"One", None, ts - 20),
            OBS_A,
            now - 19_000,
        ),
        item_sea(
            &advert_of(&seeds[2], b"Three", None, ts - 19),
            OBS_A,
            now - 18_000,
        ),
    ];
    for (f, at) in &frames {
        items.push(item_sea(f, OBS_A, *at));
        items.push(item_sea(f, OBS_B, *at + 100));
    }
    w.write_batch(&items).unwrap();
    let s = start(config(&db)).await;

    let (st, v) = get(s.addr, &format!("/api/nodes/{}/paths", &key[..8])).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["node"]["public_key"], key.as_str(), "{v}");
    assert_eq!(v["totalTransmissions"], 4, "{v}");
    assert_eq!(v["totalPaths"], 3, "{v}");
    let paths = v["paths"].as_array().unwrap();
    let prefixes = |p: &Value| -> Vec<String> {
        p["hops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["prefix"].as_str().unwrap().to_string())
            .collect()
    };
    let kh = |n: usize| key[..n].to_string();
    let hex_x = hex::encode([x]);
    // Newest first.
    assert_eq!(prefixes(&paths[0]), vec![hex_x.clone(), kh(2)], "{v}");
    assert_eq!(
        prefixes(&paths[1]),
        vec!["1000".to_string(), kh(4), "206d".into()],
        "{v}"
    );
    assert_eq!(
        prefixes(&paths[2]),
        vec!["6f".to_string(), kh(2), "7e".into()],
        "{v}"
    );
    assert_eq!(paths[2]["count"], 2, "{v}");
    assert_eq!(paths[1]["count"], 1, "{v}");
    for p in paths {
        assert!(
            p["lastSeen"].is_string() && p["sampleHash"].is_string(),
            "{v}"
        );
        for h in p["hops"].as_array().unwrap() {
            if key.starts_with(h["prefix"].as_str().unwrap()) {
                assert_eq!(h["pubkey"], key.as_str(), "{v}");
                assert_eq!(h["ambiguous"], false, "{v}");
            }
        }
    }
    // An unknown hop keeps its prefix as its name; the shared first byte is ambiguous.
    assert_eq!(paths[2]["hops"][0]["pubkey"], Value::Null, "{v}");
    assert_eq!(paths[2]["hops"][0]["name"], "6f", "{v}");
    assert_eq!(paths[0]["hops"][0]["pubkey"], Value::Null, "{v}");
    assert_eq!(paths[0]["hops"][0]["ambiguous"], true, "{v}");

    // The colliding nodes share that path's first byte, equally likely (neither located, no
    // graph yet): the hop resolves to neither, so the path runs through neither. A prefix a
    // node merely shares is never a path through it.
    for twin in [&twin_a, &twin_c] {
        let (st, v) = get(s.addr, &format!("/api/nodes/{twin}/paths")).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["totalPaths"], 0, "{v}");
        assert_eq!(v["paths"], serde_json::json!([]), "{v}");
    }
    let (_, d) = get(s.addr, &format!("/api/nodes/{}/paths", &key[..8])).await;
    let shared = &d["paths"][0]["hops"][0];
    assert!(shared["confidence"].as_f64().unwrap() < 0.5, "{d}");

    // A known node no path names: an empty array, not null.
    let other = advert_key(&vector("advert_flood_2byte_hash_5hops"));
    let (st, v) = get(s.addr, &format!("/api/nodes/{other}/paths")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["paths"], serde_json::json!([]), "{v}");
    assert_eq!(v["totalPaths"], 0, "{v}");
    s.shutdown().await;
    drop(w);
}
