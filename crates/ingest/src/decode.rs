//! From a parsed packet message to what the writer stores: framing, packet hash, advert
//! verification (a forged or corrupted advert never becomes a node), channel and region.

use meshcore::crypto::Keyring;
use meshcore::region::Regions;
use meshcore::{Packet, Payload};
use store::{Advert, Item, Observer, PacketRecord, Rejected, Role};

use crate::message::PacketMessage;

/// Raw bytes kept for a refused frame (a legal frame is at most 254 bytes).
const MAX_REJECTED_RAW: usize = 512;

/// Longest node name stored, in bytes (firmware never sends more than 31).
const MAX_NAME_BYTES: usize = 32;

/// What became of a packet message, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A framed packet.
    Packet,
    /// A framed advert whose node update was refused (reason code).
    RefusedAdvert(&'static str),
    /// A frame that failed framing (error code).
    InvalidFrame(&'static str),
}

/// Decoding context: the keys and regions the operator configured.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Channels to try.
    pub keyring: Keyring,
    /// Regions for transport codes.
    pub regions: Regions,
    /// Advert signature results by packet hash: every copy of an advert (one per observer and
    /// path) has the same signed bytes, so each is verified once. Bounded: cleared when full.
    pub verified: std::sync::Mutex<std::collections::HashMap<u64, bool>>,
    /// The operator's geo filter (set by the admin queue from the `settings` table): an
    /// advert placing its node outside is stored flagged `foreign`.
    pub geo_filter: std::sync::RwLock<Option<analytics::geo::GeoFilter>>,
}

impl Decoder {
    /// Replaces the geo filter (new adverts are judged by it from now on).
    pub fn set_geo_filter(&self, f: Option<analytics::geo::GeoFilter>) {
        if let Ok(mut g) = self.geo_filter.write() {
            *g = f;
        }
    }

    fn is_foreign(&self, location: Option<(f64, f64)>) -> bool {
        let Some((lat, lon)) = location else {
            return false;
        };
        self.geo_filter
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|f| !f.passes(lat, lon)))
            .unwrap_or(false)
    }
}

impl Clone for Decoder {
    fn clone(&self) -> Self {
        Decoder {
            keyring: self.keyring.clone(),
            regions: self.regions.clone(),
            verified: Default::default(),
            geo_filter: std::sync::RwLock::new(self.geo_filter.read().ok().and_then(|g| g.clone())),
        }
    }
}

/// Most cached signature results.
const VERIFIED_CAPACITY: usize = 65_536;

impl Decoder {
    /// Turns a packet message received at `received_at` (Unix ms) into a writer item.
    pub fn item(&self, msg: PacketMessage, received_at: i64) -> (Item, Outcome) {
        let observer = Observer {
            id: msg.observer.id,
            name: msg.origin,
            // A `region` in the payload wins over the topic.
            iata: Some(msg.region.unwrap_or(msg.observer.iata)),
        };
        let packet = match Packet::decode(&msg.raw) {
            Ok(p) => p,
            Err(e) => {
                let code = e.kind.code();
                let mut raw = msg.raw;
                raw.truncate(MAX_REJECTED_RAW);
                let item = Item::Rejected(Rejected {
                    observer_id: Some(observer.id),
                    received_at,
                    reason: code,
                    raw: Some(raw),
                });
                return (item, Outcome::InvalidFrame(code));
            }
        };
        let mut record = PacketRecord {
            observer,
            received_at,
            raw: Vec::new(),
            head_len: msg.raw.len() - packet.payload_bytes().len(),
            hash: packet.hash().to_u64(),
            route_type: packet.route_type().value(),
            payload_type: packet.payload_type().value(),
            payload_version: packet.version().value(),
            path_len: packet.path_len().to_byte(),
            snr: msg.snr,
            rssi: msg.rssi,
            score: msg.score,
            airtime_ms: msg.airtime_ms,
            // Set by whoever knows when the message arrived and what its envelope said.
            clock: None,
            from_pubkey: None,
            channel: None,
            scope: self.regions.match_scope(&packet).map(str::to_owned),
            advert: None,
            reject_reason: None,
        };
        let mut outcome = Outcome::Packet;
        match packet.payload() {
            Ok(Payload::Advert(a)) => {
                record.from_pubkey = Some(hex::encode(a.public_key));
                match self.advert_checked(&a, record.hash) {
                    Ok(adv) => record.advert = Some(adv),
                    Err(reason) => {
                        record.reject_reason = Some(reason);
                        outcome = Outcome::RefusedAdvert(reason);
                    }
                }
            }
            Ok(Payload::GrpTxt(g)) | Ok(Payload::GrpData(g)) => {
                // Undecrypted messages are grouped by their channel-hash byte, as CoreScope
                // does (`enc_<hh>`).
                record.channel = Some(
                    self.keyring
                        .decrypt(packet.payload_type(), &g)
                        .and_then(|d| self.keyring.get(d.channel))
                        .map_or_else(
                            || format!("enc_{:02x}", g.channel_hash),
                            |c| c.name().to_owned(),
                        ),
                );
            }
            _ => {}
        }
        record.raw = msg.raw;
        (Item::Packet(record), outcome)
    }
}

impl Decoder {
    /// [`advert`], with the signature check answered from the cache when this packet was
    /// already verified.
    fn advert_checked(
        &self,
        a: &meshcore::payload::Advert<'_>,
        hash: u64,
    ) -> Result<Advert, &'static str> {
        let cached = self
            .verified
            .lock()
            .ok()
            .and_then(|m| m.get(&hash).copied());
        let valid = cached.unwrap_or_else(|| {
            let v = a.verify_signature();
            if let Ok(mut m) = self.verified.lock() {
                if m.len() >= VERIFIED_CAPACITY {
                    m.clear();
                }
                m.insert(hash, v);
            }
            v
        });
        let mut record = advert(a, valid)?;
        record.foreign = self.is_foreign(record.location);
        Ok(record)
    }
}

/// Validates an advert for a node update (given whether its signature verifies), or says why
/// not.
fn advert(
    a: &meshcore::payload::Advert<'_>,
    signature_valid: bool,
) -> Result<Advert, &'static str> {
    if a.public_key.iter().all(|&b| b == 0) {
        return Err("zero_pubkey");
    }
    if !signature_valid {
        return Err("invalid_signature");
    }
    // The signed view, as `meshlens decode` and the API report it: the name is never made of
    // appdata bytes the signature does not cover.
    let data = a.app_data();
    let name = data
        .and_then(|d| d.name_lossy())
        .map(|n| sanitize_name(&n))
        .filter(|n| !n.is_empty());
    let location = data
        .and_then(|d| d.location)
        // 0/0 means "no fix"; anything off the globe is corruption that happened to verify.
        .filter(|l| l.in_range() && (l.lat_raw, l.lon_raw) != (0, 0))
        .map(|l| (l.lat(), l.lon()));
    Ok(Advert {
        public_key: hex::encode(a.public_key),
        name,
        role: Role::from_node_type(data.map_or(0, |d| d.node_type().value())),
        location,
        advert_time: a.timestamp,
        foreign: false,
    })
}

/// The advert's name (already lossy UTF-8, as the decode report shows it) with control
/// characters dropped, cut at a character boundary within [`MAX_NAME_BYTES`] and trimmed. A
/// printable name is stored exactly as reported. Still attacker-controlled text: escape it
/// wherever it is shown.
fn sanitize_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::TopicObserver;

    fn msg(hex: &str) -> PacketMessage {
        PacketMessage {
            observer: TopicObserver {
                id: "ab".repeat(32),
                iata: "SEA".into(),
            },
            origin: Some("obs".into()),
            region: None,
            raw: meshcore::report::parse_hex(hex).unwrap(),
            snr: Some(5.0),
            rssi: None,
            score: None,
            airtime_ms: None,
        }
    }

    // Real captures from testdata/vectors/packets.jsonl.
    const ADVERT: &str = "110020AAA863297B2A97372C8EF877D35EE46AA6B5FF4A68EA8BDEC3A0DC77CFA54B4CEDA96692572EE9B8B68B936E7C3F880F5ABBBFFB9CA27CB1BD8C68818AC4A0FE321A50CAFB3A93BC2043370E5D7217417ABDD6208D077506544D53D0840F367225500F92E4A73702DCEDB9F84D524F2D5250543034";
    const PUBLIC_MSG: &str =
        "150011C3C1354D619BAE9590E4D177DB7EEAF982F5BDCF78005D75157D9535FA90178F785D";

    #[test]
    fn verified_advert_becomes_a_node_update() {
        let (item, outcome) = Decoder::default().item(msg(ADVERT), 7);
        assert_eq!(outcome, Outcome::Packet);
        let Item::Packet(p) = item else { panic!() };
        let a = p.advert.unwrap();
        assert_eq!(a.name.as_deref(), Some("MRO-RPT04"));
        assert_eq!(a.role, Role::Repeater);
        assert_eq!(a.location, Some((37.201892, -122.032676)));
        assert_eq!(p.hash, 0x708848b1e867703a);
        assert_eq!(p.head_len, 2);
        assert_eq!(p.observer.iata.as_deref(), Some("SEA"));
    }

    #[test]
    fn each_advert_is_verified_once_and_copies_agree() {
        let d = Decoder::default();
        let mut bad = ADVERT.to_string();
        bad.replace_range(bad.len() - 2.., "35");
        for _ in 0..3 {
            assert_eq!(d.item(msg(ADVERT), 7).1, Outcome::Packet);
            assert_eq!(
                d.item(msg(&bad), 7).1,
                Outcome::RefusedAdvert("invalid_signature")
            );
        }
        assert_eq!(d.verified.lock().unwrap().len(), 2);
    }

    #[test]
    fn corrupted_advert_is_refused_but_kept_as_a_packet() {
        let mut hex = ADVERT.to_string();
        hex.replace_range(hex.len() - 2.., "35"); // last name byte changed
        let (item, outcome) = Decoder::default().item(msg(&hex), 7);
        assert_eq!(outcome, Outcome::RefusedAdvert("invalid_signature"));
        let Item::Packet(p) = item else { panic!() };
        assert!(p.advert.is_none());
        assert_eq!(p.reject_reason, Some("invalid_signature"));
        assert!(p.from_pubkey.is_some());
    }

    #[test]
    fn invalid_frames_are_rejected_with_their_code() {
        let (item, outcome) = Decoder::default().item(msg("0AC0D69F"), 7);
        assert_eq!(outcome, Outcome::InvalidFrame("reserved_hash_size"));
        assert!(matches!(
            item,
            Item::Rejected(Rejected {
                reason: "reserved_hash_size",
                ..
            })
        ));
    }

    #[test]
    fn channel_is_named_when_a_key_decrypts() {
        let d = Decoder {
            keyring: Keyring::with_public(),
            ..Decoder::default()
        };
        let (Item::Packet(p), _) = d.item(msg(PUBLIC_MSG), 7) else {
            panic!()
        };
        assert_eq!(p.channel.as_deref(), Some("Public"));
        let (Item::Packet(p), _) = Decoder::default().item(msg(PUBLIC_MSG), 7) else {
            panic!()
        };
        assert_eq!(p.channel.as_deref(), Some("enc_11"));
    }

    /// A real advert whose appdata is exactly the 32 signed bytes (vector
    /// `advert_flood_ww7str_exact_32b_appdata`): bytes appended to it keep the signature valid.
    const ADVERT_32B_APPDATA: &str = "11007E7662676F7F0850A8A355BAAFBFC1EB7B4174C340442D7D7161C9474A2C94006CE7CF682E58408DD8FCC51906ECA98EBF94A037886BDADE7ECD09FD92B839491DF3809C9454F5286D1D3370AC31A34593D569E9A042A3B41FD331DFFB7E18599CE1E60992A076D50238C5B8F85757375354522F50756765744D65736820436F75676172";

    #[test]
    fn ingest_stores_the_name_decode_reports_and_never_the_unsigned_tail() {
        let tail = b" ADMIN (unsigned)";
        let mut frame = meshcore::report::parse_hex(ADVERT_32B_APPDATA).unwrap();
        frame.extend_from_slice(tail);
        let signed_name = "WW7STR/PugetMesh Cougar";
        let report =
            meshcore::report::decode_to_json(&frame, &meshcore::report::DecodeOptions::default());
        assert_eq!(report["signature_valid"], true, "{report}");
        assert_eq!(report["name"], signed_name, "{report}");
        assert_eq!(report["unsigned_tail"], hex::encode(tail));

        let (item, outcome) = Decoder::default().item(msg(&hex::encode(&frame)), 7);
        assert_eq!(outcome, Outcome::Packet);
        let Item::Packet(p) = item else { panic!() };
        let stored = p.advert.unwrap().name.unwrap();
        assert_eq!(stored, signed_name);
        assert_eq!(report["name"], stored.as_str());
    }

    #[test]
    fn names_are_sanitized_and_bounded() {
        assert_eq!(sanitize_name("a\x00b\x1bc"), "abc");
        assert_eq!(sanitize_name(&"é".repeat(40)).len(), 32);
        assert_eq!(sanitize_name(&String::from_utf8_lossy(b"\xff")), "\u{fffd}");
    }
}
