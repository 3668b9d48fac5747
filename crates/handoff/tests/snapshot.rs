//! Publishing and reading the capability snapshot on real files: round trips, generations,
//! torn writes and hostile snapshot files.

use std::fs;
use std::path::Path;

use handoff::{
    Entry, Evidence, MAX_SKIP_REASONS, MAX_SNAPSHOT_BYTES, Outcome, Publisher, ReadEntry,
    ReadError, SNAPSHOT_DIR, Snapshot, Status, format_rfc3339_ms, read_snapshot, snapshot_path,
};

fn entry(n: u32, status: Status) -> Entry {
    Entry {
        public_key: format!("{n:064x}"),
        status,
        evidence: match status {
            Status::Confirmed => "advert".into(),
            Status::Suspected => "path".into(),
            Status::Unknown => String::new(),
        },
        max_hash_size: 2,
        upgraded_at: n
            .is_multiple_of(2)
            .then(|| "2026-11-25T18:00:00.123Z".to_string()),
    }
}

/// The entries of a snapshot our own publisher wrote, back in the form they were published
/// in. Such a file has no entry to skip and every field present.
fn published(snapshot: &Snapshot) -> Vec<Entry> {
    assert_eq!(snapshot.skipped.count, 0, "{:?}", snapshot.skipped);
    snapshot
        .entries
        .iter()
        .map(|e: &ReadEntry| Entry {
            public_key: e.public_key.clone(),
            status: e.status,
            evidence: e.evidence.map_or("", Evidence::as_str).to_owned(),
            max_hash_size: e.max_hash_size.expect("the publisher writes max_hash_size"),
            upgraded_at: e.upgraded_at.clone(),
        })
        .collect()
}

fn written(outcome: Outcome) -> (u64, usize) {
    match outcome {
        Outcome::Written {
            generation,
            entries,
        } => (generation, entries),
        Outcome::Coalesced => panic!("a lone publisher never coalesces"),
    }
}

fn read(data_dir: &Path) -> Snapshot {
    read_snapshot(&snapshot_path(data_dir))
        .expect("readable")
        .expect("present")
}

/// `2026-11-25T18:00:00.123Z`-shaped.
fn is_rfc3339_ms_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn snapshot_path_is_under_the_data_dir() {
    assert_eq!(
        snapshot_path(Path::new("/data")),
        Path::new("/data/mbcap-snapshot/snapshot.json")
    );
}

#[test]
fn publish_then_read_round_trips_and_drops_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let publisher = Publisher::new(dir.path());
    assert!(
        !dir.path().join(SNAPSHOT_DIR).exists(),
        "new() must not touch the disk"
    );
    let all = vec![
        entry(1, Status::Confirmed),
        entry(2, Status::Unknown),
        entry(3, Status::Suspected),
        entry(4, Status::Confirmed),
    ];
    let (generation, count) = written(publisher.publish(all.clone()).unwrap());
    assert_eq!(count, 3);
    assert_eq!(publisher.generation(), generation);

    let snapshot = read(dir.path());
    assert_eq!(snapshot.version, 1);
    assert_eq!(snapshot.generation, generation);
    assert_eq!(snapshot.file_generation, Some(generation));
    let kept: Vec<Entry> = all
        .into_iter()
        .filter(|e| e.status != Status::Unknown)
        .collect();
    assert_eq!(published(&snapshot), kept);
    assert!(
        is_rfc3339_ms_utc(&snapshot.written_at),
        "{}",
        snapshot.written_at
    );

    // The raw file uses the spec's field names.
    let raw: serde_json::Value =
        serde_json::from_slice(&fs::read(snapshot_path(dir.path())).unwrap()).unwrap();
    let object = raw.as_object().unwrap();
    for key in ["version", "generation", "writtenAt", "entries"] {
        assert!(object.contains_key(key), "missing {key} in {raw}");
    }
    let first = raw["entries"][0].as_object().unwrap();
    for key in [
        "public_key",
        "status",
        "evidence",
        "max_hash_size",
        "upgraded_at",
    ] {
        assert!(first.contains_key(key), "missing {key} in {raw}");
    }
    assert_eq!(raw["entries"][0]["status"], "confirmed");
    assert_eq!(raw["entries"][1]["status"], "suspected");
}

#[test]
fn publishing_nothing_writes_an_empty_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let publisher = Publisher::new(dir.path());
    publisher
        .publish(vec![entry(1, Status::Confirmed)])
        .unwrap();
    let (_, count) = written(publisher.publish(vec![entry(2, Status::Unknown)]).unwrap());
    assert_eq!(count, 0);
    assert!(read(dir.path()).entries.is_empty());
}

#[test]
fn generation_increases_across_calls_and_publishers() {
    let dir = tempfile::tempdir().unwrap();
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let publisher = Publisher::new(dir.path());
    assert_eq!(publisher.generation(), 0);
    let mut last = 0;
    for i in 0..5 {
        let (generation, _) = written(
            publisher
                .publish(vec![entry(i, Status::Confirmed)])
                .unwrap(),
        );
        assert!(generation > last, "{generation} after {last}");
        assert_eq!(read(dir.path()).generation, generation);
        last = generation;
    }
    assert!(
        last >= before_ms,
        "starts from the clock: {last} < {before_ms}"
    );

    // A restarted reader continues above the file's generation.
    drop(publisher);
    let restarted = Publisher::new(dir.path());
    let (generation, _) = written(restarted.publish(vec![]).unwrap());
    assert!(
        generation > last,
        "{generation} after restart, {last} before"
    );
    assert_eq!(restarted.generation(), generation);
}

#[test]
fn generation_continues_above_a_file_from_the_future() {
    let dir = tempfile::tempdir().unwrap();
    let path = snapshot_path(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let far = u64::MAX / 2;
    fs::write(
        &path,
        format!(r#"{{"version":1,"generation":{far},"writtenAt":"x","entries":[]}}"#),
    )
    .unwrap();
    let publisher = Publisher::new(dir.path());
    let (generation, _) = written(publisher.publish(vec![]).unwrap());
    assert_eq!(generation, far + 1);
}

#[test]
fn generation_ignores_an_unreadable_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = snapshot_path(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, b"{\"version\":1,\"generation\":").unwrap();
    let publisher = Publisher::new(dir.path());
    let (generation, _) = written(
        publisher
            .publish(vec![entry(7, Status::Suspected)])
            .unwrap(),
    );
    assert_eq!(read(dir.path()).generation, generation);
    assert!(
        generation > 1_700_000_000_000,
        "from the clock: {generation}"
    );
}

#[test]
fn missing_directories_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("not").join("yet");
    let publisher = Publisher::new(&data_dir);
    written(
        publisher
            .publish(vec![entry(1, Status::Confirmed)])
            .unwrap(),
    );
    assert!(data_dir.join(SNAPSHOT_DIR).is_dir());
    assert_eq!(read(&data_dir).entries.len(), 1);
}

#[test]
fn leftover_partial_temp_file_does_not_affect_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let publisher = Publisher::new(dir.path());
    let (first, _) = written(
        publisher
            .publish(vec![entry(1, Status::Confirmed)])
            .unwrap(),
    );
    let snapshot_dir = dir.path().join(SNAPSHOT_DIR);
    // What a reader killed mid-write leaves behind.
    let garbage = snapshot_dir.join(".tmpAbC123");
    fs::write(
        &garbage,
        b"{\"version\":1,\"generation\":99999999999999,\"entr\x00\xff",
    )
    .unwrap();
    let snapshot = read(dir.path());
    assert_eq!(snapshot.generation, first);
    assert_eq!(published(&snapshot), vec![entry(1, Status::Confirmed)]);

    let (second, _) = written(
        publisher
            .publish(vec![entry(2, Status::Suspected)])
            .unwrap(),
    );
    let snapshot = read(dir.path());
    assert_eq!(snapshot.generation, second);
    assert_eq!(published(&snapshot), vec![entry(2, Status::Suspected)]);
    // A fresh leftover is not ours to remove (it may be another publisher's in-flight file).
    assert!(garbage.exists());

    // Our own temp files never survive a successful publish.
    let leftovers: Vec<_> = fs::read_dir(&snapshot_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "snapshot.json" && n != ".tmpAbC123")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn stale_temp_files_are_swept_on_first_publish() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot_dir = dir.path().join(SNAPSHOT_DIR);
    fs::create_dir_all(&snapshot_dir).unwrap();
    let stale = snapshot_dir.join(".tmpOld001");
    let file = fs::File::create(&stale).unwrap();
    file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    drop(file);
    let unrelated = snapshot_dir.join("notes.txt");
    fs::write(&unrelated, b"keep").unwrap();
    Publisher::new(dir.path()).publish(vec![]).unwrap();
    assert!(!stale.exists());
    assert!(unrelated.exists());
}

#[test]
fn publish_into_a_data_dir_that_is_a_file_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let blocked = dir.path().join("blocked");
    fs::write(&blocked, b"a file, not a directory").unwrap();
    let publisher = Publisher::new(&blocked);
    let err = publisher
        .publish(vec![entry(2, Status::Confirmed)])
        .unwrap_err();
    assert!(matches!(err, handoff::Error::Io { .. }), "{err:?}");
    assert!(!err.to_string().contains('\n'), "{err}");
    assert_eq!(fs::read(&blocked).unwrap(), b"a file, not a directory");
    // A failed publish does not wedge the publisher: the next call tries again.
    assert!(publisher.publish(vec![]).is_err());
}

#[cfg(unix)]
#[test]
fn failed_publish_leaves_the_previous_snapshot_intact() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let publisher = Publisher::new(dir.path());
    let (first, _) = written(
        publisher
            .publish(vec![entry(1, Status::Confirmed)])
            .unwrap(),
    );
    let snapshot_dir = dir.path().join(SNAPSHOT_DIR);
    fs::set_permissions(&snapshot_dir, fs::Permissions::from_mode(0o555)).unwrap();
    if fs::File::create(snapshot_dir.join("probe")).is_ok() {
        // Running as root: permissions do not apply.
        fs::set_permissions(&snapshot_dir, fs::Permissions::from_mode(0o755)).unwrap();
        return;
    }
    let result = publisher.publish(vec![entry(2, Status::Confirmed)]);
    fs::set_permissions(&snapshot_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let err = result.unwrap_err();
    assert!(!err.to_string().contains('\n'), "{err}");
    let snapshot = read(dir.path());
    assert_eq!(snapshot.generation, first);
    assert_eq!(published(&snapshot), vec![entry(1, Status::Confirmed)]);
    // The publisher keeps working once the directory is writable again.
    let (second, _) = written(publisher.publish(vec![]).unwrap());
    assert!(second > first);
    assert!(read(dir.path()).entries.is_empty());
}

#[test]
fn publish_into_a_snapshot_path_that_is_a_directory_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = snapshot_path(dir.path());
    fs::create_dir_all(path.join("inner")).unwrap();
    let publisher = Publisher::new(dir.path());
    assert!(
        publisher
            .publish(vec![entry(1, Status::Confirmed)])
            .is_err()
    );
    // No temp file was left behind.
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["snapshot.json".to_string()]);
    // The next publish after the obstacle is gone succeeds.
    fs::remove_dir_all(&path).unwrap();
    written(publisher.publish(vec![]).unwrap());
    assert!(read(dir.path()).entries.is_empty());
}

#[test]
fn truncated_snapshots_are_malformed_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let publisher = Publisher::new(dir.path());
    let entries: Vec<Entry> = (0..20)
        .map(|i| {
            entry(
                i,
                if i % 3 == 0 {
                    Status::Suspected
                } else {
                    Status::Confirmed
                },
            )
        })
        .collect();
    publisher.publish(entries).unwrap();
    let bytes = fs::read(snapshot_path(dir.path())).unwrap();
    let content_len = bytes.trim_ascii_end().len();
    let copy = dir.path().join("truncated.json");
    for len in 0..content_len {
        fs::write(&copy, &bytes[..len]).unwrap();
        match read_snapshot(&copy) {
            Err(ReadError::Malformed(msg)) => assert!(!msg.contains('\n'), "{msg}"),
            other => panic!("prefix of {len} bytes: {other:?}"),
        }
    }
    // The original is untouched and whole.
    assert_eq!(read(dir.path()).entries.len(), 20);
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn malformed(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = write_file(dir, name, bytes);
    match read_snapshot(&path) {
        Err(ReadError::Malformed(msg)) => {
            assert!(!msg.contains('\n') && !msg.contains('\r'), "{msg}");
            let line = ReadError::Malformed(msg.clone()).to_string();
            assert!(line.starts_with("malformed capability snapshot"), "{line}");
            msg
        }
        other => panic!("{name}: expected Malformed, got {other:?}"),
    }
}

#[test]
fn missing_file_is_none() {
    let dir = tempfile::tempdir().unwrap();
    assert!(read_snapshot(&snapshot_path(dir.path())).unwrap().is_none());
    assert!(
        read_snapshot(&dir.path().join("nope.json"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn hostile_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    malformed(d, "empty", b"");
    malformed(d, "blank", b"  \n\t ");
    malformed(d, "array", b"[]");
    malformed(d, "array-as-struct", b"[1, 5, \"x\", []]");
    malformed(d, "null", b"null");
    malformed(d, "garbage", b"\x00\xff\xfe garbage \x80\x81");
    malformed(
        d,
        "not-utf8-string",
        b"{\"version\":1,\"generation\":1,\"writtenAt\":\"\xff\xfe\",\"entries\":[]}",
    );
    malformed(
        d,
        "string-version",
        b"{\"version\":\"1\",\"generation\":1,\"writtenAt\":\"x\",\"entries\":[]}",
    );
    malformed(d, "negative-version", b"{\"version\":-1}");
    malformed(d, "huge-version", b"{\"version\":4294967296}");
    malformed(d, "missing-fields", b"{\"version\":1}");
    // Without version and generation (the seed's form), the other two are still required.
    malformed(d, "only-entries", b"{\"entries\":[]}");
    malformed(d, "only-written-at", b"{\"writtenAt\":\"x\"}");
    malformed(d, "empty-object", b"{}");
    malformed(
        d,
        "string-generation",
        b"{\"generation\":\"1\",\"writtenAt\":\"x\",\"entries\":[]}",
    );
    malformed(
        d,
        "duplicate-generation",
        b"{\"generation\":1,\"generation\":2,\"writtenAt\":\"x\",\"entries\":[]}",
    );
    malformed(
        d,
        "trailing",
        b"{\"version\":1,\"generation\":1,\"writtenAt\":\"x\",\"entries\":[]} {}",
    );
    malformed(
        d,
        "duplicate",
        b"{\"version\":1,\"version\":1,\"generation\":1,\"writtenAt\":\"x\",\"entries\":[]}",
    );
    malformed(
        d,
        "negative-generation",
        b"{\"version\":1,\"generation\":-5,\"writtenAt\":\"x\",\"entries\":[]}",
    );
    malformed(
        d,
        "entries-object",
        b"{\"version\":1,\"generation\":1,\"writtenAt\":\"x\",\"entries\":{}}",
    );
    malformed(
        d,
        "entries-missing",
        b"{\"version\":1,\"generation\":1,\"writtenAt\":\"x\"}",
    );
    malformed(
        d,
        "written-at-missing",
        b"{\"version\":1,\"generation\":1,\"entries\":[]}",
    );
    // Invalid JSON inside an entry is invalid JSON: the file, not the entry, is malformed.
    malformed(
        d,
        "entry-syntax",
        b"{\"version\":1,\"generation\":1,\"writtenAt\":\"x\",\"entries\":[{\"public_key\":}]}",
    );
}

#[test]
fn deeply_nested_json_is_malformed_without_overflowing_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let depth = 200_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    malformed(d, "top-level-arrays", arrays.as_bytes());
    let in_entries =
        format!(r#"{{"version":1,"generation":1,"writtenAt":"x","entries":{arrays}}}"#);
    malformed(d, "nested-entries", in_entries.as_bytes());
    let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    malformed(d, "nested-objects", objects.as_bytes());
    let in_version = format!("{{\"version\":{arrays}}}");
    malformed(d, "nested-version", in_version.as_bytes());
    let unclosed = format!(
        r#"{{"version":1,"generation":1,"writtenAt":"x","entries":[],"extra":{}"#,
        "[".repeat(depth)
    );
    malformed(d, "unclosed-extra", unclosed.as_bytes());
}

#[test]
fn unknown_fields_are_ignored_and_upgraded_at_may_be_absent() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "future.json",
        br#"{"version":1,"generation":42,"writtenAt":"2026-11-25T18:00:00.123Z","note":{"deep":[1,2,3]},
            "entries":[{"public_key":"abababababababababababababababababababababababababababababababab","status":"suspected","evidence":"path","max_hash_size":3,"extra":true}]}"#,
    );
    let snapshot = read_snapshot(&path).unwrap().unwrap();
    assert_eq!(snapshot.generation, 42);
    assert_eq!(snapshot.entries.len(), 1);
    assert_eq!(snapshot.entries[0].status, Status::Suspected);
    assert_eq!(snapshot.entries[0].upgraded_at, None);
    assert_eq!(snapshot.skipped.count, 0);
}

/// A seed (CoreScope) entry: what `public_key` is used in the tests below.
fn key(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

#[test]
fn the_seeds_format_is_read() {
    let dir = tempfile::tempdir().unwrap();
    // Exactly the seed's entries (§4.3): public_key, status and evidence, evidence omitted
    // when empty; no max_hash_size or upgraded_at. Its writtenAt is an RFC 3339 string with
    // nanoseconds, as Go's time.Time marshals it.
    let body = format!(
        r#"{{"version":1,"generation":1795629600123,"writtenAt":"2026-11-25T18:00:00.123456789Z","entries":[{{"public_key":"{}","status":"confirmed","evidence":"advert"}},{{"public_key":"{}","status":"unknown"}},{{"public_key":"{}","status":"suspected","evidence":"path"}}]}}"#,
        key(1),
        key(2),
        key(3)
    );
    let path = write_file(dir.path(), "seed.json", body.as_bytes());
    let snapshot = read_snapshot(&path).unwrap().unwrap();
    assert_eq!(snapshot.generation, 1_795_629_600_123);
    assert_eq!(snapshot.file_generation, Some(1_795_629_600_123));
    assert_eq!(snapshot.written_at, "2026-11-25T18:00:00.123456789Z");
    assert_eq!(snapshot.skipped.count, 0, "{:?}", snapshot.skipped);
    let seed_entry = |n, status, evidence| ReadEntry {
        public_key: key(n),
        status,
        evidence,
        max_hash_size: None,
        upgraded_at: None,
    };
    assert_eq!(
        snapshot.entries,
        vec![
            seed_entry(1, Status::Confirmed, Some(Evidence::Advert)),
            seed_entry(2, Status::Unknown, None),
            seed_entry(3, Status::Suspected, Some(Evidence::Path)),
        ]
    );
}

#[test]
fn the_seeds_file_without_version_or_generation_is_version_1_without_a_generation() {
    let dir = tempfile::tempdir().unwrap();
    // Exactly what the seed writes (§4.3): no version, no generation.
    let body = format!(
        r#"{{"writtenAt":"2026-11-25T18:00:00.123456789Z","entries":[{{"public_key":"{}","status":"confirmed","evidence":"advert"}},{{"public_key":"{}","status":"unknown"}},{{"public_key":"{}","status":"suspected","evidence":"path"}}]}}"#,
        key(1),
        key(2),
        key(3)
    );
    let path = write_file(dir.path(), "seed.json", body.as_bytes());
    let snapshot = read_snapshot(&path).unwrap().unwrap();
    assert_eq!(snapshot.version, 1);
    assert_eq!(snapshot.file_generation, None);
    assert_eq!(snapshot.generation, 0);
    assert_eq!(snapshot.written_at, "2026-11-25T18:00:00.123456789Z");
    assert_eq!(snapshot.skipped.count, 0, "{:?}", snapshot.skipped);
    let seed_entry = |n, status, evidence| ReadEntry {
        public_key: key(n),
        status,
        evidence,
        max_hash_size: None,
        upgraded_at: None,
    };
    assert_eq!(
        snapshot.entries,
        vec![
            seed_entry(1, Status::Confirmed, Some(Evidence::Advert)),
            seed_entry(2, Status::Unknown, None),
            seed_entry(3, Status::Suspected, Some(Evidence::Path)),
        ]
    );
}

#[test]
fn version_and_generation_are_each_optional_and_null_is_absent() {
    let dir = tempfile::tempdir().unwrap();
    for (name, body, generation) in [
        (
            "no-version",
            r#"{"generation":5,"writtenAt":"x","entries":[]}"#,
            Some(5),
        ),
        (
            "no-generation",
            r#"{"version":1,"writtenAt":"x","entries":[]}"#,
            None,
        ),
        (
            "nulls",
            r#"{"version":null,"generation":null,"writtenAt":"x","entries":[]}"#,
            None,
        ),
        (
            "generation-0",
            r#"{"version":1,"generation":0,"writtenAt":"x","entries":[]}"#,
            Some(0),
        ),
    ] {
        let path = write_file(dir.path(), name, body.as_bytes());
        let snapshot = read_snapshot(&path)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap();
        assert_eq!(snapshot.version, 1, "{name}");
        assert_eq!(snapshot.file_generation, generation, "{name}");
        assert_eq!(snapshot.generation, generation.unwrap_or(0), "{name}");
    }
}

#[test]
fn a_publisher_after_a_seed_file_starts_from_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let path = snapshot_path(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(
        &path,
        br#"{"writtenAt":"2026-11-25T18:00:00Z","entries":[]}"#,
    )
    .unwrap();
    let publisher = Publisher::new(dir.path());
    let (generation, _) = written(publisher.publish(vec![]).unwrap());
    assert!(
        generation > 1_700_000_000_000,
        "from the clock: {generation}"
    );
    assert_eq!(read(dir.path()).file_generation, Some(generation));
}

#[test]
fn null_fields_are_absent_and_keys_are_lowercased() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        r#"{{"version":1,"generation":3,"writtenAt":"x","entries":[{{"public_key":"{}","status":"confirmed","evidence":null,"max_hash_size":null,"upgraded_at":null}},{{"public_key":"{}","status":"suspected","evidence":""}}]}}"#,
        "AB".repeat(32),
        key(4)
    );
    let path = write_file(dir.path(), "nulls.json", body.as_bytes());
    let snapshot = read_snapshot(&path).unwrap().unwrap();
    assert_eq!(snapshot.skipped.count, 0, "{:?}", snapshot.skipped);
    assert_eq!(snapshot.entries[0].public_key, "ab".repeat(32));
    assert_eq!(snapshot.entries[0].evidence, None);
    assert_eq!(snapshot.entries[0].max_hash_size, None);
    assert_eq!(snapshot.entries[1].evidence, None);
}

#[test]
fn malformed_entries_are_skipped_and_counted_and_the_rest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let good = |n: u8| {
        format!(
            r#"{{"public_key":"{}","status":"confirmed","evidence":"advert","max_hash_size":2}}"#,
            key(n)
        )
    };
    let bad = [
        // Wrong types.
        r#"{"public_key":7,"status":"confirmed"}"#.to_string(),
        format!(
            r#"{{"public_key":"{}","status":"confirmed","max_hash_size":"2"}}"#,
            key(9)
        ),
        format!(
            r#"{{"public_key":"{}","status":"confirmed","upgraded_at":5}}"#,
            key(9)
        ),
        format!(
            r#"{{"public_key":"{}","status":"confirmed","evidence":["advert"]}}"#,
            key(9)
        ),
        // Bad public keys.
        r#"{"public_key":"ab","status":"confirmed"}"#.to_string(),
        format!(
            r#"{{"public_key":"{}zz","status":"confirmed"}}"#,
            "ab".repeat(31)
        ),
        format!(
            r#"{{"public_key":"{}","status":"confirmed"}}"#,
            "é".repeat(32)
        ),
        // Unknown or missing status.
        format!(r#"{{"public_key":"{}","status":"conf\nirmed\r"}}"#, key(9)),
        format!(r#"{{"public_key":"{}","status":2}}"#, key(9)),
        format!(r#"{{"public_key":"{}"}}"#, key(9)),
        // Values out of range.
        format!(
            r#"{{"public_key":"{}","status":"confirmed","max_hash_size":300}}"#,
            key(9)
        ),
        format!(
            r#"{{"public_key":"{}","status":"confirmed","max_hash_size":4}}"#,
            key(9)
        ),
        format!(
            r#"{{"public_key":"{}","status":"confirmed","max_hash_size":0}}"#,
            key(9)
        ),
        format!(
            r#"{{"public_key":"{}","status":"confirmed","evidence":"gossip"}}"#,
            key(9)
        ),
        // Not objects.
        "[1, 5, \"x\"]".to_string(),
        "null".to_string(),
        "\"entry\"".to_string(),
        // A long hostile string.
        format!(
            r#"{{"public_key":"{}","status":"{}"}}"#,
            key(9),
            "x".repeat(100_000)
        ),
    ];
    let mut all = vec![good(1)];
    all.extend(bad.iter().cloned());
    all.push(good(2));
    let body = format!(
        r#"{{"version":1,"generation":11,"writtenAt":"x","entries":[{}]}}"#,
        all.join(",")
    );
    let path = write_file(dir.path(), "mixed.json", body.as_bytes());
    let snapshot = read_snapshot(&path).unwrap().unwrap();
    let keys: Vec<&str> = snapshot
        .entries
        .iter()
        .map(|e| e.public_key.as_str())
        .collect();
    assert_eq!(keys, [key(1), key(2)]);
    assert_eq!(snapshot.skipped.count, bad.len() as u64);
    // Reasons are kept for the first few only, one short line each, saying which entry.
    assert_eq!(snapshot.skipped.reasons.len(), MAX_SKIP_REASONS);
    for (i, reason) in snapshot.skipped.reasons.iter().enumerate() {
        assert!(
            reason.starts_with(&format!("entry {}: ", i + 1)),
            "{reason}"
        );
        assert!(!reason.contains('\n') && !reason.contains('\r'), "{reason}");
    }

    // Each bad entry on its own, also as the last: skipped, never the file; a reason that
    // names the problem, and never a long line.
    for (i, entry) in bad.iter().enumerate() {
        let body = format!(
            r#"{{"version":1,"generation":1,"writtenAt":"x","entries":[{},{entry}]}}"#,
            good(1)
        );
        let path = write_file(dir.path(), &format!("bad-{i}.json"), body.as_bytes());
        let snapshot = read_snapshot(&path)
            .unwrap_or_else(|e| panic!("{entry}: {e}"))
            .unwrap();
        assert_eq!(snapshot.entries.len(), 1, "{entry}");
        assert_eq!(snapshot.skipped.count, 1, "{entry}");
        let reason = &snapshot.skipped.reasons[0];
        assert!(
            reason.chars().count() <= 301,
            "{} chars",
            reason.chars().count()
        );
        assert!(!reason.contains('\n') && !reason.contains('\r'), "{reason}");
    }
}

#[test]
fn other_versions_are_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    for (name, body, version) in [
        (
            "v2",
            r#"{"version":2,"generation":1,"writtenAt":"x","entries":[]}"#,
            2,
        ),
        (
            "v2-without-generation",
            r#"{"version":2,"writtenAt":"x","entries":[]}"#,
            2,
        ),
        (
            "v2-other-shape",
            r#"{"version":2,"snapshot":{"nodes":"elsewhere"}}"#,
            2,
        ),
        ("v0", r#"{"version":0}"#, 0),
        (
            "vmax",
            r#"{"version":4294967295,"entries":"whatever"}"#,
            u32::MAX,
        ),
    ] {
        let path = write_file(dir.path(), name, body.as_bytes());
        match read_snapshot(&path) {
            Err(e @ ReadError::UnsupportedVersion(v)) => {
                assert_eq!(v, version, "{name}");
                assert!(e.to_string().contains(&version.to_string()), "{e}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn oversized_file_is_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.json");
    let file = fs::File::create(&path).unwrap();
    let size = 65 * 1024 * 1024;
    file.set_len(size).unwrap(); // sparse: no 65 MiB actually written
    drop(file);
    match read_snapshot(&path) {
        Err(ReadError::TooLarge(n)) => assert_eq!(n, size),
        other => panic!("{other:?}"),
    }
    // Exactly at the limit is read (and then rejected as malformed: it is all zero bytes).
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(MAX_SNAPSHOT_BYTES).unwrap();
    drop(file);
    assert!(matches!(read_snapshot(&path), Err(ReadError::Malformed(_))));
}

#[test]
fn snapshot_path_that_is_a_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = snapshot_path(dir.path());
    fs::create_dir_all(&path).unwrap();
    match read_snapshot(&path) {
        Err(e @ ReadError::Io(_)) => assert!(!e.to_string().contains('\n'), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn a_fifo_in_place_of_the_snapshot_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    assert!(matches!(read_snapshot(&path), Err(ReadError::Io(_))));
}

#[cfg(unix)]
#[test]
fn an_unreadable_file_is_an_io_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "locked.json", b"{}");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::File::open(&path).is_ok() {
        return; // running as root: permissions do not apply
    }
    assert!(matches!(read_snapshot(&path), Err(ReadError::Io(_))));
}

#[test]
fn status_ints_round_trip() {
    for status in [Status::Confirmed, Status::Suspected, Status::Unknown] {
        assert_eq!(Status::from_int(status.as_int()), Some(status));
    }
    assert_eq!(Status::Confirmed.as_int(), 2);
    assert_eq!(Status::Suspected.as_int(), 1);
    assert_eq!(Status::Unknown.as_int(), 0);
    assert_eq!(Status::from_int(3), None);
    assert_eq!(Status::from_int(-1), None);
}

#[test]
fn rfc3339_formatting() {
    assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        format_rfc3339_ms(951_782_400_000),
        "2000-02-29T00:00:00.000Z"
    );
    assert_eq!(
        format_rfc3339_ms(1_795_629_600_123),
        "2026-11-25T18:00:00.123Z"
    );
    assert_eq!(
        format_rfc3339_ms(253_402_300_799_999),
        "9999-12-31T23:59:59.999Z"
    );
    assert_eq!(
        format_rfc3339_ms(4_107_542_399_001),
        "2100-02-28T23:59:59.001Z"
    );
    // Never panics, even at the end of time.
    let _ = format_rfc3339_ms(u64::MAX);
}

#[test]
fn written_file_is_one_json_document_and_a_newline() {
    let dir = tempfile::tempdir().unwrap();
    let publisher = Publisher::new(dir.path());
    publisher
        .publish(vec![entry(5, Status::Confirmed)])
        .unwrap();
    let bytes = fs::read(snapshot_path(dir.path())).unwrap();
    assert_eq!(bytes.last(), Some(&b'\n'));
    assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 1);
    let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(parsed["generation"], read(dir.path()).generation);
}

#[test]
fn an_oversized_publish_is_refused_and_the_previous_snapshot_stays() {
    let dir = tempfile::tempdir().unwrap();
    let publisher = Publisher::new(dir.path());
    let (first, _) = written(
        publisher
            .publish(vec![entry(1, Status::Confirmed)])
            .unwrap(),
    );
    let mut huge = entry(2, Status::Confirmed);
    huge.public_key = "a".repeat(MAX_SNAPSHOT_BYTES as usize + 1);
    match publisher.publish(vec![huge]) {
        Err(handoff::Error::TooLarge { size, limit, .. }) => {
            assert!(size > limit);
            assert_eq!(limit, MAX_SNAPSHOT_BYTES);
        }
        other => panic!("{other:?}"),
    }
    let snapshot = read(dir.path());
    assert_eq!(snapshot.generation, first);
    assert_eq!(published(&snapshot), vec![entry(1, Status::Confirmed)]);
    let names: Vec<_> = fs::read_dir(dir.path().join(SNAPSHOT_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["snapshot.json".to_string()]);
    let (second, _) = written(publisher.publish(vec![]).unwrap());
    assert!(second > first);
}
