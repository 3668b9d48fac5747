//! The header byte (§1.1): route type, payload type and payload version.

/// How a packet travels (bits 0–1 of the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteType {
    /// Flood scoped by a region transport code.
    TransportFlood = 0,
    /// Flood: each repeater appends its hash to the path.
    Flood = 1,
    /// Source-routed: the path is the remaining route.
    Direct = 2,
    /// Direct with transport codes (zero-hop contact share uses codes {0, 0}).
    TransportDirect = 3,
}

impl RouteType {
    /// All four route types, in wire order.
    pub const ALL: [RouteType; 4] = [
        RouteType::TransportFlood,
        RouteType::Flood,
        RouteType::Direct,
        RouteType::TransportDirect,
    ];

    /// The route type in the low two bits of `bits`.
    pub const fn from_bits(bits: u8) -> RouteType {
        match bits & 0x03 {
            0 => RouteType::TransportFlood,
            1 => RouteType::Flood,
            2 => RouteType::Direct,
            _ => RouteType::TransportDirect,
        }
    }

    /// Wire value, 0–3.
    pub const fn value(self) -> u8 {
        self as u8
    }

    /// Whether four bytes of transport codes follow the header.
    pub const fn has_transport_codes(self) -> bool {
        matches!(self, RouteType::TransportFlood | RouteType::TransportDirect)
    }

    /// Flood routes (0 and 1): the path grows as repeaters forward.
    pub const fn is_flood(self) -> bool {
        matches!(self, RouteType::TransportFlood | RouteType::Flood)
    }

    /// Direct routes (2 and 3): the path is the remaining route.
    pub const fn is_direct(self) -> bool {
        !self.is_flood()
    }

    /// The firmware's name, e.g. `"TRANSPORT_FLOOD"`.
    pub const fn name(self) -> &'static str {
        match self {
            RouteType::TransportFlood => "TRANSPORT_FLOOD",
            RouteType::Flood => "FLOOD",
            RouteType::Direct => "DIRECT",
            RouteType::TransportDirect => "TRANSPORT_DIRECT",
        }
    }
}

/// What the payload is (bits 2–5 of the header). All 16 values are representable; 12–14 are
/// reserved and decode as raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PayloadType {
    /// Encrypted request to a peer.
    Req = 0,
    /// Encrypted response to a request.
    Response = 1,
    /// Encrypted direct text message.
    TxtMsg = 2,
    /// Acknowledgement CRC.
    Ack = 3,
    /// Signed node advertisement.
    Advert = 4,
    /// Group (channel) text message.
    GrpTxt = 5,
    /// Group (channel) binary datagram.
    GrpData = 6,
    /// Request carrying the sender's public key (logins and the like).
    AnonReq = 7,
    /// Encrypted returned path.
    Path = 8,
    /// Route trace collecting SNR per hop.
    Trace = 9,
    /// One part of a multi-part packet.
    Multipart = 10,
    /// Control datagrams (node discovery).
    Control = 11,
    /// Reserved, value 12.
    Reserved12 = 12,
    /// Reserved, value 13.
    Reserved13 = 13,
    /// Reserved, value 14.
    Reserved14 = 14,
    /// Opaque application bytes.
    RawCustom = 15,
}

impl PayloadType {
    /// All sixteen payload types, in wire order.
    pub const ALL: [PayloadType; 16] = [
        PayloadType::Req,
        PayloadType::Response,
        PayloadType::TxtMsg,
        PayloadType::Ack,
        PayloadType::Advert,
        PayloadType::GrpTxt,
        PayloadType::GrpData,
        PayloadType::AnonReq,
        PayloadType::Path,
        PayloadType::Trace,
        PayloadType::Multipart,
        PayloadType::Control,
        PayloadType::Reserved12,
        PayloadType::Reserved13,
        PayloadType::Reserved14,
        PayloadType::RawCustom,
    ];

    /// The payload type in the low four bits of `nibble`.
    pub const fn from_nibble(nibble: u8) -> PayloadType {
        match nibble & 0x0F {
            0 => PayloadType::Req,
            1 => PayloadType::Response,
            2 => PayloadType::TxtMsg,
            3 => PayloadType::Ack,
            4 => PayloadType::Advert,
            5 => PayloadType::GrpTxt,
            6 => PayloadType::GrpData,
            7 => PayloadType::AnonReq,
            8 => PayloadType::Path,
            9 => PayloadType::Trace,
            10 => PayloadType::Multipart,
            11 => PayloadType::Control,
            12 => PayloadType::Reserved12,
            13 => PayloadType::Reserved13,
            14 => PayloadType::Reserved14,
            _ => PayloadType::RawCustom,
        }
    }

    /// Wire value, 0–15.
    pub const fn value(self) -> u8 {
        self as u8
    }

    /// The firmware's name (`"GRP_TXT"`…); reserved types are `"UNKNOWN"`.
    pub const fn name(self) -> &'static str {
        match self {
            PayloadType::Req => "REQ",
            PayloadType::Response => "RESPONSE",
            PayloadType::TxtMsg => "TXT_MSG",
            PayloadType::Ack => "ACK",
            PayloadType::Advert => "ADVERT",
            PayloadType::GrpTxt => "GRP_TXT",
            PayloadType::GrpData => "GRP_DATA",
            PayloadType::AnonReq => "ANON_REQ",
            PayloadType::Path => "PATH",
            PayloadType::Trace => "TRACE",
            PayloadType::Multipart => "MULTIPART",
            PayloadType::Control => "CONTROL",
            PayloadType::Reserved12 | PayloadType::Reserved13 | PayloadType::Reserved14 => {
                "UNKNOWN"
            }
            PayloadType::RawCustom => "RAW_CUSTOM",
        }
    }

    /// Parses a name as [`PayloadType::name`] gives it (case-insensitive) or a number 0–15.
    pub fn parse(s: &str) -> Option<PayloadType> {
        if let Ok(n) = s.parse::<u8>() {
            return (n < 16).then(|| PayloadType::from_nibble(n));
        }
        PayloadType::ALL
            .into_iter()
            .filter(|t| t.name() != "UNKNOWN")
            .find(|t| t.name().eq_ignore_ascii_case(s))
    }
}

/// Payload version (bits 6–7). Only version 0 ("v1") is in use; firmware drops any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PayloadVersion(u8);

impl PayloadVersion {
    /// The one version firmware accepts.
    pub const V1: PayloadVersion = PayloadVersion(0);

    /// The version in the low two bits of `bits`.
    pub const fn from_bits(bits: u8) -> PayloadVersion {
        PayloadVersion(bits & 0x03)
    }

    /// Wire value, 0–3.
    pub const fn value(self) -> u8 {
        self.0
    }

    /// Whether firmware would process a packet of this version.
    pub const fn is_supported(self) -> bool {
        self.0 == 0
    }
}

/// The decoded header byte `0bVVPPPPRR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Bits 0–1.
    pub route_type: RouteType,
    /// Bits 2–5.
    pub payload_type: PayloadType,
    /// Bits 6–7.
    pub version: PayloadVersion,
}

impl Header {
    /// Every byte is a header; this never fails.
    pub const fn from_byte(b: u8) -> Header {
        Header {
            route_type: RouteType::from_bits(b),
            payload_type: PayloadType::from_nibble(b >> 2),
            version: PayloadVersion::from_bits(b >> 6),
        }
    }

    /// The wire byte.
    pub const fn to_byte(self) -> u8 {
        self.route_type.value() | (self.payload_type.value() << 2) | (self.version.value() << 6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(Header::from_byte(b).to_byte(), b);
        }
    }

    #[test]
    fn payload_type_parse_accepts_names_and_numbers() {
        assert_eq!(PayloadType::parse("grp_txt"), Some(PayloadType::GrpTxt));
        assert_eq!(PayloadType::parse("9"), Some(PayloadType::Trace));
        assert_eq!(PayloadType::parse("16"), None);
        assert_eq!(PayloadType::parse("UNKNOWN"), None);
        assert_eq!(PayloadType::parse("bogus"), None);
    }
}
