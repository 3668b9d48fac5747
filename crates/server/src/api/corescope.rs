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

/// `decoded_json`: the payload object as a JSON-encoded string. Serialized straight from
/// the report's values, without building the object first: this runs for every row of a
/// packet page.
pub fn decoded_json(d: &Value) -> String {
    fields(d).to_json_string()
}

/// `payload`: CoreScope's per-type fields.
pub fn payload(d: &Value) -> Value {
    fields(d).into_value()
}

/// A payload field: borrowed from the report, or computed.
enum Field<'a> {
    Ref(&'a Value),
    Own(Value),
}

/// CoreScope's payload object as an ordered list of fields, most borrowed from the report.
struct Fields<'a>(Vec<(&'static str, Field<'a>)>);

impl<'a> Fields<'a> {
    /// Report key `from` as payload key `to`, when present and not null.
    fn copy(&mut self, d: &'a Value, from: &str, to: &'static str) {
        if let Some(v) = d.get(from).filter(|v| !v.is_null()) {
            self.0.push((to, Field::Ref(v)));
        }
    }

    /// A computed field, replacing one of the same name.
    fn set(&mut self, to: &'static str, v: impl Into<Value>) {
        let v = Field::Own(v.into());
        match self.0.iter_mut().find(|(k, _)| *k == to) {
            Some(slot) => slot.1 = v,
            None => self.0.push((to, v)),
        }
    }

    fn into_value(self) -> Value {
        let mut o = Map::new();
        for (k, v) in self.0 {
            let v = match v {
                Field::Ref(v) => v.clone(),
                Field::Own(v) => v,
            };
            o.insert(k.into(), v);
        }
        Value::Object(o)
    }
}

impl Fields<'_> {
    /// The object as JSON text. Keys are this module's own ASCII names, so they need no
    /// escaping; values are written by serde_json.
    fn to_json_string(&self) -> String {
        let mut out: Vec<u8> = Vec::with_capacity(256);
        out.push(b'{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
            let v = match v {
                Field::Ref(v) => *v,
                Field::Own(v) => v,
            };
            // Writing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, v);
        }
        out.push(b'}');
        String::from_utf8(out).unwrap_or_else(|_| "{}".into())
    }
}

fn fields(d: &Value) -> Fields<'_> {
    let mut o = Fields(Vec::with_capacity(12));
    let name = s(d, "payload_type_name").unwrap_or("UNKNOWN");
    o.set("type", name);
    if d.get("valid") == Some(&Value::Bool(false)) {
        o.copy(d, "error", "error");
        return o;
    }
    if let Some(e) = d.get("payload_error") {
        o.set("error", e.get("message").cloned().unwrap_or(Value::Null));
        o.copy(d, "payload_raw", "raw");
        return o;
    }
    match name {
        "REQ" | "RESPONSE" | "TXT_MSG" => {
            o.copy(d, "dest_hash", "destHash");
            o.copy(d, "src_hash", "srcHash");
            o.copy(d, "mac", "mac");
            o.copy(d, "ciphertext", "encryptedData");
        }
        "PATH" => {
            o.copy(d, "dest_hash", "destHash");
            o.copy(d, "src_hash", "srcHash");
            o.copy(d, "mac", "mac");
            o.copy(d, "ciphertext", "pathData");
        }
        "ANON_REQ" => {
            o.copy(d, "dest_hash", "destHash");
            o.copy(d, "sender_pubkey", "ephemeralPubKey");
            o.copy(d, "mac", "mac");
            o.copy(d, "ciphertext", "encryptedData");
        }
        "ACK" => {
            if let Some(crc) = n(d, "ack_crc_u32") {
                o.set("extraHash", format!("{crc:08x}"));
            }
            o.copy(d, "ack_len", "ackLen");
            o.copy(d, "ack_attempt", "ackAttempt");
            o.copy(d, "ack_rand", "ackRand");
        }
        "ADVERT" => advert(d, &mut o),
        "GRP_TXT" | "GRP_DATA" => group(d, name, &mut o),
        "TRACE" => {
            o.copy(d, "trace_tag", "tag");
            o.copy(d, "trace_auth", "authCode");
            o.copy(d, "trace_flags", "traceFlags");
            let route: String = d
                .get("trace_hops")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !route.is_empty() {
                o.set("pathData", route);
            }
            if let Some(snr) = d
                .get("snr_db")
                .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
            {
                o.0.push(("snrValues", Field::Ref(snr)));
            }
        }
        "MULTIPART" => {
            o.copy(d, "remaining", "remaining");
            o.copy(d, "inner_type", "innerType");
            o.copy(d, "inner_ack_crc", "innerAckCrc");
            o.copy(d, "inner", "innerPayload");
        }
        "CONTROL" => {
            if let Some(f) = n(d, "ctrl_flags") {
                o.set("ctrlFlags", format!("{f:02x}"));
            }
            o.copy(d, "ctrl_subtype", "ctrlSubtype");
            o.copy(d, "type_filter", "ctrlFilter");
            o.copy(d, "tag", "ctrlTag");
            o.copy(d, "since", "ctrlSince");
            o.copy(d, "node_type", "ctrlNodeType");
            o.copy(d, "snr_raw", "ctrlSNR");
            o.copy(d, "pubkey", "ctrlPubKey");
        }
        _ => {
            if let Some(raw) = s(d, "raw") {
                o.set("rawLength", raw.len() / 2);
                if let Some(first) = raw.get(..2) {
                    o.set("firstByteTag", first);
                }
                o.copy(d, "raw", "raw");
            }
        }
    }
    o
}

fn advert<'a>(d: &'a Value, o: &mut Fields<'a>) {
    o.copy(d, "pubkey", "pubKey");
    o.copy(d, "timestamp", "timestamp");
    if let Some(t) = n(d, "timestamp") {
        o.set("timestampISO", store::time::iso(t.saturating_mul(1000)));
    }
    o.copy(d, "signature", "signature");
    o.copy(d, "signature_valid", "signatureValid");
    if let Some(raw) = n(d, "flags") {
        let kind = raw & 0x0f;
        o.set(
            "flags",
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
    o.copy(d, "lat", "lat");
    o.copy(d, "lon", "lon");
    o.copy(d, "name", "name");
    o.copy(d, "feat1", "feat1");
    o.copy(d, "feat2", "feat2");
}

fn group<'a>(d: &'a Value, name: &str, o: &mut Fields<'a>) {
    let hash = s(d, "channel_hash").and_then(|h| u8::from_str_radix(h, 16).ok());
    let decrypted = d.get("decrypted") == Some(&Value::Bool(true));
    let pt = d.get("plaintext").unwrap_or(&Value::Null);
    if decrypted && name == "GRP_TXT" {
        o.set("type", "CHAN");
    }
    if decrypted {
        o.copy(d, "channel", "channel");
    }
    // Go's omitempty drops a zero channel hash; so does CoreScope's JSON.
    if let Some(h) = hash.filter(|h| *h != 0) {
        o.set("channelHash", h);
    }
    if let Some(h) = hash {
        o.set("channelHashHex", format!("{h:02X}"));
    }
    o.set(
        "decryptionStatus",
        if decrypted {
            "decrypted"
        } else {
            "decryption_failed"
        },
    );
    if !decrypted {
        o.copy(d, "mac", "mac");
        o.copy(d, "ciphertext", "encryptedData");
        return;
    }
    if name == "GRP_TXT" {
        o.copy(pt, "sender", "sender");
        o.copy(pt, "text", "text");
        o.copy(pt, "timestamp", "sender_timestamp");
    } else {
        o.copy(pt, "data_type", "dataType");
        o.copy(pt, "data_len", "dataLen");
        o.copy(pt, "data", "decryptedBlob");
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
    fn the_string_and_the_object_agree() {
        let opts = DecodeOptions::default();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors");
        let lines = std::fs::read_to_string(dir.join("packets.jsonl")).unwrap();
        for l in lines.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            let d = decode_to_json(&parse_hex(v["hex"].as_str().unwrap()).unwrap(), &opts);
            let text: Value = serde_json::from_str(&decoded_json(&d)).unwrap();
            assert_eq!(text, payload(&d), "{}", v["name"]);
        }
    }

    #[test]
    fn a_short_frame_still_names_its_type() {
        let d = decode_to_json(&parse_hex("11").unwrap(), &DecodeOptions::default());
        assert_eq!(payload(&d)["type"], "UNKNOWN");
        assert_eq!(path_json(&d), "[]");
    }
}
