//! Observer history and clocks through the real publish pipeline: a status becomes a bucket of
//! `observer_metrics`, an impossible field is dropped and counted, a packet whose envelope
//! time is local time without its zone flags the observer naive, a zoned one is a clock
//! reading.

use std::sync::Arc;

use ingest::config::SourceConfig;
use ingest::decode::Decoder;
use ingest::pipeline::Pipeline;
use ingest::stats::Stats;
use ingest::writer_thread::{WriterMsg, now_ms};
use tokio::sync::mpsc;

const OBS: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const ACK: &str = "0D04B891647EBB40BA70";

#[tokio::test]
async fn statuses_and_envelope_times_through_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = store::Writer::open(&dir.path().join("h.db"), 0).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let stats = Arc::new(Stats::default());
    let p = Pipeline::new(
        SourceConfig::from_url("t", "mqtt://127.0.0.1:1883").unwrap(),
        Arc::new(Decoder::default()),
        tx,
        stats.clone(),
    );
    let mut publish = async |topic: &str, payload: String| {
        p.publish(topic, payload.as_bytes(), false).await;
        let Ok(WriterMsg::From { item, .. }) = rx.try_recv() else {
            panic!("nothing queued for {payload}");
        };
        w.write_batch(&[item]).unwrap();
    };
    let status_topic = format!("meshcore/SEA/{OBS}/status");
    publish(
        &status_topic,
        r#"{"status":"online","stats":{"noise_floor":-111.5,"battery_mv":99999999,"tx_air_secs":5}}"#
            .into(),
    )
    .await;
    // Two hours ahead, zone-less: an observer writing local time in UTC+2.
    let local = store::time::iso(now_ms() + 2 * 3_600_000);
    let packets = format!("meshcore/SEA/{OBS}/packets");
    publish(
        &packets,
        format!(
            r#"{{"raw":"{ACK}","timestamp":"{}"}}"#,
            local.trim_end_matches('Z')
        ),
    )
    .await;
    // Zoned and a minute behind: a clock reading.
    let behind = store::time::iso(now_ms() - 60_000).replace('Z', "+00:00");
    publish(
        &packets,
        format!(r#"{{"raw":"0D04B891647EBB40BA71","timestamp":"{behind}"}}"#),
    )
    .await;

    let c = w.conn();
    let (samples, nf, battery, tx_air): (i64, f64, Option<i64>, i64) = c
        .query_row(
            "SELECT samples, noise_floor_last, battery_mv_last, tx_air_secs FROM observer_metrics
             WHERE samples > 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((samples, nf, battery, tx_air), (1, -111.5, None, 5));
    assert_eq!(
        stats.to_json()["counters"]["statuses.implausible_fields"],
        1,
        "{}",
        stats.to_json()
    );
    let (naive_s, count): (i64, i64) = c
        .query_row(
            "SELECT clock_skew_seconds, clock_skew_count_24h FROM observers",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    // Two hours less however long the publish took (bounds generous for a slow machine),
    // counted once.
    assert!((6_300..=7_200).contains(&naive_s), "{naive_s}");
    assert_eq!(count, 1);
    let skew: i64 = c
        .query_row(
            "SELECT clock_skew_ms FROM observer_metrics WHERE clock_skew_ms IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!((-960_000..=-60_000).contains(&skew), "{skew}");
}
