//! What the writer stores: records built by the ingest layer from decoded input.

/// The observer a packet or status came from, keyed by the pubkey in its topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Observer {
    /// Observer public key, lowercase hex.
    pub id: String,
    /// `origin` from the message, if any.
    pub name: Option<String>,
    /// IATA region from the topic (or payload / source).
    pub iata: Option<String>,
}

/// A node role as meshlens names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Chat node (advert type 1).
    Companion,
    /// Repeater (type 2).
    Repeater,
    /// Room server (type 3).
    Room,
    /// Sensor (type 4).
    Sensor,
    /// Any other advert type; never guessed as a known role.
    Other(u8),
}

impl Role {
    /// From the advert's node type nibble.
    pub fn from_node_type(t: u8) -> Role {
        match t {
            1 => Role::Companion,
            2 => Role::Repeater,
            3 => Role::Room,
            4 => Role::Sensor,
            n => Role::Other(n & 0x0F),
        }
    }

    /// Stored and served name: `repeater`, `room`, `companion`, `sensor` or `type-N`.
    pub fn as_str(self) -> std::borrow::Cow<'static, str> {
        match self {
            Role::Companion => "companion".into(),
            Role::Repeater => "repeater".into(),
            Role::Room => "room".into(),
            Role::Sensor => "sensor".into(),
            Role::Other(n) => format!("type-{n}").into(),
        }
    }
}

/// A verified advert's content, to create or update a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Advert {
    /// Public key, lowercase hex.
    pub public_key: String,
    /// Sanitised name.
    pub name: Option<String>,
    /// Role.
    pub role: Role,
    /// Location in degrees, only when on Earth and not 0/0.
    pub location: Option<(f64, f64)>,
    /// The node's own clock (Unix seconds) from the advert.
    pub advert_time: u32,
    /// Its position lies outside the operator's geo filter (CoreScope's "foreign advert":
    /// heard through a bridge or a leak; kept and flagged, not dropped).
    pub foreign: bool,
}

/// One received packet, framed and decoded by the ingest layer.
#[derive(Debug, Clone, PartialEq)]
pub struct PacketRecord {
    /// Who heard it.
    pub observer: Observer,
    /// Ingest time, Unix ms.
    pub received_at: i64,
    /// The frame as heard.
    pub raw: Vec<u8>,
    /// Bytes of `raw` before the payload.
    pub head_len: usize,
    /// Packet hash as a big-endian integer (`PacketHash::to_u64`); stored as 16 hex digits.
    pub hash: u64,
    /// Header fields.
    pub route_type: u8,
    /// Payload type.
    pub payload_type: u8,
    /// Payload version.
    pub payload_version: u8,
    /// The path-length byte.
    pub path_len: u8,
    /// RF data, when the observer sent it.
    pub snr: Option<f64>,
    /// RSSI, dBm.
    pub rssi: Option<f64>,
    /// Score.
    pub score: Option<i64>,
    /// Airtime of the frame as the observer's firmware estimated it (meshcoretomqtt's
    /// `duration`, from the firmware's `time=`), ms.
    pub airtime_ms: Option<i64>,
    /// What the message's own `timestamp` says about the observer's clock.
    pub clock: Option<ClockReading>,
    /// Advert originator, for ADVERT (even when its signature fails).
    pub from_pubkey: Option<String>,
    /// Channel name for GRP_TXT/GRP_DATA: the configured name when a key decrypted it,
    /// otherwise `enc_<channel hash hex>`.
    pub channel: Option<String>,
    /// Region of a scoped flood, when known.
    pub scope: Option<String>,
    /// The node update, for adverts whose signature verified.
    pub advert: Option<Advert>,
    /// Why this packet must not change nodes (e.g. `invalid_signature`), recorded once per
    /// transmission in `rejected_packets`.
    pub reject_reason: Option<&'static str>,
}

/// What an envelope's own `timestamp` says about the observer's clock, against meshlens'
/// receipt of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockReading {
    /// The observer's clock is this far ahead of meshlens' (negative: behind), ms: envelope
    /// time minus receipt time. Includes the upload delay, which is milliseconds live.
    Offset(i64),
    /// A zone-less time too far from its arrival to be a clock error: the uploader wrote local
    /// time without its zone. The difference (mostly the observer's UTC offset), ms.
    Naive(i64),
}

/// How a broker delivered a status message, which decides whether it may make an observer
/// look alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// Delivered as it was published: the observer (or its broker, for a last will) spoke now.
    #[default]
    Live,
    /// Replayed from the broker's retained store on (re)subscribe: history of unknown age. It
    /// may fill in what is not known yet but never moves an observer's freshness forward.
    Retained,
}

/// An observer status message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status {
    /// Observer public key (lowercase hex), name and IATA.
    pub observer: Option<Observer>,
    /// Ingest time, Unix ms.
    pub received_at: i64,
    /// Live or replayed from the broker's retained store.
    pub delivery: Delivery,
    /// The status' own `timestamp`, Unix ms, when the uploader sent a plausible one (the
    /// ingest layer drops absurd values). The writer never lets it be later than
    /// `received_at`.
    pub sent_at: Option<i64>,
    /// `status` (online/offline…).
    pub status: Option<String>,
    /// Hardware model.
    pub model: Option<String>,
    /// Firmware version.
    pub firmware: Option<String>,
    /// Uploader version.
    pub client_version: Option<String>,
    /// Radio parameters string.
    pub radio: Option<String>,
    /// Battery, mV.
    pub battery_mv: Option<i64>,
    /// Uptime, s.
    pub uptime_secs: Option<i64>,
    /// Noise floor, dBm.
    pub noise_floor: Option<f64>,
    /// Airtime transmitting, s.
    pub tx_air_secs: Option<i64>,
    /// Airtime receiving, s.
    pub rx_air_secs: Option<i64>,
    /// Receive errors.
    pub recv_errors: Option<i64>,
    /// Packets waiting in the firmware's transmit queue.
    pub queue_len: Option<i64>,
    /// The firmware's error flags (stats-core `errors`, which meshcoretomqtt sends as
    /// `debug_flags`).
    pub debug_flags: Option<i64>,
    /// What the status' own `timestamp` says about the observer's clock (live statuses only:
    /// a retained one's time is history, not a reading).
    pub clock: Option<ClockReading>,
}

impl Status {
    /// Whether it carries any of the metrics kept as history (noise floor, battery, airtime,
    /// receive errors, uptime, queue, error flags): a status without any (a last will, a bare
    /// "online") is not a sample.
    pub fn has_metrics(&self) -> bool {
        self.noise_floor.is_some()
            || self.battery_mv.is_some()
            || self.tx_air_secs.is_some()
            || self.rx_air_secs.is_some()
            || self.recv_errors.is_some()
            || self.uptime_secs.is_some()
            || self.queue_len.is_some()
            || self.debug_flags.is_some()
    }
}

/// Input refused before it became a packet (an invalid frame), kept for inspection.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Observer id, when known.
    pub observer_id: Option<String>,
    /// Ingest time, Unix ms.
    pub received_at: i64,
    /// Stable reason code.
    pub reason: &'static str,
    /// The bytes, capped by the caller.
    pub raw: Option<Vec<u8>>,
}
