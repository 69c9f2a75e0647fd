//! Raw bytes in assertion messages: escaped so CR, LF and binary are visible, and compared with the
//! first difference pointed out (a response head that differs in one byte is otherwise unreadable).

/// Python-like escaped rendering of bytes, for readable assertion messages.
pub fn show(b: &[u8]) -> String {
    let mut s = String::from("b'");
    for &c in b {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            b'\'' => s.push_str("\\'"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('\'');
    s
}

/// Assert two byte strings are equal; the message shows both, escaped, and the first difference.
#[track_caller]
pub fn assert_bytes(got: &[u8], expected: &[u8], ctx: &str) {
    if got != expected {
        let first = got
            .iter()
            .zip(expected.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        panic!(
            "{ctx}: bytes differ (first difference at byte {first}; got {} bytes, expected {})\n   got: {}\nexpected: {}",
            got.len(),
            expected.len(),
            show(got),
            show(expected)
        );
    }
}

/// Position of the first `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle).filter(|_| !needle.is_empty())
}
