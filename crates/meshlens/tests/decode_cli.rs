//! `meshlens decode` as a user runs it: the binary, its arguments, stdin and exit status.
//! The per-field expectations are checked in `crates/meshcore/tests/vectors.rs`; here every
//! vector and corpus frame must come out of the CLI exactly as the library renders it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use meshcore::crypto::Keyring;
use meshcore::report::{DecodeOptions, decode_to_json, parse_hex};
use serde_json::Value;

fn vectors() -> PathBuf {
    let dir = std::env::var_os("MESHLENS_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors")
        });
    assert!(
        dir.join("corpus.txt").is_file(),
        "vectors not found at {}",
        dir.display()
    );
    dir
}

fn meshlens(args: &[String], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshlens"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The hex of the named vector in `packets.jsonl`.
fn vector_hex(name: &str) -> String {
    std::fs::read_to_string(vectors().join("packets.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["name"] == name)
        .map(|v| v["hex"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no vector {name}"))
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn corpus_and_vectors_on_stdin_match_the_library() {
    let dir = vectors();
    let tags: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("hashtag-channels.json")).unwrap())
            .unwrap();
    let mut cli_args = vec!["decode".to_string()];
    let mut keyring = Keyring::with_public();
    for name in tags.keys().filter(|n| n.starts_with('#')) {
        cli_args.push("--hashtag".into());
        cli_args.push(name.clone());
        keyring.add_hashtag(name);
    }
    let opts = DecodeOptions {
        keyring,
        ..DecodeOptions::default()
    };
    let mut frames: Vec<String> = std::fs::read_to_string(dir.join("corpus.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    for line in std::fs::read_to_string(dir.join("packets.jsonl"))
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(line).unwrap();
        frames.push(v["hex"].as_str().unwrap().to_string());
    }
    let out = meshlens(&cli_args, frames.join("\n").as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = lines(&out);
    assert_eq!(got.len(), frames.len(), "one output line per input frame");
    for (hex, g) in frames.iter().zip(&got) {
        assert_eq!(g, &decode_to_json(&parse_hex(hex).unwrap(), &opts), "{hex}");
    }
    // The corpus has 87 decryptable channel messages and this run has all the keys.
    assert_eq!(
        got.iter().filter(|v| v["decrypted"] == true).count(),
        87 + 11
    );
}

#[test]
fn stdin_tolerates_case_whitespace_and_blank_lines() {
    let input = b"\n  0d04 b891647e\tBB40BA70  \r\n\n0D04B891647EBB40BA70\n";
    let out = meshlens(&args(&["decode"]), input);
    assert!(out.status.success());
    let got = lines(&out);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], got[1]);
    assert_eq!(got[0]["packet_hash"], "bbf95563c6eec9fe");
}

#[test]
fn invalid_frames_and_bad_hex_are_output_not_failures() {
    let out = meshlens(&args(&["decode", "FF", "zz", "ABC", "0AC0D69F"]), b"");
    assert!(out.status.success());
    let got = lines(&out);
    let errors: Vec<&str> = got.iter().map(|v| v["error"].as_str().unwrap()).collect();
    assert_eq!(
        errors,
        [
            "too_short",
            "bad_hex",
            "odd_hex_length",
            "reserved_hash_size"
        ]
    );
    assert!(got.iter().all(|v| v["valid"] == false));
}

#[test]
fn keys_and_regions_from_flags() {
    // #test message on a TRANSPORT_FLOOD in 3-byte mode (synthetic vector).
    let hex = vector_hex("grp_txt_hashtag_test_transport_flood_3byte_mode");
    let without = &lines(&meshlens(&args(&["decode", &hex]), b""))[0];
    assert_eq!(without["decrypted"], false);
    let with_tag = &lines(&meshlens(
        &args(&["decode", "--hashtag", "test", &hex]),
        b"",
    ))[0];
    assert_eq!(with_tag["channel"], "#test");
    let key = "ops=9cd8fcf22a47333b591d96a2b848b73f";
    let with_key = &lines(&meshlens(
        &args(&["decode", "--channel-key", key, &hex]),
        b"",
    ))[0];
    assert_eq!(with_key["channel"], "ops");
    assert_eq!(with_key["plaintext"], with_tag["plaintext"]);

    let ottawa = vector_hex("grp_txt_transport_flood_region_ottawa");
    let scoped = &lines(&meshlens(
        &args(&["decode", "--region", "#ottawa", &ottawa]),
        b"",
    ))[0];
    assert_eq!(scoped["region"], "#ottawa");
    let unscoped = &lines(&meshlens(
        &args(&["decode", "--region", "seattle", &ottawa]),
        b"",
    ))[0];
    assert!(unscoped.get("region").is_none());
}

#[test]
fn usage_errors_exit_non_zero() {
    let out = meshlens(&args(&["decode", "--channel-key", "nothex"]), b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("channel-key"));
    let out = meshlens(&args(&["no-such-command"]), b"");
    assert!(!out.status.success());
}

#[test]
fn an_advert_with_unsigned_appdata_shows_its_signed_name_and_the_tail_apart() {
    // A real advert whose appdata is exactly the 32 signed bytes, with bytes appended: the
    // signature still verifies, and the appended bytes must not join the name.
    let hex = format!(
        "{}{}",
        vector_hex("advert_flood_ww7str_exact_32b_appdata"),
        hex::encode(b" (unsigned)")
    );
    let got = &lines(&meshlens(&args(&["decode", &hex]), b""))[0];
    assert_eq!(got["signature_valid"], true, "{got}");
    assert_eq!(got["name"], "WW7STR/PugetMesh Cougar", "{got}");
    assert_eq!(got["unsigned_tail"], hex::encode(b" (unsigned)"), "{got}");
}

#[test]
fn a_trace_with_hash_size_bits_counts_hops_by_the_low_six_bits() {
    // The real 4-SNR TRACE with path-length byte 0x04 turned into 0x44 (4 hops, 2-byte
    // mode), so framing reserves 4 more path bytes.
    let real = vector_hex("trace_direct_4snr_5hops");
    let hex = format!("{}44{}00000000{}", &real[..2], &real[4..12], &real[12..]);
    let got = &lines(&meshlens(&args(&["decode", &hex]), b""))[0];
    assert_eq!(got["valid"], true, "{got}");
    assert_eq!(got["hops_completed"], 4, "{got}");
    assert_eq!(got["snr_raw"], serde_json::json!([48, 45, 13, 35]), "{got}");
    assert_eq!(got["anomaly"], "trace_path_hash_bits", "{got}");
}
