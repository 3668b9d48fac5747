//! Two small pools of read-only connections, one per lane. Every query runs on the blocking
//! thread pool with a deadline enforced by SQLite's progress handler, so no request can pin a
//! core for long, and concurrency is bounded by the pool sizes.
//!
//! Lanes: the cheap routes (`/api/stats`, `/api/healthz`, ...) get connections of their own, so
//! they are never queued behind a storm of 10,000-row pages; everything else uses the main
//! pool. The HTTP layer says which lane a request is in ([`in_lane`]); a query made outside any
//! lane (background refreshes) uses the main pool. Waiting for a connection is bounded: past
//! the bound the answer is 503 with `Retry-After`, not an ever longer queue.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::rusqlite::Connection;
use store::rusqlite::config::DbConfig;
use store::{Reader, rusqlite};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// How long one query may run unless configured otherwise (`--query-deadline`).
pub const QUERY_DEADLINE: Duration = Duration::from_secs(2);

/// How long a request may wait for a free connection unless configured otherwise: as long as
/// one query may run, so a client is told to come back rather than queued behind a backlog.
pub const POOL_WAIT: Duration = Duration::from_secs(2);

/// Page cache per connection, KiB (bounded memory: size × pool). The OS page cache holds
/// the rest of the file.
const CACHE_KIB: i64 = 1024;

/// Page cache of the connections that stream (the capability cycle) or only read the newest
/// rows (the live tailer), KiB.
pub const SCAN_CACHE_KIB: i64 = 256;

/// Which pool a query takes its connection from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Bounded, cheap queries (counts served per commit, index ends): their own connections.
    Cheap,
    /// Everything else.
    Main,
}

tokio::task_local! {
    static LANE: Lane;
}

/// Runs `f` with its queries in `lane`. A task-local rather than a parameter, so handlers
/// need not know which lane the router put them in.
pub async fn in_lane<F: Future>(lane: Lane, f: F) -> F::Output {
    LANE.scope(lane, f).await
}

/// Sizes and bounds of the pools.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Connections of the main lane.
    pub size: usize,
    /// Connections of the cheap lane.
    pub cheap_size: usize,
    /// How long one query may run.
    pub deadline: Duration,
    /// How long a query may wait for a connection before the answer is 503.
    pub wait: Duration,
}

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 96;

struct Pool {
    conns: Mutex<Vec<Reader>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    fn open(path: &Path, size: usize) -> Result<Pool, store::Error> {
        let mut conns = Vec::with_capacity(size.max(1));
        for _ in 0..size.max(1) {
            let r = Reader::open(path)?;
            r.conn().pragma_update(None, "cache_size", -CACHE_KIB)?;
            // Plans that do not depend on bound values: otherwise SQLite marks a statement
            // with a bound `LIMIT` (or a value the planner looked at) for a new prepare
            // whenever that parameter is bound again, so every cached statement with
            // `LIMIT ?` was parsed and planned anew on each request.
            r.conn()
                .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
            // The routes use some 70 distinct statements; rusqlite keeps 16 by default, so a
            // mix of routes kept evicting each other's.
            r.conn()
                .set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            conns.push(r);
        }
        Ok(Pool {
            permits: Arc::new(Semaphore::new(conns.len())),
            conns: Mutex::new(conns),
        })
    }
}

/// The pools.
pub struct Db {
    path: PathBuf,
    main: Pool,
    cheap: Pool,
    deadline: Duration,
    wait: Duration,
    /// Queries answered 503 because no connection became free in time.
    busy: AtomicU64,
    /// Queries run (for tests and metrics: what a route costs the database).
    queries: AtomicU64,
}

impl Db {
    /// Opens `size` read-only connections to `path` (and one for the cheap lane), each query
    /// limited to `deadline`; fails if the schema is not ready.
    pub fn open(path: &Path, size: usize, deadline: Duration) -> Result<Arc<Db>, store::Error> {
        Db::open_with(
            path,
            &PoolConfig {
                size,
                cheap_size: 1,
                deadline,
                wait: POOL_WAIT,
            },
        )
    }

    /// Opens the pools as `cfg` says; fails if the schema is not ready.
    pub fn open_with(path: &Path, cfg: &PoolConfig) -> Result<Arc<Db>, store::Error> {
        Ok(Arc::new(Db {
            path: path.to_path_buf(),
            main: Pool::open(path, cfg.size)?,
            cheap: Pool::open(path, cfg.cheap_size)?,
            deadline: cfg.deadline,
            wait: cfg.wait,
            busy: AtomicU64::new(0),
            queries: AtomicU64::new(0),
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many queries were answered 503 because the pool stayed busy past the wait bound.
    pub fn busy_count(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }

    /// How many queries ([`Db::query`] calls) have been run.
    pub fn query_count(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Runs `f` on a pooled connection of the current lane, off the async threads, within the
    /// pool's deadline; 503 with `Retry-After` if no connection is free within the wait bound.
    pub async fn query<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let lane = LANE.try_with(|l| *l).unwrap_or(Lane::Main);
        let pool = match lane {
            Lane::Cheap => &self.cheap,
            Lane::Main => &self.main,
        };
        let permit =
            match tokio::time::timeout(self.wait, pool.permits.clone().acquire_owned()).await {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => return Err(ApiError::Unavailable("database closed".into())),
                Err(_) => {
                    self.busy.fetch_add(1, Ordering::Relaxed);
                    return Err(ApiError::Busy(
                        "the database is busy; retry in a moment".into(),
                    ));
                }
            };
        let reader = pool
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
            let pool = match lane {
                Lane::Cheap => &db.cheap,
                Lane::Main => &db.main,
            };
            if let Ok(mut c) = pool.conns.lock() {
                c.push(reader);
            }
            // Released only once the connection is back: a request whose client went away
            // (its future dropped) must not let the next one take a permit with no
            // connection behind it.
            drop(permit);
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

    /// With the main pool held, a query waits at most the bound and is told to retry (503
    /// `Busy`), while the cheap lane still answers; once the pool is free, queries run again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_pool_answers_busy_and_the_cheap_lane_is_separate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meshlens.db");
        drop(store::Writer::open(&path, 0).unwrap());
        let db = Db::open_with(
            &path,
            &PoolConfig {
                size: 1,
                cheap_size: 1,
                deadline: Duration::from_secs(120),
                wait: Duration::from_millis(50),
            },
        )
        .unwrap();
        // Hold the only main connection until told to let go.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (held_tx, held) = tokio::sync::oneshot::channel::<()>();
        let holder = tokio::spawn({
            let db = db.clone();
            async move {
                db.query(move |_| {
                    let _ = held_tx.send(());
                    let _ = hold.recv_timeout(Duration::from_secs(120));
                    Ok(())
                })
                .await
            }
        });
        held.await.unwrap();
        let busy = db.query(|_| Ok(())).await;
        assert!(matches!(busy, Err(ApiError::Busy(_))), "{busy:?}");
        assert_eq!(db.busy_count(), 1);
        let cheap = in_lane(
            Lane::Cheap,
            db.query(|c| sql(c.query_row("SELECT 2", [], |r| r.get::<_, i64>(0)))),
        )
        .await
        .unwrap();
        assert_eq!(cheap, 2);
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        db.query(|_| Ok(())).await.unwrap();
    }

    /// A cached statement with a bound `LIMIT`, run again with other values, is not
    /// prepared again (SQLite does so for every new binding unless plans are kept stable).
    #[tokio::test]
    async fn a_cached_statement_is_not_prepared_again_for_new_bindings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meshlens.db");
        drop(store::Writer::open(&path, 0).unwrap());
        let db = Db::open(&path, 1, Duration::from_secs(120)).unwrap();
        let reprepared = db
            .query(|c| {
                let q = "SELECT id FROM observations WHERE transmission_id = ?1
                         ORDER BY received_at, id LIMIT ?2 OFFSET ?3";
                for (tx, limit, offset) in [(1, 10, 0), (2, 50, 5), (3, 200, 100), (4, 7, 1)] {
                    let mut stmt = sql(c.prepare_cached(q))?;
                    let n = sql(stmt
                        .query_map([tx, limit, offset], |r| r.get::<_, i64>(0))
                        .map(|rows| rows.count()))?;
                    assert_eq!(n, 0);
                }
                let stmt = sql(c.prepare_cached(q))?;
                Ok(stmt.get_status(store::rusqlite::StatementStatus::RePrepare))
            })
            .await
            .unwrap();
        assert_eq!(reprepared, 0);
    }
}
