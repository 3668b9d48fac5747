//! Property tests for the MeshCore wire format (`shared/docs/wire-format.md`).
//!
//! - Framing (§1): every route, payload type, path hash size and legal hop count encodes to
//!   the bytes the spec prescribes, decodes back to an equal [`Packet`], re-encodes
//!   identically, and hashes (§6) only the payload type, payload and — for TRACE — the
//!   path-length byte.
//! - Payloads (§2–§3): every payload view built from random fields encodes to the spec's
//!   layout and survives framing and decoding unchanged; adverts carry a valid signature (§4)
//!   that breaks when any signed byte changes.
//! - Group crypto (§5): GRP_TXT and GRP_DATA encrypted with random 16- and 32-byte channel keys
//!   are found and decrypted by a keyring holding the key, and by no keyring lacking it.
//! - Robustness (§8.1): the JSON report never panics on arbitrary bytes and reports only the
//!   six stable framing errors; an exhaustive header × path-length × length sweep agrees with
//!   a from-the-spec model of the framing algorithm.
//! - Hex input (§8.7): `report::parse_hex` tolerates case and whitespace and rejects odd
//!   lengths and non-hex characters.
//!
//! Oracles are written from the spec (byte layouts, SHA-256 / HMAC / AES / Ed25519 computed
//! directly), not from the crate's own encoders, so a bug shared by encoder and decoder fails.

use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use meshcore::crypto::{Channel, ChannelKey, Keyring};
use meshcore::payload::{
    Ack, Advert, AnonReq, AppData, Control, DiscoverReq, DiscoverResp, Envelope, Group, GroupData,
    GroupText, Location, Multipart, NodeType, ReservedType, Trace, public_key_of,
};
use meshcore::report::{DecodeOptions, HexError, decode_to_json, parse_hex};
use meshcore::{
    MAX_PAYLOAD, Packet, PathHashSize, PathLen, Payload, PayloadType, PayloadVersion, Route,
    TransportCodes,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// Spec oracles
// ---------------------------------------------------------------------------------------------

/// The six framing error codes (§10).
const FRAME_ERRORS: [&str; 6] = [
    "too_short",
    "truncated_transport_codes",
    "reserved_hash_size",
    "path_too_long",
    "path_exceeds_buffer",
    "payload_too_long",
];

/// Payload type names by wire value (§1.1).
const TYPE_NAMES: [&str; 16] = [
    "REQ",
    "RESPONSE",
    "TXT_MSG",
    "ACK",
    "ADVERT",
    "GRP_TXT",
    "GRP_DATA",
    "ANON_REQ",
    "PATH",
    "TRACE",
    "MULTIPART",
    "CONTROL",
    "UNKNOWN",
    "UNKNOWN",
    "UNKNOWN",
    "RAW_CUSTOM",
];

/// Wire value of a route (§1.1 table).
fn route_bits(r: Route) -> u8 {
    match r {
        Route::TransportFlood(_) => 0,
        Route::Flood => 1,
        Route::Direct => 2,
        Route::TransportDirect(_) => 3,
    }
}

/// The frame as §1 lays it out, built byte by byte.
fn frame_by_hand(
    route: Route,
    type_nibble: u8,
    version: u8,
    hash_size: usize,
    hops: u8,
    path: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut f = vec![route_bits(route) | (type_nibble << 2) | (version << 6)];
    if let Route::TransportFlood(c) | Route::TransportDirect(c) = route {
        f.extend_from_slice(&c.scope.to_le_bytes());
        f.extend_from_slice(&c.home.to_le_bytes());
    }
    f.push(((hash_size as u8 - 1) << 6) | hops);
    f.extend_from_slice(path);
    f.extend_from_slice(payload);
    f
}

/// §6: the first 8 bytes of SHA-256(type || [path_len, 0] for TRACE || payload), as hex.
fn hash_oracle(type_nibble: u8, path_len_byte: u8, payload: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update([type_nibble]);
    if type_nibble == 9 {
        h.update([path_len_byte, 0]);
    }
    h.update(payload);
    hex::encode(&h.finalize()[..8])
}

/// Where §1.5 puts the path and the payload of `b`: `Ok((path_start, payload_start))`, or the
/// error code the algorithm stops with.
fn framing_model(b: &[u8]) -> Result<(usize, usize), &'static str> {
    if b.len() < 2 {
        return Err("too_short");
    }
    let mut i = 1;
    if matches!(b[0] & 3, 0 | 3) {
        // Four code bytes plus the path-length byte.
        if b.len() < 1 + 4 + 1 {
            return Err("truncated_transport_codes");
        }
        i = 5;
    }
    let plb = b[i];
    i += 1;
    let size = usize::from(plb >> 6) + 1;
    let hops = usize::from(plb & 0x3F);
    if size == 4 {
        return Err("reserved_hash_size");
    }
    if hops * size > 64 {
        return Err("path_too_long");
    }
    if i + hops * size > b.len() {
        return Err("path_exceeds_buffer");
    }
    if b.len() - i - hops * size > 184 {
        return Err("payload_too_long");
    }
    Ok((i, i + hops * size))
}

/// §8.8: bytes a payload of each type needs before it decodes (0 = always decodes).
fn min_payload_len(type_nibble: u8) -> usize {
    match type_nibble {
        0 | 1 | 2 | 3 | 8 => 4,
        4 => 100,
        5 | 6 => 3,
        7 => 35,
        9 => 9,
        10 | 11 => 1,
        _ => 0,
    }
}

/// Checks a decoded payload against its bytes: decoding fails exactly below the type's
/// minimum, and re-encoding reproduces the bytes (except for DISCOVER_REQ, see below).
fn check_payload(
    type_nibble: u8,
    bytes: &[u8],
    decoded: &Result<Payload<'_>, meshcore::PayloadError>,
) {
    let min = min_payload_len(type_nibble);
    match decoded {
        Err(e) => {
            assert!(bytes.len() < min, "type {type_nibble}: {e} on {bytes:02x?}");
            assert_eq!(e.code(), "too_short");
            let meshcore::PayloadError::TooShort {
                payload_type,
                need,
                got,
            } = *e;
            assert_eq!(payload_type.value(), type_nibble);
            assert_eq!((need, got), (min, bytes.len()));
        }
        Ok(p) => {
            assert!(
                bytes.len() >= min,
                "type {type_nibble} decoded from {bytes:02x?}"
            );
            assert_eq!(p.payload_type().value(), type_nibble);
            let again = p.to_bytes();
            assert_eq!(again, bytes, "type {type_nibble} does not re-encode");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn transport_codes() -> impl Strategy<Value = TransportCodes> {
    (any::<u16>(), any::<u16>()).prop_map(|(scope, home)| TransportCodes { scope, home })
}

fn route() -> impl Strategy<Value = Route> {
    prop_oneof![
        transport_codes().prop_map(Route::TransportFlood),
        Just(Route::Flood),
        Just(Route::Direct),
        transport_codes().prop_map(Route::TransportDirect),
    ]
}

/// Any legal path length: a hash size and a hop count up to its limit.
fn path_len() -> impl Strategy<Value = PathLen> {
    prop::sample::select(PathHashSize::ALL.to_vec()).prop_flat_map(|size| {
        let max = (64 / size.bytes()).min(63) as u8;
        (0..=max).prop_map(move |hops| PathLen::new(size, hops).unwrap())
    })
}

/// A legal path length with exactly as many random path bytes.
fn path() -> impl Strategy<Value = (PathLen, Vec<u8>)> {
    path_len().prop_flat_map(|pl| (Just(pl), vec(any::<u8>(), pl.byte_len())))
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

/// One of the three reserved types.
fn reserved_type() -> impl Strategy<Value = PayloadType> {
    prop::sample::select(vec![
        PayloadType::Reserved12,
        PayloadType::Reserved13,
        PayloadType::Reserved14,
    ])
}

/// A random 16- or 32-byte channel key.
fn channel_key() -> impl Strategy<Value = ChannelKey> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(ChannelKey::Aes128),
        any::<[u8; 32]>().prop_map(ChannelKey::Aes256),
    ]
}

/// A valid frame of any shape (for biasing the report test toward valid input).
fn valid_frame() -> impl Strategy<Value = Vec<u8>> {
    (route(), 0u8..16, 0u8..4, path(), bytes(MAX_PAYLOAD)).prop_map(
        |(route, t, v, (pl, path), payload)| {
            Packet::new(route, PayloadType::from_nibble(t), pl, &path, &payload)
                .unwrap()
                .with_version(PayloadVersion::from_bits(v))
                .to_bytes()
        },
    )
}

// ---------------------------------------------------------------------------------------------
// 1. Framing round trip
// ---------------------------------------------------------------------------------------------

/// Encodes, decodes and re-encodes one packet, checking every accessor against the spec.
fn check_framing(route: Route, t: u8, version: u8, pl: PathLen, path: &[u8], payload: &[u8]) {
    let pt = PayloadType::from_nibble(t);
    assert_eq!(pt.value(), t);
    assert_eq!(pt.name(), TYPE_NAMES[usize::from(t)]);
    let packet = Packet::new(route, pt, pl, path, payload)
        .unwrap()
        .with_version(PayloadVersion::from_bits(version));
    let bytes = packet.to_bytes();
    let size = pl.hash_size().bytes();
    let expected = frame_by_hand(route, t, version, size, pl.hop_count(), path, payload);
    assert_eq!(bytes, expected);
    assert_eq!(packet.encoded_len(), bytes.len());
    assert_eq!(
        framing_model(&bytes).map(|(_, p)| p),
        Ok(bytes.len() - payload.len())
    );

    let d = Packet::decode(&bytes).unwrap();
    assert_eq!(d, packet);
    assert_eq!(d.to_bytes(), bytes);
    assert_eq!(d.route(), route);
    assert_eq!(d.transport_codes(), route.transport_codes());
    assert_eq!(d.payload_type(), pt);
    assert_eq!(d.version().value(), version);
    assert_eq!(d.header().to_byte(), bytes[0]);
    assert_eq!(d.path_len(), pl);
    assert_eq!(usize::from(d.hop_count()) * size, path.len());
    assert_eq!(d.path(), path);
    assert_eq!(d.payload_bytes(), payload);
    let hops: Vec<&[u8]> = d.path_hops().collect();
    if t == 9 {
        // TRACE: the path holds SNR samples, not hashes.
        assert!(hops.is_empty());
    } else {
        assert_eq!(hops.len(), usize::from(pl.hop_count()));
        assert!(hops.iter().all(|h| h.len() == size));
        assert_eq!(hops.concat(), path);
    }
    assert_eq!(d.hash().to_string(), hash_oracle(t, pl.to_byte(), payload));
}

#[test]
fn framing_round_trip_every_header_and_path_length() {
    // Deterministic companion of the property below: every route × type × version × hash size
    // × legal hop count, with a payload whose length sweeps 0..=184.
    let routes = [
        Route::TransportFlood(TransportCodes {
            scope: 0x1AFA,
            home: 0,
        }),
        Route::Flood,
        Route::Direct,
        Route::TransportDirect(TransportCodes {
            scope: 0xFFFE,
            home: 0x0102,
        }),
    ];
    let mut n = 0usize;
    for route in routes {
        for t in 0..16u8 {
            for size in PathHashSize::ALL {
                for hops in 0..=255u8 {
                    let Some(pl) = PathLen::new(size, hops) else {
                        // Illegal hop counts are exactly those over 63 or 64 path bytes.
                        assert!(hops > 63 || usize::from(hops) * size.bytes() > 64);
                        continue;
                    };
                    assert!(hops <= 63 && pl.byte_len() <= 64);
                    let path: Vec<u8> = (0..pl.byte_len()).map(|i| i as u8 ^ hops).collect();
                    let payload: Vec<u8> = (0..n % (MAX_PAYLOAD + 1)).map(|i| i as u8).collect();
                    check_framing(route, t, (n % 4) as u8, pl, &path, &payload);
                    n += 1;
                }
            }
        }
    }
    // 4 routes × 16 types × (64 + 33 + 22) path lengths.
    assert_eq!(n, 4 * 16 * 119);
}

proptest! {
    #[test]
    fn framing_round_trip(
        route in route(),
        t in 0u8..16,
        version in 0u8..4,
        (pl, path) in path(),
        payload in bytes(MAX_PAYLOAD),
        other_route in route(),
        other_version in 0u8..4,
        (other_pl, other_path) in path(),
    ) {
        check_framing(route, t, version, pl, &path, &payload);
        let pt = PayloadType::from_nibble(t);

        // Packet::new refuses a path of the wrong length and an oversized payload.
        let mut long_path = path.clone();
        long_path.push(0);
        prop_assert!(Packet::new(route, pt, pl, &long_path, &payload).is_none());
        let mut long_payload = payload.clone();
        long_payload.resize(MAX_PAYLOAD + 1, 0xAA);
        prop_assert!(Packet::new(route, pt, pl, &path, &long_payload).is_none());

        // Same payload on another route, version and path: the hash is the same, except for
        // TRACE, whose hash covers the path-length byte.
        let a = Packet::new(route, pt, pl, &path, &payload).unwrap();
        let b = Packet::new(other_route, pt, other_pl, &other_path, &payload)
            .unwrap()
            .with_version(PayloadVersion::from_bits(other_version));
        let b = Packet::decode(&b.to_bytes()).unwrap().hash();
        if t == 9 && pl.to_byte() != other_pl.to_byte() {
            prop_assert_ne!(a.hash(), b);
        } else {
            prop_assert_eq!(a.hash(), b);
        }
        if t == 9 {
            // Only the path-length byte matters, not the path bytes themselves.
            let same_len_other_path: Vec<u8> = path.iter().map(|x| !x).collect();
            let c = Packet::new(other_route, pt, pl, &same_len_other_path, &payload).unwrap();
            prop_assert_eq!(a.hash(), c.hash());
        }
        // A different payload type with the same payload never collides.
        let other_type = PayloadType::from_nibble(t ^ 1);
        let d = Packet::new(route, other_type, pl, &path, &payload).unwrap();
        prop_assert_ne!(a.hash(), d.hash());
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Payload round trip
// ---------------------------------------------------------------------------------------------

/// Appdata fields for [`AppData::new`]: node type nibble, location, name.
type AppDataSpec = (u8, Option<(i32, i32)>, Option<Vec<u8>>);

/// Owned description of one payload of each kind, from which the borrowed view is built.
#[derive(Debug, Clone)]
enum Spec {
    Envelope {
        t: PayloadType,
        dest: u8,
        src: u8,
        mac: [u8; 2],
        ct: Vec<u8>,
    },
    Ack {
        crc: [u8; 4],
        ext: Vec<u8>,
    },
    Advert {
        seed: [u8; 32],
        timestamp: u32,
        appdata: Option<AppDataSpec>,
        flip: (Index, u8),
    },
    Group {
        t: PayloadType,
        hash: u8,
        mac: [u8; 2],
        ct: Vec<u8>,
    },
    AnonReq {
        dest: u8,
        key: [u8; 32],
        mac: [u8; 2],
        ct: Vec<u8>,
    },
    Trace {
        tag: u32,
        auth: u32,
        flags: u8,
        route: Vec<u8>,
    },
    Multipart {
        remaining: u8,
        inner: u8,
        body: Vec<u8>,
    },
    DiscoverReq {
        low: u8,
        filter: u8,
        tag: u32,
        since: Option<u32>,
    },
    DiscoverResp {
        low: u8,
        snr: i8,
        tag: u32,
        key: Vec<u8>,
    },
    ControlOther {
        flags: u8,
        body: Vec<u8>,
    },
    RawCustom(Vec<u8>),
    Reserved(PayloadType, Vec<u8>),
}

fn appdata_spec() -> impl Strategy<Value = Option<AppDataSpec>> {
    let with_loc = (
        0u8..16,
        (any::<i32>(), any::<i32>()).prop_map(Some),
        prop::option::of(bytes(32 - 1 - 8)),
    );
    let without_loc = (0u8..16, Just(None), prop::option::of(bytes(32 - 1)));
    prop::option::weighted(0.9, prop_oneof![with_loc, without_loc])
}

fn spec() -> impl Strategy<Value = Spec> {
    let envelope_type = prop::sample::select(vec![
        PayloadType::Req,
        PayloadType::Response,
        PayloadType::TxtMsg,
        PayloadType::Path,
    ]);
    let group_type = prop::sample::select(vec![PayloadType::GrpTxt, PayloadType::GrpData]);
    // Subtypes other than DISCOVER_REQ/RESP, or a discovery subtype too short to decode.
    let other_flags = prop_oneof![
        prop::sample::select((0u8..16).filter(|s| *s != 8 && *s != 9).collect::<Vec<_>>())
            .prop_flat_map(|s| (0u8..16).prop_map(move |lo| (s << 4) | lo))
            .prop_flat_map(|f| (Just(f), bytes(MAX_PAYLOAD - 1))),
        (0x80u8..0xA0).prop_flat_map(|f| (Just(f), bytes(4))),
    ];
    prop_oneof![
        1 => (envelope_type, any::<u8>(), any::<u8>(), any::<[u8; 2]>(), bytes(MAX_PAYLOAD - 4))
            .prop_map(|(t, dest, src, mac, ct)| Spec::Envelope { t, dest, src, mac, ct }),
        1 => (any::<[u8; 4]>(), bytes(2)).prop_map(|(crc, ext)| Spec::Ack { crc, ext }),
        3 => (any::<[u8; 32]>(), any::<u32>(), appdata_spec(), (any::<Index>(), 1u8..=255))
            .prop_map(|(seed, timestamp, appdata, flip)| Spec::Advert {
                seed,
                timestamp,
                appdata,
                flip
            }),
        1 => (group_type, any::<u8>(), any::<[u8; 2]>(), bytes(MAX_PAYLOAD - 3))
            .prop_map(|(t, hash, mac, ct)| Spec::Group { t, hash, mac, ct }),
        1 => (any::<u8>(), any::<[u8; 32]>(), any::<[u8; 2]>(), bytes(MAX_PAYLOAD - 35))
            .prop_map(|(dest, key, mac, ct)| Spec::AnonReq { dest, key, mac, ct }),
        1 => (any::<u32>(), any::<u32>(), 0u8..=3, bytes(MAX_PAYLOAD - 9))
            .prop_map(|(tag, auth, flags, route)| Spec::Trace { tag, auth, flags, route }),
        1 => (0u8..=15, 0u8..16, bytes(MAX_PAYLOAD - 1))
            .prop_map(|(remaining, inner, body)| Spec::Multipart { remaining, inner, body }),
        1 => (0u8..16, any::<u8>(), any::<u32>(), prop::option::of(any::<u32>()))
            .prop_map(|(low, filter, tag, since)| Spec::DiscoverReq { low, filter, tag, since }),
        1 => (0u8..16, any::<i8>(), any::<u32>(), prop_oneof![vec(any::<u8>(), 32), vec(any::<u8>(), 8)])
            .prop_map(|(low, snr, tag, key)| Spec::DiscoverResp { low, snr, tag, key }),
        1 => other_flags.prop_map(|(flags, body)| Spec::ControlOther { flags, body }),
        1 => bytes(MAX_PAYLOAD).prop_map(Spec::RawCustom),
        1 => (reserved_type(), bytes(MAX_PAYLOAD)).prop_map(|(t, b)| Spec::Reserved(t, b)),
    ]
}

/// The parts of an advert computed directly with Ed25519 (not through the crate).
struct AdvertParts {
    public_key: [u8; 32],
    signature: [u8; 64],
    appdata: Vec<u8>,
}

/// Appdata laid out as §3.3 says: flags, then lat/lon, then the name.
fn appdata_by_hand(spec: &Option<AppDataSpec>) -> Vec<u8> {
    let Some((nt, loc, name)) = spec else {
        return Vec::new();
    };
    let mut flags = *nt;
    if loc.is_some() {
        flags |= 0x10;
    }
    if name.is_some() {
        flags |= 0x80;
    }
    let mut v = vec![flags];
    if let Some((lat, lon)) = loc {
        v.extend_from_slice(&lat.to_le_bytes());
        v.extend_from_slice(&lon.to_le_bytes());
    }
    if let Some(n) = name {
        v.extend_from_slice(n);
    }
    v
}

fn advert_parts(seed: &[u8; 32], timestamp: u32, appdata: &Option<AppDataSpec>) -> AdvertParts {
    let appdata = appdata_by_hand(appdata);
    assert!(appdata.len() <= 32);
    let key = SigningKey::from_bytes(seed);
    let public_key = key.verifying_key().to_bytes();
    let mut msg = public_key.to_vec();
    msg.extend_from_slice(&timestamp.to_le_bytes());
    msg.extend_from_slice(&appdata);
    AdvertParts {
        public_key,
        signature: key.sign(&msg).to_bytes(),
        appdata,
    }
}

/// The view for `spec` and its wire bytes written from the spec's layout tables.
fn view<'a>(spec: &'a Spec, advert: Option<&'a AdvertParts>) -> (Payload<'a>, Vec<u8>) {
    let cat = |parts: &[&[u8]]| parts.concat();
    match spec {
        Spec::Envelope {
            t,
            dest,
            src,
            mac,
            ct,
        } => {
            let e = Envelope {
                dest_hash: *dest,
                src_hash: *src,
                mac: *mac,
                ciphertext: ct,
            };
            let p = match t {
                PayloadType::Req => Payload::Req(e),
                PayloadType::Response => Payload::Response(e),
                PayloadType::TxtMsg => Payload::TxtMsg(e),
                _ => Payload::Path(e),
            };
            (p, cat(&[&[*dest, *src], mac, ct]))
        }
        Spec::Ack { crc, ext } => (
            Payload::Ack(Ack {
                crc: *crc,
                extension: ext,
            }),
            cat(&[crc, ext]),
        ),
        Spec::Advert { timestamp, .. } => {
            let a = advert.unwrap();
            (
                Payload::Advert(Advert {
                    public_key: &a.public_key,
                    timestamp: *timestamp,
                    signature: &a.signature,
                    appdata: &a.appdata,
                }),
                cat(&[
                    &a.public_key,
                    &timestamp.to_le_bytes(),
                    &a.signature,
                    &a.appdata,
                ]),
            )
        }
        Spec::Group { t, hash, mac, ct } => {
            let g = Group {
                channel_hash: *hash,
                mac: *mac,
                ciphertext: ct,
            };
            let p = if *t == PayloadType::GrpTxt {
                Payload::GrpTxt(g)
            } else {
                Payload::GrpData(g)
            };
            (p, cat(&[&[*hash], mac, ct]))
        }
        Spec::AnonReq { dest, key, mac, ct } => (
            Payload::AnonReq(AnonReq {
                dest_hash: *dest,
                sender_pubkey: key,
                mac: *mac,
                ciphertext: ct,
            }),
            cat(&[&[*dest], key, mac, ct]),
        ),
        Spec::Trace {
            tag,
            auth,
            flags,
            route,
        } => (
            Payload::Trace(Trace {
                tag: *tag,
                auth: *auth,
                flags: *flags,
                route,
            }),
            cat(&[&tag.to_le_bytes(), &auth.to_le_bytes(), &[*flags], route]),
        ),
        Spec::Multipart {
            remaining,
            inner,
            body,
        } => (
            Payload::Multipart(Multipart {
                remaining: *remaining,
                inner_type: PayloadType::from_nibble(*inner),
                inner: body,
            }),
            cat(&[&[(remaining << 4) | inner], body]),
        ),
        Spec::DiscoverReq {
            low,
            filter,
            tag,
            since,
        } => {
            let flags = 0x80 | low;
            let since_bytes = since.map(u32::to_le_bytes);
            (
                Payload::Control(Control::DiscoverReq(DiscoverReq {
                    flags,
                    type_filter: *filter,
                    tag: *tag,
                    since: *since,
                    extra: &[],
                })),
                cat(&[
                    &[flags, *filter],
                    &tag.to_le_bytes(),
                    since_bytes.as_ref().map_or(&[][..], |s| &s[..]),
                ]),
            )
        }
        Spec::DiscoverResp { low, snr, tag, key } => {
            let flags = 0x90 | low;
            (
                Payload::Control(Control::DiscoverResp(DiscoverResp {
                    flags,
                    snr: *snr,
                    tag: *tag,
                    public_key: key,
                })),
                cat(&[&[flags, *snr as u8], &tag.to_le_bytes(), key]),
            )
        }
        Spec::ControlOther { flags, body } => (
            Payload::Control(Control::Other {
                flags: *flags,
                body,
            }),
            cat(&[&[*flags], body]),
        ),
        Spec::RawCustom(b) => (Payload::RawCustom(b), b.clone()),
        Spec::Reserved(t, b) => (
            Payload::Reserved(ReservedType::new(*t).unwrap(), b),
            b.clone(),
        ),
    }
}

/// The payload-type nibble the spec assigns to each kind (§1.1).
fn spec_type(spec: &Spec) -> u8 {
    match spec {
        Spec::Envelope { t, .. } | Spec::Group { t, .. } | Spec::Reserved(t, _) => *t as u8,
        Spec::Ack { .. } => 3,
        Spec::Advert { .. } => 4,
        Spec::AnonReq { .. } => 7,
        Spec::Trace { .. } => 9,
        Spec::Multipart { .. } => 10,
        Spec::DiscoverReq { .. } | Spec::DiscoverResp { .. } | Spec::ControlOther { .. } => 11,
        Spec::RawCustom(_) => 15,
    }
}

proptest! {
    #[test]
    fn payload_round_trip(spec in spec(), route in route(), (pl, path) in path()) {
        let advert = match &spec {
            Spec::Advert { seed, timestamp, appdata, .. } => {
                Some(advert_parts(seed, *timestamp, appdata))
            }
            _ => None,
        };
        let (payload, wire) = view(&spec, advert.as_ref());
        prop_assert_eq!(payload.payload_type().value(), spec_type(&spec));
        let mut enc = Vec::new();
        payload.encode(&mut enc);
        prop_assert_eq!(&enc, &wire);
        prop_assert!(enc.len() <= MAX_PAYLOAD);

        let packet = Packet::new(route, payload.payload_type(), pl, &path, &enc).unwrap();
        let frame = packet.to_bytes();
        let decoded = Packet::decode(&frame).unwrap();
        prop_assert_eq!(decoded.payload_type(), payload.payload_type());
        prop_assert_eq!(decoded.payload_bytes(), &enc[..]);
        let got = decoded.payload().unwrap();
        prop_assert_eq!(&got, &payload);
        prop_assert_eq!(got.to_bytes(), enc.clone());

        match (&spec, &got) {
            (Spec::Advert { seed, timestamp, appdata, flip }, Payload::Advert(a)) => {
                let parts = advert.as_ref().unwrap();
                // The crate's signer produces exactly the independently signed payload.
                let mut signed = Vec::new();
                Advert::encode_signed(seed, *timestamp, &parts.appdata, &mut signed);
                prop_assert_eq!(&signed, &enc);
                prop_assert_eq!(public_key_of(seed), parts.public_key);
                prop_assert!(a.verify_signature());
                // Appdata round trip through AppData.
                let expected = appdata.as_ref().map(|(nt, loc, name)| {
                    AppData::new(
                        NodeType::from_nibble(*nt),
                        loc.map(|(lat_raw, lon_raw)| Location { lat_raw, lon_raw }),
                        name.as_deref(),
                    )
                });
                prop_assert_eq!(a.app_data(), expected);
                if let Some(d) = expected {
                    let mut ad = Vec::new();
                    d.encode(&mut ad);
                    prop_assert_eq!(&ad, &parts.appdata);
                    prop_assert_eq!(d.node_type().value(), appdata.as_ref().unwrap().0);
                }
                // Any one changed signed byte (key, timestamp, signature, appdata) breaks it.
                let (at, mask) = flip;
                let i = at.index(enc.len());
                let mut bad = frame.clone();
                bad[frame.len() - enc.len() + i] ^= mask;
                let bad_packet = Packet::decode(&bad).unwrap();
                let Ok(Payload::Advert(bad_advert)) = bad_packet.payload() else {
                    panic!("a flipped advert still decodes");
                };
                prop_assert!(!bad_advert.verify_signature(), "flip {:#04x} at {}", mask, i);
            }
            (Spec::Trace { flags, route, .. }, Payload::Trace(t)) => {
                let width = 1usize << flags;
                prop_assert_eq!(t.hop_size(), width);
                let hops: Vec<&[u8]> = t.hops().collect();
                prop_assert_eq!(hops.len(), route.len() / width);
                prop_assert_eq!(hops.concat(), &route[..route.len() / width * width]);
            }
            (Spec::Multipart { inner, body, .. }, Payload::Multipart(m)) => {
                let ack = m.inner_ack();
                prop_assert_eq!(ack.is_some(), *inner == 3 && body.len() >= 4);
                if let Some(ack) = ack {
                    prop_assert_eq!(&ack.crc[..], &body[..4]);
                }
            }
            (Spec::Ack { ext, .. }, Payload::Ack(a)) => {
                prop_assert_eq!(a.attempt(), ext.first().copied());
                prop_assert_eq!(a.random(), ext.get(1).copied());
            }
            (Spec::ControlOther { flags, .. }, Payload::Control(c)) => {
                // A truncated discovery packet stays `Other` but keeps its subtype name.
                let name = match flags >> 4 {
                    8 => "DISCOVER_REQ",
                    9 => "DISCOVER_RESP",
                    _ => "UNKNOWN",
                };
                prop_assert_eq!(c.subtype_name(), name);
            }
            (Spec::DiscoverReq { .. }, Payload::Control(c)) => {
                prop_assert_eq!(c.subtype_name(), "DISCOVER_REQ");
            }
            (Spec::DiscoverResp { low, .. }, Payload::Control(c @ Control::DiscoverResp(r))) => {
                prop_assert_eq!(c.subtype_name(), "DISCOVER_RESP");
                prop_assert_eq!(r.node_type().value(), *low);
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Group crypto round trip
// ---------------------------------------------------------------------------------------------

/// A C0/DEL/C1 control character other than NUL, tab, LF and CR.
fn control_char() -> impl Strategy<Value = char> {
    let controls: Vec<char> = (1u32..0x20)
        .filter(|c| !matches!(c, 0x09 | 0x0A | 0x0D))
        .chain(0x7F..0xA0)
        .map(|c| char::from_u32(c).unwrap())
        .collect();
    prop::sample::select(controls)
}

/// Text without NUL: printable characters, tabs and newlines, plus `k` other control
/// characters inserted at random places. Returns the text and `k`; at most 150 bytes.
fn channel_text() -> impl Strategy<Value = (String, usize)> {
    let base_char = prop_oneof![
        // Control characters (frequent in `any::<char>()`) are mapped away, not filtered,
        // to avoid proptest's local-reject limit.
        8 => any::<char>().prop_map(|c| if c.is_control() { '\u{2022}' } else { c }),
        1 => prop::sample::select(vec!['\t', '\n', '\r']),
    ];
    (
        vec(base_char, 0..=80),
        vec((control_char(), any::<Index>()), 0..=4),
    )
        .prop_map(|(base, controls)| {
            let mut chars: Vec<char> = Vec::new();
            let mut len = 0;
            for c in base {
                if len + c.len_utf8() > 150 - 4 * 2 {
                    break;
                }
                len += c.len_utf8();
                chars.push(c);
            }
            let k = controls.len();
            for (c, at) in controls {
                chars.insert(at.index(chars.len() + 1), c);
            }
            let s: String = chars.into_iter().collect();
            assert!(s.len() <= 150 && !s.contains('\0'));
            (s, k)
        })
}

/// Checks the group payload against §5 computed directly: channel hash, MAC, AES-128-ECB of
/// the zero-padded plaintext.
fn check_group_crypto(key: &ChannelKey, plaintext: &[u8], payload: &[u8]) {
    use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
    let digest = Sha256::digest(key.as_bytes());
    assert_eq!(payload[0], digest[0], "channel hash");
    let ct = &payload[3..];
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(ct);
    assert_eq!(&payload[1..3], &mac.finalize().into_bytes()[..2], "MAC");
    let mut padded = plaintext.to_vec();
    padded.resize(plaintext.len().div_ceil(16).max(1) * 16, 0);
    let aes_key: [u8; 16] = key.as_bytes()[..16].try_into().unwrap();
    let cipher = aes::Aes128::new(&Array::from(aes_key));
    for block in padded.chunks_exact_mut(16) {
        cipher.encrypt_block(<&mut aes::Block>::try_from(block).unwrap());
    }
    assert_eq!(ct, &padded[..], "AES-128-ECB ciphertext");
}

/// A keyring holding `others` with `target` (if any) inserted at `at`; returns the ring and
/// the target's id.
fn keyring(
    others: &[ChannelKey],
    target: Option<(&ChannelKey, Index)>,
) -> (Keyring, Option<meshcore::crypto::ChannelId>) {
    let mut ring = Keyring::with_public();
    let at = target.map(|(_, i)| i.index(others.len() + 1));
    let mut id = None;
    for i in 0..=others.len() {
        if at == Some(i) {
            let (k, _) = target.unwrap();
            id = Some(ring.add(Channel::new("target", k.clone())));
        }
        if let Some(k) = others.get(i) {
            ring.add(Channel::new(format!("other{i}"), k.clone()));
        }
    }
    (ring, id)
}

/// Encrypts `plaintext` with `key`, frames it, decodes the frame and returns what keyrings
/// with and without the key make of it.
fn encrypt_frame_decrypt(
    t: PayloadType,
    key: &ChannelKey,
    others: &[ChannelKey],
    at: Index,
    plaintext: &[u8],
    route: Route,
    (pl, path): (PathLen, Vec<u8>),
) -> Option<Vec<u8>> {
    let channel = Channel::new("target", key.clone());
    let mut payload = Vec::new();
    channel.encrypt_into(plaintext, &mut payload);
    assert!(payload.len() <= MAX_PAYLOAD);
    check_group_crypto(key, plaintext, &payload);

    let frame = Packet::new(route, t, pl, &path, &payload)
        .unwrap()
        .to_bytes();
    let packet = Packet::decode(&frame).unwrap();
    let group = match packet.payload().unwrap() {
        Payload::GrpTxt(g) if t == PayloadType::GrpTxt => g,
        Payload::GrpData(g) if t == PayloadType::GrpData => g,
        p => panic!("decoded as {p:?}"),
    };
    assert_eq!(group.channel_hash, key.channel_hash());

    // Without the key: never decrypted.
    let others: Vec<ChannelKey> = others.iter().filter(|k| *k != key).cloned().collect();
    let (without, _) = keyring(&others, None);
    assert_eq!(
        without.decrypt(t, &group),
        None,
        "decrypted without the key"
    );

    // The channel alone decrypts it, but not under another channel hash or with a corrupted
    // MAC, and neither does a keyring holding the key.
    let (with, id) = keyring(&others, Some((key, at)));
    let padded = channel
        .decrypt(&group)
        .expect("the channel decrypts its own message");
    let mut bad = group;
    bad.channel_hash ^= 0x01;
    assert_eq!(channel.decrypt(&bad), None, "accepted another channel hash");
    assert_eq!(with.decrypt(t, &bad), None, "accepted another channel hash");
    let mut bad = group;
    bad.mac[0] ^= 0x01;
    assert_eq!(channel.decrypt(&bad), None, "accepted a bad MAC");
    assert_eq!(with.decrypt(t, &bad), None, "accepted a bad MAC");

    let found = with.decrypt(t, &group)?;
    assert_eq!(found.plaintext, padded);
    assert_eq!(Some(found.channel), id);
    assert_eq!(with.get(found.channel).unwrap().key(), key);
    assert_eq!(with.get(found.channel).unwrap().name(), "target");
    // The plaintext keeps its zero padding to a whole block.
    assert_eq!(
        found.plaintext.len(),
        plaintext.len().div_ceil(16).max(1) * 16
    );
    assert_eq!(&found.plaintext[..plaintext.len()], plaintext);
    assert!(found.plaintext[plaintext.len()..].iter().all(|b| *b == 0));
    Some(found.plaintext)
}

proptest! {
    #[test]
    fn group_text_crypto_round_trip(
        key in channel_key(),
        others in vec(channel_key(), 0..=4),
        at in any::<Index>(),
        timestamp in any::<u32>(),
        flags in any::<u8>(),
        (text, controls) in channel_text(),
        route in route(),
        path in path(),
    ) {
        let mut plain = Vec::new();
        GroupText { timestamp, flags, text: &text }.encode(&mut plain);
        let mut by_hand = timestamp.to_le_bytes().to_vec();
        by_hand.push(flags);
        by_hand.extend_from_slice(text.as_bytes());
        prop_assert_eq!(&plain, &by_hand);

        let found =
            encrypt_frame_decrypt(PayloadType::GrpTxt, &key, &others, at, &plain, route, path);
        // §5.4: a plaintext with more than two control characters (besides tab/CR/LF) is
        // not considered a message.
        prop_assert_eq!(found.is_some(), controls <= 2, "{} control characters", controls);
        if let Some(plaintext) = found {
            let t = GroupText::decode(&plaintext).unwrap();
            prop_assert_eq!(t.timestamp, timestamp);
            prop_assert_eq!(t.flags, flags);
            prop_assert_eq!(t.text, text.as_str());
        }
    }

    #[test]
    fn group_data_crypto_round_trip(
        key in channel_key(),
        others in vec(channel_key(), 0..=4),
        at in any::<Index>(),
        data_type in any::<u16>(),
        data in bytes(165),
        route in route(),
        path in path(),
    ) {
        let mut plain = Vec::new();
        GroupData { data_type, data: &data }.encode(&mut plain);
        let mut by_hand = data_type.to_le_bytes().to_vec();
        by_hand.push(data.len() as u8);
        by_hand.extend_from_slice(&data);
        prop_assert_eq!(&plain, &by_hand);

        let found =
            encrypt_frame_decrypt(PayloadType::GrpData, &key, &others, at, &plain, route, path);
        let plaintext = found.expect("GRP_DATA with the right key decrypts");
        let d = GroupData::decode(&plaintext).unwrap();
        prop_assert_eq!(d.data_type, data_type);
        prop_assert_eq!(d.data, &data[..]);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Robustness: the report and the exhaustive sweep
// ---------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn report_never_panics_and_reports_stable_errors(
        frame in prop_oneof![bytes(300), valid_frame()],
    ) {
        // Built per case on purpose: cheap, and keeps the test independent of shared state.
        let opts = DecodeOptions::default();
        let v = decode_to_json(&frame, &opts);
        let o = v.as_object().expect("an object");
        let valid = o.get("valid").and_then(|v| v.as_bool()).expect("a boolean `valid`");
        let model = framing_model(&frame);
        prop_assert_eq!(valid, model.is_ok());
        prop_assert_eq!(valid, Packet::decode(&frame).is_ok());
        if valid {
            let (path_start, payload_start) = model.unwrap();
            let t = (frame[0] >> 2) & 0x0F;
            let plb = frame[path_start - 1];
            prop_assert_eq!(&o["payload_type"], &serde_json::json!(t));
            prop_assert_eq!(&o["payload_type_name"], &serde_json::json!(TYPE_NAMES[usize::from(t)]));
            prop_assert_eq!(&o["route_type"], &serde_json::json!(frame[0] & 3));
            prop_assert_eq!(&o["path_len_byte"], &serde_json::json!(plb));
            prop_assert_eq!(&o["hop_count"], &serde_json::json!(plb & 63));
            prop_assert_eq!(&o["payload_len"], &serde_json::json!(frame.len() - payload_start));
            let hash = hash_oracle(t, plb, &frame[payload_start..]);
            prop_assert_eq!(o["packet_hash"].as_str(), Some(hash.as_str()));
            if let Some(e) = o.get("payload_error") {
                prop_assert_eq!(&e["code"], "too_short");
                prop_assert!(frame.len() - payload_start < min_payload_len(t));
            }
        } else {
            let code = o.get("error").and_then(|e| e.as_str()).expect("an error code");
            prop_assert!(FRAME_ERRORS.contains(&code), "unknown error code {}", code);
            prop_assert_eq!(Err(code), model);
            prop_assert_eq!(&o["frame_len"], &serde_json::json!(frame.len()));
        }
    }
}

/// §8.1: every header × every path-length byte × 0..=19 trailing bytes (after the transport
/// codes on transport routes, and also without them), through framing and payload decoding.
#[test]
fn exhaustive_header_path_len_sweep() {
    let mut buf = [0u8; 1 + 4 + 1 + 19];
    let (mut frames, mut ok) = (0usize, 0usize);
    let mut counts = [0usize; FRAME_ERRORS.len()];
    for header in 0..=255u8 {
        let transport = matches!(header & 3, 0 | 3);
        for plb in 0..=255u8 {
            for with_codes in [false, true] {
                if with_codes && !transport {
                    continue;
                }
                buf[0] = header;
                let mut i = 1;
                if with_codes {
                    buf[1..5].copy_from_slice(&[0xFA, 0x1A, header, plb]);
                    i = 5;
                }
                buf[i] = plb;
                let prefix = i + 1;
                for (k, b) in buf[prefix..].iter_mut().enumerate() {
                    *b = (k as u8).wrapping_mul(0x25) ^ header ^ plb.rotate_left(3);
                }
                // Every length up to the prefix (truncated frames) plus 0..=19 trailing bytes.
                for len in 0..=prefix + 19 {
                    let frame = &buf[..len];
                    frames += 1;
                    match (Packet::decode(frame), framing_model(frame)) {
                        (Ok(p), Ok((path_start, payload_start))) => {
                            ok += 1;
                            assert_eq!(p.header().to_byte(), header);
                            assert_eq!(p.path_len().to_byte(), frame[path_start - 1]);
                            assert_eq!(p.path(), &frame[path_start..payload_start]);
                            assert_eq!(p.payload_bytes(), &frame[payload_start..]);
                            assert_eq!(p.to_bytes(), frame);
                            let t = p.payload_type().value();
                            check_payload(t, p.payload_bytes(), &p.payload());
                        }
                        (Err(e), Err(code)) => {
                            assert_eq!(e.kind.code(), code, "frame {frame:02x?}");
                            assert_eq!(e.header.map(|h| h.to_byte()), frame.first().copied());
                            let slot = FRAME_ERRORS.iter().position(|c| *c == code).unwrap();
                            counts[slot] += 1;
                        }
                        (got, want) => {
                            panic!("frame {frame:02x?}: got {got:?}, spec says {want:?}")
                        }
                    }
                }
            }
        }
    }
    // Every error but payload_too_long (unreachable with ≤ 19 trailing bytes) shows up.
    assert!(counts[..5].iter().all(|c| *c > 0), "{counts:?}");
    assert!(ok > 0 && frames > 1_300_000, "{ok} of {frames}");
}

// ---------------------------------------------------------------------------------------------
// 5. Hex parsing
// ---------------------------------------------------------------------------------------------

/// Hex for `data` with a random case per digit and whitespace inserted at random places,
/// plus `extra` (inserted at a random place) for the error cases.
fn messy_hex(
    data: &[u8],
    upper: &[bool],
    spaces: &[(Index, char)],
    extra: Option<(Index, char)>,
) -> String {
    let mut chars: Vec<char> = hex::encode(data)
        .chars()
        .zip(upper.iter().cycle())
        .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
        .collect();
    for (at, ws) in spaces {
        chars.insert(at.index(chars.len() + 1), *ws);
    }
    if let Some((at, c)) = extra {
        chars.insert(at.index(chars.len() + 1), c);
    }
    chars.into_iter().collect()
}

fn whitespace() -> impl Strategy<Value = char> {
    prop::sample::select(vec![' ', '\t', '\n', '\r'])
}

proptest! {
    #[test]
    fn parse_hex_round_trip(
        data in bytes(300),
        upper in vec(any::<bool>(), 1..=600),
        spaces in vec((any::<Index>(), whitespace()), 0..=12),
        odd_digit in prop::sample::select(b"0123456789abcdefABCDEF".to_vec()),
        bad in prop_oneof![
            // Near misses first: letters just past `f`, punctuation, `0x` prefixes' `x`.
            3 => prop::sample::select(b"gGhHxXzZ:-,.;_/#+=|\\\"'".to_vec()).prop_map(char::from),
            1 => any::<char>(),
        ]
        .prop_map(|c| if c.is_ascii_hexdigit() || c.is_ascii_whitespace() { 'g' } else { c }),
        at in any::<Index>(),
    ) {
        let s = messy_hex(&data, &upper, &spaces, None);
        prop_assert_eq!(parse_hex(&s), Ok(data.clone()));

        // One digit too many: odd length.
        let odd = messy_hex(&data, &upper, &spaces, Some((at, char::from(odd_digit))));
        prop_assert_eq!(parse_hex(&odd), Err(HexError::OddLength));
        prop_assert_eq!(HexError::OddLength.code(), "odd_hex_length");

        // One character that is neither a hex digit nor whitespace: not hex.
        let not_hex = messy_hex(&data, &upper, &spaces, Some((at, bad)));
        prop_assert_eq!(parse_hex(&not_hex), Err(HexError::NotHex));
        prop_assert_eq!(HexError::NotHex.code(), "bad_hex");
    }
}
