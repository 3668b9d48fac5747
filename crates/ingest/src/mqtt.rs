//! One MQTT source: connect, subscribe, turn publishes into writer items, and never stall
//! silently. Reconnects back off exponentially up to 30 s, but while the last healthy
//! connection ended only minutes ago the wait is capped at a few seconds ([`reconnect_delay`]),
//! so a broker back from a restart is found quickly; a watchdog rebuilds the client when a
//! connected source has been quiet for too long (a half-open socket or lost subscriptions);
//! keep-alive pings catch dead sockets sooner.
//!
//! Oversized publishes: rumqttc 0.25 has no way to skip a packet over its limit. Its codec
//! (`mqttbytes::check`) refuses the fixed header with `PayloadSizeLimitExceeded`, the event
//! loop drops the connection, and everything queued behind that packet on the broker's side
//! is lost. A shared broker forwards any size by default (mosquitto's `message_size_limit` is
//! 0, up to MQTT's 256 MiB), so anyone who can publish could cut meshlens off. The client limit
//! is therefore far above any real message ([`MAX_MQTT_PACKET`], 16 MiB): such a publish is
//! read whole and refused by the message parser (over 64 KiB, `refused.too_large`) with the
//! connection and every other message intact. The cost is memory: a packet is buffered whole
//! before it is parsed, and the connection's read buffer keeps the capacity of the largest
//! packet it has read until the connection is rebuilt, so each source can hold up to 16 MiB
//! after such a message (two or three at once at worst, while the kernel has several buffered).
//! A publish over 16 MiB still costs a reconnect; it is counted as `refused.too_large` and
//! `mqtt.oversized_disconnects`, and the reconnect is fast (the connection was healthy).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::{Scheme, SourceConfig};
use crate::decode::Decoder;
use crate::message;
use crate::pipeline::Pipeline;
use crate::stats::Stats;
use crate::writer_thread::{WriterMsg, now_ms};

/// Longest wait between reconnect attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Longest wait between reconnect attempts while the last healthy connection ended less than
/// [`RECENTLY_HEALTHY`] ago: a broker restart is typically over in well under a minute, and
/// probing every few seconds costs it nothing.
pub const FAST_BACKOFF: Duration = Duration::from_secs(4);

/// How long after a healthy connection ended reconnects stay fast. Past this the broker is
/// more likely gone for a while, and the wait grows to [`MAX_BACKOFF`].
pub const RECENTLY_HEALTHY: Duration = Duration::from_secs(180);

/// A connection that lasted this long was healthy: losing it starts the backoff afresh. One
/// that the broker drops sooner (a kick, a duplicate client id) continues the backoff, so a
/// broker that accepts and drops at once is not hammered.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// MQTT keep-alive: a dead connection is noticed within about 1.5× this.
const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// Largest MQTT packet read from an upstream broker. Far above any real message (the parser
/// refuses anything over 64 KiB) so that an oversized publish is refused and counted rather
/// than tearing down the connection; see the module documentation for its memory cost.
pub const MAX_MQTT_PACKET: usize = 16 * 1024 * 1024;

/// How long to wait before reconnect attempt `failures` (1 for the first retry after a loss
/// or a failed attempt). `since_healthy` is how long ago the last healthy connection ended
/// (`None`: never had one); `jitter` in `[0, 1)` spreads the wait over its upper half, so that
/// many clients of a restarted broker do not all come back in the same instant.
///
/// The base wait doubles from 1 s; it is capped at [`FAST_BACKOFF`] while the last healthy
/// connection ended less than [`RECENTLY_HEALTHY`] ago, else at [`MAX_BACKOFF`].
pub fn reconnect_delay(failures: u32, since_healthy: Option<Duration>, jitter: f64) -> Duration {
    let base = Duration::from_secs(1u64 << failures.saturating_sub(1).min(6));
    let cap = match since_healthy {
        Some(d) if d < RECENTLY_HEALTHY => FAST_BACKOFF,
        _ => MAX_BACKOFF,
    };
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    base.min(cap).mul_f64(0.5 + 0.5 * jitter)
}

/// A number in `[0, 1)` that differs between calls and between processes, for
/// [`reconnect_delay`]. `RandomState` is seeded randomly per process and advanced per call,
/// which is all the randomness a backoff needs (no extra dependency).
fn jitter() -> f64 {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new().hash_one(0u8);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a connection error is rumqttc refusing a packet over [`MAX_MQTT_PACKET`].
fn is_oversized(e: &rumqttc::ConnectionError) -> bool {
    matches!(
        e,
        rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(_)
        ))
    )
}

/// Settings shared by all sources.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// A connected source with no message for this long is reconnected.
    pub quiet_timeout: Duration,
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            quiet_timeout: Duration::from_secs(15 * 60),
        }
    }
}

fn client_id(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let clean: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("meshlens-{clean}-{:x}{:x}", std::process::id(), nanos)
}

fn options(cfg: &SourceConfig) -> MqttOptions {
    let b = &cfg.broker;
    let mut opts = match b.scheme {
        // For WebSocket transports rumqttc takes the whole URL as the address.
        Scheme::Ws | Scheme::Wss => {
            let proto = if b.scheme == Scheme::Ws { "ws" } else { "wss" };
            MqttOptions::new(
                client_id(&cfg.name),
                format!("{proto}://{}:{}{}", b.host, b.port, b.path),
                b.port,
            )
        }
        Scheme::Mqtt | Scheme::Mqtts => {
            MqttOptions::new(client_id(&cfg.name), b.host.clone(), b.port)
        }
    };
    opts.set_keep_alive(KEEP_ALIVE);
    opts.set_max_packet_size(MAX_MQTT_PACKET, 64 * 1024);
    opts.set_clean_session(true);
    if let Some(u) = &b.username {
        opts.set_credentials(u.clone(), b.password.clone().unwrap_or_default());
    }
    if let Some(token) = &cfg.token {
        // A fresh token for each client built: `run` rebuilds the client after a connection
        // error, so a reconnect never presents an expired one.
        let now = now_ms() / 1000;
        let (user, password) = token.credentials(now);
        opts.set_credentials(user, password);
    }
    match b.scheme {
        Scheme::Mqtt => {}
        Scheme::Ws => {
            opts.set_transport(Transport::Ws);
        }
        Scheme::Mqtts => {
            if let Some(tls) = tls_config() {
                opts.set_transport(Transport::Tls(tls));
            }
        }
        Scheme::Wss => {
            if let Some(tls) = tls_config() {
                opts.set_transport(Transport::Wss(tls));
            }
        }
    }
    opts
}

/// TLS with the system's root certificates. Built here rather than with rumqttc's default,
/// which panics when the system store cannot be read.
fn tls_config() -> Option<rumqttc::TlsConfiguration> {
    use rumqttc::tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!("no usable system root certificates; TLS brokers will fail to verify");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(rumqttc::TlsConfiguration::Rustls(Arc::new(config)))
}

/// Runs one source until `shutdown` turns true.
pub async fn run(
    cfg: SourceConfig,
    settings: SourceSettings,
    decoder: Arc<Decoder>,
    writer: mpsc::Sender<WriterMsg>,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = cfg.name.clone();
    let pipeline = Pipeline::new(cfg.clone(), decoder, writer, stats.clone());
    stats.source(&name, |s| {
        s.state = "connecting";
        s.broker = cfg.broker.display();
    });
    // Kept across client rebuilds: the backoff follows the broker, not the client object.
    let mut failures: u32 = 0;
    let mut healthy_ended: Option<Instant> = None;
    'rebuild: loop {
        let (client, mut eventloop) = AsyncClient::new(options(&cfg), 64);
        let mut connected_at: Option<Instant> = None;
        let mut last_activity = Instant::now();
        loop {
            if *shutdown.borrow() {
                let _ = client.try_disconnect();
                stats.source(&name, |s| s.state = "disconnected");
                return;
            }
            let quiet_deadline = last_activity + settings.quiet_timeout;
            tokio::select! {
                // Checked at the top of the loop.
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep_until(quiet_deadline), if connected_at.is_some() => {
                    tracing::warn!(source = %name, "no message for {:?}; forcing a reconnect", settings.quiet_timeout);
                    stats.incr("mqtt.watchdog_reconnects");
                    stats.source(&name, |s| { s.watchdog_reconnects += 1; s.state = "connecting"; });
                    continue 'rebuild;
                }
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected_at = Some(Instant::now());
                        last_activity = Instant::now();
                        tracing::info!(source = %name, broker = %cfg.broker.display(), "connected");
                        stats.incr("mqtt.connects");
                        stats.source(&name, |s| {
                            s.state = "connected";
                            s.connects += 1;
                            s.connected_at = Some(now_ms());
                        });
                        for t in &cfg.topics {
                            if let Err(e) = client.try_subscribe(t.clone(), QoS::AtMostOnce) {
                                tracing::warn!(source = %name, "subscribe {t}: {e}");
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        last_activity = Instant::now();
                        pipeline.publish(&p.topic, &p.payload, p.retain).await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let lost = connected_at.take();
                        if lost.is_some_and(|t| t.elapsed() >= HEALTHY_AFTER) {
                            failures = 0;
                            healthy_ended = Some(Instant::now());
                        }
                        failures = failures.saturating_add(1);
                        let wait = reconnect_delay(
                            failures,
                            healthy_ended.map(|t| t.elapsed()),
                            jitter(),
                        );
                        if is_oversized(&e) {
                            // The publish is lost with the connection; it is refused input all
                            // the same, and counted as such.
                            stats.incr("refused.too_large");
                            stats.incr("mqtt.oversized_disconnects");
                        }
                        stats.incr("mqtt.connection_errors");
                        stats.source(&name, |s| {
                            s.state = "disconnected";
                            s.disconnects += 1;
                            s.last_error = Some(e.to_string());
                        });
                        if lost.is_some() || stats.should_log("mqtt.connection_error").is_some() {
                            tracing::warn!(source = %name, "connection error: {e}; retrying in {wait:?}");
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.changed() => {}
                        }
                        stats.source(&name, |s| s.state = "connecting");
                        if cfg.token.is_some() {
                            // New client, new token (the old one may have expired).
                            continue 'rebuild;
                        }
                    }
                }
            }
        }
    }
}

/// Counter name for a refused message.
pub fn refusal_counter(r: message::Refusal) -> &'static str {
    use message::Refusal::*;
    match r {
        TooLarge => "refused.too_large",
        BadTopic => "refused.bad_topic",
        IgnoredTopic => "refused.ignored_topic",
        NotJson => "refused.not_json",
        NotObject => "refused.not_object",
        NoRaw => "refused.no_raw",
        BadHex => "refused.bad_hex",
        TxRecord => "refused.tx_record",
    }
}

pub(crate) fn invalid_frame_counter(code: &str) -> &'static str {
    match code {
        "too_short" => "invalid_frame.too_short",
        "truncated_transport_codes" => "invalid_frame.truncated_transport_codes",
        "reserved_hash_size" => "invalid_frame.reserved_hash_size",
        "path_too_long" => "invalid_frame.path_too_long",
        "path_exceeds_buffer" => "invalid_frame.path_exceeds_buffer",
        "payload_too_long" => "invalid_frame.payload_too_long",
        _ => "invalid_frame.other",
    }
}

pub(crate) fn refused_advert_counter(reason: &str) -> &'static str {
    match reason {
        "invalid_signature" => "refused_advert.invalid_signature",
        "zero_pubkey" => "refused_advert.zero_pubkey",
        _ => "refused_advert.other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn reconnect_delays() {
        let recent = Some(S(10));
        let long_ago = Some(S(600));
        // (failures, since the last healthy connection ended, jitter) → wait
        let cases: &[(u32, Option<Duration>, f64, Duration)] = &[
            // Never connected: 1, 2, 4, 8, 16, then 30 s, up to the upper half by jitter.
            (1, None, 1.0, S(1)),
            (1, None, 0.0, Duration::from_millis(500)),
            (2, None, 1.0, S(2)),
            (3, None, 1.0, S(4)),
            (4, None, 1.0, S(8)),
            (5, None, 1.0, S(16)),
            (6, None, 1.0, MAX_BACKOFF),
            (6, None, 0.0, MAX_BACKOFF / 2),
            (40, None, 1.0, MAX_BACKOFF),
            (u32::MAX, None, 1.0, MAX_BACKOFF),
            // Zero failures is treated as the first.
            (0, None, 1.0, S(1)),
            // Lost a healthy connection a moment ago: quick probes, never over FAST_BACKOFF.
            (1, recent, 1.0, S(1)),
            (2, recent, 1.0, S(2)),
            (3, recent, 1.0, FAST_BACKOFF),
            (9, recent, 1.0, FAST_BACKOFF),
            (9, recent, 0.0, FAST_BACKOFF / 2),
            (
                9,
                Some(RECENTLY_HEALTHY - Duration::from_millis(1)),
                1.0,
                FAST_BACKOFF,
            ),
            // Long after: back to the slow cap.
            (9, Some(RECENTLY_HEALTHY), 1.0, MAX_BACKOFF),
            (9, long_ago, 1.0, MAX_BACKOFF),
            (3, long_ago, 1.0, S(4)),
            // Hostile jitter values are clamped.
            (9, recent, f64::NAN, FAST_BACKOFF / 2),
            (9, recent, 7.0, FAST_BACKOFF),
            (9, recent, -3.0, FAST_BACKOFF / 2),
            (9, None, f64::INFINITY, MAX_BACKOFF / 2),
        ];
        for &(failures, since, jitter, want) in cases {
            assert_eq!(
                reconnect_delay(failures, since, jitter),
                want,
                "failures {failures}, since healthy {since:?}, jitter {jitter}"
            );
        }
    }

    /// The outage of the report: a healthy connection lost, the broker back 40 s later. With
    /// any jitter, the first attempt after its return comes within FAST_BACKOFF (it was
    /// 21-22 s with a plain 1-2-4-8-16-30 s backoff).
    #[test]
    fn a_broker_back_from_a_short_outage_is_found_within_seconds() {
        let outage = S(40);
        for jitter in [0.0, 0.3, 0.999] {
            let mut t = Duration::ZERO;
            let mut failures = 0;
            while t < outage {
                failures += 1;
                t += reconnect_delay(failures, Some(t), jitter);
            }
            assert!(t - outage <= FAST_BACKOFF, "jitter {jitter}: back at {t:?}");
        }
        // The old policy, for comparison: 1+2+4+8+16 = 31 s, then 30 s more: 61 s.
        let mut t = Duration::ZERO;
        let mut failures = 0;
        while t < outage {
            failures += 1;
            t += reconnect_delay(failures, None, 1.0);
        }
        assert_eq!(t, S(61));
    }

    #[test]
    fn jitter_is_in_range_and_varies() {
        let v: Vec<f64> = (0..32).map(|_| jitter()).collect();
        assert!(v.iter().all(|j| (0.0..1.0).contains(j)), "{v:?}");
        assert!(v.windows(2).any(|w| w[0] != w[1]), "{v:?}");
    }

    #[test]
    fn oversized_packets_are_recognised() {
        let e = rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(MAX_MQTT_PACKET + 1),
        ));
        assert!(is_oversized(&e));
        assert!(!is_oversized(&rumqttc::ConnectionError::NetworkTimeout));
    }
}
