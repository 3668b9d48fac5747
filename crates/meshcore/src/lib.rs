//! The MeshCore over-the-air packet format: decode, encode and the crypto around it.
//!
//! This crate is *sans-IO*: it turns bytes into typed packets and back and never touches a
//! socket, a file or a clock. Everything else in meshlens (ingest, store, analytics, the
//! simulator) builds on it. The normative spec is `shared/docs/wire-format.md`; section numbers
//! in the docs below (§1.3 and so on) refer to it.
//!
//! Layers, outermost first:
//! - [`Packet`]: framing (§1): header, transport codes, path-length byte, path, payload.
//!   Framing problems are [`FrameError`]s with stable codes.
//! - [`Payload`]: the per-type payload layouts (§2–§3). Problems there are [`PayloadError`]s
//!   and never invalidate the frame.
//! - [`crypto`]: channel keys and group-message decryption (§5), advert signatures (§4).
//! - [`region`]: transport-code scopes (§1.2).
//! - [`report`]: the JSON rendering used by `meshlens decode` and the API.
//!
//! ```
//! use meshcore::{Packet, Payload};
//! let bytes = hex::decode("0D04B891647EBB40BA70").unwrap();
//! let packet = Packet::decode(&bytes).unwrap();
//! assert_eq!(packet.hash().to_string(), "bbf95563c6eec9fe");
//! assert_eq!(packet.hop_count(), 4);
//! let Ok(Payload::Ack(ack)) = packet.payload() else { panic!() };
//! assert_eq!(ack.crc, [0xbb, 0x40, 0xba, 0x70]);
//! ```
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod airtime;
pub mod crypto;
mod frame;
mod hash;
mod header;
mod path;
pub mod payload;
pub mod region;
pub mod report;

pub use frame::{FrameError, FrameErrorKind, Packet, Route, TransportCodes};
pub use hash::PacketHash;
pub use header::{Header, PayloadType, PayloadVersion, RouteType};
pub use path::{PathHashSize, PathLen};
pub use payload::{Payload, PayloadError};

/// The first `N` bytes of a digest (callers pass `N` ≤ `M`; missing bytes would be zero).
pub(crate) fn prefix<const N: usize, const M: usize>(digest: [u8; M]) -> [u8; N] {
    std::array::from_fn(|i| digest.get(i).copied().unwrap_or(0))
}

/// Largest payload a frame may carry (`MAX_PACKET_PAYLOAD`).
pub const MAX_PAYLOAD: usize = 184;
/// Largest path, in bytes (`MAX_PATH_SIZE`).
pub const MAX_PATH_BYTES: usize = 64;
/// Largest legal frame: header, transport codes, path-length byte, path, payload.
pub const MAX_FRAME: usize = 1 + 4 + 1 + MAX_PATH_BYTES + MAX_PAYLOAD;
