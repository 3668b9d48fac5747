//! The error type of the writing side ([`crate::Publisher`], [`crate::Queue`]).

use std::io;
use std::path::{Path, PathBuf};

/// Why a publish or a queue operation failed. Each message fits one log line and names the
/// file involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`"creating directory"`, `"renaming into"`, …).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The value could not be encoded as JSON.
    #[error("encoding JSON: {0}")]
    Encode(#[from] serde_json::Error),
    /// The file would be (or is) larger than its limit.
    #[error("{} is {size} bytes, over the {limit}-byte limit", path.display())]
    TooLarge {
        /// The file involved.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// A file written by the other side is not what it should be.
    #[error("malformed {}: {reason}", path.display())]
    Malformed {
        /// The file involved.
        path: PathBuf,
        /// What is wrong, on one line.
        reason: String,
    },
}

impl Error {
    /// An `Io` error about `path`.
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Renders `err` on one line of at most 300 characters: control characters (newlines from
/// hostile file contents among them) become spaces.
pub(crate) fn one_line(err: impl std::fmt::Display) -> String {
    const MAX_CHARS: usize = 300;
    let text = err.to_string();
    let mut out: String = text
        .chars()
        .take(MAX_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}
