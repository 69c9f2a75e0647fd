//! Client ids that name their owner node, core and slab key.
//!
//! A client id is 40 characters of `[A-Za-z0-9]` like PocketBase's, but it is
//! not opaque to us: the first character encodes the owner core, the next
//! four the client's slab key and the four after them the owner node (a
//! server of a cluster, `crate::cluster`). A subscription POST or a targeted
//! send that lands on any core of any node can therefore be routed to the
//! owner and found there in O(1), with no global map. The other 31 characters
//! come from the OS CSPRNG (≈ 184 bits), and lookups compare the whole id, so
//! ids stay unguessable.
//! The key is scrambled by a per-process random bijection so that ids do not
//! all start alike (`AAAA` for key 0) and symbol frequencies stay flat.

use crate::frame::ID_LEN;

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const KEY_DIGITS: usize = 4;
/// Where the node's four characters are in an id.
const NODE_AT: std::ops::Range<usize> = 5..9;
/// Slab keys must fit in four base-62 digits.
pub const MAX_CLIENTS_PER_CORE: usize = 62 * 62 * 62 * 62;
/// The core index must fit in one base-62 digit.
pub const MAX_CORES: usize = 62;

/// A node of a cluster, as its clients' ids name it: four alphanumerics,
/// drawn at random when the server starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; 4]);

impl NodeId {
    pub fn random() -> NodeId {
        let mut node = [0u8; 4];
        fill_uniform(&mut node);
        NodeId(node)
    }

    /// The node named by these four characters, if they can name one.
    pub fn parse(text: &[u8]) -> Option<NodeId> {
        let node: [u8; 4] = text.try_into().ok()?;
        node.iter()
            .all(u8::is_ascii_alphanumeric)
            .then_some(NodeId(node))
    }

    pub fn as_str(&self) -> &str {
        // Always ASCII alphanumerics.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a client lives, as its id says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub node: NodeId,
    pub core: usize,
    /// The slab key on its core; meaningful on that node only (keys are
    /// scrambled per process).
    pub key: usize,
}

/// Fills `out` with characters uniform over the alphabet, from the OS CSPRNG.
fn fill_uniform(out: &mut [u8]) {
    let mut random = [0u8; 128];
    let mut filled = 0;
    // Rejection sampling keeps every character uniform over the alphabet.
    loop {
        if getrandom::fill(&mut random).is_err() {
            // The OS RNG failing is not something to serve clients through.
            panic!("the operating system's random number generator failed");
        }
        for &b in &random {
            if b < 248 {
                out[filled] = ALPHABET[usize::from(b % 62)];
                filled += 1;
                if filled == out.len() {
                    return;
                }
            }
        }
    }
}

/// Makes the id for slab `key` on `core` of `workers`, on `node`.
pub fn new_id(node: NodeId, core: usize, workers: usize, key: usize) -> [u8; ID_LEN] {
    let mut id = [0u8; ID_LEN];
    fill_uniform(&mut id);
    // First character: uniform among the symbols whose index ≡ core (mod workers).
    let choices = (62 - core).div_ceil(workers);
    let pick = usize::from(id[0]) % choices;
    id[0] = ALPHABET[core + pick * workers];
    let mut k = scramble().encode(key);
    for digit in id[1..=KEY_DIGITS].iter_mut().rev() {
        *digit = ALPHABET[k % 62];
        k /= 62;
    }
    id[NODE_AT].copy_from_slice(&node.0);
    id
}

/// The owner an id claims (`workers`: the cores of a node); `None` if no
/// node of ours could have made it.
pub fn locate(id: &[u8], workers: usize) -> Option<Owner> {
    if id.len() != ID_LEN {
        return None;
    }
    let node = NodeId::parse(&id[NODE_AT])?;
    let core = index(id[0])? % workers;
    let mut key = 0;
    for &c in &id[1..=KEY_DIGITS] {
        key = key * 62 + index(c)?;
    }
    Some(Owner {
        node,
        core,
        key: scramble().decode(key),
    })
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
                    let node = NodeId::random();
                    let id = new_id(node, core, workers, key);
                    assert!(id.iter().all(u8::is_ascii_alphanumeric));
                    assert_eq!(locate(&id, workers), Some(Owner { node, core, key }));
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
        let node = NodeId::random();
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| new_id(node, 0, 2, 5)).collect();
        assert_eq!(ids.len(), 1000);
        assert_eq!(locate(b"short", 2), None);
        assert_eq!(locate(&[b'-'; ID_LEN], 2), None);
    }
}
