//! Every real and synthetic vector in `testdata/vectors` decoded and compared key by key with
//! its expectation. Set `MESHLENS_VECTORS` to use another copy of the vectors.

use std::path::PathBuf;

use meshcore::crypto::{Channel, ChannelKey, Keyring};
use meshcore::report::{DecodeOptions, decode_to_json, parse_hex};
use serde_json::Value;

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

fn read(name: &str) -> String {
    std::fs::read_to_string(vectors_dir().join(name)).unwrap()
}

/// Public plus the 297 hashtag channels the vectors were decrypted with.
fn options() -> DecodeOptions {
    let tags: serde_json::Map<String, Value> =
        serde_json::from_str(&read("hashtag-channels.json")).unwrap();
    let mut keyring = Keyring::with_public();
    for (name, key) in &tags {
        let key = ChannelKey::from_hex(key.as_str().unwrap()).unwrap();
        if name.starts_with('#') {
            // The published keys are the SHA-256 derivation; check ours agrees.
            let derived = Channel::hashtag(name);
            assert_eq!(derived.key(), &key, "{name}");
            keyring.add(derived);
        } else {
            keyring.add(Channel::new(name.as_str(), key));
        }
    }
    // The file lists Public too; it is not added twice.
    assert_eq!(keyring.len(), tags.len());
    DecodeOptions {
        keyring,
        ..DecodeOptions::default()
    }
}

/// Every key of `expect` must be in `got` with the same value (recursing into objects).
fn assert_contains(ctx: &str, expect: &Value, got: &Value) {
    let (Value::Object(e), Value::Object(g)) = (expect, got) else {
        assert_eq!(expect, got, "{ctx}");
        return;
    };
    for (k, v) in e {
        let Some(gv) = g.get(k) else {
            panic!("{ctx}: missing key {k:?}; got {got}");
        };
        if v.is_object() {
            assert_contains(&format!("{ctx}.{k}"), v, gv);
        } else {
            assert_eq!(v, gv, "{ctx}: key {k:?}; got {got}");
        }
    }
}

#[test]
fn every_packet_vector_matches() {
    let opts = options();
    let mut n = 0;
    for line in read("packets.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).unwrap();
        let name = v["name"].as_str().unwrap();
        let mut expect = v["expect"].clone();
        // CoreScope's divergences are documented, not targets.
        expect.as_object_mut().unwrap().remove("corescope");
        let bytes = parse_hex(v["hex"].as_str().unwrap()).unwrap();
        let got = decode_to_json(&bytes, &opts);
        assert_contains(name, &expect, &got);
        n += 1;
    }
    assert_eq!(n, 75, "expected all 75 vectors");
}

#[test]
fn every_corpus_frame_matches() {
    let opts = options();
    let frames: Vec<String> = read("corpus.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let expected: Vec<Value> = read("corpus-expected.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(frames.len(), 588);
    assert_eq!(frames.len(), expected.len());
    let (mut valid, mut adverts, mut good_sigs, mut texts) = (0, 0, 0, 0);
    for (hex, exp) in frames.iter().zip(&expected) {
        assert_eq!(
            exp["hex"].as_str().unwrap(),
            hex,
            "corpus and expectations out of order"
        );
        let mut exp = exp.as_object().unwrap().clone();
        exp.remove("hex");
        exp.remove("source");
        if let Some(text) = exp.remove("text") {
            exp.insert("plaintext".into(), serde_json::json!({ "text": text }));
            texts += 1;
        }
        let got = decode_to_json(&parse_hex(hex).unwrap(), &opts);
        assert_contains(hex, &Value::Object(exp.clone()), &got);
        valid += usize::from(got["valid"] == true);
        if got["payload_type"] == 4 && got["valid"] == true {
            adverts += 1;
            good_sigs += usize::from(got["signature_valid"] == true);
        }
    }
    // The corpus's own summary (wire-format.md §10).
    assert_eq!((valid, adverts, good_sigs, texts), (587, 134, 130, 87));
}

#[test]
fn only_the_public_channel_by_default() {
    // With only the built-in key, hashtag traffic stays encrypted but Public decrypts.
    let opts = DecodeOptions::default();
    let public =
        parse_hex("150011C3C1354D619BAE9590E4D177DB7EEAF982F5BDCF78005D75157D9535FA90178F785D")
            .unwrap();
    assert_eq!(decode_to_json(&public, &opts)["channel"], "Public");
    let wardriving = parse_hex("1502E834816EC2ECD804448FD0AED65CB184A6A2E6EBBC2481D99C18A0F6E249544A879182F8BB12ABCF8BBFFC7147A7029497B9B65D45E364E3C28F1AC5ACECA1E68B69F26706").unwrap();
    assert_eq!(decode_to_json(&wardriving, &opts)["decrypted"], false);
}
