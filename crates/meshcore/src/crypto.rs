//! Channel keys and group-message crypto (§5): key derivation, channel hash, MAC,
//! AES-128-ECB, and a [`Keyring`] that finds the right key for a GRP_TXT/GRP_DATA.

use aes::Aes128;
use aes::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::PayloadType;
use crate::payload::{Group, GroupData, GroupText};

pub use crate::payload::public_key_of;

/// The Public channel's key (`izOH6cXN6mrJ5e26oRXNcg==`), built into every node.
pub const PUBLIC_CHANNEL_KEY: [u8; 16] = [
    0x8b, 0x33, 0x87, 0xe9, 0xc5, 0xcd, 0xea, 0x6a, 0xc9, 0xe5, 0xed, 0xba, 0xa1, 0x15, 0xcd, 0x72,
];

/// AES block size.
const BLOCK: usize = 16;

/// A channel pre-shared key: 16 bytes (the norm) or 32.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum ChannelKey {
    /// 128-bit PSK (hashtag and most private channels).
    Aes128([u8; 16]),
    /// 256-bit PSK: AES uses the first 16 bytes, the MAC all 32.
    Aes256([u8; 32]),
}

impl std::fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are secrets; show only the channel hash.
        write!(f, "ChannelKey(hash {:02x})", self.channel_hash())
    }
}

impl ChannelKey {
    /// A key from 16 or 32 raw bytes.
    pub fn from_bytes(b: &[u8]) -> Option<ChannelKey> {
        if let Ok(k) = <[u8; 16]>::try_from(b) {
            return Some(ChannelKey::Aes128(k));
        }
        <[u8; 32]>::try_from(b).ok().map(ChannelKey::Aes256)
    }

    /// A key from 32 or 64 hex digits.
    pub fn from_hex(s: &str) -> Option<ChannelKey> {
        ChannelKey::from_bytes(&hex::decode(s.trim()).ok()?)
    }

    /// The hashtag channel key: first 16 bytes of SHA-256 of `"#" + name` (case-sensitive;
    /// a leading `#` in `name` is not doubled).
    pub fn hashtag(name: &str) -> ChannelKey {
        let name = name.strip_prefix('#').unwrap_or(name);
        let mut h = Sha256::new();
        h.update(b"#");
        h.update(name.as_bytes());
        ChannelKey::Aes128(crate::prefix::<16, 32>(h.finalize().into()))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            ChannelKey::Aes128(k) => k,
            ChannelKey::Aes256(k) => k,
        }
    }

    /// First byte of SHA-256 over the key (its own length).
    pub fn channel_hash(&self) -> u8 {
        let [first] = crate::prefix::<1, 32>(Sha256::digest(self.as_bytes()).into());
        first
    }

    fn aes_key(&self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k.copy_from_slice(self.as_bytes().get(..16).unwrap_or(&[0; 16]));
        k
    }
}

/// A named channel with its cipher state prepared, ready to decrypt and encrypt.
#[derive(Clone)]
pub struct Channel {
    name: String,
    key: ChannelKey,
    hash: u8,
    cipher: Aes128,
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("hash", &self.hash)
            .finish()
    }
}

impl Channel {
    /// A channel called `name` using `key`.
    pub fn new(name: impl Into<String>, key: ChannelKey) -> Channel {
        let aes_key = key.aes_key();
        // HMAC accepts keys of any length; this cannot fail.
        let mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key.as_bytes())
            .unwrap_or_else(|_| <Hmac<Sha256> as hmac::KeyInit>::new(&Default::default()));
        Channel {
            name: name.into(),
            hash: key.channel_hash(),
            cipher: Aes128::new(&Array::from(aes_key)),
            key,
            mac,
        }
    }

    /// The Public channel.
    pub fn public() -> Channel {
        Channel::new("Public", ChannelKey::Aes128(PUBLIC_CHANNEL_KEY))
    }

    /// A hashtag channel, named with its leading `#`.
    pub fn hashtag(name: &str) -> Channel {
        let name = name.strip_prefix('#').unwrap_or(name);
        Channel::new(format!("#{name}"), ChannelKey::hashtag(name))
    }

    /// Display name (`Public`, `#test`, or as configured).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key.
    pub fn key(&self) -> &ChannelKey {
        &self.key
    }

    /// The channel-hash byte.
    pub fn hash(&self) -> u8 {
        self.hash
    }

    /// The 2-byte MAC over `ciphertext`.
    pub fn mac(&self, ciphertext: &[u8]) -> [u8; 2] {
        let mut m = self.mac.clone();
        m.update(ciphertext);
        crate::prefix::<2, 32>(m.finalize().into_bytes().into())
    }

    /// MAC check then decryption. `None` when the MAC does not match or the ciphertext is
    /// not whole blocks. The plaintext keeps its zero padding.
    pub fn decrypt(&self, group: &Group<'_>) -> Option<Vec<u8>> {
        let ct = group.ciphertext;
        if ct.is_empty() || !ct.len().is_multiple_of(BLOCK) || group.channel_hash != self.hash {
            return None;
        }
        let mut m = self.mac.clone();
        m.update(ct);
        m.verify_truncated_left(&group.mac).ok()?;
        let mut out = ct.to_vec();
        for block in out.chunks_exact_mut(BLOCK) {
            if let Ok(block) = <&mut aes::Block>::try_from(block) {
                self.cipher.decrypt_block(block);
            }
        }
        Some(out)
    }

    /// Encrypts `plaintext` (zero-padded to whole blocks) and appends a group payload
    /// (`hash | MAC | ciphertext`) to `out`.
    pub fn encrypt_into(&self, plaintext: &[u8], out: &mut Vec<u8>) {
        let mut ct = plaintext.to_vec();
        ct.resize(plaintext.len().div_ceil(BLOCK).max(1) * BLOCK, 0);
        for block in ct.chunks_exact_mut(BLOCK) {
            if let Ok(block) = <&mut aes::Block>::try_from(block) {
                self.cipher.encrypt_block(block);
            }
        }
        let mac = self.mac(&ct);
        Group {
            channel_hash: self.hash,
            mac,
            ciphertext: &ct,
        }
        .encode(out);
    }
}

/// Index of a channel in its [`Keyring`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelId(u32);

/// The channels an analyzer knows, indexed by channel hash so a message is tried only
/// against keys that can match (§5.4: hash, then MAC, then plausibility).
#[derive(Debug, Clone)]
pub struct Keyring {
    channels: Vec<Channel>,
    by_hash: Vec<Vec<ChannelId>>,
}

impl Default for Keyring {
    fn default() -> Self {
        Keyring::new()
    }
}

/// A group message that decrypted and passed the plausibility check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// Which channel's key worked.
    pub channel: ChannelId,
    /// The whole plaintext including its zero padding.
    pub plaintext: Vec<u8>,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Keyring {
        Keyring {
            channels: Vec::new(),
            by_hash: vec![Vec::new(); 256],
        }
    }

    /// A keyring with the Public channel, as every node has.
    pub fn with_public() -> Keyring {
        let mut k = Keyring::new();
        k.add(Channel::public());
        k
    }

    /// Adds a channel; a key already present is not added twice. Returns its id.
    pub fn add(&mut self, channel: Channel) -> ChannelId {
        if let Some(id) = self.find_key(channel.key()) {
            return id;
        }
        let id = ChannelId(self.channels.len() as u32);
        if let Some(bucket) = self.by_hash.get_mut(usize::from(channel.hash())) {
            bucket.push(id);
        }
        self.channels.push(channel);
        id
    }

    /// Adds the hashtag channel `#name`.
    pub fn add_hashtag(&mut self, name: &str) -> ChannelId {
        self.add(Channel::hashtag(name))
    }

    fn find_key(&self, key: &ChannelKey) -> Option<ChannelId> {
        self.candidates(key.channel_hash())
            .find(|(_, c)| c.key() == key)
            .map(|(id, _)| id)
    }

    fn candidates(&self, hash: u8) -> impl Iterator<Item = (ChannelId, &Channel)> {
        self.by_hash
            .get(usize::from(hash))
            .into_iter()
            .flatten()
            .filter_map(|&id| Some((id, self.get(id)?)))
    }

    /// The channel with this id.
    pub fn get(&self, id: ChannelId) -> Option<&Channel> {
        self.channels.get(id.0 as usize)
    }

    /// The channel called `name`.
    pub fn by_name(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name() == name)
    }

    /// Number of channels.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Whether there are no channels.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Finds the channel that decrypts `group` into a plausible plaintext for `payload_type`
    /// (GRP_TXT: UTF-8 text with few control characters; GRP_DATA: data that fits).
    pub fn decrypt(&self, payload_type: PayloadType, group: &Group<'_>) -> Option<Decrypted> {
        self.candidates(group.channel_hash).find_map(|(id, ch)| {
            let plaintext = ch.decrypt(group)?;
            let plausible = match payload_type {
                PayloadType::GrpTxt => {
                    GroupText::decode(&plaintext).is_some_and(|t| t.is_plausible())
                }
                PayloadType::GrpData => GroupData::decode(&plaintext).is_some(),
                _ => false,
            };
            plausible.then_some(Decrypted {
                channel: id,
                plaintext,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_and_hashes() {
        assert_eq!(Channel::public().hash(), 0x11);
        let t = ChannelKey::hashtag("#test");
        assert_eq!(
            hex::encode(t.as_bytes()),
            "9cd8fcf22a47333b591d96a2b848b73f"
        );
        assert_eq!(t.channel_hash(), 0xd9);
        assert_eq!(ChannelKey::hashtag("wardriving").channel_hash(), 0x81);
        assert_eq!(ChannelKey::hashtag("bot").channel_hash(), 0xca);
        assert_ne!(
            ChannelKey::hashtag("LongFast"),
            ChannelKey::hashtag("longfast")
        );
    }

    #[test]
    fn encrypt_then_decrypt_with_16_and_32_byte_keys() {
        for key in [ChannelKey::Aes128([3; 16]), ChannelKey::Aes256([4; 32])] {
            let ch = Channel::new("private", key);
            let mut ring = Keyring::new();
            ring.add(ch.clone());
            let mut plain = Vec::new();
            GroupText {
                timestamp: 1,
                flags: 0,
                text: "me: hi",
            }
            .encode(&mut plain);
            let mut payload = Vec::new();
            ch.encrypt_into(&plain, &mut payload);
            let g = Group::decode(PayloadType::GrpTxt, &payload).unwrap();
            let d = ring.decrypt(PayloadType::GrpTxt, &g).unwrap();
            assert_eq!(ring.get(d.channel).unwrap().name(), "private");
            assert_eq!(GroupText::decode(&d.plaintext).unwrap().text, "me: hi");
            // A flipped MAC bit is rejected.
            let mut bad = payload.clone();
            bad[1] ^= 1;
            let g = Group::decode(PayloadType::GrpTxt, &bad).unwrap();
            assert!(ring.decrypt(PayloadType::GrpTxt, &g).is_none());
        }
    }

    #[test]
    fn duplicate_keys_are_added_once() {
        let mut ring = Keyring::with_public();
        let a = ring.add_hashtag("test");
        let b = ring.add_hashtag("#test");
        assert_eq!(a, b);
        assert_eq!(ring.len(), 2);
    }
}
