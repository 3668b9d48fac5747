//! CONTROL (§3.9): unencrypted node discovery. The upper nibble of byte 0 is the subtype.

use super::{PayloadError, head, le_u32};
use crate::PayloadType;
use crate::payload::NodeType;

/// A CONTROL payload. A discovery subtype whose fixed fields are missing is kept as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control<'a> {
    /// Subtype 0x8: "who is there?"
    DiscoverReq(DiscoverReq<'a>),
    /// Subtype 0x9: "I am here."
    DiscoverResp(DiscoverResp<'a>),
    /// Any other subtype, or a truncated discovery packet.
    Other {
        /// Byte 0.
        flags: u8,
        /// Everything after byte 0.
        body: &'a [u8],
    },
}

/// `flags (0x80 | prefix_only) | type filter | tag u32 | [since u32]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoverReq<'a> {
    /// Byte 0; bit 0 asks for 8-byte key prefixes in responses.
    pub flags: u8,
    /// Bit n set: node type n should answer.
    pub type_filter: u8,
    /// Echoed by responders.
    pub tag: u32,
    /// Only nodes changed since this epoch (optional on the wire).
    pub since: Option<u32>,
    /// Bytes after `since` (or a partial `since`), which firmware ignores; kept so the
    /// payload re-encodes exactly. Empty from real senders.
    pub extra: &'a [u8],
}

/// `flags (0x90 | node type) | snr i8 | tag u32 | public key (32, or an 8-byte prefix)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoverResp<'a> {
    /// Byte 0; the low nibble is the responder's node type.
    pub flags: u8,
    /// The request's SNR as heard by the responder, in quarter dB.
    pub snr: i8,
    /// Echo of the request's tag.
    pub tag: u32,
    /// Responder's public key or its prefix.
    pub public_key: &'a [u8],
}

impl DiscoverReq<'_> {
    /// Whether responders should send only an 8-byte key prefix.
    pub const fn prefix_only(&self) -> bool {
        self.flags & 1 != 0
    }
}

impl DiscoverResp<'_> {
    /// The responder's node type.
    pub const fn node_type(&self) -> NodeType {
        NodeType::from_nibble(self.flags)
    }
}

impl<'a> Control<'a> {
    /// Minimum length.
    pub const MIN_LEN: usize = 1;

    /// Decodes a CONTROL payload.
    pub fn decode(b: &'a [u8]) -> Result<Control<'a>, PayloadError> {
        let ([flags], body) = head::<1>(PayloadType::Control, b)?;
        let flags = *flags;
        Ok(match (flags >> 4, b.split_first_chunk::<6>()) {
            (0x8, Some((h, rest))) => {
                let (since, extra) = match rest.split_first_chunk::<4>() {
                    Some((s, extra)) => (Some(u32::from_le_bytes(*s)), extra),
                    None => (None, rest),
                };
                Control::DiscoverReq(DiscoverReq {
                    flags,
                    type_filter: h[1],
                    tag: le_u32([h[2], h[3], h[4], h[5]]),
                    since,
                    extra,
                })
            }
            (0x9, Some((h, rest))) => Control::DiscoverResp(DiscoverResp {
                flags,
                snr: h[1] as i8,
                tag: le_u32([h[2], h[3], h[4], h[5]]),
                public_key: rest,
            }),
            _ => Control::Other { flags, body },
        })
    }

    /// Byte 0.
    pub const fn flags(&self) -> u8 {
        match self {
            Control::DiscoverReq(r) => r.flags,
            Control::DiscoverResp(r) => r.flags,
            Control::Other { flags, .. } => *flags,
        }
    }

    /// Subtype name: `DISCOVER_REQ`, `DISCOVER_RESP` or `UNKNOWN`.
    pub const fn subtype_name(&self) -> &'static str {
        match self.flags() >> 4 {
            0x8 => "DISCOVER_REQ",
            0x9 => "DISCOVER_RESP",
            _ => "UNKNOWN",
        }
    }

    /// Appends the wire bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Control::DiscoverReq(r) => {
                out.push(r.flags);
                out.push(r.type_filter);
                out.extend_from_slice(&r.tag.to_le_bytes());
                if let Some(s) = r.since {
                    out.extend_from_slice(&s.to_le_bytes());
                }
                out.extend_from_slice(r.extra);
            }
            Control::DiscoverResp(r) => {
                out.push(r.flags);
                out.push(r.snr as u8);
                out.extend_from_slice(&r.tag.to_le_bytes());
                out.extend_from_slice(r.public_key);
            }
            Control::Other { flags, body } => {
                out.push(*flags);
                out.extend_from_slice(body);
            }
        }
    }
}
