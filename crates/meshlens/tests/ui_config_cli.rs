//! The configuration file's UI keys (`mapDefaults`, `areas`, `cacheTTL`, theme sections) as
//! an operator gives them to `meshlens serve --config` and `meshlens run --config`: served by
//! the reader, and a malformed key refused before anything starts, naming the key.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const BAD: &str =
    r#"{"areas": {"BAY": {"label": "Bay", "polygon": [[37.9, -122.5], [37.2, -122.5]]}}}"#;

#[test]
fn a_malformed_area_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, BAD).unwrap();
    for cmd in ["serve", "run"] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_meshlens"));
        c.arg(cmd)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--http", &format!("127.0.0.1:{}", free_port())])
            .arg("--config")
            .arg(&cfg);
        if cmd == "run" {
            c.args(["--mqtt-listen", &format!("127.0.0.1:{}", free_port())]);
        }
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {stderr}");
        assert!(stderr.contains("areas.BAY.polygon"), "{cmd}: {stderr}");
        assert!(!dir.path().join("meshlens.db").exists(), "{cmd} started");
    }
}

fn get(port: u16, path: &str) -> Option<serde_json::Value> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (_, body) = raw.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

#[test]
fn serve_answers_with_the_configured_areas_map_and_theme() {
    let dir = tempfile::tempdir().unwrap();
    // The writer's migrations, as `meshlens ingest` would have run them.
    drop(store::Writer::open(&dir.path().join("meshlens.db"), 0).unwrap());
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"mapDefaults": {"center": [51.5, -0.12], "zoom": 10},
            "areas": {"_comment": "x", "LON": {"label": "London", "latMin": 51, "latMax": 52, "lonMin": -1, "lonMax": 1}},
            "branding": {"siteName": "London Mesh"}, "cacheTTL": {"stats": 10}}"#,
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshlens"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--http", &format!("127.0.0.1:{port}")])
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Until it listens (or exits): no fixed deadline for a slow machine to miss.
    let areas = loop {
        if let Some(v) = get(port, "/api/config/areas") {
            break v;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("serve exited: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(
        areas,
        serde_json::json!([{"key": "LON", "label": "London"}])
    );
    let map = get(port, "/api/config/map").unwrap();
    assert_eq!(
        (&map["center"], &map["zoom"]),
        (&serde_json::json!([51.5, -0.12]), &serde_json::json!(10))
    );
    let theme = get(port, "/api/config/theme").unwrap();
    assert_eq!(theme["branding"]["siteName"], "London Mesh");
    assert_eq!(
        get(port, "/api/config/cache").unwrap(),
        serde_json::json!({"stats": 10})
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
