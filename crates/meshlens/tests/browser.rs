//! Browser tests of the web UI, in real headless Chromium driven by Playwright
//! (`tests/browser/ui.test.mjs`), against a `meshlens run` fed with a simulated mesh and the
//! known data of `tests/support/ui_fixture.rs` (a node and a message whose text is markup,
//! and a fresh packet every 250 ms for the live views).
//!
//! Needs `/usr/bin/chromium` (or `$CHROMIUM`), `node`, and `npm ci` run in `tests/browser/`;
//! `.ci/run` installs all three and sets `MESHLENS_BROWSER_TESTS=1`, which turns a missing
//! prerequisite into a failure. Without it the test says what is missing and passes, so a
//! plain `cargo test` works on a machine without a browser.
//!
//! Environment of the script: `BASE_URL`, `SCREENSHOT_DIR`, `HOSTILE_NAME`
//! (`<svg onload=__xss=1>`, a repeater's name), `HOSTILE_TEXT` (a Public channel
//! message, sent as `Mallory: <text>`), `HOSTILE_SKEW_SECS` (how far the hostile node's
//! advert clock is off), `HOSTILE_OBSERVER_ID` and `HOSTILE_OBSERVER_NAME` (an observer whose
//! name is markup, with a position, a status and direct receptions), `CHROMIUM`.
//!
//! To look at the same data by hand: start `meshlens run --demo --mqtt-listen
//! 127.0.0.1:18990 --http 127.0.0.1:3111`, then `cargo run -p meshlens --example ui_fixture --
//! 127.0.0.1:18990`. Screenshots of a run land in `$MESHLENS_SCREENSHOTS` (default: a
//! temporary directory that is removed).

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::http::get;
use support::ui_fixture;

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// What is missing to run the browser tests, if anything.
fn missing_prerequisite(dir: &Path, chromium: &Path) -> Option<String> {
    if !chromium.exists() {
        return Some(format!(
            "{} not found (apt-get install chromium)",
            chromium.display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node not found".into());
    }
    if !dir.join("node_modules/playwright-core").exists() {
        return Some(format!("run `npm ci` in {}", dir.display()));
    }
    None
}

/// Polls `path` until `ok(body)` holds, or panics after `within`.
async fn wait_for(addr: SocketAddr, path: &str, within: Duration, ok: impl Fn(&str) -> bool) {
    let start = Instant::now();
    loop {
        let (status, body) = get(addr, path).await;
        if status == 200 && ok(&body) {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{path} not ready after {within:?}: {status} {body:.300}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_in_headless_chromium() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    if let Some(missing) = missing_prerequisite(&dir, &chromium) {
        assert!(
            std::env::var_os("MESHLENS_BROWSER_TESTS").is_none(),
            "MESHLENS_BROWSER_TESTS is set but {missing}"
        );
        eprintln!(
            "browser tests not run: {missing} (set MESHLENS_BROWSER_TESTS=1 to require them)"
        );
        return;
    }

    let data = tempfile::tempdir().unwrap();
    let http = free_port();
    let mqtt = free_port();
    let _server = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_meshlens"))
            .arg("run")
            .arg("--data-dir")
            .arg(data.path())
            .args([
                "--http",
                &http.to_string(),
                "--mqtt-listen",
                &mqtt.to_string(),
            ])
            .args(["--analytics-interval", "1s", "--hashtag", "test"])
            // A debug build under a browser on 2 cores: a slow query must not become a 503.
            .args(["--query-deadline", "60s"])
            // Alerts within the test's time: the simulator's observers go quiet after it.
            .args([
                "--alert-eval-interval",
                "1s",
                "--alert-observer-silence",
                "5s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("meshlens run"),
    );
    wait_for(http, "/api/healthz", Duration::from_secs(120), |b| {
        b.contains("\"ready\":true")
    })
    .await;
    // Wait for the writer's MQTT subscription before publishing (QoS 0 is not queued).
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A simulated mesh for every page to have data, then the hostile node and message.
    let sim = Command::new(env!("CARGO_BIN_EXE_meshlens"))
        .args(["simulate", "--mqtt", &format!("mqtt://{mqtt}")])
        .args(["--nodes", "40", "--observers", "4", "--duration", "9h"])
        .args(["--speed", "max", "--seed", "11"])
        .output()
        .expect("meshlens simulate");
    assert!(
        sim.status.success(),
        "simulate: {}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let stop = stop.clone();
        let broker = mqtt.to_string();
        async move { ui_fixture::publish(&broker, Duration::from_millis(250), stop).await }
    });
    wait_for(
        http,
        "/api/nodes/search?q=svg",
        Duration::from_secs(120),
        |b| b.contains("onload"),
    )
    .await;
    // The hostile node relays the fixture's chain: it is in the neighbor graph.
    wait_for(
        http,
        "/api/analytics/neighbor-graph",
        Duration::from_secs(120),
        |b| b.contains("onload"),
    )
    .await;
    // The hostile node's clock is measured, and the hostile observer has reported and is on the
    // coverage leaderboard (it has a position and heard nodes directly).
    wait_for(
        http,
        "/api/nodes/clock-skew",
        Duration::from_secs(120),
        |b| b.contains("onload"),
    )
    .await;
    let hostile_observer = ui_fixture::hostile_observer_key().to_ascii_lowercase();
    wait_for(
        http,
        &format!("/api/observers/{hostile_observer}"),
        Duration::from_secs(120),
        |b| b.contains("onerror") && b.contains("\"last_status_at\":\""),
    )
    .await;
    wait_for(http, "/api/rx-leaderboard", Duration::from_secs(120), |b| {
        b.contains("onerror")
    })
    .await;
    // The capability cycle has run over the simulated traffic.
    wait_for(
        http,
        "/api/analytics/hash-sizes",
        Duration::from_secs(120),
        |b| !b.contains("\"confirmed\":0,"),
    )
    .await;

    let keep = std::env::var_os("MESHLENS_SCREENSHOTS").map(PathBuf::from);
    let shots_tmp = tempfile::tempdir().unwrap();
    let shots = keep.unwrap_or_else(|| shots_tmp.path().to_path_buf());
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::task::spawn_blocking({
        let dir = dir.clone();
        let shots = shots.clone();
        let hostile_observer = hostile_observer.clone();
        move || {
            Command::new("node")
                .args(["--test", "--test-reporter=spec", "ui.test.mjs"])
                .current_dir(&dir)
                .env("BASE_URL", format!("http://{http}"))
                .env("SCREENSHOT_DIR", &shots)
                .env("HOSTILE_NAME", ui_fixture::HOSTILE_NAME)
                .env("HOSTILE_TEXT", ui_fixture::HOSTILE_TEXT)
                .env(
                    "HOSTILE_SKEW_SECS",
                    ui_fixture::HOSTILE_SKEW_SECS.to_string(),
                )
                .env("HOSTILE_OBSERVER_ID", &hostile_observer)
                .env("HOSTILE_OBSERVER_NAME", ui_fixture::HOSTILE_OBSERVER_NAME)
                .env("CHROMIUM", &chromium)
                .output()
                .expect("node")
        }
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let published = publisher.await.unwrap().expect("fixture publisher");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(out.status.success(), "browser tests failed:\n{report}");
    assert!(published > 0, "the live publisher sent nothing");
    let pngs = std::fs::read_dir(&shots)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "png"))
        })
        .count();
    assert!(pngs >= 5, "expected a screenshot per page, found {pngs}");
}
