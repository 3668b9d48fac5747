//! The writer's side of the operator's requests: the reader, which never writes the
//! database, validates an admin API call and drops an [`AdminRequest`] into the
//! `<data-dir>/admin-requests/` handoff queue; this task picks each one up, carries it out
//! and completes it with a result the reader polls for.
//!
//! - An injected packet goes through the same [`Pipeline`] as any observer's publish (so it
//!   is parsed, decoded, filtered and counted exactly alike), and the result is written once
//!   the writer has committed it.
//! - Pruning nodes and changing the geo filter are [`WriterOp`]s run on the writer thread
//!   between batches ([`WriterMsg::Admin`]).
//!
//! The geo filter lives in the `settings` table. The config file's `geo_filter` seeds it:
//! when the file's filter differs from the one seen at the previous start, the file wins
//! (the operator edited it); otherwise a change made through the API since is kept.

use std::sync::Arc;
use std::time::Duration;

use analytics::geo::GeoFilter;
use handoff::Queue;
use handoff::admin::{AdminRequest, Injection};
use serde_json::{Value, json};
use store::Writer;
use store::settings::{GEO_FILTER, GEO_FILTER_FROM_CONFIG};
use tokio::sync::{mpsc, oneshot, watch};

use crate::pipeline::Pipeline;
use crate::stats::Stats;
use crate::writer_thread::{CommitCounter, WriterMsg, now_ms};

/// How often the queue is looked at.
pub const POLL: Duration = Duration::from_millis(250);
/// Results nobody collected are removed after this long.
pub const RESULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Work for the writer thread itself.
#[derive(Debug)]
pub enum WriterOp {
    /// Delete these nodes.
    PruneNodes(Vec<String>),
    /// Store this geo filter (`None` clears it).
    SetGeoFilter(Option<GeoFilter>),
    /// At start: the config file's geo filter (see the module doc).
    SeedGeoFilter(Option<GeoFilter>),
}

fn filter_text(f: &Option<GeoFilter>) -> String {
    f.as_ref()
        .map_or(Value::Null, GeoFilter::to_json)
        .to_string()
}

fn failed(e: impl std::fmt::Display) -> Value {
    json!({"ok": false, "error": e.to_string()})
}

/// Carries out `op` on the writer's connection; the result object for the reader.
pub fn apply(writer: &mut Writer, op: WriterOp) -> Value {
    let now = now_ms();
    match op {
        WriterOp::PruneNodes(keys) => match writer.delete_nodes(&keys) {
            Ok(n) => json!({"ok": true, "deleted": n}),
            Err(e) => failed(e),
        },
        WriterOp::SetGeoFilter(f) => match writer.set_setting(GEO_FILTER, &filter_text(&f), now) {
            Ok(()) => json!({"ok": true, "geo_filter": f.as_ref().map(GeoFilter::to_json)}),
            Err(e) => failed(e),
        },
        WriterOp::SeedGeoFilter(f) => {
            let text = filter_text(&f);
            let seen = writer.setting(GEO_FILTER_FROM_CONFIG).ok().flatten();
            if seen.as_deref() == Some(text.as_str()) {
                // The stored one (perhaps changed through the API since) stays in force.
                let stored = writer.setting(GEO_FILTER).ok().flatten();
                let v: Value = stored
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or(Value::Null);
                return json!({"ok": true, "changed": false, "geo_filter": v});
            }
            let stored = writer
                .set_setting(GEO_FILTER, &text, now)
                .and_then(|()| writer.set_setting(GEO_FILTER_FROM_CONFIG, &text, now));
            match stored {
                Ok(()) => json!({"ok": true, "changed": true,
                                 "geo_filter": f.as_ref().map(GeoFilter::to_json)}),
                Err(e) => failed(e),
            }
        }
    }
}

/// Sends `op` to the writer thread and waits for its result.
pub async fn run_on_writer(writer: &mpsc::Sender<WriterMsg>, op: WriterOp) -> Value {
    let (tx, rx) = oneshot::channel();
    if writer.send(WriterMsg::Admin(op, tx)).await.is_err() {
        return failed("the writer has stopped");
    }
    rx.await
        .unwrap_or_else(|_| failed("the writer stopped before replying"))
}

/// The publish an observer would have sent for `i`.
fn injection_publish(i: &Injection) -> (String, Vec<u8>) {
    let topic = format!("meshcore/{}/{}/packets", i.region, i.observer);
    let mut body = json!({"raw": i.hex, "origin": "api", "direction": "rx"});
    if let Some(snr) = i.snr {
        body["SNR"] = snr.into();
    }
    if let Some(rssi) = i.rssi {
        body["RSSI"] = rssi.into();
    }
    (topic, body.to_string().into_bytes())
}

async fn inject(pipeline: &Pipeline, i: &Injection) -> Value {
    let (topic, payload) = injection_publish(i);
    let ack = Arc::new(CommitCounter::default());
    if !pipeline
        .publish_acked(&topic, &payload, false, Some(&ack))
        .await
    {
        return failed("the packet was refused (see the refused.* counters)");
    }
    while ack.finished() < 1 {
        ack.changed().await;
    }
    if ack.failed() {
        return failed("the commit failed");
    }
    json!({"ok": true})
}

async fn handle(
    v: &Value,
    pipeline: &Pipeline,
    writer: &mpsc::Sender<WriterMsg>,
    decoder: &crate::decode::Decoder,
) -> Value {
    match AdminRequest::from_json(v) {
        Err(e) => failed(e),
        Ok(AdminRequest::InjectPacket(i)) => inject(pipeline, &i).await,
        Ok(AdminRequest::PruneNodes { public_keys }) => {
            run_on_writer(writer, WriterOp::PruneNodes(public_keys)).await
        }
        Ok(AdminRequest::SetGeoFilter { geo_filter }) => match GeoFilter::from_json(&geo_filter) {
            Ok(f) => {
                let r = run_on_writer(writer, WriterOp::SetGeoFilter(f.clone())).await;
                if r["ok"] == true {
                    decoder.set_geo_filter(f);
                }
                r
            }
            Err(e) => failed(e),
        },
    }
}

/// Serves the queue until `stop` changes.
pub async fn run(
    queue: Queue,
    pipeline: Pipeline,
    writer: mpsc::Sender<WriterMsg>,
    decoder: Arc<crate::decode::Decoder>,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        ticks += 1;
        let q = queue.clone();
        let housekeeping = ticks % 240 == 1;
        let listed = tokio::task::spawn_blocking(move || {
            if housekeeping {
                let _ = q.expire_results(RESULT_MAX_AGE);
            }
            q.pending()
        })
        .await;
        let pending = match listed {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                stats.incr("admin.queue_errors");
                if let Some(n) = stats.should_log("admin.queue") {
                    tracing::warn!("cannot read the admin queue: {e}; {n} more since");
                }
                continue;
            }
            Err(_) => continue,
        };
        for (id, request) in pending {
            let mut result = handle(&request, &pipeline, &writer, &decoder).await;
            result["requestedAt"] = request.get("requested_at").cloned().unwrap_or(Value::Null);
            result["completedAt"] = handoff::format_rfc3339_ms(now_ms().max(0) as u64).into();
            let ok = result["ok"] == true;
            stats.incr(if ok { "admin.done" } else { "admin.failed" });
            tracing::info!(request = %id, kind = %request["kind"], ok, "admin request");
            let q = queue.clone();
            let completed = tokio::task::spawn_blocking(move || q.complete(&id, &result)).await;
            if !matches!(completed, Ok(Ok(()))) {
                stats.incr("admin.queue_errors");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(lat: f64) -> Option<GeoFilter> {
        GeoFilter::from_json(&json!({"polygon": [[lat, 1.0], [lat + 1.0, 1.0], [lat, 2.0]]}))
            .unwrap()
    }

    fn stored(w: &Writer) -> Option<GeoFilter> {
        let text = w.setting(GEO_FILTER).unwrap()?;
        GeoFilter::from_json(&serde_json::from_str(&text).unwrap()).unwrap()
    }

    #[test]
    fn the_config_file_wins_only_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(&dir.path().join("m.db"), 0).unwrap();
        assert_eq!(
            apply(&mut w, WriterOp::SeedGeoFilter(square(1.0)))["changed"],
            true
        );
        assert_eq!(stored(&w), square(1.0));
        // Changed through the API, then a restart with the same file: the API's stays.
        assert_eq!(
            apply(&mut w, WriterOp::SetGeoFilter(square(5.0)))["ok"],
            true
        );
        assert_eq!(
            apply(&mut w, WriterOp::SeedGeoFilter(square(1.0)))["changed"],
            false
        );
        assert_eq!(stored(&w), square(5.0));
        // The operator edits the file: it wins.
        assert_eq!(
            apply(&mut w, WriterOp::SeedGeoFilter(square(9.0)))["changed"],
            true
        );
        assert_eq!(stored(&w), square(9.0));
        // Removing it from the file clears it.
        assert_eq!(
            apply(&mut w, WriterOp::SeedGeoFilter(None))["changed"],
            true
        );
        assert_eq!(stored(&w), None);
    }

    #[test]
    fn pruning_deletes_only_the_named_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(&dir.path().join("m.db"), 0).unwrap();
        for (key, table) in [("aa", "nodes"), ("bb", "nodes"), ("cc", "inactive_nodes")] {
            w.conn()
                .execute(
                    &format!(
                        "INSERT INTO {table} (public_key, role, first_seen, last_seen) VALUES (?1, 'repeater', 1, 1)"
                    ),
                    [key.repeat(32)],
                )
                .unwrap();
        }
        let r = apply(
            &mut w,
            WriterOp::PruneNodes(vec!["aa".repeat(32), "cc".repeat(32), "dd".repeat(32)]),
        );
        assert_eq!(r, json!({"ok": true, "deleted": 2}));
        let left: i64 = w
            .conn()
            .query_row("SELECT count(*) FROM nodes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1);
    }
}
