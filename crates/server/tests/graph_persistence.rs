//! The neighbor graph survives a restart: the reader's cycle builds it from resolved hops and
//! publishes it (`<data-dir>/neighbor-graph/graph.json`), the writer persists it
//! (`neighbor_edges`), and a reader started afterwards serves it before its first cycle, with
//! each edge's observers and SNR.

use std::time::Duration;

use analytics::hops::short_id;

mod support;

use support::*;

fn short(hex_key: &str) -> u64 {
    let mut k = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut k).unwrap();
    short_id(&k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_neighbor_graph_is_published_persisted_and_served_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let [r1, r2, c] = distinct_seeds();
    let r1_advert = advert(&r1, 2, "R1", Some((47.60, -122.30)));
    let r2_advert = advert(&r2, 2, "R2", Some((47.64, -122.30)));
    let c_advert = advert(&c, 1, "<img src=x>", Some((47.56, -122.30)));
    let (k1, k2, kc) = (key_of(&r1), key_of(&r2), key_of(&c));
    let p1 = meshcore::payload::public_key_of(&r1)[0];
    let p2 = meshcore::payload::public_key_of(&r2)[0];
    let now = server::now_ms();
    w.write_batch(&[
        item_sea(&r1_advert, OBS_A, now - 5_000),
        item_sea(&r2_advert, OBS_A, now - 4_000),
        item_sea(&c_advert, OBS_A, now - 3_000),
        // The companion's advert as relayed by R1 then R2.
        item_sea(&advert_through(&c_advert, &[p1, p2]), OBS_B, now - 2_000),
        // The same packet through the same relays, heard worse by OBS_A.
        heard_by(OBS_A, "SEA", 1.0, -100.0)
            .item(&advert_through(&c_advert, &[p1, p2]), now - 1_900),
    ])
    .unwrap();

    let reader = store::Reader::open(&db).unwrap();
    let idx = server::capability::compute(reader.conn(), Duration::from_secs(86_400)).unwrap();
    let g = &idx.topology.graph;
    let r1_r2 = g
        .get(short(&k1), short(&k2))
        .expect("R1–R2 relayed next to each other");
    assert_eq!(r1_r2.count, 1, "one packet, however many copies");
    let named: Vec<&str> = r1_r2
        .observers
        .ids()
        .iter()
        .map(|o| idx.topology.observer_ids[o].as_str())
        .collect();
    assert_eq!(named, vec![OBS_B, OBS_A], "in the order heard");
    assert_eq!(r1_r2.avg_snr(), Some((7.25 + 1.0) / 2.0));
    assert!(
        g.get(short(&kc), short(&k1)).is_some(),
        "the advert's origin and its first hop"
    );
    let edges = server::capability::graph_edges(&idx.topology);
    assert_eq!(edges.len(), g.len());
    let (a, b) = if k1 < k2 { (&k1, &k2) } else { (&k2, &k1) };
    let handed = edges.iter().find(|e| &e.a == a && &e.b == b).unwrap();
    assert_eq!(
        (handed.snr_sum, handed.snr_count, handed.observer_count),
        (8.25, 2, 2)
    );
    assert_eq!(handed.observers, vec![OBS_B.to_owned(), OBS_A.to_owned()]);

    // Published, then persisted by the writer.
    handoff::GraphPublisher::new(dir.path())
        .publish(&edges)
        .unwrap();
    let stats = ingest::stats::Stats::default();
    let mut last = 0;
    assert_eq!(
        ingest::graph::apply(&mut w, dir.path(), &mut last, &stats),
        Some(edges.len())
    );

    // A reader starting now serves it before any cycle.
    let cold = server::capability::cold_index(reader.conn()).unwrap();
    assert!(!cold.complete);
    let served = cold.topology.graph.get(short(&k1), short(&k2)).copied();
    assert_eq!(served.map(|e| e.count), Some(1));
    assert_eq!(
        served,
        Some(*r1_r2),
        "count, weight, SNR and observers as computed"
    );
    assert_eq!(cold.topology.graph.len(), g.len());

    // And the running reader publishes it itself.
    let _ = std::fs::remove_file(handoff::graph_path(dir.path()));
    let mut cfg = config(&db);
    cfg.capability.publish_to = Some(dir.path().to_path_buf());
    let s = start(cfg).await;
    wait_complete(s.addr).await;
    let mut published = None;
    for _ in 0..2_400 {
        if let Ok(Some(snap)) = handoff::read_graph(&handoff::graph_path(dir.path())) {
            published = Some(snap);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let published = published.expect("the cycle publishes the graph");
    assert!(
        published.edges.iter().any(|e| &e.a == a && &e.b == b),
        "{published:?}"
    );
}
