//! The JSON rendering of a decoded frame: what `meshlens decode` prints and what the API's
//! decode endpoint returns. Field names follow `shared/vectors` (`packet_hash`, `hop_count`…);
//! all hex is lowercase; nothing here panics on any input.

use serde_json::{Map, Value, json};

use crate::crypto::Keyring;
use crate::payload::{
    Ack, Advert, AnonReq, Control, Envelope, Group, GroupData, GroupText, MAX_SIGNED_APPDATA,
    Multipart, Trace, snr_db,
};
use crate::region::Regions;
use crate::{Packet, PathHashSize, Payload, PayloadType};

/// What the decoder knows beyond the frame: channel keys, regions, whether to verify
/// advert signatures.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// Channels to try on GRP_TXT/GRP_DATA.
    pub keyring: Keyring,
    /// Regions to attribute TRANSPORT codes to.
    pub regions: Regions,
    /// Verify advert signatures (the costly part of decoding an advert).
    pub verify_signatures: bool,
}

impl Default for DecodeOptions {
    /// The Public channel, no regions, signatures verified.
    fn default() -> Self {
        DecodeOptions {
            keyring: Keyring::with_public(),
            regions: Regions::new(),
            verify_signatures: true,
        }
    }
}

/// Why a hex string is not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// A character that is neither a hex digit nor whitespace.
    #[error("not a hex digit")]
    NotHex,
    /// An odd number of hex digits.
    #[error("odd number of hex digits")]
    OddLength,
}

impl HexError {
    /// Stable code.
    pub const fn code(self) -> &'static str {
        match self {
            HexError::NotHex => "bad_hex",
            HexError::OddLength => "odd_hex_length",
        }
    }
}

/// Parses hex, tolerating either case and any whitespace (spaces, tabs, CR, LF).
pub fn parse_hex(s: &str) -> Result<Vec<u8>, HexError> {
    let mut out = Vec::with_capacity(s.len() / 2);
    let mut high: Option<u8> = None;
    for c in s.bytes() {
        if c.is_ascii_whitespace() {
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(HexError::NotHex),
        };
        match high.take() {
            None => high = Some(v),
            Some(h) => out.push((h << 4) | v),
        }
    }
    if high.is_some() {
        return Err(HexError::OddLength);
    }
    Ok(out)
}

/// Decodes `bytes` and renders everything known about them as one JSON object.
pub fn decode_to_json(bytes: &[u8], opts: &DecodeOptions) -> Value {
    let mut o = Map::new();
    let packet = match Packet::decode(bytes) {
        Ok(p) => p,
        Err(e) => {
            o.insert("valid".into(), false.into());
            o.insert("error".into(), e.kind.code().into());
            o.insert("message".into(), e.kind.to_string().into());
            if let Some(h) = e.header {
                o.insert("route_type".into(), h.route_type.value().into());
                o.insert("payload_type".into(), h.payload_type.value().into());
                o.insert("payload_version".into(), h.version.value().into());
            }
            o.insert("frame_len".into(), bytes.len().into());
            return Value::Object(o);
        }
    };
    render_packet(&packet, opts, &mut o);
    Value::Object(o)
}

/// Renders a framed packet (header fields, then payload fields) into `o`.
pub fn render_packet(p: &Packet<'_>, opts: &DecodeOptions, o: &mut Map<String, Value>) {
    let h = p.header();
    o.insert("valid".into(), true.into());
    o.insert("route_type".into(), h.route_type.value().into());
    o.insert("route_type_name".into(), h.route_type.name().into());
    o.insert("payload_type".into(), h.payload_type.value().into());
    o.insert("payload_type_name".into(), h.payload_type.name().into());
    o.insert("payload_version".into(), h.version.value().into());
    if !h.version.is_supported() {
        o.insert("unsupported_version".into(), true.into());
        o.insert("firmware_accepts".into(), false.into());
    }
    if let Some(c) = p.transport_codes() {
        o.insert("transport_codes".into(), json!([c.scope, c.home]));
        let wire = |v: u16| hex::encode(v.to_le_bytes());
        o.insert(
            "transport_codes_hex".into(),
            json!([wire(c.scope), wire(c.home)]),
        );
        if let Some(region) = opts.regions.match_scope(p) {
            o.insert("region".into(), region.into());
        }
    }
    o.insert("path_len_byte".into(), p.path_len().to_byte().into());
    o.insert("hash_size".into(), p.path_len().hash_size().bytes().into());
    o.insert("hop_count".into(), p.hop_count().into());
    let hop = p.path_len().hash_size().bytes();
    let path: Vec<Value> = if p.path_bytes_are_hops() {
        p.path()
            .chunks_exact(hop)
            .map(|c| hex::encode(c).into())
            .collect()
    } else {
        p.path().iter().map(|b| hex::encode([*b]).into()).collect()
    };
    o.insert("path".into(), path.into());
    o.insert("payload_len".into(), p.payload_bytes().len().into());
    o.insert("packet_hash".into(), p.hash().to_string().into());
    match p.payload() {
        Ok(payload) => render_payload(p, &payload, opts, o),
        Err(e) => {
            o.insert(
                "payload_error".into(),
                json!({"code": e.code(), "message": e.to_string()}),
            );
            o.insert("payload_raw".into(), hex::encode(p.payload_bytes()).into());
        }
    }
}

fn render_payload(
    p: &Packet<'_>,
    payload: &Payload<'_>,
    opts: &DecodeOptions,
    o: &mut Map<String, Value>,
) {
    match payload {
        Payload::Req(e) | Payload::Response(e) | Payload::TxtMsg(e) | Payload::Path(e) => {
            envelope(e, o)
        }
        Payload::Ack(a) => ack(a, o),
        Payload::Advert(a) => advert(a, opts, o),
        Payload::GrpTxt(g) => group(PayloadType::GrpTxt, g, opts, o),
        Payload::GrpData(g) => group(PayloadType::GrpData, g, opts, o),
        Payload::AnonReq(a) => anon_req(a, o),
        Payload::Trace(t) => trace(p, t, o),
        Payload::Multipart(m) => multipart(m, o),
        Payload::Control(c) => control(c, o),
        Payload::RawCustom(b) | Payload::Reserved(_, b) => {
            o.insert("raw".into(), hex::encode(b).into());
        }
    }
}

fn put_hex(o: &mut Map<String, Value>, k: &str, b: &[u8]) {
    o.insert(k.into(), hex::encode(b).into());
}

fn envelope(e: &Envelope<'_>, o: &mut Map<String, Value>) {
    put_hex(o, "dest_hash", &[e.dest_hash]);
    put_hex(o, "src_hash", &[e.src_hash]);
    put_hex(o, "mac", &e.mac);
    put_hex(o, "ciphertext", e.ciphertext);
    o.insert("ciphertext_len".into(), e.ciphertext.len().into());
}

fn anon_req(a: &AnonReq<'_>, o: &mut Map<String, Value>) {
    put_hex(o, "dest_hash", &[a.dest_hash]);
    put_hex(o, "sender_pubkey", a.sender_pubkey);
    put_hex(o, "mac", &a.mac);
    put_hex(o, "ciphertext", a.ciphertext);
    o.insert("ciphertext_len".into(), a.ciphertext.len().into());
}

fn ack(a: &Ack<'_>, o: &mut Map<String, Value>) {
    put_hex(o, "ack_crc", &a.crc);
    o.insert("ack_crc_u32".into(), a.crc_u32().into());
    o.insert("ack_len".into(), (4 + a.extension.len()).into());
    if let Some(v) = a.attempt() {
        o.insert("ack_attempt".into(), v.into());
    }
    if let Some(v) = a.random() {
        o.insert("ack_rand".into(), v.into());
    }
}

/// Renders an advert from [`Advert::app_data`], the signed view every consumer shares: the
/// fields (name included) come from the signed appdata only, and any bytes past it are
/// reported apart as `unsigned_tail`, so `signature_valid: true` never vouches for them.
/// `appdata` stays the wire bytes, all of them.
fn advert(a: &Advert<'_>, opts: &DecodeOptions, o: &mut Map<String, Value>) {
    put_hex(o, "pubkey", a.public_key);
    o.insert("timestamp".into(), a.timestamp.into());
    put_hex(o, "signature", a.signature);
    if opts.verify_signatures {
        o.insert("signature_valid".into(), a.verify_signature().into());
    }
    put_hex(o, "appdata", a.appdata);
    let tail = a.unsigned_tail();
    if !tail.is_empty() {
        put_hex(o, "unsigned_tail", tail);
    }
    let Some(d) = a.app_data() else { return };
    o.insert("flags".into(), d.flags.into());
    o.insert("node_type".into(), d.node_type().value().into());
    o.insert("node_type_name".into(), d.node_type().name().into());
    o.insert("has_location".into(), (d.flags & 0x10 != 0).into());
    o.insert("has_feat1".into(), (d.flags & 0x20 != 0).into());
    o.insert("has_feat2".into(), (d.flags & 0x40 != 0).into());
    o.insert("has_name".into(), (d.flags & 0x80 != 0).into());
    if let Some(l) = d.location {
        o.insert("lat_raw".into(), l.lat_raw.into());
        o.insert("lon_raw".into(), l.lon_raw.into());
        o.insert("lat".into(), l.lat().into());
        o.insert("lon".into(), l.lon().into());
    }
    if let Some(f) = d.feature1 {
        o.insert("feat1".into(), f.into());
    }
    if let Some(f) = d.feature2 {
        o.insert("feat2".into(), f.into());
    }
    if let (Some(name), Some(lossy)) = (d.name, d.name_lossy()) {
        let valid = std::str::from_utf8(name).is_ok();
        // `name` is always present (lossy when needed); `name_lossy` marks the lossy case.
        if !valid {
            o.insert("name_lossy".into(), lossy.as_ref().into());
        }
        o.insert("name".into(), lossy.into_owned().into());
        put_hex(o, "name_bytes", name);
        o.insert("name_valid_utf8".into(), valid.into());
    }
}

fn group(t: PayloadType, g: &Group<'_>, opts: &DecodeOptions, o: &mut Map<String, Value>) {
    put_hex(o, "channel_hash", &[g.channel_hash]);
    put_hex(o, "mac", &g.mac);
    put_hex(o, "ciphertext", g.ciphertext);
    o.insert("ciphertext_len".into(), g.ciphertext.len().into());
    let found = opts
        .keyring
        .decrypt(t, g)
        .and_then(|d| Some((opts.keyring.get(d.channel)?, d.plaintext)));
    let Some((channel, plain)) = found else {
        o.insert("decrypted".into(), false.into());
        return;
    };
    o.insert("decrypted".into(), true.into());
    o.insert("channel".into(), channel.name().into());
    put_hex(o, "channel_key", channel.key().as_bytes());
    let mut pt = Map::new();
    if t == PayloadType::GrpTxt {
        if let Some(text) = GroupText::decode(&plain) {
            pt.insert("timestamp".into(), text.timestamp.into());
            pt.insert("txt_flags".into(), text.flags.into());
            pt.insert("txt_type".into(), text.txt_type().into());
            pt.insert("attempt".into(), text.attempt().into());
            pt.insert("text".into(), text.text.into());
            if let Some((sender, message)) = text.sender_and_message() {
                pt.insert("sender".into(), sender.into());
                pt.insert("message".into(), message.into());
            }
        }
    } else if let Some(data) = GroupData::decode(&plain) {
        pt.insert("data_type".into(), data.data_type.into());
        pt.insert("data_len".into(), data.data.len().into());
        put_hex(&mut pt, "data", data.data);
    }
    put_hex(&mut pt, "plaintext_hex", &plain);
    o.insert("plaintext".into(), pt.into());
}

/// Renders a TRACE. Its path holds one SNR sample per completed hop, and the hop count is
/// `path_len & 63` whatever the size bits say (§3.7): firmware keeps those bits 0 for TRACE,
/// so set bits are reported as an anomaly, and the framed path bytes beyond the first
/// `hops_completed` are not taken for samples.
///
/// Anomalies: `anomaly` is the first code (a string, as CoreScope has it) and `anomalies`
/// lists every code; both are absent when there is none. Codes: `trace_not_direct` (firmware
/// originates TRACE only as DIRECT), `trace_path_hash_bits` (size bits set in the
/// path-length byte).
fn trace(p: &Packet<'_>, t: &Trace<'_>, o: &mut Map<String, Value>) {
    o.insert("trace_tag".into(), t.tag.into());
    o.insert("trace_auth".into(), t.auth.into());
    o.insert("trace_flags".into(), t.flags.into());
    o.insert("trace_hash_size".into(), t.hop_size().into());
    let hops: Vec<Value> = t.hops().map(|h| hex::encode(h).into()).collect();
    o.insert("trace_hops".into(), hops.into());
    let hops_completed = usize::from(p.hop_count());
    // Framing reserved hop_count × size bytes, never fewer than hop_count.
    let snrs = p.path().get(..hops_completed).unwrap_or(p.path());
    let raw: Vec<i8> = snrs.iter().map(|&b| b as i8).collect();
    let db: Vec<f64> = snrs.iter().map(|&b| snr_db(b)).collect();
    o.insert("snr_raw".into(), json!(raw));
    o.insert("snr_db".into(), json!(db));
    o.insert("hops_completed".into(), hops_completed.into());
    o.insert(
        "trace_complete".into(),
        t.is_complete(hops_completed).into(),
    );
    let mut anomalies: Vec<&str> = Vec::new();
    if !p.route_type().is_direct() {
        anomalies.push("trace_not_direct");
    }
    if p.path_len().hash_size() != PathHashSize::One {
        anomalies.push("trace_path_hash_bits");
    }
    if let Some(first) = anomalies.first() {
        o.insert("anomaly".into(), (*first).into());
        o.insert("anomalies".into(), json!(anomalies));
    }
}

fn multipart(m: &Multipart<'_>, o: &mut Map<String, Value>) {
    o.insert("remaining".into(), m.remaining.into());
    o.insert("inner_type".into(), m.inner_type.value().into());
    put_hex(o, "inner", m.inner);
    if let Some(a) = m.inner_ack() {
        put_hex(o, "inner_ack_crc", &a.crc);
    }
}

fn control(c: &Control<'_>, o: &mut Map<String, Value>) {
    o.insert("ctrl_flags".into(), c.flags().into());
    o.insert("ctrl_subtype".into(), c.subtype_name().into());
    match c {
        Control::DiscoverReq(r) => {
            o.insert("prefix_only".into(), r.prefix_only().into());
            o.insert("type_filter".into(), r.type_filter.into());
            o.insert("tag".into(), r.tag.into());
            if let Some(s) = r.since {
                o.insert("since".into(), s.into());
            }
        }
        Control::DiscoverResp(r) => {
            o.insert("node_type".into(), r.node_type().value().into());
            o.insert("node_type_name".into(), r.node_type().name().into());
            o.insert("snr_raw".into(), r.snr.into());
            o.insert("snr_db".into(), (f64::from(r.snr) / 4.0).into());
            o.insert("tag".into(), r.tag.into());
            put_hex(o, "pubkey", r.public_key);
        }
        Control::Other { body, .. } => put_hex(o, "raw", body),
    }
}

/// One labelled byte range of a frame, for a byte-by-byte view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// What the bytes are, e.g. `"path_len"`, `"hop 2"`, `"mac"`.
    pub label: String,
}

/// Labels every byte of a frame: header, transport codes, path-length byte, each path entry,
/// then the payload's fields (whatever is left is `payload`). Ranges are in order, do not
/// overlap and, for a framed packet, cover the whole frame.
pub fn breakdown(bytes: &[u8]) -> Vec<ByteRange> {
    let mut out = Vec::new();
    let mut push = |start: usize, len: usize, label: String| {
        if len > 0 {
            out.push(ByteRange {
                start,
                end: start + len,
                label,
            });
        }
    };
    let Ok(p) = Packet::decode(bytes) else {
        push(0, bytes.len(), "invalid".into());
        return out;
    };
    push(0, 1, "header".into());
    let mut at = 1;
    if p.transport_codes().is_some() {
        push(1, 2, "transport_code_1".into());
        push(3, 2, "transport_code_2".into());
        at = 5;
    }
    push(at, 1, "path_len".into());
    at += 1;
    let hop = if p.path_bytes_are_hops() {
        p.path_len().hash_size().bytes()
    } else {
        1
    };
    for (i, _) in p.path().chunks(hop).enumerate() {
        let label = if p.path_bytes_are_hops() {
            format!("hop {}", i + 1)
        } else if i < usize::from(p.hop_count()) {
            format!("snr {}", i + 1)
        } else {
            // A TRACE with size bits set: framing reserved more bytes than hops answered.
            "trace_path_unused".to_owned()
        };
        push(at + i * hop, hop, label);
    }
    at += p.path().len();
    let fields: &[(&str, usize)] = match p.payload_type() {
        PayloadType::Req | PayloadType::Response | PayloadType::TxtMsg | PayloadType::Path => {
            &[("dest_hash", 1), ("src_hash", 1), ("mac", 2)]
        }
        PayloadType::Ack => &[("ack_crc", 4), ("ack_attempt", 1), ("ack_rand", 1)],
        PayloadType::Advert => &[
            ("pubkey", 32),
            ("timestamp", 4),
            ("signature", 64),
            ("appdata_flags", 1),
        ],
        PayloadType::GrpTxt | PayloadType::GrpData => &[("channel_hash", 1), ("mac", 2)],
        PayloadType::AnonReq => &[("dest_hash", 1), ("sender_pubkey", 32), ("mac", 2)],
        PayloadType::Trace => &[("trace_tag", 4), ("trace_auth", 4), ("trace_flags", 1)],
        PayloadType::Multipart => &[("multipart_header", 1)],
        PayloadType::Control => &[("ctrl_flags", 1)],
        _ => &[],
    };
    let end = bytes.len();
    for (label, len) in fields {
        let len = (*len).min(end - at);
        push(at, len, (*label).into());
        at += len;
    }
    let rest = match p.payload_type() {
        PayloadType::Req
        | PayloadType::Response
        | PayloadType::TxtMsg
        | PayloadType::Path
        | PayloadType::GrpTxt
        | PayloadType::GrpData
        | PayloadType::AnonReq => "ciphertext",
        PayloadType::Advert => "appdata",
        PayloadType::Trace => "trace_route",
        PayloadType::Multipart => "inner",
        _ => "payload",
    };
    if p.payload_type() == PayloadType::Advert {
        // The flags byte was labelled above; the signature ends 31 bytes later (§4).
        let signed = (MAX_SIGNED_APPDATA - 1).min(end - at);
        push(at, signed, rest.into());
        at += signed;
        push(at, end - at, "unsigned_tail".into());
        return out;
    }
    push(at, end - at, rest.into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakdown_covers_the_frame_in_order() {
        for hex in [
            "14FA1A0000034E927D596EA23622BCB4D5945E49348165AF7DABA3F5DCEED85F430E0856DB5B591E",
            "26022FF8116A23A80000000001C0DE1000DEDE",
            "0D04B891647EBB40BA70",
            "1100",
            "0E025D1F0C2F7A91009E",
        ] {
            let b = parse_hex(hex).unwrap();
            let r = breakdown(&b);
            assert_eq!(r.first().unwrap().start, 0);
            assert_eq!(r.last().unwrap().end, b.len(), "{hex}");
            assert!(r.windows(2).all(|w| w[0].end == w[1].start), "{hex}: {r:?}");
        }
        let r = breakdown(&parse_hex("26022FF8116A23A80000000001C0DE1000DEDE").unwrap());
        assert_eq!(r[2].label, "snr 1");
        assert_eq!(breakdown(&[0xff])[0].label, "invalid");
    }
}
