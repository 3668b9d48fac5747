//! `/api/analytics/hash-collisions` (`src/api/collisions.rs`): the shared key prefixes of the
//! known nodes at 1, 2 and 3 bytes, by region, with hostile names and regions as data.

use serde_json::Value;

mod support;

use support::*;

/// Prefix (uppercase, `bytes` bytes) → sorted keys, for prefixes shared by several nodes.
fn expected_collisions(
    nodes: &[Value],
    bytes: usize,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut m: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for n in nodes {
        let k = n["public_key"].as_str().unwrap();
        m.entry(k[..bytes * 2].to_ascii_uppercase())
            .or_default()
            .push(k.to_string());
    }
    m.retain(|_, v| v.len() > 1);
    m.values_mut().for_each(|v| v.sort());
    m
}

/// The collisions an answer lists, in the same form, after checking each entry's shape.
fn listed_collisions(v: &Value, bytes: usize) -> std::collections::BTreeMap<String, Vec<String>> {
    let size = &v["by_size"][bytes.to_string()];
    let list = size["collisions"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(size["stats"]["collision_count"], list.len());
    list.iter()
        .map(|c| {
            assert_eq!(c["byte_size"], bytes);
            let nodes = c["nodes"].as_array().unwrap();
            assert_eq!(c["appearances"], nodes.len());
            let mut keys: Vec<String> = nodes
                .iter()
                .map(|n| n["public_key"].as_str().unwrap().to_string())
                .collect();
            keys.sort();
            (c["prefix"].as_str().unwrap().to_string(), keys)
        })
        .collect()
}

/// Prefix collisions are the shared key prefixes of the known nodes (as `/api/nodes` lists
/// them) at 1, 2 and 3 bytes, restricted by region like `/api/nodes?region=`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_collisions_are_the_shared_prefixes_of_known_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed_real_frames(&db);
    let now = server::now_ms();
    let ts = (now / 1000) as u32;
    let seeds = colliding_seeds();
    // 23 bytes: with flags and a location it fills the 32 signed appdata bytes exactly, so the
    // whole hostile name is signed (bytes past 32 are never part of a name).
    let evil = r#"<svg onload=alert(1)>'\"#;
    let frames = [
        advert_of(
            &seeds[0],
            evil.as_bytes(),
            Some((47_600_000, -122_300_000)),
            ts - 3,
        ),
        advert_of(&seeds[1], b"Twin", Some((47_700_000, -122_400_000)), ts - 2),
        advert_of(&seeds[2], b"Cousin", None, ts - 1),
    ];
    let items: Vec<store::Item> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            weak_item_in(
                f,
                "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3",
                "PDX",
                now - 3_000 + i as i64,
            )
        })
        .collect();
    w.write_batch(&items).unwrap();
    let ground: Vec<String> = seeds
        .iter()
        .map(|s| hex::encode(meshcore::payload::public_key_of(s)))
        .collect();
    let s = start(config(&db)).await;
    wait_complete(s.addr).await;
    for region in ["", "PDX", "SEA", "sea,pdx", "ZZZ"] {
        let q = if region.is_empty() {
            String::new()
        } else {
            format!("?region={region}")
        };
        let sep = if q.is_empty() { "?" } else { "&" };
        let (_, nv) = get(s.addr, &format!("/api/nodes{q}{sep}limit=2000")).await;
        let nodes = nv["nodes"].as_array().unwrap().clone();
        let (st, v) = get(s.addr, &format!("/api/analytics/hash-collisions{q}")).await;
        assert_eq!(st, 200, "{v}");
        assert!(v["inconsistent_nodes"].is_array(), "{v}");
        for bytes in [1, 2, 3] {
            let size = &v["by_size"][bytes.to_string()];
            assert_eq!(size["stats"]["total_nodes"], nodes.len(), "{region}: {v}");
            assert_eq!(
                listed_collisions(&v, bytes),
                expected_collisions(&nodes, bytes),
                "{region} {bytes}"
            );
        }
        // The matrix cells hold every node exactly once.
        let cells = v["by_size"]["1"]["one_byte_cells"].as_object().unwrap();
        assert_eq!(cells.len(), 256);
        assert_eq!(
            cells
                .values()
                .map(|c| c.as_array().unwrap().len())
                .sum::<usize>(),
            nodes.len()
        );
        let cells2 = v["by_size"]["2"]["two_byte_cells"].as_object().unwrap();
        assert_eq!(cells2.len(), 256);
        assert_eq!(
            cells2
                .values()
                .map(|c| c["group_nodes"].as_array().unwrap().len())
                .sum::<usize>(),
            nodes.len()
        );
        // The ground keys collide wherever they are known.
        let known = nodes.iter().any(|n| n["public_key"] == ground[0].as_str());
        assert_eq!(known, region != "SEA" && region != "ZZZ", "{region}");
        let one = listed_collisions(&v, 1);
        let two = listed_collisions(&v, 2);
        let p1 = ground[0][..2].to_ascii_uppercase();
        let p2 = ground[0][..4].to_ascii_uppercase();
        if known {
            assert!(one[&p1].len() >= 3 && ground.iter().all(|g| one[&p1].contains(g)));
            assert!(two[&p2].contains(&ground[0]) && two[&p2].contains(&ground[1]));
            assert!(!two[&p2].contains(&ground[2]));
            let entry = v["by_size"]["2"]["collisions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["prefix"] == p2.as_str())
                .unwrap();
            // Two positions about 14 km apart: a local collision.
            assert_eq!(entry["with_coords"], 2, "{entry}");
            assert_eq!(entry["classification"], "local", "{entry}");
            let d = entry["max_dist_km"].as_f64().unwrap();
            assert!((5.0..30.0).contains(&d), "{d}");
            // Node names are data, returned verbatim as JSON strings.
            let named = entry["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["public_key"] == ground[0].as_str())
                .unwrap();
            assert_eq!(named["name"], evil);
            assert_eq!(named["role"], "repeater");
            assert_eq!(named["hash_size"], 1);
        } else {
            assert!(!one.contains_key(&p1) || !one[&p1].contains(&ground[0]));
        }
        if region == "ZZZ" {
            assert!(nodes.is_empty());
            for bytes in ["1", "2", "3"] {
                assert_eq!(v["by_size"][bytes]["collisions"], serde_json::json!([]));
            }
        }
    }
    // Hostile region text is data: no match, no error.
    let (st, v) = get(
        s.addr,
        "/api/analytics/hash-collisions?region=%27%3BDROP%20TABLE%20nodes%3B--",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["by_size"]["1"]["stats"]["total_nodes"], 0);
    let (st, v) = get(s.addr, "/api/analytics/hash-collisions?region=%2C%20%2C").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["by_size"]["2"]["collisions"], serde_json::json!([]));
    s.shutdown().await;
}
