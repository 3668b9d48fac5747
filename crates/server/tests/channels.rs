//! CoreScope's channel routes as its handlers shape them: `GET /api/channels`
//! (`includeEncrypted`, `region`), `GET /api/channels/{hash}/messages` (CoreScope's message
//! keys, its order, `region`) and `GET /api/known-channels`.
//! Also: message totals follow new messages after the first full count.

use std::path::Path;

use serde_json::Value;

mod support;

use support::{OBS_A, OBS_B};

use support::{config, get, get_json, item_sea, observed, seed_real_frames, start, vector};

const FIRST: &str = "grp_txt_public_channel_decrypt";
const SECOND: &str = "grp_txt_public_channel_2hops";
const UNKNOWN: &str = "grp_txt_unknown_channel_no_decrypt";

/// Two Public messages (the first heard by A in SEA then B in PDX, the second, later, by B
/// only) and one on a channel nobody has the key of, heard by A.
fn seed(db: &Path) {
    let mut w = store::Writer::open(db, 0).unwrap();
    let t = server::now_ms() - 600_000;
    let items = vec![
        observed(&vector(FIRST), OBS_A, "SEA", t),
        observed(&vector(FIRST), OBS_B, "PDX", t + 1_000),
        observed(&vector(SECOND), OBS_B, "PDX", t + 10_000),
        observed(&vector(UNKNOWN), OBS_A, "SEA", t + 20_000),
    ];
    w.write_batch(&items).unwrap();
}

async fn server() -> (tempfile::TempDir, server::Server) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    seed(&db);
    let s = support::start(support::config(&db)).await;
    (dir, s)
}

fn hash_of(name: &str) -> String {
    let raw = meshcore::report::parse_hex(&vector(name)).unwrap();
    meshcore::Packet::decode(&raw).unwrap().hash().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_api_channels_hash_messages_as_corescope_sends_them() {
    let (_dir, s) = server().await;
    let (st, v) = get_json(s.addr, "/api/channels/Public/messages").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["total"], 2);
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    // Oldest first, as CoreScope lists a page.
    assert_eq!(msgs[0]["packetHash"], hash_of(FIRST).as_str());
    assert_eq!(msgs[1]["packetHash"], hash_of(SECOND).as_str());
    for m in msgs {
        assert!(m["packetId"].is_i64(), "{m}");
        assert!(m["packetHash"].is_string() && m["first_seen"].is_string());
        assert!(m["timestamp"].is_string() && m["repeats"].is_i64());
        assert!(m["observers"].is_array() && m["hops"].is_i64() && m["snr"].is_f64());
        assert!(m["sender"].is_string() && m["text"].is_string());
        // The text is the message alone; the sender is its own key; the full line stays.
        let (sender, text) = (m["sender"].as_str().unwrap(), m["text"].as_str().unwrap());
        assert!(!text.starts_with(&format!("{sender}: ")), "{m}");
        assert_eq!(m["full_text"], format!("{sender}: {text}").as_str());
        // meshlens's keys stay for its UI.
        assert_eq!(m["message"], m["text"]);
        assert_eq!(m["hash"], m["packetHash"]);
        // packetId opens the packet.
        let (st, d) = get_json(s.addr, &format!("/api/packets/{}", m["packetId"])).await;
        assert_eq!(st, 200);
        assert_eq!(d["packet"]["hash"], m["packetHash"]);
    }
    // Real values: the first was heard twice, first by A (named "obs a1"), with no hops.
    assert_eq!(msgs[0]["repeats"], 2);
    assert_eq!(msgs[0]["observers"], serde_json::json!(["obs a1"]));
    assert_eq!(msgs[0]["snr"], 7.25);
    assert_eq!(msgs[1]["repeats"], 1);
    assert_eq!(msgs[1]["observers"], serde_json::json!(["obs b2"]));
    assert_eq!(msgs[1]["hops"], 2);
    assert_eq!(msgs[0]["sender"], "🌲 Tree");
    // region= keeps the messages heard there.
    let (_, v) = get_json(s.addr, "/api/channels/Public/messages?region=sea").await;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["messages"][0]["packetHash"], hash_of(FIRST).as_str());
    let (_, v) = get_json(s.addr, "/api/channels/Public/messages?region=PDX").await;
    assert_eq!(v["total"], 2);
    let (st, _) = get_json(s.addr, "/api/channels/Public/messages?region=NOWHERE").await;
    assert_eq!(st, 404);
    let (st, _) = get_json(s.addr, "/api/channels/Public/messages?region=,").await;
    assert_eq!(st, 400);
    // Paging: the newest page, still oldest first within it.
    let (_, v) = get_json(s.addr, "/api/channels/Public/messages?limit=1").await;
    assert_eq!(v["messages"][0]["packetHash"], hash_of(SECOND).as_str());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_api_channels_include_encrypted_and_region() {
    let (_dir, s) = server().await;
    let names = |v: &Value| -> Vec<String> {
        v["channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["hash"].as_str().unwrap().to_owned())
            .collect()
    };
    // Only decrypted channels by default, as CoreScope lists them.
    let (st, v) = get_json(s.addr, "/api/channels").await;
    assert_eq!(st, 200);
    assert_eq!(names(&v), ["Public"]);
    let public = &v["channels"][0];
    assert_eq!(public["messageCount"], 2);
    assert_eq!(public["name"], "Public");
    assert!(public["lastMessage"].is_string() && public["lastSender"].is_string());
    assert!(public["lastActivity"].is_string());
    // With includeEncrypted the channel nobody has the key of too.
    let (_, v) = get_json(s.addr, "/api/channels?includeEncrypted=true").await;
    let all = names(&v);
    assert_eq!(all.len(), 2, "{v}");
    let enc = v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["encrypted"] == true)
        .unwrap();
    let hash = enc["hash"].as_str().unwrap();
    assert!(hash.starts_with("enc_"), "{enc}");
    assert_eq!(
        enc["name"],
        format!("Encrypted (0x{})", hash[4..].to_ascii_uppercase()).as_str()
    );
    assert!(enc["lastMessage"].is_null() && enc["lastSender"].is_null());
    assert_eq!(enc["messageCount"], 1);
    // The cached list answers both forms the same way again.
    let (_, again) = get_json(s.addr, "/api/channels").await;
    assert_eq!(names(&again), ["Public"]);
    // region counts only what was heard there.
    let (_, v) = get_json(s.addr, "/api/channels?region=SEA&includeEncrypted=true").await;
    assert_eq!(names(&v).len(), 2, "{v}");
    let public = v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["hash"] == "Public")
        .unwrap();
    assert_eq!(public["messageCount"], 1);
    let (_, v) = get_json(s.addr, "/api/channels?region=PDX&includeEncrypted=true").await;
    assert_eq!(names(&v), ["Public"]);
    assert_eq!(v["channels"][0]["messageCount"], 2);
    let (st, v) = get_json(s.addr, "/api/channels?region=NOWHERE").await;
    assert_eq!(st, 200);
    assert_eq!(v["channels"], Value::Array(vec![]));
    for bad in ["includeEncrypted=maybe", "region=,"] {
        let (st, v) = get_json(s.addr, &format!("/api/channels?{bad}")).await;
        assert_eq!(st, 400, "{bad}");
        assert!(v["error"].is_string());
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_api_known_channels() {
    let (_dir, s) = server().await;
    for path in ["/api/known-channels", "/api/known-channels?region=BE"] {
        let (st, v) = get_json(s.addr, path).await;
        assert_eq!(st, 200);
        assert!(v["fetchedAt"].is_string() && v["source"].is_string(), "{v}");
        assert_eq!(v["entries"], Value::Array(vec![]));
    }
    let (st, v) = get_json(s.addr, "/api/known-channels?region=XYZ").await;
    assert_eq!(st, 400);
    assert!(v["error"].is_string());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_message_totals_follow_new_messages() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut w = seed_real_frames(&db);
    let s = start(config(&db)).await;
    let (st, v) = get(s.addr, "/api/channels/Public/messages").await;
    assert_eq!(st, 200);
    assert_eq!(v["total"], 2, "{v}");
    // Two more Public messages after the first (full) count: counted on top of it.
    let now = server::now_ms();
    for i in 0..2u32 {
        let mut plain = Vec::new();
        meshcore::payload::GroupText {
            timestamp: 1_800_000_000 + i,
            flags: 0,
            text: &format!("Bob: hello {i}"),
        }
        .encode(&mut plain);
        let mut payload = Vec::new();
        meshcore::crypto::Channel::public().encrypt_into(&plain, &mut payload);
        let frame = meshcore::Packet::new(
            meshcore::Route::Flood,
            meshcore::PayloadType::GrpTxt,
            meshcore::PathLen::ZERO,
            &[],
            &payload,
        )
        .unwrap()
        .to_bytes();
        w.write_batch(&[item_sea(&hex::encode(frame), OBS_A, now + 1 + i64::from(i))])
            .unwrap();
    }
    let (_, v) = get(s.addr, "/api/channels/Public/messages").await;
    assert_eq!(v["total"], 4, "{v}");
    assert_eq!(v["messages"].as_array().unwrap().len(), 4);
    s.shutdown().await;
}
