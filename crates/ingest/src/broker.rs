//! The embedded MQTT broker for the zero-config default: `meshlens run` listens on
//! `127.0.0.1:1883`, observers publish to it directly, and the writer subscribes to it like any
//! other broker (over loopback, so there is one ingest path to test, not two).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Largest MQTT payload the broker forwards. Generous, so that the ingest parser (not the
/// broker) refuses and counts oversized messages.
const MAX_PAYLOAD: usize = 1024 * 1024;

/// Starts the broker on `listen` in a background thread and returns the bound address (useful
/// with port 0). Fails if the address cannot be bound.
pub fn start(listen: SocketAddr) -> Result<SocketAddr, String> {
    // rumqttd binds inside its thread and only logs a failure; bind here first so a busy port
    // is a clear error, and so port 0 resolves to a real port.
    let probe = TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = probe.local_addr().map_err(|e| e.to_string())?;
    drop(probe);

    let server = ServerSettings {
        name: "meshlens".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: 200,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_000,
            max_outgoing_packet_count: 200,
            // The router keeps recent publishes per filter in memory whether or not they were
            // consumed, so this is resident once traffic has filled it: 4 × 3 MiB, about
            // 37,000 observer messages of slack for ingest to catch up (almost 2 s at the system
            // benchmark's 20,000/s; minutes at a busy region's ~100/s). 4 × 2 MiB lost messages
            // in that benchmark while the 2-core machine was also running a browser.
            max_segment_size: 3 * 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("meshlens-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(|e| e.to_string())?;
    // Wait until it accepts connections.
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(addr);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(format!("embedded broker did not start listening on {addr}"))
}
