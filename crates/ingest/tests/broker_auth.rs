//! Authenticated observers on the embedded broker, over real sockets and every transport:
//! MeshCore token auth exactly as meshcoretomqtt sends it (user `v1_<KEY>`, password
//! `base64url(header).base64url(payload).<HEX SIGNATURE>`, built here from a fixed key), over
//! TCP, TLS, WebSocket and secure WebSocket; refusals for a foreign key, an expired or badly
//! signed token, anonymous clients on a non-loopback listener and wrong passwords, each counted.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use ingest::broker::auth::{AuthConfig, PasswordFile};
use ingest::broker::{BrokerSettings, Listener, TlsFiles, Transport as BrokerTransport};
use ingest::decode::Decoder;
use ingest::mqtt::SourceSettings;
use ingest::writer_thread::Maintenance;
use ingest::{Ingest, IngestConfig};
use rumqttc::tokio_rustls::rustls;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A fixed observer key, and its public half as uppercase hex (as meshcoretomqtt sends it).
fn key(seed: u8) -> (SigningKey, String) {
    let sk = SigningKey::from_bytes(&[seed; 32]);
    let pk = hex::encode_upper(sk.verifying_key().to_bytes());
    (sk, pk)
}

/// `create_auth_token` as meshcoretomqtt's auth_token.py does it: compact JSON, base64url
/// without padding, uppercase hex signature over `header.payload`.
fn token(seed: u8, iat: i64, exp: i64, aud: Option<&str>) -> (String, String) {
    let (sk, pk) = key(seed);
    let header = r#"{"alg":"Ed25519","typ":"JWT"}"#;
    let mut payload = format!(r#"{{"publicKey":"{pk}","iat":{iat},"exp":{exp}"#);
    if let Some(a) = aud {
        payload.push_str(&format!(r#","aud":"{a}""#));
    }
    payload.push('}');
    let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!("{}.{}", b64.encode(header), b64.encode(payload));
    let sig = hex::encode_upper(sk.sign(input.as_bytes()).to_bytes());
    (format!("v1_{pk}"), format!("{input}.{sig}"))
}

fn config(db: &Path) -> IngestConfig {
    IngestConfig {
        db_path: db.to_path_buf(),
        sources: Vec::new(),
        decoder: Decoder::default(),
        maintenance: Maintenance::default(),
        maintenance_interval: Duration::from_secs(3600),
        source_settings: SourceSettings::default(),
        status_file: None,
        mbcap: None,
    }
}

struct Tls {
    _dir: tempfile::TempDir,
    files: TlsFiles,
    client: Arc<rustls::ClientConfig>,
}

/// A self-signed certificate for 127.0.0.1, and a client that trusts exactly it.
fn tls() -> Tls {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&files.cert, cert.cert.pem()).unwrap();
    std::fs::write(&files.key, cert.key_pair.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Tls {
        _dir: dir,
        files,
        client: Arc::new(client),
    }
}

struct Broker {
    ingest: Ingest,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
    addrs: Vec<(BrokerTransport, SocketAddr)>,
}

impl Broker {
    fn addr(&self, t: BrokerTransport) -> SocketAddr {
        self.addrs.iter().find(|(k, _)| *k == t).unwrap().1
    }

    fn count(&self, sql: &str) -> i64 {
        let c = rusqlite::Connection::open(&self.db).unwrap();
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    fn counter(&self, name: &str) -> u64 {
        self.ingest.stats().get(name)
    }
}

async fn broker(
    listen: &[(BrokerTransport, &str)],
    tls: Option<TlsFiles>,
    auth: AuthConfig,
) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meshlens.db");
    let mut ingest = Ingest::start(config(&db)).unwrap();
    let listeners = listen
        .iter()
        .map(|(t, a)| Listener::bind(*t, a.parse().unwrap()).unwrap())
        .collect();
    let settings = BrokerSettings {
        auth: AuthConfig {
            clock_skew: Duration::from_secs(60),
            ..auth
        },
        ..BrokerSettings::default()
    };
    let addrs = ingest
        .serve_embedded_broker(listeners, tls, settings)
        .unwrap();
    Broker {
        ingest,
        db,
        _dir: dir,
        addrs,
    }
}

fn options(id: &str, t: BrokerTransport, addr: SocketAddr, tls: Option<&Tls>) -> MqttOptions {
    let host = addr.ip().to_string();
    let mut o = match t {
        BrokerTransport::Ws => MqttOptions::new(id, format!("ws://{addr}/mqtt"), addr.port()),
        BrokerTransport::Wss => MqttOptions::new(id, format!("wss://{addr}/"), addr.port()),
        _ => MqttOptions::new(id, host, addr.port()),
    };
    o.set_keep_alive(Duration::from_secs(30));
    let tls_cfg = || TlsConfiguration::Rustls(tls.unwrap().client.clone());
    match t {
        BrokerTransport::Tcp => {}
        BrokerTransport::Tls => {
            o.set_transport(Transport::Tls(tls_cfg()));
        }
        BrokerTransport::Ws => {
            o.set_transport(Transport::Ws);
        }
        BrokerTransport::Wss => {
            o.set_transport(Transport::Wss(tls_cfg()));
        }
    }
    o
}

/// Connects and returns the CONNACK code (or the connection error's text).
async fn connect(
    mut o: MqttOptions,
    creds: Option<(String, String)>,
) -> Result<(AsyncClient, rumqttc::EventLoop), String> {
    if let Some((u, p)) = creds {
        o.set_credentials(u, p);
    }
    let (client, mut el) = AsyncClient::new(o, 16);
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                return if ack.code == ConnectReturnCode::Success {
                    Ok((client, el))
                } else {
                    Err(format!("{:?}", ack.code))
                };
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// A real ACK frame (`ack_flood_4hops` with its CRC replaced by `n`) as observer `pk`.
fn packet(n: u32) -> Vec<u8> {
    format!(r#"{{"origin":"obs","direction":"rx","raw":"0D04B891647E{n:08X}","SNR":"7"}}"#)
        .into_bytes()
}

/// Publishes at QoS 1 and waits for the PUBACK.
async fn publish_acked(
    client: &AsyncClient,
    el: &mut rumqttc::EventLoop,
    topic: String,
    payload: Vec<u8>,
) {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::PubAck(_)) = el.poll().await.unwrap() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_observer_publishes_over_tcp_tls_ws_and_wss() {
    let tls = tls();
    let all = [
        (BrokerTransport::Tcp, "127.0.0.1:0"),
        (BrokerTransport::Tls, "127.0.0.1:0"),
        (BrokerTransport::Ws, "127.0.0.1:0"),
        (BrokerTransport::Wss, "127.0.0.1:0"),
    ];
    let b = broker(
        &all,
        Some(tls.files.clone()),
        AuthConfig {
            require_auth: true,
            token_audience: Some("meshlens.test".into()),
            ..AuthConfig::default()
        },
    )
    .await;
    let (_, pk) = key(7);
    for (i, (t, _)) in all.iter().enumerate() {
        let creds = token(7, now(), now() + 3600, Some("meshlens.test"));
        let (client, mut el) = connect(
            options(&format!("obs-{i}"), *t, b.addr(*t), Some(&tls)),
            Some(creds),
        )
        .await
        .unwrap_or_else(|e| panic!("{t:?}: {e}"));
        publish_acked(
            &client,
            &mut el,
            format!("meshcore/SEA/{pk}/packets"),
            packet(i as u32),
        )
        .await;
    }
    // Acknowledged means committed: every transport's packet is stored, under the observer.
    assert_eq!(b.count("SELECT count(*) FROM observations"), 4);
    assert_eq!(
        b.count(&format!(
            "SELECT count(*) FROM observers WHERE id = '{}'",
            pk.to_ascii_lowercase()
        )),
        1
    );
    // Anonymous is refused even on loopback with --mqtt-require-auth.
    let e = connect(
        options(
            "anon",
            BrokerTransport::Tcp,
            b.addr(BrokerTransport::Tcp),
            None,
        ),
        None,
    )
    .await
    .err()
    .unwrap();
    assert!(e.contains("NotAuthorized"), "{e}");
    assert_eq!(b.counter("broker.auth_refused.anonymous"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_foreign_tokens_are_refused_and_counted() {
    let b = broker(
        &[(BrokerTransport::Tcp, "127.0.0.1:0")],
        None,
        AuthConfig::default(),
    )
    .await;
    let addr = b.addr(BrokerTransport::Tcp);
    let o = |id: &str| options(id, BrokerTransport::Tcp, addr, None);

    // Expired beyond the clock allowance.
    let e = connect(
        o("expired"),
        Some(token(1, now() - 7200, now() - 3600, None)),
    )
    .await
    .err()
    .unwrap();
    assert!(e.contains("BadUserNamePassword"), "{e}");
    assert_eq!(b.counter("broker.auth_refused.expired"), 1);

    // Badly signed: the signature of another key.
    let (user, pw) = token(1, now(), now() + 3600, None);
    let (_, other) = token(2, now(), now() + 3600, None);
    let forged = format!(
        "{}.{}",
        pw.rsplit_once('.').unwrap().0,
        other.rsplit_once('.').unwrap().1
    );
    let e = connect(o("forged"), Some((user.clone(), forged)))
        .await
        .err()
        .unwrap();
    assert!(e.contains("BadUserNamePassword"), "{e}");
    assert_eq!(b.counter("broker.auth_refused.bad_signature"), 1);

    // Key A's token presented under key B's user name.
    let (user_b, _) = token(2, now(), now() + 3600, None);
    assert!(
        connect(o("swap"), Some((user_b, pw.clone())))
            .await
            .is_err()
    );
    assert_eq!(b.counter("broker.auth_refused.key_mismatch"), 1);

    // A valid token for A: publishing under B is dropped (and acknowledged), under A stored.
    let (client, mut el) = connect(o("a"), Some((user, pw))).await.unwrap();
    let (_, pk_a) = key(1);
    let (_, pk_b) = key(2);
    publish_acked(
        &client,
        &mut el,
        format!("meshcore/SEA/{pk_b}/packets"),
        packet(1),
    )
    .await;
    publish_acked(
        &client,
        &mut el,
        format!("meshcore/SEA/{pk_a}/packets"),
        packet(2),
    )
    .await;
    assert_eq!(b.count("SELECT count(*) FROM observations"), 1);
    assert_eq!(b.counter("broker.publish_refused.foreign_key"), 1);
    // Refusals are in the counters the health output and /metrics show.
    let counters = b.ingest.stats().to_json()["counters"].clone();
    assert_eq!(counters["broker.auth_refused"], 3, "{counters}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_is_refused_on_a_non_loopback_listener_unless_allowed() {
    // 0.0.0.0 is reachable from other machines; the test connects through 127.0.0.1.
    let b = broker(
        &[
            (BrokerTransport::Tcp, "0.0.0.0:0"),
            (BrokerTransport::Ws, "127.0.0.1:0"),
        ],
        None,
        AuthConfig {
            require_auth: false,
            ..AuthConfig::default()
        },
    )
    .await;
    let exposed = SocketAddr::new([127, 0, 0, 1].into(), b.addr(BrokerTransport::Tcp).port());
    let e = connect(options("anon", BrokerTransport::Tcp, exposed, None), None)
        .await
        .err()
        .unwrap();
    assert!(e.contains("NotAuthorized"), "{e}");
    // The loopback listener of the same broker takes anonymous clients.
    assert!(
        connect(
            options(
                "anon-ws",
                BrokerTransport::Ws,
                b.addr(BrokerTransport::Ws),
                None
            ),
            None
        )
        .await
        .is_ok()
    );
    // With --mqtt-allow-anonymous the exposed listener takes them too.
    let open = broker(
        &[(BrokerTransport::Tcp, "0.0.0.0:0")],
        None,
        AuthConfig {
            allow_anonymous: true,
            ..AuthConfig::default()
        },
    )
    .await;
    let exposed = SocketAddr::new(
        [127, 0, 0, 1].into(),
        open.addr(BrokerTransport::Tcp).port(),
    );
    assert!(
        connect(options("anon", BrokerTransport::Tcp, exposed, None), None)
            .await
            .is_ok()
    );
    // Starting exposed without a decision is refused, with a message that says how.
    let l = Listener::bind(BrokerTransport::Tcp, "0.0.0.0:0".parse().unwrap()).unwrap();
    let err = ingest::broker::check_exposure(&[l], &AuthConfig::default()).unwrap_err();
    assert!(
        err.contains("--mqtt-require-auth") && err.contains("--mqtt-allow-anonymous"),
        "{err}"
    );
}

/// A password file as Mosquitto's own `mosquitto_passwd` writes it when installed, else
/// the same `$7$` (PBKDF2-SHA512) line computed by Python's hashlib: either way an
/// implementation independent of meshlens's.
fn password_file(dir: &Path, user: &str, password: &str) -> Option<String> {
    let path = dir.join("passwords");
    let made = std::process::Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&path)
        .args([user, password])
        .output()
        .is_ok_and(|o| o.status.success());
    if made {
        return std::fs::read_to_string(&path).ok();
    }
    let script = format!(
        "import base64,hashlib,os\ns=os.urandom(12)\nh=hashlib.pbkdf2_hmac('sha512',b'{password}',s,101,64)\nprint('{user}:$7$101$'+base64.b64encode(s).decode()+'$'+base64.b64encode(h).decode())"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_users_sign_in_and_wrong_passwords_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Some(text) = password_file(dir.path(), "uploader", "correct horse") else {
        eprintln!("neither mosquitto_passwd nor python3 is available: password interop not tested");
        return;
    };
    let passwords = PasswordFile::parse(&text).unwrap();
    let b = broker(
        &[(BrokerTransport::Tcp, "127.0.0.1:0")],
        None,
        AuthConfig {
            require_auth: true,
            passwords: Some(passwords),
            ..AuthConfig::default()
        },
    )
    .await;
    let addr = b.addr(BrokerTransport::Tcp);
    let o = |id: &str| options(id, BrokerTransport::Tcp, addr, None);
    let e = connect(
        o("wrong"),
        Some(("uploader".into(), "Correct horse".into())),
    )
    .await
    .err()
    .unwrap();
    assert!(e.contains("BadUserNamePassword"), "{e}");
    assert!(
        connect(o("nobody"), Some(("nobody".into(), "correct horse".into())))
            .await
            .is_err()
    );
    assert_eq!(b.counter("broker.auth_refused.bad_password"), 2);
    let (client, mut el) = connect(
        o("right"),
        Some(("uploader".into(), "correct horse".into())),
    )
    .await
    .unwrap();
    // A password user may publish as any observer.
    let (_, pk) = key(9);
    publish_acked(
        &client,
        &mut el,
        format!("meshcore/SEA/{pk}/packets"),
        packet(9),
    )
    .await;
    assert_eq!(b.count("SELECT count(*) FROM observations"), 1);
}

/// 500 clients connecting at once, half of them with forged tokens, while an authenticated
/// observer publishes: every one of its messages is stored, every good client gets in, every
/// forged one is refused and counted. The time it took is printed for BENCHMARKS.md, never
/// asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_storm_leaves_authenticated_ingest_unaffected() {
    let b = broker(
        &[(BrokerTransport::Tcp, "127.0.0.1:0")],
        None,
        AuthConfig {
            require_auth: true,
            ..AuthConfig::default()
        },
    )
    .await;
    let addr = b.addr(BrokerTransport::Tcp);
    let (client, mut el) = connect(
        options("steady", BrokerTransport::Tcp, addr, None),
        Some(token(42, now(), now() + 3600, None)),
    )
    .await
    .unwrap();
    let (_, pk) = key(42);
    let started = std::time::Instant::now();
    let storm: Vec<_> = (0..500u32)
        .map(|i| {
            tokio::spawn(async move {
                let seed = (i % 200) as u8 + 50;
                let (user, pw) = token(seed, now(), now() + 3600, None);
                let pw = if i % 2 == 0 {
                    pw
                } else {
                    // Forged: another key's signature.
                    let (_, other) = token(seed.wrapping_add(1), now(), now() + 3600, None);
                    format!(
                        "{}.{}",
                        pw.rsplit_once('.').unwrap().0,
                        other.rsplit_once('.').unwrap().1
                    )
                };
                let r = connect(
                    options(&format!("storm-{i}"), BrokerTransport::Tcp, addr, None),
                    Some((user, pw)),
                )
                .await;
                // Hold the good connections open until the end of the storm.
                (i % 2 == 0, r.ok())
            })
        })
        .collect();
    for n in 0..1_000u32 {
        publish_acked(
            &client,
            &mut el,
            format!("meshcore/SEA/{pk}/packets"),
            packet(n),
        )
        .await;
    }
    let published = started.elapsed();
    let mut good = 0;
    let mut held = Vec::new();
    for t in storm {
        let (should_pass, conn) = t.await.unwrap();
        assert_eq!(should_pass, conn.is_some());
        good += usize::from(conn.is_some());
        held.extend(conn);
    }
    eprintln!(
        "storm: 1,000 authenticated publishes acknowledged in {:.0} ms while 500 clients connected ({good} admitted, {} refused) in {:.0} ms",
        published.as_secs_f64() * 1000.0,
        b.counter("broker.auth_refused.bad_signature"),
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(good, 250);
    assert_eq!(b.counter("broker.auth_refused.bad_signature"), 250);
    assert_eq!(b.count("SELECT count(*) FROM observations"), 1_000);
    drop(held);
}

/// meshlens subscribing to a broker that wants a token (here another meshlens with
/// `--mqtt-require-auth`): the source signs in with its key and receives what observers
/// publish there (without the token it would be refused as anonymous, and receive nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_source_signs_in_with_a_token() {
    let upstream = broker(
        &[(BrokerTransport::Tcp, "127.0.0.1:0")],
        None,
        AuthConfig {
            require_auth: true,
            token_audience: Some("upstream.example".into()),
            ..AuthConfig::default()
        },
    )
    .await;
    let addr = upstream.addr(BrokerTransport::Tcp);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("downstream.db");
    let mut source =
        ingest::config::SourceConfig::from_url("upstream", &format!("mqtt://{addr}")).unwrap();
    source.token = Some(ingest::token::TokenAuth {
        key: ingest::token::TokenKey::parse(&hex::encode([11u8; 32])).unwrap(),
        audience: Some("upstream.example".into()),
        ttl: Duration::from_secs(3600),
    });
    let downstream = Ingest::start(IngestConfig {
        sources: vec![source],
        ..config(&db)
    })
    .unwrap();
    let stats = downstream.stats();
    // The observer publishes (token-signed too) until the downstream copy is stored.
    let (client, mut el) = connect(
        options("observer", BrokerTransport::Tcp, addr, None),
        Some(token(12, now(), now() + 3600, Some("upstream.example"))),
    )
    .await
    .unwrap();
    let (_, pk) = key(12);
    let mut n = 0u32;
    while stats.get("stored.new_observations") == 0 {
        assert!(
            n < 2_400,
            "the token-signed source never received anything: {:?}",
            stats.sources()
        );
        publish_acked(
            &client,
            &mut el,
            format!("meshcore/SEA/{pk}/packets"),
            packet(n),
        )
        .await;
        downstream.flush().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        n += 1;
    }
    assert_eq!(upstream.counter("broker.auth_refused"), 0);
    downstream.shutdown().await;
}
