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
/// The snapshot format version this crate writes and reads. A file without a `version` (the
/// seed's, `multibyte-capability.md` §4.3) is of this version.
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

/// One node as [`crate::Publisher`] writes it. Field names are the file's (`snake_case`).
///
/// Reading gives [`ReadEntry`] instead, because a file need not carry every field: the seed
/// (CoreScope) writes only `public_key`, `status` and `evidence`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The node's public key, 64 lowercase hex digits.
    pub public_key: String,
    /// Its capability.
    pub status: Status,
    /// What the status rests on: `"advert"`, `"path"` or `""`.
    pub evidence: String,
    /// The largest path-hash size (bytes) seen from the node.
    pub max_hash_size: u8,
    /// When the node was first seen upgraded (RFC 3339), if known.
    pub upgraded_at: Option<String>,
}

/// What a capability status rests on (`multibyte-capability.md` §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// A verified advert sent with a multi-byte path hash.
    Advert,
    /// Multi-byte path hops matching the node.
    Path,
}

impl Evidence {
    /// The file's and the database's spelling: `advert` or `path`.
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::Advert => "advert",
            Evidence::Path => "path",
        }
    }
}

/// One well-formed entry of a snapshot file, holding exactly what the file said.
///
/// meshlens' [`crate::Publisher`] writes every field; the seed (CoreScope) writes only
/// `public_key`, `status` and `evidence`, and omits `evidence` when it is empty
/// (`multibyte-capability.md` §4.3). What an absent field means is the writer's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEntry {
    /// The node's public key as 64 lowercase hex digits (the file may use either case).
    pub public_key: String,
    /// Its capability.
    pub status: Status,
    /// What the status rests on; `None` when absent, `null` or `""`.
    pub evidence: Option<Evidence>,
    /// The largest path-hash size seen, 1 to 3; `None` when absent or `null`.
    pub max_hash_size: Option<u8>,
    /// When the node was first seen upgraded, as written (not parsed here); `None` when
    /// absent or `null`.
    pub upgraded_at: Option<String>,
}

/// How many reasons [`SkippedEntries`] keeps: enough for a log line, bounded whatever the
/// file holds.
pub const MAX_SKIP_REASONS: usize = 3;

/// The entries of a snapshot that were not well-formed (a bad public key, an unknown status,
/// a value of the wrong type…). Each was left out; the rest of the file still counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkippedEntries {
    /// How many entries were left out.
    pub count: u64,
    /// Why, for the first [`MAX_SKIP_REASONS`] of them: one line each, e.g.
    /// `entry 3: public_key is not 64 hex digits`.
    pub reasons: Vec<String>,
}

impl SkippedEntries {
    /// Counts one more skipped entry, keeping its reason while there is room.
    pub fn push(&mut self, reason: impl std::fmt::Display) {
        self.count = self.count.saturating_add(1);
        if self.reasons.len() < MAX_SKIP_REASONS {
            self.reasons.push(one_line(reason));
        }
    }
}

/// A snapshot file's contents, as [`read_snapshot`] returns them. Unknown fields are ignored,
/// so later writers may add some without a version bump.
///
/// meshlens' [`crate::Publisher`] writes `version` and `generation`; the seed (CoreScope)
/// writes neither, only `writtenAt` and `entries` (`multibyte-capability.md` §4.3).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Format version, [`SNAPSHOT_VERSION`]; also when the file has none (the seed's).
    pub version: u32,
    /// The file's `generation`, which increases with every publish, across reader restarts
    /// (see [`crate::Publisher`]); `None` when the file has none (absent or `null`: the
    /// seed's files never have one). A file without a generation cannot be recognised as
    /// one already applied; what that means is the writer's decision.
    pub file_generation: Option<u64>,
    /// [`Snapshot::file_generation`], or 0 when the file has none. For readers of meshlens'
    /// own files, which always carry one (the publisher continuing above the file it finds,
    /// tests); code that must tell "no generation" from generation 0, such as the writer
    /// deciding whether a file was already applied, reads `file_generation`.
    // Both exist because this field predates generation-less files and has users outside
    // this file; folding the two into one `generation: Option<u64>` means updating them.
    pub generation: u64,
    /// When it was written, RFC 3339 UTC, as written (both meshlens and the seed write a
    /// string; nobody acts on it).
    pub written_at: String,
    /// The well-formed entries, in file order.
    pub entries: Vec<ReadEntry>,
    /// The entries that were not.
    pub skipped: SkippedEntries,
}

/// The file as [`crate::Publisher`] writes it.
#[derive(Serialize)]
pub(crate) struct SnapshotFile<'a> {
    pub(crate) version: u32,
    pub(crate) generation: u64,
    #[serde(rename = "writtenAt")]
    pub(crate) written_at: String,
    pub(crate) entries: &'a [Entry],
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
/// than as malformed. Absent (or `null`): the seed's files, version 1.
#[derive(Deserialize)]
struct VersionProbe {
    #[serde(default)]
    version: Option<u64>,
}

/// Reads the snapshot at `path` (normally [`snapshot_path`]). A missing file is `Ok(None)`; a
/// file that is not a snapshot (unreadable, too large, not JSON, another version, `writtenAt`
/// or `entries` missing, a top-level field of the wrong type) is a [`ReadError`]; an entry that
/// is not well-formed is left out and counted in [`Snapshot::skipped`], the others still
/// count. `version` and `generation` may be absent, as in the seed's files: no version is
/// version 1, no generation is [`Snapshot::file_generation`] `None`. Never panics and never
/// reads more than [`MAX_SNAPSHOT_BYTES`] + 1 bytes, whatever the file holds.
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
    let version = probe.version.unwrap_or(u64::from(SNAPSHOT_VERSION));
    if version != u64::from(SNAPSHOT_VERSION) {
        return Err(match u32::try_from(version) {
            Ok(v) => ReadError::UnsupportedVersion(v),
            Err(_) => ReadError::Malformed(format!("version {version} out of range")),
        });
    }
    let file: RawSnapshot =
        serde_json::from_slice(bytes).map_err(|e| ReadError::Malformed(one_line(e)))?;
    Ok(Snapshot {
        version: SNAPSHOT_VERSION,
        file_generation: file.generation,
        generation: file.generation.unwrap_or(0),
        written_at: file.written_at,
        entries: file.entries.good,
        skipped: file.entries.skipped,
    })
}

/// The file's top level. A problem here (or invalid JSON anywhere) makes the whole file
/// malformed; a problem inside one entry only skips that entry ([`Entries`]). `version` was
/// checked by [`VersionProbe`] (which also refuses it twice); it and `generation` may be
/// absent.
#[derive(Deserialize)]
struct RawSnapshot {
    #[serde(default)]
    generation: Option<u64>,
    #[serde(rename = "writtenAt")]
    written_at: String,
    entries: Entries,
}

/// The `entries` array, split into the well-formed entries and the skipped ones. Each element
/// is parsed on its own, so one bad entry (a writer bug, a hand edit) costs that node's
/// update rather than everybody's, and only one element is held as a JSON tree at a time.
struct Entries {
    good: Vec<ReadEntry>,
    skipped: SkippedEntries,
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Entries, D::Error> {
        d.deserialize_seq(EntriesVisitor)
    }
}

struct EntriesVisitor;

impl<'de> serde::de::Visitor<'de> for EntriesVisitor {
    type Value = Entries;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of entries")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Entries, A::Error> {
        let mut out = Entries {
            good: Vec::new(),
            skipped: SkippedEntries::default(),
        };
        let mut index: u64 = 0;
        // Errors from `next_element` are JSON syntax (or nesting) errors: they end the file.
        while let Some(element) = seq.next_element::<serde_json::Value>()? {
            match parse_entry(element) {
                Ok(entry) => out.good.push(entry),
                Err(reason) => out.skipped.push(format_args!("entry {index}: {reason}")),
            }
            index = index.saturating_add(1);
        }
        Ok(out)
    }
}

/// An entry's fields with their JSON types checked, values not yet.
#[derive(Deserialize)]
struct RawEntry {
    public_key: String,
    status: Status,
    #[serde(default)]
    evidence: Option<String>,
    #[serde(default)]
    max_hash_size: Option<u8>,
    #[serde(default)]
    upgraded_at: Option<String>,
}

/// Checks one element of `entries`; the error is why it is skipped.
fn parse_entry(element: serde_json::Value) -> Result<ReadEntry, String> {
    // serde would also take an array as a struct; an entry is an object.
    if !element.is_object() {
        return Err("not a JSON object".into());
    }
    let raw: RawEntry = serde_json::from_value(element).map_err(one_line)?;
    let key = raw.public_key.as_bytes();
    if key.len() != 64 || !key.iter().all(u8::is_ascii_hexdigit) {
        return Err("public_key is not 64 hex digits".into());
    }
    let evidence = match raw.evidence.as_deref() {
        None | Some("") => None,
        Some("advert") => Some(Evidence::Advert),
        Some("path") => Some(Evidence::Path),
        Some(_) => return Err("evidence is not \"advert\", \"path\" or \"\"".into()),
    };
    if let Some(size) = raw.max_hash_size.filter(|s| !(1..=3).contains(s)) {
        return Err(format!("max_hash_size {size} is not 1, 2 or 3"));
    }
    Ok(ReadEntry {
        public_key: raw.public_key.to_ascii_lowercase(),
        status: raw.status,
        evidence,
        max_hash_size: raw.max_hash_size,
        upgraded_at: raw.upgraded_at,
    })
}
