//! The atomic on-disk handoff between meshlens' read-only **reader** process and its single
//! **writer** process (spec §7.4). The two never talk through the database: the reader, which
//! opens SQLite read-only, publishes files under `<data-dir>`, and the writer picks them up.
//!
//! Two patterns live here:
//!
//! - **The capability snapshot** ([`Publisher`], [`read_snapshot`]). The reader computes
//!   multi-byte path-hash capability and publishes it as
//!   `<data-dir>/mbcap-snapshot/snapshot.json`:
//!
//!   ```json
//!   {"version":1,"generation":N,"writtenAt":"2026-11-25T18:00:00.123Z",
//!    "entries":[{"public_key":"…","status":"confirmed","evidence":"advert",
//!                "max_hash_size":2,"upgraded_at":"…"}]}
//!   ```
//!
//!   Only `confirmed` and `suspected` entries are written. Every publish goes to a unique
//!   temporary file in the same directory, is fsynced, renamed over `snapshot.json`, and the
//!   directory is fsynced: a reader of the file sees the old snapshot or the new one, whole,
//!   never a mix, whatever happens to the publishing process. Concurrent publishes coalesce
//!   (single-flight; the newest wins). The writer reads the file with [`read_snapshot`], which
//!   turns every problem with the file into a typed [`ReadError`] and never panics. Reading
//!   is more lenient than writing, so that the seed's (CoreScope's) files are accepted too: an
//!   entry needs only `public_key` and `status` (the rest may be absent or `null`), and an
//!   entry that is not well-formed is skipped and counted ([`Snapshot::skipped`]) instead of
//!   failing the whole file.
//!
//! - **One-shot request queues** ([`Queue`]): the reader drops a request file
//!   (`request-<id>.json`), the writer lists [`Queue::pending`] requests, acts on them and
//!   [`Queue::complete`]s each with a result file (`result-<id>.json`), which the reader polls
//!   with [`Queue::status`]. Used for admin actions such as pruning nodes.
//!
//! - **The neighbor-graph snapshot** ([`graph`]): the reader's graph of which nodes are heard
//!   next to which, `<data-dir>/neighbor-graph/graph.json`, persisted by the writer so that a
//!   restarted reader serves it at once.
//!
//! Generation numbers increase across reader restarts: a [`Publisher`] starts from
//! `max(generation in the existing snapshot file + 1, current Unix time in ms)`, so the writer
//! can recognise a snapshot it has already applied and never mistakes a new one for an old one.
//!
//! ```
//! use handoff::{Entry, Outcome, Publisher, Status, read_snapshot, snapshot_path};
//! let dir = tempfile::tempdir().unwrap();
//! let publisher = Publisher::new(dir.path());
//! let entry = Entry {
//!     public_key: "ab".repeat(32),
//!     status: Status::Confirmed,
//!     evidence: "advert".into(),
//!     max_hash_size: 2,
//!     upgraded_at: None,
//! };
//! let Outcome::Written { generation, entries } = publisher.publish(vec![entry]).unwrap() else {
//!     unreachable!("nobody else is publishing")
//! };
//! assert_eq!(entries, 1);
//! let snapshot = read_snapshot(&snapshot_path(dir.path())).unwrap().unwrap();
//! assert_eq!(snapshot.generation, generation);
//! ```
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod admin;
mod error;
mod fsutil;
pub mod graph;
mod publish;
mod queue;
mod snapshot;
mod time;

pub use error::Error;
pub use graph::{GraphEdge, GraphPublisher, GraphSnapshot, graph_path, read_graph};
pub use publish::{Outcome, Publisher};
pub use queue::{MAX_PENDING_PER_CALL, MAX_QUEUE_FILE_BYTES, Queue, RequestId, RequestStatus};
pub use snapshot::{
    Entry, Evidence, MAX_SKIP_REASONS, MAX_SNAPSHOT_BYTES, ReadEntry, ReadError, SNAPSHOT_DIR,
    SNAPSHOT_FILE, SNAPSHOT_VERSION, SkippedEntries, Snapshot, Status, read_snapshot,
    snapshot_path,
};
pub use time::format_rfc3339_ms;

/// Temporary files (`.tmp*`) older than this in a handoff directory are leftovers of a
/// process that died mid-write; they are removed when noticed.
pub const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);
