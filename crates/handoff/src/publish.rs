//! The reader's side of the snapshot: [`Publisher`], single-flight atomic publishing.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::fsutil::{Replace, ensure_dir, sweep_stale_temp_files, write_atomic};
use crate::snapshot::{
    Entry, MAX_SNAPSHOT_BYTES, SNAPSHOT_DIR, SNAPSHOT_FILE, SNAPSHOT_VERSION, SnapshotFile, Status,
    read_snapshot,
};
use crate::time::{format_rfc3339_ms, now_ms};
use crate::{Error, STALE_TEMP_AGE};

/// How many directory entries the one-time sweep of stale temporary files looks at.
const SWEEP_MAX_ENTRIES: usize = 10_000;

/// What [`Publisher::publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This call wrote the snapshot file. When other calls coalesced into this one, this is
    /// the last snapshot it wrote (theirs, the newest).
    Written {
        /// The generation now in the file.
        generation: u64,
        /// How many entries the file holds.
        entries: usize,
    },
    /// Another thread was publishing; it will write these entries (or newer ones) next.
    Coalesced,
}

/// Publishes capability snapshots to `<data-dir>/mbcap-snapshot/snapshot.json`. Make one per
/// reader process and share it (`&Publisher` is `Send + Sync`).
///
/// **Generations.** The first publish reads the existing snapshot, if any, and starts from
/// `max(its generation + 1, current Unix time in milliseconds)`; each later publish adds 1.
/// Generations therefore increase across reader restarts even when the snapshot file was
/// removed in between, as long as the clock does not go back by more than the time between
/// restarts; an unreadable existing file is ignored (the clock alone decides). Two
/// `Publisher`s on the same directory do not coordinate their generations; the file is still
/// always whole.
///
/// **Single-flight.** At most one thread of a `Publisher` writes at a time. A call made while
/// another is writing parks its entries as the pending snapshot (replacing any older pending
/// one) and returns [`Outcome::Coalesced`] at once; the writing thread writes the pending
/// snapshot after its own. So the last call always wins and no call waits on the disk for
/// another's snapshot longer than one write.
#[derive(Debug)]
pub struct Publisher {
    dir: PathBuf,
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// A thread is in the write loop.
    publishing: bool,
    /// The newest entries that arrived while publishing.
    pending: Option<Vec<Entry>>,
    /// The last generation handed out; `None` before the first publish.
    last_generation: Option<u64>,
    /// Stale temporary files were swept (once per `Publisher`).
    swept: bool,
}

/// Clears `publishing` if the write loop unwinds, so later publishes are not stuck behind a
/// thread that no longer exists.
struct PublishingGuard<'a> {
    publisher: &'a Publisher,
    armed: bool,
}

impl Drop for PublishingGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.publisher.lock().publishing = false;
        }
    }
}

impl Publisher {
    /// A publisher for `<data_dir>/mbcap-snapshot/snapshot.json`. Does not touch the disk.
    pub fn new(data_dir: &Path) -> Publisher {
        let dir = data_dir.join(SNAPSHOT_DIR);
        let path = dir.join(SNAPSHOT_FILE);
        Publisher {
            dir,
            path,
            state: Mutex::new(State::default()),
        }
    }

    /// The snapshot file this publisher writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Publishes `entries` with the next generation and the current time. Only confirmed and
    /// suspected entries are written; unknown ones are dropped. Creates the directory if
    /// missing.
    ///
    /// Returns [`Outcome::Coalesced`] at once if another thread is publishing (see the type's
    /// docs). Otherwise writes, then writes whatever was parked meanwhile, and returns the
    /// result of its **last** write: `Ok(Written)` means the file now holds the newest
    /// snapshot handed to this publisher; an error means it may not (the caller logs it;
    /// the previous file stays intact and the next publish retries).
    pub fn publish(&self, mut entries: Vec<Entry>) -> Result<Outcome, Error> {
        entries.retain(|e| matches!(e.status, Status::Confirmed | Status::Suspected));
        {
            let mut state = self.lock();
            if state.publishing {
                state.pending = Some(entries);
                return Ok(Outcome::Coalesced);
            }
            state.publishing = true;
        }
        let mut guard = PublishingGuard {
            publisher: self,
            armed: true,
        };
        let mut current = entries;
        loop {
            let result = self.write_one(current);
            let mut state = self.lock();
            match state.pending.take() {
                Some(next) => current = next,
                None => {
                    state.publishing = false;
                    guard.armed = false;
                    return result;
                }
            }
        }
    }

    /// The last generation handed out (the one in the file after a successful publish); 0
    /// before the first publish.
    pub fn generation(&self) -> u64 {
        self.lock().last_generation.unwrap_or(0)
    }

    /// Writes one snapshot. Only ever runs on the thread holding `publishing`.
    fn write_one(&self, entries: Vec<Entry>) -> Result<Outcome, Error> {
        ensure_dir(&self.dir)?;
        let (start, sweep) = {
            let state = self.lock();
            (state.last_generation, !state.swept)
        };
        if sweep {
            sweep_stale_temp_files(&self.dir, STALE_TEMP_AGE, SWEEP_MAX_ENTRIES);
        }
        let now = now_ms();
        let generation = match start {
            Some(last) => last.saturating_add(1),
            None => {
                let after_file = match read_snapshot(&self.path) {
                    Ok(Some(s)) => s.generation.saturating_add(1),
                    Ok(None) | Err(_) => 0,
                };
                after_file.max(now)
            }
        };
        {
            let mut state = self.lock();
            state.last_generation = Some(generation);
            state.swept = true;
        }
        let count = entries.len();
        let snapshot = SnapshotFile {
            version: SNAPSHOT_VERSION,
            generation,
            written_at: format_rfc3339_ms(now),
            entries: &entries,
        };
        let mut bytes = serde_json::to_vec(&snapshot)?;
        bytes.push(b'\n');
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if size > MAX_SNAPSHOT_BYTES {
            return Err(Error::TooLarge {
                path: self.path.clone(),
                size,
                limit: MAX_SNAPSHOT_BYTES,
            });
        }
        write_atomic(&self.dir, &self.path, &bytes, Replace::Overwrite)?;
        Ok(Outcome::Written {
            generation,
            entries: count,
        })
    }

    /// The state, even if a thread panicked while holding it (it stays consistent: every
    /// critical section is a few assignments).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
