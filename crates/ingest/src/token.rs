//! MeshCore MQTT tokens, made by meshlens for brokers that want one when it subscribes
//! (LetsMesh-style brokers, or another meshlens with `--mqtt-require-auth`): the same token
//! meshcoretomqtt sends. User name `v1_<PUBKEY>`, password
//! `base64url(header).base64url(payload).<HEX SIGNATURE>`, payload `{publicKey, iat, exp[, aud]}`.
//! The embedded broker's verifier is [`crate::broker::auth::verify_token`].

use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// A signing key, in either form MeshCore tools hand out.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenKey {
    /// A 32-byte Ed25519 seed (64 hex digits).
    Seed([u8; 32]),
    /// MeshCore's 64-byte private key (128 hex digits), as a device exports it: the clamped
    /// scalar and the hash prefix of an expanded Ed25519 key.
    Expanded(Box<[u8; 64]>),
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself, not even in a debug log.
        write!(f, "TokenKey({})", hex::encode(self.public_key()))
    }
}

impl TokenKey {
    /// Parses 64 or 128 hex digits.
    pub fn parse(hex_key: &str) -> Result<TokenKey, String> {
        let hex_key = hex_key.trim();
        let bad = || "a token key is 64 hex digits (seed) or 128 (MeshCore private key)".to_owned();
        match hex_key.len() {
            64 => {
                let mut k = [0u8; 32];
                hex::decode_to_slice(hex_key, &mut k).map_err(|_| bad())?;
                Ok(TokenKey::Seed(k))
            }
            128 => {
                let mut k = Box::new([0u8; 64]);
                hex::decode_to_slice(hex_key, &mut k[..]).map_err(|_| bad())?;
                Ok(TokenKey::Expanded(k))
            }
            _ => Err(bad()),
        }
    }

    /// The public key the broker will check the token against.
    pub fn public_key(&self) -> [u8; 32] {
        match self {
            TokenKey::Seed(s) => SigningKey::from_bytes(s).verifying_key().to_bytes(),
            TokenKey::Expanded(e) => {
                VerifyingKey::from(&ExpandedSecretKey::from_bytes(e)).to_bytes()
            }
        }
    }

    fn sign(&self, msg: &[u8]) -> [u8; 64] {
        match self {
            TokenKey::Seed(s) => SigningKey::from_bytes(s).sign(msg).to_bytes(),
            TokenKey::Expanded(e) => {
                let esk = ExpandedSecretKey::from_bytes(e);
                let vk = VerifyingKey::from(&esk);
                raw_sign::<sha2::Sha512>(&esk, msg, &vk).to_bytes()
            }
        }
    }
}

/// Token sign-in for one upstream broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAuth {
    /// Whose key signs.
    pub key: TokenKey,
    /// The `aud` claim, when the broker checks one (LetsMesh: its host name).
    pub audience: Option<String>,
    /// How long a token is valid (meshcoretomqtt: one hour).
    pub ttl: Duration,
}

impl TokenAuth {
    /// The user name and a fresh token valid from `now` (Unix seconds).
    pub fn credentials(&self, now: i64) -> (String, String) {
        let pk = hex::encode_upper(self.key.public_key());
        let exp = now.saturating_add(i64::try_from(self.ttl.as_secs()).unwrap_or(3600));
        let mut payload = serde_json::json!({"publicKey": pk, "iat": now, "exp": exp});
        if let Some(aud) = &self.audience {
            payload["aud"] = aud.clone().into();
        }
        let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!(
            "{}.{}",
            b64.encode(r#"{"alg":"Ed25519","typ":"JWT"}"#),
            b64.encode(payload.to_string())
        );
        let sig = hex::encode_upper(self.key.sign(input.as_bytes()));
        (format!("v1_{pk}"), format!("{input}.{sig}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::auth::{AuthRefusal, verify_token};
    use sha2::Digest as _;

    #[test]
    fn tokens_verify_with_either_key_form() {
        let seed = [5u8; 32];
        // MeshCore's 64-byte form of the same key: SHA-512 of the seed, scalar clamped.
        let mut expanded: [u8; 64] = sha2::Sha512::digest(seed).into();
        expanded[0] &= 248;
        expanded[31] &= 127;
        expanded[31] |= 64;
        let a = TokenKey::parse(&hex::encode(seed)).unwrap();
        let b = TokenKey::parse(&hex::encode(expanded)).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        for key in [a, b] {
            let auth = TokenAuth {
                key: key.clone(),
                audience: Some("broker.example".into()),
                ttl: Duration::from_secs(3600),
            };
            let (user, pw) = auth.credentials(1_800_000_000);
            assert_eq!(user, format!("v1_{}", hex::encode_upper(key.public_key())));
            let skew = Duration::from_secs(60);
            let pk = key.public_key();
            assert_eq!(
                verify_token(&pw, &pk, Some("broker.example"), 1_800_000_100, skew),
                Ok(())
            );
            assert_eq!(
                verify_token(
                    &pw,
                    &pk,
                    Some("broker.example"),
                    1_800_000_000 + 3600 + 61,
                    skew
                ),
                Err(AuthRefusal::Expired)
            );
        }
        assert!(TokenKey::parse("abcd").is_err());
        assert!(!format!("{:?}", TokenKey::Seed(seed)).contains(&hex::encode(seed)));
    }
}
