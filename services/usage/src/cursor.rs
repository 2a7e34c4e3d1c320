//! The opaque paging cursor of `GET /v1/tokens/{id}/requests`: the window's
//! start and the position of the last record returned, base64url. Positions
//! are record keys, so a cursor stays valid (and exact) while new records
//! arrive, and the next page starts strictly after the last one seen.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ulid::Ulid;

use super::index::Position;

const VERSION: u8 = 1;
const LEN: usize = 1 + 8 + 8 + 16;
/// Longest cursor text accepted (a valid one is 44 characters).
const MAX_TEXT: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The window's `from` (ms), inclusive.
    pub from_ms: u64,
    /// Continue strictly before this record.
    pub position: Position,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a cursor this service issued")]
pub struct BadCursor;

impl Cursor {
    pub fn encode(&self) -> String {
        let mut bytes = [0u8; LEN];
        bytes[0] = VERSION;
        bytes[1..9].copy_from_slice(&self.from_ms.to_be_bytes());
        bytes[9..17].copy_from_slice(&self.position.at_ms.to_be_bytes());
        bytes[17..33].copy_from_slice(&self.position.id.to_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(text: &str) -> Result<Self, BadCursor> {
        if text.len() > MAX_TEXT {
            return Err(BadCursor);
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| BadCursor)?;
        if bytes.len() != LEN || bytes[0] != VERSION {
            return Err(BadCursor);
        }
        let u64_at = |i: usize| -> Result<u64, BadCursor> {
            Ok(u64::from_be_bytes(
                bytes[i..i + 8].try_into().map_err(|_| BadCursor)?,
            ))
        };
        let from_ms = u64_at(1)?;
        let at_ms = u64_at(9)?;
        let id: [u8; 16] = bytes[17..33].try_into().map_err(|_| BadCursor)?;
        // A position before its window's start cannot come from a page.
        if at_ms < from_ms || at_ms > i64::MAX as u64 {
            return Err(BadCursor);
        }
        Ok(Cursor {
            from_ms,
            position: Position {
                at_ms,
                id: Ulid::from_bytes(id),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips() {
        let c = Cursor {
            from_ms: 1_700_000_000_000,
            position: Position {
                at_ms: 1_700_000_123_456,
                id: Ulid::new(),
            },
        };
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
    }

    #[test]
    fn garbage_is_not_a_cursor() {
        for text in [
            "",
            "x",
            "!!!!",
            "AAAA",
            &"A".repeat(44),
            &"A".repeat(10_000),
            "../../etc/passwd",
            "%00",
        ] {
            assert_eq!(Cursor::decode(text), Err(BadCursor), "{text:?}");
        }
    }
}
