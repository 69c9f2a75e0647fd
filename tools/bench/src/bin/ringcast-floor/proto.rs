//! The bytes the floor server writes: PocketBase's stream head, `PB_CONNECT`, event frames and the
//! few plain responses — only what `ringcast-loadgen` needs to see.

use std::fmt::Write as _;

/// Client ids are 40 characters of `[A-Za-z0-9]`, like PocketBase's.
pub const ID_LEN: usize = 40;

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// PocketBase 0.40.6's stream head minus `Date` (nothing the load tool reads depends on it, and
/// formatting a date per connection is not part of the work being measured).
pub const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
Cache-Control: no-store\r\n\
Content-Type: text/event-stream\r\n\
Cross-Origin-Opener-Policy: same-origin\r\n\
Vary: Origin\r\n\
X-Accel-Buffering: no\r\n\
X-Content-Type-Options: nosniff\r\n\
X-Frame-Options: SAMEORIGIN\r\n\
X-Xss-Protection: 1; mode=block\r\n\
Transfer-Encoding: chunked\r\n\r\n";

pub const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

/// Non-cryptographic id source (xorshift64*): ids only need to be distinct here, and the floor
/// must not spend time in a CSPRNG that the servers under test may or may not use.
pub struct IdGen(u64);

impl IdGen {
    pub fn new(seed: u64) -> IdGen {
        IdGen(seed | 1)
    }

    pub fn next_id(&mut self) -> [u8; ID_LEN] {
        let mut id = [0u8; ID_LEN];
        for b in &mut id {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
            *b = ALPHABET[(r >> 32) as usize % ALPHABET.len()];
        }
        id
    }
}

/// The stream head followed by the `PB_CONNECT` chunk (always 0x7b bytes of event), written in one
/// go as PocketBase does.
pub fn stream_open(id: &[u8; ID_LEN]) -> Vec<u8> {
    let id = std::str::from_utf8(id).expect("ids are ASCII");
    let mut out = Vec::with_capacity(STREAM_HEAD.len() + 130);
    out.extend_from_slice(STREAM_HEAD);
    out.extend_from_slice(
        format!("7b\r\nid:{id}\nevent:PB_CONNECT\ndata:{{\"clientId\":\"{id}\"}}\n\n\r\n")
            .as_bytes(),
    );
    out
}

/// One event frame for one subscription name, built once per publish and shared by all of that
/// name's subscribers: everything before the client id (`head`) and everything after it (`tail`).
/// The chunk size does not depend on the client because every id has the same length.
pub struct Frame {
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
}

impl Frame {
    pub fn new(name: &str, data: &str) -> Frame {
        // id:<40>\n event:<name>\n data:<data>\n\n
        let len = 3 + ID_LEN + 1 + 6 + name.len() + 1 + 5 + data.len() + 2;
        let mut head = String::with_capacity(12);
        let _ = write!(head, "{len:x}\r\nid:");
        let mut tail = String::with_capacity(len);
        let _ = write!(tail, "\nevent:{name}\ndata:{data}\n\n\r\n");
        Frame {
            head: head.into_bytes(),
            tail: tail.into_bytes(),
        }
    }
}

/// A complete `200`/`4xx` response with a JSON body.
pub fn json_response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_chunk_is_0x7b_bytes() {
        let id = IdGen::new(7).next_id();
        let open = stream_open(&id);
        let chunk = &open[STREAM_HEAD.len()..];
        let body = &chunk[4..chunk.len() - 2];
        assert_eq!(body.len(), 0x7b);
        assert!(chunk.ends_with(b"\n\n\r\n"));
    }

    #[test]
    fn frame_size_matches_its_bytes() {
        let f = Frame::new("lg0", r#"{"seq":1}"#);
        let head = std::str::from_utf8(&f.head).unwrap();
        let size = usize::from_str_radix(head.split("\r\n").next().unwrap(), 16).unwrap();
        // event bytes = "id:" + id + tail without the chunk's closing CR LF
        assert_eq!(size, 3 + ID_LEN + f.tail.len() - 2);
    }

    #[test]
    fn ids_are_distinct_and_alphanumeric() {
        let mut g = IdGen::new(1);
        let a = g.next_id();
        let b = g.next_id();
        assert_ne!(a, b);
        assert!(a.iter().all(u8::is_ascii_alphanumeric));
    }
}
