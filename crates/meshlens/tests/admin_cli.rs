//! The admin key and the geo filter as an operator configures them: a weak key (short, or a
//! placeholder from an example) and a malformed `geo_filter` in the config file are refused
//! before anything starts, with a message naming what to fix.

use std::process::Command;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(extra: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meshlens"))
        .arg("run")
        .arg("--data-dir")
        .arg(dir)
        .args(["--http", &format!("127.0.0.1:{}", free_port())])
        .args(["--mqtt-listen", &format!("127.0.0.1:{}", free_port())])
        .args(extra)
        .env_remove("MESHLENS_ADMIN_KEY")
        .output()
        .unwrap()
}

#[test]
fn weak_admin_keys_and_bad_geo_filters_are_refused_before_start() {
    let dir = tempfile::tempdir().unwrap();
    for key in ["short", "changeme", "CHANGEME"] {
        let out = run(&["--admin-key", key], dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {stderr}");
        assert!(stderr.contains("--admin-key"), "{stderr}");
    }
    // The config file's apiKey is held to the same rule.
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, r#"{"apiKey": "password"}"#).unwrap();
    let out = run(&["--config", cfg.to_str().unwrap()], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("apiKey"), "{stderr}");

    std::fs::write(&cfg, r#"{"geo_filter": {"polygon": [[1, 2], [3, 4]]}}"#).unwrap();
    let out = run(&["--config", cfg.to_str().unwrap()], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("geo_filter") && stderr.contains("3 points"),
        "{stderr}"
    );
    // Nothing started.
    assert!(!dir.path().join("meshlens.db").exists());
}
