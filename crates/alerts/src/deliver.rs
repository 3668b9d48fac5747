//! Getting notifications to people: the webhook formats (generic JSON, Discord, Slack,
//! ntfy), a minimal HTTP/1.1 client over TCP or TLS (native roots), and the per-receiver
//! outbox with retry and exponential backoff.
//!
//! Names and messages come from the mesh and are attacker-controlled: JSON bodies are built
//! with serde (escaped), Discord gets `allowed_mentions: {parse: []}` so a node called
//! `@everyone` pings nobody, Slack's control characters `&`, `<`, `>` are escaped as Slack
//! requires, and ntfy's header values are reduced to printable ASCII (no header injection).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::rules::Notification;

/// How a receiver wants its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `Notification::to_json` as the body.
    Generic,
    /// A Discord webhook (`{"content": …}`).
    Discord,
    /// A Slack incoming webhook (`{"text": …}`).
    Slack,
    /// An ntfy topic URL (text body, `Title`/`Tags`/`Priority` headers).
    Ntfy,
}

impl Format {
    /// Parses a config value.
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "generic" | "json" | "webhook" => Some(Format::Generic),
            "discord" => Some(Format::Discord),
            "slack" => Some(Format::Slack),
            "ntfy" => Some(Format::Ntfy),
            _ => None,
        }
    }

    /// Its config name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Generic => "generic",
            Format::Discord => "discord",
            Format::Slack => "slack",
            Format::Ntfy => "ntfy",
        }
    }
}

/// Where one receiver is.
#[derive(Debug, Clone, PartialEq)]
pub struct Receiver {
    /// Name in logs and `/api/alerts`.
    pub name: String,
    /// `http://` or `https://` URL.
    pub url: Url,
    /// Body format.
    pub format: Format,
    /// The rules it wants (`None`: all).
    pub rules: Option<Vec<String>>,
}

impl Receiver {
    /// Whether `rule` goes to this receiver.
    pub fn wants(&self, rule: &str) -> bool {
        self.rules
            .as_ref()
            .is_none_or(|r| r.iter().any(|x| x == rule))
    }
}

/// A parsed webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// TLS or not.
    pub https: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses `http(s)://host[:port][/path]`; user info and fragments are refused.
    pub fn parse(s: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!(
                "{s:?}: a webhook URL starts with http:// or https://"
            ));
        };
        if s.contains('#') || s.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!("{s:?}: not a valid URL"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (authority, path) = match authority.find('?') {
            Some(i) => (&authority[..i], format!("/{}", &authority[i..])),
            None => (authority, path.to_owned()),
        };
        if authority.contains('@') {
            return Err(format!(
                "{s:?}: credentials in a webhook URL are not supported"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, tail) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed IPv6 literal"))?;
            (h.to_owned(), tail.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("{s:?}: no host"));
        }
        let port = match port {
            None | Some("") => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(p) => p.parse().map_err(|_| format!("{s:?}: bad port"))?,
        };
        Ok(Url {
            https,
            host,
            port,
            path,
        })
    }

    /// The `Host` header's value.
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Printable ASCII only, at most `max` characters: safe in an HTTP header.
fn header_text(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .take(max)
        .collect()
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The request a receiver gets for `n`: body and extra headers.
pub fn render(format: Format, n: &Notification) -> (Vec<u8>, Vec<(&'static str, String)>) {
    let tag = if n.firing { "FIRING" } else { "RESOLVED" };
    let line = format!("[{tag}] {}: {}", n.rule, n.message);
    match format {
        Format::Generic => (n.to_json().to_string().into_bytes(), Vec::new()),
        Format::Discord => (
            json!({"content": line, "allowed_mentions": {"parse": []}})
                .to_string()
                .into_bytes(),
            Vec::new(),
        ),
        Format::Slack => (
            json!({"text": slack_escape(&line)})
                .to_string()
                .into_bytes(),
            Vec::new(),
        ),
        Format::Ntfy => (
            n.message.clone().into_bytes(),
            vec![
                (
                    "Title",
                    header_text(&format!("meshlens {tag}: {}", n.rule), 120),
                ),
                (
                    "Tags",
                    if n.firing {
                        "warning"
                    } else {
                        "white_check_mark"
                    }
                    .to_owned(),
                ),
                (
                    "Priority",
                    if n.firing { "high" } else { "default" }.to_owned(),
                ),
            ],
        ),
    }
}

/// How long one delivery attempt may take in all (connect, TLS, request, response).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS client settings with the system's roots (built once).
pub fn tls_config() -> Arc<tokio_rustls::rustls::ClientConfig> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
    Arc::new(config)
}

async fn exchange<S>(
    io: S,
    url: &Url,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::post(url.path.as_str())
        .header(hyper::header::HOST, url.authority())
        .header(
            hyper::header::USER_AGENT,
            concat!("meshlens/", env!("CARGO_PKG_VERSION")),
        )
        .header(
            hyper::header::CONTENT_TYPE,
            if headers.is_empty() {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            },
        );
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("request: {e}"))?;
    let res = send
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = res.status().as_u16();
    // Read (and discard) a bounded answer so the connection ends cleanly.
    let _ = http_body_util::Limited::new(res.into_body(), 64 * 1024)
        .collect()
        .await;
    driver.abort();
    Ok(status)
}

/// One POST; `Ok` only for a 2xx answer.
pub async fn post(
    url: &Url,
    body: Vec<u8>,
    headers: &[(&str, String)],
    tls: &Arc<tokio_rustls::rustls::ClientConfig>,
) -> Result<(), String> {
    let attempt = async {
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| format!("connect {}:{}: {e}", url.host, url.port))?;
        let status = if url.https {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| format!("server name: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(stream, url, body, headers).await?
        } else {
            exchange(tcp, url, body, headers).await?
        };
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT, attempt)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// The most notifications waiting per receiver; beyond, the oldest is dropped and counted.
pub const OUTBOX_CAPACITY: usize = 1000;
/// A notification not delivered within this long is dropped and counted.
pub const MAX_AGE_MS: i64 = 24 * 3_600_000;
/// The longest wait between attempts.
pub const MAX_BACKOFF_MS: i64 = 5 * 60_000;

/// One waiting notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The notification's id (receivers may de-duplicate on it).
    pub id: String,
    /// Its rule (for rate accounting and the log).
    pub rule: String,
    /// Rendered body.
    pub body: Vec<u8>,
    /// Rendered extra headers.
    pub headers: Vec<(String, String)>,
    /// When it was queued (Unix ms).
    pub queued_at: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before (Unix ms).
    pub next_attempt_at: i64,
}

impl Pending {
    /// Backoff after `attempts` failures: 1 s, 2 s, 4 s … up to [`MAX_BACKOFF_MS`].
    pub fn backoff_ms(attempts: u32) -> i64 {
        (1000i64 << attempts.min(20)).min(MAX_BACKOFF_MS)
    }

    /// For the state file. Bodies are UTF-8 (JSON or ntfy text).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "rule": self.rule,
            "body": String::from_utf8_lossy(&self.body),
            "headers": self.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "queuedAt": self.queued_at, "attempts": self.attempts,
            "nextAttemptAt": self.next_attempt_at,
        })
    }

    /// From the state file; `None` for an entry that does not parse.
    pub fn from_json(v: &Value) -> Option<Pending> {
        let headers = v["headers"]
            .as_array()?
            .iter()
            .filter_map(|h| Some((h[0].as_str()?.to_owned(), h[1].as_str()?.to_owned())))
            .collect();
        Some(Pending {
            id: v["id"].as_str()?.to_owned(),
            rule: v["rule"].as_str()?.to_owned(),
            body: v["body"].as_str()?.as_bytes().to_vec(),
            headers,
            queued_at: v["queuedAt"].as_i64()?,
            attempts: u32::try_from(v["attempts"].as_u64()?).ok()?,
            next_attempt_at: v["nextAttemptAt"].as_i64()?,
        })
    }
}

/// A receiver's queue, oldest first (delivered in order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outbox {
    /// Waiting notifications.
    pub queue: VecDeque<Pending>,
    /// Dropped because the outbox was full or they were too old.
    pub dropped: u64,
    /// Delivered since start.
    pub delivered: u64,
    /// Failed attempts since start.
    pub failures: u64,
    /// The last failure, for `/api/alerts`.
    pub last_error: Option<String>,
}

impl Outbox {
    /// Queues `p`, dropping the oldest if full. Returns whether something was dropped.
    pub fn push(&mut self, p: Pending) -> bool {
        if self.queue.iter().any(|q| q.id == p.id) {
            return false;
        }
        let mut dropped = false;
        while self.queue.len() >= OUTBOX_CAPACITY {
            self.queue.pop_front();
            self.dropped += 1;
            dropped = true;
        }
        self.queue.push_back(p);
        dropped
    }

    /// Drops what is older than [`MAX_AGE_MS`].
    pub fn expire(&mut self, now: i64) {
        let before = self.queue.len();
        self.queue.retain(|p| now - p.queued_at <= MAX_AGE_MS);
        self.dropped += (before - self.queue.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Subject;

    fn n(name: &str) -> Notification {
        Notification {
            id: "x".into(),
            rule: "node_offline",
            firing: true,
            subject: Subject {
                kind: "node",
                id: "ab".repeat(32),
                name: Some(name.into()),
            },
            since: 0,
            at: 0,
            message: format!("Repeater {name} silent"),
        }
    }

    #[test]
    fn urls() {
        let u = Url::parse("https://discord.com/api/webhooks/1/abc?wait=true").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port),
            (true, "discord.com", 443)
        );
        assert_eq!(u.path, "/api/webhooks/1/abc?wait=true");
        let u = Url::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8080, "/")
        );
        assert_eq!(u.authority(), "[::1]:8080");
        let u = Url::parse("http://ntfy.sh?x=1").unwrap();
        assert_eq!(u.path, "/?x=1");
        for bad in [
            "ftp://x",
            "http://",
            "http://u:p@h/",
            "http://h:99999/",
            "http://h/a b",
            "http://h/#f",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostile_names_cannot_ping_inject_or_break_headers() {
        let evil = "@everyone <!channel> &\r\nX-Evil: 1";
        let (body, _) = render(Format::Discord, &n(evil));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["allowed_mentions"]["parse"], json!([]));
        assert!(v["content"].as_str().unwrap().contains("@everyone"));
        let (body, _) = render(Format::Slack, &n(evil));
        let v: Value = serde_json::from_slice(&body).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(
            !text.contains('<') && text.contains("&lt;!channel&gt;"),
            "{text}"
        );
        let (_, headers) = render(Format::Ntfy, &n(evil));
        assert!(
            headers
                .iter()
                .all(|(_, v)| v.chars().all(|c| (' '..='~').contains(&c)))
        );
        let (body, _) = render(Format::Generic, &n(evil));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["subject"]["name"], evil);
        assert_eq!(v["state"], "firing");
    }

    #[test]
    fn the_outbox_is_bounded_and_deduplicated() {
        let mut o = Outbox::default();
        let p = |i: usize| Pending {
            id: format!("{i}"),
            rule: "r".into(),
            body: vec![],
            headers: vec![],
            queued_at: 0,
            attempts: 0,
            next_attempt_at: 0,
        };
        for i in 0..OUTBOX_CAPACITY + 5 {
            o.push(p(i));
        }
        assert_eq!(o.queue.len(), OUTBOX_CAPACITY);
        assert_eq!(o.dropped, 5);
        assert!(!o.push(p(OUTBOX_CAPACITY + 4)));
        assert_eq!(o.queue.len(), OUTBOX_CAPACITY);
        o.expire(MAX_AGE_MS + 1);
        assert!(o.queue.is_empty());
        assert_eq!(Pending::backoff_ms(0), 1000);
        assert_eq!(Pending::backoff_ms(3), 8000);
        assert_eq!(Pending::backoff_ms(30), MAX_BACKOFF_MS);
        let q = p(7);
        assert_eq!(Pending::from_json(&q.to_json()), Some(q));
    }
}
