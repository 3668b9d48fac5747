//! Region scopes (§1.2): the transport code a TRANSPORT_FLOOD carries, and matching it against
//! configured `#region` names.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::{Packet, PayloadType};

/// A region's 16-byte key.
#[derive(Clone, PartialEq, Eq)]
pub struct RegionKey([u8; 16]);

impl std::fmt::Debug for RegionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegionKey(..)")
    }
}

impl RegionKey {
    /// First 16 bytes of SHA-256 of `"#" + name`. Firmware always hashes with the `#`,
    /// case-sensitive; a leading `#` in `name` is not doubled.
    pub fn for_name(name: &str) -> RegionKey {
        let name = name.strip_prefix('#').unwrap_or(name);
        let mut h = Sha256::new();
        h.update(b"#");
        h.update(name.as_bytes());
        RegionKey(crate::prefix::<16, 32>(h.finalize().into()))
    }

    /// A private (`$`) region's key from its raw bytes.
    pub fn from_bytes(k: [u8; 16]) -> RegionKey {
        RegionKey(k)
    }

    /// The transport code for a payload: HMAC-SHA256 over `[type] || payload`, first two bytes
    /// little-endian, with the reserved values 0 and 0xFFFF moved to 1 and 0xFFFE.
    pub fn transport_code(&self, payload_type: PayloadType, payload: &[u8]) -> u16 {
        let Ok(mut m) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0) else {
            return 1;
        };
        m.update(&[payload_type.value()]);
        m.update(payload);
        match u16::from_le_bytes(crate::prefix::<2, 32>(m.finalize().into_bytes().into())) {
            0 => 1,
            0xFFFF => 0xFFFE,
            c => c,
        }
    }
}

/// Configured regions to attribute scoped floods to.
#[derive(Debug, Clone, Default)]
pub struct Regions {
    regions: Vec<(String, RegionKey)>,
}

impl Regions {
    /// No regions.
    pub fn new() -> Regions {
        Regions::default()
    }

    /// Adds the public region `#name` (shown with its `#`).
    pub fn add(&mut self, name: &str) {
        let bare = name.strip_prefix('#').unwrap_or(name);
        let display = format!("#{bare}");
        if self.regions.iter().any(|(n, _)| *n == display) {
            return;
        }
        self.regions.push((display, RegionKey::for_name(bare)));
    }

    /// Adds a region with an explicit key (private `$` regions).
    pub fn add_with_key(&mut self, name: &str, key: RegionKey) {
        self.regions.push((name.to_owned(), key));
    }

    /// Whether no region is configured.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The region whose code the packet carries. `None` for non-transport routes, the
    /// unscoped code 0, or no match.
    pub fn match_scope(&self, packet: &Packet<'_>) -> Option<&str> {
        let code = packet.transport_codes()?.scope;
        if code == 0 {
            return None;
        }
        self.regions
            .iter()
            .find(|(_, k)| k.transport_code(packet.payload_type(), packet.payload_bytes()) == code)
            .map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ottawa_matches_the_real_packet() {
        let f = hex::decode(concat!(
            "14FA1A0000034E927D596EA23622BCB4D5945E49348165AF7DABA3F5DCEED85F430E0856DB5B591E",
            "86AB3363BC00E1BA30776698F72FC57C7168E66A4875CDB710F3C175FC2B3FE75A036EF14FA59A70",
            "9062D3A9FF7014F2E7A8512C"
        ))
        .unwrap();
        let p = Packet::decode(&f).unwrap();
        let key = RegionKey::for_name("#ottawa");
        assert_eq!(
            key.transport_code(p.payload_type(), p.payload_bytes()),
            0x1AFA
        );
        let mut r = Regions::new();
        r.add("seattle");
        assert_eq!(r.match_scope(&p), None);
        r.add("ottawa");
        assert_eq!(r.match_scope(&p), Some("#ottawa"));
        // One changed payload byte and the code no longer matches.
        let mut g = f.clone();
        *g.last_mut().unwrap() ^= 1;
        assert_eq!(r.match_scope(&Packet::decode(&g).unwrap()), None);
    }
}
