//! File-system building blocks shared by the snapshot and the queues: atomic replacement,
//! bounded reads, directory fsync and removal of stale temporary files.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use tempfile::NamedTempFile;

use crate::Error;

/// Whether [`write_atomic`] may replace an existing target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replace {
    /// Rename over the target (the snapshot, result files).
    Overwrite,
    /// Fail with [`io::ErrorKind::AlreadyExists`] if the target exists (request files).
    NoClobber,
}

/// Writes `bytes` to `target` atomically: a unique temporary file in `dir` (the target's
/// directory, which must exist), written, fsynced, renamed onto `target`, then `dir` fsynced.
/// On any failure the temporary file is removed and `target` is untouched.
pub(crate) fn write_atomic(
    dir: &Path,
    target: &Path,
    bytes: &[u8],
    replace: Replace,
) -> Result<(), Error> {
    let mut tmp =
        NamedTempFile::new_in(dir).map_err(|e| Error::io("creating temp file in", dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("writing", tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("syncing", tmp.path(), e))?;
    let persisted = match replace {
        Replace::Overwrite => tmp.persist(target),
        Replace::NoClobber => tmp.persist_noclobber(target),
    };
    // On failure `PersistError` hands the temp file back; dropping it deletes it.
    persisted.map_err(|e| Error::io("renaming into", target, e.error))?;
    sync_dir(dir).map_err(|e| Error::io("syncing directory", dir, e))
}

/// Makes `dir` exist. When it had to be created, its parent is fsynced (best effort) so the
/// new directory entry survives a crash too.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), Error> {
    if fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Best effort: the directory exists either way, and the next fsync of a file in it
    // narrows the window further.
    let _ = sync_dir(parent);
    Ok(())
}

/// Fsyncs a directory so that renames and creations in it are durable.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened or fsynced on this platform; renames there are made durable
/// by the file system itself.
#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// The result of [`read_bounded`].
#[derive(Debug)]
pub(crate) enum Bounded {
    /// No file at the path.
    Missing,
    /// The file is larger than the limit; its size (at least `limit + 1`).
    TooLarge(u64),
    /// The whole file.
    Bytes(Vec<u8>),
}

/// Reads a regular file of at most `limit` bytes without ever holding more than `limit + 1`
/// bytes of it. A directory is an [`io::ErrorKind::IsADirectory`] error and any other
/// non-regular file (FIFO, socket, device) an [`io::ErrorKind::InvalidInput`] error, checked
/// before opening so that a FIFO cannot block the caller.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> io::Result<Bounded> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Bounded::Missing),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory, not a file",
        ));
    }
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > limit {
        return Ok(Bounded::TooLarge(meta.len()));
    }
    let file = match File::open(path) {
        Ok(f) => f,
        // Replaced or removed between the two calls.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Bounded::Missing),
        Err(e) => return Err(e),
    };
    let capacity = usize::try_from(meta.len().min(limit)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > limit {
        return Ok(Bounded::TooLarge(read));
    }
    Ok(Bounded::Bytes(bytes))
}

/// Whether `name` is one of our temporary files (`tempfile`'s default `.tmp` prefix).
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with(".tmp")
}

/// Removes the temporary file `path` if it is a regular file last modified more than
/// `max_age` before `now`. Errors are ignored: this is housekeeping.
pub(crate) fn remove_if_stale(path: &Path, now: SystemTime, max_age: Duration) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_file() {
        return;
    }
    let stale = meta
        .modified()
        .ok()
        .and_then(|m| now.duration_since(m).ok())
        .is_some_and(|age| age > max_age);
    if stale {
        let _ = fs::remove_file(path);
    }
}

/// Removes stale temporary files (see [`remove_if_stale`]) from `dir`, looking at no more
/// than `max_entries` directory entries. Errors are ignored.
pub(crate) fn sweep_stale_temp_files(dir: &Path, max_age: Duration, max_entries: usize) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.take(max_entries).flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(is_temp_name) {
            remove_if_stale(&entry.path(), now, max_age);
        }
    }
}
