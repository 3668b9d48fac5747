//! One-shot request/result queues: the reader asks, the writer does, the reader reads the
//! result. Each queue is a directory `<data-dir>/<name>/` of `request-<id>.json` and
//! `result-<id>.json` files, each written atomically.
//!
//! Protocol: the reader [`Queue::submit`]s a request and polls [`Queue::status`]; the writer
//! lists [`Queue::pending`] requests, acts on each, then [`Queue::complete`]s it, which writes
//! the result before removing the request: a writer that crashes in between leaves both, and
//! `pending` then drops the request instead of returning it again. Result files stay until
//! [`Queue::forget`] removes them.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::error::one_line;
use crate::fsutil::{
    Bounded, Replace, ensure_dir, is_temp_name, read_bounded, remove_if_stale, write_atomic,
};
use crate::{Error, STALE_TEMP_AGE};

/// The largest request or result file a queue writes or reads.
pub const MAX_QUEUE_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// The most requests one [`Queue::pending`] call returns.
pub const MAX_PENDING_PER_CALL: usize = 1000;

const REQUEST_PREFIX: &str = "request-";
const RESULT_PREFIX: &str = "result-";
const SUFFIX: &str = ".json";
/// How many fresh ids [`Queue::submit`] tries before giving up on collisions.
const SUBMIT_ATTEMPTS: usize = 8;

/// A request's id: 1 to 64 hex digits, so it is always safe inside a file name.
/// [`Queue::submit`] makes 16 lowercase ones; ids compare (and name files) exactly as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(String);

impl RequestId {
    /// Accepts 1–64 ASCII hex digits (either case); anything else (`..`, `/`, empty, too
    /// long) is `None`. This is the path-traversal guard for ids coming from outside.
    pub fn parse(s: &str) -> Option<RequestId> {
        let ok = (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| RequestId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A fresh random id: 16 lowercase hex digits.
    fn random() -> RequestId {
        RequestId(format!("{:016x}", random_u64()))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a request stands, from [`Queue::status`].
#[derive(Debug, Clone, PartialEq)]
pub enum RequestStatus {
    /// Submitted, not yet completed.
    Pending,
    /// Completed with this result.
    Done(serde_json::Value),
    /// No such request (never submitted, or forgotten).
    Unknown,
}

/// A one-shot request/result queue in `<data_dir>/<name>/`.
#[derive(Debug, Clone)]
pub struct Queue {
    dir: PathBuf,
}

impl Queue {
    /// The queue `<data_dir>/<name>/` (e.g. `name = "prune-requests"`). `name` must be a single
    /// path component chosen by the program, not by a user. Does not touch the disk.
    pub fn new(data_dir: &Path, name: &str) -> Queue {
        Queue {
            dir: data_dir.join(name),
        }
    }

    /// The queue's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `request` atomically as `request-<id>.json` under a fresh random id, creating
    /// the directory if missing, and returns the id.
    pub fn submit(&self, request: &serde_json::Value) -> Result<RequestId, Error> {
        ensure_dir(&self.dir)?;
        let bytes = serde_json::to_vec(request)?;
        let mut last_error = None;
        for _ in 0..SUBMIT_ATTEMPTS {
            let id = RequestId::random();
            let target = self.request_path(&id);
            self.check_size(&target, bytes.len())?;
            if fs::symlink_metadata(self.result_path(&id)).is_ok() {
                continue;
            }
            match write_atomic(&self.dir, &target, &bytes, Replace::NoClobber) {
                Ok(()) => return Ok(id),
                Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                    last_error = Some(source);
                }
                Err(e) => return Err(e),
            }
        }
        let source = last_error.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::AlreadyExists, "every fresh id was taken")
        });
        Err(Error::io("choosing a request id in", &self.dir, source))
    }

    /// The pending requests, in lexicographic order of id, at most
    /// [`MAX_PENDING_PER_CALL`] of them (the first ones in that order). A missing directory
    /// has none.
    ///
    /// Request files that are malformed JSON, too large, not regular files or unreadable for
    /// lack of permission are removed and skipped; a request that already has a result (the
    /// writer crashed inside [`Queue::complete`]) is removed and skipped; one that fails to
    /// read for another (possibly transient) reason is skipped and left for the next call.
    /// Temporary files older than [`STALE_TEMP_AGE`] are removed.
    pub fn pending(&self) -> Result<Vec<(RequestId, serde_json::Value)>, Error> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("listing", &self.dir, e)),
        };
        let now = SystemTime::now();
        let mut ids = BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", &self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if is_temp_name(name) {
                remove_if_stale(&entry.path(), now, STALE_TEMP_AGE);
                continue;
            }
            let Some(id) = name
                .strip_prefix(REQUEST_PREFIX)
                .and_then(|rest| rest.strip_suffix(SUFFIX))
                .and_then(RequestId::parse)
            else {
                continue;
            };
            ids.insert(id);
            if ids.len() > MAX_PENDING_PER_CALL {
                ids.pop_last();
            }
        }

        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let path = self.request_path(&id);
            if fs::symlink_metadata(self.result_path(&id)).is_ok() {
                remove_ignoring_missing(&path);
                continue;
            }
            match read_bounded(&path, MAX_QUEUE_FILE_BYTES) {
                Ok(Bounded::Missing) => {}
                Ok(Bounded::TooLarge(_)) => remove_ignoring_missing(&path),
                Ok(Bounded::Bytes(bytes)) => match serde_json::from_slice(&bytes) {
                    Ok(value) => out.push((id, value)),
                    Err(_) => remove_ignoring_missing(&path),
                },
                Err(e) if is_permanent(&e) => remove_ignoring_missing(&path),
                Err(_) => {}
            }
        }
        Ok(out)
    }

    /// Records `result` for request `id`: writes `result-<id>.json` atomically (replacing an
    /// earlier result), then removes `request-<id>.json` (already gone is fine).
    pub fn complete(&self, id: &RequestId, result: &serde_json::Value) -> Result<(), Error> {
        ensure_dir(&self.dir)?;
        let bytes = serde_json::to_vec(result)?;
        let target = self.result_path(id);
        self.check_size(&target, bytes.len())?;
        write_atomic(&self.dir, &target, &bytes, Replace::Overwrite)?;
        let request = self.request_path(id);
        match fs::remove_file(&request) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing", &request, e)),
        }
    }

    /// Where request `id` stands: [`RequestStatus::Done`] once a result exists, `Pending`
    /// while only the request does, `Unknown` otherwise. A result file that is not valid
    /// JSON is an [`Error::Malformed`].
    pub fn status(&self, id: &RequestId) -> Result<RequestStatus, Error> {
        if let Some(value) = self.read_result(id)? {
            return Ok(RequestStatus::Done(value));
        }
        let request = self.request_path(id);
        match fs::symlink_metadata(&request) {
            Ok(_) => return Ok(RequestStatus::Pending),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("checking", &request, e)),
        }
        // `complete` writes the result before removing the request: if the request vanished
        // since the first look, the result is there now.
        Ok(match self.read_result(id)? {
            Some(value) => RequestStatus::Done(value),
            None => RequestStatus::Unknown,
        })
    }

    /// Removes request `id`'s request and result files, if any.
    pub fn forget(&self, id: &RequestId) -> Result<(), Error> {
        for path in [self.request_path(id), self.result_path(id)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing", &path, e)),
            }
        }
        Ok(())
    }

    /// How many requests are waiting, counting at most `cap` (a reader that bounds the
    /// queue need not list a flooded directory to the end). A missing directory has none.
    pub fn pending_len(&self, cap: usize) -> Result<usize, Error> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io("listing", &self.dir, e)),
        };
        let mut n = 0;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", &self.dir, e))?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(REQUEST_PREFIX) && name.ends_with(SUFFIX))
            {
                n += 1;
                if n >= cap {
                    break;
                }
            }
        }
        Ok(n)
    }

    /// Removes result files last modified more than `max_age` ago, so that results nobody
    /// asked for do not pile up. Returns how many went.
    pub fn expire_results(&self, max_age: std::time::Duration) -> Result<usize, Error> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io("listing", &self.dir, e)),
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", &self.dir, e))?;
            let is_result = entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(RESULT_PREFIX) && name.ends_with(SUFFIX));
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > max_age);
            if is_result && old && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn read_result(&self, id: &RequestId) -> Result<Option<serde_json::Value>, Error> {
        let path = self.result_path(id);
        match read_bounded(&path, MAX_QUEUE_FILE_BYTES) {
            Ok(Bounded::Missing) => Ok(None),
            Ok(Bounded::TooLarge(size)) => Err(Error::TooLarge {
                path,
                size,
                limit: MAX_QUEUE_FILE_BYTES,
            }),
            Ok(Bounded::Bytes(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(value) => Ok(Some(value)),
                Err(e) => Err(Error::Malformed {
                    path,
                    reason: one_line(e),
                }),
            },
            Err(e) => Err(Error::io("reading", &path, e)),
        }
    }

    fn check_size(&self, target: &Path, len: usize) -> Result<(), Error> {
        let size = u64::try_from(len).unwrap_or(u64::MAX);
        if size > MAX_QUEUE_FILE_BYTES {
            return Err(Error::TooLarge {
                path: target.to_path_buf(),
                size,
                limit: MAX_QUEUE_FILE_BYTES,
            });
        }
        Ok(())
    }

    fn request_path(&self, id: &RequestId) -> PathBuf {
        self.dir.join(format!("{REQUEST_PREFIX}{id}{SUFFIX}"))
    }

    fn result_path(&self, id: &RequestId) -> PathBuf {
        self.dir.join(format!("{RESULT_PREFIX}{id}{SUFFIX}"))
    }
}

/// Errors that rereading will not fix: the file is removed rather than retried forever.
fn is_permanent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied
            | io::ErrorKind::IsADirectory
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::InvalidData
    )
}

/// Housekeeping removal: a file already gone, or one that cannot be removed (a directory),
/// is left to the operator.
fn remove_ignoring_missing(path: &Path) {
    let _ = fs::remove_file(path);
}

/// 64 random bits from the OS (`/dev/urandom`), or, where that is unavailable, a hash of the
/// time, the process id, a counter and the thread, keyed by std's randomly seeded hasher.
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let from_os = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if from_os.is_ok() {
        return u64::from_le_bytes(bytes);
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    std::thread::current().id().hash(&mut hasher);
    hasher.finish()
}
