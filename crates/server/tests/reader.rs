//! What guards the whole reader rather than one resource, over a database of real frames
//! (moved here from `api.rs`; each resource's own tests are in the file named after it):
//! hostile requests on every route get JSON errors, an unmigrated database is refused and the
//! pool never writes, no write SQL in the crate, every route in the OpenAPI document, channel
//! keys never leave the server. `nodes_observers_channels_and_stats` stays here too: it is a
//! smoke test of every core endpoint over one database (nodes, observers, channels, stats,
//! healthz, the OpenAPI document, metrics), with no single main subject.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meshcore::crypto::Keyring;
use meshcore::report::{DecodeOptions, parse_hex};
use serde_json::Value;
use server::{Server, ServerConfig};

mod support;

use support::*;

async fn start_with(cfg: ServerConfig) -> Result<Server, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Server::start(cfg, listener)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed_real_frames(&db);
    let s = start(config(&db)).await;
    for (path, status) in [
        ("/api/packets?limit=-1", 400),
        ("/api/packets?limit=abc", 400),
        ("/api/packets?offset=-5", 400),
        ("/api/packets?type=NOPE", 400),
        ("/api/packets?route=9", 400),
        ("/api/packets?since=yesterday", 400),
        ("/api/packets?order=sideways", 400),
        ("/api/packets?hash=xyz", 400),
        ("/api/packets/notanid", 400),
        ("/api/packets/0123456789abcdef", 404),
        ("/api/packets/999999", 404),
        ("/api/nodes?role=wizard", 400),
        ("/api/nodes?sortBy=evil;DROP", 400),
        ("/api/nodes?lastHeard=forever", 400),
        ("/api/nodes/zz", 400),
        ("/api/nodes/ffffffff", 404),
        ("/api/observers/nope", 404),
        ("/api/channels/nope/messages", 404),
        ("/api/no/such/route", 404),
    ] {
        let (st, v) = get(s.addr, path).await;
        assert_eq!(st, status, "{path}: {v}");
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    // Limits are capped, not refused.
    let (st, v) = get(s.addr, "/api/packets?limit=999999").await;
    assert_eq!((st, v["limit"].as_i64()), (200, Some(10_000)));
    let (_, v) = get(s.addr, "/api/nodes?limit=999999").await;
    assert!(v["nodes"].is_array());
    // Search text with LIKE wildcards and quotes is data, not syntax.
    let (st, v) = get(s.addr, "/api/nodes?search=%25%27%22_").await;
    assert_eq!((st, v["total"].as_i64()), (200, Some(0)));
    // Decode endpoint.
    let addr = s.addr;
    let (st, body) = tokio::task::spawn_blocking(move || {
        http_with_body(
            addr,
            "POST",
            "/api/decode",
            Some(r#"{"hex":"0D04B891647EBB40BA70"}"#),
        )
    })
    .await
    .unwrap();
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["decoded"]["packet_hash"], "bbf95563c6eec9fe");
    let (st, body) = tokio::task::spawn_blocking(move || {
        http_with_body(addr, "POST", "/api/decode", Some("{\"hex\":\"zz\"}"))
    })
    .await
    .unwrap();
    assert_eq!(st, 400, "{body}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_observers_channels_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed_real_frames(&db);
    let s = start(config(&db)).await;

    let (st, v) = get(s.addr, "/api/nodes").await;
    assert_eq!(st, 200);
    // Four verified adverts; the forged one made no node.
    assert_eq!(v["total"], 4);
    assert_eq!(v["counts"]["repeater"], 2);
    assert_eq!(v["counts"]["room"], 1);
    assert_eq!(v["counts"]["companion"], 1);
    let nodes = v["nodes"].as_array().unwrap();
    let two_byte = nodes
        .iter()
        .find(|n| n["hash_size"] == 2)
        .expect("a 2-byte node");
    assert_eq!(two_byte["hash_size_inconsistent"], false);
    let key = two_byte["public_key"].as_str().unwrap().to_string();
    let (_, rep) = get(s.addr, "/api/nodes?role=repeater").await;
    assert_eq!(rep["total"], 2);
    let (st, d) = get(s.addr, &format!("/api/nodes/{}", &key[..8])).await;
    assert_eq!(st, 200);
    assert_eq!(d["node"]["public_key"], key.as_str());
    assert_eq!(d["recentAdverts"].as_array().unwrap().len(), 1);
    let (_, found) = get(s.addr, "/api/nodes/search?q=MRO").await;
    assert_eq!(found["nodes"][0]["name"], "MRO-RPT04");

    let (_, obs) = get(s.addr, "/api/observers").await;
    let list = obs["observers"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let (_, a) = get(s.addr, &format!("/api/observers/{OBS_A}")).await;
    assert_eq!(a["model"], "Heltec V3");
    assert_eq!(a["packetsLastHour"], 10);
    // The name is returned as data; escaping is the UI's job.
    assert_eq!(a["name"], "<b>obs a1</b>");

    // Undecrypted channels only when asked for, as CoreScope lists them.
    let (_, ch) = get(s.addr, "/api/channels?includeEncrypted=true").await;
    let chans = ch["channels"].as_array().unwrap();
    let public = chans.iter().find(|c| c["hash"] == "Public").unwrap();
    assert_eq!(public["messageCount"], 2);
    assert!(chans.iter().any(|c| c["encrypted"] == true));
    let (_, msgs) = get(s.addr, "/api/channels/Public/messages").await;
    assert_eq!(msgs["total"], 2);
    let texts: Vec<&str> = msgs["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sender"].as_str().unwrap())
        .collect();
    assert!(texts.contains(&"otakup0pe"), "{texts:?}");

    let (_, stats) = get(s.addr, "/api/stats").await;
    assert_eq!(stats["totalTransmissions"], 10);
    assert_eq!(stats["totalObservations"], 20);
    assert_eq!(stats["totalNodes"], 4);
    assert_eq!(stats["totalObservers"], 2);
    let (st, hz) = get(s.addr, "/api/healthz").await;
    assert_eq!((st, &hz["ready"]), (200, &Value::Bool(true)));
    assert_eq!(hz["ingest"]["state"], "unknown");
    let (_, spec) = get(s.addr, "/api/openapi.json").await;
    for p in [
        "/api/packets",
        "/api/nodes/{pubkey}",
        "/api/channels/{hash}/messages",
        "/ws",
        "/metrics",
    ] {
        assert!(
            spec["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    let addr = s.addr;
    let (st, text) =
        tokio::task::spawn_blocking(move || http_with_body(addr, "GET", "/metrics", None))
            .await
            .unwrap();
    assert_eq!(st, 200);
    assert!(text.contains("meshlens_observations 20"), "{text}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_an_unmigrated_database_and_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    drop(seed_real_frames(&db));
    let c = store::rusqlite::Connection::open(&db).unwrap();
    c.pragma_update(None, "user_version", 1).unwrap();
    drop(c);
    let err = start_with(config(&db)).await.err().unwrap();
    assert!(err.contains("start the writer"), "{err}");

    // The pool's connections refuse writes.
    let c = store::rusqlite::Connection::open(&db).unwrap();
    c.pragma_update(None, "user_version", store::SCHEMA_VERSION)
        .unwrap();
    drop(c);
    let pool = server::db::Db::open(&db, 1, Duration::from_secs(120)).unwrap();
    let r = pool
        .query(|c| {
            Ok(c.execute("DELETE FROM transmissions", []).is_err()
                && c.execute("CREATE TABLE x (y)", []).is_err())
        })
        .await
        .unwrap();
    assert!(r, "a pooled connection accepted a write");
    let _ = Arc::clone(&pool);
}

/// The reader must not contain write SQL: any statement that changes the database belongs
/// to the writer.
#[test]
fn no_write_sql_in_the_server_crate() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src];
    let mut offenders = Vec::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        for word in [
            "INSERT", "UPDATE", "DELETE", "ALTER", "CREATE", "DROP", "REPLACE", "VACUUM", "ATTACH",
            "REINDEX",
        ] {
            for (i, _) in text.match_indices(word) {
                let before = text[..i].chars().last().unwrap_or(' ');
                let after = text[i + word.len()..].chars().next().unwrap_or(' ');
                if !before.is_alphanumeric()
                    && before != '_'
                    && !after.is_alphanumeric()
                    && after != '_'
                {
                    offenders.push(format!("{}: {word}", p.display()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "write SQL in the reader: {offenders:?}"
    );
}

/// Every route the router serves is described in the OpenAPI document.
#[test]
fn every_route_is_in_the_openapi_document() {
    let src = include_str!("../src/lib.rs");
    let spec: Value = serde_json::from_str(server::OPENAPI).unwrap();
    let routes: Vec<&str> = src
        .split(".route(")
        .skip(1)
        .filter_map(|s| s.trim_start().strip_prefix('"')?.split('"').next())
        .collect();
    assert!(routes.len() >= 20, "{routes:?}");
    for r in routes {
        if r == "/api/spec" {
            continue; // an alias of /api/openapi.json
        }
        assert!(
            spec["paths"][r].is_object(),
            "{r} missing from openapi.json"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_keys_never_leave_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed_real_frames(&db);
    // A private channel configured on the server.
    let mut keyring = Keyring::with_public();
    keyring.add(meshcore::crypto::Channel::hashtag("test"));
    let s = start_with(ServerConfig {
        decode: DecodeOptions {
            keyring,
            ..DecodeOptions::default()
        },
        ..config(&db)
    })
    .await
    .unwrap();
    let hex = vector("grp_txt_public_channel_decrypt");
    // The library's report has the key (the vectors expect it) ...
    let report =
        meshcore::report::decode_to_json(&parse_hex(&hex).unwrap(), &DecodeOptions::default());
    assert!(report["channel_key"].is_string(), "{report}");
    // ... the API does not, wherever the decoded frame appears.
    let (_, list) = get(s.addr, "/api/packets?channel=Public").await;
    let decoded = &list["packets"][0]["decoded"];
    assert!(
        decoded["plaintext"]["text"].is_string(),
        "decrypted: {decoded}"
    );
    assert!(decoded.get("channel_key").is_none(), "{decoded}");
    let addr = s.addr;
    let (st, body) = tokio::task::spawn_blocking(move || {
        http_with_body(
            addr,
            "POST",
            "/api/decode",
            Some(&format!("{{\"hex\":\"{hex}\"}}")),
        )
    })
    .await
    .unwrap();
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["decoded"]["plaintext"]["text"].is_string(), "{v}");
    assert!(!body.contains("channel_key"), "{body}");
    let hash = list["packets"][0]["hash"].as_str().unwrap().to_string();
    let (_, detail) = get(s.addr, &format!("/api/packets/{hash}")).await;
    assert!(!detail.to_string().contains("channel_key"), "{detail}");
    s.shutdown().await;
}
