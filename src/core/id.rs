//! Client ids that name their owner core and slab key.
//!
//! A client id is 40 characters of `[A-Za-z0-9]` like PocketBase's, but it is
//! not opaque to us: the first character encodes the owner core and the next
//! four the client's slab key. A subscription POST or a targeted send that
//! lands on any core can therefore be routed to the owner and found there in
//! O(1), with no global map. The other 35 characters come from the OS CSPRNG
//! (≈ 208 bits), and lookups compare the whole id, so ids stay unguessable.
//! The key is scrambled by a per-process random bijection so that ids do not
//! all start alike (`AAAA` for key 0) and symbol frequencies stay flat.

use crate::frame::ID_LEN;

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const KEY_DIGITS: usize = 4;
/// Slab keys must fit in four base-62 digits.
pub const MAX_CLIENTS_PER_CORE: usize = 62 * 62 * 62 * 62;
/// The core index must fit in one base-62 digit.
pub const MAX_CORES: usize = 62;

/// Makes the id for slab `key` on `core` of `workers`.
pub fn new_id(core: usize, workers: usize, key: usize) -> [u8; ID_LEN] {
    let mut random = [0u8; 128];
    let mut id = [0u8; ID_LEN];
    let mut filled = 0;
    // Rejection sampling keeps every character uniform over the alphabet.
    'outer: loop {
        if getrandom::fill(&mut random).is_err() {
            // The OS RNG failing is not something to serve clients through.
            panic!("the operating system's random number generator failed");
        }
        for &b in &random {
            if b < 248 {
                id[filled] = ALPHABET[usize::from(b % 62)];
                filled += 1;
                if filled == ID_LEN {
                    break 'outer;
                }
            }
        }
    }
    // First character: uniform among the symbols whose index ≡ core (mod workers).
    let choices = (62 - core).div_ceil(workers);
    let pick = usize::from(id[0]) % choices;
    id[0] = ALPHABET[core + pick * workers];
    let mut k = scramble().encode(key);
    for digit in id[1..=KEY_DIGITS].iter_mut().rev() {
        *digit = ALPHABET[k % 62];
        k /= 62;
    }
    id
}

/// The owner core and slab key an id claims; `None` if it cannot be ours.
pub fn locate(id: &[u8], workers: usize) -> Option<(usize, usize)> {
    if id.len() != ID_LEN {
        return None;
    }
    let core = index(id[0])? % workers;
    let mut key = 0;
    for &c in &id[1..=KEY_DIGITS] {
        key = key * 62 + index(c)?;
    }
    Some((core, scramble().decode(key)))
}

/// An affine bijection `k ↦ (a·k + b) mod 62⁴`, random per process.
struct Scramble {
    a: u64,
    a_inv: u64,
    b: u64,
}

const KEY_SPACE: u64 = MAX_CLIENTS_PER_CORE as u64;

impl Scramble {
    fn encode(&self, key: usize) -> usize {
        ((self.a * key as u64 + self.b) % KEY_SPACE) as usize
    }

    fn decode(&self, code: usize) -> usize {
        ((self.a_inv * ((code as u64 + KEY_SPACE - self.b) % KEY_SPACE)) % KEY_SPACE) as usize
    }
}

fn scramble() -> &'static Scramble {
    static SCRAMBLE: std::sync::OnceLock<Scramble> = std::sync::OnceLock::new();
    SCRAMBLE.get_or_init(|| {
        let mut seed = [0u8; 16];
        let _ = getrandom::fill(&mut seed);
        let r = u64::from_le_bytes(seed[..8].try_into().unwrap_or_default());
        let b = u64::from_le_bytes(seed[8..].try_into().unwrap_or_default()) % KEY_SPACE;
        // `a` must be coprime with 62⁴ = 2⁴·31⁴: odd and not a multiple of 31.
        let mut a = (r % KEY_SPACE) | 1;
        while a % 31 == 0 {
            a = (a + 2) % KEY_SPACE;
        }
        Scramble {
            a,
            a_inv: mod_inverse(a, KEY_SPACE),
            b,
        }
    })
}

/// The inverse of `a` modulo `m` (extended Euclid); `a` and `m` coprime.
fn mod_inverse(a: u64, m: u64) -> u64 {
    let (mut old_r, mut r) = (a as i128, m as i128);
    let (mut old_s, mut s) = (1i128, 0i128);
    while r != 0 {
        let q = old_r / r;
        (old_r, r) = (r, old_r - q * r);
        (old_s, s) = (s, old_s - q * s);
    }
    old_s.rem_euclid(m as i128) as u64
}

fn index(c: u8) -> Option<usize> {
    match c {
        b'A'..=b'Z' => Some(usize::from(c - b'A')),
        b'a'..=b'z' => Some(usize::from(c - b'a') + 26),
        b'0'..=b'9' => Some(usize::from(c - b'0') + 52),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_core_and_key() {
        for workers in [1, 2, 3, 7, 62] {
            for core in 0..workers {
                for key in [0, 1, 61, 62, 12345, MAX_CLIENTS_PER_CORE - 1] {
                    let id = new_id(core, workers, key);
                    assert!(id.iter().all(u8::is_ascii_alphanumeric));
                    assert_eq!(locate(&id, workers), Some((core, key)));
                }
            }
        }
    }

    #[test]
    fn scramble_is_a_bijection() {
        let s = scramble();
        for key in (0..MAX_CLIENTS_PER_CORE)
            .step_by(9973)
            .chain([MAX_CLIENTS_PER_CORE - 1])
        {
            assert_eq!(s.decode(s.encode(key)), key);
        }
        assert_eq!(mod_inverse(3, 62) * 3 % 62, 1);
    }

    #[test]
    fn ids_are_unique_and_foreign_ids_are_rejected() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| new_id(0, 2, 5)).collect();
        assert_eq!(ids.len(), 1000);
        assert_eq!(locate(b"short", 2), None);
        assert_eq!(locate(&[b'-'; ID_LEN], 2), None);
    }
}
