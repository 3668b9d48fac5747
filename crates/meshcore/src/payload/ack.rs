//! ACK (§3.2) and MULTIPART (§3.8), whose only defined inner type is an ACK.

use super::{PayloadError, head};
use crate::PayloadType;

/// An acknowledgement: a 4-byte CRC, then optionally an extended attempt byte and a random
/// byte (firmware ≥ 1.16). Bytes past those are kept so nothing is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack<'a> {
    /// First 4 bytes of SHA-256 over the acknowledged message; compare as bytes.
    pub crc: [u8; 4],
    /// Everything after the CRC: `[attempt, random, ...]`, usually empty.
    pub extension: &'a [u8],
}

impl<'a> Ack<'a> {
    /// Minimum length.
    pub const MIN_LEN: usize = 4;

    /// Decodes an ACK payload.
    pub fn decode(b: &'a [u8]) -> Result<Ack<'a>, PayloadError> {
        let (crc, extension) = head::<4>(PayloadType::Ack, b)?;
        Ok(Ack {
            crc: *crc,
            extension,
        })
    }

    /// The CRC read as a little-endian integer (how CoreScope shows it, `%08x`).
    pub const fn crc_u32(&self) -> u32 {
        u32::from_le_bytes(self.crc)
    }

    /// Extended attempt byte, when present.
    pub fn attempt(&self) -> Option<u8> {
        self.extension.first().copied()
    }

    /// Random byte that makes repeated ACKs distinct, when present.
    pub fn random(&self) -> Option<u8> {
        self.extension.get(1).copied()
    }

    /// Appends the wire bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.crc);
        out.extend_from_slice(self.extension);
    }
}

/// One part of a multi-part packet: `remaining << 4 | inner type`, then the inner payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Multipart<'a> {
    /// Packets still to follow, 0–15 (the high nibble).
    pub remaining: u8,
    /// Payload type of the inner bytes (only ACK is defined).
    pub inner_type: PayloadType,
    /// The inner payload.
    pub inner: &'a [u8],
}

impl<'a> Multipart<'a> {
    /// Minimum length.
    pub const MIN_LEN: usize = 1;

    /// Decodes a MULTIPART payload.
    pub fn decode(b: &'a [u8]) -> Result<Multipart<'a>, PayloadError> {
        let ([first], inner) = head::<1>(PayloadType::Multipart, b)?;
        Ok(Multipart {
            remaining: *first >> 4,
            inner_type: PayloadType::from_nibble(*first),
            inner,
        })
    }

    /// The inner ACK, when the inner type is ACK and at least 4 bytes follow.
    pub fn inner_ack(&self) -> Option<Ack<'a>> {
        (self.inner_type == PayloadType::Ack)
            .then(|| Ack::decode(self.inner).ok())
            .flatten()
    }

    /// Appends the wire bytes. `remaining` is masked to its 4 bits.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(((self.remaining & 0x0F) << 4) | self.inner_type.value());
        out.extend_from_slice(self.inner);
    }
}
