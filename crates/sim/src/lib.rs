//! A MeshCore mesh simulator with ground truth, for the demo, for load, and for scoring the
//! capability inference against a known answer.
//!
//! Nodes sit around a centre with roles mixed as in real meshes; links follow distance, with
//! loss and SNR/RSSI falling off with it. Each node runs legacy firmware (≤ 1.13: drops every
//! packet with 2- or 3-byte path hashes, adverts in 1-byte mode) or modern firmware (≥ 1.14:
//! forwards every size; adverts at its `path.hash.mode`; companions send at their chosen size).
//! Floods grow their path per hop, zero-hop adverts carry `0x00`, TRACE carries SNRs. Every frame
//! is built with the `meshcore` encoder (signed adverts, channel messages encrypted for real),
//! and what observers hear comes out as [`Heard`] records. The same seed gives the same mesh.
//!
//! Each [`Heard`] also carries its truth path: the node that originated the packet and, in
//! path order, the node behind every hop of the frame's path ([`Heard::relays`]), so that a
//! hop resolver (which sees only 1-, 2- or 3-byte key prefixes) can be scored against the
//! answer. [`collision_mesh`] is the hard case for it: 1,500 nodes, 70 % of them forwarding,
//! so almost every 1-byte prefix names several candidate relays.

use std::collections::VecDeque;

use meshcore::crypto::Channel;
use meshcore::payload::{Ack, Advert, AppData, Envelope, GroupText, Location, NodeType, Trace};
use meshcore::{Packet, PathHashSize, PathLen, PayloadType, Route};
use serde_json::{Value, json};

/// Deterministic pseudo-random numbers (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (0 is replaced by a constant).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Node role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Companion (chat node): does not forward.
    Companion,
    /// Repeater.
    Repeater,
    /// Room server (forwards by default).
    Room,
    /// Sensor (forwards by default).
    Sensor,
}

impl Role {
    fn node_type(self) -> NodeType {
        match self {
            Role::Companion => NodeType::CHAT,
            Role::Repeater => NodeType::REPEATER,
            Role::Room => NodeType::ROOM,
            Role::Sensor => NodeType::SENSOR,
        }
    }

    /// meshlens' role name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Companion => "companion",
            Role::Repeater => "repeater",
            Role::Room => "room",
            Role::Sensor => "sensor",
        }
    }

    fn forwards(self) -> bool {
        !matches!(self, Role::Companion)
    }
}

/// Firmware generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// ≤ 1.13: drops multi-byte paths.
    Legacy,
    /// ≥ 1.14: forwards every size.
    Modern,
}

/// One simulated node.
#[derive(Debug, Clone)]
pub struct SimNode {
    /// Ed25519 seed.
    pub seed: [u8; 32],
    /// Public key.
    pub public_key: [u8; 32],
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Firmware.
    pub firmware: Firmware,
    /// 0, 1 or 2: size of its own adverts and messages minus one (always 0 on legacy).
    pub path_hash_mode: u8,
    /// Degrees.
    pub lat: f64,
    /// Degrees.
    pub lon: f64,
    /// Whether it publishes what it hears to MQTT.
    pub is_observer: bool,
}

impl SimNode {
    /// Hex public key.
    pub fn key_hex(&self) -> String {
        hex::encode(self.public_key)
    }

    fn hash_size(&self) -> PathHashSize {
        PathHashSize::from_bytes(usize::from(self.path_hash_mode) + 1).unwrap_or(PathHashSize::One)
    }
}

/// What one observer heard.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    /// Simulated time, Unix ms.
    pub at_ms: i64,
    /// Index of the observing node.
    pub observer: usize,
    /// The frame.
    pub frame: Vec<u8>,
    /// dB.
    pub snr: f64,
    /// dBm.
    pub rssi: f64,
    /// Index of the node that originated the packet (the advert's or message's sender; for
    /// a direct reply, the replying node).
    pub origin: usize,
    /// Ground truth of the path: node indices, one per hop of the frame's path and in the
    /// same order as its path bytes, each the relay whose key prefix that hop is. A flood's
    /// are the relays that forwarded this copy, first one first; a direct packet's are the
    /// relays still ahead of it on its route. Empty for zero-hop packets, and for TRACE,
    /// whose path bytes are SNR samples rather than hops. An observer that forwarded a flood
    /// can hear it echoed back, so it may appear among the relays of its own observation.
    pub relays: Vec<usize>,
}

/// Mesh parameters.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed.
    pub seed: u64,
    /// Number of nodes.
    pub nodes: usize,
    /// Number of observers (chosen among relays).
    pub observers: usize,
    /// Share of nodes on modern firmware.
    pub modern_share: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            nodes: 60,
            observers: 6,
            modern_share: 0.6,
        }
    }
}

/// The mix of roles nodes are drawn with: each node draws one uniform number `x` and is a
/// companion below the first bound, a repeater below the second, a room server below the
/// third and a sensor above it. Every mix draws the same random numbers while generating, so
/// two meshes of the same [`SimConfig`] have the same keys, firmware and places and differ in
/// roles, names and which relays observe (and so in their traffic).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoleMix {
    companion_below: f64,
    repeater_below: f64,
    room_below: f64,
}

impl Default for RoleMix {
    /// As in real meshes: 55 % companions, 30 % repeaters, 8 % room servers, 7 % sensors.
    fn default() -> Self {
        RoleMix {
            companion_below: 0.55,
            repeater_below: 0.85,
            room_below: 0.93,
        }
    }
}

impl RoleMix {
    /// A mix where `share` (clamped to 0..=1) of the nodes forward (repeaters, room servers
    /// and sensors, split 30 : 8 : 7 as in the default mix) and the rest are companions.
    pub fn forwarding(share: f64) -> RoleMix {
        let share = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            0.45
        };
        let companion_below = 1.0 - share;
        RoleMix {
            companion_below,
            repeater_below: companion_below + share * 30.0 / 45.0,
            room_below: companion_below + share * 38.0 / 45.0,
        }
    }

    /// The heavy-collision mix: 70 % forwarding nodes.
    pub fn collision() -> RoleMix {
        RoleMix::forwarding(0.7)
    }

    /// The expected share of forwarding nodes.
    pub fn forwarding_share(&self) -> f64 {
        1.0 - self.companion_below
    }

    fn role(&self, x: f64) -> Role {
        match x {
            x if x < self.companion_below => Role::Companion,
            x if x < self.repeater_below => Role::Repeater,
            x if x < self.room_below => Role::Room,
            _ => Role::Sensor,
        }
    }
}

/// The heavy-collision scenario, for scoring hop resolvers on the hard case: 1,500 nodes, 70 %
/// of them forwarding (about 1,050 relays for 256 one-byte prefixes, so nearly every 1-byte
/// hop has several candidates), 40 observers, spread over the usual disc whose area grows
/// with the node count (about 125 km radius), so same-prefix relays are often far apart.
/// Generate it with [`Mesh::generate_with`]; `nodes` and `observers` may be changed first.
pub fn collision_mesh(seed: u64) -> (SimConfig, RoleMix) {
    (
        SimConfig {
            seed,
            nodes: 1_500,
            observers: 40,
            ..SimConfig::default()
        },
        RoleMix::collision(),
    )
}

/// Radio range, km.
const RANGE_KM: f64 = 9.0;
/// Most hops a flood travels in the simulation.
const MAX_HOPS: usize = 8;

/// The simulated mesh.
#[derive(Debug, Clone)]
pub struct Mesh {
    /// All nodes.
    pub nodes: Vec<SimNode>,
    neighbours: Vec<Vec<(usize, f64)>>,
    rng: Rng,
    public: Channel,
    test: Channel,
    /// Per node: whether it forwarded a multi-byte packet that an observer then heard with
    /// the node's hop in its path (ground truth for "active, observable capable relay").
    pub forwarded_multibyte: Vec<bool>,
    counter: u32,
}

fn distance_km(a: &SimNode, b: &SimNode) -> f64 {
    let dlat = (a.lat - b.lat) * 111.0;
    let dlon = (a.lon - b.lon) * 111.0 * a.lat.to_radians().cos();
    (dlat * dlat + dlon * dlon).sqrt()
}

/// One radio link over `d_km`: `None` when the packet is lost, else (SNR dB, RSSI dBm).
fn link(rng: &mut Rng, d_km: f64) -> Option<(f64, f64)> {
    // Loss grows with distance; SNR and RSSI fall with it.
    let loss = (d_km / RANGE_KM).powi(2) * 0.6;
    if rng.unit() < loss {
        return None;
    }
    let snr = 12.0 - 20.0 * (d_km.max(0.05)).log10() * 0.9 + (rng.unit() - 0.5) * 3.0;
    let rssi = -60.0 - 25.0 * (d_km.max(0.05)).log10() - rng.unit() * 6.0;
    Some(((snr * 4.0).round() / 4.0, rssi.round()))
}

impl Mesh {
    /// A mesh from `cfg` with the default role mix; the same config gives the same mesh.
    pub fn generate(cfg: &SimConfig) -> Mesh {
        Mesh::generate_with(cfg, &RoleMix::default())
    }

    /// A mesh from `cfg` whose roles are drawn with `roles`; the same inputs give the same
    /// mesh, and with [`RoleMix::default`] it is the one [`Mesh::generate`] makes.
    pub fn generate_with(cfg: &SimConfig, roles: &RoleMix) -> Mesh {
        let mut rng = Rng::new(cfg.seed);
        let n = cfg.nodes.max(2);
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let mut seed = [0u8; 32];
            for chunk in seed.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            let role = roles.role(rng.unit());
            let firmware = if rng.unit() < cfg.modern_share {
                Firmware::Modern
            } else {
                Firmware::Legacy
            };
            let path_hash_mode = match (firmware, rng.unit()) {
                (Firmware::Legacy, _) => 0,
                (Firmware::Modern, x) if x < 0.4 => 0,
                (Firmware::Modern, x) if x < 0.8 => 1,
                _ => 2,
            };
            // Spread uniformly over a disc around Seattle whose area grows with the node count
            // (25 km radius for 60 nodes), so density, and how far a flood reaches, stay
            // realistic at any size.
            let radius = 25.0 * (n as f64 / 60.0).sqrt().max(1.0);
            let r = radius * rng.unit().sqrt();
            let a = rng.unit() * std::f64::consts::TAU;
            nodes.push(SimNode {
                public_key: meshcore::crypto::public_key_of(&seed),
                seed,
                name: format!("{}-{i:03}", ["Comp", "Rpt", "Room", "Sens"][role as usize]),
                role,
                firmware,
                path_hash_mode,
                lat: 47.6 + r * a.sin() / 111.0,
                lon: -122.3 + r * a.cos() / (111.0 * 47.6f64.to_radians().cos()),
                is_observer: false,
            });
        }
        // Observers: relays spread around (every k-th relay), at least one.
        let relays: Vec<usize> = (0..n).filter(|&i| nodes[i].role.forwards()).collect();
        let want = cfg.observers.clamp(1, relays.len().max(1));
        for k in 0..want {
            if let Some(&i) = relays.get(k * relays.len() / want) {
                nodes[i].is_observer = true;
            }
        }
        let mut neighbours = vec![Vec::new(); n];
        for i in 0..n {
            for j in 0..n {
                let d = distance_km(&nodes[i], &nodes[j]);
                if i != j && d < RANGE_KM {
                    neighbours[i].push((j, d));
                }
            }
        }
        Mesh {
            forwarded_multibyte: vec![false; n],
            nodes,
            neighbours,
            rng,
            public: Channel::public(),
            test: Channel::hashtag("test"),
            counter: 0,
        }
    }

    /// Ground truth as JSON: `{"nodes": [{public_key, name, role, firmware, multibyte_capable,
    /// path_hash_mode, lat, lon, is_observer}]}`.
    pub fn truth(&self) -> Value {
        json!({"nodes": self.nodes.iter().map(|n| json!({
            "public_key": n.key_hex(),
            "name": n.name,
            "role": n.role.name(),
            "firmware": if n.firmware == Firmware::Modern { "1.14.1" } else { "1.13.0" },
            "multibyte_capable": n.firmware == Firmware::Modern,
            "path_hash_mode": n.path_hash_mode,
            "lat": n.lat,
            "lon": n.lon,
            "is_observer": n.is_observer,
        })).collect::<Vec<_>>()})
    }

    /// Indices of the observers.
    pub fn observers(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_observer)
            .collect()
    }

    /// Whether `b` is within radio range of `a` (can hear what `a` transmits). Every
    /// transmission in the simulation goes to a neighbour in this sense: along a truth path,
    /// origin → first relay → … → last relay → observer for floods, and relay → next relay
    /// for direct routes.
    pub fn is_neighbour(&self, a: usize, b: usize) -> bool {
        self.neighbours
            .get(a)
            .is_some_and(|ns| ns.iter().any(|&(n, _)| n == b))
    }

    /// The nodes within radio range of `a`, with their distance in km.
    pub fn neighbours(&self, a: usize) -> &[(usize, f64)] {
        self.neighbours.get(a).map_or(&[], Vec::as_slice)
    }

    /// Distance between nodes `a` and `b`, km (as the radio model measures it); `None` for
    /// an index out of range.
    pub fn distance_km(&self, a: usize, b: usize) -> Option<f64> {
        Some(distance_km(self.nodes.get(a)?, self.nodes.get(b)?))
    }

    /// Floods a payload from `origin` with path hash `size`: every observer hearing a copy
    /// yields a [`Heard`] with the path as it arrived and the relays behind it.
    fn flood(
        &mut self,
        at_ms: i64,
        origin: usize,
        t: PayloadType,
        size: PathHashSize,
        payload: &[u8],
        out: &mut Vec<Heard>,
    ) {
        let mut forwarded = vec![false; self.nodes.len()];
        if let Some(f) = forwarded.get_mut(origin) {
            *f = true;
        }
        // Each entry: transmitter, path so far, hops, and the relays on that path.
        let mut queue: VecDeque<(usize, Vec<u8>, usize, Vec<usize>)> =
            VecDeque::from([(origin, Vec::new(), 0, Vec::new())]);
        while let Some((tx, path, hops, relays)) = queue.pop_front() {
            // Borrow the fields apart (no clone of the neighbour list per transmission).
            for &(rx, d) in &self.neighbours[tx] {
                let Some((snr, rssi)) = link(&mut self.rng, d) else {
                    continue;
                };
                let Some(pl) = PathLen::new(size, hops as u8) else {
                    continue;
                };
                let node = &self.nodes[rx];
                if node.is_observer
                    && let Some(p) = Packet::new(Route::Flood, t, pl, &path, payload)
                {
                    if size != PathHashSize::One {
                        for &relay in &relays {
                            self.forwarded_multibyte[relay] = true;
                        }
                    }
                    out.push(Heard {
                        at_ms: at_ms + hops as i64 * 400,
                        observer: rx,
                        frame: p.to_bytes(),
                        snr,
                        rssi,
                        origin,
                        relays: relays.clone(),
                    });
                }
                let legacy_drop = node.firmware == Firmware::Legacy && size != PathHashSize::One;
                if !node.role.forwards() || legacy_drop || hops + 1 > MAX_HOPS || forwarded[rx] {
                    continue;
                }
                forwarded[rx] = true;
                let mut next = path.clone();
                next.extend_from_slice(&node.public_key[..size.bytes()]);
                if next.len() > meshcore::MAX_PATH_BYTES {
                    continue;
                }
                let mut chain = relays.clone();
                chain.push(rx);
                queue.push_back((rx, next, hops + 1, chain));
            }
        }
    }

    /// A zero-hop direct packet (`0x00` path-length byte), heard by neighbouring observers.
    fn zero_hop(
        &mut self,
        at_ms: i64,
        origin: usize,
        t: PayloadType,
        payload: &[u8],
        out: &mut Vec<Heard>,
    ) {
        for &(rx, d) in &self.neighbours[origin] {
            if !self.nodes[rx].is_observer {
                continue;
            }
            let Some((snr, rssi)) = link(&mut self.rng, d) else {
                continue;
            };
            if let Some(p) = Packet::new(Route::Direct, t, PathLen::ZERO, &[], payload) {
                out.push(Heard {
                    at_ms,
                    observer: rx,
                    frame: p.to_bytes(),
                    snr,
                    rssi,
                    origin,
                    relays: Vec::new(),
                });
            }
        }
    }

    /// An encrypted peer datagram (REQ, RESPONSE, TXT_MSG, PATH) from `src` to `dest`; the
    /// ciphertext is opaque to observers, so its content only needs to be unique.
    fn envelope(&self, src: usize, dest: usize, filler: &[u8]) -> Vec<u8> {
        let mut ct = filler.to_vec();
        if let Some(head) = ct.get_mut(..4) {
            head.copy_from_slice(&self.counter.to_le_bytes());
        }
        let mut payload = Vec::new();
        Envelope {
            dest_hash: self.nodes[dest].public_key[0],
            src_hash: self.nodes[src].public_key[0],
            mac: [0x5a, 0xa5],
            ciphertext: &ct,
        }
        .encode(&mut payload);
        payload
    }

    /// A direct route from `origin` as a node learns one from a PATH return: up to three
    /// relays by a walk over forwarding neighbours, then a destination next to the last relay.
    /// A route of 2- or 3-byte hashes was learnt from a flood of that size, which legacy relays
    /// drop, so only modern relays can be on it.
    fn direct_route(&mut self, origin: usize, size: PathHashSize) -> Option<Vec<usize>> {
        let mut route = vec![origin];
        let relays = 1 + self.rng.below(3);
        for _ in 0..relays {
            let last = route[route.len() - 1];
            let options: Vec<usize> = self.neighbours[last]
                .iter()
                .map(|&(n, _)| n)
                .filter(|&n| {
                    let node = &self.nodes[n];
                    node.role.forwards()
                        && !route.contains(&n)
                        && (size == PathHashSize::One || node.firmware == Firmware::Modern)
                })
                .collect();
            if options.is_empty() {
                break;
            }
            route.push(options[self.rng.below(options.len())]);
        }
        let last = route[route.len() - 1];
        let dests: Vec<usize> = self.neighbours[last]
            .iter()
            .map(|&(n, _)| n)
            .filter(|n| !route.contains(n))
            .collect();
        if route.len() < 2 || dests.is_empty() {
            return None;
        }
        route.push(dests[self.rng.below(dests.len())]);
        Some(route)
    }

    /// Sends a payload along `route` (origin, relays..., destination) as the firmware does:
    /// the path is the remaining relays, and each relay removes itself before retransmitting,
    /// so observers hear the path shrink hop by hop (down to a count of 0 that keeps the size
    /// bits); each observation's relays are the route's remaining relays. A lost link ends
    /// the journey.
    fn direct(
        &mut self,
        at_ms: i64,
        route: &[usize],
        t: PayloadType,
        size: PathHashSize,
        payload: &[u8],
        out: &mut Vec<Heard>,
    ) {
        let Some(last) = route.len().checked_sub(1) else {
            return;
        };
        for k in 0..last {
            let tx = route[k];
            let remaining = route.get(k + 1..last).unwrap_or_default();
            let path: Vec<u8> = remaining
                .iter()
                .flat_map(|&r| self.nodes[r].public_key[..size.bytes()].to_vec())
                .collect();
            let Some(pl) = PathLen::new(size, remaining.len() as u8) else {
                return;
            };
            let Some(frame) =
                Packet::new(Route::Direct, t, pl, &path, payload).map(|p| p.to_bytes())
            else {
                return;
            };
            let mut next_heard = false;
            for &(rx, d) in &self.neighbours[tx] {
                let is_next = rx == route[k + 1];
                if !self.nodes[rx].is_observer && !is_next {
                    continue;
                }
                let Some((snr, rssi)) = link(&mut self.rng, d) else {
                    continue;
                };
                next_heard |= is_next;
                if self.nodes[rx].is_observer {
                    out.push(Heard {
                        at_ms: at_ms + k as i64 * 400,
                        observer: rx,
                        frame: frame.clone(),
                        snr,
                        rssi,
                        origin: route[0],
                        relays: remaining.to_vec(),
                    });
                }
            }
            let next = &self.nodes[route[k + 1]];
            let legacy_drop = next.firmware == Firmware::Legacy && size != PathHashSize::One;
            if !next_heard || (k + 1 < last && legacy_drop) {
                return;
            }
        }
    }

    fn advert_payload(&self, i: usize, at_ms: i64) -> Vec<u8> {
        let n = &self.nodes[i];
        let mut app = Vec::new();
        let loc = Location {
            lat_raw: (n.lat * 1e6) as i32,
            lon_raw: (n.lon * 1e6) as i32,
        };
        AppData::new(n.role.node_type(), Some(loc), Some(n.name.as_bytes())).encode(&mut app);
        let mut payload = Vec::new();
        Advert::encode_signed(&n.seed, (at_ms / 1000) as u32, &app, &mut payload);
        payload
    }

    /// Every node adverts once (flood, at its own mode): the burst a fresh mesh starts with.
    pub fn advert_all(&mut self, at_ms: i64) -> Vec<Heard> {
        let mut out = Vec::new();
        for i in 0..self.nodes.len() {
            let payload = self.advert_payload(i, at_ms);
            let size = self.nodes[i].hash_size();
            self.flood(
                at_ms + i as i64 * 50,
                i,
                PayloadType::Advert,
                size,
                &payload,
                &mut out,
            );
        }
        out
    }

    /// One random traffic event at `at_ms` and everything observers heard of it.
    pub fn step(&mut self, at_ms: i64) -> Vec<Heard> {
        let mut out = Vec::new();
        let i = self.rng.below(self.nodes.len());
        self.counter = self.counter.wrapping_add(1);
        let size = self.nodes[i].hash_size();
        match self.rng.below(100) {
            0..=14 => {
                let payload = self.advert_payload(i, at_ms);
                if self.nodes[i].role.forwards() && self.rng.unit() < 0.5 {
                    // Repeaters' periodic local advert: zero hop, 0x00.
                    self.zero_hop(at_ms, i, PayloadType::Advert, &payload, &mut out);
                } else {
                    self.flood(at_ms, i, PayloadType::Advert, size, &payload, &mut out);
                }
            }
            15..=54 => {
                let (channel, words) = if self.rng.unit() < 0.7 {
                    (&self.public, "hello mesh")
                } else {
                    (&self.test, "test ping")
                };
                let text = format!("{}: {words} #{}", self.nodes[i].name, self.counter);
                let mut plain = Vec::new();
                GroupText {
                    timestamp: (at_ms / 1000) as u32,
                    flags: 0,
                    text: &text,
                }
                .encode(&mut plain);
                let mut payload = Vec::new();
                channel.encrypt_into(&plain, &mut payload);
                self.flood(at_ms, i, PayloadType::GrpTxt, size, &payload, &mut out);
            }
            55..=64 => {
                // A flood message to a peer, and the peer's PATH return (a flood too) that
                // teaches the sender a direct route.
                let dest = self.rng.below(self.nodes.len());
                let payload = self.envelope(i, dest, &[0u8; 16]);
                self.flood(at_ms, i, PayloadType::TxtMsg, size, &payload, &mut out);
                if dest != i {
                    let back = self.envelope(dest, i, &[1u8; 32]);
                    let dest_size = self.nodes[dest].hash_size();
                    self.flood(
                        at_ms + 2_000,
                        dest,
                        PayloadType::Path,
                        dest_size,
                        &back,
                        &mut out,
                    );
                }
            }
            65..=79 => {
                // Direct traffic on a learnt route: a message and its ACK, or a request and
                // its response, each way along the route.
                if let Some(route) = self.direct_route(i, size) {
                    let dest = route[route.len() - 1];
                    let (there, back) = if self.rng.unit() < 0.5 {
                        (PayloadType::TxtMsg, PayloadType::Ack)
                    } else {
                        (PayloadType::Req, PayloadType::Response)
                    };
                    let payload = self.envelope(i, dest, &[2u8; 16]);
                    self.direct(at_ms, &route, there, size, &payload, &mut out);
                    let reply = if back == PayloadType::Ack {
                        let mut p = Vec::new();
                        Ack {
                            crc: self.counter.to_le_bytes(),
                            extension: &[],
                        }
                        .encode(&mut p);
                        p
                    } else {
                        self.envelope(dest, i, &[3u8; 32])
                    };
                    let reversed: Vec<usize> = route.iter().rev().copied().collect();
                    self.direct(at_ms + 1_500, &reversed, back, size, &reply, &mut out);
                }
            }
            80..=94 => {
                let mut payload = Vec::new();
                Ack {
                    crc: self.counter.to_le_bytes(),
                    extension: &[],
                }
                .encode(&mut payload);
                self.flood(at_ms, i, PayloadType::Ack, size, &payload, &mut out);
            }
            _ => {
                // A TRACE along a chain of neighbours: route hashes in the payload, SNRs in
                // the path; observers on the route hear it with the SNRs collected so far.
                let mut route = vec![i];
                while route.len() < 4 {
                    let last = route[route.len() - 1];
                    let Some(&(next, _)) = self.neighbours[last].first() else {
                        break;
                    };
                    if route.contains(&next) {
                        break;
                    }
                    route.push(next);
                }
                let hops: Vec<u8> = route[1..]
                    .iter()
                    .map(|&r| self.nodes[r].public_key[0])
                    .collect();
                let mut payload = Vec::new();
                Trace {
                    tag: self.counter,
                    auth: 0,
                    flags: 0,
                    route: &hops,
                }
                .encode(&mut payload);
                let mut snrs = Vec::new();
                for w in route.windows(2) {
                    let d = distance_km(&self.nodes[w[0]], &self.nodes[w[1]]);
                    let Some((snr, rssi)) = link(&mut self.rng, d) else {
                        break;
                    };
                    snrs.push((snr * 4.0) as i8 as u8);
                    if self.nodes[w[1]].is_observer
                        && let Some(pl) = PathLen::new(PathHashSize::One, snrs.len() as u8)
                        && let Some(p) =
                            Packet::new(Route::Direct, PayloadType::Trace, pl, &snrs, &payload)
                    {
                        out.push(Heard {
                            at_ms,
                            observer: w[1],
                            frame: p.to_bytes(),
                            snr,
                            rssi,
                            origin: i,
                            // The path holds SNR samples, not hops.
                            relays: Vec::new(),
                        });
                    }
                }
            }
        }
        out
    }
}
