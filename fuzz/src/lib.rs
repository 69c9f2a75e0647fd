//! The fuzz targets' bodies, shared by the libFuzzer binaries
//! (`fuzz_targets/*.rs`) and the stable replay test (`tests/replay.rs`).
//!
//! Each target checks invariants, not only "no panic"; a violation is an
//! `assert!` with a message naming it. Findings that are reported but not yet
//! fixed in `src/` are *known*: each target tolerates exactly its known
//! findings unless strict mode is on (`RINGCAST_FUZZ_STRICT=1`), so that the
//! long runs and the CI smoke keep looking for new ones. `regressions/<target>/`
//! holds the inputs of the known findings (files ending `-tmin` as
//! `cargo fuzz tmin` left them, the others the same findings made readable);
//! the replay test checks that each still fails in strict mode and passes
//! otherwise.

pub mod head_chunked;
pub mod publish_body;
pub mod sse;
pub mod sse_frame;
pub mod subscribe_body;
pub mod topics;

use std::sync::OnceLock;

/// Whether known findings fail too (`RINGCAST_FUZZ_STRICT=1`).
pub fn strict() -> bool {
    static STRICT: OnceLock<bool> = OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("RINGCAST_FUZZ_STRICT").is_some_and(|v| v == "1"))
}

/// A target's body: the input, and whether known findings fail too.
pub type Target = fn(&[u8], bool);

/// Every target, by its directory name under `corpus/` and `regressions/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("head_chunked", head_chunked::run),
    ("subscribe_body", subscribe_body::run),
    ("publish_body", publish_body::run),
    ("sse_frame", sse_frame::run),
    ("topics", topics::run),
];

/// Checks an error answer: `status`, and a body in PocketBase's shape
/// `{"data":{…},"message":"…","status":N}` that parses as JSON.
pub fn check_error_body(err: &ringcast::http::error::ApiError, allowed: &[u16]) {
    assert!(
        allowed.contains(&err.status),
        "error status {} is not one of {allowed:?}: {err:?}",
        err.status
    );
    let body = err.body();
    let parsed: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => panic!(
            "error body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&body)
        ),
    };
    assert!(
        parsed["data"].is_object(),
        "error body's data is not an object: {parsed}"
    );
    assert_eq!(
        parsed["message"].as_str(),
        Some(&*err.message),
        "error body's message: {parsed}"
    );
    assert_eq!(
        parsed["status"].as_u64(),
        Some(u64::from(err.status)),
        "error body's status: {parsed}"
    );
}

/// Split points for feeding `len` bytes in pieces, taken from `ctl` (two
/// bytes each, little-endian, modulo `len + 1`): ascending, deduplicated,
/// ending with `len` itself (the whole input always arrives in the end).
pub fn split_points(ctl: &[u8], len: usize) -> Vec<usize> {
    let mut points: Vec<usize> = ctl
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (len + 1))
        .collect();
    points.push(len);
    points.sort_unstable();
    points.dedup();
    points
}
