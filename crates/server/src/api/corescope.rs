//! CoreScope's shapes of a decoded packet, built from meshlens's own decode report (the flat
//! object of `meshcore::report`), so CoreScope's web app and scripts read what they expect
//! beside meshlens's richer keys.
//!
//! CoreScope splits a decode in three: `header` (`routeType`, `routeTypeName`,
//! `payloadType`, `payloadTypeName`, `payloadVersion`), `path` (`hashSize`, `hashCount`,
//! `hops`, and `hopsCompleted` on a TRACE) and `payload` (camelCase fields per payload type,
//! with `type` naming it, `CHAN` for a decrypted group text). Its stored `decoded_json` is
//! that payload serialized to a string and `path_json` the hops serialized to a string, hops
//! in uppercase hex. Every function here only reads the report: a malformed or partial report
//! gives fewer keys, never a panic.

use serde_json::{Map, Value, json};

/// A string field of the report.
fn s<'a>(d: &'a Value, k: &str) -> Option<&'a str> {
    d.get(k).and_then(Value::as_str)
}

/// An integer field of the report.
fn n(d: &Value, k: &str) -> Option<i64> {
    d.get(k).and_then(Value::as_i64)
}

/// The hop list of the report, uppercase as CoreScope writes hops. On a TRACE CoreScope's
/// path is the route the trace asks for (its payload), not the SNR bytes the header carries.
fn hops(d: &Value) -> Vec<Value> {
    let key = if is_trace(d) && d.get("trace_hops").is_some() {
        "trace_hops"
    } else {
        "path"
    };
    d.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|h| h.to_ascii_uppercase().into())
                .collect()
        })
        .unwrap_or_default()
}

fn is_trace(d: &Value) -> bool {
    s(d, "payload_type_name") == Some("TRACE")
}

/// `header`: what the first byte says.
pub fn header(d: &Value) -> Value {
    json!({
        "routeType": d.get("route_type").cloned().unwrap_or(Value::Null),
        "routeTypeName": d.get("route_type_name").cloned().unwrap_or(Value::Null),
        "payloadType": d.get("payload_type").cloned().unwrap_or(Value::Null),
        "payloadTypeName": payload_type_name(d),
        "payloadVersion": d.get("payload_version").cloned().unwrap_or(Value::Null),
    })
}

/// The payload type's name as CoreScope's header gives it (`UNKNOWN` when the frame did not
/// even have a header).
fn payload_type_name(d: &Value) -> Value {
    match (s(d, "payload_type_name"), n(d, "payload_type")) {
        (Some(name), _) => name.into(),
        (None, Some(t)) => format!("UNK({t})").into(),
        (None, None) => "UNKNOWN".into(),
    }
}

/// `path`: hash size, hop count and hops (on a TRACE: the route asked for, and how many
/// hops completed).
pub fn path(d: &Value) -> Value {
    let hops = hops(d);
    let mut o = Map::new();
    let trace = is_trace(d);
    let size = if trace {
        n(d, "trace_hash_size")
    } else {
        n(d, "hash_size")
    };
    // A direct packet with no hops has no meaningful hash size: CoreScope says 0.
    let direct = matches!(n(d, "route_type"), Some(2 | 3));
    let size = if direct && !trace && hops.is_empty() {
        Some(0)
    } else {
        size
    };
    o.insert("hashSize".into(), size.unwrap_or(0).into());
    o.insert("hashCount".into(), hops.len().into());
    o.insert("hops".into(), hops.into());
    if trace && let Some(c) = n(d, "hops_completed") {
        o.insert("hopsCompleted".into(), c.into());
    }
    Value::Object(o)
}

/// `transportCodes`: the two codes as uppercase hex of their wire bytes, or null.
pub fn transport_codes(d: &Value) -> Value {
    match d.get("transport_codes_hex").and_then(Value::as_array) {
        Some(c) if c.len() == 2 => json!({
            "code1": c[0].as_str().unwrap_or_default().to_ascii_uppercase(),
            "code2": c[1].as_str().unwrap_or_default().to_ascii_uppercase(),
        }),
        _ => Value::Null,
    }
}

/// `path_json`: the hops as a JSON-encoded string (`"[]"` without any).
pub fn path_json(d: &Value) -> String {
    Value::Array(hops(d)).to_string()
}

/// `decoded_json`: the payload object as a JSON-encoded string.
pub fn decoded_json(d: &Value) -> String {
    payload(d).to_string()
}

/// Copies report key `from` to payload key `to` when present.
fn copy(o: &mut Map<String, Value>, d: &Value, from: &str, to: &str) {
    if let Some(v) = d.get(from).filter(|v| !v.is_null()) {
        o.insert(to.into(), v.clone());
    }
}

/// `payload`: CoreScope's per-type fields.
pub fn payload(d: &Value) -> Value {
    let mut o = Map::new();
    let name = s(d, "payload_type_name").unwrap_or("UNKNOWN");
    o.insert("type".into(), name.into());
    if d.get("valid") == Some(&Value::Bool(false)) {
        copy(&mut o, d, "error", "error");
        return Value::Object(o);
    }
    if let Some(e) = d.get("payload_error") {
        o.insert(
            "error".into(),
            e.get("message").cloned().unwrap_or(Value::Null),
        );
        copy(&mut o, d, "payload_raw", "raw");
        return Value::Object(o);
    }
    match name {
        "REQ" | "RESPONSE" | "TXT_MSG" => {
            copy(&mut o, d, "dest_hash", "destHash");
            copy(&mut o, d, "src_hash", "srcHash");
            copy(&mut o, d, "mac", "mac");
            copy(&mut o, d, "ciphertext", "encryptedData");
        }
        "PATH" => {
            copy(&mut o, d, "dest_hash", "destHash");
            copy(&mut o, d, "src_hash", "srcHash");
            copy(&mut o, d, "mac", "mac");
            copy(&mut o, d, "ciphertext", "pathData");
        }
        "ANON_REQ" => {
            copy(&mut o, d, "dest_hash", "destHash");
            copy(&mut o, d, "sender_pubkey", "ephemeralPubKey");
            copy(&mut o, d, "mac", "mac");
            copy(&mut o, d, "ciphertext", "encryptedData");
        }
        "ACK" => {
            if let Some(crc) = n(d, "ack_crc_u32") {
                o.insert("extraHash".into(), format!("{crc:08x}").into());
            }
            copy(&mut o, d, "ack_len", "ackLen");
            copy(&mut o, d, "ack_attempt", "ackAttempt");
            copy(&mut o, d, "ack_rand", "ackRand");
        }
        "ADVERT" => advert(d, &mut o),
        "GRP_TXT" | "GRP_DATA" => group(d, name, &mut o),
        "TRACE" => {
            copy(&mut o, d, "trace_tag", "tag");
            copy(&mut o, d, "trace_auth", "authCode");
            copy(&mut o, d, "trace_flags", "traceFlags");
            let route: String = d
                .get("trace_hops")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !route.is_empty() {
                o.insert("pathData".into(), route.into());
            }
            if let Some(snr) = d
                .get("snr_db")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
            {
                o.insert("snrValues".into(), Value::Array(snr.clone()));
            }
        }
        "MULTIPART" => {
            copy(&mut o, d, "remaining", "remaining");
            copy(&mut o, d, "inner_type", "innerType");
            copy(&mut o, d, "inner_ack_crc", "innerAckCrc");
            copy(&mut o, d, "inner", "innerPayload");
        }
        "CONTROL" => {
            if let Some(f) = n(d, "ctrl_flags") {
                o.insert("ctrlFlags".into(), format!("{f:02x}").into());
            }
            copy(&mut o, d, "ctrl_subtype", "ctrlSubtype");
            copy(&mut o, d, "type_filter", "ctrlFilter");
            copy(&mut o, d, "tag", "ctrlTag");
            copy(&mut o, d, "since", "ctrlSince");
            copy(&mut o, d, "node_type", "ctrlNodeType");
            copy(&mut o, d, "snr_raw", "ctrlSNR");
            copy(&mut o, d, "pubkey", "ctrlPubKey");
        }
        _ => {
            if let Some(raw) = s(d, "raw") {
                o.insert("rawLength".into(), (raw.len() / 2).into());
                if let Some(first) = raw.get(..2) {
                    o.insert("firstByteTag".into(), first.into());
                }
                o.insert("raw".into(), raw.into());
            }
        }
    }
    Value::Object(o)
}

fn advert(d: &Value, o: &mut Map<String, Value>) {
    copy(o, d, "pubkey", "pubKey");
    copy(o, d, "timestamp", "timestamp");
    if let Some(t) = n(d, "timestamp") {
        o.insert("timestampISO".into(), store::time::iso(t * 1000).into());
    }
    copy(o, d, "signature", "signature");
    copy(o, d, "signature_valid", "signatureValid");
    if let Some(raw) = n(d, "flags") {
        let kind = raw & 0x0f;
        o.insert(
            "flags".into(),
            json!({
                "raw": raw,
                "type": kind,
                "chat": kind == 1,
                "repeater": kind == 2,
                "room": kind == 3,
                "sensor": kind == 4,
                "hasLocation": raw & 0x10 != 0,
                "hasFeat1": raw & 0x20 != 0,
                "hasFeat2": raw & 0x40 != 0,
                "hasName": raw & 0x80 != 0,
            }),
        );
    }
    copy(o, d, "lat", "lat");
    copy(o, d, "lon", "lon");
    copy(o, d, "name", "name");
    copy(o, d, "feat1", "feat1");
    copy(o, d, "feat2", "feat2");
}

fn group(d: &Value, name: &str, o: &mut Map<String, Value>) {
    let hash = s(d, "channel_hash").and_then(|h| u8::from_str_radix(h, 16).ok());
    let decrypted = d.get("decrypted") == Some(&Value::Bool(true));
    let pt = d.get("plaintext").unwrap_or(&Value::Null);
    if decrypted && name == "GRP_TXT" {
        o.insert("type".into(), "CHAN".into());
    }
    if decrypted {
        copy(o, d, "channel", "channel");
    }
    // Go's omitempty drops a zero channel hash; so does CoreScope's JSON.
    if let Some(h) = hash.filter(|h| *h != 0) {
        o.insert("channelHash".into(), h.into());
    }
    if let Some(h) = hash {
        o.insert("channelHashHex".into(), format!("{h:02X}").into());
    }
    o.insert(
        "decryptionStatus".into(),
        if decrypted {
            "decrypted"
        } else {
            "decryption_failed"
        }
        .into(),
    );
    if !decrypted {
        copy(o, d, "mac", "mac");
        copy(o, d, "ciphertext", "encryptedData");
        return;
    }
    if name == "GRP_TXT" {
        copy(o, pt, "sender", "sender");
        copy(o, pt, "text", "text");
        copy(o, pt, "timestamp", "sender_timestamp");
    } else {
        copy(o, pt, "data_type", "dataType");
        copy(o, pt, "data_len", "dataLen");
        copy(o, pt, "data", "decryptedBlob");
    }
}

/// The decode as CoreScope's `POST /api/decode` and live feed give it: meshlens's flat report
/// with `header`, `path` (replacing meshlens's hop list, which stays in `path_hops`),
/// `payload` and `transportCodes` added.
pub fn decoded_object(d: &Value) -> Value {
    let mut v = d.clone();
    if let Some(o) = v.as_object_mut() {
        if let Some(hops) = o.remove("path") {
            o.insert("path_hops".into(), hops);
        }
        o.insert("header".into(), header(d));
        o.insert("path".into(), path(d));
        o.insert("payload".into(), payload(d));
        o.insert("transportCodes".into(), transport_codes(d));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshcore::report::{DecodeOptions, decode_to_json, parse_hex};

    #[test]
    fn a_hostile_report_gives_fewer_keys_never_a_panic() {
        for d in [
            Value::Null,
            json!([]),
            json!({"valid": false, "error": "too_short"}),
            json!({"payload_type_name": "TRACE", "trace_hops": [1, null]}),
            json!({"payload_type_name": "GRP_TXT", "channel_hash": "zz"}),
            json!({"transport_codes_hex": ["01"]}),
        ] {
            let _ = (
                header(&d),
                path(&d),
                payload(&d),
                path_json(&d),
                transport_codes(&d),
                decoded_object(&d),
            );
        }
    }

    #[test]
    fn a_short_frame_still_names_its_type() {
        let d = decode_to_json(&parse_hex("11").unwrap(), &DecodeOptions::default());
        assert_eq!(payload(&d)["type"], "UNKNOWN");
        assert_eq!(path_json(&d), "[]");
    }
}
