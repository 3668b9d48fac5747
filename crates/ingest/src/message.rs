//! MQTT messages from observers, as meshcoretomqtt and its relatives publish them
//! (wire-format.md §7), parsed leniently: any key case, numbers as JSON numbers or strings with
//! units, every RF field optional, the uploader's `"unknown"` placeholder read as absent.
//! Pure functions; every rejection has a stable reason code, and a field that makes no sense
//! is dropped, never an error.

use serde_json::{Map, Value};

/// Largest payload accepted; a real packet message is under 1 KiB.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Longest airtime taken as real: a 255-byte frame at the slowest LoRa settings MeshCore
/// uses is seconds on air, so a longer `duration` is garbage and dropped.
pub const MAX_AIRTIME_MS: i64 = 600_000;

/// How far ahead of its arrival a status' own time may be (clock skew) and still be used.
pub const MAX_CLOCK_AHEAD_MS: i64 = 15 * 60_000;

/// Furthest a zone-less envelope time may be from its arrival and still be read as local time
/// (UTC offsets run from -12 h to +14 h, plus the clock tolerance); further is garbage.
pub const MAX_NAIVE_OFFSET_MS: i64 = 14 * 3_600_000 + MAX_CLOCK_AHEAD_MS;

/// Noise floors outside this range (dBm) are not a radio's reading.
pub const NOISE_FLOOR_DBM: std::ops::RangeInclusive<f64> = -200.0..=50.0;

/// Counters and cumulative seconds above this are not real.
pub const MAX_COUNTER: i64 = 1_000_000_000_000;

/// Battery voltages above this (mV) are not a battery's.
pub const MAX_BATTERY_MV: i64 = 100_000;

/// How old a status' own time may be and still be used: a retained status can be months old,
/// a year is past any observer meshlens should describe from it.
pub const MAX_STATUS_AGE_MS: i64 = 365 * 86_400_000;

/// Why a message was not taken. `code()` names the counter it increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    /// Payload over [`MAX_PAYLOAD_BYTES`].
    #[error("payload too large")]
    TooLarge,
    /// Not `meshcore/<IATA>/<observer>/<kind>`, or an id that is not an id.
    #[error("unexpected topic")]
    BadTopic,
    /// A topic meshlens does not ingest (debug, client, companion bridge…).
    #[error("topic ignored")]
    IgnoredTopic,
    /// Not UTF-8 JSON, or nested too deeply.
    #[error("not JSON")]
    NotJson,
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotObject,
    /// A packet message without a `raw` string.
    #[error("no raw field")]
    NoRaw,
    /// `raw` is not hex.
    #[error("raw is not hex")]
    BadHex,
    /// A `direction: tx` record: it repeats the last *received* frame (§7), so it is not a
    /// new observation.
    #[error("tx record")]
    TxRecord,
}

impl Refusal {
    /// Stable counter name.
    pub const fn code(self) -> &'static str {
        match self {
            Refusal::TooLarge => "too_large",
            Refusal::BadTopic => "bad_topic",
            Refusal::IgnoredTopic => "ignored_topic",
            Refusal::NotJson => "not_json",
            Refusal::NotObject => "not_object",
            Refusal::NoRaw => "no_raw",
            Refusal::BadHex => "bad_hex",
            Refusal::TxRecord => "tx_record",
        }
    }

    /// All refusals, for counters.
    pub const ALL: [Refusal; 8] = [
        Refusal::TooLarge,
        Refusal::BadTopic,
        Refusal::IgnoredTopic,
        Refusal::NotJson,
        Refusal::NotObject,
        Refusal::NoRaw,
        Refusal::BadHex,
        Refusal::TxRecord,
    ];
}

/// An observer as named by its topic: lowercase id, uppercase IATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicObserver {
    /// The id segment, lowercased (normally a 64-hex public key).
    pub id: String,
    /// The IATA segment, uppercased.
    pub iata: String,
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// One received frame, and the envelope's `timestamp` when it had a readable one.
    Packet(PacketMessage, Option<SentAt>),
    /// Observer status.
    Status(StatusMessage),
}

/// A `/packets` message.
#[derive(Debug, Clone, PartialEq)]
pub struct PacketMessage {
    /// From the topic.
    pub observer: TopicObserver,
    /// `origin`: the observer's name.
    pub origin: Option<String>,
    /// `region`, which wins over the topic's IATA.
    pub region: Option<String>,
    /// The frame.
    pub raw: Vec<u8>,
    /// dB.
    pub snr: Option<f64>,
    /// dBm.
    pub rssi: Option<f64>,
    /// Reception score.
    pub score: Option<i64>,
    /// `duration`: the frame's airtime as the firmware estimated it (its `time=`), ms.
    pub airtime_ms: Option<i64>,
}

/// A status' own `timestamp`, Unix ms, as the uploader wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentAt {
    /// ISO 8601 with a zone (meshcoretomqtt: `2026-03-28T01:17:14.086123+00:00`), or Unix
    /// seconds or milliseconds: an instant.
    Instant(i64),
    /// ISO 8601 without a zone, read as UTC. Older uploaders wrote their local time this way,
    /// so it may be off by the observer's UTC offset.
    Naive(i64),
}

impl SentAt {
    /// The time to use for a status received at `received_at`, or None when it makes no
    /// sense: more than [`MAX_CLOCK_AHEAD_MS`] in the future or [`MAX_STATUS_AGE_MS`] in the
    /// past. A naive time is only believed within [`MAX_CLOCK_AHEAD_MS`] of its arrival
    /// either way: further off it is more likely a UTC offset than the truth.
    pub fn plausible(self, received_at: i64) -> Option<i64> {
        let ahead = MAX_CLOCK_AHEAD_MS.unsigned_abs();
        match self {
            SentAt::Instant(ms) => (ms <= received_at.saturating_add(MAX_CLOCK_AHEAD_MS)
                && ms >= received_at.saturating_sub(MAX_STATUS_AGE_MS))
            .then_some(ms),
            SentAt::Naive(ms) => (ms.abs_diff(received_at) <= ahead).then_some(ms),
        }
    }

    /// What this time says about the sender's clock, for a message received at
    /// `received_at`: the offset when it is an instant within a year of the arrival or a
    /// zone-less time within [`MAX_CLOCK_AHEAD_MS`] of it (read as UTC, as CoreScope does); a
    /// naive reading when a zone-less time is further off but within
    /// [`MAX_NAIVE_OFFSET_MS`] (local time without its zone, not a wrong clock); None beyond.
    pub fn clock_reading(self, received_at: i64) -> Option<store::ClockReading> {
        match self {
            SentAt::Instant(ms) => {
                let d = ms.checked_sub(received_at)?;
                (d.unsigned_abs() <= MAX_STATUS_AGE_MS.unsigned_abs())
                    .then_some(store::ClockReading::Offset(d))
            }
            SentAt::Naive(ms) => {
                let d = ms.checked_sub(received_at)?;
                let abs = d.unsigned_abs();
                if abs <= MAX_CLOCK_AHEAD_MS.unsigned_abs() {
                    Some(store::ClockReading::Offset(d))
                } else if abs <= MAX_NAIVE_OFFSET_MS.unsigned_abs() {
                    Some(store::ClockReading::Naive(d))
                } else {
                    None
                }
            }
        }
    }
}

/// A `/status` message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusMessage {
    /// From the topic (None only in tests).
    pub observer: Option<TopicObserver>,
    /// `origin`.
    pub origin: Option<String>,
    /// `status`.
    pub status: Option<String>,
    /// `timestamp`: when the uploader wrote the message.
    pub sent_at: Option<SentAt>,
    /// `model` (absent when the uploader sent `"unknown"`).
    pub model: Option<String>,
    /// `firmware` or `firmware_version` (absent when `"unknown"`).
    pub firmware: Option<String>,
    /// `client_version` or `clientVersion`.
    pub client_version: Option<String>,
    /// `radio` (absent when `"unknown"`).
    pub radio: Option<String>,
    /// From `stats` or the top level.
    pub battery_mv: Option<i64>,
    /// Seconds.
    pub uptime_secs: Option<i64>,
    /// dBm.
    pub noise_floor: Option<f64>,
    /// Seconds.
    pub tx_air_secs: Option<i64>,
    /// Seconds.
    pub rx_air_secs: Option<i64>,
    /// Count.
    pub recv_errors: Option<i64>,
    /// Packets in the firmware's transmit queue (stats-core `queue_len`).
    pub queue_len: Option<i64>,
    /// The firmware's error flags (stats-core `errors`, sent as `debug_flags`).
    pub debug_flags: Option<i64>,
    /// Stats present but impossible (a negative counter, a noise floor of +300 dBm, a battery
    /// of a megavolt), dropped and counted here.
    pub implausible: u32,
}

/// Parses one MQTT publish.
pub fn parse(topic: &str, payload: &[u8]) -> Result<Message, Refusal> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Refusal::TooLarge);
    }
    let mut seg = topic.split('/');
    let (Some(root), Some(iata), Some(id), Some(kind), None) =
        (seg.next(), seg.next(), seg.next(), seg.next(), seg.next())
    else {
        return Err(Refusal::BadTopic);
    };
    if root != "meshcore" {
        return Err(Refusal::BadTopic);
    }
    // Companion-bridge, mobile-client and debug topics are not observer packets.
    if matches!(iata, "client" | "message") || !matches!(kind, "packets" | "status") {
        return Err(Refusal::IgnoredTopic);
    }
    let observer = TopicObserver {
        id: clean_id(id).ok_or(Refusal::BadTopic)?,
        iata: clean_iata(iata).ok_or(Refusal::BadTopic)?,
    };
    let value: Value = serde_json::from_slice(payload).map_err(|_| Refusal::NotJson)?;
    let Value::Object(obj) = value else {
        return Err(Refusal::NotObject);
    };
    if kind == "status" {
        return Ok(Message::Status(status(observer, &obj)));
    }
    if get_str(&obj, "direction").is_some_and(|d| d.eq_ignore_ascii_case("tx")) {
        return Err(Refusal::TxRecord);
    }
    let raw = get_str(&obj, "raw")
        .filter(|s| !s.trim().is_empty())
        .ok_or(Refusal::NoRaw)?;
    let raw = meshcore::report::parse_hex(raw).map_err(|_| Refusal::BadHex)?;
    let sent_at = get(&obj, "timestamp").and_then(sent_at);
    Ok(Message::Packet(
        PacketMessage {
            observer,
            origin: get_text(&obj, "origin"),
            region: get_str(&obj, "region").and_then(clean_iata),
            raw,
            snr: get_f64(&obj, "snr"),
            rssi: get_f64(&obj, "rssi"),
            score: get_f64(&obj, "score").map(|v| v as i64),
            airtime_ms: get_f64(&obj, "duration")
                .map(|v| v as i64)
                .filter(|v| (0..=MAX_AIRTIME_MS).contains(v)),
        },
        sent_at,
    ))
}

fn status(observer: TopicObserver, obj: &Map<String, Value>) -> StatusMessage {
    let stats = get(obj, "stats").and_then(Value::as_object);
    // Stats may be nested under `stats` or at the top level.
    let stat_i = |k: &str| {
        stats
            .and_then(|s| get_f64(s, k))
            .or_else(|| get_f64(obj, k))
            .map(|v| v as i64)
    };
    let stat_f = |k: &str| {
        stats
            .and_then(|s| get_f64(s, k))
            .or_else(|| get_f64(obj, k))
    };
    // A value present but impossible is dropped and counted.
    let mut implausible = 0u32;
    let mut keep = |v: Option<i64>, ok: &dyn Fn(i64) -> bool| match v {
        Some(x) if !ok(x) => {
            implausible += 1;
            None
        }
        v => v,
    };
    // Counts, flags and cumulative seconds are never negative, nor past 10¹² (32,000 years of
    // uptime): a JSON 1e30 saturates to i64::MAX, which is no count.
    let non_negative = |v: i64| (0..=MAX_COUNTER).contains(&v);
    let battery_mv = keep(stat_i("battery_mv"), &|v| (0..=MAX_BATTERY_MV).contains(&v));
    let uptime_secs = keep(stat_i("uptime_secs"), &non_negative);
    let tx_air_secs = keep(stat_i("tx_air_secs"), &non_negative);
    let rx_air_secs = keep(stat_i("rx_air_secs"), &non_negative);
    let recv_errors = keep(stat_i("recv_errors"), &non_negative);
    let queue_len = keep(stat_i("queue_len"), &non_negative);
    let debug_flags = keep(stat_i("debug_flags"), &non_negative);
    let noise_floor = match stat_f("noise_floor") {
        Some(v) if !NOISE_FLOOR_DBM.contains(&v) => {
            implausible += 1;
            None
        }
        v => v,
    };
    StatusMessage {
        observer: Some(observer),
        origin: get_text(obj, "origin"),
        status: get_text(obj, "status"),
        sent_at: get(obj, "timestamp").and_then(sent_at),
        model: get_known_text(obj, "model"),
        firmware: get_known_text(obj, "firmware_version")
            .or_else(|| get_known_text(obj, "firmware")),
        client_version: get_text(obj, "client_version").or_else(|| get_text(obj, "clientVersion")),
        radio: get_known_text(obj, "radio"),
        battery_mv,
        uptime_secs,
        noise_floor,
        tx_air_secs,
        rx_air_secs,
        recv_errors,
        queue_len,
        debug_flags,
        implausible,
    }
}

/// A `timestamp`: a JSON number or numeric string (Unix seconds below 10¹¹, else
/// milliseconds; fractions allowed), or ISO 8601 with or without a zone. Anything else: None.
fn sent_at(v: &Value) -> Option<SentAt> {
    let from_number = |n: f64| {
        let ms = if n.abs() < 1e11 { n * 1000.0 } else { n };
        // `as` saturates; an absurd value is caught by `SentAt::plausible`.
        n.is_finite().then_some(SentAt::Instant(ms.round() as i64))
    };
    match v {
        Value::Number(n) => from_number(n.as_f64()?),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<f64>() {
                return from_number(n);
            }
            let ms = store::time::parse_time(s)?;
            // parse_time accepted it, so past the date (10 bytes) only a zone holds these.
            let zoned = s
                .get(10..)
                .is_some_and(|t| t.contains(['Z', 'z', '+', '-']));
            Some(if zoned {
                SentAt::Instant(ms)
            } else {
                SentAt::Naive(ms)
            })
        }
        _ => None,
    }
}

/// A key looked up case-insensitively (`SNR`, `snr`, `Snr`…).
fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn get_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    get(obj, key)?.as_str()
}

/// Free text from the mesh, bounded and without control characters. Still untrusted:
/// whoever displays it escapes it.
fn get_text(obj: &Map<String, Value>, key: &str) -> Option<String> {
    let s = match get(obj, key)? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let cleaned: String = s.chars().filter(|c| !c.is_control()).take(128).collect();
    let cleaned = cleaned.trim();
    (!cleaned.is_empty()).then(|| cleaned.to_owned())
}

/// [`get_text`], except that the uploader's placeholder for "could not read it" (`unknown`,
/// any case) is absent rather than a value.
fn get_known_text(obj: &Map<String, Value>, key: &str) -> Option<String> {
    get_text(obj, key).filter(|s| !s.eq_ignore_ascii_case("unknown"))
}

/// A number from a JSON number or a string such as `"-110dBm"`, `"7.5 dB"`, `"11"`.
fn get_f64(obj: &Map<String, Value>, key: &str) -> Option<f64> {
    let v = match get(obj, key)? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => leading_number(s)?,
        _ => return None,
    };
    v.is_finite().then_some(v)
}

fn leading_number(s: &str) -> Option<f64> {
    let s = s.trim();
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || ((c == '-' || c == '+') && i == 0)))
        .map_or(s.len(), |(i, _)| i);
    s.get(..end)?.parse().ok()
}

fn clean_id(id: &str) -> Option<String> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| id.to_ascii_lowercase())
}

fn clean_iata(s: &str) -> Option<String> {
    let s = s.trim();
    let ok =
        (1..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then(|| s.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "meshcore/sea/ABCDEF0123/packets";

    fn packet(payload: &str) -> PacketMessage {
        match parse(T, payload.as_bytes()).unwrap() {
            Message::Packet(p, _) => p,
            m => panic!("{m:?}"),
        }
    }

    #[test]
    fn meshcoretomqtt_packet() {
        let p = packet(
            r#"{"origin":"Obs 1","origin_id":"x","timestamp":"2026-03-28T01:17:14.086123",
            "type":"PACKET","direction":"rx","len":"10","packet_type":"3","route":"F",
            "raw":"0D04B891647EBB40BA70","SNR":"11","RSSI":"-92","score":"1000","hash":"X"}"#,
        );
        assert_eq!(p.observer.id, "abcdef0123");
        assert_eq!(p.observer.iata, "SEA");
        assert_eq!(p.origin.as_deref(), Some("Obs 1"));
        assert_eq!(p.raw.len(), 10);
        assert_eq!(
            (p.snr, p.rssi, p.score),
            (Some(11.0), Some(-92.0), Some(1000))
        );
    }

    #[test]
    fn lenient_fields() {
        let p =
            packet(r#"{"raw":"0d04b891647ebb40ba70","snr":-7.5,"Rssi":"-110dBm","region":"yow"}"#);
        assert_eq!((p.snr, p.rssi, p.score), (Some(-7.5), Some(-110.0), None));
        assert_eq!(p.region.as_deref(), Some("YOW"));
        let p =
            packet(r#"{"raw":"0D04B891647EBB40BA70","SNR":"7dB","RSSI":null,"origin":"a\u0000b"}"#);
        assert_eq!((p.snr, p.rssi), (Some(7.0), None));
        assert_eq!(p.origin.as_deref(), Some("ab"));
        assert_eq!(leading_number(" +3.25 dB"), Some(3.25));
        assert_eq!(leading_number("dB"), None);
    }

    #[test]
    fn refusals() {
        let r = |topic: &str, payload: &[u8]| parse(topic, payload).unwrap_err();
        assert_eq!(r(T, &vec![b' '; MAX_PAYLOAD_BYTES + 1]), Refusal::TooLarge);
        assert_eq!(r("meshcore/sea/x", b"{}"), Refusal::BadTopic);
        assert_eq!(r("other/sea/x/packets", b"{}"), Refusal::BadTopic);
        assert_eq!(r("meshcore/sea/x y/packets", b"{}"), Refusal::BadTopic);
        assert_eq!(r("meshcore/sea/x/debug", b"{}"), Refusal::IgnoredTopic);
        assert_eq!(r("meshcore/client/x/packets", b"{}"), Refusal::IgnoredTopic);
        assert_eq!(r(T, b"not json"), Refusal::NotJson);
        assert_eq!(r(T, b"[1]"), Refusal::NotObject);
        assert_eq!(r(T, br#"{"snr":1}"#), Refusal::NoRaw);
        assert_eq!(r(T, br#"{"raw":""}"#), Refusal::NoRaw);
        assert_eq!(r(T, br#"{"raw":"XYZ"}"#), Refusal::BadHex);
        assert_eq!(
            r(T, br#"{"raw":"0D04","direction":"tx"}"#),
            Refusal::TxRecord
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(r(T, deep.as_bytes()), Refusal::NotJson);
    }

    #[test]
    fn status_nested_or_top_level() {
        let topic = "meshcore/SEA/abc/status";
        let m = parse(
            topic,
            br#"{"status":"online","model":"T-Beam","firmware_version":"1.14.0",
                "client_version":"meshcoretomqtt/1.0.8.0","radio":"910.525,62.5,7,5",
                "stats":{"battery_mv":"4100","uptime_secs":99,"noise_floor":"-112.5dBm"}}"#,
        )
        .unwrap();
        let Message::Status(s) = m else { panic!() };
        assert_eq!(s.firmware.as_deref(), Some("1.14.0"));
        assert_eq!(
            (s.battery_mv, s.uptime_secs, s.noise_floor),
            (Some(4100), Some(99), Some(-112.5))
        );
        let Message::Status(s) =
            parse(topic, br#"{"battery_mv":3900,"clientVersion":"x"}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (s.battery_mv, s.client_version.as_deref()),
            (Some(3900), Some("x"))
        );
    }

    fn status_of(payload: &str) -> StatusMessage {
        match parse("meshcore/SEA/abc/status", payload.as_bytes()).unwrap() {
            Message::Status(s) => s,
            m => panic!("{m:?}"),
        }
    }

    #[test]
    fn unknown_model_firmware_and_radio_are_absent() {
        // What meshcoretomqtt sends when it could not read the device.
        let s = status_of(
            r#"{"status":"online","radio":"unknown","model":"UNKNOWN","firmware_version":"Unknown",
                "client_version":"meshcoretomqtt/1.0.8.0"}"#,
        );
        assert_eq!((s.model, s.firmware, s.radio), (None, None, None));
        assert_eq!(s.client_version.as_deref(), Some("meshcoretomqtt/1.0.8.0"));
        let s = status_of(r#"{"firmware_version":"unknown","firmware":"1.9.0"}"#);
        assert_eq!(s.firmware.as_deref(), Some("1.9.0"));
        // Only the placeholder itself: a value that merely contains the word is kept.
        let s = status_of(r#"{"model":"unknown board v2"}"#);
        assert_eq!(s.model.as_deref(), Some("unknown board v2"));
    }

    #[test]
    fn packet_duration_is_airtime() {
        let p = packet(r#"{"raw":"0D04B891647EBB40BA70","duration":"123"}"#);
        assert_eq!(p.airtime_ms, Some(123));
        let p = packet(r#"{"raw":"0D04B891647EBB40BA70","Duration":57.9}"#);
        assert_eq!(p.airtime_ms, Some(57));
        for bad in [r#""-5""#, r#""x""#, "1e12", "null", r#"{"a":1}"#] {
            let p = packet(&format!(
                r#"{{"raw":"0D04B891647EBB40BA70","duration":{bad}}}"#
            ));
            assert_eq!(p.airtime_ms, None, "{bad}");
        }
        assert_eq!(packet(r#"{"raw":"0D04B891647EBB40BA70"}"#).airtime_ms, None);
    }

    #[test]
    fn status_timestamp_queue_and_debug_flags() {
        // meshcoretomqtt: stats-core `errors` arrive as `debug_flags` inside `stats`.
        let s = status_of(
            r#"{"status":"online","timestamp":"2026-03-28T01:17:14.086123+00:00",
                "stats":{"battery_mv":4100,"queue_len":3,"debug_flags":4}}"#,
        );
        let at = store::time::parse_time("2026-03-28T01:17:14.086Z").unwrap();
        assert_eq!(s.sent_at, Some(SentAt::Instant(at)));
        assert_eq!((s.queue_len, s.debug_flags), (Some(3), Some(4)));
        // At the top level, as strings.
        let s = status_of(r#"{"queue_len":"0","debug_flags":"12","timestamp":1774660634}"#);
        assert_eq!((s.queue_len, s.debug_flags), (Some(0), Some(12)));
        assert_eq!(s.sent_at, Some(SentAt::Instant(1_774_660_634_000)));
        // Other forms: zone offsets, naive ISO, milliseconds, fractional seconds.
        let sent = |v: &str| status_of(&format!(r#"{{"timestamp":{v}}}"#)).sent_at;
        assert_eq!(
            sent(r#""2026-03-28T03:17:14.086+02:00""#),
            Some(SentAt::Instant(at))
        );
        assert_eq!(
            sent(r#""2026-03-28T01:17:14.086Z""#),
            Some(SentAt::Instant(at))
        );
        assert_eq!(
            sent(r#""2026-03-28T01:17:14.086123""#),
            Some(SentAt::Naive(at))
        );
        assert_eq!(
            sent("1774660634086"),
            Some(SentAt::Instant(1_774_660_634_086))
        );
        assert_eq!(
            sent("1774660634.086"),
            Some(SentAt::Instant(1_774_660_634_086))
        );
        assert_eq!(
            sent(r#""1774660634""#),
            Some(SentAt::Instant(1_774_660_634_000))
        );
        for bad in [
            r#""""#,
            r#""soon""#,
            r#""NaN""#,
            "true",
            "[1]",
            r#""2026-13-01""#,
        ] {
            assert_eq!(sent(bad), None, "{bad}");
        }
        // Hostile numbers never panic; negative counts are dropped.
        let s = status_of(r#"{"timestamp":1e300,"queue_len":-1,"stats":{"debug_flags":"-3"}}"#);
        assert_eq!((s.queue_len, s.debug_flags), (None, None));
        assert_eq!(s.sent_at.and_then(|t| t.plausible(1_774_660_634_000)), None);
    }

    #[test]
    fn status_times_far_from_their_arrival_are_ignored() {
        let now = 1_774_660_634_000;
        let min = 60_000;
        let instant = |t: i64| SentAt::Instant(t).plausible(now);
        let naive = |t: i64| SentAt::Naive(t).plausible(now);
        assert_eq!(instant(now - 5 * min), Some(now - 5 * min));
        // A retained status may be old; a year is the limit.
        let old = now - 200 * 86_400_000;
        assert_eq!(instant(old), Some(old));
        assert_eq!(instant(now - MAX_STATUS_AGE_MS - 1), None);
        // Slightly fast clocks pass (the writer clamps them), far future does not.
        assert_eq!(instant(now + 10 * min), Some(now + 10 * min));
        assert_eq!(instant(now + 16 * min), None);
        assert_eq!(instant(i64::MAX), None);
        assert_eq!(instant(i64::MIN), None);
        // Naive local time hours off UTC is not believed either way.
        assert_eq!(naive(now - 5 * min), Some(now - 5 * min));
        assert_eq!(naive(now - 7 * 60 * min), None);
        assert_eq!(naive(now + 2 * 60 * min), None);
        assert_eq!(naive(i64::MIN), None);
    }

    #[test]
    fn clock_readings_of_envelope_times() {
        use store::ClockReading::{Naive, Offset};
        let now = 1_774_660_634_000;
        let min = 60_000;
        assert_eq!(
            SentAt::Instant(now + 90_000).clock_reading(now),
            Some(Offset(90_000))
        );
        assert_eq!(
            SentAt::Instant(now - 40 * 86_400_000).clock_reading(now),
            Some(Offset(-3_456_000_000))
        );
        assert_eq!(
            SentAt::Instant(now + 400 * 86_400_000).clock_reading(now),
            None
        );
        // Zone-less: near is a reading (as UTC), hours off is local time, days off is garbage.
        assert_eq!(
            SentAt::Naive(now - 5 * min).clock_reading(now),
            Some(Offset(-5 * min))
        );
        assert_eq!(
            SentAt::Naive(now + 120 * min).clock_reading(now),
            Some(Naive(120 * min))
        );
        assert_eq!(
            SentAt::Naive(now - 8 * 60 * min).clock_reading(now),
            Some(Naive(-8 * 60 * min))
        );
        assert_eq!(SentAt::Naive(now + 20 * 60 * min).clock_reading(now), None);
        for t in [i64::MIN, i64::MAX] {
            assert_eq!(SentAt::Instant(t).clock_reading(now), None);
            assert_eq!(SentAt::Naive(t).clock_reading(now), None);
        }
        // A packet's envelope time travels with it.
        let Message::Packet(_, sent) = parse(
            T,
            br#"{"raw":"0D04B891647EBB40BA70","timestamp":"2026-03-28T01:17:14.086123"}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert!(matches!(sent, Some(SentAt::Naive(_))));
    }

    #[test]
    fn impossible_stats_are_dropped_and_counted() {
        let s = status_of(
            r#"{"stats":{"noise_floor":999,"battery_mv":-5,"tx_air_secs":-1,"rx_air_secs":"12",
                "recv_errors":1e30,"uptime_secs":60}}"#,
        );
        assert_eq!(
            (s.noise_floor, s.battery_mv, s.tx_air_secs),
            (None, None, None)
        );
        assert_eq!((s.rx_air_secs, s.uptime_secs), (Some(12), Some(60)));
        assert_eq!(s.recv_errors, None);
        assert_eq!(s.implausible, 4);
        let s = status_of(r#"{"stats":{"noise_floor":-120.5,"battery_mv":4200}}"#);
        assert_eq!(
            (s.noise_floor, s.battery_mv, s.implausible),
            (Some(-120.5), Some(4200), 0)
        );
    }
}
