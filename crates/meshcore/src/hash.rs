//! Packet identity (§6): the firmware's 8-byte packet hash, the dedup key everywhere.

use sha2::{Digest, Sha256};

use crate::PayloadType;

/// First 8 bytes of SHA-256 over the payload type, (TRACE only) the path-length byte, and the
/// payload. Route, version, transport codes and path are excluded, so every copy of a packet
/// has the same hash, except TRACE whose path length grows per hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketHash(pub [u8; 8]);

impl PacketHash {
    /// Computes the hash from its inputs.
    pub fn of(payload_type: PayloadType, path_len_byte: u8, payload: &[u8]) -> PacketHash {
        let mut h = Sha256::new();
        h.update([payload_type.value()]);
        if payload_type == PayloadType::Trace {
            h.update([path_len_byte, 0]);
        }
        h.update(payload);
        PacketHash(crate::prefix::<8, 32>(h.finalize().into()))
    }

    /// Parses 16 hex digits, either case.
    pub fn from_hex(s: &str) -> Option<PacketHash> {
        let mut out = [0u8; 8];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(PacketHash(out))
    }

    /// The hash as a big-endian integer (the byte order of its hex form), handy as a
    /// database key.
    pub const fn to_u64(self) -> u64 {
        u64::from_be_bytes(self.0)
    }

    /// Inverse of [`PacketHash::to_u64`].
    pub const fn from_u64(v: u64) -> PacketHash {
        PacketHash(v.to_be_bytes())
    }
}

impl std::fmt::Display for PacketHash {
    /// 16 lowercase hex digits.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Packet;

    #[test]
    fn golden_values_from_the_spec() {
        let f = hex::decode("0A00D69FD7A5A7475DB07337749AE61FA53A4788E976").unwrap();
        assert_eq!(
            Packet::decode(&f).unwrap().hash().to_string(),
            "b1f07307cbc01ce5"
        );
        let f = hex::decode("2502AABBDEADBEEF").unwrap();
        assert_eq!(
            Packet::decode(&f).unwrap().hash().to_string(),
            "b1baaf3bf0d0726c"
        );
    }

    #[test]
    fn hex_and_integer_forms_round_trip() {
        let h = PacketHash::from_hex("B1F07307CBC01CE5").unwrap();
        assert_eq!(h.to_string(), "b1f07307cbc01ce5");
        assert_eq!(PacketHash::from_u64(h.to_u64()), h);
        assert!(PacketHash::from_hex("b1f0").is_none());
        assert!(PacketHash::from_hex("zzf07307cbc01ce5").is_none());
    }
}
