//! `GET /api/audio-lab/buckets` (CoreScope's Audio Lab): sample packets per payload type, at
//! most 8, spread from the shortest frame to the longest, with CoreScope's keys.

use serde_json::Value;

mod support;

use support::*;

fn frame_len(p: &Value) -> usize {
    p["raw_hex"].as_str().map_or(0, |h| h.len() / 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_lab_buckets_sample_each_type_in_corescope_shape() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed_real_frames(&db);
    let s = start(config(&db)).await;
    let (st, v) = get(s.addr, "/api/audio-lab/buckets").await;
    assert_eq!(st, 200, "{v}");
    let buckets = v["buckets"].as_object().expect("buckets object");
    // A decrypted channel message is CHAN (CoreScope's payload type), an undecrypted GRP_TXT.
    for ty in ["ADVERT", "CHAN", "GRP_TXT", "TRACE", "TXT_MSG"] {
        assert!(
            buckets.contains_key(ty),
            "no {ty} bucket: {:?}",
            buckets.keys()
        );
    }
    for (ty, list) in buckets {
        let list = list.as_array().expect("array");
        assert!(!list.is_empty() && list.len() <= 8, "{ty}: {}", list.len());
        for p in list {
            has(p, "hash", "string");
            has(p, "raw_hex", "string");
            has(p, "decoded_json", "string");
            has(p, "observation_count", "integer");
            has(p, "payload_type", "integer");
            has(p, "path_json", "string");
            has(p, "observer_id", "string");
            has(p, "timestamp", "string");
            // Both observers heard every frame of the fixture.
            assert_eq!(p["observation_count"], 2, "{p}");
            assert!(
                [OBS_A, OBS_B].contains(&p["observer_id"].as_str().unwrap()),
                "{p}"
            );
            let d: Value = serde_json::from_str(p["decoded_json"].as_str().unwrap()).unwrap();
            assert_eq!(d["type"].as_str(), Some(ty.as_str()), "{p}");
        }
        let lens: Vec<usize> = list.iter().map(frame_len).collect();
        assert!(
            lens.windows(2).all(|w| w[0] <= w[1]),
            "{ty} not shortest first: {lens:?}"
        );
    }
    s.shutdown().await;
}

/// 20 adverts of 20 lengths: 8 samples, the shortest first, every second or third length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_lab_buckets_spread_over_the_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let now = server::now_ms();
    let items: Vec<store::Item> = (1..=20u8)
        .map(|n| {
            let name = "x".repeat(usize::from(n));
            item_sea(
                &advert(&[n; 32], 2, &name, None),
                OBS_A,
                now - 1000 + i64::from(n),
            )
        })
        .collect();
    w.write_batch(&items).unwrap();
    let s = start(config(&db)).await;
    let (st, v) = get(s.addr, "/api/audio-lab/buckets").await;
    assert_eq!(st, 200, "{v}");
    let list = v["buckets"]["ADVERT"].as_array().expect("ADVERT bucket");
    let lens: Vec<usize> = list.iter().map(frame_len).collect();
    let shortest = frame_len(&serde_json::json!({"raw_hex": advert(&[1; 32], 2, "x", None)}));
    // Picks 0, 2, 5, 7, 10, 12, 15, 17 of the 20 lengths (one byte of name each).
    let want: Vec<usize> = [0, 2, 5, 7, 10, 12, 15, 17]
        .iter()
        .map(|i| shortest + i)
        .collect();
    assert_eq!(lens, want, "{v}");
    s.shutdown().await;
}
