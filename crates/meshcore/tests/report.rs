//! The JSON report on frames the vectors do not contain, built from real vector frames: an
//! advert with appdata bytes past the signed 32, and TRACE frames whose path-length byte has
//! hash-size bits set. Set `MESHLENS_VECTORS` to use another copy of the vectors.

use std::path::PathBuf;

use meshcore::report::{DecodeOptions, breakdown, decode_to_json, parse_hex};
use serde_json::{Value, json};

fn vectors_dir() -> PathBuf {
    let dir = std::env::var_os("MESHLENS_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors")
        });
    assert!(
        dir.join("packets.jsonl").is_file(),
        "test vectors not found at {} (set MESHLENS_VECTORS)",
        dir.display()
    );
    dir
}

/// The named vector: its frame and its expected report.
fn vector(name: &str) -> (Vec<u8>, Value) {
    let text = std::fs::read_to_string(vectors_dir().join("packets.jsonl")).unwrap();
    let v: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"));
    (
        parse_hex(v["hex"].as_str().unwrap()).unwrap(),
        v["expect"].clone(),
    )
}

fn report(frame: &[u8]) -> Value {
    decode_to_json(frame, &DecodeOptions::default())
}

/// A real advert whose appdata is exactly the 32 signed bytes: anything appended to it is
/// outside the signature, which stays valid.
const ADVERT_32B: &str = "advert_flood_ww7str_exact_32b_appdata";

#[test]
fn an_advert_reports_its_signed_name_and_the_unsigned_tail_apart() {
    let (real, expect) = vector(ADVERT_32B);
    assert_eq!(
        report(&real)["unsigned_tail"],
        Value::Null,
        "none on the real frame"
    );
    let tail = b" \xe2\x9c\x85 verified admin";
    let mut frame = real.clone();
    frame.extend_from_slice(tail);
    let r = report(&frame);
    assert_eq!(r["valid"], true, "{r}");
    assert_eq!(r["signature_valid"], true, "{r}");
    // The advert says what its signed bytes say, nothing more.
    for key in [
        "name",
        "name_bytes",
        "name_valid_utf8",
        "flags",
        "node_type",
        "lat_raw",
        "lon_raw",
        "pubkey",
        "timestamp",
    ] {
        assert_eq!(r[key], expect[key], "{key}: {r}");
    }
    assert_eq!(r["name"], "WW7STR/PugetMesh Cougar");
    assert_eq!(r["unsigned_tail"], hex::encode(tail));
    // `appdata` stays the wire bytes.
    assert_eq!(
        r["appdata"],
        format!(
            "{}{}",
            expect["appdata"].as_str().unwrap(),
            hex::encode(tail)
        )
    );

    // The tail is outside the signature: changing it changes neither validity nor the name.
    let mut changed = frame.clone();
    *changed.last_mut().unwrap() ^= 0x20;
    let c = report(&changed);
    assert_eq!(c["signature_valid"], true);
    assert_eq!(c["name"], r["name"]);
    assert_ne!(c["unsigned_tail"], r["unsigned_tail"]);
    // A signed byte still matters.
    let mut signed = frame.clone();
    signed[real.len() - 1] ^= 0x20;
    assert_eq!(report(&signed)["signature_valid"], false);

    // The byte view labels the tail too, after the signed appdata.
    let ranges = breakdown(&frame);
    let last = ranges.last().unwrap();
    assert_eq!(
        (last.start, last.end, last.label.as_str()),
        (real.len(), frame.len(), "unsigned_tail")
    );
    let appdata = &ranges[ranges.len() - 2];
    assert_eq!(
        (appdata.end, appdata.label.as_str()),
        (real.len(), "appdata")
    );
    assert_eq!(breakdown(&real).last().unwrap().label, "appdata");
}

/// A real TRACE with 4 SNR samples over a 5-hop route, its path-length byte given hash-size
/// bits (`0x04` → `size_bits | 0x04`) and the path grown to what framing then reserves.
fn trace_with_size_bits(size_bits: u8) -> (Vec<u8>, Value) {
    let (real, expect) = vector("trace_direct_4snr_5hops");
    assert_eq!(real[1], 0x04, "header, path-length byte, 4 SNRs, payload");
    let hash_size = usize::from(size_bits >> 6) + 1;
    let mut frame = vec![real[0], size_bits | 0x04];
    frame.extend_from_slice(&real[2..6]);
    // Bytes framing reserves for hop_count × size but no hop appended.
    frame.extend(std::iter::repeat_n(0x7f, 4 * (hash_size - 1)));
    frame.extend_from_slice(&real[6..]);
    (frame, expect)
}

#[test]
fn a_trace_with_hash_size_bits_counts_hops_by_the_low_six_bits_and_says_so() {
    let (real, expect) = vector("trace_direct_4snr_5hops");
    let r = report(&real);
    assert_eq!(r["hops_completed"], 4);
    assert_eq!(r["trace_complete"], false);
    assert_eq!(
        r["anomaly"],
        Value::Null,
        "a well-formed TRACE has no anomaly"
    );
    assert_eq!(r["anomalies"], Value::Null);

    for size_bits in [0x40, 0x80] {
        let (frame, _) = trace_with_size_bits(size_bits);
        let t = report(&frame);
        assert_eq!(t["valid"], true, "{t}");
        assert_eq!(t["path_len_byte"], size_bits | 0x04);
        assert_eq!(t["hops_completed"], 4, "path_len & 63: {t}");
        assert_eq!(t["snr_raw"], expect["snr_raw"], "{t}");
        assert_eq!(t["snr_db"], expect["snr_db"], "{t}");
        // 4 one-byte hops answered of a 5-hop route: not complete, whatever the size bits.
        assert_eq!(t["trace_complete"], false, "{t}");
        assert_eq!(t["trace_hops"], expect["trace_hops"]);
        assert_eq!(t["anomaly"], "trace_path_hash_bits", "{t}");
        assert_eq!(t["anomalies"], json!(["trace_path_hash_bits"]));
    }

    // Sent as FLOOD as well: both anomalies, the route one first (as before this flag).
    let (mut frame, _) = trace_with_size_bits(0x40);
    frame[0] = (frame[0] & !0x03) | 0x01;
    let t = report(&frame);
    assert_eq!(t["route_type_name"], "FLOOD");
    assert_eq!(t["hops_completed"], 4);
    assert_eq!(t["anomaly"], "trace_not_direct");
    assert_eq!(
        t["anomalies"],
        json!(["trace_not_direct", "trace_path_hash_bits"])
    );
}

/// The byte view of every corpus frame and of the long advert: in order, contiguous, covering
/// the whole frame; real adverts have no unsigned tail.
#[test]
fn breakdown_covers_every_frame_in_order() {
    let corpus = std::fs::read_to_string(vectors_dir().join("corpus.txt")).unwrap();
    let (mut long_advert, _) = vector(ADVERT_32B);
    long_advert.extend_from_slice(b"tail");
    let frames: Vec<Vec<u8>> = corpus
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse_hex(l).unwrap())
        .chain([long_advert])
        .collect();
    assert!(frames.len() > 500);
    let mut tails = 0;
    for frame in &frames {
        let ranges = breakdown(frame);
        let ctx = hex::encode(frame);
        assert_eq!(ranges.first().unwrap().start, 0, "{ctx}");
        assert_eq!(ranges.last().unwrap().end, frame.len(), "{ctx}");
        assert!(
            ranges.windows(2).all(|w| w[0].end == w[1].start),
            "{ctx}: {ranges:?}"
        );
        assert!(ranges.iter().all(|r| r.start < r.end), "{ctx}: {ranges:?}");
        tails += ranges.iter().filter(|r| r.label == "unsigned_tail").count();
    }
    assert_eq!(tails, 1, "only the long advert has an unsigned tail");
}

#[test]
fn the_byte_view_of_a_trace_with_hash_size_bits_labels_only_real_samples_as_snr() {
    let (frame, _) = trace_with_size_bits(0x40);
    let labels: Vec<String> = breakdown(&frame).into_iter().map(|r| r.label).collect();
    let path: Vec<&str> = labels[2..10].iter().map(String::as_str).collect();
    assert_eq!(
        path,
        [
            "snr 1",
            "snr 2",
            "snr 3",
            "snr 4",
            "trace_path_unused",
            "trace_path_unused",
            "trace_path_unused",
            "trace_path_unused"
        ]
    );
}
