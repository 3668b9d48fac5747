//! Who may connect to the embedded broker, and what each client may publish. Pure: the
//! connection task asks, this module answers from the CONNECT fields, the listener and the
//! clock it is given.
//!
//! - **MeshCore token auth**, as meshcoretomqtt and the public brokers use it: user name
//!   `v1_<PUBKEY>` (64 hex digits), password `base64url(header).base64url(payload).<hex
//!   Ed25519 signature over "header.payload">`, signed by the observer's own key; the payload
//!   carries `publicKey` (the same key), `iat`, `exp` and optionally `aud`. A token-signed
//!   observer may publish only under its own key (`meshcore/<IATA>/<its key>/…`).
//! - **Passwords** from a Mosquitto password file (`mosquitto_passwd` writes it): PBKDF2-SHA512
//!   (`$7$`) or salted SHA-512 (`$6$`) hashes; nothing is stored in the clear. Such users may
//!   publish under any observer key.
//! - **Anonymous** clients only on a loopback listener, unless the operator allowed them
//!   everywhere (or refused them everywhere).
//! - An allow-list and a block-list of observer keys apply to everyone.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha512};

/// Longest password (token) looked at.
const MAX_PASSWORD: usize = 4096;

/// Authentication settings of the embedded broker.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Refuse anonymous clients on every listener, loopback included.
    pub require_auth: bool,
    /// Accept anonymous clients on every listener, not only on loopback.
    pub allow_anonymous: bool,
    /// When set, a token must carry this `aud`.
    pub token_audience: Option<String>,
    /// Users from a password file.
    pub passwords: Option<PasswordFile>,
    /// When non-empty, only these observer keys (lowercase hex) may publish.
    pub allow_observers: HashSet<String>,
    /// These observer keys (lowercase hex) may not publish.
    pub block_observers: HashSet<String>,
    /// Clock difference tolerated on `exp` and `iat`.
    pub clock_skew: Duration,
}

/// Who a connected client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials (allowed by the listener's policy).
    Anonymous,
    /// Proved it holds this observer key (lowercase hex).
    Observer(String),
    /// A user of the password file.
    User(String),
}

/// Why a CONNECT was refused. `code()` names its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefusal {
    /// No credentials where they are required.
    #[error("anonymous clients are not accepted on this listener")]
    AnonymousRefused,
    /// `v1_` user name with a token that is not `header.payload.signature`.
    #[error("malformed token")]
    BadToken,
    /// The token's signature does not verify against its key.
    #[error("bad token signature")]
    BadSignature,
    /// `exp` is past (beyond the clock allowance), or missing.
    #[error("token expired")]
    Expired,
    /// `iat` is in the future beyond the clock allowance.
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` does not name this broker.
    #[error("token audience mismatch")]
    WrongAudience,
    /// The token's `publicKey` is not the user name's key.
    #[error("token key is not the user name's key")]
    KeyMismatch,
    /// Unknown user or wrong password.
    #[error("bad user name or password")]
    BadPassword,
    /// The observer key is on the block-list, or not on the allow-list.
    #[error("observer not allowed")]
    ObserverNotAllowed,
}

impl AuthRefusal {
    /// Stable counter name.
    pub const fn code(self) -> &'static str {
        match self {
            AuthRefusal::AnonymousRefused => "broker.auth_refused.anonymous",
            AuthRefusal::BadToken => "broker.auth_refused.bad_token",
            AuthRefusal::BadSignature => "broker.auth_refused.bad_signature",
            AuthRefusal::Expired => "broker.auth_refused.expired",
            AuthRefusal::NotYetValid => "broker.auth_refused.not_yet_valid",
            AuthRefusal::WrongAudience => "broker.auth_refused.wrong_audience",
            AuthRefusal::KeyMismatch => "broker.auth_refused.key_mismatch",
            AuthRefusal::BadPassword => "broker.auth_refused.bad_password",
            AuthRefusal::ObserverNotAllowed => "broker.auth_refused.observer_not_allowed",
        }
    }

    /// The CONNACK return code: 4 (bad user name or password) or 5 (not authorised).
    pub const fn connack_code(self) -> u8 {
        match self {
            AuthRefusal::AnonymousRefused | AuthRefusal::ObserverNotAllowed => 5,
            _ => 4,
        }
    }
}

/// Why a publish was dropped. `code()` names its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefusal {
    /// A token-signed observer publishing under another key (or outside `meshcore/…`).
    #[error("publish under another observer's key")]
    ForeignKey,
    /// The topic's observer key is blocked or not allowed.
    #[error("observer not allowed")]
    ObserverNotAllowed,
}

impl PublishRefusal {
    /// Stable counter name.
    pub const fn code(self) -> &'static str {
        match self {
            PublishRefusal::ForeignKey => "broker.publish_refused.foreign_key",
            PublishRefusal::ObserverNotAllowed => "broker.publish_refused.observer_not_allowed",
        }
    }
}

impl AuthConfig {
    /// Decides who a CONNECT is. `loopback` says whether it came through a loopback listener;
    /// `now` is Unix seconds.
    pub fn authenticate(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
        loopback: bool,
        now: i64,
    ) -> Result<Identity, AuthRefusal> {
        let Some(user) = username.filter(|u| !u.is_empty()) else {
            let anonymous_ok = !self.require_auth && (loopback || self.allow_anonymous);
            return if anonymous_ok {
                Ok(Identity::Anonymous)
            } else {
                Err(AuthRefusal::AnonymousRefused)
            };
        };
        let password = password.unwrap_or_default();
        if password.len() > MAX_PASSWORD {
            return Err(AuthRefusal::BadPassword);
        }
        if let Some(key) = token_user_key(user) {
            let token = std::str::from_utf8(password).map_err(|_| AuthRefusal::BadToken)?;
            verify_token(
                token,
                &key,
                self.token_audience.as_deref(),
                now,
                self.clock_skew,
            )?;
            let hex_key = hex::encode(key);
            if !self.observer_allowed(&hex_key) {
                return Err(AuthRefusal::ObserverNotAllowed);
            }
            return Ok(Identity::Observer(hex_key));
        }
        match &self.passwords {
            Some(file) if file.verify(user, password) => Ok(Identity::User(user.to_owned())),
            _ => Err(AuthRefusal::BadPassword),
        }
    }

    fn observer_allowed(&self, key: &str) -> bool {
        !self.block_observers.contains(key)
            && (self.allow_observers.is_empty() || self.allow_observers.contains(key))
    }

    /// Whether `id` may publish to `topic`. Topics outside `meshcore/<IATA>/<key>/…` are
    /// refused only for token-signed observers (other clients' topics are the ingest parser's
    /// business, which counts what it does not take).
    pub fn authorize_publish(&self, id: &Identity, topic: &str) -> Result<(), PublishRefusal> {
        let key = topic_observer_key(topic);
        if let Identity::Observer(own) = id {
            match &key {
                Some(k) if k == own => {}
                _ => return Err(PublishRefusal::ForeignKey),
            }
        }
        match key {
            Some(k) if !self.observer_allowed(&k) => Err(PublishRefusal::ObserverNotAllowed),
            _ => Ok(()),
        }
    }
}

/// The observer key segment of `meshcore/<IATA>/<key>/<kind>`, lowercased.
fn topic_observer_key(topic: &str) -> Option<String> {
    let mut seg = topic.split('/');
    match (seg.next(), seg.next(), seg.next()) {
        (Some("meshcore"), Some(_), Some(key)) if !key.is_empty() => Some(key.to_ascii_lowercase()),
        _ => None,
    }
}

/// The key of a `v1_<64 hex>` user name.
fn token_user_key(user: &str) -> Option<[u8; 32]> {
    let hex_key = user
        .strip_prefix("v1_")
        .or_else(|| user.strip_prefix("V1_"))?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut key).ok()?;
    Some(key)
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

/// Verifies a MeshCore token for `key`.
pub fn verify_token(
    token: &str,
    key: &[u8; 32],
    audience: Option<&str>,
    now: i64,
    skew: Duration,
) -> Result<(), AuthRefusal> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthRefusal::BadToken);
    };
    let header: serde_json::Value = b64url(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AuthRefusal::BadToken)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("Ed25519") {
        return Err(AuthRefusal::BadToken);
    }
    let payload: serde_json::Value = b64url(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AuthRefusal::BadToken)?;
    let claimed = payload
        .get("publicKey")
        .and_then(|k| k.as_str())
        .ok_or(AuthRefusal::BadToken)?;
    let mut claimed_key = [0u8; 32];
    hex::decode_to_slice(claimed, &mut claimed_key).map_err(|_| AuthRefusal::BadToken)?;
    if &claimed_key != key {
        return Err(AuthRefusal::KeyMismatch);
    }
    let mut sig_bytes = [0u8; 64];
    hex::decode_to_slice(sig, &mut sig_bytes).map_err(|_| AuthRefusal::BadToken)?;
    let vk = VerifyingKey::from_bytes(key).map_err(|_| AuthRefusal::BadSignature)?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    vk.verify(signing_input.as_bytes(), &Signature::from_bytes(&sig_bytes))
        .map_err(|_| AuthRefusal::BadSignature)?;
    // Only a verified payload's times and audience mean anything.
    let skew = i64::try_from(skew.as_secs()).unwrap_or(i64::MAX);
    let exp = payload
        .get("exp")
        .and_then(|v| v.as_i64())
        .ok_or(AuthRefusal::Expired)?;
    if now > exp.saturating_add(skew) {
        return Err(AuthRefusal::Expired);
    }
    if let Some(iat) = payload.get("iat").and_then(|v| v.as_i64())
        && iat > now.saturating_add(skew)
    {
        return Err(AuthRefusal::NotYetValid);
    }
    if let Some(want) = audience {
        let ok = match payload.get("aud") {
            Some(serde_json::Value::String(a)) => a == want,
            Some(serde_json::Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(want)),
            _ => false,
        };
        if !ok {
            return Err(AuthRefusal::WrongAudience);
        }
    }
    Ok(())
}

/// One stored password hash.
#[derive(Clone)]
enum PasswordHash {
    /// `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512 (Mosquitto 2).
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// `$6$<salt>$<hash>`: SHA-512 of password then salt (Mosquitto 1.x).
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
}

/// Users and their password hashes, from a Mosquitto password file.
#[derive(Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, PasswordHash>,
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.users.len())
            .finish()
    }
}

impl PasswordFile {
    /// Parses `user:hash` lines (blank lines and `#` comments skipped). A line in another
    /// format is an error naming its line number, never its content.
    pub fn parse(text: &str) -> Result<PasswordFile, String> {
        let b64 = &base64::engine::general_purpose::STANDARD;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || format!("line {}: not `user:$7$…` or `user:$6$…`", i + 1);
            let (user, hash) = line.split_once(':').ok_or_else(bad)?;
            let fields: Vec<&str> = hash.split('$').collect();
            let parsed = match fields.as_slice() {
                ["", "7", iterations, salt, hash] => PasswordHash::Pbkdf2 {
                    iterations: iterations
                        .parse()
                        .ok()
                        .filter(|n| (1..=10_000_000).contains(n))
                        .ok_or_else(bad)?,
                    salt: b64.decode(salt).map_err(|_| bad())?,
                    hash: b64.decode(hash).map_err(|_| bad())?,
                },
                ["", "6", salt, hash] => PasswordHash::Sha512 {
                    salt: b64.decode(salt).map_err(|_| bad())?,
                    hash: b64.decode(hash).map_err(|_| bad())?,
                },
                _ => return Err(bad()),
            };
            users.insert(user.to_owned(), parsed);
        }
        Ok(PasswordFile { users })
    }

    /// Users in the file.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file has no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `user`'s. Constant time in the comparison of hashes.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        let Some(stored) = self.users.get(user) else {
            return false;
        };
        let (computed, expected) = match stored {
            PasswordHash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => (pbkdf2_sha512(password, salt, *iterations, hash.len()), hash),
            PasswordHash::Sha512 { salt, hash } => {
                let mut h = Sha512::new();
                h.update(password);
                h.update(salt);
                (h.finalize().to_vec(), hash)
            }
        };
        constant_time_eq(&computed, expected)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// PBKDF2 with HMAC-SHA512 (RFC 8018 §5.2).
fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32, len: usize) -> Vec<u8> {
    let Ok(prf) = Hmac::<Sha512>::new_from_slice(password) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(len);
    let mut block = 1u32;
    while out.len() < len {
        let mut mac = prf.clone();
        mac.update(salt);
        mac.update(&block.to_be_bytes());
        let mut u = mac.finalize().into_bytes();
        let mut t = u;
        for _ in 1..iterations {
            let mut mac = prf.clone();
            mac.update(&u);
            u = mac.finalize().into_bytes();
            for (t, u) in t.iter_mut().zip(u.iter()) {
                *t ^= u;
            }
        }
        out.extend_from_slice(&t);
        block += 1;
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    /// A token built the way meshcoretomqtt's `create_auth_token` builds one: compact JSON,
    /// base64url without padding, uppercase hex key and signature.
    fn token(seed: u8, claims: serde_json::Value) -> (String, String) {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let pk = hex::encode_upper(sk.verifying_key().to_bytes());
        let mut payload = serde_json::json!({"publicKey": pk});
        for (k, v) in claims.as_object().unwrap() {
            payload[k] = v.clone();
        }
        let enc = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let input = format!(
            "{}.{}",
            enc(&serde_json::json!({"alg": "Ed25519", "typ": "JWT"})),
            enc(&payload)
        );
        let sig = hex::encode_upper(sk.sign(input.as_bytes()).to_bytes());
        (format!("v1_{pk}"), format!("{input}.{sig}"))
    }

    const NOW: i64 = 1_780_000_000;

    fn cfg() -> AuthConfig {
        AuthConfig {
            clock_skew: Duration::from_secs(60),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn a_valid_token_is_its_observer() {
        let (user, pw) = token(1, serde_json::json!({"iat": NOW, "exp": NOW + 3600}));
        let id = cfg()
            .authenticate(Some(&user), Some(pw.as_bytes()), false, NOW)
            .unwrap();
        assert_eq!(id, Identity::Observer(user[3..].to_ascii_lowercase()));
    }

    #[test]
    fn bad_tokens_are_refused_for_their_reason() {
        let c = cfg();
        let auth = |u: &str, p: &str| c.authenticate(Some(u), Some(p.as_bytes()), false, NOW);
        let (user, pw) = token(1, serde_json::json!({"iat": NOW, "exp": NOW - 61}));
        assert_eq!(auth(&user, &pw), Err(AuthRefusal::Expired));
        let (user, pw) = token(1, serde_json::json!({"iat": NOW, "exp": NOW - 30}));
        assert!(auth(&user, &pw).is_ok(), "within the clock allowance");
        let (user, pw) = token(1, serde_json::json!({"iat": NOW + 600, "exp": NOW + 3600}));
        assert_eq!(auth(&user, &pw), Err(AuthRefusal::NotYetValid));
        let (user, pw) = token(1, serde_json::json!({"iat": NOW}));
        assert_eq!(auth(&user, &pw), Err(AuthRefusal::Expired), "no exp");
        // Key A's token presented as key B.
        let (user_b, _) = token(2, serde_json::json!({}));
        let (_, pw_a) = token(1, serde_json::json!({"exp": NOW + 60}));
        assert_eq!(auth(&user_b, &pw_a), Err(AuthRefusal::KeyMismatch));
        // A flipped signature digit.
        let (user, mut pw) = token(1, serde_json::json!({"exp": NOW + 60}));
        let last = pw.pop().unwrap();
        pw.push(if last == '0' { '1' } else { '0' });
        assert_eq!(auth(&user, &pw), Err(AuthRefusal::BadSignature));
        // A payload changed after signing (a later expiry).
        let (user, pw) = token(1, serde_json::json!({"exp": NOW + 60}));
        let (_, forged) = token(1, serde_json::json!({"exp": NOW + 999_999}));
        let parts: Vec<&str> = pw.split('.').collect();
        let forged_parts: Vec<&str> = forged.split('.').collect();
        let spliced = format!("{}.{}.{}", parts[0], forged_parts[1], parts[2]);
        assert_eq!(auth(&user, &spliced), Err(AuthRefusal::BadSignature));
        for junk in ["", "a.b", "a.b.c.d", "!!.??.zz", "e30.e30.00"] {
            assert_eq!(auth(&user, junk), Err(AuthRefusal::BadToken), "{junk:?}");
        }
    }

    #[test]
    fn audience_when_configured() {
        let c = AuthConfig {
            token_audience: Some("mqtt.example.org".into()),
            ..cfg()
        };
        let auth = |p: &str, u: &str| c.authenticate(Some(u), Some(p.as_bytes()), false, NOW);
        let (user, pw) = token(
            3,
            serde_json::json!({"exp": NOW + 60, "aud": "mqtt.example.org"}),
        );
        assert!(auth(&pw, &user).is_ok());
        let (user, pw) = token(3, serde_json::json!({"exp": NOW + 60, "aud": "other"}));
        assert_eq!(auth(&pw, &user), Err(AuthRefusal::WrongAudience));
        let (user, pw) = token(3, serde_json::json!({"exp": NOW + 60}));
        assert_eq!(auth(&pw, &user), Err(AuthRefusal::WrongAudience));
    }

    #[test]
    fn anonymous_only_where_the_policy_allows() {
        let c = cfg();
        assert_eq!(
            c.authenticate(None, None, true, NOW),
            Ok(Identity::Anonymous)
        );
        assert_eq!(
            c.authenticate(None, None, false, NOW),
            Err(AuthRefusal::AnonymousRefused)
        );
        let open = AuthConfig {
            allow_anonymous: true,
            ..cfg()
        };
        assert!(open.authenticate(None, None, false, NOW).is_ok());
        let strict = AuthConfig {
            require_auth: true,
            ..cfg()
        };
        assert!(strict.authenticate(None, None, true, NOW).is_err());
    }

    #[test]
    fn observers_publish_only_under_their_own_key_and_lists_apply() {
        let (user, _) = token(1, serde_json::json!({}));
        let own = user[3..].to_ascii_lowercase();
        let id = Identity::Observer(own.clone());
        let c = cfg();
        assert!(
            c.authorize_publish(
                &id,
                &format!("meshcore/SEA/{}/packets", own.to_ascii_uppercase())
            )
            .is_ok()
        );
        assert_eq!(
            c.authorize_publish(&id, &format!("meshcore/SEA/{}/packets", "ab".repeat(32))),
            Err(PublishRefusal::ForeignKey)
        );
        assert_eq!(
            c.authorize_publish(&id, "other/topic"),
            Err(PublishRefusal::ForeignKey)
        );
        let blocked = AuthConfig {
            block_observers: HashSet::from([own.clone()]),
            ..cfg()
        };
        assert_eq!(
            blocked.authorize_publish(&Identity::Anonymous, &format!("meshcore/SEA/{own}/status")),
            Err(PublishRefusal::ObserverNotAllowed)
        );
        let (u, p) = token(1, serde_json::json!({"exp": NOW + 60}));
        assert_eq!(
            blocked.authenticate(Some(&u), Some(p.as_bytes()), false, NOW),
            Err(AuthRefusal::ObserverNotAllowed)
        );
        let allow = AuthConfig {
            allow_observers: HashSet::from(["cd".repeat(32)]),
            ..cfg()
        };
        assert!(
            allow
                .authorize_publish(
                    &Identity::Anonymous,
                    &format!("meshcore/SEA/{}/status", "cd".repeat(32))
                )
                .is_ok()
        );
        assert!(
            allow
                .authorize_publish(&Identity::Anonymous, &format!("meshcore/SEA/{own}/status"))
                .is_err()
        );
    }

    /// PBKDF2-HMAC-SHA512 against RFC 6070-style published vectors for SHA-512
    /// ("password"/"salt", 1 and 2 iterations, 64 bytes).
    #[test]
    fn pbkdf2_matches_published_vectors() {
        let one = "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce";
        let two = "e1d9c16aa681708a45f5c7c4e215ceb66e011a2e9f0040713f18aefdb866d53cf76cab2868a39b9f7840edce4fef5a82be67335c77a6068e04112754f27ccf4e";
        assert_eq!(hex::encode(pbkdf2_sha512(b"password", b"salt", 1, 64)), one);
        assert_eq!(hex::encode(pbkdf2_sha512(b"password", b"salt", 2, 64)), two);
    }

    #[test]
    fn password_file_lines() {
        let b64 = &base64::engine::general_purpose::STANDARD;
        let salt = b"0123456789ab";
        let hash = pbkdf2_sha512(b"s3cret", salt, 101, 64);
        let text = format!(
            "# comment\n\nobs:$7$101${}${}\n",
            b64.encode(salt),
            b64.encode(&hash)
        );
        let f = PasswordFile::parse(&text).unwrap();
        assert_eq!(f.len(), 1);
        assert!(f.verify("obs", b"s3cret"));
        assert!(!f.verify("obs", b"s3cret "));
        assert!(!f.verify("nobody", b"s3cret"));
        let err = PasswordFile::parse("obs:plaintext\n").unwrap_err();
        assert!(
            err.contains("line 1") && !err.contains("plaintext"),
            "{err}"
        );
    }
}
