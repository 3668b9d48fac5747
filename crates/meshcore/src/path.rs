//! The path-length byte (§1.3): hash size and hop count.

use crate::{FrameErrorKind, MAX_PATH_BYTES};

/// Bytes of a repeater's public key used as one path entry. Firmware ≥ 1.14 supports 2 and 3;
/// the fourth encoding is reserved and cannot be represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathHashSize {
    /// One byte: the legacy default.
    One = 1,
    /// Two bytes (firmware ≥ 1.14).
    Two = 2,
    /// Three bytes (firmware ≥ 1.14).
    Three = 3,
}

impl PathHashSize {
    /// All three sizes.
    pub const ALL: [PathHashSize; 3] = [PathHashSize::One, PathHashSize::Two, PathHashSize::Three];

    /// Size from the number of bytes, 1–3.
    pub const fn from_bytes(n: usize) -> Option<PathHashSize> {
        match n {
            1 => Some(PathHashSize::One),
            2 => Some(PathHashSize::Two),
            3 => Some(PathHashSize::Three),
            _ => None,
        }
    }

    /// Number of bytes per path entry.
    pub const fn bytes(self) -> usize {
        self as usize
    }

    /// Bits 7–6 of the path-length byte (`size - 1`).
    pub const fn mode_bits(self) -> u8 {
        self as u8 - 1
    }
}

/// A valid path-length byte: a hash size and a hop count whose product fits in
/// [`MAX_PATH_BYTES`]. Invalid bytes cannot be represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PathLen {
    hash_size: PathHashSize,
    hop_count: u8,
}

impl PathLen {
    /// Zero hops, 1-byte mode: what `sendZeroHop` writes.
    pub const ZERO: PathLen = PathLen {
        hash_size: PathHashSize::One,
        hop_count: 0,
    };

    /// A path length, or `None` when `hop_count × size` exceeds 64 bytes or hops exceed 63.
    pub const fn new(hash_size: PathHashSize, hop_count: u8) -> Option<PathLen> {
        if hop_count > 63 || hop_count as usize * hash_size.bytes() > MAX_PATH_BYTES {
            return None;
        }
        Some(PathLen {
            hash_size,
            hop_count,
        })
    }

    /// Decodes the wire byte; rejects the reserved size and paths over 64 bytes.
    pub const fn from_byte(b: u8) -> Result<PathLen, FrameErrorKind> {
        let hash_size = match b >> 6 {
            0 => PathHashSize::One,
            1 => PathHashSize::Two,
            2 => PathHashSize::Three,
            _ => return Err(FrameErrorKind::ReservedHashSize),
        };
        match PathLen::new(hash_size, b & 0x3F) {
            Some(p) => Ok(p),
            None => Err(FrameErrorKind::PathTooLong),
        }
    }

    /// The wire byte.
    pub const fn to_byte(self) -> u8 {
        (self.hash_size.mode_bits() << 6) | self.hop_count
    }

    /// Bytes per path entry.
    pub const fn hash_size(self) -> PathHashSize {
        self.hash_size
    }

    /// Number of entries (hops).
    pub const fn hop_count(self) -> u8 {
        self.hop_count
    }

    /// Length of the path in bytes.
    pub const fn byte_len(self) -> usize {
        self.hop_count as usize * self.hash_size.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_is_valid_or_a_stable_error() {
        for b in 0..=255u8 {
            match PathLen::from_byte(b) {
                Ok(p) => {
                    assert_eq!(p.to_byte(), b);
                    assert!(p.byte_len() <= 64);
                }
                Err(FrameErrorKind::ReservedHashSize) => assert!(b >= 0xC0),
                Err(FrameErrorKind::PathTooLong) => {
                    assert!((b & 63) as usize * ((b >> 6) as usize + 1) > 64)
                }
                Err(e) => panic!("unexpected {e:?} for {b:#x}"),
            }
        }
    }

    #[test]
    fn limits() {
        assert!(PathLen::new(PathHashSize::One, 63).is_some());
        assert!(PathLen::new(PathHashSize::Two, 32).is_some());
        assert!(PathLen::new(PathHashSize::Two, 33).is_none());
        assert!(PathLen::new(PathHashSize::Three, 21).is_some());
        assert!(PathLen::new(PathHashSize::Three, 22).is_none());
        assert_eq!(
            PathLen::from_byte(0xC0),
            Err(FrameErrorKind::ReservedHashSize)
        );
    }
}
