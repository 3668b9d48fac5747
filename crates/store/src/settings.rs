//! Run-time settings (`settings` table: JSON text by key) and the operator's deletions, both
//! asked for by the reader through the handoff queue and carried out here by the writer.

use rusqlite::{Connection, OptionalExtension, params};

use crate::{Result, Writer};

/// The key of the geo filter (CoreScope's `geo_filter` object, or `null` for none).
pub const GEO_FILTER: &str = "geo_filter";
/// The key remembering the config file's geo filter when the writer last started, so that
/// an edit of the file wins over an older change made through the API.
pub const GEO_FILTER_FROM_CONFIG: &str = "geo_filter_from_config";

/// Reads a setting through any connection (the reader's read-only one included). A database
/// without the table (an older schema) has no settings.
pub fn read_setting(conn: &Connection, key: &str) -> Result<Option<String>> {
    let r = conn
        .query_row(
            "SELECT value FROM settings WHERE key = ?1",
            params![key],
            |r| r.get(0),
        )
        .optional();
    match r {
        Ok(v) => Ok(v),
        Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such table") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Writer {
    /// Stores `value` (JSON text) under `key`.
    pub fn set_setting(&mut self, key: &str, value: &str, now_ms: i64) -> Result<()> {
        self.conn().execute(
            "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            params![key, value, now_ms],
        )?;
        Ok(())
    }

    /// A setting's value, if stored.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        read_setting(self.conn(), key)
    }

    /// Deletes these nodes (active or inactive; keys as stored, 64 lowercase hex). Their
    /// packets stay: they age out with retention. Returns how many rows went.
    pub fn delete_nodes(&mut self, public_keys: &[String]) -> Result<usize> {
        let tx = self.conn().unchecked_transaction()?;
        let mut deleted = 0;
        {
            let mut active = tx.prepare_cached("DELETE FROM nodes WHERE public_key = ?1")?;
            let mut inactive =
                tx.prepare_cached("DELETE FROM inactive_nodes WHERE public_key = ?1")?;
            for key in public_keys {
                deleted += active.execute(params![key])?;
                deleted += inactive.execute(params![key])?;
            }
        }
        tx.commit()?;
        Ok(deleted)
    }
}
