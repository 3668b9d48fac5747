//! The embedded web UI (`src/web.rs`): a strict CSP, gzip, the map tile configuration, and
//! nothing outside `web/` reachable.

use std::io::{Read, Write};
use std::net::TcpStream;

use server::ServerConfig;

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_is_served_with_a_strict_csp_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let _w = seed_real_frames(&db);
    let s = start(ServerConfig {
        ui: server::web::UiConfig {
            tile_url: "https://tiles.example.org/{z}/{x}/{y}.png".into(),
            tile_attribution: "<b>tiles</b>".into(),
            ..Default::default()
        },
        ..config(&db)
    })
    .await;
    let addr = s.addr;
    let raw = tokio::task::spawn_blocking(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        write!(
            c,
            "GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).unwrap();
        raw
    })
    .await
    .unwrap();
    let head =
        String::from_utf8_lossy(&raw[..raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap()])
            .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    let csp = head
        .lines()
        .find(|l| l.starts_with("content-security-policy:"))
        .unwrap_or_else(|| panic!("no CSP: {head}"));
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(csp.contains("https://tiles.example.org"), "{csp}");

    let (st, index) = http_with_body(s.addr, "GET", "/", None);
    assert_eq!(st, 200);
    assert!(index.contains("<script"), "{index}");
    let (st, map) = get(s.addr, "/api/config/map").await;
    assert_eq!(st, 200);
    assert_eq!(map["tileUrl"], "https://tiles.example.org/{z}/{x}/{y}.png");
    assert_eq!(map["attribution"], "<b>tiles</b>");
    // Unknown files are 404; unknown API paths stay JSON errors.
    let (st, _) = http_with_body(s.addr, "GET", "/no-such-file.js", None);
    assert_eq!(st, 404);
    // Nothing outside web/ is reachable (debug builds read web/ from disk).
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/..%2fCargo.toml",
        "/js/../../Cargo.toml",
        "//etc/passwd",
    ] {
        let (st, body) = http_with_body(s.addr, "GET", path, None);
        assert!(
            st == 404 || st == 400,
            "{path}: {st} {}",
            body.get(..80).unwrap_or(&body)
        );
        assert!(
            !body.contains("[workspace]") && !body.contains("root:"),
            "{path}"
        );
    }
    let (st, e) = get(s.addr, "/api/no-such-endpoint").await;
    assert_eq!(st, 404);
    assert!(e["error"].is_string());
    s.shutdown().await;
}
