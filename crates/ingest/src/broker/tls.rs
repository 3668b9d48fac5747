//! TLS for the embedded broker's `mqtts` and `wss` listeners: the certificate chain and key
//! come from PEM files and are read again when either file changes (checked at each new
//! connection, one `stat` each), so a renewed certificate (certbot, ACME) is served without a
//! restart. A file that fails to load keeps the previous certificate in service.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rumqttc::tokio_rustls::TlsAcceptor;
use rumqttc::tokio_rustls::rustls::{self, ServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::stats::Stats;

/// Where the certificate chain and private key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

type Stamp = (Option<SystemTime>, Option<SystemTime>);

/// The current TLS configuration, reloaded when its files change.
pub struct Reloader {
    files: TlsFiles,
    current: Mutex<(Stamp, TlsAcceptor)>,
    stats: Arc<Stats>,
}

fn stamp(files: &TlsFiles) -> Stamp {
    let m = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(&files.cert), m(&files.key))
}

fn load(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("{}: {e}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", files.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: {e}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", files.key.display()))?;
    // `mqtt` for MQTT over TLS clients that ask; WebSocket clients ask for HTTP/1.1.
    config.alpn_protocols = vec![b"mqtt".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl Reloader {
    /// Loads the files now; an error names the file.
    pub fn new(files: TlsFiles, stats: Arc<Stats>) -> Result<Reloader, String> {
        let acceptor = load(&files)?;
        Ok(Reloader {
            current: Mutex::new((stamp(&files), acceptor)),
            files,
            stats,
        })
    }

    /// The acceptor to use for a new connection.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        let now = stamp(&self.files);
        let mut cur = self.current.lock().ok()?;
        if cur.0 != now {
            match load(&self.files) {
                Ok(a) => {
                    self.stats.incr("broker.tls_reloads");
                    tracing::info!("embedded broker: TLS certificate reloaded");
                    *cur = (now, a);
                }
                Err(e) => {
                    // Keep serving the previous certificate; try again when the files change.
                    self.stats.incr("broker.tls_reload_errors");
                    tracing::warn!(
                        "embedded broker: TLS reload failed, keeping the previous certificate: {e}"
                    );
                    cur.0 = now;
                }
            }
        }
        Some(cur.1.clone())
    }
}
