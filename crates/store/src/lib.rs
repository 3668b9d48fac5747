//! meshlens' SQLite database: the schema and its migrations, the single [`Writer`], and the
//! read-only [`Reader`] handle.
//!
//! Only the writer (the ingest role) ever opens the database for writing, and it alone
//! migrates. The reader opens with `mode=ro` plus `PRAGMA query_only` and refuses a schema
//! older than it needs. Times are Unix milliseconds (`INTEGER`); packet hashes are 16
//! lowercase hex digits; public keys are 64 lowercase hex digits.

mod records;
mod schema;
pub mod settings;
pub mod time;
mod writer;

use std::path::{Path, PathBuf};

pub use records::{Advert, ClockReading, Delivery, Observer, PacketRecord, Rejected, Role, Status};
pub use schema::{MIGRATIONS, SCHEMA_VERSION};
pub use writer::{
    ApplyCounts, BatchOutcome, CHECKPOINT_WAIT, CapabilityUpdate, Checkpoint, Item,
    MAX_STORED_EDGE_OBSERVERS, METRICS_BUCKET_MS, NeighborEdge, Writer, hash_hex, metrics_bucket,
    node_is_active,
};

pub use rusqlite;

/// Database errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database was made by a newer meshlens.
    #[error("database schema version {found} is newer than this meshlens supports ({supported})")]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// The reader found a schema the writer has not migrated yet.
    #[error(
        "database schema version {found} is older than this reader needs ({needed}); \
         start the writer (`meshlens ingest` or `meshlens run`) to migrate it"
    )]
    SchemaTooOld {
        /// Version in the file.
        found: i64,
        /// Version needed.
        needed: i64,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// The database file inside a data directory: `<data-dir>/meshlens.db`.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("meshlens.db")
}

/// A read-only handle. SQLite enforces it twice: the file is opened `mode=ro` and the
/// connection has `query_only` set, so no statement through it can write.
pub struct Reader {
    conn: rusqlite::Connection,
}

impl Reader {
    /// Opens `path` read-only. Fails if the schema is older than [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Reader> {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
            | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let conn = rusqlite::Connection::open_with_flags(path, flags)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found < SCHEMA_VERSION {
            return Err(Error::SchemaTooOld {
                found,
                needed: SCHEMA_VERSION,
            });
        }
        if found > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Reader { conn })
    }

    /// The connection, for queries.
    pub fn conn(&self) -> &rusqlite::Connection {
        &self.conn
    }

    /// Writes a consistent copy of the database to `target` (a path that must not exist
    /// yet) with `VACUUM INTO`, inside one read transaction, so the writer goes on
    /// meanwhile. `query_only` forbids `VACUUM INTO` too, so it is lifted for this one
    /// statement; the connection itself was opened read-only and still cannot change the
    /// database.
    pub fn backup_to(&self, target: &Path) -> Result<()> {
        let target = target
            .to_str()
            .ok_or_else(|| rusqlite::Error::InvalidPath(target.to_path_buf()))?;
        self.conn.pragma_update(None, "query_only", false)?;
        let copied = self.conn.execute("VACUUM INTO ?1", [target]);
        self.conn.pragma_update(None, "query_only", true)?;
        copied?;
        Ok(())
    }
}
