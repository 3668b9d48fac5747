//! Publishes the browser tests' known data to a running `meshlens run` (hostile node name and
//! message, an observer whose name is markup, then a fresh packet every 250 ms), for working on
//! the UI by hand:
//!
//! ```text
//! meshlens run --demo --mqtt-listen 127.0.0.1:18990 --http 127.0.0.1:3111 &
//! cargo run -p meshlens --example ui_fixture -- 127.0.0.1:18990
//! ```

#[path = "../tests/support/ui_fixture.rs"]
mod ui_fixture;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let broker = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:1883".into());
    let stop = Arc::new(AtomicBool::new(false));
    if let Err(e) = ui_fixture::publish(&broker, Duration::from_millis(250), stop).await {
        eprintln!("ui_fixture: {e}");
        std::process::exit(1);
    }
}
