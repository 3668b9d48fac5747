//! The writer and reader handles against a real SQLite file: migrations, dedup, nodes,
//! retention, observer freshness (live versus retained status), and the read-only guarantee.

use store::{
    Advert, Delivery, Item, Observer, PacketRecord, Reader, Rejected, Role, SCHEMA_VERSION, Status,
    Writer, node_is_active,
};

fn observer(id: &str) -> Observer {
    Observer {
        id: id.repeat(64 / id.len()),
        name: Some(format!("obs-{id}")),
        iata: Some("SEA".into()),
    }
}

/// A packet with `hash`, heard by `obs` at `t` with path-length byte `path_len` and `path`.
fn packet(hash: u64, obs: &str, t: i64, path: &[u8]) -> PacketRecord {
    let mut raw = vec![0x15, path.len() as u8];
    raw.extend_from_slice(path);
    let head_len = raw.len();
    raw.extend_from_slice(&hash.to_be_bytes());
    PacketRecord {
        observer: observer(obs),
        received_at: t,
        raw,
        head_len,
        hash,
        route_type: 1,
        payload_type: 5,
        payload_version: 0,
        path_len: path.len() as u8,
        snr: Some(7.5),
        rssi: Some(-90.0),
        score: None,
        airtime_ms: None,
        clock: None,
        from_pubkey: None,
        channel: None,
        scope: None,
        advert: None,
        reject_reason: None,
    }
}

fn advert_packet(hash: u64, key: &str, name: &str, advert_time: u32, t: i64) -> PacketRecord {
    let mut p = packet(hash, "a", t, &[]);
    p.payload_type = 4;
    p.from_pubkey = Some(key.into());
    p.advert = Some(Advert {
        public_key: key.into(),
        name: Some(name.into()),
        role: Role::Repeater,
        location: Some((47.5, -122.1)),
        advert_time,
        foreign: false,
    });
    p
}

fn open() -> (tempfile::TempDir, Writer) {
    let dir = tempfile::tempdir().unwrap();
    let w = Writer::open(&dir.path().join("data/meshlens.db"), 1).unwrap();
    (dir, w)
}

fn count(w: &Writer, sql: &str) -> i64 {
    w.conn().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn migrations_run_once_and_add_the_capability_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meshlens.db");
    drop(Writer::open(&path, 1).unwrap());
    let w = Writer::open(&path, 2).unwrap();
    assert_eq!(count(&w, "PRAGMA user_version"), SCHEMA_VERSION);
    assert_eq!(
        count(&w, "SELECT count(*) FROM schema_migrations"),
        SCHEMA_VERSION
    );
    for table in ["nodes", "inactive_nodes"] {
        let n = count(
            &w,
            &format!(
                "SELECT count(*) FROM pragma_table_info('{table}')
                 WHERE name IN ('multibyte_sup', 'multibyte_evidence')"
            ),
        );
        assert_eq!(n, 2, "{table}");
    }
    let mode: String = w
        .conn()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// A page of the node list (`/api/nodes`' default order) is a range of an index: no sort of
/// the table for the page, and no second sort for the ties by key.
#[test]
fn the_node_list_order_is_an_index_range() {
    let (_dir, w) = open();
    let plan: Vec<String> = w
        .conn()
        .prepare(
            "EXPLAIN QUERY PLAN SELECT public_key, name FROM nodes
             ORDER BY last_seen DESC, public_key LIMIT 50 OFFSET 500",
        )
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let plan = plan.join("; ");
    assert!(plan.contains("INDEX nodes_last_seen_key"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    // And a `last_seen` range (silent nodes, recent nodes) still uses it.
    let range: String = w
        .conn()
        .query_row(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM nodes WHERE last_seen < 5",
            [],
            |r| r.get(3),
        )
        .unwrap();
    assert!(range.contains("nodes_last_seen_key"), "{range}");
}

#[test]
fn dedup_by_hash_and_one_observation_per_observer_and_path() {
    let (_d, mut w) = open();
    let out = w
        .write_batch(&[
            Item::Packet(packet(1, "a", 10, &[0x11])),
            Item::Packet(packet(1, "b", 11, &[0x11])),
            Item::Packet(packet(1, "a", 12, &[0x11])), // same observer, same path
            Item::Packet(packet(1, "a", 13, &[0x11, 0x22])), // same observer, new path
        ])
        .unwrap();
    assert_eq!(out.new_transmissions, 1);
    assert_eq!(out.known_transmissions, 3);
    assert_eq!(out.new_observations, 3);
    assert_eq!(out.duplicate_observations, 1);
    assert_eq!(count(&w, "SELECT count(*) FROM transmissions"), 1);
    assert_eq!(count(&w, "SELECT observation_count FROM transmissions"), 3);
    assert_eq!(count(&w, "SELECT first_seen FROM transmissions"), 10);
    assert_eq!(count(&w, "SELECT last_seen FROM transmissions"), 13);
    assert_eq!(count(&w, "SELECT count(*) FROM observers"), 2);
    let a = observer("a").id;
    let n: i64 = w
        .conn()
        .query_row(
            "SELECT packet_count FROM observers WHERE id = ?1",
            [&a],
            |r| r.get(0),
        )
        .unwrap();
    // Three packets from `a`, one of them a duplicate: two stored observations.
    assert_eq!(n, 2);
    // In a later batch the same packet is still known (through the cache or the table).
    let out = w
        .write_batch(&[Item::Packet(packet(1, "c", 20, &[]))])
        .unwrap();
    assert_eq!((out.new_transmissions, out.new_observations), (0, 1));
    // The stored head is the frame up to the payload.
    let head: Vec<u8> = w
        .conn()
        .query_row(
            "SELECT head FROM observations ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(head, [0x15, 1, 0x11]);
}

#[test]
fn adverts_make_nodes_and_old_copies_do_not_roll_back() {
    let (_d, mut w) = open();
    let key = "ab".repeat(32);
    w.write_batch(&[Item::Packet(advert_packet(1, &key, "new", 200, 10))])
        .unwrap();
    // An older advert (node clock 100) arriving later must not revert the name.
    w.write_batch(&[Item::Packet(advert_packet(2, &key, "old", 100, 20))])
        .unwrap();
    let (name, count_, last): (String, i64, i64) = w
        .conn()
        .query_row(
            "SELECT name, advert_count, last_seen FROM nodes WHERE public_key = ?1",
            [&key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((name.as_str(), count_, last), ("new", 2, 20));
    // The same advert heard again does not count twice.
    w.write_batch(&[Item::Packet(advert_packet(2, &key, "old", 100, 30))])
        .unwrap();
    assert_eq!(count(&w, "SELECT advert_count FROM nodes"), 2);
}

#[test]
fn rejected_adverts_never_touch_nodes() {
    let (_d, mut w) = open();
    let mut p = packet(9, "a", 10, &[]);
    p.payload_type = 4;
    p.reject_reason = Some("invalid_signature");
    w.write_batch(&[Item::Packet(p.clone()), Item::Packet(p)])
        .unwrap();
    assert_eq!(count(&w, "SELECT count(*) FROM nodes"), 0);
    // Recorded once per transmission, and the packet itself is kept.
    assert_eq!(
        count(
            &w,
            "SELECT count(*) FROM rejected_packets WHERE reason = 'invalid_signature'"
        ),
        1
    );
    assert_eq!(count(&w, "SELECT count(*) FROM transmissions"), 1);
    w.write_batch(&[Item::Rejected(Rejected {
        observer_id: None,
        received_at: 11,
        reason: "path_too_long",
        raw: Some(vec![1, 2]),
    })])
    .unwrap();
    assert_eq!(count(&w, "SELECT count(*) FROM rejected_packets"), 2);
}

#[test]
fn silent_nodes_go_inactive_and_come_back() {
    let (_d, mut w) = open();
    let key = "cd".repeat(32);
    w.write_batch(&[Item::Packet(advert_packet(1, &key, "n", 1, 1_000))])
        .unwrap();
    w.conn()
        .execute("UPDATE nodes SET multibyte_sup = 2", [])
        .unwrap();
    assert_eq!(w.deactivate_nodes(500).unwrap(), 0);
    assert_eq!(w.deactivate_nodes(2_000).unwrap(), 1);
    assert_eq!(node_is_active(w.conn(), &key).unwrap(), Some(false));
    w.write_batch(&[Item::Packet(advert_packet(2, &key, "n", 2, 3_000))])
        .unwrap();
    assert_eq!(node_is_active(w.conn(), &key).unwrap(), Some(true));
    assert_eq!(count(&w, "SELECT count(*) FROM inactive_nodes"), 0);
    // History and capability survive the round trip.
    assert_eq!(count(&w, "SELECT advert_count FROM nodes"), 2);
    assert_eq!(count(&w, "SELECT multibyte_sup FROM nodes"), 2);
}

#[test]
fn retention_deletes_old_packets_in_chunks() {
    let (_d, mut w) = open();
    let items: Vec<Item> = (0..25)
        .map(|i| Item::Packet(packet(i, "a", i as i64 * 10, &[0x01])))
        .collect();
    w.write_batch(&items).unwrap();
    let mut deleted = 0;
    loop {
        let n = w.expire_packets(100, 4).unwrap();
        assert!(n <= 4);
        if n == 0 {
            break;
        }
        deleted += n;
    }
    assert_eq!(deleted, 10); // received at 0..90
    assert_eq!(count(&w, "SELECT count(*) FROM transmissions"), 15);
    assert_eq!(count(&w, "SELECT count(*) FROM observations"), 15);
    assert_eq!(count(&w, "SELECT min(received_at) FROM observations"), 100);
    // A deleted packet heard again is a new transmission, not a dangling cached id.
    let out = w
        .write_batch(&[Item::Packet(packet(0, "a", 500, &[]))])
        .unwrap();
    assert_eq!(out.new_transmissions, 1);
    w.incremental_vacuum(100).unwrap();
    assert_eq!(w.checkpoint().unwrap(), store::Checkpoint::Complete);
}

/// A reader holding an older snapshot defers the truncating checkpoint (what it allows is
/// still copied) instead of holding the writer for the busy timeout; once it has finished,
/// the next checkpoint completes and the WAL is empty.
#[test]
fn a_long_reader_defers_the_checkpoint() {
    let (dir, mut w) = open();
    let path = dir.path().join("data/meshlens.db");
    w.write_batch(&[Item::Packet(packet(1, "a", 10, &[]))])
        .unwrap();
    let reader = Reader::open(&path).unwrap();
    reader.conn().execute_batch("BEGIN").unwrap();
    let seen: i64 = reader
        .conn()
        .query_row("SELECT count(*) FROM transmissions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seen, 1);
    // Newer frames than the reader's snapshot.
    w.write_batch(&[Item::Packet(packet(2, "a", 20, &[]))])
        .unwrap();
    assert_eq!(
        w.checkpoint_waiting(std::time::Duration::ZERO).unwrap(),
        store::Checkpoint::Deferred
    );
    // The writer goes on meanwhile.
    w.write_batch(&[Item::Packet(packet(3, "a", 30, &[]))])
        .unwrap();
    reader.conn().execute_batch("COMMIT").unwrap();
    assert_eq!(w.checkpoint().unwrap(), store::Checkpoint::Complete);
    let wal = std::fs::metadata(dir.path().join("data/meshlens.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "truncated");
    assert_eq!(count(&w, "SELECT count(*) FROM transmissions"), 3);
}

#[test]
fn status_updates_observer_fields() {
    let (_d, mut w) = open();
    let s = Status {
        observer: Some(observer("e")),
        received_at: 5,
        status: Some("online".into()),
        model: Some("Heltec V3".into()),
        battery_mv: Some(4100),
        noise_floor: Some(-112.5),
        ..Status::default()
    };
    w.write_batch(&[Item::Status(s)]).unwrap();
    // A later status without a model keeps the known model.
    let s2 = Status {
        observer: Some(observer("e")),
        received_at: 6,
        battery_mv: Some(4000),
        ..Status::default()
    };
    w.write_batch(&[Item::Status(s2)]).unwrap();
    let (model, batt, nf): (String, i64, f64) = w
        .conn()
        .query_row(
            "SELECT model, battery_mv, noise_floor FROM observers",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((model.as_str(), batt, nf), ("Heltec V3", 4000, -112.5));
}

#[test]
fn reader_is_read_only_and_checks_the_schema_version() {
    let (d, mut w) = open();
    let path = d.path().join("data/meshlens.db");
    w.write_batch(&[Item::Packet(packet(1, "a", 1, &[]))])
        .unwrap();
    let r = Reader::open(&path).unwrap();
    let n: i64 = r
        .conn()
        .query_row("SELECT count(*) FROM transmissions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    for sql in [
        "INSERT INTO observers (id, first_seen, last_seen) VALUES ('x', 1, 1)",
        "DELETE FROM transmissions",
        "CREATE TABLE t (x)",
    ] {
        assert!(r.conn().execute(sql, []).is_err(), "{sql} must fail");
    }
    drop(r);
    // A database the writer has not migrated yet is refused with a clear message.
    w.conn()
        .pragma_update(None, "user_version", SCHEMA_VERSION - 1)
        .unwrap();
    let err = Reader::open(&path).err().unwrap().to_string();
    assert!(err.contains("start the writer"), "{err}");
}

#[test]
fn capability_is_persisted_without_ever_lowering_it() {
    use store::CapabilityUpdate;
    let (d, mut w) = open();
    let active = "a1".repeat(32);
    let inactive = "b2".repeat(32);
    w.write_batch(&[
        Item::Packet(advert_packet(1, &active, "A", 1, 10_000)),
        Item::Packet(advert_packet(2, &inactive, "B", 1, 10)),
    ])
    .unwrap();
    w.deactivate_nodes(1_000).unwrap();
    let up = |k: &str, status: i64, ev: &str, max: Option<i64>, at: Option<i64>| CapabilityUpdate {
        public_key: k.into(),
        status,
        evidence: ev.into(),
        max_hash_size: max,
        upgraded_at: at,
    };
    let c = w
        .apply_capability(&[
            up(&active, 2, "advert", Some(2), Some(500)),
            up(&inactive, 1, "path", Some(3), None),
            up(&active, 0, "advert", None, None), // unknown: the guard refuses it
            up(&"cc".repeat(32), 2, "advert", None, None), // no such node
        ])
        .unwrap();
    assert_eq!(
        (
            c.read,
            c.updated_active,
            c.updated_inactive,
            c.unchanged,
            c.skipped
        ),
        (4, 1, 1, 0, 2)
    );
    let row = |w: &Writer, table: &str, k: &str| -> (i64, String, Option<i64>, Option<i64>) {
        w.conn()
            .query_row(
                &format!("SELECT multibyte_sup, multibyte_evidence, multibyte_max_hash_size, multibyte_upgraded_at FROM {table} WHERE public_key = ?1"),
                [k],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap()
    };
    assert_eq!(
        row(&w, "nodes", &active),
        (2, "advert".into(), Some(2), Some(500))
    );
    assert_eq!(
        row(&w, "inactive_nodes", &inactive),
        (1, "path".into(), Some(3), None)
    );
    // A lower status, an equal one, a later upgrade time: nothing changes.
    let c = w
        .apply_capability(&[
            up(&active, 1, "path", Some(2), Some(900)),
            up(&active, 2, "advert", Some(2), Some(500)),
        ])
        .unwrap();
    assert_eq!((c.updated_active, c.unchanged), (0, 2));
    assert_eq!(
        row(&w, "nodes", &active),
        (2, "advert".into(), Some(2), Some(500))
    );
    // Raising the size or an earlier upgrade time does update, keeping the status.
    let c = w
        .apply_capability(&[up(&active, 1, "path", Some(3), Some(100))])
        .unwrap();
    assert_eq!(c.updated_active, 1);
    assert_eq!(
        row(&w, "nodes", &active),
        (2, "advert".into(), Some(3), Some(100))
    );
    // It survives a reopen and the node's move back from inactive_nodes.
    drop(w);
    let mut w = Writer::open(&d.path().join("data/meshlens.db"), 2).unwrap();
    w.write_batch(&[Item::Packet(advert_packet(3, &inactive, "B", 2, 20_000))])
        .unwrap();
    let (sup, ev, max, _): (i64, String, Option<i64>, Option<i64>) = w
        .conn()
        .query_row(
            "SELECT multibyte_sup, multibyte_evidence, multibyte_max_hash_size, multibyte_upgraded_at FROM nodes WHERE public_key = ?1",
            [&inactive],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((sup, ev.as_str(), max), (1, "path", Some(3)));
}

/// An observer's freshness and status columns, in one tuple for comparisons.
#[derive(Debug, PartialEq)]
struct Freshness {
    last_seen: Option<i64>,
    last_status_at: Option<i64>,
    status_received_at: Option<i64>,
    status_timestamp: Option<i64>,
}

fn freshness(w: &Writer, id: &str) -> Freshness {
    w.conn()
        .query_row(
            "SELECT last_seen, last_status_at, status_received_at, status_timestamp
             FROM observers WHERE id = ?1",
            [observer(id).id],
            |r| {
                Ok(Freshness {
                    last_seen: r.get(0)?,
                    last_status_at: r.get(1)?,
                    status_received_at: r.get(2)?,
                    status_timestamp: r.get(3)?,
                })
            },
        )
        .unwrap()
}

fn text(w: &Writer, sql: &str) -> Option<String> {
    w.conn().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_retained_status_fills_unknown_fields_but_never_advances_freshness() {
    let (_d, mut w) = open();
    let live = Status {
        observer: Some(observer("f")),
        received_at: 1_000_000,
        sent_at: Some(999_000),
        status: Some("online".into()),
        battery_mv: Some(4100),
        ..Status::default()
    };
    w.write_batch(&[Item::Status(live)]).unwrap();
    let before = freshness(&w, "f");
    assert_eq!(
        before,
        Freshness {
            last_seen: Some(999_000),
            last_status_at: Some(999_000),
            status_received_at: Some(1_000_000),
            status_timestamp: Some(999_000),
        }
    );
    // Replayed on a reconnect much later, with a newer own time than the live one: history
    // all the same.
    let retained = Status {
        observer: Some(observer("f")),
        received_at: 9_000_000,
        delivery: Delivery::Retained,
        sent_at: Some(5_000_000),
        status: Some("offline".into()),
        model: Some("Heltec V3".into()),
        battery_mv: Some(3300),
        queue_len: Some(2),
        ..Status::default()
    };
    w.write_batch(&[Item::Status(retained)]).unwrap();
    assert_eq!(freshness(&w, "f"), before);
    // NULL fields are filled in; known ones are kept.
    assert_eq!(
        text(&w, "SELECT model FROM observers").as_deref(),
        Some("Heltec V3")
    );
    assert_eq!(count(&w, "SELECT queue_len FROM observers"), 2);
    assert_eq!(
        text(&w, "SELECT status FROM observers").as_deref(),
        Some("online")
    );
    assert_eq!(count(&w, "SELECT battery_mv FROM observers"), 4100);
}

#[test]
fn a_retained_status_of_an_unknown_observer_does_not_make_it_look_seen() {
    let (_d, mut w) = open();
    // No own time: known to exist, never seen.
    let retained = Status {
        observer: Some(observer("g")),
        received_at: 9_000_000,
        delivery: Delivery::Retained,
        status: Some("online".into()),
        model: Some("T-Beam".into()),
        ..Status::default()
    };
    w.write_batch(&[Item::Status(retained)]).unwrap();
    assert_eq!(
        freshness(&w, "g"),
        Freshness {
            last_seen: None,
            last_status_at: None,
            status_received_at: None,
            status_timestamp: None,
        }
    );
    assert_eq!(
        text(&w, "SELECT model FROM observers").as_deref(),
        Some("T-Beam")
    );
    // With its own time it is exactly as old as that time says.
    let dated = Status {
        observer: Some(observer("h")),
        received_at: 9_000_000,
        delivery: Delivery::Retained,
        sent_at: Some(2_000_000),
        ..Status::default()
    };
    w.write_batch(&[Item::Status(dated)]).unwrap();
    assert_eq!(
        freshness(&w, "h"),
        Freshness {
            last_seen: Some(2_000_000),
            last_status_at: Some(2_000_000),
            status_received_at: None,
            status_timestamp: Some(2_000_000),
        }
    );
    // A packet is live: it sets last_seen even when it was NULL.
    w.write_batch(&[Item::Packet(packet(1, "g", 9_500_000, &[]))])
        .unwrap();
    assert_eq!(freshness(&w, "g").last_seen, Some(9_500_000));
    assert_eq!(
        count(
            &w,
            &format!(
                "SELECT packet_count FROM observers WHERE id = '{}'",
                observer("g").id
            )
        ),
        1
    );
}

#[test]
fn a_live_status_is_as_recent_as_its_own_timestamp() {
    let (_d, mut w) = open();
    let at = |received_at, sent_at, status: &str| {
        Item::Status(Status {
            observer: Some(observer("k")),
            received_at,
            sent_at,
            status: Some(status.into()),
            ..Status::default()
        })
    };
    w.write_batch(&[at(1_000_000, Some(990_000), "online")])
        .unwrap();
    assert_eq!(
        freshness(&w, "k"),
        Freshness {
            last_seen: Some(990_000),
            last_status_at: Some(990_000),
            status_received_at: Some(1_000_000),
            status_timestamp: Some(990_000),
        }
    );
    // A fast clock never makes it look seen after it arrived.
    w.write_batch(&[at(2_000_000, Some(2_100_000), "online")])
        .unwrap();
    assert_eq!(freshness(&w, "k").last_status_at, Some(2_000_000));
    // A last will written at connect time (older than what is known) says "offline" without
    // making the observer look older or newer.
    w.write_batch(&[at(3_000_000, Some(500_000), "offline")])
        .unwrap();
    assert_eq!(
        freshness(&w, "k"),
        Freshness {
            last_seen: Some(2_000_000),
            last_status_at: Some(2_000_000),
            status_received_at: Some(3_000_000),
            status_timestamp: Some(500_000),
        }
    );
    assert_eq!(
        text(&w, "SELECT status FROM observers").as_deref(),
        Some("offline")
    );
    // Without an own time, arrival is the time.
    w.write_batch(&[at(4_000_000, None, "online")]).unwrap();
    assert_eq!(freshness(&w, "k").last_status_at, Some(4_000_000));
}

#[test]
fn packet_count_counts_stored_observations_not_deliveries() {
    let (_d, mut w) = open();
    let heard = packet(7, "m", 100, &[0x11]);
    // Two brokers deliver the same publish: twice in one batch, once more in the next.
    let out = w
        .write_batch(&[Item::Packet(heard.clone()), Item::Packet(heard.clone())])
        .unwrap();
    assert_eq!((out.new_observations, out.duplicate_observations), (1, 1));
    w.write_batch(&[Item::Packet(heard)]).unwrap();
    let packets = |w: &Writer| {
        count(
            w,
            &format!(
                "SELECT packet_count FROM observers WHERE id = '{}'",
                observer("m").id
            ),
        )
    };
    assert_eq!(packets(&w), 1);
    // The same packet over a different path is a second observation.
    w.write_batch(&[Item::Packet(packet(7, "m", 101, &[0x22]))])
        .unwrap();
    assert_eq!(packets(&w), 2);
    assert_eq!(count(&w, "SELECT count(*) FROM observations"), 2);
}

#[test]
fn airtime_is_stored_per_observation() {
    let (_d, mut w) = open();
    let mut a = packet(9, "a", 100, &[]);
    a.airtime_ms = Some(123);
    let b = packet(9, "b", 101, &[]);
    w.write_batch(&[Item::Packet(a), Item::Packet(b)]).unwrap();
    let rows: Vec<(String, Option<i64>)> = w
        .conn()
        .prepare(
            "SELECT ob.id, o.airtime_ms FROM observations o
             JOIN observers ob ON ob.idx = o.observer_idx ORDER BY ob.id",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        vec![(observer("a").id, Some(123)), (observer("b").id, None)]
    );
}

/// A packet from the observer with the full key `id` (not repeated like [`observer`]).
fn packet_from(id: &str, hash: u64, t: i64) -> PacketRecord {
    let mut p = packet(hash, "a", t, &[]);
    p.observer.id = id.to_owned();
    p
}

fn status_from(id: &str, t: i64) -> Status {
    Status {
        observer: Some(Observer {
            id: id.to_owned(),
            name: None,
            iata: None,
        }),
        received_at: t,
        status: Some("online".into()),
        ..Status::default()
    }
}

#[test]
fn new_observers_are_limited_per_minute_and_known_ones_never() {
    let (_d, mut w) = open();
    // Known before the limit: never refused.
    w.write_batch(&[Item::Packet(packet_from("known", 1, 1_000))])
        .unwrap();
    // One a minute, with a burst of ten minutes' worth.
    w.set_new_observer_limit(Some(1));
    let t = 2_000;
    let mut items = vec![Item::Packet(packet_from("known", 2, t))];
    for i in 0..12u64 {
        items.push(Item::Packet(packet_from(&format!("new{i:02}"), 10 + i, t)));
    }
    // A second packet of a refused observer, and a status of one, are refused too; a
    // status of an admitted one is applied.
    items.push(Item::Packet(packet_from("new11", 30, t)));
    items.push(Item::Status(status_from("new10", t)));
    items.push(Item::Status(status_from("new00", t)));
    let out = w.write_batch(&items).unwrap();
    assert_eq!(out.observer_rate_refused, 4, "{out:?}");
    assert_eq!(out.new_observations, 11);
    assert_eq!(out.statuses, 1);
    assert_eq!(
        count(&w, "SELECT count(*) FROM observers WHERE id LIKE 'new%'"),
        10
    );
    assert_eq!(
        count(
            &w,
            "SELECT count(*) FROM observers WHERE id = 'new00' AND status = 'online'"
        ),
        1
    );
    // A status alone from yet another new observer: still no token.
    let out = w
        .write_batch(&[Item::Status(status_from("new12", t + 1))])
        .unwrap();
    assert_eq!((out.observer_rate_refused, out.statuses), (1, 0));
    // Admitted observers stay admitted without a token.
    let out = w
        .write_batch(&[Item::Packet(packet_from("new01", 31, t + 2))])
        .unwrap();
    assert_eq!((out.observer_rate_refused, out.new_observations), (0, 1));
    // A clock that goes back refills nothing (and does not panic).
    let out = w
        .write_batch(&[Item::Packet(packet_from("new13", 32, i64::MIN))])
        .unwrap();
    assert_eq!(out.observer_rate_refused, 1);
    // One token a minute of ingest time later, not two.
    let later = t + 60_000;
    let out = w
        .write_batch(&[
            Item::Packet(packet_from("new14", 33, later)),
            Item::Packet(packet_from("new15", 34, later)),
        ])
        .unwrap();
    assert_eq!((out.observer_rate_refused, out.new_observations), (1, 1));
    // Far later the bucket is full again, but holds only the burst.
    let much_later = i64::MAX;
    let items: Vec<Item> = (0..15u64)
        .map(|i| Item::Packet(packet_from(&format!("late{i}"), 40 + i, much_later)))
        .collect();
    let out = w.write_batch(&items).unwrap();
    assert_eq!((out.observer_rate_refused, out.new_observations), (5, 10));
    // A failed batch does not spend tokens: the observers it admitted were never created.
    w.set_new_observer_limit(Some(1));
    let pages: i64 = count(&w, "PRAGMA page_count");
    w.conn()
        .pragma_update(None, "max_page_count", pages)
        .unwrap();
    let big: Vec<Item> = (0..10u64)
        .map(|i| {
            let mut p = packet_from(&format!("retry{i}"), 100 + i, t);
            p.raw.extend_from_slice(&[0x5a; 150]);
            Item::Packet(p)
        })
        .chain((0..300u64).map(|i| {
            let mut p = packet_from("known", 200 + i, t);
            p.raw.extend_from_slice(&[0x5a; 150]);
            Item::Packet(p)
        }))
        .collect();
    assert!(w.write_batch(&big).is_err());
    w.conn()
        .pragma_update(None, "max_page_count", 1_000_000_000i64)
        .unwrap();
    assert_eq!(w.write_batch(&big).unwrap().observer_rate_refused, 0);
    // No limit: everything goes.
    w.set_new_observer_limit(None);
    let items: Vec<Item> = (0..50u64)
        .map(|i| Item::Packet(packet_from(&format!("free{i}"), 1_000 + i, t)))
        .collect();
    assert_eq!(w.write_batch(&items).unwrap().observer_rate_refused, 0);
}

/// The new-observer rate is a bucket per source: a publisher that floods new observer keys
/// spends its own burst and is refused (counted under its name), while another source's new
/// observer, in the same batch and after it, is still accepted. More sources than the bound on
/// buckets share one bucket beyond it, so memory stays bounded.
#[test]
fn new_observers_are_limited_per_source() {
    let (_d, mut w) = open();
    // One a minute, a burst of ten, for each source.
    w.set_new_observer_limit(Some(1));
    let t = 5_000;
    let mut items = Vec::new();
    let mut sources = Vec::new();
    for i in 0..15u64 {
        items.push(Item::Packet(packet_from(
            &format!("flood{i:02}"),
            10 + i,
            t,
        )));
        sources.push("embedded/203.0.113.9");
    }
    items.push(Item::Packet(packet_from("honest", 40, t)));
    sources.push("upstream");
    items.push(Item::Status(status_from("honest2", t)));
    sources.push("upstream");
    let out = w.write_batch_from(&items, &sources).unwrap();
    assert_eq!(out.observer_rate_refused, 5, "{out:?}");
    assert_eq!(
        w.observer_refusals(),
        &[("embedded/203.0.113.9".to_string(), 5)]
    );
    assert_eq!(
        count(&w, "SELECT count(*) FROM observers WHERE id LIKE 'honest%'"),
        2
    );
    // The flooding source stays refused while the honest one still has its burst.
    let out = w
        .write_batch_from(
            &[
                Item::Packet(packet_from("flood99", 60, t + 1)),
                Item::Packet(packet_from("honest3", 61, t + 1)),
            ],
            &["embedded/203.0.113.9", "upstream"],
        )
        .unwrap();
    assert_eq!((out.observer_rate_refused, out.new_observations), (1, 1));
    assert_eq!(
        w.observer_refusals(),
        &[("embedded/203.0.113.9".to_string(), 1)]
    );
    // Items of unnamed source (`write_batch`) have a bucket of their own.
    let out = w
        .write_batch(&[Item::Packet(packet_from("plain", 70, t + 2))])
        .unwrap();
    assert_eq!(out.observer_rate_refused, 0);
    assert!(w.observer_refusals().is_empty());
    // Thousands of sources with one new observer each: the buckets beyond the bound share
    // one, whose burst of ten is soon spent (one new observer per source would otherwise go
    // unbounded with the number of sources).
    let items: Vec<Item> = (0..1_000u64)
        .map(|i| Item::Packet(packet_from(&format!("many{i:04}"), 1_000 + i, t + 3)))
        .collect();
    let names: Vec<String> = (0..1_000).map(|i| format!("src{i}")).collect();
    let sources: Vec<&str> = names.iter().map(String::as_str).collect();
    let out = w.write_batch_from(&items, &sources).unwrap();
    assert!(out.observer_rate_refused > 700, "{out:?}");
    assert!(out.new_observations < 300, "{out:?}");
}

#[test]
fn silent_observers_without_observations_expire() {
    let (_d, mut w) = open();
    let day = 86_400_000;
    // `old` was heard long ago and its observations are still stored; `status_only` spoke
    // long ago and has none; `fresh` spoke recently; `retained` is known only from a
    // retained status with no time (last_seen NULL), first known long ago.
    w.write_batch(&[
        Item::Packet(packet_from("old", 1, day)),
        Item::Status(status_from("status_only", day)),
        Item::Status(status_from("fresh", 30 * day)),
        Item::Status(Status {
            delivery: Delivery::Retained,
            ..status_from("retained", day)
        }),
    ])
    .unwrap();
    assert_eq!(
        count(
            &w,
            "SELECT count(*) FROM observers WHERE id = 'retained' AND last_seen IS NULL"
        ),
        1
    );
    let cutoff = 20 * day;
    assert_eq!(w.expire_observers(cutoff, 1).unwrap(), 1);
    assert_eq!(w.expire_observers(cutoff, 10).unwrap(), 1);
    assert_eq!(w.expire_observers(cutoff, 10).unwrap(), 0);
    let ids = |w: &Writer| -> Vec<String> {
        let mut stmt = w
            .conn()
            .prepare("SELECT id FROM observers ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(ids(&w), ["fresh", "old"]);
    // Every stored observation still has its observer.
    let orphans = "SELECT count(*) FROM observations o
                   LEFT JOIN observers ob ON ob.idx = o.observer_idx WHERE ob.idx IS NULL";
    assert_eq!(count(&w, orphans), 0);
    // Once packet retention has removed its observations, `old` goes too.
    assert_eq!(w.expire_packets(cutoff, 100).unwrap(), 1);
    assert_eq!(w.expire_observers(cutoff, 10).unwrap(), 1);
    assert_eq!(ids(&w), ["fresh"]);
}

#[test]
fn a_failed_batch_leaves_no_dangling_ids_behind() {
    let (_d, mut w) = open();
    let items: Vec<Item> = (0..400u64)
        .map(|i| {
            let mut p = packet(i, "a", 1_000 + i as i64, &[]);
            p.raw.extend_from_slice(&[0x5a; 100]);
            Item::Packet(p)
        })
        .collect();
    // No room for the batch: SQLITE_FULL part way through it.
    let pages: i64 = count(&w, "PRAGMA page_count");
    w.conn()
        .pragma_update(None, "max_page_count", pages)
        .unwrap();
    assert!(w.write_batch(&items).is_err());
    assert_eq!(count(&w, "SELECT count(*) FROM transmissions"), 0);
    // Room again: the retry stores every packet, each observation on its own transmission.
    w.conn()
        .pragma_update(None, "max_page_count", 1_000_000_000i64)
        .unwrap();
    let out = w.write_batch(&items).unwrap();
    assert_eq!((out.new_transmissions, out.new_observations), (400, 400));
    assert_eq!(count(&w, "SELECT count(*) FROM transmissions"), 400);
    let dangling = "SELECT count(*) FROM observations o
                    LEFT JOIN transmissions t ON t.id = o.transmission_id WHERE t.id IS NULL";
    assert_eq!(count(&w, dangling), 0);
}

/// Another connection holding the write lock for a moment (a backup, an operator's sqlite3)
/// makes a batch wait for it, not fail at once and be lost.
#[test]
fn a_batch_waits_for_another_writer_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meshlens.db");
    let mut w = Writer::open(&path, 1).unwrap();
    w.write_batch(&[Item::Packet(packet(1, "a", 10, &[]))])
        .unwrap();
    let other = store::rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let release = std::thread::spawn(move || {
        // Well within the writer's 5 s busy timeout.
        std::thread::sleep(std::time::Duration::from_millis(200));
        other.execute_batch("ROLLBACK").unwrap();
    });
    let out = w
        .write_batch(&[Item::Packet(packet(2, "a", 20, &[]))])
        .unwrap();
    assert_eq!(out.new_transmissions, 1);
    release.join().unwrap();
}

/// `neighbor_edges_v2`: a graph persisted before edges had observers and SNR keeps its rows
/// (no samples, no observers), and a new graph stores both.
#[test]
fn neighbor_edges_gain_observers_and_snr_without_losing_older_rows() {
    use store::NeighborEdge;
    let (d, mut w) = open();
    let path = d.path().join("data/meshlens.db");
    let edge = |a: &str, b: &str| NeighborEdge {
        a: a.repeat(32),
        b: b.repeat(32),
        count: 3,
        weight: 2.5,
        last_seen: 77,
        snr_sum: -4.5,
        snr_count: 2,
        observers: (0..20).map(|i| format!("obs-{i}")).collect(),
        observer_count: 5,
    };
    assert_eq!(w.replace_neighbor_edges(&[edge("a1", "b2")]).unwrap(), 1);
    // Back to the v1 shape, as a database written by an older build.
    for column in ["snr_sum", "snr_count", "observers", "observer_count"] {
        w.conn()
            .execute_batch(&format!("ALTER TABLE neighbor_edges DROP COLUMN {column}"))
            .unwrap();
    }
    // Whatever came after it, the migration runs again from its own version.
    let v2: i64 = w
        .conn()
        .query_row(
            "SELECT version FROM schema_migrations WHERE name = 'neighbor_edges_v2'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    w.conn()
        .pragma_update(None, "user_version", v2 - 1)
        .unwrap();
    drop(w);
    let mut w = Writer::open(&path, 1).unwrap();
    let row = |w: &Writer| -> (i64, f64, i64, String, i64) {
        w.conn()
            .query_row(
                "SELECT count, snr_sum, snr_count, observers, observer_count FROM neighbor_edges",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap()
    };
    assert_eq!(
        row(&w),
        (3, 0.0, 0, "[]".to_owned(), 0),
        "kept, without samples"
    );
    w.replace_neighbor_edges(&[edge("a1", "b2")]).unwrap();
    let (_, sum, n, observers, distinct) = row(&w);
    assert_eq!(
        (sum, n, distinct),
        (-4.5, 2, 16),
        "at least as many as stored"
    );
    let ids: Vec<String> = serde_json::from_str(&observers).unwrap();
    assert_eq!(
        ids.len(),
        store::MAX_STORED_EDGE_OBSERVERS,
        "bounded per row"
    );
    assert_eq!(ids[0], "obs-0");
}
