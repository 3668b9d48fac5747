//! The writer's observer history: clock medians per bucket, naive-clock counting, and that an
//! observer's history goes with it.

use store::{ClockReading, Item, METRICS_BUCKET_MS, Observer, PacketRecord, Status, Writer};

fn observer(id: &str) -> Observer {
    Observer {
        id: id.repeat(64 / id.len()),
        name: None,
        iata: Some("SEA".into()),
    }
}

fn packet(hash: u64, obs: &str, t: i64, clock: Option<ClockReading>) -> Item {
    let mut raw = vec![0x15, 0];
    raw.extend_from_slice(&hash.to_be_bytes());
    Item::Packet(PacketRecord {
        observer: observer(obs),
        received_at: t,
        raw,
        head_len: 2,
        hash,
        route_type: 1,
        payload_type: 5,
        payload_version: 0,
        path_len: 0,
        snr: None,
        rssi: None,
        score: None,
        airtime_ms: None,
        clock,
        from_pubkey: None,
        channel: None,
        scope: None,
        advert: None,
        reject_reason: None,
    })
}

fn open() -> (tempfile::TempDir, Writer) {
    let dir = tempfile::tempdir().unwrap();
    let w = Writer::open(&dir.path().join("m.db"), 0).unwrap();
    (dir, w)
}

fn rows(w: &Writer) -> Vec<(i64, Option<i64>, i64)> {
    let mut s = w
        .conn()
        .prepare(
            "SELECT bucket, clock_skew_ms, clock_samples FROM observer_metrics ORDER BY bucket",
        )
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn clock_medians_per_bucket_across_batches() {
    let (_d, mut w) = open();
    let b = 1_000 * METRICS_BUCKET_MS;
    let off = ClockReading::Offset;
    // Bucket b: 1, 2, 100 → median 2 (after the second batch: 1, 2, 100, 3 → 2.5 → 2 by
    // integer midpoint); bucket b+1: 7.
    w.write_batch(&[
        packet(1, "a", b + 1, Some(off(1))),
        packet(2, "a", b + 2, Some(off(100))),
        packet(3, "a", b + 3, Some(off(2))),
        packet(4, "a", b + 4, None),
    ])
    .unwrap();
    assert_eq!(rows(&w), vec![(b, Some(2), 3)]);
    w.write_batch(&[packet(5, "a", b + 5, Some(off(3)))])
        .unwrap();
    assert_eq!(rows(&w), vec![(b, Some(2), 4)]);
    w.write_batch(&[packet(6, "a", b + METRICS_BUCKET_MS, Some(off(7)))])
        .unwrap();
    // A late delivery for the finished bucket is not counted.
    w.write_batch(&[packet(7, "a", b + 10, Some(off(-9_000)))])
        .unwrap();
    assert_eq!(
        rows(&w),
        vec![(b, Some(2), 4), (b + METRICS_BUCKET_MS, Some(7), 1)]
    );
    // A status row in the same bucket keeps the clock.
    w.write_batch(&[Item::Status(Status {
        observer: Some(observer("a")),
        received_at: b + METRICS_BUCKET_MS + 1,
        noise_floor: Some(-100.0),
        ..Status::default()
    })])
    .unwrap();
    let (samples, clock): (i64, Option<i64>) = w
        .conn()
        .query_row(
            "SELECT samples, clock_skew_ms FROM observer_metrics WHERE bucket = ?1",
            [b + METRICS_BUCKET_MS],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((samples, clock), (1, Some(7)));
}

#[test]
fn naive_counts_restart_after_a_quiet_day() {
    let (_d, mut w) = open();
    let day = 86_400_000;
    let t = 100 * day;
    let naive = ClockReading::Naive(-7_200_000);
    w.write_batch(&[
        packet(1, "b", t, Some(naive)),
        packet(2, "b", t + 10, Some(naive)),
    ])
    .unwrap();
    w.write_batch(&[packet(3, "b", t + 20, Some(naive))])
        .unwrap();
    let get = |w: &Writer| -> (Option<i64>, i64, Option<i64>) {
        w.conn()
            .query_row(
                "SELECT clock_skew_seconds, clock_skew_count_24h, clock_last_naive_at FROM observers",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    };
    assert_eq!(get(&w), (Some(-7200), 3, Some(t + 20)));
    w.write_batch(&[packet(
        4,
        "b",
        t + 2 * day,
        Some(ClockReading::Naive(3_600_000)),
    )])
    .unwrap();
    assert_eq!(get(&w), (Some(3600), 1, Some(t + 2 * day)));
    // Naive readings make no clock-skew rows.
    assert_eq!(rows(&w), vec![]);
}

#[test]
fn an_expired_observer_takes_its_history_with_it() {
    let (_d, mut w) = open();
    w.write_batch(&[
        Item::Status(Status {
            observer: Some(observer("c")),
            received_at: 1_000,
            noise_floor: Some(-100.0),
            ..Status::default()
        }),
        Item::Status(Status {
            observer: Some(observer("d")),
            received_at: 9_000_000,
            noise_floor: Some(-90.0),
            ..Status::default()
        }),
    ])
    .unwrap();
    assert_eq!(w.expire_observers(5_000, 10).unwrap(), 1);
    let left: Vec<i64> = w
        .conn()
        .prepare("SELECT observer_idx FROM observer_metrics")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let d_idx: i64 = w
        .conn()
        .query_row("SELECT idx FROM observers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, vec![d_idx]);
}
