//! Arbitrary bytes through every decoding layer of `meshcore`: framing, payload, packet hash,
//! path hops, channel decryption, advert signatures and the JSON report. Besides "never
//! panics", checks invariants that must hold for every input.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use meshcore::crypto::Keyring;
use meshcore::region::Regions;
use meshcore::report::{DecodeOptions, decode_to_json, parse_hex};
use meshcore::{
    MAX_FRAME, MAX_PATH_BYTES, MAX_PAYLOAD, Packet, PathLen, Payload, PayloadError, PayloadType,
    Route,
};
use serde_json::Value;

/// Public and the hashtag channels that occur in the seed corpus, one region, signatures on.
static OPTS: LazyLock<DecodeOptions> = LazyLock::new(|| {
    let mut keyring = Keyring::with_public();
    for tag in ["#test", "#wardriving", "#bot"] {
        keyring.add_hashtag(tag);
    }
    let mut regions = Regions::new();
    regions.add("#ottawa");
    DecodeOptions {
        keyring,
        regions,
        verify_signatures: true,
    }
});

fn upper_hex(data: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(data.len() * 3);
    for (i, b) in data.iter().enumerate() {
        // Whitespace between bytes must be tolerated by the hex parser.
        if i % 7 == 6 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02X}");
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let opts = &*OPTS;

    // Hex parsing round-trips.
    assert_eq!(parse_hex(&upper_hex(data)).as_deref(), Ok(data));

    let json = decode_to_json(data, opts);
    let Value::Object(obj) = &json else {
        panic!("report is not an object: {json}")
    };
    let valid = obj.get("valid").and_then(Value::as_bool);
    assert!(valid.is_some(), "`valid` is not a bool: {json}");
    assert!(serde_json::to_string(&json).is_ok());

    let packet = match Packet::decode(data) {
        Err(e) => {
            assert_eq!(valid, Some(false));
            assert_eq!(
                obj.get("error").and_then(Value::as_str),
                Some(e.kind.code())
            );
            assert_eq!(e.header.is_none(), data.is_empty());
            if let (Some(h), Some(&b)) = (e.header, data.first()) {
                assert_eq!(h.to_byte(), b);
            }
            return;
        }
        Ok(p) => p,
    };
    assert_eq!(valid, Some(true), "{json}");

    // Framing: lengths within limits, and the frame re-encodes to exactly the input.
    assert!(data.len() <= MAX_FRAME);
    assert!(packet.payload_bytes().len() <= MAX_PAYLOAD);
    assert_eq!(packet.path().len(), packet.path_len().byte_len());
    assert!(packet.path().len() <= MAX_PATH_BYTES);
    assert_eq!(packet.header().to_byte(), data[0]);
    assert_eq!(packet.encoded_len(), data.len());
    assert_eq!(packet.to_bytes(), data);
    let rebuilt = Packet::new(
        packet.route(),
        packet.payload_type(),
        packet.path_len(),
        packet.path(),
        packet.payload_bytes(),
    )
    .map(|p| p.with_version(packet.version()));
    assert_eq!(rebuilt, Some(packet));
    assert_eq!(
        packet.route().transport_codes().is_some(),
        packet.route_type().has_transport_codes()
    );

    // Path hops: whole entries of the hash size covering the path, none for TRACE.
    let hops: Vec<&[u8]> = packet.path_hops().collect();
    if packet.payload_type() == PayloadType::Trace {
        assert!(hops.is_empty());
    } else {
        assert_eq!(hops.len(), usize::from(packet.hop_count()));
        assert!(
            hops.iter()
                .all(|h| h.len() == packet.path_len().hash_size().bytes())
        );
        assert_eq!(hops.concat(), packet.path());
    }

    // Packet hash: ignores route, version, transport codes and path (except TRACE's length).
    let hash = packet.hash();
    assert_eq!(
        obj.get("packet_hash").and_then(Value::as_str),
        Some(hash.to_string().as_str())
    );
    if packet.payload_type() != PayloadType::Trace {
        let bare = Packet::new(
            Route::Flood,
            packet.payload_type(),
            PathLen::ZERO,
            &[],
            packet.payload_bytes(),
        );
        assert_eq!(bare.map(|p| p.hash()), Some(hash));
    }
    assert_eq!(
        obj.get("hop_count").and_then(Value::as_u64),
        Some(u64::from(packet.hop_count()))
    );
    assert_eq!(
        obj.get("payload_len").and_then(Value::as_u64),
        Some(packet.payload_bytes().len() as u64)
    );
    assert_eq!(
        obj.get("payload_type").and_then(Value::as_u64),
        Some(u64::from(packet.payload_type().value()))
    );

    // Payload: the type is kept and the bytes re-encode exactly.
    let payload = match packet.payload() {
        Err(e) => {
            let PayloadError::TooShort {
                payload_type,
                need,
                got,
            } = e;
            assert_eq!(payload_type, packet.payload_type());
            assert_eq!(got, packet.payload_bytes().len());
            assert!(got < need);
            assert!(obj.contains_key("payload_error"), "{json}");
            return;
        }
        Ok(p) => p,
    };
    assert_eq!(payload.payload_type(), packet.payload_type());
    let encoded = payload.to_bytes();
    assert_eq!(encoded, packet.payload_bytes());

    match &payload {
        Payload::Advert(a) => {
            assert_eq!(
                obj.get("signature_valid").and_then(Value::as_bool),
                Some(a.verify_signature())
            );
        }
        Payload::GrpTxt(g) | Payload::GrpData(g) => {
            let decrypted = opts.keyring.decrypt(packet.payload_type(), g);
            assert_eq!(
                obj.get("decrypted").and_then(Value::as_bool),
                Some(decrypted.is_some())
            );
            if let Some(d) = decrypted {
                let channel = opts
                    .keyring
                    .get(d.channel)
                    .expect("channel id from keyring");
                assert_eq!(
                    obj.get("channel").and_then(Value::as_str),
                    Some(channel.name())
                );
                // Re-encrypting the (padded) plaintext gives back the exact payload.
                let mut again = Vec::new();
                channel.encrypt_into(&d.plaintext, &mut again);
                assert_eq!(again, packet.payload_bytes());
            }
        }
        Payload::Trace(t) => {
            assert_eq!(
                obj.get("hops_completed").and_then(Value::as_u64),
                Some(packet.path().len() as u64)
            );
            assert_eq!(t.hops().count(), t.route.len() / t.hop_size());
        }
        _ => {}
    }
});
