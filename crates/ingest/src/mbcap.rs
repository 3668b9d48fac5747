//! The writer's side of the capability handoff (`multibyte-capability.md` §7.4): read the
//! reader's snapshot and persist it, never lowering what is stored. Runs on the writer thread
//! (the only writer), at start and every `--mbcap-persist-interval`, whether or not any broker
//! is reachable. A missing file is a silent no-op; a bad one is one log line and a counter.

use std::path::Path;

use store::{CapabilityUpdate, Writer};

use crate::stats::Stats;

/// Applies the snapshot at `path` if it is newer than `last_generation`.
pub fn apply(writer: &mut Writer, path: &Path, last_generation: &mut u64, stats: &Stats) {
    stats.incr("mbcap.runs");
    let snapshot = match handoff::read_snapshot(path) {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            stats.incr("mbcap.bad_snapshot");
            if stats.should_log("mbcap.bad_snapshot").is_some() {
                tracing::warn!("capability snapshot {} ignored: {e}", path.display());
            }
            return;
        }
    };
    if snapshot.generation <= *last_generation {
        stats.incr("mbcap.stale_generation");
        return;
    }
    let updates: Vec<CapabilityUpdate> = snapshot
        .entries
        .iter()
        .map(|e| CapabilityUpdate {
            public_key: e.public_key.to_ascii_lowercase(),
            status: e.status.as_int(),
            evidence: e.evidence.clone(),
            max_hash_size: Some(i64::from(e.max_hash_size)),
            upgraded_at: e.upgraded_at.as_deref().and_then(store::time::parse_time),
        })
        .collect();
    match writer.apply_capability(&updates) {
        Ok(c) => {
            *last_generation = snapshot.generation;
            stats.incr("mbcap.applied");
            stats.add("mbcap.read", c.read);
            stats.add("mbcap.updated_active", c.updated_active);
            stats.add("mbcap.updated_inactive", c.updated_inactive);
            stats.add("mbcap.unchanged", c.unchanged);
            stats.add("mbcap.skipped", c.skipped);
            if c.updated_active + c.updated_inactive > 0 {
                tracing::info!(
                    "capability persisted: {} raised ({} inactive), {} unchanged, {} skipped (generation {})",
                    c.updated_active + c.updated_inactive,
                    c.updated_inactive,
                    c.unchanged,
                    c.skipped,
                    snapshot.generation
                );
            }
        }
        Err(e) => {
            stats.incr("mbcap.errors");
            tracing::warn!("capability snapshot not applied: {e}");
        }
    }
}
