//! Criterion benchmarks of the wire-format decoder over the real captured corpus
//! (`testdata/vectors/corpus.txt`, 588 frames).
//!
//! Run with `cargo bench -p meshcore --bench decode` (add `-- --quick` for a fast pass).
//! `MESHLENS_VECTORS` overrides the vectors directory. Timings are reported, never asserted.
//!
//! Every benchmark iterates over a whole set of frames and declares the set's size as its
//! throughput, so criterion's `thrpt` line is frames (or verifications) per second and the
//! time per element is the iteration time divided by the element count.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meshcore::crypto::{Channel, ChannelKey, Keyring};
use meshcore::payload::{Advert, Group};
use meshcore::region::Regions;
use meshcore::report::{DecodeOptions, decode_to_json, parse_hex};
use meshcore::{Header, Packet, Payload, PayloadType};

/// The vectors directory: `$MESHLENS_VECTORS`, else the repository's `testdata/vectors`.
fn vectors_dir() -> PathBuf {
    let dir = std::env::var_os("MESHLENS_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors")
        });
    if !dir.join("corpus.txt").is_file() || !dir.join("hashtag-channels.json").is_file() {
        panic!(
            "benchmark vectors not found: expected corpus.txt and hashtag-channels.json in {} \
             (set MESHLENS_VECTORS to a vectors directory)",
            dir.display()
        );
    }
    dir
}

fn read(name: &str) -> String {
    let path = vectors_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every frame of the corpus, hex-decoded.
fn corpus() -> Vec<Vec<u8>> {
    let frames: Vec<Vec<u8>> = read("corpus.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| parse_hex(l).unwrap_or_else(|e| panic!("corpus.txt line {}: {e}", i + 1)))
        .collect();
    assert!(!frames.is_empty(), "corpus.txt is empty");
    frames
}

/// Public plus every hashtag channel of `hashtag-channels.json` (297 keys in all).
fn full_keyring() -> Keyring {
    let tags: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&read("hashtag-channels.json"))
            .unwrap_or_else(|e| panic!("hashtag-channels.json: {e}"));
    let mut keyring = Keyring::with_public();
    for (name, key) in &tags {
        let key = key
            .as_str()
            .and_then(ChannelKey::from_hex)
            .unwrap_or_else(|| panic!("hashtag-channels.json: bad key for {name}"));
        let channel = if name.starts_with('#') {
            Channel::hashtag(name)
        } else {
            Channel::new(name.as_str(), key.clone())
        };
        assert_eq!(
            channel.key(),
            &key,
            "key of {name} is not what its name derives"
        );
        keyring.add(channel);
    }
    keyring
}

fn options(keyring: &Keyring, verify_signatures: bool) -> DecodeOptions {
    DecodeOptions {
        keyring: keyring.clone(),
        regions: Regions::default(),
        verify_signatures,
    }
}

fn elements(n: usize) -> Throughput {
    Throughput::Elements(n as u64)
}

fn benches(c: &mut Criterion) {
    let frames = corpus();
    let keyring = full_keyring();
    let packets: Vec<Packet<'_>> = frames
        .iter()
        .filter_map(|f| Packet::decode(f).ok())
        .collect();
    // Frames whose header is not ADVERT, framing-valid or not.
    let non_advert: Vec<&[u8]> = frames
        .iter()
        .filter(|f| {
            f.first()
                .is_none_or(|&h| Header::from_byte(h).payload_type != PayloadType::Advert)
        })
        .map(Vec::as_slice)
        .collect();
    let adverts: Vec<Advert<'_>> = packets
        .iter()
        .filter_map(|p| match p.payload() {
            Ok(Payload::Advert(a)) => Some(a),
            _ => None,
        })
        .collect();
    let grp_txt: Vec<Group<'_>> = packets
        .iter()
        .filter_map(|p| match p.payload() {
            Ok(Payload::GrpTxt(g)) => Some(g),
            _ => None,
        })
        .collect();
    let decrypted = grp_txt
        .iter()
        .filter(|g| keyring.decrypt(PayloadType::GrpTxt, g).is_some())
        .count();
    let valid_sigs = adverts.iter().filter(|a| a.verify_signature()).count();
    eprintln!(
        "corpus: {} frames, {} framed, {} non-advert, {} adverts ({} valid signatures), \
         {} GRP_TXT ({} decrypt), keyring {} channels",
        frames.len(),
        packets.len(),
        non_advert.len(),
        adverts.len(),
        valid_sigs,
        grp_txt.len(),
        decrypted,
        keyring.len()
    );

    let mut g = c.benchmark_group("frame");
    g.throughput(elements(non_advert.len()));
    g.bench_function("non_advert", |b| {
        b.iter(|| {
            for f in &non_advert {
                let _ = black_box(Packet::decode(black_box(f)));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("frame_and_payload");
    g.throughput(elements(non_advert.len()));
    g.bench_function("non_advert", |b| {
        b.iter(|| {
            for f in &non_advert {
                if let Ok(p) = Packet::decode(black_box(f)) {
                    let _ = black_box(p.payload());
                }
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("packet_hash");
    g.throughput(elements(packets.len()));
    g.bench_function("all_framed", |b| {
        b.iter(|| {
            for p in &packets {
                black_box(black_box(p).hash());
            }
        })
    });
    g.finish();

    // One iteration is milliseconds here: fewer samples keep the run near criterion's 5 s.
    let mut g = c.benchmark_group("advert");
    g.sample_size(30);
    g.throughput(elements(adverts.len()));
    g.bench_function("verify_signature", |b| {
        b.iter(|| {
            for a in &adverts {
                black_box(black_box(a).verify_signature());
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("report");
    g.sample_size(30);
    g.throughput(elements(frames.len()));
    for (name, verify) in [("corpus_no_verify", false), ("corpus_with_verify", true)] {
        let opts = options(&keyring, verify);
        g.bench_function(name, |b| {
            b.iter(|| {
                for f in &frames {
                    black_box(decode_to_json(black_box(f), &opts));
                }
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("grp_txt");
    g.throughput(elements(grp_txt.len()));
    g.bench_function("decrypt_297_keys", |b| {
        b.iter(|| {
            for m in &grp_txt {
                black_box(keyring.decrypt(PayloadType::GrpTxt, black_box(m)));
            }
        })
    });
    g.finish();
}

criterion_group!(decode, benches);
criterion_main!(decode);
