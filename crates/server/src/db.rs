//! A small pool of read-only connections. Every query runs on the blocking thread pool with a
//! deadline enforced by SQLite's progress handler, so no request can pin a core for long, and
//! concurrency is bounded by the pool size.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::rusqlite::Connection;
use store::{Reader, rusqlite};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// How long one query may run unless configured otherwise (`--query-deadline`).
pub const QUERY_DEADLINE: Duration = Duration::from_secs(2);

/// Page cache per connection, KiB (bounded memory: size × pool). The OS page cache holds
/// the rest of the file.
const CACHE_KIB: i64 = 1024;

/// Page cache of the connections that stream (the capability cycle) or only read the newest
/// rows (the live tailer), KiB.
pub const SCAN_CACHE_KIB: i64 = 256;

/// The pool.
pub struct Db {
    path: PathBuf,
    conns: Mutex<Vec<Reader>>,
    permits: Semaphore,
    deadline: Duration,
}

impl Db {
    /// Opens `size` read-only connections to `path`, each query limited to `deadline`; fails
    /// if the schema is not ready.
    pub fn open(path: &Path, size: usize, deadline: Duration) -> Result<Arc<Db>, store::Error> {
        let mut conns = Vec::with_capacity(size);
        for _ in 0..size.max(1) {
            let r = Reader::open(path)?;
            r.conn().pragma_update(None, "cache_size", -CACHE_KIB)?;
            conns.push(r);
        }
        Ok(Arc::new(Db {
            path: path.to_path_buf(),
            permits: Semaphore::new(conns.len()),
            conns: Mutex::new(conns),
            deadline,
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled connection, off the async threads, within the pool's deadline.
    pub async fn query<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ApiError::Unavailable("database closed".into()))?;
        let reader = self
            .conns
            .lock()
            .ok()
            .and_then(|mut c| c.pop())
            .ok_or_else(|| ApiError::Unavailable("no database connection free".into()))?;
        let db = self.clone();
        let limit = self.deadline;
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + limit;
            let conn = reader.conn();
            // Checked every 10k VM steps: a runaway query is interrupted, not waited for.
            if let Err(e) = conn.progress_handler(10_000, Some(move || Instant::now() > deadline)) {
                tracing::warn!("cannot set the query deadline: {e}");
            }
            // A panic in a query must not lose the connection from the pool.
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
                .unwrap_or_else(|_| Err(ApiError::Internal("query panicked".into())));
            let _ = conn.progress_handler(0, None::<fn() -> bool>);
            if let Ok(mut c) = db.conns.lock() {
                c.push(reader);
            }
            out
        })
        .await
        .map_err(|e| ApiError::Internal(format!("query task failed: {e}")))?
    }
}

/// Convenience: rusqlite errors into API errors inside query closures.
pub fn sql<T>(r: rusqlite::Result<T>) -> Result<T, ApiError> {
    r.map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deadline interrupts a query that would never end (so the result does not depend
    /// on the machine's speed), and the connection goes back to the pool usable.
    #[tokio::test]
    async fn a_runaway_query_is_interrupted_and_the_connection_survives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meshlens.db");
        drop(store::Writer::open(&path, 0).unwrap());
        let db = Db::open(&path, 1, Duration::from_millis(50)).unwrap();
        let endless = db
            .query(|c| {
                sql(c.query_row(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                     SELECT count(*) FROM n",
                    [],
                    |r| r.get::<_, i64>(0),
                ))
            })
            .await;
        assert!(endless.is_err(), "{endless:?}");
        let one = db
            .query(|c| sql(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))))
            .await
            .unwrap();
        assert_eq!(one, 1);
    }
}
