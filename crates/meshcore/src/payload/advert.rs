//! ADVERT (§3.3) and its signature (§4): who a node is, where, and what role it plays.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::PayloadError;
use crate::PayloadType;

/// Bytes of appdata the firmware signs and builds (`MAX_ADVERT_DATA_SIZE`).
pub const MAX_SIGNED_APPDATA: usize = 32;

/// `public key (32) | timestamp u32 | signature (64) | appdata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert<'a> {
    /// The node's Ed25519 public key: its identity.
    pub public_key: &'a [u8; 32],
    /// Sender's clock, Unix seconds.
    pub timestamp: u32,
    /// Ed25519 signature over public key, timestamp and appdata.
    pub signature: &'a [u8; 64],
    /// Flags, location, features and name ([`AppData`]).
    pub appdata: &'a [u8],
}

impl<'a> Advert<'a> {
    /// Minimum length.
    pub const MIN_LEN: usize = 100;

    /// Decodes an ADVERT payload. The signature is not checked here
    /// ([`Advert::verify_signature`] costs tens of microseconds).
    pub fn decode(b: &'a [u8]) -> Result<Advert<'a>, PayloadError> {
        let short = PayloadError::TooShort {
            payload_type: PayloadType::Advert,
            need: Self::MIN_LEN,
            got: b.len(),
        };
        let (public_key, rest) = b.split_first_chunk::<32>().ok_or(short)?;
        let (timestamp, rest) = rest.split_first_chunk::<4>().ok_or(short)?;
        let (signature, appdata) = rest.split_first_chunk::<64>().ok_or(short)?;
        Ok(Advert {
            public_key,
            timestamp: u32::from_le_bytes(*timestamp),
            signature,
            appdata,
        })
    }

    /// What the advert says: flags, location, features and name, parsed from the signed
    /// appdata only ([`Advert::signed_appdata`]); `None` when there is none. This is the one
    /// reading of an advert that the decode report, the API and ingest all use, so a name
    /// shown beside a valid signature is always covered by it. Bytes past the signed ones
    /// are never part of any field; see [`Advert::unsigned_tail`].
    ///
    /// ```
    /// use meshcore::payload::{Advert, AppData, NodeType};
    /// let mut appdata = Vec::new();
    /// AppData::new(NodeType::CHAT, None, Some(&[b'n'; 31])).encode(&mut appdata); // 32 bytes
    /// appdata.extend_from_slice(b" + unsigned");
    /// let mut payload = Vec::new();
    /// Advert::encode_signed(&[1; 32], 1_700_000_000, &appdata, &mut payload);
    /// let advert = Advert::decode(&payload).unwrap();
    /// assert!(advert.verify_signature());
    /// assert_eq!(advert.app_data().unwrap().name, Some(&[b'n'; 31][..]));
    /// assert_eq!(advert.unsigned_tail(), b" + unsigned");
    /// ```
    pub fn app_data(&self) -> Option<AppData<'a>> {
        AppData::decode(self.signed_appdata())
    }

    /// The appdata bytes the signature covers: the first [`MAX_SIGNED_APPDATA`] (§4).
    pub fn signed_appdata(&self) -> &'a [u8] {
        split_signed(self.appdata).0
    }

    /// Appdata bytes past [`MAX_SIGNED_APPDATA`]: not covered by the signature, so anyone
    /// relaying the advert may have changed them. Empty for every advert firmware builds.
    pub fn unsigned_tail(&self) -> &'a [u8] {
        split_signed(self.appdata).1
    }

    /// Verifies the signature as firmware does: standard (non-strict) Ed25519 over
    /// `public key || timestamp || appdata[..32]`.
    pub fn verify_signature(&self) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(self.public_key) else {
            return false;
        };
        let mut msg = [0u8; 32 + 4 + MAX_SIGNED_APPDATA];
        let len = signed_message(self.public_key, self.timestamp, self.appdata, &mut msg);
        let Some(msg) = msg.get(..len) else {
            return false;
        };
        key.verify(msg, &Signature::from_bytes(self.signature))
            .is_ok()
    }

    /// Appends the wire bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.public_key);
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        out.extend_from_slice(self.signature);
        out.extend_from_slice(self.appdata);
    }

    /// Builds and signs an advert payload for the key whose 32-byte seed is `seed`, appending
    /// it to `out`. Appdata beyond 32 bytes is not signed, as in firmware.
    pub fn encode_signed(seed: &[u8; 32], timestamp: u32, appdata: &[u8], out: &mut Vec<u8>) {
        let key = SigningKey::from_bytes(seed);
        let public_key = key.verifying_key().to_bytes();
        let mut msg = [0u8; 32 + 4 + MAX_SIGNED_APPDATA];
        let len = signed_message(&public_key, timestamp, appdata, &mut msg);
        let signature = key.sign(msg.get(..len).unwrap_or(&msg)).to_bytes();
        out.extend_from_slice(&public_key);
        out.extend_from_slice(&timestamp.to_le_bytes());
        out.extend_from_slice(&signature);
        out.extend_from_slice(appdata);
    }
}

/// The public key belonging to a 32-byte Ed25519 seed.
pub fn public_key_of(seed: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

/// Splits appdata into the part the signature covers and the rest. The single place that
/// decides where signed bytes end, for verifying, signing and reading an advert alike.
fn split_signed(appdata: &[u8]) -> (&[u8], &[u8]) {
    appdata
        .split_at_checked(MAX_SIGNED_APPDATA)
        .unwrap_or((appdata, &[]))
}

/// Writes the signed message into `buf` and returns its length.
fn signed_message(
    public_key: &[u8; 32],
    timestamp: u32,
    appdata: &[u8],
    buf: &mut [u8; 32 + 4 + MAX_SIGNED_APPDATA],
) -> usize {
    let signed = split_signed(appdata).0;
    let (pk, rest) = buf.split_at_mut(32);
    pk.copy_from_slice(public_key);
    let (ts, rest) = rest.split_at_mut(4);
    ts.copy_from_slice(&timestamp.to_le_bytes());
    if let Some(dst) = rest.get_mut(..signed.len()) {
        dst.copy_from_slice(signed);
    }
    36 + signed.len()
}

/// Node type, the low nibble of the appdata flags (and of a DISCOVER_RESP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeType(u8);

impl NodeType {
    /// Type 0: none given.
    pub const NONE: NodeType = NodeType(0);
    /// Type 1: chat node (companion).
    pub const CHAT: NodeType = NodeType(1);
    /// Type 2: repeater.
    pub const REPEATER: NodeType = NodeType(2);
    /// Type 3: room server.
    pub const ROOM: NodeType = NodeType(3);
    /// Type 4: sensor.
    pub const SENSOR: NodeType = NodeType(4);

    /// The type in the low nibble of `b`.
    pub const fn from_nibble(b: u8) -> NodeType {
        NodeType(b & 0x0F)
    }

    /// Wire value, 0–15.
    pub const fn value(self) -> u8 {
        self.0
    }

    /// Firmware-style name: `CHAT`, `REPEATER`, `ROOM`, `SENSOR`, `NONE`, or `TYPE_<n>` for
    /// future types (never guessed as a known role).
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self.0 {
            0 => "NONE".into(),
            1 => "CHAT".into(),
            2 => "REPEATER".into(),
            3 => "ROOM".into(),
            4 => "SENSOR".into(),
            n => format!("TYPE_{n}").into(),
        }
    }
}

/// Latitude and longitude in millionths of a degree, rounded toward zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    /// Latitude × 1e6.
    pub lat_raw: i32,
    /// Longitude × 1e6.
    pub lon_raw: i32,
}

impl Location {
    /// Latitude in degrees.
    pub fn lat(self) -> f64 {
        f64::from(self.lat_raw) / 1e6
    }

    /// Longitude in degrees.
    pub fn lon(self) -> f64 {
        f64::from(self.lon_raw) / 1e6
    }

    /// Whether the coordinates are on Earth (±90, ±180). Firmware sends 0/0 without a fix.
    pub fn in_range(self) -> bool {
        self.lat_raw.unsigned_abs() <= 90_000_000 && self.lon_raw.unsigned_abs() <= 180_000_000
    }
}

/// Advert appdata: a flags byte, then the fields it announces. When the flags announce a
/// field whose bytes are missing, that field and everything after it are absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppData<'a> {
    /// Low nibble: node type; `0x10` location, `0x20` feature 1, `0x40` feature 2, `0x80` name.
    pub flags: u8,
    /// Present when flagged and its 8 bytes exist.
    pub location: Option<Location>,
    /// Reserved feature word 1.
    pub feature1: Option<u16>,
    /// Reserved feature word 2.
    pub feature2: Option<u16>,
    /// All remaining bytes, when the name flag is set (UTF-8 from firmware, but untrusted).
    /// From [`Advert::app_data`], the remaining *signed* bytes.
    pub name: Option<&'a [u8]>,
}

impl<'a> AppData<'a> {
    /// Flag bit: location present.
    pub const HAS_LOCATION: u8 = 0x10;
    /// Flag bit: feature 1 present.
    pub const HAS_FEATURE1: u8 = 0x20;
    /// Flag bit: feature 2 present.
    pub const HAS_FEATURE2: u8 = 0x40;
    /// Flag bit: name present.
    pub const HAS_NAME: u8 = 0x80;

    /// Appdata for `node_type` with the flags set from the given fields.
    pub fn new(node_type: NodeType, location: Option<Location>, name: Option<&'a [u8]>) -> Self {
        let mut flags = node_type.value();
        if location.is_some() {
            flags |= Self::HAS_LOCATION;
        }
        if name.is_some() {
            flags |= Self::HAS_NAME;
        }
        AppData {
            flags,
            location,
            feature1: None,
            feature2: None,
            name,
        }
    }

    /// Parses appdata; `None` when it is empty.
    pub fn decode(b: &'a [u8]) -> Option<AppData<'a>> {
        let (&flags, mut rest) = b.split_first()?;
        let mut out = AppData {
            flags,
            location: None,
            feature1: None,
            feature2: None,
            name: None,
        };
        if flags & Self::HAS_LOCATION != 0 {
            let Some((loc, r)) = rest.split_first_chunk::<8>() else {
                return Some(out);
            };
            out.location = Some(Location {
                lat_raw: i32::from_le_bytes([loc[0], loc[1], loc[2], loc[3]]),
                lon_raw: i32::from_le_bytes([loc[4], loc[5], loc[6], loc[7]]),
            });
            rest = r;
        }
        for bit in [Self::HAS_FEATURE1, Self::HAS_FEATURE2] {
            if flags & bit == 0 {
                continue;
            }
            let Some((f, r)) = rest.split_first_chunk::<2>() else {
                return Some(out);
            };
            let value = Some(u16::from_le_bytes(*f));
            if bit == Self::HAS_FEATURE1 {
                out.feature1 = value;
            } else {
                out.feature2 = value;
            }
            rest = r;
        }
        if flags & Self::HAS_NAME != 0 {
            out.name = Some(rest);
        }
        Some(out)
    }

    /// The node type.
    pub const fn node_type(&self) -> NodeType {
        NodeType::from_nibble(self.flags)
    }

    /// The name as text, replacing invalid UTF-8 (one U+FFFD per maximal invalid subpart).
    pub fn name_lossy(&self) -> Option<std::borrow::Cow<'a, str>> {
        self.name.map(String::from_utf8_lossy)
    }

    /// Appends the wire bytes: the flags as given, then the fields that are present.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.flags);
        if let Some(l) = self.location {
            out.extend_from_slice(&l.lat_raw.to_le_bytes());
            out.extend_from_slice(&l.lon_raw.to_le_bytes());
        }
        for f in [self.feature1, self.feature2].into_iter().flatten() {
            out.extend_from_slice(&f.to_le_bytes());
        }
        if let Some(n) = self.name {
            out.extend_from_slice(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_advert_verifies_and_tampering_breaks_it() {
        let seed = [7u8; 32];
        let mut appdata = Vec::new();
        AppData::new(NodeType::REPEATER, None, Some(b"rpt")).encode(&mut appdata);
        let mut b = Vec::new();
        Advert::encode_signed(&seed, 1_700_000_000, &appdata, &mut b);
        let a = Advert::decode(&b).unwrap();
        assert_eq!(a.public_key, &public_key_of(&seed));
        assert!(a.verify_signature());
        let mut bad = b.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(!Advert::decode(&bad).unwrap().verify_signature());
        let mut bad = b.clone();
        bad[33] ^= 1; // timestamp is signed
        assert!(!Advert::decode(&bad).unwrap().verify_signature());
    }

    #[test]
    fn only_the_first_32_appdata_bytes_are_signed() {
        let seed = [9u8; 32];
        let appdata = [0x81u8; 40];
        let mut b = Vec::new();
        Advert::encode_signed(&seed, 5, &appdata, &mut b);
        *b.last_mut().unwrap() ^= 0xFF; // byte 40 of appdata: unsigned
        assert!(Advert::decode(&b).unwrap().verify_signature());
    }

    #[test]
    fn fields_are_read_from_the_signed_bytes_only() {
        let seed = [11u8; 32];
        let mut appdata = Vec::new();
        let location = Location {
            lat_raw: 1,
            lon_raw: 2,
        };
        AppData::new(NodeType::ROOM, Some(location), Some(b"room")).encode(&mut appdata);
        let mut b = Vec::new();
        Advert::encode_signed(&seed, 5, &appdata, &mut b);
        let a = Advert::decode(&b).unwrap();
        assert!(a.unsigned_tail().is_empty());
        assert_eq!(a.signed_appdata(), &appdata[..]);
        assert_eq!(a.app_data().unwrap().name, Some(&b"room"[..]));

        // 13 appdata bytes, padded to exactly the signed 32, then 5 more.
        assert_eq!(appdata.len(), 13);
        appdata.extend_from_slice(&[b'x'; 19]);
        appdata.extend_from_slice(b"tail!");
        let mut b = Vec::new();
        Advert::encode_signed(&seed, 5, &appdata, &mut b);
        let a = Advert::decode(&b).unwrap();
        assert!(a.verify_signature());
        assert_eq!(a.signed_appdata(), &appdata[..32]);
        assert_eq!(a.unsigned_tail(), b"tail!");
        let d = a.app_data().unwrap();
        assert_eq!(d.location, Some(location));
        assert_eq!(d.name, Some(&appdata[9..32]));
        assert_eq!(d.name_lossy().unwrap(), format!("room{}", "x".repeat(19)));
    }

    #[test]
    fn truncated_fields_stop_parsing() {
        let a = AppData::decode(&[0xF2, 1, 2, 3]).unwrap();
        assert_eq!(a.node_type(), NodeType::REPEATER);
        assert_eq!(a.location, None);
        assert_eq!(a.name, None);
        assert!(AppData::decode(&[]).is_none());
        let a = AppData::decode(&[0xA1, 1, 0, b'x']).unwrap();
        assert_eq!(a.feature1, Some(1));
        assert_eq!(a.name, Some(&b"x"[..]));
        assert_eq!(NodeType::from_nibble(9).name(), "TYPE_9");
    }
}
