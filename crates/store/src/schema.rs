//! The schema as an ordered list of named, versioned migrations. `PRAGMA user_version` holds
//! how many have run; each runs in its own transaction, so a crash mid-migration leaves the
//! previous version intact, and running them again is a no-op.

use rusqlite::Connection;

use crate::{Error, Result};

/// A named migration step.
pub struct Migration {
    /// Stable name, recorded in `schema_migrations`.
    pub name: &'static str,
    /// What it does.
    apply: fn(&Connection) -> rusqlite::Result<()>,
}

/// Every migration, in order. Never edit or reorder a released one; append.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "base_v1",
        apply: base_v1,
    },
    Migration {
        name: "multibyte_sup_v1",
        apply: multibyte_sup_v1,
    },
    Migration {
        name: "channel_type_index_v1",
        apply: channel_type_index_v1,
    },
    Migration {
        name: "multibyte_detail_v1",
        apply: multibyte_detail_v1,
    },
    Migration {
        name: "observer_freshness_v1",
        apply: observer_freshness_v1,
    },
    Migration {
        name: "observation_airtime_v1",
        apply: observation_airtime_v1,
    },
    Migration {
        name: "settings_v1",
        apply: settings_v1,
    },
    Migration {
        name: "observer_metrics_v1",
        apply: observer_metrics_v1,
    },
    Migration {
        name: "node_foreign_v1",
        apply: node_foreign_v1,
    },
    Migration {
        name: "neighbor_edges_v1",
        apply: neighbor_edges_v1,
    },
    Migration {
        name: "neighbor_edges_v2",
        apply: neighbor_edges_v2,
    },
    Migration {
        name: "nodes_page_index_v1",
        apply: nodes_page_index_v1,
    },
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings `conn` up to [`SCHEMA_VERSION`]. Returns how many migrations ran.
pub(crate) fn migrate(conn: &mut Connection, now_ms: i64) -> Result<usize> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    let mut ran = 0;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let tx = conn.transaction()?;
        (m.apply)(&tx)?;
        tx.execute(
            "INSERT OR REPLACE INTO schema_migrations(version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![i as i64 + 1, m.name, now_ms],
        )?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        ran += 1;
    }
    Ok(ran)
}

/// The columns shared by `nodes` and `inactive_nodes`.
const NODE_COLUMNS: &str = "
    public_key TEXT PRIMARY KEY NOT NULL,
    name TEXT,
    role TEXT NOT NULL,
    lat REAL,
    lon REAL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    advert_count INTEGER NOT NULL DEFAULT 0,
    last_advert_time INTEGER,
    last_advert_path_len INTEGER";

fn base_v1(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(&format!(
        "
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at INTEGER NOT NULL
        );

        -- Observer radios, keyed by the pubkey in their MQTT topic. `idx` keeps observation
        -- rows small.
        CREATE TABLE IF NOT EXISTS observers (
            idx INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            name TEXT,
            iata TEXT,
            status TEXT,
            model TEXT,
            firmware TEXT,
            client_version TEXT,
            radio TEXT,
            battery_mv INTEGER,
            uptime_secs INTEGER,
            noise_floor REAL,
            tx_air_secs INTEGER,
            rx_air_secs INTEGER,
            recv_errors INTEGER,
            first_seen INTEGER NOT NULL,
            last_seen INTEGER NOT NULL,
            last_packet_at INTEGER,
            last_status_at INTEGER,
            packet_count INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS observers_last_seen ON observers(last_seen);

        -- One row per unique packet. `raw` is the frame as first heard; the payload is the
        -- same in every copy, only the part before it differs (see observations.head).
        CREATE TABLE IF NOT EXISTS transmissions (
            id INTEGER PRIMARY KEY,
            hash TEXT NOT NULL UNIQUE,
            raw BLOB NOT NULL,
            first_seen INTEGER NOT NULL,
            last_seen INTEGER NOT NULL,
            route_type INTEGER NOT NULL,
            payload_type INTEGER NOT NULL,
            payload_version INTEGER NOT NULL,
            observation_count INTEGER NOT NULL DEFAULT 0,
            from_pubkey TEXT,
            channel TEXT,
            scope TEXT
        );
        CREATE INDEX IF NOT EXISTS transmissions_first_seen ON transmissions(first_seen);
        CREATE INDEX IF NOT EXISTS transmissions_last_seen ON transmissions(last_seen);
        CREATE INDEX IF NOT EXISTS transmissions_type ON transmissions(payload_type, first_seen);
        CREATE INDEX IF NOT EXISTS transmissions_from
            ON transmissions(from_pubkey, first_seen) WHERE from_pubkey IS NOT NULL;
        CREATE INDEX IF NOT EXISTS transmissions_channel
            ON transmissions(channel, first_seen) WHERE channel IS NOT NULL;

        -- One row per (transmission, observer, frame head): `head` is the frame up to the
        -- payload (header, transport codes, path-length byte, path), so the exact frame an
        -- observer heard is head || payload, and a different path is a different row.
        CREATE TABLE IF NOT EXISTS observations (
            id INTEGER PRIMARY KEY,
            transmission_id INTEGER NOT NULL,
            observer_idx INTEGER NOT NULL,
            received_at INTEGER NOT NULL,
            path_len INTEGER NOT NULL,
            head BLOB NOT NULL,
            snr REAL,
            rssi REAL,
            score INTEGER,
            UNIQUE (transmission_id, observer_idx, head)
        );
        CREATE INDEX IF NOT EXISTS observations_received ON observations(received_at);
        CREATE INDEX IF NOT EXISTS observations_observer
            ON observations(observer_idx, received_at);

        -- Nodes known from adverts whose signature verified; silent ones move to
        -- inactive_nodes and come back when heard.
        CREATE TABLE IF NOT EXISTS nodes ({NODE_COLUMNS});
        CREATE INDEX IF NOT EXISTS nodes_last_seen ON nodes(last_seen);
        CREATE TABLE IF NOT EXISTS inactive_nodes ({NODE_COLUMNS});
        CREATE INDEX IF NOT EXISTS inactive_nodes_last_seen ON inactive_nodes(last_seen);

        -- Input that was refused (invalid frames, forged adverts), with the reason.
        CREATE TABLE IF NOT EXISTS rejected_packets (
            id INTEGER PRIMARY KEY,
            received_at INTEGER NOT NULL,
            observer_id TEXT,
            reason TEXT NOT NULL,
            hash TEXT,
            raw BLOB
        );
        CREATE INDEX IF NOT EXISTS rejected_packets_received ON rejected_packets(received_at);
        "
    ))
}

fn has_column(c: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut stmt = c.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
    for n in names {
        if n? == column {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Multi-byte path-hash capability persisted from the reader's snapshot.
fn multibyte_sup_v1(c: &Connection) -> rusqlite::Result<()> {
    for table in ["nodes", "inactive_nodes"] {
        if !has_column(c, table, "multibyte_sup")? {
            c.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN multibyte_sup INTEGER NOT NULL DEFAULT 0"
            ))?;
        }
        if !has_column(c, table, "multibyte_evidence")? {
            c.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN multibyte_evidence TEXT"
            ))?;
        }
    }
    Ok(())
}

/// Channel listings filter on channel and payload type together; with the type in the index
/// they are answered from the index alone.
fn channel_type_index_v1(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "DROP INDEX IF EXISTS transmissions_channel;
         CREATE INDEX IF NOT EXISTS transmissions_channel_type
            ON transmissions(channel, payload_type, first_seen) WHERE channel IS NOT NULL;",
    )
}

/// The largest path-hash size seen and when multi-byte evidence first appeared, so that a
/// restart serves them as they were.
fn multibyte_detail_v1(c: &Connection) -> rusqlite::Result<()> {
    for table in ["nodes", "inactive_nodes"] {
        for column in ["multibyte_max_hash_size", "multibyte_upgraded_at"] {
            if !has_column(c, table, column)? {
                c.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} INTEGER"))?;
            }
        }
    }
    Ok(())
}

/// Whether `column` of `table` is declared NOT NULL.
fn is_not_null(c: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut stmt = c.prepare(&format!("PRAGMA table_info({table})"))?;
    let cols = stmt.query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, bool>(3)?)))?;
    for col in cols {
        let (name, not_null) = col?;
        if name == column {
            return Ok(not_null);
        }
    }
    Ok(false)
}

/// Observer freshness that only live messages set, and the status fields the uploader sends.
///
/// `observers.last_seen` becomes nullable: an observer known only from a broker's retained
/// status (history of unknown age) has no honest "last seen" unless the status carries its own
/// time, and any made-up value would either look fresh or look like 1970. SQLite cannot drop a
/// NOT NULL constraint in place, so the table is rebuilt with the same rows and `idx` values
/// (observations refer to them). Then:
/// - `status_timestamp`: the last status' own `timestamp`, as the uploader sent it;
/// - `status_received_at`: when meshlens received the last live status;
/// - `queue_len`, `debug_flags`: from the uploader's stats (transmit queue, firmware error
///   flags).
fn observer_freshness_v1(c: &Connection) -> rusqlite::Result<()> {
    if is_not_null(c, "observers", "last_seen")? {
        const COLUMNS: &str = "idx, id, name, iata, status, model, firmware, client_version, \
            radio, battery_mv, uptime_secs, noise_floor, tx_air_secs, rx_air_secs, recv_errors, \
            first_seen, last_seen, last_packet_at, last_status_at, packet_count";
        c.execute_batch(&format!(
            "
            CREATE TABLE observers_rebuilt (
                idx INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                name TEXT,
                iata TEXT,
                status TEXT,
                model TEXT,
                firmware TEXT,
                client_version TEXT,
                radio TEXT,
                battery_mv INTEGER,
                uptime_secs INTEGER,
                noise_floor REAL,
                tx_air_secs INTEGER,
                rx_air_secs INTEGER,
                recv_errors INTEGER,
                first_seen INTEGER NOT NULL,
                last_seen INTEGER,
                last_packet_at INTEGER,
                last_status_at INTEGER,
                packet_count INTEGER NOT NULL DEFAULT 0
            );
            INSERT INTO observers_rebuilt ({COLUMNS}) SELECT {COLUMNS} FROM observers;
            DROP TABLE observers;
            ALTER TABLE observers_rebuilt RENAME TO observers;
            CREATE INDEX IF NOT EXISTS observers_last_seen ON observers(last_seen);
            "
        ))?;
    }
    for column in [
        "status_timestamp",
        "status_received_at",
        "queue_len",
        "debug_flags",
    ] {
        if !has_column(c, "observers", column)? {
            c.execute_batch(&format!(
                "ALTER TABLE observers ADD COLUMN {column} INTEGER"
            ))?;
        }
    }
    Ok(())
}

/// Each observation's airtime as the observer's firmware estimated it (ms).
fn observation_airtime_v1(c: &Connection) -> rusqlite::Result<()> {
    if !has_column(c, "observations", "airtime_ms")? {
        c.execute_batch("ALTER TABLE observations ADD COLUMN airtime_ms INTEGER")?;
    }
    Ok(())
}

/// Settings an operator changes at run time (the geo filter), as JSON text by key; the
/// writer stores them, the reader reads them.
fn settings_v1(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS settings (
            key TEXT PRIMARY KEY NOT NULL,
            value TEXT NOT NULL,
            updated_at INTEGER NOT NULL
        )",
    )
}

/// The neighbor graph the reader last published (`handoff::graph`), persisted by the writer so
/// that a restarted reader serves it at once. One row per undirected link, `a < b`.
fn neighbor_edges_v1(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS neighbor_edges (
            a TEXT NOT NULL,
            b TEXT NOT NULL,
            count INTEGER NOT NULL,
            weight REAL NOT NULL,
            last_seen INTEGER NOT NULL,
            PRIMARY KEY (a, b)
        ) WITHOUT ROWID",
    )
}

/// Per-edge observers and SNR (CoreScope's `observers` and `avg_snr` on a link), so that a
/// restarted reader serves them with the graph: `snr_sum`/`snr_count` over the observations
/// that showed the link, `observers` a JSON array of (at most 8) observer ids, and
/// `observer_count` the distinct observers in all. Rows from v1 get no samples and no
/// observers until the next graph replaces them.
fn neighbor_edges_v2(c: &Connection) -> rusqlite::Result<()> {
    for (column, decl) in [
        ("snr_sum", "REAL NOT NULL DEFAULT 0"),
        ("snr_count", "INTEGER NOT NULL DEFAULT 0"),
        ("observers", "TEXT NOT NULL DEFAULT '[]'"),
        ("observer_count", "INTEGER NOT NULL DEFAULT 0"),
    ] {
        if !has_column(c, "neighbor_edges", column)? {
            c.execute_batch(&format!(
                "ALTER TABLE neighbor_edges ADD COLUMN {column} {decl}"
            ))?;
        }
    }
    Ok(())
}

/// The node list's order (`last_seen DESC, public_key`) as an index, replacing the one on
/// `last_seen` alone: a page of `/api/nodes` is then a range of the index and 50 row reads,
/// where it was every row up to the page's end read from the table and sorted again for the
/// ties. The index is no larger and serves the same `last_seen` range queries.
fn nodes_page_index_v1(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "DROP INDEX IF EXISTS nodes_last_seen;
         CREATE INDEX IF NOT EXISTS nodes_last_seen_key ON nodes(last_seen DESC, public_key);",
    )
}

/// Nodes whose latest advert placed them outside the geo filter (CoreScope's `foreign`).
fn node_foreign_v1(c: &Connection) -> rusqlite::Result<()> {
    for table in ["nodes", "inactive_nodes"] {
        if !has_column(c, table, "foreign_advert")? {
            c.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN foreign_advert INTEGER NOT NULL DEFAULT 0"
            ))?;
        }
    }
    Ok(())
}

/// Observer history and clocks.
///
/// - `observer_metrics`: one row per observer per 5-minute bucket of meshlens' receipt time
///   (`bucket`, Unix ms of its start), aggregated from the live status messages that arrived in
///   it (`samples` of them): noise floor min/max/sum/count/last (an average needs the sum and
///   the count, a spike needs the max), battery min and last, the cumulative counters (airtime,
///   receive errors, uptime) as their last value (rates are differences between buckets), the
///   transmit queue's max and last, the firmware's error flags OR-ed over the bucket and last.
///   `clock_skew_ms` is the median of the bucket's clock readings (envelope time minus receipt,
///   from packets and statuses; `clock_samples` of them), so a row may exist with
///   `samples = 0` for an observer that sent packets but no status. Keyed by `observers.idx`
///   to keep rows small; the writer deletes an observer's rows with it. `WITHOUT ROWID`: the
///   key is the row's only lookup.
/// - `observers.clock_*`: the last zone-less envelope time too far from its arrival to be a
///   clock error (a local time written without its zone), CoreScope's naive-clock fields:
///   the offset (s), how many such messages in the 24 h before the last one, and when.
/// - `rejected_packets(hash)`: the reader leaves adverts with a refused signature out of node
///   clock skew by this lookup.
fn observer_metrics_v1(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "
        CREATE TABLE IF NOT EXISTS observer_metrics (
            observer_idx INTEGER NOT NULL,
            bucket INTEGER NOT NULL,
            samples INTEGER NOT NULL DEFAULT 0,
            last_at INTEGER,
            noise_floor_min REAL,
            noise_floor_max REAL,
            noise_floor_sum REAL,
            noise_floor_n INTEGER NOT NULL DEFAULT 0,
            noise_floor_last REAL,
            battery_mv_min INTEGER,
            battery_mv_last INTEGER,
            tx_air_secs INTEGER,
            rx_air_secs INTEGER,
            recv_errors INTEGER,
            uptime_secs INTEGER,
            queue_len_max INTEGER,
            queue_len_last INTEGER,
            debug_flags_any INTEGER,
            debug_flags_last INTEGER,
            clock_skew_ms INTEGER,
            clock_samples INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (observer_idx, bucket)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS observer_metrics_bucket ON observer_metrics(bucket);
        CREATE INDEX IF NOT EXISTS rejected_packets_hash
            ON rejected_packets(hash) WHERE hash IS NOT NULL;
        ",
    )?;
    for (column, decl) in [
        ("clock_skew_seconds", "INTEGER"),
        ("clock_skew_count_24h", "INTEGER NOT NULL DEFAULT 0"),
        ("clock_last_naive_at", "INTEGER"),
    ] {
        if !has_column(c, "observers", column)? {
            c.execute_batch(&format!("ALTER TABLE observers ADD COLUMN {column} {decl}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database from before `observer_freshness_v1` keeps its observers, their `idx` (which
    /// observations point at) and every value, and then accepts an observer never seen.
    #[test]
    fn observer_freshness_keeps_existing_rows() {
        let mut c = Connection::open_in_memory().unwrap();
        let before = MIGRATIONS
            .iter()
            .position(|m| m.name == "observer_freshness_v1")
            .unwrap();
        for m in &MIGRATIONS[..before] {
            (m.apply)(&c).unwrap();
        }
        c.pragma_update(None, "user_version", before as i64)
            .unwrap();
        c.execute_batch(
            "INSERT INTO observers (idx, id, model, first_seen, last_seen, packet_count)
             VALUES (7, 'abc', 'T-Beam', 10, 20, 3);",
        )
        .unwrap();
        assert!(
            c.execute(
                "INSERT INTO observers (id, first_seen) VALUES ('never', 1)",
                []
            )
            .is_err()
        );
        assert_eq!(migrate(&mut c, 99).unwrap(), MIGRATIONS.len() - before);
        let row: (i64, String, i64, i64, i64, Option<i64>) = c
            .query_row(
                "SELECT idx, model, first_seen, last_seen, packet_count, queue_len
                 FROM observers WHERE id = 'abc'",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(row, (7, "T-Beam".into(), 10, 20, 3, None));
        c.execute(
            "INSERT INTO observers (id, first_seen) VALUES ('never', 1)",
            [],
        )
        .unwrap();
        let indexed: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'observers_last_seen'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexed, 1);
        // Running the steps again changes nothing.
        for m in &MIGRATIONS[before..] {
            (m.apply)(&c).unwrap();
        }
        let n: i64 = c
            .query_row("SELECT count(*) FROM observers", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }
}
