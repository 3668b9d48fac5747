//! Observer state through the publish pipeline, as meshcoretomqtt's messages arrive: a broker's
//! retained status is history (it never makes an observer look alive), a live status is as
//! recent as its own timestamp, `"unknown"` device fields are absent, the packet `duration` is
//! stored as airtime, and one packet delivered by two brokers is one observation.

use std::sync::Arc;

use ingest::config::SourceConfig;
use ingest::decode::Decoder;
use ingest::pipeline::Pipeline;
use ingest::stats::Stats;
use ingest::writer_thread::{WriterMsg, now_ms};
use store::rusqlite::OptionalExtension;
use tokio::sync::mpsc;

const OBS: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const NEW_OBS: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

/// A real GRP_TXT capture (testdata/vectors/packets.jsonl, `Public` channel).
const PUBLIC_MSG: &str =
    "150011C3C1354D619BAE9590E4D177DB7EEAF982F5BDCF78005D75157D9535FA90178F785D";

/// One source's pipeline and the receiving end of its writer queue.
fn pipeline(name: &str) -> (Pipeline, mpsc::Receiver<WriterMsg>) {
    let (tx, rx) = mpsc::channel(16);
    let cfg = SourceConfig::from_url(name, "mqtt://127.0.0.1:1883").unwrap();
    let p = Pipeline::new(
        cfg,
        Arc::new(Decoder::default()),
        tx,
        Arc::new(Stats::default()),
    );
    (p, rx)
}

/// Publishes through `p` and writes what it queued.
async fn publish(
    w: &mut store::Writer,
    (p, rx): &mut (Pipeline, mpsc::Receiver<WriterMsg>),
    topic: &str,
    payload: &str,
    retained: bool,
) {
    p.publish(topic, payload.as_bytes(), retained).await;
    let Ok(WriterMsg::From { item, .. }) = rx.try_recv() else {
        panic!("nothing queued for {payload}");
    };
    w.write_batch(&[item]).unwrap();
}

/// meshcoretomqtt's status message (`build_status_message`), its time as it writes it.
fn status(status: &str, sent_at: i64, model: &str) -> String {
    let timestamp = store::time::iso(sent_at).replace('Z', "+00:00");
    format!(
        r#"{{"status":"{status}","timestamp":"{timestamp}","origin":"obs","origin_id":"{OBS}",
            "radio":"910.525,62.5,7,5","model":"{model}","firmware_version":"unknown",
            "client_version":"meshcoretomqtt/1.0.8.0",
            "stats":{{"battery_mv":4100,"uptime_secs":99,"debug_flags":4,"queue_len":2}}}}"#
    )
}

#[derive(Debug, PartialEq)]
struct Row {
    status: Option<String>,
    model: Option<String>,
    firmware: Option<String>,
    last_seen: Option<i64>,
    last_status_at: Option<i64>,
    status_timestamp: Option<i64>,
    queue_len: Option<i64>,
    debug_flags: Option<i64>,
}

fn row(w: &store::Writer, id: &str) -> Option<Row> {
    w.conn()
        .query_row(
            "SELECT status, model, firmware, last_seen, last_status_at, status_timestamp,
                    queue_len, debug_flags
             FROM observers WHERE id = ?1",
            [id],
            |r| {
                Ok(Row {
                    status: r.get(0)?,
                    model: r.get(1)?,
                    firmware: r.get(2)?,
                    last_seen: r.get(3)?,
                    last_status_at: r.get(4)?,
                    status_timestamp: r.get(5)?,
                    queue_len: r.get(6)?,
                    debug_flags: r.get(7)?,
                })
            },
        )
        .optional()
        .unwrap()
}

#[tokio::test]
async fn retained_status_is_history_and_live_status_is_as_recent_as_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = store::Writer::open(&dir.path().join("meshlens.db"), 0).unwrap();
    let mut src = pipeline("upstream");
    let topic = format!("meshcore/SEA/{OBS}/status");
    // Times in the recent past, whole milliseconds, as the uploader writes them.
    let live_at = now_ms() - 60_000;
    publish(
        &mut w,
        &mut src,
        &topic,
        &status("online", live_at, "unknown"),
        false,
    )
    .await;
    let live = Row {
        status: Some("online".into()),
        model: None,
        firmware: None,
        last_seen: Some(live_at),
        last_status_at: Some(live_at),
        status_timestamp: Some(live_at),
        queue_len: Some(2),
        debug_flags: Some(4),
    };
    assert_eq!(row(&w, OBS), Some(live));

    // meshlens reconnects: the broker replays its retained copy, here the uploader's last
    // will, which names a model meshlens did not know. Only that is taken.
    publish(
        &mut w,
        &mut src,
        &topic,
        &status("offline", live_at - 30_000, "Heltec V3"),
        true,
    )
    .await;
    let after = row(&w, OBS).unwrap();
    assert_eq!(after.model.as_deref(), Some("Heltec V3"));
    assert_eq!(after.status.as_deref(), Some("online"));
    assert_eq!(
        (after.last_seen, after.last_status_at),
        (Some(live_at), Some(live_at))
    );

    // A retained status of an observer never heard live: known, not seen.
    let new_topic = format!("meshcore/SEA/{NEW_OBS}/status");
    let undated = r#"{"status":"online","model":"T-Beam"}"#;
    publish(&mut w, &mut src, &new_topic, undated, true).await;
    let new = row(&w, NEW_OBS).unwrap();
    assert_eq!(new.model.as_deref(), Some("T-Beam"));
    assert_eq!((new.last_seen, new.last_status_at), (None, None));
}

#[tokio::test]
async fn packet_duration_is_airtime_and_two_brokers_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = store::Writer::open(&dir.path().join("meshlens.db"), 0).unwrap();
    let mut a = pipeline("broker-a");
    let mut b = pipeline("broker-b");
    let topic = format!("meshcore/SEA/{OBS}/packets");
    let payload = format!(
        r#"{{"origin":"obs","type":"PACKET","direction":"rx","raw":"{PUBLIC_MSG}",
            "SNR":"11","RSSI":"-92","score":"1000","duration":"123","hash":"X"}}"#
    );
    publish(&mut w, &mut a, &topic, &payload, false).await;
    publish(&mut w, &mut b, &topic, &payload, false).await;
    let (observations, airtime): (i64, Option<i64>) = w
        .conn()
        .query_row(
            "SELECT count(*), max(airtime_ms) FROM observations",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((observations, airtime), (1, Some(123)));
    let packets: i64 = w
        .conn()
        .query_row("SELECT packet_count FROM observers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(packets, 1);
}
