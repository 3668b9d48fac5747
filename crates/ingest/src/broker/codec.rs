//! MQTT 3.1 and 3.1.1 control packets, sans-IO: [`decode`] turns one packet's bytes into a
//! [`Packet`] borrowing them, the `encode_*` functions build the few packets a broker sends.
//! Every input is hostile: any byte string gives a packet or a [`CodecError`], never a panic.
//! MQTT 5 is refused at CONNECT with return code 1, as the 3.1.1 specification (§3.1.2.2)
//! asks of a server that does not speak the client's level.

/// Why a packet was refused. `code()` names its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The remaining-length field runs past four bytes.
    #[error("malformed remaining length")]
    BadLength,
    /// A field ends past the packet, a string is not UTF-8, or flags are illegal.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// CONNECT with a protocol level other than 3 or 4.
    #[error("unsupported protocol level {0}")]
    UnsupportedLevel(u8),
    /// A packet type a client never sends to a server.
    #[error("unexpected packet type {0}")]
    UnexpectedType(u8),
}

impl CodecError {
    /// Stable counter name.
    pub const fn code(self) -> &'static str {
        match self {
            CodecError::BadLength => "broker.bad_length",
            CodecError::Malformed(_) => "broker.malformed_packet",
            CodecError::UnsupportedLevel(_) => "broker.unsupported_protocol",
            CodecError::UnexpectedType(_) => "broker.unexpected_packet",
        }
    }
}

/// Delivery guarantee of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QoS {
    /// At most once: no acknowledgement.
    AtMostOnce,
    /// At least once: PUBACK.
    AtLeastOnce,
    /// Exactly once: PUBREC, PUBREL, PUBCOMP.
    ExactlyOnce,
}

impl QoS {
    fn from_bits(b: u8) -> Result<QoS, CodecError> {
        match b {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(CodecError::Malformed("qos 3")),
        }
    }
}

/// A client's last will: published by the broker if the connection ends without DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Payload.
    pub payload: &'a [u8],
    /// Retain flag.
    pub retain: bool,
}

/// CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect<'a> {
    /// 3 (MQTT 3.1, "MQIsdp") or 4 (3.1.1).
    pub level: u8,
    /// Client identifier; may be empty.
    pub client_id: &'a str,
    /// Seconds; 0 disables keep-alive.
    pub keep_alive: u16,
    /// The will, if any.
    pub will: Option<Will<'a>>,
    /// User name, if any.
    pub username: Option<&'a str>,
    /// Password, if any.
    pub password: Option<&'a [u8]>,
}

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish<'a> {
    /// Delivery guarantee.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Topic name (no wildcards).
    pub topic: &'a str,
    /// Packet identifier, present for QoS 1 and 2.
    pub pkid: Option<u16>,
    /// Payload.
    pub payload: &'a [u8],
}

/// A packet a client sends to a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// CONNECT.
    Connect(Connect<'a>),
    /// PUBLISH.
    Publish(Publish<'a>),
    /// PUBACK (for a publish the broker sent at QoS 1; meshlens only sends QoS 0).
    PubAck(u16),
    /// PUBREC.
    PubRec(u16),
    /// PUBREL: the second step of a QoS 2 publish.
    PubRel(u16),
    /// PUBCOMP.
    PubComp(u16),
    /// SUBSCRIBE: packet id and (filter, requested QoS) pairs.
    Subscribe(u16, Vec<(&'a str, u8)>),
    /// UNSUBSCRIBE.
    Unsubscribe(u16, Vec<&'a str>),
    /// PINGREQ.
    PingReq,
    /// DISCONNECT.
    Disconnect,
}

/// Packet type of a fixed header's first byte.
pub const fn packet_type(first: u8) -> u8 {
    first >> 4
}

/// Packet type number of PUBLISH.
pub const PUBLISH: u8 = 3;

/// Reads the remaining-length varint from `b` (the bytes after the first header byte).
/// Returns `Ok(None)` when more bytes are needed, else the length and how many bytes it took.
pub fn remaining_length(b: &[u8]) -> Result<Option<(usize, usize)>, CodecError> {
    let mut value = 0usize;
    for (i, &byte) in b.iter().enumerate().take(4) {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if b.len() >= 4 {
        Err(CodecError::BadLength)
    } else {
        Ok(None)
    }
}

/// A cursor over one packet's body.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn u8(&mut self) -> Result<u8, CodecError> {
        let (&b, rest) = self.0.split_first().ok_or(CodecError::Malformed("short"))?;
        self.0 = rest;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, CodecError> {
        let (b, rest) = self
            .0
            .split_first_chunk::<2>()
            .ok_or(CodecError::Malformed("short"))?;
        self.0 = rest;
        Ok(u16::from_be_bytes(*b))
    }

    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = usize::from(self.u16()?);
        if self.0.len() < n {
            return Err(CodecError::Malformed("field past the end"));
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(b)
    }

    fn str(&mut self) -> Result<&'a str, CodecError> {
        let b = self.bytes()?;
        let s = std::str::from_utf8(b).map_err(|_| CodecError::Malformed("not UTF-8"))?;
        // MQTT forbids U+0000 in strings (§1.5.3).
        if s.contains('\0') {
            return Err(CodecError::Malformed("NUL in string"));
        }
        Ok(s)
    }
}

/// Decodes one packet: `first` is the fixed header's first byte, `body` the `remaining
/// length` bytes after the header.
pub fn decode(first: u8, body: &[u8]) -> Result<Packet<'_>, CodecError> {
    let flags = first & 0x0F;
    let mut b = Body(body);
    let fixed_flags = |want: u8| {
        if flags == want {
            Ok(())
        } else {
            Err(CodecError::Malformed("reserved header flags"))
        }
    };
    match packet_type(first) {
        1 => {
            fixed_flags(0)?;
            connect(&mut b).map(Packet::Connect)
        }
        PUBLISH => {
            let qos = QoS::from_bits((flags >> 1) & 3)?;
            let retain = flags & 1 != 0;
            let topic = b.str()?;
            if topic.is_empty() || topic.contains(['+', '#']) {
                return Err(CodecError::Malformed("publish topic"));
            }
            let pkid = match qos {
                QoS::AtMostOnce => None,
                _ => Some(nonzero(b.u16()?)?),
            };
            Ok(Packet::Publish(Publish {
                qos,
                retain,
                topic,
                pkid,
                payload: b.0,
            }))
        }
        4 => {
            fixed_flags(0)?;
            Ok(Packet::PubAck(b.u16()?))
        }
        5 => {
            fixed_flags(0)?;
            Ok(Packet::PubRec(b.u16()?))
        }
        6 => {
            fixed_flags(2)?;
            Ok(Packet::PubRel(b.u16()?))
        }
        7 => {
            fixed_flags(0)?;
            Ok(Packet::PubComp(b.u16()?))
        }
        8 => {
            fixed_flags(2)?;
            let pkid = nonzero(b.u16()?)?;
            let mut filters = Vec::new();
            while !b.0.is_empty() {
                let f = b.str()?;
                let qos = b.u8()?;
                if qos > 2 || !valid_filter(f) {
                    return Err(CodecError::Malformed("subscription"));
                }
                filters.push((f, qos));
            }
            if filters.is_empty() {
                return Err(CodecError::Malformed("empty subscribe"));
            }
            Ok(Packet::Subscribe(pkid, filters))
        }
        10 => {
            fixed_flags(2)?;
            let pkid = nonzero(b.u16()?)?;
            let mut filters = Vec::new();
            while !b.0.is_empty() {
                filters.push(b.str()?);
            }
            if filters.is_empty() {
                return Err(CodecError::Malformed("empty unsubscribe"));
            }
            Ok(Packet::Unsubscribe(pkid, filters))
        }
        12 => {
            fixed_flags(0)?;
            Ok(Packet::PingReq)
        }
        14 => {
            fixed_flags(0)?;
            Ok(Packet::Disconnect)
        }
        t => Err(CodecError::UnexpectedType(t)),
    }
}

fn nonzero(pkid: u16) -> Result<u16, CodecError> {
    if pkid == 0 {
        Err(CodecError::Malformed("packet id 0"))
    } else {
        Ok(pkid)
    }
}

fn connect<'a>(b: &mut Body<'a>) -> Result<Connect<'a>, CodecError> {
    let name = b.bytes()?;
    let level = b.u8()?;
    match (name, level) {
        (b"MQTT", 4) | (b"MQIsdp", 3) => {}
        (b"MQTT", l) | (b"MQIsdp", l) => return Err(CodecError::UnsupportedLevel(l)),
        _ => return Err(CodecError::Malformed("protocol name")),
    }
    let flags = b.u8()?;
    if flags & 1 != 0 {
        return Err(CodecError::Malformed("reserved connect flag"));
    }
    let keep_alive = b.u16()?;
    let client_id = b.str()?;
    let will = if flags & 0x04 != 0 {
        let topic = b.str()?;
        let payload = b.bytes()?;
        if topic.is_empty() || topic.contains(['+', '#']) || (flags >> 3) & 3 == 3 {
            return Err(CodecError::Malformed("will"));
        }
        Some(Will {
            topic,
            payload,
            retain: flags & 0x20 != 0,
        })
    } else {
        if flags & 0x38 != 0 {
            return Err(CodecError::Malformed("will flags without a will"));
        }
        None
    };
    let username = (flags & 0x80 != 0).then(|| b.str()).transpose()?;
    let password = (flags & 0x40 != 0).then(|| b.bytes()).transpose()?;
    Ok(Connect {
        level,
        client_id,
        keep_alive,
        will,
        username,
        password,
    })
}

/// Whether `f` is a legal topic filter: `#` only last and alone in its level, `+` alone in
/// its level.
pub fn valid_filter(f: &str) -> bool {
    if f.is_empty() {
        return false;
    }
    let levels: Vec<&str> = f.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, l)| match *l {
        "#" => i == last,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

/// Whether topic name `topic` matches filter `filter` (MQTT 3.1.1 §4.7). Topics starting with
/// `$` are not matched by a leading wildcard.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn push_len(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            return;
        }
    }
}

/// CONNACK with return code `rc` (0 accepted, 1 bad protocol level, 2 identifier rejected,
/// 4 bad user name or password, 5 not authorised).
pub fn encode_connack(rc: u8) -> Vec<u8> {
    vec![0x20, 2, 0, rc]
}

/// PUBACK.
pub fn encode_puback(pkid: u16) -> [u8; 4] {
    let [h, l] = pkid.to_be_bytes();
    [0x40, 2, h, l]
}

/// PUBREC.
pub fn encode_pubrec(pkid: u16) -> [u8; 4] {
    let [h, l] = pkid.to_be_bytes();
    [0x50, 2, h, l]
}

/// PUBCOMP.
pub fn encode_pubcomp(pkid: u16) -> [u8; 4] {
    let [h, l] = pkid.to_be_bytes();
    [0x70, 2, h, l]
}

/// SUBACK granting `granted` (one byte per filter: the QoS granted, or 0x80 for failure).
pub fn encode_suback(pkid: u16, granted: &[u8]) -> Vec<u8> {
    let mut out = vec![0x90];
    push_len(&mut out, 2 + granted.len());
    out.extend_from_slice(&pkid.to_be_bytes());
    out.extend_from_slice(granted);
    out
}

/// UNSUBACK.
pub fn encode_unsuback(pkid: u16) -> [u8; 4] {
    let [h, l] = pkid.to_be_bytes();
    [0xB0, 2, h, l]
}

/// PINGRESP.
pub const PINGRESP: [u8; 2] = [0xD0, 0];

/// A QoS 0 PUBLISH, as delivered to subscribers. `topic` must be at most 65,535 bytes (the
/// broker only forwards topics it decoded, which cannot be longer).
pub fn encode_publish(topic: &str, payload: &[u8], retain: bool) -> Vec<u8> {
    let topic = topic.as_bytes();
    let topic = topic.get(..usize::from(u16::MAX)).unwrap_or(topic);
    let mut out = Vec::with_capacity(5 + 2 + topic.len() + payload.len());
    out.push(0x30 | u8::from(retain));
    push_len(&mut out, 2 + topic.len() + payload.len());
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic);
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(frame: &[u8]) -> (u8, &[u8]) {
        let (len, n) = remaining_length(&frame[1..]).unwrap().unwrap();
        (frame[0], &frame[1 + n..1 + n + len])
    }

    #[test]
    fn publish_round_trip_and_lengths() {
        for size in [0usize, 1, 120, 127, 128, 16_383, 16_384, 70_000] {
            let payload = vec![7u8; size];
            let frame = encode_publish("meshcore/SEA/ab/packets", &payload, true);
            let (first, body) = split(&frame);
            let Packet::Publish(p) = decode(first, body).unwrap() else {
                panic!()
            };
            assert_eq!(p.topic, "meshcore/SEA/ab/packets");
            assert_eq!(p.payload.len(), size);
            assert!(p.retain);
            assert_eq!((p.qos, p.pkid), (QoS::AtMostOnce, None));
        }
    }

    #[test]
    fn qos1_publish_carries_its_id() {
        // PUBLISH QoS 1, topic "a/b", id 0x1234, payload "hi".
        let body = [0, 3, b'a', b'/', b'b', 0x12, 0x34, b'h', b'i'];
        let Packet::Publish(p) = decode(0x32, &body).unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.qos, p.pkid, p.payload),
            (QoS::AtLeastOnce, Some(0x1234), &b"hi"[..])
        );
        assert!(
            decode(0x32, &[0, 3, b'a', b'/', b'b', 0, 0]).is_err(),
            "id 0"
        );
        assert!(decode(0x36, &body).is_err(), "qos 3");
        assert!(decode(0x30, &[0, 3, b'a', b'/', b'#']).is_err(), "wildcard");
    }

    #[test]
    fn connect_311_with_will_and_credentials() {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0b1110_0110, 0, 60];
        for field in [
            &b"cid"[..],
            b"meshcore/SEA/ab/status",
            b"{\"status\":\"offline\"}",
            b"user",
            b"pw",
        ] {
            body.extend_from_slice(&(field.len() as u16).to_be_bytes());
            body.extend_from_slice(field);
        }
        let Packet::Connect(c) = decode(0x10, &body).unwrap() else {
            panic!()
        };
        assert_eq!((c.level, c.client_id, c.keep_alive), (4, "cid", 60));
        let will = c.will.unwrap();
        assert_eq!(will.topic, "meshcore/SEA/ab/status");
        assert!(will.retain);
        assert_eq!((c.username, c.password), (Some("user"), Some(&b"pw"[..])));
        // MQTT 5 is refused with its own error, so the broker can answer return code 1.
        let v5 = [0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0];
        assert_eq!(decode(0x10, &v5), Err(CodecError::UnsupportedLevel(5)));
    }

    #[test]
    fn filters_match_as_the_specification_says() {
        assert!(matches("meshcore/#", "meshcore/SEA/ab/packets"));
        assert!(matches("meshcore/+/+/status", "meshcore/SEA/ab/status"));
        assert!(!matches("meshcore/+/status", "meshcore/SEA/ab/status"));
        assert!(matches("#", "a"));
        assert!(!matches("#", "$SYS/x"));
        assert!(matches("a/#", "a"));
        assert!(valid_filter("a/+/#") && !valid_filter("a/#/b") && !valid_filter("a+/b"));
    }

    #[test]
    fn remaining_length_limits() {
        assert_eq!(remaining_length(&[0x7F]), Ok(Some((127, 1))));
        assert_eq!(remaining_length(&[0x80, 0x01]), Ok(Some((128, 2))));
        assert_eq!(
            remaining_length(&[0xFF, 0xFF, 0xFF, 0x7F]),
            Ok(Some((268_435_455, 4)))
        );
        assert_eq!(remaining_length(&[0xFF, 0xFF]), Ok(None));
        assert_eq!(
            remaining_length(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(CodecError::BadLength)
        );
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // Every first byte against every short body, and a pseudo-random sweep.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for first in 0..=255u8 {
            for len in 0..24 {
                let body: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })
                    .collect();
                let _ = decode(first, &body);
            }
        }
    }
}
