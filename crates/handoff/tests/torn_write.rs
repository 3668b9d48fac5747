//! Torn writes for real: a child process publishes large snapshots in a loop and is killed
//! with SIGKILL at varying moments; the snapshot file must always be a whole snapshot.
//!
//! The child is this test binary itself, running [`torn_write_child`] with
//! `HANDOFF_TORN_WRITE_CHILD_DIR` set; without it, that test does nothing.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use handoff::{
    Entry, Evidence, Outcome, Publisher, SNAPSHOT_DIR, Snapshot, Status, read_snapshot,
    snapshot_path,
};

const CHILD_ENV: &str = "HANDOFF_TORN_WRITE_CHILD_DIR";
const ENTRIES: u32 = 100;
/// Long strings make the file large (~6 MB) while keeping serialization cheap, so that most
/// of each round is spent writing and a kill is likely to land mid-write.
const PADDING: usize = 60_000;

fn big_entries(round: u32) -> Vec<Entry> {
    (0..ENTRIES)
        .map(|k| Entry {
            public_key: format!("{round:08x}{k:056x}"),
            status: Status::Confirmed,
            evidence: "advert".into(),
            max_hash_size: 3,
            // Padding; the reader does not parse the time.
            upgraded_at: Some("p".repeat(PADDING)),
        })
        .collect()
}

/// The entries of a snapshot our publisher wrote, in the form they were published in.
fn published(snapshot: &Snapshot) -> Vec<Entry> {
    assert_eq!(snapshot.skipped.count, 0, "{:?}", snapshot.skipped);
    snapshot
        .entries
        .iter()
        .map(|e| Entry {
            public_key: e.public_key.clone(),
            status: e.status,
            evidence: e.evidence.map_or("", Evidence::as_str).to_owned(),
            max_hash_size: e.max_hash_size.expect("the publisher writes max_hash_size"),
            upgraded_at: e.upgraded_at.clone(),
        })
        .collect()
}

/// A snapshot is whole if it holds exactly one round's entries.
fn assert_whole(snapshot: &Snapshot) {
    let first = snapshot.entries.first().expect("never empty");
    let round = u32::from_str_radix(&first.public_key[..8], 16).unwrap();
    assert_eq!(snapshot.entries.len(), ENTRIES as usize);
    assert!(
        published(snapshot) == big_entries(round),
        "snapshot mixes rounds"
    );
}

/// The names of the temporary files in the snapshot directory.
fn temp_files(data_dir: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join(SNAPSHOT_DIR)) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(".tmp"))
        .collect()
}

/// The child: publish forever (until killed).
#[test]
fn torn_write_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let publisher = Publisher::new(Path::new(&dir));
    for round in 0.. {
        let outcome = publisher.publish(big_entries(round)).unwrap();
        assert!(matches!(outcome, Outcome::Written { .. }));
    }
}

#[test]
fn killing_a_publisher_mid_write_never_tears_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = snapshot_path(dir.path());
    let exe = std::env::current_exe().unwrap();
    let mut last_generation = 0;
    for round in 0..10u64 {
        let mut child = Command::new(&exe)
            .args(["torn_write_child", "--exact", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the child to publish at least once, then kill it a little later.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(s)) = read_snapshot(&path)
                && s.generation > last_generation
            {
                break;
            }
            assert!(Instant::now() < deadline, "child never published");
            assert!(child.try_wait().unwrap().is_none(), "child exited early");
            std::thread::sleep(Duration::from_millis(2));
        }
        if round % 2 == 0 {
            // Kill as soon as a new temp file appears: mid-write, mid-fsync or just before
            // the rename.
            let before = temp_files(dir.path());
            while temp_files(dir.path()).is_subset(&before) {
                assert!(Instant::now() < deadline, "child never wrote again");
            }
        } else {
            // Kill at some other moment (building, serializing, renaming, syncing).
            std::thread::sleep(Duration::from_millis(round * 37 % 60));
        }
        child.kill().unwrap(); // SIGKILL: no destructors, temp files stay behind
        child.wait().unwrap();

        let snapshot = read_snapshot(&path)
            .expect("a whole snapshot after SIGKILL")
            .expect("present");
        assert!(snapshot.generation > last_generation);
        assert_whole(&snapshot);
        last_generation = snapshot.generation;
    }
    let leftovers = temp_files(dir.path()).len();
    eprintln!("{leftovers} temp files left by killed writers");
    // Half the kills land while a temp file is being written; at least one must have.
    assert!(
        leftovers >= 1,
        "no kill landed mid-write; the test did not test"
    );

    // A restarted publisher continues above the last generation despite the leftovers.
    let publisher = Publisher::new(dir.path());
    let Outcome::Written { generation, .. } = publisher.publish(big_entries(999)).unwrap() else {
        panic!("a lone publisher writes");
    };
    assert!(generation > last_generation);
    let snapshot = read_snapshot(&path).unwrap().unwrap();
    assert_eq!(snapshot.generation, generation);
    assert_whole(&snapshot);
}
