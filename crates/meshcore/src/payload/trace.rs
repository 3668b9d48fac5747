//! TRACE (§3.7): the route lives in the payload; the frame's path holds SNR samples.

use super::{PayloadError, head, le_u32};
use crate::PayloadType;

/// `tag u32 | auth u32 | flags u8 | route`. Route entries are `1 << (flags & 3)` bytes wide
/// (1, 2, 4 or 8): a different encoding from the path-length byte's `size - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace<'a> {
    /// Random per trace.
    pub tag: u32,
    /// Authentication code.
    pub auth: u32,
    /// Bits 0–1: log2 of the route-entry width.
    pub flags: u8,
    /// The full intended route, consecutive hop hashes.
    pub route: &'a [u8],
}

impl<'a> Trace<'a> {
    /// Minimum length.
    pub const MIN_LEN: usize = 9;

    /// Decodes a TRACE payload.
    pub fn decode(b: &'a [u8]) -> Result<Trace<'a>, PayloadError> {
        let (h, route) = head::<9>(PayloadType::Trace, b)?;
        Ok(Trace {
            tag: le_u32([h[0], h[1], h[2], h[3]]),
            auth: le_u32([h[4], h[5], h[6], h[7]]),
            flags: h[8],
            route,
        })
    }

    /// Width of one route entry in bytes: 1, 2, 4 or 8.
    pub const fn hop_size(&self) -> usize {
        1 << (self.flags & 3)
    }

    /// Route entries; a trailing partial entry is ignored.
    pub fn hops(&self) -> std::slice::ChunksExact<'a, u8> {
        self.route.chunks_exact(self.hop_size())
    }

    /// Whether every hop has answered, given the number of SNR samples in the frame's path.
    pub fn is_complete(&self, snr_count: usize) -> bool {
        snr_count * self.hop_size() >= self.route.len()
    }

    /// Appends the wire bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tag.to_le_bytes());
        out.extend_from_slice(&self.auth.to_le_bytes());
        out.push(self.flags);
        out.extend_from_slice(self.route);
    }
}

/// An SNR sample (signed, quarter-dB) in dB.
pub fn snr_db(raw: u8) -> f64 {
    f64::from(raw as i8) / 4.0
}
