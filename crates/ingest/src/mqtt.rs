//! One MQTT source: connect, subscribe, turn publishes into writer items, and never stall
//! silently. Reconnects back off exponentially up to 30 s; a watchdog rebuilds the client when
//! a connected source has been quiet for too long (a half-open socket or lost subscriptions);
//! keep-alive pings catch dead sockets sooner.

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

/// MQTT keep-alive: a dead connection is noticed within about 1.5× this.
const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// Largest MQTT packet accepted. Bigger than any real message so that hostile payloads are
/// refused by the parser (and counted) rather than tearing down the connection.
const MAX_MQTT_PACKET: usize = 1024 * 1024;

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
    'rebuild: loop {
        let (client, mut eventloop) = AsyncClient::new(options(&cfg), 64);
        let mut backoff = Duration::from_secs(1);
        let mut connected = false;
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
                _ = tokio::time::sleep_until(quiet_deadline), if connected => {
                    tracing::warn!(source = %name, "no message for {:?}; forcing a reconnect", settings.quiet_timeout);
                    stats.incr("mqtt.watchdog_reconnects");
                    stats.source(&name, |s| { s.watchdog_reconnects += 1; s.state = "connecting"; });
                    continue 'rebuild;
                }
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        backoff = Duration::from_secs(1);
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
                        let was_connected = std::mem::replace(&mut connected, false);
                        stats.incr("mqtt.connection_errors");
                        stats.source(&name, |s| {
                            s.state = "disconnected";
                            s.disconnects += 1;
                            s.last_error = Some(e.to_string());
                        });
                        if was_connected || stats.should_log("mqtt.connection_error").is_some() {
                            tracing::warn!(source = %name, "connection error: {e}; retrying in {backoff:?}");
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = shutdown.changed() => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        stats.source(&name, |s| s.state = "connecting");
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
