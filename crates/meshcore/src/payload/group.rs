//! GRP_TXT and GRP_DATA (§3.4): channel messages, and their decrypted plaintexts.

use super::{PayloadError, head};
use crate::PayloadType;

/// `channel hash | MAC (2) | ciphertext`. Decrypt with [`crate::crypto::Keyring`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group<'a> {
    /// First byte of SHA-256 of the channel key: a filter, not an identifier.
    pub channel_hash: u8,
    /// Truncated HMAC-SHA256 over the ciphertext.
    pub mac: [u8; 2],
    /// AES-128-ECB blocks.
    pub ciphertext: &'a [u8],
}

impl<'a> Group<'a> {
    /// Minimum length (firmware wants one ciphertext byte more).
    pub const MIN_LEN: usize = 3;

    /// Decodes a group payload of type `t` (used only for the error).
    pub fn decode(t: PayloadType, b: &'a [u8]) -> Result<Group<'a>, PayloadError> {
        let (h, ciphertext) = head::<3>(t, b)?;
        Ok(Group {
            channel_hash: h[0],
            mac: [h[1], h[2]],
            ciphertext,
        })
    }

    /// Appends the wire bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.channel_hash, self.mac[0], self.mac[1]]);
        out.extend_from_slice(self.ciphertext);
    }
}

/// A decrypted GRP_TXT: `timestamp u32 | flags u8 | "<sender>: <message>" NUL padding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupText<'a> {
    /// Sender's clock, Unix seconds.
    pub timestamp: u32,
    /// Upper 6 bits: text type (0 = plain); low 2 bits: attempt.
    pub flags: u8,
    /// The text up to the first NUL.
    pub text: &'a str,
}

impl<'a> GroupText<'a> {
    /// Parses a plaintext; `None` if shorter than 5 bytes or the text is not UTF-8.
    pub fn decode(plain: &'a [u8]) -> Option<GroupText<'a>> {
        let (h, rest) = plain.split_first_chunk::<5>()?;
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let text = std::str::from_utf8(rest.get(..end)?).ok()?;
        Some(GroupText {
            timestamp: u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
            flags: h[4],
            text,
        })
    }

    /// Text type (upper 6 bits of flags); firmware only shows type 0 on channels.
    pub const fn txt_type(&self) -> u8 {
        self.flags >> 2
    }

    /// Send attempt (low 2 bits of flags).
    pub const fn attempt(&self) -> u8 {
        self.flags & 3
    }

    /// Splits `"<sender>: <message>"` at the first `": "` when it sits at byte 1..49 and the
    /// prefix has no `:`, `[` or `]`. The sender is unauthenticated text.
    pub fn sender_and_message(&self) -> Option<(&'a str, &'a str)> {
        let i = self.text.find(": ")?;
        let sender = self.text.get(..i)?;
        if !(1..50).contains(&i) || sender.contains([':', '[', ']']) {
            return None;
        }
        Some((sender, self.text.get(i + 2..)?))
    }

    /// Whether the text looks like a message rather than the output of a wrong key: at most
    /// two control characters besides tab and newlines.
    pub fn is_plausible(&self) -> bool {
        self.text
            .chars()
            .filter(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
            .nth(2)
            .is_none()
    }

    /// The plaintext before encryption (without padding).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        out.push(self.flags);
        out.extend_from_slice(self.text.as_bytes());
    }
}

/// A decrypted GRP_DATA: `data type u16 | data length u8 | data | padding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupData<'a> {
    /// Application data type (0xFFFF = developer/experimental).
    pub data_type: u16,
    /// The data (length from the length byte).
    pub data: &'a [u8],
}

impl<'a> GroupData<'a> {
    /// Parses a plaintext; `None` if the declared data does not fit.
    pub fn decode(plain: &'a [u8]) -> Option<GroupData<'a>> {
        let (h, rest) = plain.split_first_chunk::<3>()?;
        Some(GroupData {
            data_type: u16::from_le_bytes([h[0], h[1]]),
            data: rest.get(..usize::from(h[2]))?,
        })
    }

    /// The plaintext before encryption (without padding); data is cut at 255 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let data = self.data.get(..255).unwrap_or(self.data);
        out.extend_from_slice(&self.data_type.to_le_bytes());
        out.push(data.len() as u8);
        out.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> GroupText<'_> {
        GroupText {
            timestamp: 0,
            flags: 0,
            text: t,
        }
    }

    #[test]
    fn sender_split_rules() {
        assert_eq!(text("a: b").sender_and_message(), Some(("a", "b")));
        assert_eq!(text(": b").sender_and_message(), None);
        assert_eq!(text("[x]: b").sender_and_message(), None);
        assert_eq!(text("no separator").sender_and_message(), None);
        let long = format!("{}: b", "x".repeat(50));
        assert_eq!(text(&long).sender_and_message(), None);
    }

    #[test]
    fn plausibility_counts_control_characters() {
        assert!(text("fine\nline").is_plausible());
        assert!(text("a\u{1}b\u{2}").is_plausible());
        assert!(!text("\u{1}\u{2}\u{3}").is_plausible());
    }

    #[test]
    fn group_data_must_fit() {
        assert!(GroupData::decode(&[0xff, 0xff, 5, 1, 2]).is_none());
        let d = GroupData::decode(&[0xff, 0xff, 2, 1, 2, 0]).unwrap();
        assert_eq!(d.data, &[1, 2]);
    }
}
