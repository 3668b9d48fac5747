//! The writer thread: the one owner of the database connection. It takes items from a bounded
//! channel and commits them in batches ("group commit": whatever arrived while the previous
//! commit ran goes into the next one, up to [`MAX_BATCH`]), so at low rates a packet is
//! committed at once and under a burst one fsync covers thousands of packets.

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
    /// Run a maintenance step (retention, node deactivation).
    Maintain,
    /// Reply once everything sent before this is committed.
    Flush(std::sync::mpsc::Sender<()>),
    /// Apply the reader's capability snapshot at this path.
    ApplySnapshot(std::path::PathBuf),
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

/// Retention settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maintenance {
    /// Packets last heard longer ago are deleted; `None` keeps everything.
    pub packet_retention: Option<Duration>,
    /// Nodes silent for longer move to `inactive_nodes`.
    pub node_silence: Duration,
}

impl Default for Maintenance {
    fn default() -> Self {
        Maintenance {
            packet_retention: Some(Duration::from_secs(30 * 86_400)),
            node_silence: Duration::from_secs(7 * 86_400),
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
    let mut acks: Vec<Arc<CommitCounter>> = Vec::new();
    let mut flushes = Vec::new();
    let mut maintain = false;
    let mut snapshot: Option<std::path::PathBuf> = None;
    let mut last_generation = 0u64;
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Item(item) => batch.push(item),
                WriterMsg::Acked(item, ack) => {
                    batch.push(item);
                    acks.push(ack);
                }
                WriterMsg::Maintain => maintain = true,
                WriterMsg::Flush(reply) => flushes.push(reply),
                WriterMsg::ApplySnapshot(path) => snapshot = Some(path),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let committed = commit(&mut writer, &mut batch, &stats);
        for ack in acks.drain(..) {
            ack.finish(!committed);
        }
        if let Some(path) = snapshot.take() {
            crate::mbcap::apply(&mut writer, &path, &mut last_generation, &stats);
        }
        for reply in flushes.drain(..) {
            let _ = reply.send(());
        }
        if maintain {
            maintain = false;
            run_maintenance(&mut writer, &stats, maint);
        }
    }
    let committed = commit(&mut writer, &mut batch, &stats);
    for ack in acks.drain(..) {
        ack.finish(!committed);
    }
    if let Err(e) = writer.checkpoint() {
        tracing::warn!("final WAL checkpoint failed: {e}");
    }
}

/// Commits `batch`, retrying a failed commit a few times (a busy or briefly full disk) before
/// giving up on it with a counter and a log line. Returns false when the batch was lost.
fn commit(writer: &mut Writer, batch: &mut Vec<Item>, stats: &Stats) -> bool {
    if batch.is_empty() {
        return true;
    }
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=5 {
        match writer.write_batch(batch) {
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
                batch.clear();
                return true;
            }
            Err(e) => {
                stats.incr("writer.commit_errors");
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
    tracing::error!(
        "dropping a batch of {} items after 5 failed commits",
        batch.len()
    );
    batch.clear();
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
            Err(e) => tracing::warn!("retention step failed: {e}"),
        }
    }
    let cutoff = now - maint.node_silence.as_millis() as i64;
    match writer.deactivate_nodes(cutoff) {
        Ok(n) => stats.add("retention.nodes_deactivated", n as u64),
        Err(e) => tracing::warn!("node deactivation failed: {e}"),
    }
    // Readers that never pause can starve SQLite's automatic checkpoints, and the WAL then
    // grows without bound; a TRUNCATE checkpoint waits for the current (millisecond) reads and
    // resets it.
    match writer.checkpoint() {
        Ok(()) => stats.incr("writer.checkpoints"),
        Err(e) => tracing::warn!("WAL checkpoint failed: {e}"),
    }
}
