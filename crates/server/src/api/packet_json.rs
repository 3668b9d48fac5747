//! The packet object of `/api/packets` rows, written straight to bytes.
//!
//! Most of a packet object depends only on its frame: the header fields, `raw_hex`, the full
//! decode (`decoded`) and CoreScope's `decoded_json`/`path_json` strings. Decoding and
//! serializing them was two thirds of a page's cost, and dashboards ask for the same pages
//! over and over, so those parts are kept per transmission as ready JSON bytes in a bounded
//! cache ([`FrameJsonCache`]). The rest (times, counts, channel, scope, first observer) is read
//! with the row and written around them every time.
//!
//! The object is the same as [`super::packets::TxRow::to_json_with`] builds as a `Value`, key
//! for key and in the same order (a test holds the two together on real frames).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use meshcore::report::DecodeOptions;
use serde_json::Value;

use crate::SignatureCache;

/// The JSON of a frame's fixed parts, each a ready fragment.
pub struct FrameJson {
    /// `,"route_type":…,"path":[…],"raw_hex":"…"` (the header keys the decode has).
    header: Box<[u8]>,
    /// The frame has transport codes (route 0 or 3): `scope_name` is "" rather than null
    /// when no region is configured for them.
    transport: bool,
    /// `,"decoded_json":"…","path_json":"…"`.
    strings: Box<[u8]>,
    /// The decode object, `signature_valid` included for adverts.
    decoded: Box<[u8]>,
}

/// The header keys copied from the decode to the top of the packet object, in order.
pub const HEADER_KEYS: [&str; 8] = [
    "route_type",
    "route_type_name",
    "payload_type",
    "payload_type_name",
    "payload_version",
    "hash_size",
    "hop_count",
    "path",
];

impl FrameJson {
    /// Decodes `raw` (packet `hash`) once and writes its fragments.
    pub fn build(
        hash: &str,
        raw: &[u8],
        opts: &DecodeOptions,
        signatures: &SignatureCache,
    ) -> FrameJson {
        let mut decoded = crate::decode_for_api(raw, opts);
        if decoded.get("payload_type_name") == Some(&Value::from("ADVERT")) {
            decoded["signature_valid"] = signatures.verify(hash, raw).into();
        }
        let mut header = Vec::with_capacity(256);
        for k in HEADER_KEYS {
            if let Some(v) = decoded.get(k) {
                put_key(&mut header, k);
                put(&mut header, v);
            }
        }
        put_key(&mut header, "raw_hex");
        put(&mut header, &hex::encode(raw));
        let transport = matches!(
            decoded.get("route_type").and_then(Value::as_i64),
            Some(0 | 3)
        );
        let mut strings = Vec::with_capacity(512);
        put_key(&mut strings, "decoded_json");
        put(&mut strings, &super::corescope::decoded_json(&decoded));
        put_key(&mut strings, "path_json");
        put(&mut strings, &super::corescope::path_json(&decoded));
        let mut bytes = Vec::with_capacity(512);
        put(&mut bytes, &decoded);
        FrameJson {
            header: header.into(),
            transport,
            strings: strings.into(),
            decoded: bytes.into(),
        }
    }

    /// Bytes held, for the cache's bound.
    fn size(&self) -> usize {
        self.header.len() + self.strings.len() + self.decoded.len()
    }
}

/// The fields of a packet object that are read with its row.
pub struct RowFields<'a> {
    pub id: i64,
    pub hash: &'a str,
    pub first_seen: i64,
    pub last_seen: i64,
    pub observation_count: i64,
    pub channel: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub from_pubkey: Option<&'a str>,
}

/// CoreScope's keys of the first observation, when it is known.
pub struct FirstFields<'a> {
    pub observer_id: Option<&'a str>,
    pub observer_name: Option<&'a str>,
    pub observer_iata: Option<&'a str>,
    pub snr: Option<f64>,
    pub rssi: Option<f64>,
}

/// Writes the packet object without its closing brace, so a caller can append keys
/// (`count`, `observations`, …) with [`put_key`] and then push `}`.
pub fn write_open(
    out: &mut Vec<u8>,
    row: &RowFields<'_>,
    frame: &FrameJson,
    first: Option<&FirstFields<'_>>,
) {
    out.extend_from_slice(b"{\"id\":");
    put(out, &row.id);
    put_key(out, "hash");
    put(out, row.hash);
    let first_seen = store::time::iso(row.first_seen);
    put_key(out, "first_seen");
    put(out, &first_seen);
    put_key(out, "last_seen");
    put(out, &store::time::iso(row.last_seen));
    put_key(out, "timestamp");
    put(out, &first_seen);
    out.extend_from_slice(&frame.header);
    put_key(out, "observation_count");
    put(out, &row.observation_count);
    put_key(out, "channel");
    put(out, &row.channel);
    put_key(out, "scope");
    put(out, &row.scope);
    put_key(out, "scope_name");
    match (row.scope, frame.transport) {
        (Some(s), _) => put(out, s),
        (None, true) => put(out, ""),
        (None, false) => out.extend_from_slice(b"null"),
    }
    put_key(out, "from_pubkey");
    put(out, &row.from_pubkey);
    out.extend_from_slice(&frame.strings);
    if let Some(f) = first {
        put_key(out, "observer_id");
        put(out, &f.observer_id);
        put_key(out, "observer_name");
        put(out, &f.observer_name);
        put_key(out, "observer_iata");
        put(out, &f.observer_iata);
        put_key(out, "snr");
        put(out, &f.snr);
        put_key(out, "rssi");
        put(out, &f.rssi);
        // Observers do not report a direction to meshlens (see `TxRow::to_json_with`).
        put_key(out, "direction");
        out.extend_from_slice(b"null");
    }
    put_key(out, "decoded");
    out.extend_from_slice(&frame.decoded);
}

/// Writes `,"key":` (every key of the object but `id` follows another).
pub fn put_key(out: &mut Vec<u8>, key: &str) {
    out.push(b',');
    put(out, key);
    out.push(b':');
}

/// Writes `v` as JSON. Serializing plain values into a `Vec` cannot fail (serde_json fails
/// only on I/O errors and on maps with non-string keys, neither possible here).
pub fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let _ = serde_json::to_writer(&mut *out, v);
}

/// Values derived from a transmission's frame alone, by transmission id: each entry keeps
/// the frame it was made from, and a lookup with another frame (an id reused after pruning)
/// builds anew. Bounded by entries and bytes: two generations of maps, the older dropped
/// when the newer fills (an approximate LRU with O(1) work per lookup).
pub struct FrameCache<T> {
    inner: Mutex<Generations<T>>,
}

/// [`FrameJson`] by transmission.
pub type FrameJsonCache = FrameCache<FrameJson>;

struct Entry<T> {
    raw: Box<[u8]>,
    value: Arc<T>,
    bytes: usize,
}

struct Generations<T> {
    hot: HashMap<i64, Entry<T>>,
    hot_bytes: usize,
    cold: HashMap<i64, Entry<T>>,
}

impl<T> Default for FrameCache<T> {
    fn default() -> Self {
        FrameCache {
            inner: Mutex::new(Generations {
                hot: HashMap::new(),
                hot_bytes: 0,
                cold: HashMap::new(),
            }),
        }
    }
}

impl<T> FrameCache<T> {
    /// Entries per generation: two pages of 1,000 rows, or 40 pages of 50.
    const ENTRIES: usize = 1_024;
    /// Bytes per generation (a packet's fragments are 1–3 KiB).
    const BYTES: usize = 2 << 20;

    /// The value of transmission `id` with frame `raw`: cached, or made by `build` (outside
    /// the lock, so one decode does not hold up other pages' lookups), which also says how
    /// many bytes it holds.
    pub fn get_or(&self, id: i64, raw: &[u8], build: impl FnOnce() -> (T, usize)) -> Arc<T> {
        if let Ok(mut g) = self.inner.lock() {
            if let Some(e) = g.hot.get(&id).filter(|e| *e.raw == *raw) {
                return e.value.clone();
            }
            if let Some(e) = g.cold.remove(&id).filter(|e| *e.raw == *raw) {
                let v = e.value.clone();
                g.insert(id, e);
                return v;
            }
        }
        let (value, bytes) = build();
        let value = Arc::new(value);
        if let Ok(mut g) = self.inner.lock() {
            g.insert(
                id,
                Entry {
                    raw: raw.into(),
                    value: value.clone(),
                    bytes: bytes + raw.len(),
                },
            );
        }
        value
    }

    /// Entries held now (both generations).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map_or(0, |g| g.hot.len() + g.cold.len())
    }
}

impl FrameJsonCache {
    /// The fragments of transmission `id` (packet `hash`, frame `raw`).
    pub fn get_or_build(
        &self,
        id: i64,
        hash: &str,
        raw: &[u8],
        opts: &DecodeOptions,
        signatures: &SignatureCache,
    ) -> Arc<FrameJson> {
        self.get_or(id, raw, || {
            let f = FrameJson::build(hash, raw, opts, signatures);
            let n = f.size();
            (f, n)
        })
    }
}

impl<T> Generations<T> {
    fn insert(&mut self, id: i64, e: Entry<T>) {
        if self.hot.len() >= FrameCache::<T>::ENTRIES || self.hot_bytes >= FrameCache::<T>::BYTES {
            self.cold = std::mem::take(&mut self.hot);
            self.hot_bytes = 0;
        }
        self.hot_bytes += e.bytes;
        if let Some(old) = self.hot.insert(id, e) {
            self.hot_bytes = self.hot_bytes.saturating_sub(old.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> DecodeOptions {
        DecodeOptions::default()
    }

    /// Real captured frames from the repository's vectors.
    fn frames() -> Vec<Vec<u8>> {
        let text = include_str!("../../../../testdata/vectors/corpus.txt");
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| hex::decode(l.split_whitespace().next().unwrap_or("")).ok())
            .collect()
    }

    #[test]
    fn cache_is_bounded_and_checks_the_frame() {
        let sigs = SignatureCache::default();
        let cache = FrameJsonCache::default();
        let all = frames();
        assert!(!all.is_empty(), "no vectors");
        for i in 0..(3 * FrameJsonCache::ENTRIES) {
            let raw = &all[i % all.len()];
            cache.get_or_build(i as i64, "h", raw, &opts(), &sigs);
        }
        assert!(
            cache.len() <= 2 * FrameJsonCache::ENTRIES,
            "{}",
            cache.len()
        );
        assert!(cache.len() >= FrameJsonCache::ENTRIES, "{}", cache.len());
        // Same id, another frame (an id reused after pruning): rebuilt, not served stale.
        let (a, b) = (
            &all[0],
            all.iter().find(|f| *f != &all[0]).expect("two frames"),
        );
        let fa = cache.get_or_build(-1, "h", a, &opts(), &sigs);
        let fb = cache.get_or_build(-1, "h", b, &opts(), &sigs);
        let has_hex = |f: &FrameJson, raw: &[u8]| {
            String::from_utf8_lossy(&f.header).contains(&hex::encode(raw))
        };
        assert!(
            has_hex(&fa, a) && has_hex(&fb, b),
            "each frame's own decode"
        );
        // And the same frame again is the cached one.
        let again = cache.get_or_build(-1, "h", b, &opts(), &sigs);
        assert!(Arc::ptr_eq(&fb, &again));
    }
}
