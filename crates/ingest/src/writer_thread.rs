//! The writer thread: the one owner of the database connection. It takes items from a bounded
//! channel and commits them in batches ("group commit": whatever arrived while the previous
//! commit ran goes into the next one, up to [`MAX_BATCH`]), so at low rates a packet is
//! committed at once and under a burst one fsync covers thousands of packets.
//!
//! It reports what it is doing in [`Stats`] ([`crate::stats::WriterState`]): the last commit,
//! the last failed one and its error, lost batches, and what it is busy with since when, so
//! that health can say "commits are failing" or "the writer is stuck" instead of counting on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use store::{Item, Writer};
use tokio::sync::mpsc;

use crate::stats::Stats;

/// Most items in one transaction.
pub const MAX_BATCH: usize = 4096;

/// Capacity of the channel into the writer. When it is full, sources wait (and MQTT flow
/// control pushes back), rather than dropping packets or growing memory.
pub const QUEUE_CAPACITY: usize = 16_384;

/// Transmissions deleted per retention step, so retention never holds the writer for long.
const RETENTION_CHUNK: usize = 2_000;

/// A message to the writer thread.
// Items are by far the common message; boxing them would cost an allocation per packet.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum WriterMsg {
    /// Store this.
    Item(Item),
    /// Store this, and count it on the producer's [`CommitCounter`] once it is committed: the
    /// embedded broker acknowledges a QoS 1 publish only then.
    Acked(Item, Arc<CommitCounter>),
    /// Store this for a source (its name keys the counters, `budget` its new-observer rate:
    /// the source itself, or one client of the embedded broker), counted on `ack` if any.
    From {
        /// What to store.
        item: Item,
        /// Counted once committed.
        ack: Option<Arc<CommitCounter>>,
        /// The configured source's name.
        source: Arc<str>,
        /// Whose new-observer budget the item spends.
        budget: Arc<str>,
    },
    /// Run a maintenance step (retention, node deactivation).
    Maintain,
    /// Reply once everything sent before this is committed.
    Flush(std::sync::mpsc::Sender<()>),
    /// Apply the reader's capability snapshot at this path.
    ApplySnapshot(std::path::PathBuf),
    /// Carry out an operator's request (after committing what came before it) and reply.
    Admin(
        crate::admin::WriterOp,
        tokio::sync::oneshot::Sender<serde_json::Value>,
    ),
}

/// How many of one producer's [`WriterMsg::Acked`] items the writer has finished with, in the
/// order they were sent (the channel is FIFO, so "the first n" is exact). A producer that
/// numbers its items can wait for its own.
#[derive(Debug, Default)]
pub struct CommitCounter {
    finished: AtomicU64,
    failed: AtomicBool,
    notify: tokio::sync::Notify,
}

impl CommitCounter {
    /// Items finished so far (committed, or given up on after failed commits).
    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }

    /// Whether any item of this producer was lost to failed commits.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Waits until something changes (an item finished, or [`CommitCounter::wake`]).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// Wakes a waiter of [`CommitCounter::changed`] without finishing an item.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    fn finish(&self, lost: bool) {
        if lost {
            self.failed.store(true, Ordering::Release);
        }
        self.finished.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_one();
    }
}

/// Observers deleted per maintenance step.
const OBSERVER_CHUNK: usize = 2_000;

/// Retention settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maintenance {
    /// Packets last heard longer ago are deleted; `None` keeps everything.
    pub packet_retention: Option<Duration>,
    /// Nodes silent for longer move to `inactive_nodes`.
    pub node_silence: Duration,
    /// Observers not heard for longer are deleted once none of their observations remain
    /// (CoreScope's `observerDays`, default 14 days); `None` keeps them forever.
    pub observer_retention: Option<Duration>,
    /// Observer history (`observer_metrics` buckets) older than this is deleted (CoreScope's
    /// `retention.metricsDays`, default 30 days); `None` keeps it forever.
    pub metrics_retention: Option<Duration>,
    /// At most this many new observer keys a minute (all sources together, after a burst of
    /// ten minutes' worth); the packets and statuses of more are refused and counted
    /// (`refused.observer_rate`). `None`: no limit.
    pub new_observers_per_minute: Option<u32>,
}

impl Default for Maintenance {
    fn default() -> Self {
        Maintenance {
            packet_retention: Some(Duration::from_secs(30 * 86_400)),
            node_silence: Duration::from_secs(7 * 86_400),
            observer_retention: Some(Duration::from_secs(14 * 86_400)),
            metrics_retention: Some(Duration::from_secs(30 * 86_400)),
            new_observers_per_minute: Some(100),
        }
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs the writer until every sender is dropped, then commits what is left and returns.
pub fn run(
    mut writer: Writer,
    mut rx: mpsc::Receiver<WriterMsg>,
    stats: Arc<Stats>,
    maint: Maintenance,
) {
    let mut batch: Vec<Item> = Vec::with_capacity(MAX_BATCH);
    // Each item's source and budget (none for items sent without: admin, tests).
    let mut origins: Vec<Option<(Arc<str>, Arc<str>)>> = Vec::with_capacity(MAX_BATCH);
    let mut acks: Vec<Arc<CommitCounter>> = Vec::new();
    let mut flushes = Vec::new();
    let mut maintain = false;
    let mut snapshot: Option<std::path::PathBuf> = None;
    let mut admin = Vec::new();
    let mut last_generation = 0u64;
    let mut last_graph = 0u64;
    writer.set_new_observer_limit(maint.new_observers_per_minute);
    stats.writer(|w| w.queue_capacity = rx.max_capacity() as u64);
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Item(item) => {
                    batch.push(item);
                    origins.push(None);
                }
                WriterMsg::Acked(item, ack) => {
                    batch.push(item);
                    origins.push(None);
                    acks.push(ack);
                }
                WriterMsg::From {
                    item,
                    ack,
                    source,
                    budget,
                } => {
                    batch.push(item);
                    origins.push(Some((source, budget)));
                    acks.extend(ack);
                }
                WriterMsg::Maintain => maintain = true,
                WriterMsg::Flush(reply) => flushes.push(reply),
                WriterMsg::ApplySnapshot(path) => snapshot = Some(path),
                WriterMsg::Admin(op, reply) => admin.push((op, reply)),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let queued = rx.len() as u64;
        stats.writer(|w| w.queue_len = queued);
        let committed = busy(&stats, "commit", || {
            commit(&mut writer, &mut batch, &mut origins, &stats)
        });
        for ack in acks.drain(..) {
            ack.finish(!committed);
        }
        if let Some(path) = snapshot.take() {
            busy(&stats, "snapshot", || {
                crate::mbcap::apply(&mut writer, &path, &mut last_generation, &stats)
            });
            // The neighbor graph travels beside the capability snapshot:
            // `<data-dir>/mbcap-snapshot/snapshot.json` → `<data-dir>/neighbor-graph/`.
            if let Some(data_dir) = path.parent().and_then(|p| p.parent()) {
                busy(&stats, "graph", || {
                    crate::graph::apply(&mut writer, data_dir, &mut last_graph, &stats)
                });
            }
        }
        for (op, reply) in admin.drain(..) {
            let result = busy(&stats, "admin", || crate::admin::apply(&mut writer, op));
            let _ = reply.send(result);
        }
        for reply in flushes.drain(..) {
            let _ = reply.send(());
        }
        if maintain {
            maintain = false;
            busy(&stats, "maintenance", || {
                run_maintenance(&mut writer, &stats, maint)
            });
        }
    }
    let committed = commit(&mut writer, &mut batch, &mut origins, &stats);
    for ack in acks.drain(..) {
        ack.finish(!committed);
    }
    // At shutdown nothing waits on the writer: give readers the whole busy timeout.
    match writer.checkpoint_waiting(std::time::Duration::from_secs(5)) {
        Ok(store::Checkpoint::Complete) => {}
        Ok(store::Checkpoint::Deferred) => {
            tracing::info!("final WAL checkpoint deferred: a reader still holds an old snapshot")
        }
        Err(e) => tracing::warn!("final WAL checkpoint failed: {e}"),
    }
}

/// Runs `f`, telling the health output that the writer is busy with `what` meanwhile.
fn busy<T>(stats: &Stats, what: &'static str, f: impl FnOnce() -> T) -> T {
    stats.writer(|w| {
        w.busy_since = Some(now_ms());
        w.busy_with = Some(what);
    });
    let out = f();
    stats.writer(|w| {
        w.busy_since = None;
        w.busy_with = None;
    });
    out
}

/// Commits `batch`, retrying a failed commit a few times (a busy or briefly full disk) before
/// giving up on it with a counter and a log line. Returns false when the batch was lost.
fn commit(
    writer: &mut Writer,
    batch: &mut Vec<Item>,
    origins: &mut Vec<Option<(Arc<str>, Arc<str>)>>,
    stats: &Stats,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let budgets: Vec<&str> = origins
        .iter()
        .map(|o| o.as_ref().map_or("", |(_, b)| &**b))
        .collect();
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=5 {
        match writer.write_batch_from(batch, &budgets) {
            Ok(out) => {
                stats.incr("writer.batches");
                stats.add("writer.items", batch.len() as u64);
                stats.add("stored.new_transmissions", out.new_transmissions);
                stats.add("stored.known_transmissions", out.known_transmissions);
                stats.add("stored.new_observations", out.new_observations);
                stats.add("stored.duplicate_observations", out.duplicate_observations);
                stats.add("stored.node_updates", out.node_updates);
                stats.add("stored.statuses", out.statuses);
                stats.add("stored.rejected", out.rejected);
                stats.add("refused.observer_rate", out.observer_rate_refused);
                if out.observer_rate_refused > 0
                    && let Some(n) = stats.should_log("refused.observer_rate")
                {
                    tracing::warn!(
                        "refused {} items of new observers beyond the new-observer rate; {n} more reports since the last",
                        out.observer_rate_refused
                    );
                }
                // Refusals by source: the budget names the source of its items.
                let refusals = writer.observer_refusals();
                if !refusals.is_empty() {
                    let source_of: std::collections::HashMap<&str, &str> = origins
                        .iter()
                        .flatten()
                        .map(|(s, b)| (&**b, &**s))
                        .collect();
                    for (budget, n) in refusals {
                        if let Some(source) = source_of.get(budget.as_str()) {
                            stats.source(source, |s| s.observer_rate_refused += n);
                        }
                    }
                }
                stats.writer(|w| w.last_commit_at = Some(now_ms()));
                drop(budgets);
                batch.clear();
                origins.clear();
                return true;
            }
            Err(e) => {
                stats.incr("writer.commit_errors");
                stats.commit_failed(now_ms(), &e.to_string());
                tracing::error!(
                    "commit of {} items failed (attempt {attempt}/5): {e}",
                    batch.len()
                );
                std::thread::sleep(delay);
                delay *= 2;
            }
        }
    }
    stats.add("writer.items_lost", batch.len() as u64);
    stats.writer(|w| w.last_loss_at = Some(now_ms()));
    tracing::error!(
        "dropping a batch of {} items after 5 failed commits",
        batch.len()
    );
    batch.clear();
    origins.clear();
    false
}

fn run_maintenance(writer: &mut Writer, stats: &Stats, maint: Maintenance) {
    let now = now_ms();
    if let Some(keep) = maint.packet_retention {
        let cutoff = now - keep.as_millis() as i64;
        match writer.expire_packets(cutoff, RETENTION_CHUNK) {
            Ok(n) if n > 0 => {
                stats.add("retention.transmissions_deleted", n as u64);
                if let Err(e) = writer.incremental_vacuum(512) {
                    tracing::warn!("incremental vacuum failed: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => {
                stats.incr("writer.maintenance_errors");
                tracing::warn!("retention step failed: {e}");
            }
        }
    }
    let cutoff = now - maint.node_silence.as_millis() as i64;
    match writer.deactivate_nodes(cutoff) {
        Ok(n) => stats.add("retention.nodes_deactivated", n as u64),
        Err(e) => {
            stats.incr("writer.maintenance_errors");
            tracing::warn!("node deactivation failed: {e}");
        }
    }
    // After packet retention, so that observers whose last observations just went are
    // deleted in the same step.
    if let Some(keep) = maint.observer_retention {
        let cutoff = now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        match writer.expire_observers(cutoff, OBSERVER_CHUNK) {
            Ok(n) => stats.add("retention.observers_deleted", n as u64),
            Err(e) => {
                stats.incr("writer.maintenance_errors");
                tracing::warn!("observer retention failed: {e}");
            }
        }
    }
    if let Some(keep) = maint.metrics_retention {
        let cutoff = now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        match writer.expire_observer_metrics(cutoff, RETENTION_CHUNK) {
            Ok(n) => stats.add("retention.observer_metrics_deleted", n as u64),
            Err(e) => {
                stats.incr("writer.maintenance_errors");
                tracing::warn!("observer metrics retention failed: {e}");
            }
        }
    }
    // Readers that never pause can starve SQLite's automatic checkpoints, and the WAL then
    // grows without bound; a TRUNCATE checkpoint waits briefly for the current (millisecond)
    // reads and resets it. A long scan (the capability cycle) defers it to the next round
    // rather than stopping the writer.
    match writer.checkpoint() {
        Ok(store::Checkpoint::Complete) => stats.incr("writer.checkpoints"),
        Ok(store::Checkpoint::Deferred) => stats.incr("writer.checkpoints_deferred"),
        Err(e) => {
            stats.incr("writer.maintenance_errors");
            tracing::warn!("WAL checkpoint failed: {e}");
        }
    }
}
