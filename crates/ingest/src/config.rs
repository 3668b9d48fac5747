//! Ingest configuration: broker URLs, durations, and CoreScope's `config.json` keys
//! (`mqtt`, `mqttSources`, `channelKeys`, `hashChannels`, `hashRegions`) so operators can switch
//! without rewriting their configuration.

use base64::Engine;
use meshcore::crypto::{Channel, ChannelKey};
use serde_json::Value;

/// The topic subscribed when none is configured.
pub const DEFAULT_TOPIC: &str = "meshcore/#";

/// How a source reaches its broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `mqtt://`, plain TCP (default port 1883).
    Mqtt,
    /// `mqtts://`, TLS (8883).
    Mqtts,
    /// `ws://`, MQTT over WebSocket (80).
    Ws,
    /// `wss://`, MQTT over TLS WebSocket (443).
    Wss,
}

/// A parsed broker URL. Credentials in the URL are taken out and kept apart, so the URL can
/// be logged and shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Transport.
    pub scheme: Scheme,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path, for WebSocket brokers (e.g. `/mqtt`).
    pub path: String,
    /// `user` from `user:pass@`.
    pub username: Option<String>,
    /// `pass` from `user:pass@`.
    pub password: Option<String>,
}

impl BrokerUrl {
    /// Parses `scheme://[user[:pass]@]host[:port][/path]`; `tcp://` and `ssl://` are aliases.
    pub fn parse(s: &str) -> Result<BrokerUrl, String> {
        let s = s.trim();
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("{s:?}: missing scheme://"))?;
        let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => (Scheme::Mqtt, 1883),
            "mqtts" | "ssl" | "tls" => (Scheme::Mqtts, 8883),
            "ws" => (Scheme::Ws, 80),
            "wss" => (Scheme::Wss, 443),
            other => {
                return Err(format!(
                    "unsupported scheme {other:?} (mqtt, mqtts, ws, wss)"
                ));
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((a, b)) => (Some(a.to_owned()), Some(b.to_owned())),
                None => (Some(u.to_owned()), None),
            },
            None => (None, None),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            // [IPv6]:port
            let (h, after) = h.split_once(']').ok_or("unclosed [ in host")?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
                None => default_port,
            };
            (h.to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse().map_err(|_| format!("bad port {p:?}"))?,
                ),
                None => (hostport.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("{s:?}: missing host"));
        }
        Ok(BrokerUrl {
            scheme,
            host,
            port,
            path: if matches!(scheme, Scheme::Ws | Scheme::Wss) && path.is_empty() {
                "/mqtt".into()
            } else {
                path.to_owned()
            },
            username,
            password,
        })
    }

    /// The URL without credentials, for logs and the health output.
    pub fn display(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Mqtt => "mqtt",
            Scheme::Mqtts => "mqtts",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}{}", self.port, self.path)
    }
}

/// One MQTT source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// Name in logs and health output.
    pub name: String,
    /// Where.
    pub broker: BrokerUrl,
    /// Topic filters (default `meshcore/#`).
    pub topics: Vec<String>,
    /// When non-empty, only packets from these IATA codes are ingested (status is always).
    pub iata_filter: Vec<String>,
    /// Sign in with a MeshCore token instead of (or besides) a user name and password.
    pub token: Option<crate::token::TokenAuth>,
}

impl SourceConfig {
    /// A source from a URL with the default topic.
    pub fn from_url(name: &str, url: &str) -> Result<SourceConfig, String> {
        Ok(SourceConfig {
            name: name.to_owned(),
            broker: BrokerUrl::parse(url)?,
            topics: vec![DEFAULT_TOPIC.to_owned()],
            iata_filter: Vec::new(),
            token: None,
        })
    }

    /// Whether a packet from `iata` passes this source's filter.
    pub fn accepts_iata(&self, iata: &str) -> bool {
        self.iata_filter.is_empty()
            || self
                .iata_filter
                .iter()
                .any(|f| f.eq_ignore_ascii_case(iata))
    }
}

pub use store::time::parse_duration;

/// What a CoreScope-style `config.json` contributes.
#[derive(Debug, Default)]
pub struct FileConfig {
    /// From `mqtt` and `mqttSources`.
    pub sources: Vec<SourceConfig>,
    /// From `channelKeys` (name → hex or base64 key).
    pub channels: Vec<Channel>,
    /// From `hashChannels`.
    pub hashtags: Vec<String>,
    /// From `hashRegions`.
    pub regions: Vec<String>,
    /// From `broker`: the embedded broker of `meshlens run`.
    pub broker: BrokerFileConfig,
    /// From `apiKey`: the admin API key (CoreScope's name).
    pub api_key: Option<String>,
    /// From `geo_filter`: the area of the mesh, validated.
    pub geo_filter: Option<analytics::geo::GeoFilter>,
    /// The `alerts` object, as written (the reader's alerting parses it).
    pub alerts: Option<Value>,
    /// The reader's UI keys, as given (`mapDefaults`, `areas`, `cacheTTL`, `branding`,
    /// `theme`, `themeDark`, `nodeColors`, `typeColors`, `home`, `markerStroke`): the
    /// reader validates them (`server::web::UiConfig::apply_file`).
    pub ui: serde_json::Map<String, Value>,
}

/// The top-level keys of [`FileConfig::ui`].
pub const UI_KEYS: [&str; 10] = [
    "mapDefaults",
    "areas",
    "cacheTTL",
    "branding",
    "theme",
    "themeDark",
    "nodeColors",
    "typeColors",
    "home",
    "markerStroke",
];

/// The `broker` object of the configuration file: the same settings as `meshlens run`'s
/// `--mqtt-*` flags (a flag given on the command line wins). CoreScope's top-level
/// `observerBlacklist` adds to `blockObservers`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BrokerFileConfig {
    /// `listen`: plain TCP address.
    pub listen: Option<std::net::SocketAddr>,
    /// `tlsListen`.
    pub tls_listen: Option<std::net::SocketAddr>,
    /// `tlsCert`: PEM certificate chain.
    pub tls_cert: Option<std::path::PathBuf>,
    /// `tlsKey`: PEM private key.
    pub tls_key: Option<std::path::PathBuf>,
    /// `wsListen`.
    pub ws_listen: Option<std::net::SocketAddr>,
    /// `wssListen`.
    pub wss_listen: Option<std::net::SocketAddr>,
    /// `passwords`: a Mosquitto password file.
    pub passwords: Option<std::path::PathBuf>,
    /// `tokenAudience`.
    pub token_audience: Option<String>,
    /// `allowAnonymous`.
    pub allow_anonymous: bool,
    /// `requireAuth`.
    pub require_auth: bool,
    /// `allowObservers`: observer keys.
    pub allow_observers: Vec<String>,
    /// `blockObservers` (and CoreScope's `observerBlacklist`): observer keys.
    pub block_observers: Vec<String>,
}

fn broker_section(obj: &serde_json::Map<String, Value>) -> Result<BrokerFileConfig, String> {
    let mut out = BrokerFileConfig::default();
    if let Some(list) = obj.get("observerBlacklist") {
        out.block_observers =
            strings(list).ok_or("observerBlacklist must be an array of strings")?;
    }
    let Some(b) = obj.get("broker") else {
        return Ok(out);
    };
    let b = b.as_object().ok_or("broker must be an object")?;
    let addr = |k: &str| -> Result<Option<std::net::SocketAddr>, String> {
        b.get(k)
            .map(|v| {
                v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                    format!("broker.{k} must be an address such as \"0.0.0.0:8883\"")
                })
            })
            .transpose()
    };
    let text = |k: &str| -> Result<Option<String>, String> {
        b.get(k)
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("broker.{k} must be a string"))
            })
            .transpose()
    };
    let flag = |k: &str| -> Result<bool, String> {
        b.get(k).map_or(Ok(false), |v| {
            v.as_bool()
                .ok_or_else(|| format!("broker.{k} must be true or false"))
        })
    };
    let keys = |k: &str| -> Result<Vec<String>, String> {
        b.get(k).map_or(Ok(Vec::new()), |v| {
            strings(v).ok_or_else(|| format!("broker.{k} must be an array of strings"))
        })
    };
    out.listen = addr("listen")?;
    out.tls_listen = addr("tlsListen")?;
    out.ws_listen = addr("wsListen")?;
    out.wss_listen = addr("wssListen")?;
    out.tls_cert = text("tlsCert")?.map(Into::into);
    out.tls_key = text("tlsKey")?.map(Into::into);
    out.passwords = text("passwords")?.map(Into::into);
    out.token_audience = text("tokenAudience")?;
    out.allow_anonymous = flag("allowAnonymous")?;
    out.require_auth = flag("requireAuth")?;
    out.allow_observers = keys("allowObservers")?;
    out.block_observers.extend(keys("blockObservers")?);
    Ok(out)
}

/// Reads a CoreScope-compatible configuration document. Unknown keys are ignored; a key with
/// the wrong shape is an error that names it.
pub fn parse_config_file(text: &str) -> Result<FileConfig, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("config is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("config must be a JSON object")?;
    let mut out = FileConfig::default();
    if let Some(m) = obj.get("mqtt") {
        let broker = m
            .get("broker")
            .and_then(Value::as_str)
            .ok_or("mqtt.broker must be a string")?;
        let mut src =
            SourceConfig::from_url("mqtt", broker).map_err(|e| format!("mqtt.broker: {e}"))?;
        if let Some(t) = m.get("topic").and_then(Value::as_str) {
            src.topics = vec![t.to_owned()];
        }
        apply_credentials(&mut src, m);
        apply_auth(&mut src, m, "mqtt")?;
        out.sources.push(src);
    }
    if let Some(list) = obj.get("mqttSources") {
        let list = list.as_array().ok_or("mqttSources must be an array")?;
        for (i, s) in list.iter().enumerate() {
            let broker = s
                .get("broker")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("mqttSources[{i}].broker must be a string"))?;
            let name = s
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("source-{i}"), str::to_owned);
            let mut src = SourceConfig::from_url(&name, broker)
                .map_err(|e| format!("mqttSources[{i}].broker: {e}"))?;
            if let Some(t) = s.get("topics") {
                src.topics =
                    strings(t).ok_or_else(|| format!("mqttSources[{i}].topics must be strings"))?;
            }
            if let Some(t) = s.get("iataFilter") {
                src.iata_filter = strings(t)
                    .ok_or_else(|| format!("mqttSources[{i}].iataFilter must be strings"))?;
            }
            apply_credentials(&mut src, s);
            apply_auth(&mut src, s, &format!("mqttSources[{i}]"))?;
            out.sources.push(src);
        }
    }
    if let Some(keys) = obj.get("channelKeys") {
        let keys = keys
            .as_object()
            .ok_or("channelKeys must be an object of name: key")?;
        for (name, key) in keys {
            let key = key.as_str().and_then(parse_key).ok_or_else(|| {
                format!("channelKeys.{name}: expected a 16- or 32-byte key in hex or base64")
            })?;
            out.channels.push(Channel::new(name.as_str(), key));
        }
    }
    if let Some(t) = obj.get("hashChannels") {
        out.hashtags = strings(t).ok_or("hashChannels must be an array of strings")?;
    }
    if let Some(t) = obj.get("hashRegions") {
        out.regions = strings(t).ok_or("hashRegions must be an array of strings")?;
    }
    out.broker = broker_section(obj)?;
    match obj.get("apiKey") {
        None | Some(Value::Null) => {}
        Some(Value::String(k)) if k.is_empty() => {}
        Some(Value::String(k)) => out.api_key = Some(k.clone()),
        Some(_) => return Err("apiKey must be a string".into()),
    }
    out.alerts = obj.get("alerts").cloned();
    if let Some(g) = obj.get("geo_filter") {
        out.geo_filter =
            analytics::geo::GeoFilter::from_json(g).map_err(|e| format!("geo_filter: {e}"))?;
    }
    for k in UI_KEYS {
        if let Some(v) = obj.get(k) {
            out.ui.insert(k.to_owned(), v.clone());
        }
    }
    Ok(out)
}

/// A channel key in hex (32/64 digits) or base64 (as the MeshCore apps show it).
pub fn parse_key(s: &str) -> Option<ChannelKey> {
    ChannelKey::from_hex(s).or_else(|| {
        let b = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .ok()?;
        ChannelKey::from_bytes(&b)
    })
}

/// `auth: {"method": "token", "privateKey": "<hex>", "audience": "…"}` (meshcoretomqtt's
/// `[broker.auth]` keys, in JSON), or `{"method": "password", "username", "password"}`.
fn apply_auth(src: &mut SourceConfig, v: &Value, at: &str) -> Result<(), String> {
    let Some(auth) = v.get("auth") else {
        return Ok(());
    };
    let method = auth.get("method").and_then(Value::as_str).unwrap_or("none");
    match method {
        "none" => Ok(()),
        "password" => {
            apply_credentials(src, auth);
            Ok(())
        }
        "token" => {
            let key = auth
                .get("privateKey")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{at}.auth.privateKey must be a hex string"))?;
            let key = crate::token::TokenKey::parse(key)
                .map_err(|e| format!("{at}.auth.privateKey: {e}"))?;
            src.token = Some(crate::token::TokenAuth {
                key,
                audience: auth
                    .get("audience")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                ttl: std::time::Duration::from_secs(3600),
            });
            Ok(())
        }
        other => Err(format!(
            "{at}.auth.method {other:?}: expected token, password or none"
        )),
    }
}

fn apply_credentials(src: &mut SourceConfig, v: &Value) {
    if let Some(u) = v.get("username").and_then(Value::as_str) {
        src.broker.username = Some(u.to_owned());
    }
    if let Some(p) = v.get("password").and_then(Value::as_str) {
        src.broker.password = Some(p.to_owned());
    }
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod broker_section_tests {
    use super::*;

    #[test]
    fn broker_keys_and_the_observer_blacklist() {
        let f = parse_config_file(
            r#"{"observerBlacklist":["aa"],"broker":{"listen":"0.0.0.0:1883",
            "wssListen":"0.0.0.0:443","tlsCert":"c.pem","tlsKey":"k.pem",
            "passwords":"pw","tokenAudience":"mesh.example","requireAuth":true,
            "allowObservers":["bb"],"blockObservers":["cc"]}}"#,
        )
        .unwrap();
        let b = f.broker;
        assert_eq!(b.listen, Some("0.0.0.0:1883".parse().unwrap()));
        assert_eq!(b.wss_listen, Some("0.0.0.0:443".parse().unwrap()));
        assert_eq!(b.tls_cert.as_deref(), Some(std::path::Path::new("c.pem")));
        assert_eq!(b.token_audience.as_deref(), Some("mesh.example"));
        assert!(b.require_auth && !b.allow_anonymous);
        assert_eq!(b.allow_observers, vec!["bb".to_owned()]);
        assert_eq!(b.block_observers, vec!["aa".to_owned(), "cc".to_owned()]);
        for bad in [
            r#"{"broker":[]}"#,
            r#"{"broker":{"listen":"nowhere"}}"#,
            r#"{"broker":{"requireAuth":"yes"}}"#,
            r#"{"broker":{"allowObservers":"aa"}}"#,
        ] {
            let e = parse_config_file(bad).unwrap_err();
            assert!(e.contains("broker"), "{bad}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let u = BrokerUrl::parse("mqtt://localhost").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Mqtt, "localhost", 1883)
        );
        let u = BrokerUrl::parse("mqtts://me:s3cr:t@broker.example:8884").unwrap();
        assert_eq!(u.username.as_deref(), Some("me"));
        assert_eq!(u.password.as_deref(), Some("s3cr:t"));
        assert_eq!(u.display(), "mqtts://broker.example:8884");
        let u = BrokerUrl::parse("wss://mqtt.example/ws").unwrap();
        assert_eq!((u.port, u.path.as_str()), (443, "/ws"));
        assert_eq!(BrokerUrl::parse("ws://h:9001").unwrap().path, "/mqtt");
        let u = BrokerUrl::parse("tcp://[::1]:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1884));
        assert!(BrokerUrl::parse("http://x").is_err());
        assert!(BrokerUrl::parse("localhost:1883").is_err());
        assert!(BrokerUrl::parse("mqtt://:1883").is_err());
        assert!(BrokerUrl::parse("mqtt://h:99999").is_err());
    }

    #[test]
    fn corescope_config_keys() {
        let c = parse_config_file(
            r##"{"mqtt":{"broker":"mqtt://localhost:1883","topic":"meshcore/+/+/packets"},
                "mqttSources":[{"name":"letsmesh","broker":"wss://mqtt.example:443/mqtt",
                    "username":"u","password":"p","topics":["meshcore/SEA/#"],"iataFilter":["SEA"]}],
                "channelKeys":{"ops":"izOH6cXN6mrJ5e26oRXNcg==","hex":"9cd8fcf22a47333b591d96a2b848b73f"},
                "hashChannels":["#test","wardriving"],"hashRegions":["#ottawa"],"port":3000}"##,
        )
        .unwrap();
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.sources[0].topics, ["meshcore/+/+/packets"]);
        assert_eq!(c.sources[1].name, "letsmesh");
        assert_eq!(c.sources[1].broker.password.as_deref(), Some("p"));
        assert!(c.sources[1].accepts_iata("sea") && !c.sources[1].accepts_iata("YOW"));
        assert_eq!(c.channels.len(), 2);
        assert_eq!(c.channels[0].hash(), 0x11); // the Public key, given in base64
        assert_eq!(c.hashtags, ["#test", "wardriving"]);
        assert_eq!(c.regions, ["#ottawa"]);
        assert!(
            parse_config_file(r#"{"mqttSources":{}}"#)
                .unwrap_err()
                .contains("mqttSources")
        );
        assert!(
            parse_config_file(r#"{"channelKeys":{"x":"zz"}}"#)
                .unwrap_err()
                .contains("channelKeys.x")
        );
        assert!(parse_config_file("[]").is_err());
        // The reader's UI keys are kept as given, for the reader to validate.
        let c = parse_config_file(
            r##"{"mapDefaults":{"zoom":9},"areas":{"A":{}},"theme":{"accent":"#fff"},"port":1}"##,
        )
        .unwrap();
        let mut keys: Vec<&String> = c.ui.keys().collect();
        keys.sort();
        assert_eq!(keys, ["areas", "mapDefaults", "theme"]);
    }
}
