//! `GET /api/analytics/channels` in CoreScope's shape, over messages with known answers:
//! three on #test (two by Alice, one by Bob) and one on Public in the last hour, one on a
//! channel nobody has the key of, and one on #test two days ago.

use serde_json::{Value, json};

mod support;

use support::{OBS_A, OBS_B, has};

/// A zero-hop GRP_TXT on `channel` saying `text`, hex.
fn message(channel: &meshcore::crypto::Channel, text: &str, ts: u32) -> String {
    let mut plain = Vec::new();
    meshcore::payload::GroupText {
        timestamp: ts,
        flags: 0,
        text,
    }
    .encode(&mut plain);
    let mut payload = Vec::new();
    channel.encrypt_into(&plain, &mut payload);
    let frame = meshcore::Packet::new(
        meshcore::Route::Flood,
        meshcore::PayloadType::GrpTxt,
        meshcore::PathLen::ZERO,
        &[],
        &payload,
    )
    .unwrap()
    .to_bytes();
    hex::encode(frame)
}

fn keyring() -> meshcore::crypto::Keyring {
    let mut k = meshcore::crypto::Keyring::with_public();
    k.add_hashtag("test");
    k
}

/// `hex` heard by `observer` in `iata` at `at`, through an ingest decoder that knows #test.
fn heard(hex: &str, observer: &str, iata: &str, at: i64) -> store::Item {
    support::Heard {
        keyring: keyring(),
        ..support::heard_by(observer, iata, 5.0, -90.0)
    }
    .item(hex, at)
}

async fn server() -> (tempfile::TempDir, server::Server) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = store::Writer::open(&db, 0).unwrap();
    let test = meshcore::crypto::Channel::hashtag("test");
    let public = meshcore::crypto::Channel::public();
    let secret = meshcore::crypto::Channel::hashtag("nobody-has-this-key");
    let now = server::now_ms();
    let m = 60_000;
    w.write_batch(&[
        heard(&message(&test, "Alice: hi", 1), OBS_A, "SEA", now - 30 * m),
        // The same packet heard again: still one message.
        heard(
            &message(&test, "Alice: hi", 1),
            OBS_B,
            "PDX",
            now - 30 * m + 500,
        ),
        heard(
            &message(&test, "Alice: again", 2),
            OBS_A,
            "SEA",
            now - 20 * m,
        ),
        heard(
            &message(&test, "<script>Bob</script>: x", 3),
            OBS_B,
            "PDX",
            now - 10 * m,
        ),
        heard(
            &message(&public, "Carol: hello", 4),
            OBS_A,
            "SEA",
            now - 5 * m,
        ),
        heard(
            &message(&secret, "Dave: hidden", 5),
            OBS_A,
            "SEA",
            now - 4 * m,
        ),
        heard(
            &message(&test, "Old: news", 6),
            OBS_A,
            "SEA",
            now - 48 * 60 * m,
        ),
    ])
    .unwrap();
    drop(w);
    let mut cfg = support::config(&db);
    cfg.decode.keyring = keyring();
    let s = support::start(cfg).await;
    (dir, s)
}

fn channel<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no channel {name} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_api_analytics_channels() {
    let (_dir, s) = server().await;
    let (st, v) = support::get(s.addr, "/api/analytics/channels?window=1h").await;
    assert_eq!(st, 200, "{v}");
    for (k, t) in [
        ("activeChannels", "integer"),
        ("decryptable", "integer"),
        ("channels", "array"),
        ("topSenders", "array"),
        ("channelTimeline", "array"),
        ("msgLengths", "array"),
        ("truncated", "boolean"),
        ("window", "string"),
    ] {
        has(&v, k, t);
    }
    assert_eq!(v["activeChannels"], 3, "{v}");
    assert_eq!(v["decryptable"], 2);
    assert_eq!(v["totalMessages"], 5);
    assert_eq!(v["truncated"], false);
    let t = channel(&v, "#test");
    for (k, ty) in [
        ("hash", "string"),
        ("name", "string"),
        ("messages", "integer"),
        ("senders", "integer"),
        ("lastActivity", "string"),
        ("encrypted", "boolean"),
    ] {
        has(t, k, ty);
    }
    let test_hash = meshcore::crypto::Channel::hashtag("test").hash();
    assert_eq!(t["hash"], test_hash.to_string());
    assert_eq!(
        (t["messages"].clone(), t["senders"].clone()),
        (json!(3), json!(2))
    );
    assert_eq!(t["encrypted"], false);
    // Busiest first.
    assert_eq!(v["channels"][0]["name"], "#test");
    let p = channel(&v, "Public");
    assert_eq!(
        (p["messages"].clone(), p["hash"].clone()),
        (json!(1), json!("17"))
    );
    let secret = meshcore::crypto::Channel::hashtag("nobody-has-this-key").hash();
    let e = channel(&v, &format!("ch{secret}"));
    assert_eq!(
        (e["messages"].clone(), e["encrypted"].clone()),
        (json!(1), json!(true))
    );
    assert_eq!(e["senders"], 0);
    // Senders: text as sent (markup is data, not HTML), counted per message.
    let top = v["topSenders"].as_array().unwrap();
    assert_eq!(top[0], json!({"name": "Alice", "count": 2}), "{top:?}");
    assert!(top.contains(&json!({"name": "<script>Bob</script>", "count": 1})));
    assert!(top.contains(&json!({"name": "Carol", "count": 1})));
    assert_eq!(top.len(), 3);
    // Per hour and channel: 3 on #test, 1 on Public, 1 undecrypted.
    let tl = v["channelTimeline"].as_array().unwrap();
    let sum = |name: &str| -> i64 {
        tl.iter()
            .filter(|e| e["channel"] == name)
            .map(|e| e["count"].as_i64().unwrap())
            .sum()
    };
    assert_eq!((sum("#test"), sum("Public")), (3, 1), "{tl:?}");
    for e in tl {
        assert_eq!(e["hour"].as_str().unwrap().len(), 13, "{e}");
    }
    // Lengths of the decrypted messages' text (without the sender).
    let mut lens: Vec<i64> = v["msgLengths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    lens.sort();
    assert_eq!(lens, vec![1, 2, 5, 5]);

    // The default window (7 days) has the old message too.
    let (_, v) = support::get(s.addr, "/api/analytics/channels").await;
    assert_eq!(channel(&v, "#test")["messages"], 4);
    assert_eq!(v["window"], "7d");
    // from/to: only the old one.
    let now = server::now_ms();
    let (st, v) = support::get(
        s.addr,
        &format!(
            "/api/analytics/channels?from={}&to={}",
            now - 3 * 86_400_000,
            now - 86_400_000
        ),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["activeChannels"], 1);
    assert_eq!(v["topSenders"], json!([{"name": "Old", "count": 1}]));
    // Region: PDX heard two #test messages (Alice's first, and Bob's).
    let (_, v) = support::get(s.addr, "/api/analytics/channels?window=1h&region=pdx").await;
    assert_eq!(v["activeChannels"], 1, "{v}");
    assert_eq!(channel(&v, "#test")["messages"], 2);
    // Nobody there: empty arrays, never null.
    let (_, v) = support::get(s.addr, "/api/analytics/channels?region=ZZZ").await;
    for k in ["channels", "topSenders", "channelTimeline", "msgLengths"] {
        assert_eq!(v[k], json!([]), "{k}");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_api_analytics_channels_refuses_bad_input() {
    let (_dir, s) = server().await;
    for bad in [
        "window=0",
        "window=31d",
        "window=soon",
        "window=-1h",
        "from=yesterday",
        "from=2030-01-01T00:00:00Z",
        "window=1h&from=1",
        "region=,",
        "area=Downtown",
    ] {
        let (st, v) = support::get(s.addr, &format!("/api/analytics/channels?{bad}")).await;
        assert_eq!(st, 400, "{bad}: {v}");
        assert!(v["error"].is_string(), "{bad}: {v}");
    }
    s.shutdown().await;
}
