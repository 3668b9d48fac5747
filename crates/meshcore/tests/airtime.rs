//! Time on air against known figures, each worked by hand in its comment from the formula in
//! `airtime.rs` (Semtech AN1200.13), so every expected value can be checked with a pencil; the
//! SF12 case is also the figure Semtech's LoRa calculator and TTN's airtime calculator publish
//! for LoRaWAN's largest DR0 frame, and the SF8 / 62.5 kHz MeshCore case the one CoreScope's
//! own airtime test uses.

use meshcore::airtime::{AirtimeSource, LoraParams, RadioConfig, observed_airtime_ms};

fn close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-6, "got {got} ms, want {want} ms");
}

/// SF12 / 125 kHz / 4/5, preamble 8, 51 bytes, CRC on, explicit header, low-data-rate
/// optimisation on: the LoRaWAN EU868 DR0 maximum, which Semtech's LoRa calculator (and The
/// Things Network's airtime calculator) give as 2465.8 ms.
/// T_sym = 4096 / 125000 = 32.768 ms; (408 − 48 + 28 + 16) / (4·(12 − 2)) = 404 / 40 → 11;
/// 11 · 5 = 55; N = 63; T = (8 + 4.25 + 63) · 32.768 = 75.25 · 32.768 = 2465.792 ms.
#[test]
fn sf12_125khz_51_bytes() {
    let p = LoraParams::new(125_000.0, 12, 5, 8).unwrap();
    assert!(p.low_data_rate(), "a 32.768 ms symbol needs LDRO");
    assert_eq!(p.payload_symbols(51), 63);
    close(p.time_on_air_ms(51), 2465.792);
}

/// SF7 / 125 kHz / 4/5, preamble 8, 10 bytes.
/// T_sym = 128 / 125000 = 1.024 ms; (80 − 28 + 28 + 16) / 28 = 96 / 28 → 4; 4 · 5 = 20;
/// N = 28; T = (12.25 + 28) · 1.024 = 41.216 ms.
#[test]
fn sf7_125khz_10_bytes() {
    let p = LoraParams::new(125_000.0, 7, 5, 8).unwrap();
    assert!(!p.low_data_rate());
    close(p.time_on_air_ms(10), 41.216);
}

/// SF10 / 125 kHz / 4/8, preamble 8, 20 bytes.
/// T_sym = 1024 / 125000 = 8.192 ms; (160 − 40 + 28 + 16) / 40 = 164 / 40 → 5; 5 · 8 = 40;
/// N = 48; T = (12.25 + 48) · 8.192 = 493.568 ms.
#[test]
fn sf10_125khz_cr48_20_bytes() {
    let p = LoraParams::new(125_000.0, 10, 8, 8).unwrap();
    close(p.time_on_air_ms(20), 493.568);
}

/// SF11 / 125 kHz / 4/5, preamble 8, 12 bytes, LDRO on.
/// T_sym = 2048 / 125000 = 16.384 ms; (96 − 44 + 28 + 16) / (4·(11 − 2)) = 96 / 36 → 3;
/// 3 · 5 = 15; N = 23; T = (12.25 + 23) · 16.384 = 577.536 ms. With LDRO off the denominator
/// is 44 → 3 blocks as well: the optimisation only bites at longer frames (51 bytes: 404/36
/// → 12 blocks with it, 404/44 → 10 without).
#[test]
fn sf11_low_data_rate_changes_long_frames() {
    let p = LoraParams::new(125_000.0, 11, 5, 8).unwrap();
    assert!(p.low_data_rate(), "16.384 ms is at the threshold");
    close(p.time_on_air_ms(12), 577.536);
    assert_eq!(p.payload_symbols(51), 8 + 12 * 5);
    assert_eq!(p.with_low_data_rate(false).payload_symbols(51), 8 + 10 * 5);
}

/// MeshCore's own settings: a 32-symbol preamble at SF ≤ 8, 16 above. SF8 / 62.5 kHz / 4/5
/// and 8 bytes: T_sym = 256 / 62500 = 4.096 ms; (64 − 32 + 28 + 16) / 32 = 76 / 32 → 3;
/// N = 23; T = (32 + 4.25 + 23) · 4.096 = 242.688 ms.
/// The US narrow preset a status reports as "910.525,62.5,7,5", 50 bytes: T_sym = 2.048 ms;
/// (400 − 28 + 28 + 16) / 28 = 416 / 28 → 15; N = 83; T = (36.25 + 83) · 2.048 = 244.224 ms.
#[test]
fn meshcore_presets_from_a_radio_status() {
    let p = LoraParams::meshcore(62_500.0, 8, 5).unwrap();
    assert_eq!(p.preamble_symbols(), 32);
    close(p.time_on_air_ms(8), 242.688);
    let r = RadioConfig::parse("910.525,62.5,7,5").unwrap();
    assert_eq!(r.frequency_mhz, 910.525);
    close(r.params.time_on_air_ms(50), 244.224);
    // SF10 at 62.5 kHz: a 16.384 ms symbol, LDRO on, preamble 16.
    let r = RadioConfig::parse(" 869.618 , 62.5 , 10 , 1 ").unwrap();
    assert!(r.params.low_data_rate());
    assert_eq!(
        (r.params.preamble_symbols(), r.params.coding_rate()),
        (16, 5)
    );
}

#[test]
fn hostile_radio_strings_are_refused() {
    for bad in [
        "",
        "unknown",
        "LoRa 915MHz SF10 BW250",
        "910.5,62.5,7",
        "910.5,62.5,7,5,1",
        "910.5,0,7,5",
        "910.5,NaN,7,5",
        "910.5,62.5,13,5",
        "910.5,62.5,5,5",
        "910.5,62.5,7,9",
        "910.5,62.5,-7,5",
        "inf,62.5,7,5",
        "1e308,62.5,7,5",
        "910.5,1e9,7,5",
    ] {
        assert_eq!(RadioConfig::parse(bad), None, "{bad:?}");
    }
    assert!(LoraParams::new(f64::NAN, 7, 5, 8).is_none());
    assert!(LoraParams::new(125_000.0, 7, 5, 0).is_none());
}

#[test]
fn uploader_duration_wins_over_the_formula() {
    let r = RadioConfig::parse("910.525,62.5,7,5").unwrap();
    assert_eq!(
        observed_airtime_ms(Some(123), 50, Some(&r)),
        Some((123.0, AirtimeSource::Uploader))
    );
    let (ms, src) = observed_airtime_ms(None, 50, Some(&r)).unwrap();
    assert_eq!(src, AirtimeSource::Formula);
    close(ms, 244.224);
    assert_eq!(observed_airtime_ms(None, 50, None), None);
    // The largest frame never overflows: 255 bytes at SF12 / 7.8 kHz is about 2.8 minutes.
    let slow = LoraParams::new(7_800.0, 12, 8, 65_535).unwrap();
    assert!(slow.time_on_air_ms(usize::MAX).is_finite());
}
