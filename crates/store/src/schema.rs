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
