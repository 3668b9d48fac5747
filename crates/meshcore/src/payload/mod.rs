//! Payload layouts (§2–§3): one borrowed view type per payload type, each with `decode` and
//! `encode`. A payload that is too short is a [`PayloadError`]; the frame stays valid.

mod ack;
mod advert;
mod control;
mod envelope;
mod group;
mod trace;

pub use ack::{Ack, Multipart};
pub use advert::{Advert, AppData, Location, MAX_SIGNED_APPDATA, NodeType, public_key_of};
pub use control::{Control, DiscoverReq, DiscoverResp};
pub use envelope::{AnonReq, Envelope};
pub use group::{Group, GroupData, GroupText};
pub use trace::{Trace, snr_db};

use crate::PayloadType;

/// A payload that could not be decoded. The frame around it is still valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Fewer bytes than the type's fixed fields need.
    #[error("{payload_type:?} payload too short: {got} bytes, need {need}")]
    TooShort {
        /// The payload type being decoded.
        payload_type: PayloadType,
        /// Minimum length for this type.
        need: usize,
        /// Actual length.
        got: usize,
    },
}

impl PayloadError {
    /// Stable machine-readable code.
    pub const fn code(&self) -> &'static str {
        match self {
            PayloadError::TooShort { .. } => "too_short",
        }
    }
}

/// Splits off the first `N` bytes, or reports the payload as too short for type `t`.
pub(crate) fn head<const N: usize>(
    t: PayloadType,
    bytes: &[u8],
) -> Result<(&[u8; N], &[u8]), PayloadError> {
    bytes
        .split_first_chunk::<N>()
        .ok_or(PayloadError::TooShort {
            payload_type: t,
            need: N,
            got: bytes.len(),
        })
}

/// A decoded payload, borrowing the frame's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    /// REQ: encrypted peer datagram.
    Req(Envelope<'a>),
    /// RESPONSE: encrypted peer datagram.
    Response(Envelope<'a>),
    /// TXT_MSG: encrypted peer datagram.
    TxtMsg(Envelope<'a>),
    /// PATH: encrypted peer datagram (encrypted, unlike what some decoders assume).
    Path(Envelope<'a>),
    /// ACK.
    Ack(Ack<'a>),
    /// ADVERT.
    Advert(Advert<'a>),
    /// GRP_TXT.
    GrpTxt(Group<'a>),
    /// GRP_DATA.
    GrpData(Group<'a>),
    /// ANON_REQ.
    AnonReq(AnonReq<'a>),
    /// TRACE.
    Trace(Trace<'a>),
    /// MULTIPART.
    Multipart(Multipart<'a>),
    /// CONTROL.
    Control(Control<'a>),
    /// RAW_CUSTOM: opaque bytes.
    RawCustom(&'a [u8]),
    /// Types 12–14: reserved, kept raw.
    Reserved(ReservedType, &'a [u8]),
}

/// One of the reserved payload types 12–14.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReservedType(PayloadType);

impl ReservedType {
    /// `Some` for types 12, 13 and 14 only.
    pub fn new(t: PayloadType) -> Option<ReservedType> {
        matches!(
            t,
            PayloadType::Reserved12 | PayloadType::Reserved13 | PayloadType::Reserved14
        )
        .then_some(ReservedType(t))
    }

    /// The payload type.
    pub const fn payload_type(self) -> PayloadType {
        self.0
    }
}

impl<'a> Payload<'a> {
    /// Decodes `bytes` as a payload of type `t`.
    pub fn decode(t: PayloadType, bytes: &'a [u8]) -> Result<Payload<'a>, PayloadError> {
        Ok(match t {
            PayloadType::Req => Payload::Req(Envelope::decode(t, bytes)?),
            PayloadType::Response => Payload::Response(Envelope::decode(t, bytes)?),
            PayloadType::TxtMsg => Payload::TxtMsg(Envelope::decode(t, bytes)?),
            PayloadType::Path => Payload::Path(Envelope::decode(t, bytes)?),
            PayloadType::Ack => Payload::Ack(Ack::decode(bytes)?),
            PayloadType::Advert => Payload::Advert(Advert::decode(bytes)?),
            PayloadType::GrpTxt => Payload::GrpTxt(Group::decode(t, bytes)?),
            PayloadType::GrpData => Payload::GrpData(Group::decode(t, bytes)?),
            PayloadType::AnonReq => Payload::AnonReq(AnonReq::decode(bytes)?),
            PayloadType::Trace => Payload::Trace(Trace::decode(bytes)?),
            PayloadType::Multipart => Payload::Multipart(Multipart::decode(bytes)?),
            PayloadType::Control => Payload::Control(Control::decode(bytes)?),
            PayloadType::RawCustom => Payload::RawCustom(bytes),
            PayloadType::Reserved12 | PayloadType::Reserved13 | PayloadType::Reserved14 => {
                Payload::Reserved(ReservedType(t), bytes)
            }
        })
    }

    /// The payload type this payload is sent as.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Req(_) => PayloadType::Req,
            Payload::Response(_) => PayloadType::Response,
            Payload::TxtMsg(_) => PayloadType::TxtMsg,
            Payload::Path(_) => PayloadType::Path,
            Payload::Ack(_) => PayloadType::Ack,
            Payload::Advert(_) => PayloadType::Advert,
            Payload::GrpTxt(_) => PayloadType::GrpTxt,
            Payload::GrpData(_) => PayloadType::GrpData,
            Payload::AnonReq(_) => PayloadType::AnonReq,
            Payload::Trace(_) => PayloadType::Trace,
            Payload::Multipart(_) => PayloadType::Multipart,
            Payload::Control(_) => PayloadType::Control,
            Payload::RawCustom(_) => PayloadType::RawCustom,
            Payload::Reserved(t, _) => t.payload_type(),
        }
    }

    /// Appends the wire bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Req(e) | Payload::Response(e) | Payload::TxtMsg(e) | Payload::Path(e) => {
                e.encode(out)
            }
            Payload::Ack(a) => a.encode(out),
            Payload::Advert(a) => a.encode(out),
            Payload::GrpTxt(g) | Payload::GrpData(g) => g.encode(out),
            Payload::AnonReq(a) => a.encode(out),
            Payload::Trace(t) => t.encode(out),
            Payload::Multipart(m) => m.encode(out),
            Payload::Control(c) => c.encode(out),
            Payload::RawCustom(b) | Payload::Reserved(_, b) => out.extend_from_slice(b),
        }
    }

    /// The wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// A little-endian u32 from four bytes of a fixed-size head.
pub(crate) const fn le_u32(b: [u8; 4]) -> u32 {
    u32::from_le_bytes(b)
}
