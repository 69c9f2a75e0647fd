//! Realtime client ids: 40 characters of `[A-Za-z0-9]` from the OS CSPRNG.
//!
//! The id is the only credential a subscriber has (whoever knows it can change
//! that connection's subscriptions), so it must be unguessable, exactly like
//! PocketBase's `security.RandomString(40)`: each character drawn uniformly from
//! the 62 symbols.

use std::fmt;

/// Number of characters of a client id.
pub const CLIENT_ID_LEN: usize = 40;

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Largest multiple of 62 that fits in a byte: random bytes at or above it are
/// rejected, so `byte % 62` stays uniform (no modulo bias).
const REJECT_FROM: u8 = 248;

/// A client id. Stored inline (no allocation) because it is the broker's map key
/// and is written at the start of every event.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId([u8; CLIENT_ID_LEN]);

impl ClientId {
    /// Draws a fresh id from the operating system's CSPRNG.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut id = [0u8; CLIENT_ID_LEN];
        let mut filled = 0;
        // 64 random bytes almost always yield 40 accepted ones (acceptance 248/256).
        let mut entropy = [0u8; 64];
        while filled < CLIENT_ID_LEN {
            getrandom::fill(&mut entropy)?;
            for &byte in entropy.iter().filter(|&&b| b < REJECT_FROM) {
                id[filled] = ALPHABET[usize::from(byte % 62)];
                filled += 1;
                if filled == CLIENT_ID_LEN {
                    break;
                }
            }
        }
        Ok(Self(id))
    }

    /// Interprets a client-supplied string as an id. Anything that could not have
    /// been issued by [`ClientId::random`] is `None`, which callers treat exactly
    /// like an unknown id.
    pub fn parse(s: &str) -> Option<Self> {
        let bytes: [u8; CLIENT_ID_LEN] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(u8::is_ascii_alphanumeric)
            .then_some(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Both constructors only ever store ASCII alphanumerics.
        std::str::from_utf8(&self.0).expect("client ids are ASCII")
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_40_alphanumerics_and_round_trip() {
        let id = ClientId::random().expect("os rng");
        assert_eq!(id.as_str().len(), CLIENT_ID_LEN);
        assert!(id.as_bytes().iter().all(u8::is_ascii_alphanumeric));
        assert_eq!(ClientId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn parse_rejects_what_cannot_be_an_id() {
        assert_eq!(ClientId::parse(""), None);
        assert_eq!(ClientId::parse(&"a".repeat(39)), None);
        assert_eq!(ClientId::parse(&"a".repeat(41)), None);
        assert_eq!(ClientId::parse(&format!("{}-", "a".repeat(39))), None);
        // 40 bytes but not ASCII.
        assert_eq!(ClientId::parse(&"é".repeat(20)), None);
    }
}
