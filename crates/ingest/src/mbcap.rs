//! The writer's side of the capability handoff (`multibyte-capability.md` §7.4): read the
//! reader's snapshot and persist it, never lowering what is stored. Runs on the writer thread
//! (the only writer), at start and every `--mbcap-persist-interval`, whether or not any broker
//! is reachable. A missing file is a silent no-op; a bad one is one log line and a counter; a
//! bad entry in a good file is skipped and counted (`mbcap.entries_skipped`) while the other
//! entries are applied.
//!
//! Files from meshlens' reader carry every field; the seed (CoreScope) writes no `version` and
//! no `generation`, and entries with only `public_key`, `status` and `evidence` (omitted when
//! empty). Both are applied; a file without a generation is applied every time it is read
//! (see [`apply`]).

use std::path::Path;

use handoff::{Evidence, ReadEntry, SkippedEntries, Status};
use store::{ApplyCounts, CapabilityUpdate, Writer};

use crate::stats::Stats;

/// What one [`apply`] that reached the database did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The snapshot's generation, now the last applied; `None` for a file without one (the
    /// seed's), which leaves the last applied generation as it was.
    pub generation: Option<u64>,
    /// What the database did with the well-formed entries.
    pub counts: ApplyCounts,
    /// The entries left out because they were not well-formed, with the first reasons.
    pub skipped: SkippedEntries,
}

/// Applies the snapshot at `path` if it is newer than `last_generation`, or if it has no
/// generation at all (then every time). Returns what was applied, or `None` when nothing was
/// (no file, a bad file, an old generation, a database error; each is counted and, but for the
/// first, logged at a bounded rate).
pub fn apply(
    writer: &mut Writer,
    path: &Path,
    last_generation: &mut u64,
    stats: &Stats,
) -> Option<Applied> {
    stats.incr("mbcap.runs");
    let snapshot = match handoff::read_snapshot(path) {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => {
            stats.incr("mbcap.bad_snapshot");
            if stats.should_log("mbcap.bad_snapshot").is_some() {
                tracing::warn!("capability snapshot {} ignored: {e}", path.display());
            }
            return None;
        }
    };
    // A file without a generation (the seed writes none, §4.3) cannot be recognised as
    // already applied, so it is applied every time it is read rather than skipped when its
    // `writtenAt` equals the last applied file's:
    // - applying is idempotent: values are never lowered and unknown never overwrites, so an
    //   unchanged file raises nothing the second time; the cost is one transaction of lookups
    //   per persist interval, and the seed's own ingestor rewrites every row every tick (§4.4);
    // - `writtenAt` is the seed's wall clock as a string, not an identity: a clock step back
    //   or a caller-supplied time can repeat it for different contents, and a skipped update
    //   is lost until the next publish, while a redundant apply changes nothing; the seed never
    //   reads it either (§4.3);
    // - the only state the writer keeps is the last generation, and it stays that: such a
    //   file leaves `last_generation` alone, so meshlens' own files are still compared with
    //   the last of theirs.
    if let Some(generation) = snapshot.file_generation
        && generation <= *last_generation
    {
        stats.incr("mbcap.stale_generation");
        return None;
    }
    let mut skipped = snapshot.skipped;
    let updates: Vec<CapabilityUpdate> = snapshot
        .entries
        .iter()
        .filter_map(|e| {
            update_for(e)
                .map_err(|reason| {
                    // A key prefix is enough to find the node; logs never carry whole ids.
                    let prefix = e.public_key.get(..8).unwrap_or(&e.public_key);
                    skipped.push(format_args!("node {prefix}…: {reason}"));
                })
                .ok()
        })
        .collect();
    if skipped.count > 0 {
        stats.add("mbcap.entries_skipped", skipped.count);
        if let Some(suppressed) = stats.should_log("mbcap.entries_skipped") {
            tracing::warn!(
                "capability snapshot {}: {} malformed entries skipped ({}), e.g. {}{}",
                path.display(),
                skipped.count,
                GenerationOf(snapshot.file_generation),
                skipped.reasons.join("; "),
                if suppressed > 0 {
                    format!(" ({suppressed} similar reports suppressed)")
                } else {
                    String::new()
                }
            );
        }
    }
    match writer.apply_capability(&updates) {
        Ok(c) => {
            if let Some(generation) = snapshot.file_generation {
                *last_generation = generation;
            }
            stats.incr("mbcap.applied");
            stats.add("mbcap.read", c.read);
            stats.add("mbcap.updated_active", c.updated_active);
            stats.add("mbcap.updated_inactive", c.updated_inactive);
            stats.add("mbcap.unchanged", c.unchanged);
            stats.add("mbcap.skipped", c.skipped);
            if c.updated_active + c.updated_inactive > 0 {
                tracing::info!(
                    "capability persisted: {} raised ({} inactive), {} unchanged, {} skipped ({})",
                    c.updated_active + c.updated_inactive,
                    c.updated_inactive,
                    c.unchanged,
                    c.skipped,
                    GenerationOf(snapshot.file_generation)
                );
            }
            Some(Applied {
                generation: snapshot.file_generation,
                counts: c,
                skipped,
            })
        }
        Err(e) => {
            stats.incr("mbcap.errors");
            tracing::warn!("capability snapshot not applied: {e}");
            None
        }
    }
}

/// A snapshot's generation in a log line: `generation N`, or `no generation` (the seed's).
struct GenerationOf(Option<u64>);

impl std::fmt::Display for GenerationOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(generation) => write!(f, "generation {generation}"),
            None => f.write_str("no generation"),
        }
    }
}

/// The database update for a well-formed entry, filling in what the seed's format leaves
/// out; the error says why the entry is skipped.
fn update_for(e: &ReadEntry) -> Result<CapabilityUpdate, &'static str> {
    let upgraded_at = match e.upgraded_at.as_deref() {
        None => None,
        Some(text) => Some(store::time::parse_time(text).ok_or("upgraded_at is not a time")?),
    };
    // Absent evidence follows from the status (§7.2): confirmed rests on an advert, suspected
    // on path hops. An unknown entry gets none and is refused by `apply_capability`, so it
    // never overwrites what was known.
    let evidence = e.evidence.or(match e.status {
        Status::Confirmed => Some(Evidence::Advert),
        Status::Suspected => Some(Evidence::Path),
        Status::Unknown => None,
    });
    Ok(CapabilityUpdate {
        public_key: e.public_key.clone(),
        status: e.status.as_int(),
        evidence: evidence.map_or("", Evidence::as_str).to_owned(),
        // Absent (the seed never writes it): the status alone says "at least 2 bytes", since
        // only 2- and 3-byte hashes are evidence (§7.1), but not which. `None` leaves the
        // stored size as it is; a status without a size is served as 2 (the floor the reader
        // assumes for persisted values), so nothing is invented here that a later snapshot
        // with a real size of 3 would have to correct.
        max_hash_size: e.max_hash_size.map(i64::from),
        upgraded_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Decoder;
    use crate::message::{PacketMessage, TopicObserver};
    use meshcore::payload::{Advert, AppData, NodeType, public_key_of};
    use meshcore::{Packet, PathLen, PayloadType, Route};

    /// A database holding one repeater per seed, each from a real signed advert run through
    /// the ingest decoder.
    fn database(dir: &Path, seeds: &[[u8; 32]]) -> (Writer, Vec<String>) {
        let mut w = Writer::open(&dir.join("meshlens.db"), 0).unwrap();
        let decoder = Decoder::default();
        let mut keys = Vec::new();
        for seed in seeds {
            let mut appdata = Vec::new();
            AppData::new(NodeType::REPEATER, None, Some(b"rpt")).encode(&mut appdata);
            let mut payload = Vec::new();
            Advert::encode_signed(seed, 1_700_000_000, &appdata, &mut payload);
            let frame = Packet::new(
                Route::Flood,
                PayloadType::Advert,
                PathLen::ZERO,
                &[],
                &payload,
            )
            .unwrap()
            .to_bytes();
            let msg = PacketMessage {
                observer: TopicObserver {
                    id: "cd".repeat(32),
                    iata: "SEA".into(),
                },
                origin: None,
                region: None,
                raw: frame,
                snr: None,
                rssi: None,
                score: None,
                airtime_ms: None,
            };
            let (item, _) = decoder.item(msg, 1_000);
            w.write_batch(&[item]).unwrap();
            keys.push(hex::encode(public_key_of(seed)));
        }
        (w, keys)
    }

    fn capability(w: &Writer, key: &str) -> (i64, Option<String>, Option<i64>) {
        w.conn()
            .query_row(
                "SELECT multibyte_sup, multibyte_evidence, multibyte_max_hash_size
                 FROM nodes WHERE public_key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    }

    fn write_snapshot(dir: &Path, body: &str) -> std::path::PathBuf {
        let path = handoff::snapshot_path(dir);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn the_seeds_format_raises_known_nodes_and_unknown_leaves_them_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, keys) = database(dir.path(), &[[1; 32], [2; 32]]);
        // The second node already has a persisted value an "unknown" must not erase.
        w.conn()
            .execute(
                "UPDATE nodes SET multibyte_sup = 1, multibyte_evidence = 'path'
                 WHERE public_key = ?1",
                [&keys[1]],
            )
            .unwrap();
        // Exactly what the seed writes: no max_hash_size, no upgraded_at, evidence omitted
        // when empty.
        let path = write_snapshot(
            dir.path(),
            &format!(
                r#"{{"version":1,"generation":7,"writtenAt":"2026-11-25T18:00:00Z","entries":[{{"public_key":"{}","status":"confirmed","evidence":"advert"}},{{"public_key":"{}","status":"unknown"}}]}}"#,
                keys[0], keys[1]
            ),
        );
        let stats = Stats::default();
        let mut generation = 0;
        let applied = apply(&mut w, &path, &mut generation, &stats).expect("applied");
        assert_eq!(generation, 7);
        assert_eq!(applied.generation, Some(7));
        assert_eq!(applied.counts.updated_active, 1, "{applied:?}");
        assert_eq!(applied.counts.skipped, 1, "the unknown entry is refused");
        assert_eq!(applied.skipped.count, 0, "no entry is malformed");
        assert_eq!(
            capability(&w, &keys[0]),
            (2, Some("advert".into()), None),
            "confirmed without a size keeps the size unknown (served as 2)"
        );
        assert_eq!(capability(&w, &keys[1]), (1, Some("path".into()), None));
        assert_eq!(stats.get("mbcap.bad_snapshot"), 0);
        assert_eq!(stats.get("mbcap.entries_skipped"), 0);
        assert_eq!(stats.get("mbcap.updated_active"), 1);
    }

    #[test]
    fn the_seeds_file_without_version_or_generation_applies_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, keys) = database(dir.path(), &[[6; 32], [7; 32]]);
        w.conn()
            .execute(
                "UPDATE nodes SET multibyte_sup = 1, multibyte_evidence = 'path'
                 WHERE public_key = ?1",
                [&keys[1]],
            )
            .unwrap();
        // Exactly the seed's file (§4.3): no version, no generation, a Go RFC 3339 writtenAt,
        // entries with public_key, status and evidence (omitted when empty) only.
        let seed_file = format!(
            r#"{{"writtenAt":"2026-11-25T18:00:00.123456789Z","entries":[{{"public_key":"{}","status":"confirmed","evidence":"advert"}},{{"public_key":"{}","status":"unknown"}}]}}"#,
            keys[0], keys[1]
        );
        let path = write_snapshot(dir.path(), &seed_file);
        let stats = Stats::default();
        let mut generation = 0;
        let applied = apply(&mut w, &path, &mut generation, &stats).expect("applied");
        assert_eq!(applied.generation, None);
        assert_eq!(generation, 0, "no generation to remember");
        assert_eq!(applied.counts.updated_active, 1, "{applied:?}");
        assert_eq!(applied.counts.skipped, 1, "the unknown entry is refused");
        assert_eq!(applied.skipped.count, 0, "no entry is malformed");
        assert_eq!(capability(&w, &keys[0]), (2, Some("advert".into()), None));
        assert_eq!(
            capability(&w, &keys[1]),
            (1, Some("path".into()), None),
            "unknown left the stored value alone"
        );
        assert_eq!(stats.get("mbcap.bad_snapshot"), 0);

        // Read again, unchanged: applied again (it cannot be told from a new one), and
        // changes nothing.
        let again = apply(&mut w, &path, &mut generation, &stats).expect("applied again");
        assert_eq!(again.counts.updated_active, 0, "{again:?}");
        assert_eq!(again.counts.unchanged, 1);
        assert_eq!(again.counts.skipped, 1);
        assert_eq!(capability(&w, &keys[0]), (2, Some("advert".into()), None));
        assert_eq!(capability(&w, &keys[1]), (1, Some("path".into()), None));
        assert_eq!(stats.get("mbcap.applied"), 2);
        assert_eq!(stats.get("mbcap.stale_generation"), 0);

        // After one of meshlens' own files, a seed file is still applied and leaves the
        // generation alone: the same meshlens file again is still recognised as applied.
        let own = format!(
            r#"{{"version":1,"generation":12,"writtenAt":"2026-11-25T18:00:00.000Z","entries":[{{"public_key":"{}","status":"suspected","evidence":"path","max_hash_size":2,"upgraded_at":null}}]}}"#,
            keys[1]
        );
        write_snapshot(dir.path(), &own);
        assert!(apply(&mut w, &path, &mut generation, &stats).is_some());
        assert_eq!(generation, 12);
        write_snapshot(dir.path(), &seed_file);
        let after = apply(&mut w, &path, &mut generation, &stats).expect("applied");
        assert_eq!(after.generation, None);
        assert_eq!(generation, 12);
        write_snapshot(dir.path(), &own);
        assert_eq!(apply(&mut w, &path, &mut generation, &stats), None);
        assert_eq!(stats.get("mbcap.stale_generation"), 1);
        assert_eq!(stats.get("mbcap.applied"), 4);
    }

    #[test]
    fn another_version_is_refused_even_without_a_generation() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, keys) = database(dir.path(), &[[8; 32]]);
        let path = write_snapshot(
            dir.path(),
            &format!(
                r#"{{"version":2,"writtenAt":"2026-11-25T18:00:00Z","entries":[{{"public_key":"{}","status":"confirmed","evidence":"advert"}}]}}"#,
                keys[0]
            ),
        );
        let stats = Stats::default();
        let mut generation = 0;
        assert_eq!(apply(&mut w, &path, &mut generation, &stats), None);
        assert_eq!(stats.get("mbcap.bad_snapshot"), 1);
        assert_eq!(stats.get("mbcap.applied"), 0);
        assert_eq!(capability(&w, &keys[0]), (0, None, None));
    }

    #[test]
    fn a_malformed_entry_is_skipped_and_counted_and_the_others_apply() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, keys) = database(dir.path(), &[[3; 32], [4; 32], [5; 32]]);
        let upper = keys[2].to_ascii_uppercase();
        let path = write_snapshot(
            dir.path(),
            &format!(
                r#"{{"version":1,"generation":9,"writtenAt":"2026-11-25T18:00:00.000Z","entries":[
                    {{"public_key":"{k0}","status":"suspected"}},
                    {{"public_key":"not-a-key","status":"confirmed","evidence":"advert"}},
                    {{"public_key":"{k1}","status":"maybe"}},
                    {{"public_key":"{k1}","status":"confirmed","max_hash_size":"two"}},
                    {{"public_key":"{k1}","status":"confirmed","upgraded_at":"yesterday"}},
                    {{"public_key":"{upper}","status":"confirmed","evidence":"advert","max_hash_size":3,"upgraded_at":"2026-11-25T18:00:00.123Z"}}
                ]}}"#,
                k0 = keys[0],
                k1 = keys[1],
            ),
        );
        let stats = Stats::default();
        let mut generation = 0;
        let applied = apply(&mut w, &path, &mut generation, &stats).expect("applied");
        assert_eq!(applied.skipped.count, 4, "{:?}", applied.skipped);
        assert_eq!(stats.get("mbcap.entries_skipped"), 4);
        assert_eq!(stats.get("mbcap.bad_snapshot"), 0);
        assert_eq!(applied.skipped.reasons.len(), handoff::MAX_SKIP_REASONS);
        assert!(
            applied.skipped.reasons[0].contains("entry 1")
                && applied.skipped.reasons[0].contains("public_key"),
            "{:?}",
            applied.skipped.reasons
        );
        assert_eq!(applied.counts.updated_active, 2);
        assert_eq!(capability(&w, &keys[0]), (1, Some("path".into()), None));
        assert_eq!(
            capability(&w, &keys[1]),
            (0, None, None),
            "every entry was bad"
        );
        assert_eq!(
            capability(&w, &keys[2]),
            (2, Some("advert".into()), Some(3))
        );
        let upgraded: Option<i64> = w
            .conn()
            .query_row(
                "SELECT multibyte_upgraded_at FROM nodes WHERE public_key = ?1",
                [&keys[2]],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(upgraded, Some(1_795_629_600_123));
    }
}
