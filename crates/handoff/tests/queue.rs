//! The one-shot request/result queue on real files.

use std::collections::HashSet;
use std::fs;

use handoff::{MAX_PENDING_PER_CALL, Queue, RequestId, RequestStatus};
use serde_json::json;

fn is_id(id: &RequestId) -> bool {
    id.as_str().len() == 16
        && id
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn submit_pending_complete_status_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::new(dir.path(), "prune-requests");
    assert!(!queue.dir().exists(), "new() must not touch the disk");
    assert!(queue.pending().unwrap().is_empty());

    let request = json!({"action": "prune", "publicKeys": ["ab", "cd"], "olderThanDays": 30});
    let id = queue.submit(&request).unwrap();
    assert!(is_id(&id), "{id}");
    assert_eq!(queue.dir(), dir.path().join("prune-requests"));
    assert!(
        queue
            .dir()
            .join(format!("request-{}.json", id.as_str()))
            .is_file()
    );
    assert_eq!(queue.status(&id).unwrap(), RequestStatus::Pending);

    // The writer's side, as a separate handle on the same directory.
    let writer = Queue::new(dir.path(), "prune-requests");
    let pending = writer.pending().unwrap();
    assert_eq!(pending, vec![(id.clone(), request.clone())]);
    let result = json!({"removed": 2});
    writer.complete(&id, &result).unwrap();

    assert!(writer.pending().unwrap().is_empty());
    assert_eq!(queue.status(&id).unwrap(), RequestStatus::Done(result));
    assert!(
        !queue
            .dir()
            .join(format!("request-{}.json", id.as_str()))
            .exists()
    );

    queue.forget(&id).unwrap();
    assert_eq!(queue.status(&id).unwrap(), RequestStatus::Unknown);
    queue.forget(&id).unwrap();

    let never = RequestId::parse("0123456789abcdef").unwrap();
    assert_eq!(queue.status(&never).unwrap(), RequestStatus::Unknown);
    // No leftovers of the atomic writes.
    let names: Vec<_> = fs::read_dir(queue.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn a_missing_queue_directory_is_empty_and_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::new(dir.path(), "nothing-here");
    assert!(queue.pending().unwrap().is_empty());
    let id = RequestId::parse("abc").unwrap();
    assert_eq!(queue.status(&id).unwrap(), RequestStatus::Unknown);
    queue.forget(&id).unwrap();
}

#[test]
fn ids_are_unique_and_pending_is_sorted_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::new(dir.path(), "q");
    let total = MAX_PENDING_PER_CALL + 1;
    let mut ids = Vec::with_capacity(total);
    for n in 0..total {
        let id = queue.submit(&json!({ "n": n })).unwrap();
        assert!(is_id(&id), "{id}");
        ids.push(id);
    }
    let unique: HashSet<_> = ids.iter().map(|id| id.as_str().to_owned()).collect();
    assert_eq!(unique.len(), total, "duplicate ids");

    let pending = queue.pending().unwrap();
    assert_eq!(pending.len(), MAX_PENDING_PER_CALL);
    let mut sorted = ids.clone();
    sorted.sort();
    let got: Vec<RequestId> = pending.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(got, sorted[..MAX_PENDING_PER_CALL].to_vec());
    // Each request came back with its own body.
    for (id, body) in &pending {
        let n = ids.iter().position(|x| x == id).unwrap();
        assert_eq!(body, &json!({ "n": n }));
    }
    // Completing the first batch exposes the one left over.
    for (id, _) in &pending {
        queue.complete(id, &json!(null)).unwrap();
    }
    let rest = queue.pending().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].0, sorted[MAX_PENDING_PER_CALL]);
}

#[test]
fn request_id_parse_is_a_path_traversal_guard() {
    for bad in [
        "../x",
        "..",
        "",
        "/etc/passwd",
        "abc/def",
        "abc\\def",
        "0x12",
        "12 34",
        "ghij",
        "abc.json",
        "é",
        "abc\0",
    ] {
        assert!(RequestId::parse(bad).is_none(), "{bad:?} accepted");
    }
    assert!(RequestId::parse(&"a".repeat(65)).is_none());
    assert!(RequestId::parse(&"a".repeat(64)).is_some());
    assert!(RequestId::parse("0").is_some());
    let id = RequestId::parse("DeadBeef").unwrap();
    assert_eq!(id.as_str(), "DeadBeef");
    assert_eq!(id.to_string(), "DeadBeef");
}

#[test]
fn malformed_and_odd_request_files_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::new(dir.path(), "q");
    let good = queue.submit(&json!({"ok": true})).unwrap();
    let q = queue.dir();
    let malformed = q.join("request-00ff.json");
    fs::write(&malformed, b"{\"truncated\":").unwrap();
    let binary = q.join("request-00fe.json");
    fs::write(&binary, b"\xff\x00\xfe").unwrap();
    let as_dir = q.join("request-00fd.json");
    fs::create_dir(&as_dir).unwrap();
    // Names that are not requests are left alone.
    let unrelated = [
        "notes.txt",
        "request-../x.json",
        "request-zz.json",
        "request-.json",
    ];
    for name in unrelated.iter().filter(|n| !n.contains('/')) {
        fs::write(q.join(name), b"{}").unwrap();
    }
    let fresh_tmp = q.join(".tmpXYZ");
    fs::write(&fresh_tmp, b"{\"half").unwrap();

    let pending = queue.pending().unwrap();
    assert_eq!(pending, vec![(good.clone(), json!({"ok": true}))]);
    assert!(!malformed.exists(), "malformed request not removed");
    assert!(!binary.exists(), "binary request not removed");
    for name in unrelated.iter().filter(|n| !n.contains('/')) {
        assert!(q.join(name).exists(), "{name} removed");
    }
    assert!(fresh_tmp.exists(), "a fresh temp file may be in flight");
    // And again: still only the good one.
    assert_eq!(queue.pending().unwrap().len(), 1);
}

#[test]
fn stale_temp_files_are_removed_by_pending() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::new(dir.path(), "q");
    queue.submit(&json!(1)).unwrap();
    let stale = queue.dir().join(".tmpOld999");
    let file = fs::File::create(&stale).unwrap();
    file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    drop(file);
    assert_eq!(queue.pending().unwrap().len(), 1);
    assert!(!stale.exists());
}

#[test]
fn a_request_with_a_result_is_not_pending_again() {
    // The writer crashed between writing the result and removing the request.
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::new(dir.path(), "q");
    let id = queue.submit(&json!({"prune": "x"})).unwrap();
    fs::write(
        queue.dir().join(format!("result-{}.json", id.as_str())),
        b"{\"removed\":1}",
    )
    .unwrap();
    assert!(queue.pending().unwrap().is_empty());
    assert!(
        !queue
            .dir()
            .join(format!("request-{}.json", id.as_str()))
            .exists()
    );
    assert_eq!(
        queue.status(&id).unwrap(),
        RequestStatus::Done(json!({"removed": 1}))
    );
}

#[test]
fn a_malformed_result_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::new(dir.path(), "q");
    let id = queue.submit(&json!({})).unwrap();
    fs::write(
        queue.dir().join(format!("result-{}.json", id.as_str())),
        b"not json\n\r",
    )
    .unwrap();
    match queue.status(&id) {
        Err(e @ handoff::Error::Malformed { .. }) => assert!(!e.to_string().contains('\n'), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn completing_an_unknown_or_completed_request_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::new(dir.path(), "q");
    let id = RequestId::parse("feedface").unwrap();
    queue.complete(&id, &json!("late")).unwrap();
    queue.complete(&id, &json!("later")).unwrap();
    assert_eq!(
        queue.status(&id).unwrap(),
        RequestStatus::Done(json!("later"))
    );
}

#[test]
fn concurrent_submitters_and_a_worker_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::new(dir.path(), "q");
    let ids: Vec<RequestId> = std::thread::scope(|s| {
        let submitters: Vec<_> = (0..4)
            .map(|t| {
                let queue = &queue;
                s.spawn(move || {
                    (0..25)
                        .map(|n| queue.submit(&json!({"t": t, "n": n})).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // The worker drains while submissions are still arriving.
        let worker = s.spawn(|| {
            let mut done = 0;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while done < 100 {
                assert!(std::time::Instant::now() < deadline, "worker starved");
                for (id, body) in queue.pending().unwrap() {
                    queue.complete(&id, &json!({"echo": body})).unwrap();
                    done += 1;
                }
            }
            done
        });
        let ids = submitters
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(worker.join().unwrap(), 100);
        ids
    });
    assert_eq!(ids.len(), 100);
    for id in &ids {
        match queue.status(id).unwrap() {
            RequestStatus::Done(v) => assert!(v["echo"]["n"].is_u64(), "{v}"),
            other => panic!("{id}: {other:?}"),
        }
    }
    assert!(queue.pending().unwrap().is_empty());
}
