//! LoRa time on air: how long a frame occupies the channel, from the radio's settings and the
//! frame's length, by the standard formula (Semtech AN1200.13, "LoRa Modem Designer's Guide";
//! the SX127x/SX126x datasheets give the same):
//!
//! ```text
//! T_sym      = 2^SF / BW
//! T_preamble = (N_preamble + 4.25) · T_sym
//! N_payload  = 8 + max(ceil((8·PL − 4·SF + 28 + 16·CRC − 20·IH) / (4·(SF − 2·DE))) · (CR + 4), 0)
//! T          = T_preamble + N_payload · T_sym
//! ```
//!
//! with PL the payload bytes (for MeshCore, the whole frame), CRC = 1 when the payload CRC is
//! on, IH = 1 for an implicit header, DE = 1 with low-data-rate optimisation, CR = 1..4 for
//! 4/5..4/8. MeshCore's radios use an explicit header and CRC, turn low-data-rate
//! optimisation on when a symbol lasts 16 ms or more (SF11/SF12 at 125 kHz, SF10 and up at
//! 62.5 kHz), and send a preamble of 32 symbols up to SF8 and 16 above.
//!
//! Pure arithmetic: no I/O, no clock. Settings come from an observer's `radio` status
//! (`"910.525,62.5,7,5"`: MHz, kHz, SF, CR denominator), parsed by [`RadioConfig::parse`].

/// A symbol at least this long (µs) needs low-data-rate optimisation (SX126x rule).
const LDRO_SYMBOL_US: f64 = 16_000.0;

/// The settings that decide a frame's time on air. Only valid combinations can be built:
/// bandwidth 7.8–500 kHz, spreading factor 6–12, coding rate 4/5–4/8, preamble 1–65,535.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoraParams {
    bandwidth_hz: f64,
    spreading_factor: u8,
    /// Coding-rate denominator: 5..=8 for 4/5..4/8.
    coding_rate: u8,
    preamble_symbols: u16,
    explicit_header: bool,
    crc: bool,
    low_data_rate: bool,
}

impl LoraParams {
    /// Settings with an explicit header and CRC on, low-data-rate optimisation as the radio
    /// would choose it (symbol ≥ 16 ms), and `preamble_symbols`. `coding_rate` is the
    /// denominator (5..=8); None when any value is out of range.
    pub fn new(
        bandwidth_hz: f64,
        spreading_factor: u8,
        coding_rate: u8,
        preamble_symbols: u16,
    ) -> Option<LoraParams> {
        let ok = bandwidth_hz.is_finite()
            && (7_800.0..=500_000.0).contains(&bandwidth_hz)
            && (6..=12).contains(&spreading_factor)
            && (5..=8).contains(&coding_rate)
            && preamble_symbols > 0;
        if !ok {
            return None;
        }
        let symbol_us = f64::from(1u32 << spreading_factor) / bandwidth_hz * 1e6;
        Some(LoraParams {
            bandwidth_hz,
            spreading_factor,
            coding_rate,
            preamble_symbols,
            explicit_header: true,
            crc: true,
            low_data_rate: symbol_us >= LDRO_SYMBOL_US,
        })
    }

    /// MeshCore's settings for this bandwidth, SF and coding rate: [`LoraParams::new`] with
    /// the firmware's preamble (32 symbols up to SF8, 16 above).
    pub fn meshcore(bandwidth_hz: f64, spreading_factor: u8, coding_rate: u8) -> Option<Self> {
        let preamble = if spreading_factor <= 8 { 32 } else { 16 };
        LoraParams::new(bandwidth_hz, spreading_factor, coding_rate, preamble)
    }

    /// The same settings with low-data-rate optimisation forced on or off (some radios and
    /// calculators set it by hand).
    pub fn with_low_data_rate(mut self, on: bool) -> Self {
        self.low_data_rate = on;
        self
    }

    /// Whether low-data-rate optimisation is on.
    pub fn low_data_rate(&self) -> bool {
        self.low_data_rate
    }

    /// Spreading factor.
    pub fn spreading_factor(&self) -> u8 {
        self.spreading_factor
    }

    /// Bandwidth, Hz.
    pub fn bandwidth_hz(&self) -> f64 {
        self.bandwidth_hz
    }

    /// Coding-rate denominator (5..=8).
    pub fn coding_rate(&self) -> u8 {
        self.coding_rate
    }

    /// Preamble length, symbols.
    pub fn preamble_symbols(&self) -> u16 {
        self.preamble_symbols
    }

    /// One symbol, ms.
    pub fn symbol_ms(&self) -> f64 {
        f64::from(1u32 << self.spreading_factor) / self.bandwidth_hz * 1e3
    }

    /// Symbols of the payload part (header included) for `payload_len` bytes.
    pub fn payload_symbols(&self, payload_len: usize) -> u64 {
        let sf = i64::from(self.spreading_factor);
        let pl = i64::try_from(payload_len).unwrap_or(i64::MAX / 16);
        let crc = i64::from(self.crc);
        let ih = i64::from(!self.explicit_header);
        let de = i64::from(self.low_data_rate);
        let num = 8 * pl - 4 * sf + 28 + 16 * crc - 20 * ih;
        // SF ≥ 6 and DE ≤ 1, so the denominator is at least 8.
        let den = 4 * (sf - 2 * de);
        let blocks = if num > 0 { (num + den - 1) / den } else { 0 };
        8 + u64::try_from(blocks * i64::from(self.coding_rate)).unwrap_or(0)
    }

    /// Time on air of a frame of `payload_len` bytes, ms.
    pub fn time_on_air_ms(&self, payload_len: usize) -> f64 {
        let preamble = f64::from(self.preamble_symbols) + 4.25;
        // Exact in f64 for any real frame (at most a few thousand symbols).
        (preamble + self.payload_symbols(payload_len) as f64) * self.symbol_ms()
    }
}

/// An observer's radio as its status reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RadioConfig {
    /// Centre frequency, MHz.
    pub frequency_mhz: f64,
    /// The settings for time on air (MeshCore's preamble, header and CRC).
    pub params: LoraParams,
}

impl RadioConfig {
    /// Parses the firmware's `get radio` reply as uploaders publish it: frequency (MHz),
    /// bandwidth (kHz), spreading factor, coding rate (the denominator 5–8; 1–4 read as
    /// 4/5–4/8), comma-separated, e.g. `"910.525,62.5,7,5"`. Anything else (including the
    /// uploader's `"unknown"`) is None.
    pub fn parse(s: &str) -> Option<RadioConfig> {
        let mut it = s.split(',').map(str::trim);
        let (Some(f), Some(bw), Some(sf), Some(cr), None) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            return None;
        };
        let frequency_mhz: f64 = f.parse().ok()?;
        let bw_khz: f64 = bw.parse().ok()?;
        let sf: u8 = sf.parse().ok()?;
        let cr: u8 = cr.parse().ok()?;
        let cr = if (1..=4).contains(&cr) { cr + 4 } else { cr };
        if !(frequency_mhz.is_finite() && (100.0..=3000.0).contains(&frequency_mhz)) {
            return None;
        }
        Some(RadioConfig {
            frequency_mhz,
            params: LoraParams::meshcore(bw_khz * 1000.0, sf, cr)?,
        })
    }
}

/// Where an airtime figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AirtimeSource {
    /// The uploader's `duration` (the firmware's own estimate).
    Uploader,
    /// [`LoraParams::time_on_air_ms`] from the observer's radio settings.
    Formula,
}

impl AirtimeSource {
    /// `uploader` or `formula`.
    pub fn as_str(self) -> &'static str {
        match self {
            AirtimeSource::Uploader => "uploader",
            AirtimeSource::Formula => "formula",
        }
    }
}

/// The airtime of one observed frame, ms: the uploader's `duration` when it sent one, else the
/// formula for the observer's radio; None when neither is known.
pub fn observed_airtime_ms(
    uploader_ms: Option<i64>,
    frame_len: usize,
    radio: Option<&RadioConfig>,
) -> Option<(f64, AirtimeSource)> {
    if let Some(ms) = uploader_ms.filter(|ms| *ms >= 0) {
        return Some((ms as f64, AirtimeSource::Uploader));
    }
    radio.map(|r| (r.params.time_on_air_ms(frame_len), AirtimeSource::Formula))
}
