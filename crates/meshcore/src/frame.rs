//! Framing (§1.5): split a frame into header, transport codes, path and payload.

use crate::{
    Header, MAX_PAYLOAD, PacketHash, PathLen, Payload, PayloadError, PayloadType, PayloadVersion,
    RouteType,
};

/// Why a frame could not be framed. The codes ([`FrameErrorKind::code`]) are stable and part of
/// meshlens' output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FrameErrorKind {
    /// Fewer than two bytes.
    #[error("frame shorter than 2 bytes")]
    TooShort,
    /// A transport route without room for its 4 code bytes and the path-length byte.
    #[error("transport codes truncated")]
    TruncatedTransportCodes,
    /// Path-length bits 7–6 = `11` (hash size 4 is reserved).
    #[error("reserved path hash size")]
    ReservedHashSize,
    /// Hop count × hash size exceeds 64 bytes.
    #[error("path longer than 64 bytes")]
    PathTooLong,
    /// The path runs past the end of the frame.
    #[error("path runs past the end of the frame")]
    PathExceedsBuffer,
    /// More than 184 payload bytes.
    #[error("payload longer than 184 bytes")]
    PayloadTooLong,
}

impl FrameErrorKind {
    /// Stable machine-readable code, e.g. `"path_too_long"`.
    pub const fn code(self) -> &'static str {
        match self {
            FrameErrorKind::TooShort => "too_short",
            FrameErrorKind::TruncatedTransportCodes => "truncated_transport_codes",
            FrameErrorKind::ReservedHashSize => "reserved_hash_size",
            FrameErrorKind::PathTooLong => "path_too_long",
            FrameErrorKind::PathExceedsBuffer => "path_exceeds_buffer",
            FrameErrorKind::PayloadTooLong => "payload_too_long",
        }
    }
}

/// A framing failure, with the header when the frame had at least one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct FrameError {
    /// What went wrong.
    pub kind: FrameErrorKind,
    /// The header byte, decoded, if there was one.
    pub header: Option<Header>,
}

/// The two transport codes of a TRANSPORT route (§1.2), as little-endian integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TransportCodes {
    /// `code1`: the region scope code (0 = not scoped).
    pub scope: u16,
    /// `code2`: reserved for a home region; always 0 from current firmware.
    pub home: u16,
}

/// A route with its transport codes, so that codes exist exactly on transport routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Route 0.
    TransportFlood(TransportCodes),
    /// Route 1.
    Flood,
    /// Route 2.
    Direct,
    /// Route 3.
    TransportDirect(TransportCodes),
}

impl Route {
    /// The route type without the codes.
    pub const fn route_type(self) -> RouteType {
        match self {
            Route::TransportFlood(_) => RouteType::TransportFlood,
            Route::Flood => RouteType::Flood,
            Route::Direct => RouteType::Direct,
            Route::TransportDirect(_) => RouteType::TransportDirect,
        }
    }

    /// The transport codes, on transport routes.
    pub const fn transport_codes(self) -> Option<TransportCodes> {
        match self {
            Route::TransportFlood(c) | Route::TransportDirect(c) => Some(c),
            Route::Flood | Route::Direct => None,
        }
    }
}

/// A framed packet borrowing its bytes. Constructed by [`Packet::decode`] or, for encoding,
/// [`Packet::new`]; either way every length is within the firmware's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    route: Route,
    payload_type: PayloadType,
    version: PayloadVersion,
    path_len: PathLen,
    path: &'a [u8],
    payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Frames `bytes` following §1.5. Payload decoding is separate ([`Packet::payload`]).
    pub fn decode(bytes: &'a [u8]) -> Result<Packet<'a>, FrameError> {
        let Some((&first, rest)) = bytes.split_first() else {
            return Err(FrameError {
                kind: FrameErrorKind::TooShort,
                header: None,
            });
        };
        let header = Header::from_byte(first);
        let fail = |kind| FrameError {
            kind,
            header: Some(header),
        };
        if bytes.len() < 2 {
            return Err(fail(FrameErrorKind::TooShort));
        }
        let (route, rest) = match header.route_type {
            RouteType::Flood => (Route::Flood, rest),
            RouteType::Direct => (Route::Direct, rest),
            RouteType::TransportFlood | RouteType::TransportDirect => {
                // Four code bytes and the path-length byte must all be present.
                let Some((codes, rest)) =
                    rest.split_first_chunk::<4>().filter(|(_, r)| !r.is_empty())
                else {
                    return Err(fail(FrameErrorKind::TruncatedTransportCodes));
                };
                let codes = TransportCodes {
                    scope: u16::from_le_bytes([codes[0], codes[1]]),
                    home: u16::from_le_bytes([codes[2], codes[3]]),
                };
                let route = if header.route_type == RouteType::TransportFlood {
                    Route::TransportFlood(codes)
                } else {
                    Route::TransportDirect(codes)
                };
                (route, rest)
            }
        };
        let Some((&path_len_byte, rest)) = rest.split_first() else {
            // Only reachable for non-transport routes with a 1-byte frame, handled above.
            return Err(fail(FrameErrorKind::TooShort));
        };
        let path_len = PathLen::from_byte(path_len_byte).map_err(fail)?;
        let Some((path, payload)) = rest.split_at_checked(path_len.byte_len()) else {
            return Err(fail(FrameErrorKind::PathExceedsBuffer));
        };
        if payload.len() > MAX_PAYLOAD {
            return Err(fail(FrameErrorKind::PayloadTooLong));
        }
        Ok(Packet {
            route,
            payload_type: header.payload_type,
            version: header.version,
            path_len,
            path,
            payload,
        })
    }

    /// A packet to encode. `path` must be exactly `path_len.byte_len()` bytes and `payload` at
    /// most 184 bytes; otherwise `None`.
    pub fn new(
        route: Route,
        payload_type: PayloadType,
        path_len: PathLen,
        path: &'a [u8],
        payload: &'a [u8],
    ) -> Option<Packet<'a>> {
        (path.len() == path_len.byte_len() && payload.len() <= MAX_PAYLOAD).then_some(Packet {
            route,
            payload_type,
            version: PayloadVersion::V1,
            path_len,
            path,
            payload,
        })
    }

    /// The same packet with another payload version (for tests of version handling).
    pub fn with_version(mut self, version: PayloadVersion) -> Packet<'a> {
        self.version = version;
        self
    }

    /// Appends the wire bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.header().to_byte());
        if let Some(codes) = self.route.transport_codes() {
            out.extend_from_slice(&codes.scope.to_le_bytes());
            out.extend_from_slice(&codes.home.to_le_bytes());
        }
        out.push(self.path_len.to_byte());
        out.extend_from_slice(self.path);
        out.extend_from_slice(self.payload);
    }

    /// The wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }

    /// Length of the wire form.
    pub fn encoded_len(&self) -> usize {
        let codes = if self.route.transport_codes().is_some() {
            4
        } else {
            0
        };
        2 + codes + self.path.len() + self.payload.len()
    }

    /// The header byte, decoded.
    pub const fn header(&self) -> Header {
        Header {
            route_type: self.route.route_type(),
            payload_type: self.payload_type,
            version: self.version,
        }
    }

    /// Route and transport codes.
    pub const fn route(&self) -> Route {
        self.route
    }

    /// Route type.
    pub const fn route_type(&self) -> RouteType {
        self.route.route_type()
    }

    /// Payload type.
    pub const fn payload_type(&self) -> PayloadType {
        self.payload_type
    }

    /// Payload version; anything but [`PayloadVersion::V1`] is dropped by firmware.
    pub const fn version(&self) -> PayloadVersion {
        self.version
    }

    /// Transport codes, on transport routes.
    pub const fn transport_codes(&self) -> Option<TransportCodes> {
        self.route.transport_codes()
    }

    /// The path-length byte, decoded.
    pub const fn path_len(&self) -> PathLen {
        self.path_len
    }

    /// Number of path entries (for TRACE: number of SNR samples).
    pub const fn hop_count(&self) -> u8 {
        self.path_len.hop_count()
    }

    /// The raw path bytes. For TRACE these are SNR samples, not hashes (§1.3).
    pub const fn path(&self) -> &'a [u8] {
        self.path
    }

    /// Whether the path holds repeater hashes (every type except TRACE).
    pub fn path_bytes_are_hops(&self) -> bool {
        self.payload_type != PayloadType::Trace
    }

    /// Path entries of `hash_size` bytes each; empty for TRACE, whose path holds SNRs.
    pub fn path_hops(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + use<'a> {
        let path = if self.path_bytes_are_hops() {
            self.path
        } else {
            &[]
        };
        path.chunks_exact(self.path_len.hash_size().bytes())
    }

    /// The payload bytes.
    pub const fn payload_bytes(&self) -> &'a [u8] {
        self.payload
    }

    /// The 8-byte packet identity (§6).
    pub fn hash(&self) -> PacketHash {
        PacketHash::of(self.payload_type, self.path_len.to_byte(), self.payload)
    }

    /// Decodes the payload by type (§2–§3).
    pub fn payload(&self) -> Result<Payload<'a>, PayloadError> {
        Payload::decode(self.payload_type, self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(hex: &str) -> FrameErrorKind {
        let bytes = hex::decode(hex).unwrap();
        Packet::decode(&bytes).unwrap_err().kind
    }

    #[test]
    fn framing_errors() {
        assert_eq!(Packet::decode(&[]).unwrap_err().header, None);
        assert_eq!(err("11"), FrameErrorKind::TooShort);
        assert_eq!(err("1400"), FrameErrorKind::TruncatedTransportCodes);
        assert_eq!(err("1400000000"), FrameErrorKind::TruncatedTransportCodes);
        assert_eq!(err("11C0"), FrameErrorKind::ReservedHashSize);
        assert_eq!(err("1141"), FrameErrorKind::PathExceedsBuffer);
        assert_eq!(err("11BF"), FrameErrorKind::PathTooLong);
    }

    #[test]
    fn empty_payload_is_framing_valid() {
        let p = Packet::decode(&[0x11, 0x00]).unwrap();
        assert!(p.payload_bytes().is_empty());
        assert!(p.payload().is_err());
        let p = Packet::decode(&[0x10, 1, 2, 3, 4, 0x00]).unwrap();
        assert_eq!(
            p.transport_codes(),
            Some(TransportCodes {
                scope: 0x0201,
                home: 0x0403
            })
        );
    }

    #[test]
    fn payload_limit_is_inclusive() {
        let mut f = vec![0x3E, 0x00];
        f.extend([0u8; MAX_PAYLOAD]);
        assert!(Packet::decode(&f).is_ok());
        f.push(0);
        assert_eq!(
            Packet::decode(&f).unwrap_err().kind,
            FrameErrorKind::PayloadTooLong
        );
    }
}
