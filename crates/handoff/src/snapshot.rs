//! The capability snapshot: its file format and the writer's side of reading it.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::one_line;
use crate::fsutil::{Bounded, read_bounded};

/// The directory under `<data-dir>` holding the snapshot.
pub const SNAPSHOT_DIR: &str = "mbcap-snapshot";
/// The snapshot's file name inside [`SNAPSHOT_DIR`].
pub const SNAPSHOT_FILE: &str = "snapshot.json";
/// The largest snapshot file [`read_snapshot`] accepts (and [`crate::Publisher`] writes).
pub const MAX_SNAPSHOT_BYTES: u64 = 64 * 1024 * 1024;
/// The snapshot format version this crate writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// `<data_dir>/mbcap-snapshot/snapshot.json`.
pub fn snapshot_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SNAPSHOT_DIR).join(SNAPSHOT_FILE)
}

/// A node's multi-byte path-hash capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Seen using hashes of more than one byte.
    Confirmed,
    /// Indirect evidence only.
    Suspected,
    /// No evidence. Never published, and never allowed to overwrite what was known.
    Unknown,
}

impl Status {
    /// The database encoding: confirmed 2, suspected 1, unknown 0.
    pub fn as_int(self) -> i64 {
        match self {
            Status::Confirmed => 2,
            Status::Suspected => 1,
            Status::Unknown => 0,
        }
    }

    /// The inverse of [`Status::as_int`]; `None` for any other number.
    pub fn from_int(value: i64) -> Option<Status> {
        match value {
            2 => Some(Status::Confirmed),
            1 => Some(Status::Suspected),
            0 => Some(Status::Unknown),
            _ => None,
        }
    }
}

/// One node in a snapshot. Field names are the file's (`snake_case`).
///
/// [`read_snapshot`] checks the structure only: the writer still has to validate values
/// (key format, hash size, timestamps) before persisting them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The node's public key, 64 lowercase hex digits.
    pub public_key: String,
    /// Its capability.
    pub status: Status,
    /// What the status rests on: `"advert"`, `"path"` or `""`.
    pub evidence: String,
    /// The largest path-hash size (bytes) seen from the node.
    pub max_hash_size: u8,
    /// When the node was first seen upgraded (RFC 3339), if known. May be absent in the file.
    pub upgraded_at: Option<String>,
}

/// The snapshot file's contents. Unknown fields are ignored, so later writers may add some
/// without a version bump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Format version, [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// Increases with every publish, across reader restarts (see [`crate::Publisher`]).
    pub generation: u64,
    /// When it was written, RFC 3339 UTC.
    #[serde(rename = "writtenAt")]
    pub written_at: String,
    /// Confirmed and suspected nodes.
    pub entries: Vec<Entry>,
}

/// Why [`read_snapshot`] could not produce a snapshot. Each `Display` fits one log line; the
/// caller logs it and leaves its state alone.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file exists but could not be read (permissions, a directory in its place, …).
    #[error("cannot read the capability snapshot: {0}")]
    Io(#[from] io::Error),
    /// The file is larger than [`MAX_SNAPSHOT_BYTES`]; its size in bytes.
    #[error("capability snapshot is {0} bytes, over the {MAX_SNAPSHOT_BYTES}-byte limit")]
    TooLarge(u64),
    /// The file is not a well-formed snapshot.
    #[error("malformed capability snapshot: {0}")]
    Malformed(String),
    /// The file is well-formed but of a version this build does not read.
    #[error(
        "capability snapshot version {0} is not supported (this build reads version {SNAPSHOT_VERSION})"
    )]
    UnsupportedVersion(u32),
}

/// Just the version, read before the rest so that a future format reports as such rather
/// than as malformed.
#[derive(Deserialize)]
struct VersionProbe {
    version: u64,
}

/// Reads the snapshot at `path` (normally [`snapshot_path`]). A missing file is `Ok(None)`;
/// every other problem is a [`ReadError`]. Never panics and never reads more than
/// [`MAX_SNAPSHOT_BYTES`] + 1 bytes, whatever the file holds.
pub fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, ReadError> {
    let bytes = match read_bounded(path, MAX_SNAPSHOT_BYTES)? {
        Bounded::Missing => return Ok(None),
        Bounded::TooLarge(size) => return Err(ReadError::TooLarge(size)),
        Bounded::Bytes(bytes) => bytes,
    };
    parse_snapshot(&bytes).map(Some)
}

/// Parses snapshot bytes; see [`read_snapshot`].
fn parse_snapshot(bytes: &[u8]) -> Result<Snapshot, ReadError> {
    // serde also accepts a struct written as a JSON array; the format is an object.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ReadError::Malformed("empty file".into())),
        Some(b'{') => {}
        Some(_) => return Err(ReadError::Malformed("not a JSON object".into())),
    }
    let probe: VersionProbe =
        serde_json::from_slice(bytes).map_err(|e| ReadError::Malformed(one_line(e)))?;
    if probe.version != u64::from(SNAPSHOT_VERSION) {
        return Err(match u32::try_from(probe.version) {
            Ok(v) => ReadError::UnsupportedVersion(v),
            Err(_) => ReadError::Malformed(format!("version {} out of range", probe.version)),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| ReadError::Malformed(one_line(e)))
}
