//! The single writer: owns the read-write connection, migrates on open, and commits ingest
//! in batches (one transaction per batch, so a burst pays for one fsync, not one per packet).
//!
//! Observers are created by whoever can publish, so their creation is bounded: at most
//! [`Writer::set_new_observer_limit`] new observer keys per minute per source (the caller
//! names each item's source in [`Writer::write_batch_from`]; one token bucket on ingest
//! time holding ten minutes' worth, so that a first start on a busy network admits its
//! observers at once), so one abusive publisher spends its own budget, not everybody's; the
//! packets and statuses of an observer refused this way are not stored and are counted
//! ([`BatchOutcome::observer_rate_refused`], by source [`Writer::observer_refusals`]). Known observers
//! are never limited. Observers silent for long are deleted by [`Writer::expire_observers`]
//! once no observation refers to them any more.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::records::{ClockReading, Delivery, PacketRecord, Rejected, Status};
use crate::{Error, Result, schema};

/// One unit of work for the writer.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A received packet.
    Packet(PacketRecord),
    /// An observer status message.
    Status(Status),
    /// Refused input kept for inspection.
    Rejected(Rejected),
}

/// What one batch changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Packets seen for the first time.
    pub new_transmissions: u64,
    /// Packets already stored (heard again).
    pub known_transmissions: u64,
    /// Observation rows added.
    pub new_observations: u64,
    /// Same observer, same packet, same path again: not stored twice.
    pub duplicate_observations: u64,
    /// Node rows created or updated from verified adverts.
    pub node_updates: u64,
    /// Status messages applied.
    pub statuses: u64,
    /// Rows added to `rejected_packets`.
    pub rejected: u64,
    /// Packets and statuses not stored because they would have created an observer beyond the
    /// new-observer rate ([`Writer::set_new_observer_limit`]).
    pub observer_rate_refused: u64,
}

/// How many minutes' worth of new observers the bucket holds: a first start on a network of a
/// few hundred observers admits them all at once, while a flood gets this many minutes' worth
/// and then the sustained rate.
const OBSERVER_BURST_MINUTES: u32 = 10;

/// New observers allowed per minute: a token bucket refilled continuously, holding at most
/// [`OBSERVER_BURST_MINUTES`] minutes' worth. Its clock is the items' ingest time (`received_at`, set by meshlens on
/// arrival, never by the message), so it needs no clock of its own and a test can drive it.
#[derive(Debug, Clone)]
struct ObserverBudget {
    per_minute: u32,
    /// Tokens × 60,000: at `per_minute` tokens a minute this grows by exactly `per_minute`
    /// a millisecond, so no refill is lost to rounding however often it is topped up.
    units: i64,
    /// Ingest time of the last refill; `None` until the first new observer.
    refilled_at: Option<i64>,
}

/// One token of [`ObserverBudget`].
const TOKEN: i64 = 60_000;

impl ObserverBudget {
    fn new(per_minute: u32) -> ObserverBudget {
        ObserverBudget {
            per_minute,
            units: Self::full(per_minute),
            refilled_at: None,
        }
    }

    /// Whether the bucket would be full at `at_ms` (then it is the same as a new one).
    fn full_at(&self, at_ms: i64) -> bool {
        let elapsed = self
            .refilled_at
            .map_or(0, |last| at_ms.saturating_sub(last).max(0));
        self.units
            .saturating_add(elapsed.saturating_mul(i64::from(self.per_minute)))
            >= Self::full(self.per_minute)
    }

    fn full(per_minute: u32) -> i64 {
        i64::from(per_minute) * i64::from(OBSERVER_BURST_MINUTES) * TOKEN
    }

    /// Takes one token at ingest time `at_ms`; false when none is left.
    fn take(&mut self, at_ms: i64) -> bool {
        let full = Self::full(self.per_minute);
        if let Some(last) = self.refilled_at {
            // A clock that went back refills nothing.
            let elapsed = at_ms.saturating_sub(last).max(0);
            let refill = elapsed.saturating_mul(i64::from(self.per_minute));
            self.units = self.units.saturating_add(refill).min(full);
        }
        self.refilled_at = Some(self.refilled_at.map_or(at_ms, |last| last.max(at_ms)));
        if self.units >= TOKEN {
            self.units -= TOKEN;
            true
        } else {
            false
        }
    }
}

/// Most sources with a bucket of their own; the buckets of sources beyond share one
/// ([`OVERFLOW_SOURCE`]). A bucket that has refilled completely is forgotten when room is
/// needed (a new one is the same), so this bounds memory, not honest sources.
const MAX_BUDGET_SOURCES: usize = 256;

/// The shared bucket of sources beyond [`MAX_BUDGET_SOURCES`] (no caller's name: it starts
/// with a NUL byte).
const OVERFLOW_SOURCE: &str = "\0overflow";

/// One [`ObserverBudget`] per source.
#[derive(Debug, Clone)]
struct ObserverBudgets {
    per_minute: u32,
    by_source: HashMap<String, ObserverBudget>,
}

impl ObserverBudgets {
    fn new(per_minute: u32) -> ObserverBudgets {
        ObserverBudgets {
            per_minute,
            by_source: HashMap::new(),
        }
    }

    /// Takes one token of `source`'s bucket at ingest time `at_ms`; false when none is left.
    fn take(&mut self, source: &str, at_ms: i64) -> bool {
        if !self.by_source.contains_key(source) && self.by_source.len() >= MAX_BUDGET_SOURCES {
            self.by_source.retain(|_, b| !b.full_at(at_ms));
        }
        let key =
            if self.by_source.contains_key(source) || self.by_source.len() < MAX_BUDGET_SOURCES {
                source
            } else {
                OVERFLOW_SOURCE
            };
        let per_minute = self.per_minute;
        self.by_source
            .entry(key.to_owned())
            .or_insert_with(|| ObserverBudget::new(per_minute))
            .take(at_ms)
    }
}

/// Transmission ids by packet hash, for the packets heard in the last moments (a packet is
/// typically heard by many observers within seconds). Bounded: cleared when full.
struct RecentTransmissions {
    ids: HashMap<u64, i64>,
    capacity: usize,
}

impl RecentTransmissions {
    fn get(&self, hash: u64) -> Option<i64> {
        self.ids.get(&hash).copied()
    }

    fn insert(&mut self, hash: u64, id: i64) {
        if self.ids.len() >= self.capacity {
            self.ids.clear();
        }
        self.ids.insert(hash, id);
    }
}

/// Width of an `observer_metrics` bucket: CoreScope's 5-minute sample interval.
pub const METRICS_BUCKET_MS: i64 = 300_000;

/// The bucket (its start, Unix ms) that time `at_ms` falls in.
pub fn metrics_bucket(at_ms: i64) -> i64 {
    at_ms.div_euclid(METRICS_BUCKET_MS) * METRICS_BUCKET_MS
}

/// Clock readings kept per observer for its current bucket: enough for a stable median, and
/// a busy observer (hundreds of packets a bucket) costs no more than a quiet one.
const CLOCK_SAMPLES_PER_BUCKET: usize = 63;

/// Observers whose current clock bucket is held in memory; past this the map is cleared (the
/// buckets already written stay; the next readings start fresh buckets).
const CLOCK_OBSERVERS: usize = 8192;

/// One observer's clock readings in its current bucket.
struct ClockBucket {
    bucket: i64,
    /// A ring of the latest readings, ms.
    samples: Vec<i64>,
    /// Readings seen in the bucket (the ring keeps at most [`CLOCK_SAMPLES_PER_BUCKET`]).
    seen: i64,
}

impl ClockBucket {
    fn median(&self) -> Option<i64> {
        let mut v = self.samples.clone();
        v.sort_unstable();
        let n = v.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => v.get(n / 2).copied(),
            // Halfway between the middle two, without overflow.
            _ => Some(v.get(n / 2 - 1)?.midpoint(*v.get(n / 2)?)),
        }
    }
}

/// The current clock bucket of each observer, in memory: a median cannot be updated in SQL,
/// so the writer keeps the bucket's readings and rewrites the bucket's median after each batch.
/// After a restart a bucket's median is rebuilt from the readings after it (at most five
/// minutes' worth lost, and only for the median).
#[derive(Default)]
struct ClockBuckets {
    by_observer: HashMap<i64, ClockBucket>,
}

impl ClockBuckets {
    /// Adds observer `idx`'s readings (receipt time, offset; sorted by time) and returns the
    /// buckets to write, as (bucket, median, seen): each one a reading moved past, then the
    /// current one. A reading older than the current bucket (a late delivery) is not counted:
    /// its bucket is written already.
    fn add(&mut self, idx: i64, readings: &[(i64, i64)]) -> Vec<(i64, i64, i64)> {
        let mut out = Vec::new();
        let Some(&(first, _)) = readings.first() else {
            return out;
        };
        if self.by_observer.len() >= CLOCK_OBSERVERS && !self.by_observer.contains_key(&idx) {
            self.by_observer.clear();
        }
        let entry = self.by_observer.entry(idx).or_insert_with(|| ClockBucket {
            bucket: metrics_bucket(first),
            samples: Vec::new(),
            seen: 0,
        });
        for &(at, offset_ms) in readings {
            let bucket = metrics_bucket(at);
            if bucket > entry.bucket {
                out.extend(entry.median().map(|m| (entry.bucket, m, entry.seen)));
                *entry = ClockBucket {
                    bucket,
                    samples: Vec::new(),
                    seen: 0,
                };
            } else if bucket < entry.bucket {
                continue;
            }
            let slot = usize::try_from(entry.seen).unwrap_or(0) % CLOCK_SAMPLES_PER_BUCKET;
            if entry.samples.len() < CLOCK_SAMPLES_PER_BUCKET {
                entry.samples.push(offset_ms);
            } else if let Some(s) = entry.samples.get_mut(slot) {
                *s = offset_ms;
            }
            entry.seen = entry.seen.saturating_add(1);
        }
        out.extend(entry.median().map(|m| (entry.bucket, m, entry.seen)));
        out
    }
}

/// One observer's clock readings in a batch.
#[derive(Default)]
struct ClockTally {
    /// (receipt time, offset) of each [`ClockReading::Offset`].
    offsets: Vec<(i64, i64)>,
    /// Naive readings: how many, and the last one (offset, receipt time).
    naive: Option<(i64, i64, i64)>,
}

impl ClockTally {
    fn is_empty(&self) -> bool {
        self.offsets.is_empty() && self.naive.is_none()
    }

    /// Adds `other`'s readings (the same observer's, from elsewhere in the batch).
    fn merge(&mut self, other: ClockTally) {
        self.offsets.extend(other.offsets);
        self.naive = match (self.naive, other.naive) {
            (Some((n, d, at)), Some((m, e, bt))) => Some(if bt >= at {
                (n + m, e, bt)
            } else {
                (n + m, d, at)
            }),
            (a, b) => a.or(b),
        };
    }

    fn add(&mut self, reading: ClockReading, at_ms: i64) {
        match reading {
            ClockReading::Offset(ms) => self.offsets.push((at_ms, ms)),
            ClockReading::Naive(ms) => {
                let n = self.naive.map_or(0, |(n, _, _)| n);
                let later = self.naive.is_none_or(|(_, _, at)| at_ms >= at);
                self.naive = Some(if later {
                    (n + 1, ms, at_ms)
                } else {
                    let (_, d, at) = self.naive.unwrap_or((0, ms, at_ms));
                    (n + 1, d, at)
                });
            }
        }
    }
}

/// One observer's packets in a batch, written once at the end of it.
struct ObserverTally {
    /// Clock readings of its packets (kept here: the tally is already looked up per packet).
    clock: ClockTally,
    /// `observers.idx`.
    idx: i64,
    /// Observation rows actually inserted (duplicates excluded).
    stored: u64,
    /// Latest `received_at` of its packets.
    last: i64,
}

/// Column list shared by `nodes` and `inactive_nodes`, for moving rows between them.
const NODE_COLUMN_NAMES: &str = "public_key, name, role, lat, lon, first_seen, last_seen, \
     advert_count, last_advert_time, last_advert_path_len, multibyte_sup, multibyte_evidence, \
     multibyte_max_hash_size, multibyte_upgraded_at, foreign_advert";

/// The read-write handle. Exactly one should exist per database.
pub struct Writer {
    conn: Connection,
    recent: RecentTransmissions,
    clocks: ClockBuckets,
    /// `None`: new observers are not limited.
    observer_budget: Option<ObserverBudgets>,
    /// Items refused by the new-observer rate in the last batch, by source.
    observer_refusals: Vec<(String, u64)>,
}

impl Writer {
    /// Opens (creating if needed) the database at `path`, sets WAL mode and migrates it.
    pub fn open(path: &Path, now_ms: i64) -> Result<Writer> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::DataDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        // auto_vacuum must be chosen before the first table exists; on an existing file it
        // is a no-op. Incremental lets retention give space back in small steps.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // WAL + NORMAL: a crash of the process loses nothing committed; only power loss can
        // lose the last commits, and never corrupts the file.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", false)?;
        // After a checkpoint the WAL file is truncated back to at most this.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(64);
        schema::migrate(&mut conn, now_ms)?;
        Ok(Writer {
            conn,
            recent: RecentTransmissions {
                ids: HashMap::new(),
                capacity: 65_536,
            },
            clocks: ClockBuckets::default(),
            observer_budget: None,
            observer_refusals: Vec::new(),
        })
    }

    /// Limits how many observers [`Writer::write_batch`] may create per minute (of ingest
    /// time) for each source, with a burst of ten minutes' worth; `None` (the default) does not
    /// limit. Packets and statuses that would create an observer beyond it are not stored and
    /// are counted in [`BatchOutcome::observer_rate_refused`] and
    /// [`Writer::observer_refusals`]. Setting it again starts full buckets.
    pub fn set_new_observer_limit(&mut self, per_minute: Option<u32>) {
        self.observer_budget = per_minute.map(ObserverBudgets::new);
    }

    /// Items of the last [`Writer::write_batch_from`] refused by the new-observer rate, by
    /// source (those of [`Writer::write_batch`] under `""`).
    pub fn observer_refusals(&self) -> &[(String, u64)] {
        &self.observer_refusals
    }

    /// The connection (for maintenance jobs and tests).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Writes `items` in one transaction (all of one source, `""`, for the new-observer rate).
    pub fn write_batch(&mut self, items: &[Item]) -> Result<BatchOutcome> {
        self.write_batch_from(items, &[])
    }

    /// Writes `items` in one transaction; `sources[i]` names the source of `items[i]` for the
    /// new-observer rate (`""` where `sources` is shorter).
    pub fn write_batch_from(&mut self, items: &[Item], sources: &[&str]) -> Result<BatchOutcome> {
        let budget = self.observer_budget.clone();
        self.observer_refusals.clear();
        let result = self.write_batch_inner(items, sources);
        if result.is_err() {
            // The transaction rolled back: transmission ids cached during it may name rows that
            // do not exist (and that the next insert would reuse for another packet), and the
            // observers it admitted were not created.
            self.recent.ids.clear();
            self.observer_budget = budget;
        }
        result
    }

    fn write_batch_inner(&mut self, items: &[Item], sources: &[&str]) -> Result<BatchOutcome> {
        let mut out = BatchOutcome::default();
        // IMMEDIATE: the write lock is taken at BEGIN, where SQLite waits for it (the busy
        // timeout). A deferred transaction would take a read snapshot first and then fail at
        // once, without waiting, when another connection (a backup, an operator's sqlite3)
        // holds the lock.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Per-batch aggregates, written once at the end of the batch.
        let mut observers: HashMap<&str, ObserverTally> = HashMap::new();
        // Observers refused by the rate in this batch: their later items are refused without
        // asking again.
        let mut refused: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
        let mut refusals: HashMap<&str, u64> = HashMap::new();
        let mut touched: HashMap<i64, (i64, i64, u64)> = HashMap::new(); // first, last, new obs
        // Clock readings by observer idx, written once per observer at the end.
        let mut clocks: HashMap<i64, ClockTally> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let source = sources.get(i).copied().unwrap_or("");
            match item {
                Item::Packet(p) => {
                    let id = p.observer.id.as_str();
                    if refused.contains(&(source, id)) {
                        out.observer_rate_refused += 1;
                        *refusals.entry(source).or_default() += 1;
                        continue;
                    }
                    let tally = match observers.entry(id) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => {
                            if !admit_observer(
                                &tx,
                                &mut self.observer_budget,
                                source,
                                id,
                                p.received_at,
                            )? {
                                refused.insert((source, id));
                                out.observer_rate_refused += 1;
                                *refusals.entry(source).or_default() += 1;
                                continue;
                            }
                            e.insert(ObserverTally {
                                clock: ClockTally::default(),
                                idx: upsert_observer(&tx, p)?,
                                stored: 0,
                                last: p.received_at,
                            })
                        }
                    };
                    tally.last = tally.last.max(p.received_at);
                    let idx = tally.idx;
                    if let Some(c) = p.clock {
                        tally.clock.add(c, p.received_at);
                    }
                    let (tx_id, new) = match self.recent.get(p.hash) {
                        Some(id) => (id, false),
                        None => {
                            let r = insert_transmission(&tx, p)?;
                            self.recent.insert(p.hash, r.0);
                            r
                        }
                    };
                    if new {
                        out.new_transmissions += 1;
                    } else {
                        out.known_transmissions += 1;
                    }
                    let t = touched
                        .entry(tx_id)
                        .or_insert((p.received_at, p.received_at, 0));
                    t.0 = t.0.min(p.received_at);
                    t.1 = t.1.max(p.received_at);
                    let head = p.raw.get(..p.head_len).unwrap_or(&p.raw);
                    let added = tx
                        .prepare_cached(
                            "INSERT OR IGNORE INTO observations
                             (transmission_id, observer_idx, received_at, path_len, head, snr, rssi,
                              score, airtime_ms)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        )?
                        .execute(params![
                            tx_id,
                            idx,
                            p.received_at,
                            p.path_len,
                            head,
                            p.snr,
                            p.rssi,
                            p.score,
                            p.airtime_ms
                        ])?;
                    if added == 1 {
                        out.new_observations += 1;
                        t.2 += 1;
                        // Only stored observations count: the same packet delivered again
                        // (two brokers, a resent publish) is one observation, not two.
                        tally.stored += 1;
                    } else {
                        out.duplicate_observations += 1;
                    }
                    if let Some(reason) = p.reject_reason.filter(|_| new) {
                        tx.prepare_cached(
                            "INSERT INTO rejected_packets (received_at, observer_id, reason, hash, raw)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                        )?
                        .execute(params![
                            p.received_at,
                            p.observer.id,
                            reason,
                            hash_hex(p.hash),
                            p.raw
                        ])?;
                        out.rejected += 1;
                    }
                    if p.advert.is_some() {
                        upsert_node(&tx, p, new)?;
                        out.node_updates += 1;
                    }
                }
                Item::Status(s) => {
                    if let Some(o) = &s.observer {
                        let id = o.id.as_str();
                        let admitted = !refused.contains(&(source, id))
                            && (observers.contains_key(id)
                                || admit_observer(
                                    &tx,
                                    &mut self.observer_budget,
                                    source,
                                    id,
                                    s.received_at,
                                )?);
                        if !admitted {
                            refused.insert((source, id));
                            out.observer_rate_refused += 1;
                            *refusals.entry(source).or_default() += 1;
                            continue;
                        }
                    }
                    if let Some(idx) = apply_status(&tx, s)?
                        && s.delivery == Delivery::Live
                    {
                        if s.has_metrics() {
                            record_metrics(&tx, idx, s)?;
                        }
                        if let Some(c) = s.clock {
                            clocks.entry(idx).or_default().add(c, s.received_at);
                        }
                    }
                    out.statuses += 1;
                }
                Item::Rejected(r) => {
                    tx.prepare_cached(
                        "INSERT INTO rejected_packets (received_at, observer_id, reason, raw)
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![
                        r.received_at,
                        r.observer_id,
                        r.reason,
                        r.raw
                    ])?;
                    out.rejected += 1;
                }
            }
        }
        for o in observers.into_values() {
            if !o.clock.is_empty() {
                clocks.entry(o.idx).or_default().merge(o.clock);
            }
            // `last_seen` is NULL for an observer known only from retained history; SQL's
            // max() of NULL is NULL, hence the coalesce.
            tx.prepare_cached(
                "UPDATE observers SET packet_count = packet_count + ?2,
                    last_seen = max(coalesce(last_seen, ?3), ?3),
                    last_packet_at = max(coalesce(last_packet_at, ?3), ?3)
                 WHERE idx = ?1",
            )?
            .execute(params![o.idx, o.stored as i64, o.last])?;
        }
        write_clocks(&tx, &mut self.clocks, clocks)?;
        for (id, (first, last, new_obs)) in &touched {
            tx.prepare_cached(
                "UPDATE transmissions SET first_seen = min(first_seen, ?2),
                    last_seen = max(last_seen, ?3),
                    observation_count = observation_count + ?4
                 WHERE id = ?1",
            )?
            .execute(params![id, first, last, *new_obs as i64])?;
        }
        tx.commit()?;
        let mut refusals: Vec<(String, u64)> = refusals
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect();
        refusals.sort_unstable();
        self.observer_refusals = refusals;
        Ok(out)
    }

    /// Deletes up to `max` `observer_metrics` rows of buckets before `cutoff_ms`. Returns how
    /// many; call again until it returns 0.
    pub fn expire_observer_metrics(&mut self, cutoff_ms: i64, max: usize) -> Result<usize> {
        let n = self.conn.execute(
            "DELETE FROM observer_metrics WHERE (observer_idx, bucket) IN (
                SELECT observer_idx, bucket FROM observer_metrics WHERE bucket < ?1 LIMIT ?2)",
            params![cutoff_ms, max as i64],
        )?;
        Ok(n)
    }

    /// Deletes up to `max` transmissions last heard before `cutoff_ms`, with their
    /// observations, and rejected input older than the cutoff. Returns the number of
    /// transmissions deleted; call again until it returns 0.
    pub fn expire_packets(&mut self, cutoff_ms: i64, max: usize) -> Result<usize> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "CREATE TEMP TABLE IF NOT EXISTS expiring (id INTEGER PRIMARY KEY)",
            [],
        )?;
        tx.execute("DELETE FROM temp.expiring", [])?;
        let n = tx.execute(
            "INSERT INTO temp.expiring (id)
             SELECT id FROM transmissions WHERE last_seen < ?1 ORDER BY last_seen LIMIT ?2",
            params![cutoff_ms, max as i64],
        )?;
        tx.execute(
            "DELETE FROM observations WHERE transmission_id IN (SELECT id FROM temp.expiring)",
            [],
        )?;
        tx.execute(
            "DELETE FROM transmissions WHERE id IN (SELECT id FROM temp.expiring)",
            [],
        )?;
        tx.execute(
            "DELETE FROM rejected_packets WHERE id IN
               (SELECT id FROM rejected_packets WHERE received_at < ?1 LIMIT ?2)",
            params![cutoff_ms, max as i64],
        )?;
        tx.commit()?;
        if n > 0 {
            // Cached ids may now point at deleted rows.
            self.recent.ids.clear();
        }
        Ok(n)
    }

    /// Deletes up to `max` observers not heard since before `cutoff_ms` (last seen, or first
    /// known when never seen live) that no observation refers to any more. Returns how many;
    /// call again until it returns 0.
    ///
    /// Observations point at `observers.idx` (no foreign key, but every reader joins on it), so
    /// an observer whose observations remain stays until packet retention has removed them:
    /// a silent observer is gone at most the longer of the two retentions after it was last
    /// heard, and no stored observation ever loses its observer.
    ///
    /// Their `observer_metrics` rows go with them: rows are keyed by `idx`, which SQLite may
    /// give to the next new observer.
    pub fn expire_observers(&mut self, cutoff_ms: i64, max: usize) -> Result<usize> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "CREATE TEMP TABLE IF NOT EXISTS expiring_observers (idx INTEGER PRIMARY KEY)",
            [],
        )?;
        tx.execute("DELETE FROM temp.expiring_observers", [])?;
        let n = tx.execute(
            "INSERT INTO temp.expiring_observers (idx)
             SELECT ob.idx FROM observers ob
             WHERE (ob.last_seen < ?1 OR (ob.last_seen IS NULL AND ob.first_seen < ?1))
               AND NOT EXISTS (SELECT 1 FROM observations o WHERE o.observer_idx = ob.idx)
             LIMIT ?2",
            params![cutoff_ms, max as i64],
        )?;
        if n > 0 {
            tx.execute(
                "DELETE FROM observer_metrics
                 WHERE observer_idx IN (SELECT idx FROM temp.expiring_observers)",
                [],
            )?;
            tx.execute(
                "DELETE FROM observers WHERE idx IN (SELECT idx FROM temp.expiring_observers)",
                [],
            )?;
            for idx in expiring_observer_keys(&tx)? {
                self.clocks.by_observer.remove(&idx);
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Moves nodes silent since before `cutoff_ms` to `inactive_nodes`. Returns how many.
    pub fn deactivate_nodes(&mut self, cutoff_ms: i64) -> Result<usize> {
        let tx = self.conn.transaction()?;
        tx.execute(
            &format!(
                "INSERT OR REPLACE INTO inactive_nodes ({NODE_COLUMN_NAMES})
                 SELECT {NODE_COLUMN_NAMES} FROM nodes WHERE last_seen < ?1"
            ),
            [cutoff_ms],
        )?;
        let n = tx.execute("DELETE FROM nodes WHERE last_seen < ?1", [cutoff_ms])?;
        tx.commit()?;
        Ok(n)
    }

    /// Returns up to `pages` free pages to the file system.
    pub fn incremental_vacuum(&mut self, pages: u32) -> Result<()> {
        self.conn
            .execute_batch(&format!("PRAGMA incremental_vacuum({pages})"))?;
        Ok(())
    }

    /// Checkpoints the WAL into the main file and truncates it, waiting at most
    /// [`CHECKPOINT_WAIT`] for readers of an older snapshot. A reader that holds one longer (the
    /// capability cycle reads its whole window in one transaction: seconds at millions of
    /// observations) defers the truncation to the next checkpoint, and this one copies what
    /// that reader allows. It used to wait the full busy timeout (5 s), committing nothing
    /// meanwhile.
    pub fn checkpoint(&mut self) -> Result<Checkpoint> {
        self.checkpoint_waiting(CHECKPOINT_WAIT)
    }

    /// [`Writer::checkpoint`], waiting up to `wait` for readers (at shutdown, when nothing
    /// else waits on the writer, longer).
    pub fn checkpoint_waiting(&mut self, wait: std::time::Duration) -> Result<Checkpoint> {
        self.conn.busy_timeout(wait)?;
        let truncated = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        let blocked = match truncated {
            Ok(busy) => busy != 0,
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                true
            }
            Err(e) => return Err(e.into()),
        };
        if !blocked {
            return Ok(Checkpoint::Complete);
        }
        // Never waits: copies the frames no reader still needs.
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(Checkpoint::Deferred)
    }
}

/// How long the writer waits for a lock held by another connection.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest a maintenance checkpoint waits for readers of an older snapshot: the API's reads
/// take milliseconds; only a long scan holds one longer, and the writer must not stop for it.
pub const CHECKPOINT_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// What a checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// Every frame is in the database file and the WAL was truncated.
    Complete,
    /// A reader of an older snapshot kept some frames in the WAL: they wait for the next one.
    Deferred,
}

/// Writes a batch's clock readings: each observer's bucket medians, and its naive-clock
/// fields (CoreScope's `clock_skew_count_24h` counts the naive messages since the first
/// within 24 h of the last, restarting at a gap longer than that).
fn write_clocks(
    tx: &Connection,
    buckets: &mut ClockBuckets,
    clocks: HashMap<i64, ClockTally>,
) -> Result<()> {
    let upsert = |idx: i64, bucket: i64, median: i64, seen: i64| -> Result<()> {
        tx.prepare_cached(
            "INSERT INTO observer_metrics (observer_idx, bucket, clock_skew_ms, clock_samples)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(observer_idx, bucket) DO UPDATE SET
                clock_skew_ms = excluded.clock_skew_ms,
                clock_samples = excluded.clock_samples",
        )?
        .execute(params![idx, bucket, median, seen])?;
        Ok(())
    };
    for (idx, mut tally) in clocks {
        if !tally.offsets.is_empty() {
            tally.offsets.sort_by_key(|&(at, _)| at);
            for (b, m, n) in buckets.add(idx, &tally.offsets) {
                upsert(idx, b, m, n)?;
            }
        }
        if let Some((n, offset_ms, at)) = tally.naive {
            tx.prepare_cached(
                "UPDATE observers SET
                    clock_skew_count_24h = CASE
                        WHEN clock_last_naive_at IS NULL OR clock_last_naive_at < ?4 - 86400000
                        THEN ?2 ELSE clock_skew_count_24h + ?2 END,
                    clock_skew_seconds = ?3,
                    clock_last_naive_at = max(coalesce(clock_last_naive_at, ?4), ?4)
                 WHERE idx = ?1",
            )?
            .execute(params![idx, n, offset_ms.div_euclid(1000), at])?;
        }
    }
    Ok(())
}

fn expiring_observer_keys(tx: &Connection) -> Result<Vec<i64>> {
    let mut stmt = tx.prepare("SELECT idx FROM temp.expiring_observers")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<i64>>>()?)
}

/// The stored form of a packet hash: 16 lowercase hex digits.
pub fn hash_hex(hash: u64) -> String {
    format!("{hash:016x}")
}

/// Whether observer `id` may be written: known observers always, a new one only while the
/// budget (if any) has a token at ingest time `at_ms`.
fn admit_observer(
    tx: &Connection,
    budget: &mut Option<ObserverBudgets>,
    source: &str,
    id: &str,
    at_ms: i64,
) -> Result<bool> {
    let Some(budget) = budget else {
        return Ok(true);
    };
    let known = tx
        .prepare_cached("SELECT 1 FROM observers WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some();
    Ok(known || budget.take(source, at_ms))
}

fn upsert_observer(tx: &Connection, p: &PacketRecord) -> Result<i64> {
    let idx = tx
        .prepare_cached(
            "INSERT INTO observers (id, name, iata, first_seen, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT(id) DO UPDATE SET
                name = coalesce(excluded.name, name),
                iata = coalesce(excluded.iata, iata)
             RETURNING idx",
        )?
        .query_row(
            params![
                p.observer.id,
                p.observer.name,
                p.observer.iata,
                p.received_at
            ],
            |r| r.get(0),
        )?;
    Ok(idx)
}

/// Inserts the transmission if new. Returns its id and whether it was new.
fn insert_transmission(tx: &Connection, p: &PacketRecord) -> Result<(i64, bool)> {
    let added = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO transmissions
             (hash, raw, first_seen, last_seen, route_type, payload_type, payload_version,
              from_pubkey, channel, scope)
             VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            hash_hex(p.hash),
            p.raw,
            p.received_at,
            p.route_type,
            p.payload_type,
            p.payload_version,
            p.from_pubkey,
            p.channel,
            p.scope
        ])?;
    if added == 1 {
        return Ok((tx.last_insert_rowid(), true));
    }
    let id = tx
        .prepare_cached("SELECT id FROM transmissions WHERE hash = ?1")?
        .query_row([hash_hex(p.hash)], |r| r.get(0))?;
    Ok((id, false))
}

fn upsert_node(tx: &Connection, p: &PacketRecord, new_transmission: bool) -> Result<()> {
    let Some(a) = &p.advert else { return Ok(()) };
    // A node heard again comes back from inactive_nodes with its history.
    let revived = tx
        .prepare_cached(&format!(
            "INSERT OR IGNORE INTO nodes ({NODE_COLUMN_NAMES})
             SELECT {NODE_COLUMN_NAMES} FROM inactive_nodes WHERE public_key = ?1"
        ))?
        .execute([&a.public_key])?;
    if revived > 0 {
        tx.prepare_cached("DELETE FROM inactive_nodes WHERE public_key = ?1")?
            .execute([&a.public_key])?;
    }
    let (lat, lon) = a.location.unzip();
    // Name, role and location follow the newest advert by the node's own clock, so a late
    // copy of an old advert cannot roll them back.
    tx.prepare_cached(
        "INSERT INTO nodes (public_key, name, role, lat, lon, first_seen, last_seen,
                            advert_count, last_advert_time, last_advert_path_len, foreign_advert)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT(public_key) DO UPDATE SET
            foreign_advert = CASE WHEN excluded.last_advert_time >= coalesce(last_advert_time, 0)
                                  THEN excluded.foreign_advert ELSE foreign_advert END,
            name = CASE WHEN excluded.last_advert_time >= coalesce(last_advert_time, 0)
                        THEN excluded.name ELSE name END,
            role = CASE WHEN excluded.last_advert_time >= coalesce(last_advert_time, 0)
                        THEN excluded.role ELSE role END,
            lat = CASE WHEN excluded.last_advert_time >= coalesce(last_advert_time, 0)
                       THEN coalesce(excluded.lat, lat) ELSE lat END,
            lon = CASE WHEN excluded.last_advert_time >= coalesce(last_advert_time, 0)
                       THEN coalesce(excluded.lon, lon) ELSE lon END,
            last_seen = max(last_seen, excluded.last_seen),
            first_seen = min(first_seen, excluded.first_seen),
            advert_count = advert_count + excluded.advert_count,
            last_advert_path_len = excluded.last_advert_path_len,
            last_advert_time = max(coalesce(last_advert_time, 0), excluded.last_advert_time)",
    )?
    .execute(params![
        a.public_key,
        a.name,
        a.role.as_str(),
        lat,
        lon,
        p.received_at,
        i64::from(new_transmission),
        a.advert_time,
        p.path_len,
        a.foreign
    ])?;
    Ok(())
}

/// Status fields a message may carry; each is either updated (live) or only filled in when
/// unknown (retained). Their order is the order of the values bound in [`apply_status`].
const STATUS_FIELDS: [&str; 16] = [
    "name",
    "iata",
    "status",
    "model",
    "firmware",
    "client_version",
    "radio",
    "battery_mv",
    "uptime_secs",
    "noise_floor",
    "tx_air_secs",
    "rx_air_secs",
    "recv_errors",
    "queue_len",
    "debug_flags",
    "status_timestamp",
];

/// The upsert for a status: `?1` is the id, `?2..=?17` the [`STATUS_FIELDS`], then
/// `first_seen`, `last_seen`, `last_status_at` and `status_received_at`.
///
/// A live status overwrites what it carries and moves the freshness columns forward (never
/// back: a late copy of an older status cannot make an observer look older). A retained one
/// is history: it fills only NULL columns, so it can tell meshlens a model it did not know but
/// can never make an observer look alive.
fn status_upsert_sql(delivery: Delivery) -> String {
    let fields = STATUS_FIELDS.join(", ");
    let marks: Vec<String> = (2..STATUS_FIELDS.len() + 6)
        .map(|i| format!("?{i}"))
        .collect();
    // `freshness`: a column that says how recently the observer was heard.
    let update = |f: &str, freshness: bool| match (delivery, freshness) {
        (Delivery::Live, false) => format!("{f} = coalesce(excluded.{f}, {f})"),
        (Delivery::Live, true) => format!("{f} = max(coalesce({f}, excluded.{f}), excluded.{f})"),
        (Delivery::Retained, _) => format!("{f} = coalesce({f}, excluded.{f})"),
    };
    let mut set: Vec<String> = STATUS_FIELDS.iter().map(|f| update(f, false)).collect();
    set.push("first_seen = min(first_seen, excluded.first_seen)".into());
    set.extend(
        ["last_seen", "last_status_at", "status_received_at"]
            .iter()
            .map(|f| update(f, true)),
    );
    format!(
        "INSERT INTO observers (id, {fields}, first_seen, last_seen, last_status_at,
            status_received_at)
         VALUES (?1, {})
         ON CONFLICT(id) DO UPDATE SET {}
         RETURNING idx",
        marks.join(", "),
        set.join(",\n            ")
    )
}

static LIVE_STATUS_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| status_upsert_sql(Delivery::Live));
static RETAINED_STATUS_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| status_upsert_sql(Delivery::Retained));

/// Applies a status to its observer's row. Returns the observer's `idx` (None: no observer).
fn apply_status(tx: &Connection, s: &Status) -> Result<Option<i64>> {
    let Some(o) = &s.observer else {
        return Ok(None);
    };
    // The status' own time, never later than its arrival: a fast clock cannot make an observer
    // look seen in the future.
    let sent_at = s.sent_at.map(|t| t.min(s.received_at));
    let (sql, first_seen, seen_at, received_at) = match s.delivery {
        // Live: the observer spoke when it says it did (an uploader's last will carries the
        // time it was written, at connect, so a death notice does not count as a sign of
        // life), or when it arrived if it does not say.
        Delivery::Live => {
            let seen = sent_at.unwrap_or(s.received_at);
            (&*LIVE_STATUS_SQL, seen, Some(seen), Some(s.received_at))
        }
        // Retained: known only as old as its own time says; with no time it is not "seen" at
        // all. `first_seen` (when meshlens first knew of the observer) cannot be NULL.
        Delivery::Retained => (
            &*RETAINED_STATUS_SQL,
            sent_at.unwrap_or(s.received_at),
            sent_at,
            None,
        ),
    };
    let idx = tx.prepare_cached(sql)?.query_row(
        params![
            o.id,
            o.name,
            o.iata,
            s.status,
            s.model,
            s.firmware,
            s.client_version,
            s.radio,
            s.battery_mv,
            s.uptime_secs,
            s.noise_floor,
            s.tx_air_secs,
            s.rx_air_secs,
            s.recv_errors,
            s.queue_len,
            s.debug_flags,
            sent_at,
            first_seen,
            seen_at,
            seen_at,
            received_at
        ],
        |r| r.get(0),
    )?;
    Ok(Some(idx))
}

/// Adds a live status to its observer's `observer_metrics` bucket (by receipt time): one
/// upsert per status. Each metric aggregates as it is read: noise floor min/max/sum/count/last,
/// battery min/last, cumulative counters last, queue max/last, error flags OR-ed and last. A
/// field the status lacks leaves the bucket's value as it was.
fn record_metrics(tx: &Connection, idx: i64, s: &Status) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO observer_metrics (observer_idx, bucket, samples, last_at,
            noise_floor_min, noise_floor_max, noise_floor_sum, noise_floor_n, noise_floor_last,
            battery_mv_min, battery_mv_last, tx_air_secs, rx_air_secs, recv_errors, uptime_secs,
            queue_len_max, queue_len_last, debug_flags_any, debug_flags_last)
         VALUES (?1, ?2, 1, ?3, ?4, ?4, ?4, ?5, ?4, ?6, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?12)
         ON CONFLICT(observer_idx, bucket) DO UPDATE SET
            samples = samples + 1,
            last_at = max(coalesce(last_at, excluded.last_at), excluded.last_at),
            noise_floor_min = min(coalesce(noise_floor_min, excluded.noise_floor_min),
                                  coalesce(excluded.noise_floor_min, noise_floor_min)),
            noise_floor_max = max(coalesce(noise_floor_max, excluded.noise_floor_max),
                                  coalesce(excluded.noise_floor_max, noise_floor_max)),
            noise_floor_sum = CASE WHEN excluded.noise_floor_sum IS NULL THEN noise_floor_sum
                                   ELSE coalesce(noise_floor_sum, 0) + excluded.noise_floor_sum END,
            noise_floor_n = noise_floor_n + excluded.noise_floor_n,
            noise_floor_last = coalesce(excluded.noise_floor_last, noise_floor_last),
            battery_mv_min = min(coalesce(battery_mv_min, excluded.battery_mv_min),
                                 coalesce(excluded.battery_mv_min, battery_mv_min)),
            battery_mv_last = coalesce(excluded.battery_mv_last, battery_mv_last),
            tx_air_secs = coalesce(excluded.tx_air_secs, tx_air_secs),
            rx_air_secs = coalesce(excluded.rx_air_secs, rx_air_secs),
            recv_errors = coalesce(excluded.recv_errors, recv_errors),
            uptime_secs = coalesce(excluded.uptime_secs, uptime_secs),
            queue_len_max = max(coalesce(queue_len_max, excluded.queue_len_max),
                                coalesce(excluded.queue_len_max, queue_len_max)),
            queue_len_last = coalesce(excluded.queue_len_last, queue_len_last),
            debug_flags_any = CASE WHEN excluded.debug_flags_any IS NULL THEN debug_flags_any
                                   ELSE coalesce(debug_flags_any, 0) | excluded.debug_flags_any END,
            debug_flags_last = coalesce(excluded.debug_flags_last, debug_flags_last)",
    )?
    .execute(params![
        idx,
        metrics_bucket(s.received_at),
        s.received_at,
        s.noise_floor,
        i64::from(s.noise_floor.is_some()),
        s.battery_mv,
        s.tx_air_secs,
        s.rx_air_secs,
        s.recv_errors,
        s.uptime_secs,
        s.queue_len,
        s.debug_flags
    ])?;
    Ok(())
}

/// A capability value for one node, from the reader's snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct CapabilityUpdate {
    /// Public key.
    pub public_key: String,
    /// 1 = suspected, 2 = confirmed (anything else is refused).
    pub status: i64,
    /// `advert` or `path`.
    pub evidence: String,
    /// Largest path-hash size seen (2 or 3); `None` when the snapshot does not say, which
    /// leaves the stored size as it is (`NULL` stays `NULL`).
    pub max_hash_size: Option<i64>,
    /// First multi-byte evidence, Unix ms.
    pub upgraded_at: Option<i64>,
}

/// One link of the neighbor graph, as persisted.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighborEdge {
    /// One end's public key (hex).
    pub a: String,
    /// The other end's.
    pub b: String,
    /// Packets that put them next to each other.
    pub count: u32,
    /// Sum of the attributions' confidences.
    pub weight: f64,
    /// Unix ms.
    pub last_seen: i64,
    /// Sum of the SNRs (dB) of the observations that showed the link.
    pub snr_sum: f64,
    /// How many SNRs are summed (0: no samples).
    pub snr_count: u32,
    /// Ids of observers whose observations showed the link (the writer keeps at most
    /// [`MAX_STORED_EDGE_OBSERVERS`]).
    pub observers: Vec<String>,
    /// Distinct observers in all.
    pub observer_count: u32,
}

/// Most observer ids stored per link: the reader sends 8, and a row never grows beyond this.
pub const MAX_STORED_EDGE_OBSERVERS: usize = 16;

/// What applying a snapshot did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyCounts {
    /// Entries read.
    pub read: u64,
    /// Rows raised in `nodes`.
    pub updated_active: u64,
    /// Rows raised in `inactive_nodes`.
    pub updated_inactive: u64,
    /// Entries that would not raise anything (already at or above).
    pub unchanged: u64,
    /// Entries refused (unknown status, unknown node).
    pub skipped: u64,
}

impl Writer {
    /// Replaces the persisted neighbor graph with `edges` (one transaction). An empty graph
    /// never replaces a stored one: a cycle that saw no traffic says nothing about the links.
    /// Edges with an end that is not 64 hex digits, or a self-loop, are skipped. Returns the
    /// number of edges stored.
    pub fn replace_neighbor_edges(&mut self, edges: &[NeighborEdge]) -> Result<usize> {
        if edges.is_empty() {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM neighbor_edges", [])?;
        let mut stored = 0;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO neighbor_edges
                   (a, b, count, weight, last_seen, snr_sum, snr_count, observers, observer_count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            let key = |k: &str| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit());
            for e in edges {
                let (a, b) = (e.a.to_ascii_lowercase(), e.b.to_ascii_lowercase());
                if !key(&a) || !key(&b) || a == b {
                    continue;
                }
                let (a, b) = if a < b { (a, b) } else { (b, a) };
                // A sum that is not a number says nothing: no samples.
                let (snr_sum, snr_count) = if e.snr_sum.is_finite() {
                    (e.snr_sum, e.snr_count)
                } else {
                    (0.0, 0)
                };
                let observers = &e.observers[..e.observers.len().min(MAX_STORED_EDGE_OBSERVERS)];
                let observers_json =
                    serde_json::to_string(observers).unwrap_or_else(|_| "[]".to_owned());
                let observer_count = e
                    .observer_count
                    .max(u32::try_from(observers.len()).unwrap_or(u32::MAX));
                stmt.execute(params![
                    a,
                    b,
                    e.count,
                    e.weight,
                    e.last_seen,
                    snr_sum,
                    snr_count,
                    observers_json,
                    observer_count
                ])?;
                stored += 1;
            }
        }
        tx.commit()?;
        Ok(stored)
    }

    /// Persists capability values in one transaction, never lowering what is stored: a row is
    /// updated only when the entry raises its status, its largest size, or moves its upgrade
    /// time earlier. `nodes` first, else `inactive_nodes`.
    pub fn apply_capability(&mut self, entries: &[CapabilityUpdate]) -> Result<ApplyCounts> {
        let mut out = ApplyCounts::default();
        let tx = self.conn.transaction()?;
        for e in entries {
            out.read += 1;
            // The data-destruction guard: only suspected or confirmed values are ever written.
            if !(1..=2).contains(&e.status) || !matches!(e.evidence.as_str(), "advert" | "path") {
                out.skipped += 1;
                continue;
            }
            let max = e.max_hash_size.filter(|m| (2..=3).contains(m));
            let mut done = false;
            for (table, counter) in [
                ("nodes", &mut out.updated_active),
                ("inactive_nodes", &mut out.updated_inactive),
            ] {
                let n = tx
                    .prepare_cached(&format!(
                        "UPDATE {table} SET
                            multibyte_evidence = CASE WHEN ?2 > multibyte_sup THEN ?3 ELSE multibyte_evidence END,
                            multibyte_sup = max(multibyte_sup, ?2),
                            multibyte_max_hash_size = CASE WHEN ?4 IS NULL THEN multibyte_max_hash_size
                                ELSE max(coalesce(multibyte_max_hash_size, 0), ?4) END,
                            multibyte_upgraded_at = CASE
                                WHEN multibyte_upgraded_at IS NULL THEN ?5
                                WHEN ?5 IS NULL THEN multibyte_upgraded_at
                                ELSE min(multibyte_upgraded_at, ?5) END
                         WHERE public_key = ?1 AND (
                            ?2 > multibyte_sup
                            OR coalesce(?4, 0) > coalesce(multibyte_max_hash_size, 0)
                            OR (?5 IS NOT NULL AND (multibyte_upgraded_at IS NULL OR ?5 < multibyte_upgraded_at)))"
                    ))?
                    .execute(params![e.public_key, e.status, e.evidence, max, e.upgraded_at])?;
                if n > 0 {
                    *counter += 1;
                    done = true;
                    break;
                }
                let exists = tx
                    .prepare_cached(&format!("SELECT 1 FROM {table} WHERE public_key = ?1"))?
                    .query_row([&e.public_key], |_| Ok(()))
                    .optional()?
                    .is_some();
                if exists {
                    out.unchanged += 1;
                    done = true;
                    break;
                }
            }
            if !done {
                out.skipped += 1;
            }
        }
        tx.commit()?;
        Ok(out)
    }
}

/// Whether a node is currently in `nodes` (true) or `inactive_nodes` (false), or unknown.
pub fn node_is_active(conn: &Connection, public_key: &str) -> Result<Option<bool>> {
    if conn
        .query_row(
            "SELECT 1 FROM nodes WHERE public_key = ?1",
            [public_key],
            |_| Ok(()),
        )
        .optional()?
        .is_some()
    {
        return Ok(Some(true));
    }
    Ok(conn
        .query_row(
            "SELECT 1 FROM inactive_nodes WHERE public_key = ?1",
            [public_key],
            |_| Ok(()),
        )
        .optional()?
        .map(|()| false))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The in-memory clock buckets are bounded: per observer by the ring, in observers by the
    /// map, whatever arrives.
    #[test]
    fn clock_buckets_are_bounded() {
        let mut b = ClockBuckets::default();
        let readings: Vec<(i64, i64)> = (0..1000).map(|i| (i, i)).collect();
        let out = b.add(1, &readings);
        assert_eq!(out.len(), 1);
        let c = &b.by_observer[&1];
        assert_eq!((c.samples.len(), c.seen), (CLOCK_SAMPLES_PER_BUCKET, 1000));
        for idx in 0..(CLOCK_OBSERVERS as i64 + 10) {
            b.add(idx, &[(0, 1)]);
        }
        assert!(b.by_observer.len() <= CLOCK_OBSERVERS);
        // Hostile offsets never overflow the median.
        let out = b.add(7, &[(0, i64::MAX), (1, i64::MAX - 1)]);
        assert!(out.iter().all(|&(_, m, _)| m >= i64::MAX - 1));
    }
}
