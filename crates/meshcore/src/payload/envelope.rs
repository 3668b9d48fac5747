//! The encrypted peer-datagram envelope (REQ, RESPONSE, TXT_MSG, PATH; §2) and ANON_REQ (§3.5).

use super::{PayloadError, head};
use crate::PayloadType;

/// `dest hash | src hash | MAC (2) | ciphertext`. The key is the ECDH secret of two peers,
/// so an analyzer without private keys sees only this envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// First byte of the destination's public key.
    pub dest_hash: u8,
    /// First byte of the sender's public key.
    pub src_hash: u8,
    /// Truncated HMAC-SHA256 over the ciphertext.
    pub mac: [u8; 2],
    /// AES-128-ECB blocks (a multiple of 16 bytes from real senders).
    pub ciphertext: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Minimum length: the four header bytes (firmware also wants one ciphertext byte).
    pub const MIN_LEN: usize = 4;

    /// Decodes an envelope of payload type `t` (used only for the error).
    pub fn decode(t: PayloadType, b: &'a [u8]) -> Result<Envelope<'a>, PayloadError> {
        let (h, ciphertext) = head::<4>(t, b)?;
        Ok(Envelope {
            dest_hash: h[0],
            src_hash: h[1],
            mac: [h[2], h[3]],
            ciphertext,
        })
    }

    /// Appends the wire bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.dest_hash, self.src_hash, self.mac[0], self.mac[1]]);
        out.extend_from_slice(self.ciphertext);
    }
}

/// `dest hash | sender public key (32) | MAC (2) | ciphertext` (§3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnonReq<'a> {
    /// First byte of the destination's public key.
    pub dest_hash: u8,
    /// The sender's real Ed25519 public key.
    pub sender_pubkey: &'a [u8; 32],
    /// Truncated HMAC-SHA256 over the ciphertext.
    pub mac: [u8; 2],
    /// AES-128-ECB blocks.
    pub ciphertext: &'a [u8],
}

impl<'a> AnonReq<'a> {
    /// Minimum length (firmware wants one more ciphertext byte).
    pub const MIN_LEN: usize = 35;

    /// Decodes an ANON_REQ payload.
    pub fn decode(b: &'a [u8]) -> Result<AnonReq<'a>, PayloadError> {
        let short = PayloadError::TooShort {
            payload_type: PayloadType::AnonReq,
            need: Self::MIN_LEN,
            got: b.len(),
        };
        let (&dest_hash, rest) = b.split_first().ok_or(short)?;
        let (sender_pubkey, rest) = rest.split_first_chunk::<32>().ok_or(short)?;
        let (mac, ciphertext) = rest.split_first_chunk::<2>().ok_or(short)?;
        Ok(AnonReq {
            dest_hash,
            sender_pubkey,
            mac: *mac,
            ciphertext,
        })
    }

    /// Appends the wire bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.dest_hash);
        out.extend_from_slice(self.sender_pubkey);
        out.extend_from_slice(&self.mac);
        out.extend_from_slice(self.ciphertext);
    }
}
