//! Channel-key and region options shared by `decode`, `ingest` and `run`.

use clap::Args;
use meshcore::crypto::{Channel, Keyring};
use meshcore::region::Regions;

/// `--hashtag`, `--channel-key`, `--region`.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Hashtag channel to decrypt (`test` or `#test`; key = SHA-256("#test")[..16]). Repeatable.
    #[arg(long = "hashtag", value_name = "NAME")]
    pub hashtags: Vec<String>,
    /// Channel key as 32 or 64 hex digits (or base64), optionally named: `[NAME=]KEY`.
    /// Repeatable.
    #[arg(long = "channel-key", value_name = "KEY", value_parser = parse_channel_key)]
    pub channel_keys: Vec<Channel>,
    /// Region (`ottawa` or `#ottawa`) to attribute transport-scoped floods to. Repeatable.
    #[arg(long = "region", value_name = "NAME")]
    pub regions: Vec<String>,
}

impl KeyArgs {
    /// The Public channel plus every configured key.
    pub fn keyring(&self) -> Keyring {
        let mut k = Keyring::with_public();
        for t in &self.hashtags {
            k.add_hashtag(t);
        }
        for c in &self.channel_keys {
            k.add(c.clone());
        }
        k
    }

    /// The configured regions.
    pub fn regions(&self) -> Regions {
        let mut r = Regions::new();
        for name in &self.regions {
            r.add(name);
        }
        r
    }
}

/// Parses `[NAME=]KEY`; unnamed keys are called `key-<channel hash>`.
pub fn parse_channel_key(s: &str) -> Result<Channel, String> {
    // A bare key first: base64 keys may contain '='.
    if let Some(key) = ingest::config::parse_key(s) {
        return Ok(Channel::new(format!("key-{:02x}", key.channel_hash()), key));
    }
    let (name, key) = s
        .split_once('=')
        .filter(|(n, _)| !n.trim().is_empty())
        .ok_or_else(|| {
            "expected [NAME=]KEY with a 16- or 32-byte key in hex or base64".to_string()
        })?;
    let key = ingest::config::parse_key(key).ok_or_else(|| {
        "expected a 16- or 32-byte key as hex (32 or 64 digits) or base64".to_string()
    })?;
    Ok(Channel::new(name.trim(), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_key_argument_forms() {
        let c = parse_channel_key("ops=8b3387e9c5cdea6ac9e5edbaa115cd72").unwrap();
        assert_eq!(c.name(), "ops");
        let c = parse_channel_key("8b3387e9c5cdea6ac9e5edbaa115cd72").unwrap();
        assert_eq!(c.name(), "key-11");
        let c = parse_channel_key("izOH6cXN6mrJ5e26oRXNcg==").unwrap();
        assert_eq!(c.name(), "key-11");
        let c = parse_channel_key("pub=izOH6cXN6mrJ5e26oRXNcg==").unwrap();
        assert_eq!((c.name(), c.hash()), ("pub", 0x11));
        assert!(parse_channel_key("abc").is_err());
        assert!(parse_channel_key(&"ab".repeat(24)).is_err());
    }
}
