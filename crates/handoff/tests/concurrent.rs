//! Concurrent publishing: 8 threads × 50 publishes while a 9th thread keeps reading the file.
//! The file must always parse as a whole snapshot, and the last call must win.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use handoff::{
    Entry, Evidence, Outcome, Publisher, Snapshot, Status, read_snapshot, snapshot_path,
};

const THREADS: u32 = 8;
const CALLS: u32 = 50;

/// The entries of call `call` of thread `thread`: 1–7 entries whose keys encode both, plus an
/// unknown entry that must never reach the file.
fn entries_for(thread: u32, call: u32) -> Vec<Entry> {
    let count = call % 7 + 1;
    let mut entries: Vec<Entry> = (0..count)
        .map(|k| Entry {
            public_key: format!("{thread:08x}{call:08x}{k:08x}{:040x}", 0),
            status: if k % 2 == 0 {
                Status::Confirmed
            } else {
                Status::Suspected
            },
            evidence: "advert".into(),
            max_hash_size: 2,
            upgraded_at: None,
        })
        .collect();
    entries.push(Entry {
        public_key: format!("{thread:08x}{call:08x}{:048x}", u32::MAX),
        status: Status::Unknown,
        evidence: String::new(),
        max_hash_size: 1,
        upgraded_at: None,
    });
    entries
}

/// A short, varying pause between calls so that threads keep overlapping instead of one
/// thread doing its calls after all the others have finished.
fn jitter(thread: u32, call: u32) {
    let units = (thread * 7 + call * 13) % 5;
    if units > 0 {
        std::thread::sleep(std::time::Duration::from_micros(u64::from(units) * 300));
    }
}

fn kept(entries: Vec<Entry>) -> Vec<Entry> {
    entries
        .into_iter()
        .filter(|e| e.status != Status::Unknown)
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

/// Which call a snapshot's entries came from; panics if they are not exactly one call's.
fn origin(snapshot: &Snapshot) -> (u32, u32) {
    let first = snapshot.entries.first().expect("every call has entries");
    let thread = u32::from_str_radix(&first.public_key[0..8], 16).unwrap();
    let call = u32::from_str_radix(&first.public_key[8..16], 16).unwrap();
    assert_eq!(
        published(snapshot),
        kept(entries_for(thread, call)),
        "entries mixed up"
    );
    (thread, call)
}

/// Reads the snapshot in a loop until `done`; every read must be a whole snapshot. Returns
/// how many snapshots it saw. With `monotonic`, generations must never go back.
fn watch(path: &Path, done: &AtomicBool, monotonic: bool) -> usize {
    let mut seen = 0;
    let mut last_generation = 0;
    loop {
        let finished = done.load(Ordering::Acquire);
        match read_snapshot(path) {
            Ok(None) => {}
            Ok(Some(snapshot)) => {
                assert_eq!(snapshot.version, 1);
                origin(&snapshot);
                if monotonic {
                    assert!(
                        snapshot.generation >= last_generation,
                        "generation went back: {} after {last_generation}",
                        snapshot.generation
                    );
                }
                last_generation = snapshot.generation;
                seen += 1;
            }
            Err(e) => panic!("read a broken snapshot: {e}"),
        }
        if finished {
            return seen;
        }
    }
}

#[test]
fn one_publisher_eight_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = snapshot_path(dir.path());
    let publisher = Publisher::new(dir.path());
    let done = AtomicBool::new(false);
    let wrote = AtomicUsize::new(0);
    let coalesced = AtomicUsize::new(0);
    let generations = Mutex::new(Vec::new());

    let seen = std::thread::scope(|s| {
        let reader = s.spawn(|| watch(&path, &done, true));
        let writers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (publisher, wrote, coalesced, generations) =
                    (&publisher, &wrote, &coalesced, &generations);
                s.spawn(move || {
                    for call in 0..CALLS {
                        jitter(thread, call);
                        match publisher.publish(entries_for(thread, call)).unwrap() {
                            Outcome::Written {
                                generation,
                                entries,
                            } => {
                                assert!((1..=7).contains(&entries));
                                wrote.fetch_add(1, Ordering::Relaxed);
                                generations.lock().unwrap().push(generation);
                            }
                            Outcome::Coalesced => {
                                coalesced.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        reader.join().unwrap()
    });

    let (wrote, coalesced) = (wrote.into_inner(), coalesced.into_inner());
    eprintln!("{wrote} calls wrote, {coalesced} coalesced, reader saw {seen} snapshots");
    assert_eq!(wrote + coalesced, (THREADS * CALLS) as usize);
    assert!(wrote >= 1);

    let mut generations = generations.into_inner().unwrap();
    let count = generations.len();
    generations.sort_unstable();
    generations.dedup();
    assert_eq!(generations.len(), count, "a generation was reported twice");

    let last = read_snapshot(&path).unwrap().unwrap();
    assert_eq!(last.generation, publisher.generation());
    assert_eq!(generations.last(), Some(&last.generation));
    // The last call overall is some thread's last call, and it must be what the file holds.
    let (_, call) = origin(&last);
    assert_eq!(
        call,
        CALLS - 1,
        "the file does not hold a final call's entries"
    );
}

#[test]
fn two_publishers_on_one_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = snapshot_path(dir.path());
    let publishers = [Publisher::new(dir.path()), Publisher::new(dir.path())];
    let done = AtomicBool::new(false);
    // Per publisher: the generation of its last completed write.
    let last_written = [Mutex::new(0u64), Mutex::new(0u64)];

    std::thread::scope(|s| {
        let reader = s.spawn(|| watch(&path, &done, false));
        let writers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let which = (thread % 2) as usize;
                let (publisher, last_written) = (&publishers[which], &last_written[which]);
                s.spawn(move || {
                    for call in 0..CALLS {
                        jitter(thread, call);
                        if let Outcome::Written { generation, .. } =
                            publisher.publish(entries_for(thread, call)).unwrap()
                        {
                            let mut last = last_written.lock().unwrap();
                            *last = (*last).max(generation);
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        assert!(reader.join().unwrap() > 0);
    });

    let last = read_snapshot(&path).unwrap().unwrap();
    let finals = [publishers[0].generation(), publishers[1].generation()];
    for (p, last_written) in last_written.iter().enumerate() {
        assert_eq!(*last_written.lock().unwrap(), finals[p]);
    }
    assert!(
        finals.contains(&last.generation),
        "file generation {} is neither publisher's last {finals:?}",
        last.generation
    );
    let (_, call) = origin(&last);
    assert_eq!(
        call,
        CALLS - 1,
        "the file does not hold a final call's entries"
    );
}

/// Whether a temp file (a write in progress) is in the snapshot directory.
fn writing(data_dir: &Path) -> bool {
    std::fs::read_dir(data_dir.join(handoff::SNAPSHOT_DIR))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        })
        .unwrap_or(false)
}

/// Deterministic coalescing: while thread A writes a large snapshot, B publishes X then Y.
/// Both of B's calls coalesce, A then writes Y (not X) and reports it, and the file holds Y.
#[test]
fn calls_made_during_a_write_coalesce_and_the_last_one_wins() {
    let mut coalesced_rounds = 0;
    for attempt in 0..20u32 {
        let dir = tempfile::tempdir().unwrap();
        let path = snapshot_path(dir.path());
        let publisher = Publisher::new(dir.path());
        // ~6 MB: the write and fsync take long enough for B to act meanwhile.
        let big: Vec<Entry> = (0..100u32)
            .map(|k| Entry {
                upgraded_at: Some("p".repeat(60_000)),
                ..entries_for(100, k)[0].clone()
            })
            .collect();
        let x = entries_for(200, attempt);
        let y = entries_for(201, attempt);
        let (a_outcome, b_outcomes) = std::thread::scope(|s| {
            let a = s.spawn(|| publisher.publish(big).unwrap());
            while !writing(dir.path()) && !a.is_finished() {
                std::hint::spin_loop();
            }
            let bx = publisher.publish(x.clone()).unwrap();
            let by = publisher.publish(y.clone()).unwrap();
            (a.join().unwrap(), [bx, by])
        });
        let file = read_snapshot(&path).unwrap().unwrap();
        // (Compared without printing: a mismatch would dump megabytes.)
        assert!(
            published(&file) == kept(y.clone()),
            "the last call must win; the file holds the entries of {:?}",
            file.entries.first().map(|e| &e.public_key[..16])
        );
        assert_eq!(file.generation, publisher.generation());
        if b_outcomes == [Outcome::Coalesced, Outcome::Coalesced] {
            // A wrote its own snapshot, then Y (X was superseded before A got to it).
            assert_eq!(
                a_outcome,
                Outcome::Written {
                    generation: file.generation,
                    entries: kept(y).len(),
                }
            );
            coalesced_rounds += 1;
            if coalesced_rounds >= 3 {
                return;
            }
        }
    }
    panic!("calls during a write never coalesced ({coalesced_rounds} rounds did)");
}
