//! `meshlens run` as an operator exposing its broker would start it: a listener reachable from
//! other machines without a decision on who may publish is refused before anything starts,
//! with a message that says how to decide, whether the address came from a flag or from the
//! configuration file's `broker` object.

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
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn an_exposed_broker_needs_a_decision() {
    let dir = tempfile::tempdir().unwrap();
    let exposed = format!("0.0.0.0:{}", free_port());
    let out = run(&["--mqtt-listen", &exposed], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--mqtt-require-auth") && stderr.contains("--mqtt-allow-anonymous"),
        "{stderr}"
    );
    // Nothing started: no database was created.
    assert!(!dir.path().join("meshlens.db").exists());

    // The same from the configuration file.
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        format!(r#"{{"broker":{{"wsListen":"0.0.0.0:{}"}}}}"#, free_port()),
    )
    .unwrap();
    let out = run(
        &[
            "--mqtt-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--config",
            cfg.to_str().unwrap(),
        ],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ws listener"), "{stderr}");

    // A TLS listener without its certificate is refused too, naming the flags.
    let out = run(
        &[
            "--mqtt-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--mqtt-tls-listen",
            &format!("127.0.0.1:{}", free_port()),
        ],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("--mqtt-tls-cert"), "{stderr}");
}
