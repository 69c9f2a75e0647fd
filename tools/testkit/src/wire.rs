//! HTTP/1.1 response framing without I/O: the response head and chunked bodies.
//!
//! One implementation for everything that reads responses: `ringcast-loadgen` parses every stream
//! head and control answer with it (10k+ connections, so it is incremental and allocation-free:
//! `Ok(None)` means "read more and call again"), and the test clients in [`crate::http`] build on
//! the same functions, adding their byte-exact checks on top.

use std::io;
use std::ops::Range;

use memchr::memchr;

/// Largest response head or control/publish response body accepted.
pub const MAX_RESPONSE: usize = 1 << 20;

/// Result of parsing a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// The minor version of `HTTP/1.x`.
    pub version: u8,
    /// Bytes of the head including the blank line.
    pub len: usize,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub close: bool,
    pub event_stream: bool,
}

/// Parses a response head from the start of `buf`; `Ok(None)` when more bytes are needed.
#[inline]
pub fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    parse_head_with(buf, |_, _| {})
}

/// [`parse_head`], also handing every header line to `header` in wire order (name as sent, value
/// untrimmed), for callers that need more than the summary.
pub fn parse_head_with(
    buf: &[u8],
    mut header: impl FnMut(&str, &[u8]),
) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_RESPONSE {
                return Err(bad("response head too large"));
            }
            return Ok(None);
        }
        Err(e) => return Err(bad(&format!("bad response head: {e}"))),
    };
    let version = resp.version.unwrap_or(1);
    let mut head = Head {
        status: resp.code.unwrap_or(0),
        version,
        len,
        content_length: None,
        chunked: false,
        close: version == 0,
        event_stream: false,
    };
    for h in resp.headers.iter() {
        header(h.name, h.value);
        let v = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            head.content_length = Some(v.parse().map_err(|_| bad("bad Content-Length"))?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = v
                .to_ascii_lowercase()
                .split(',')
                .any(|t| t.trim() == "chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = v.to_ascii_lowercase();
            if v.contains("close") {
                head.close = true;
            } else if v.contains("keep-alive") {
                head.close = false;
            }
        } else if h.name.eq_ignore_ascii_case("content-type") {
            head.event_stream = v.to_ascii_lowercase().starts_with("text/event-stream");
        }
    }
    Ok(Some(head))
}

pub fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Where one complete chunk lies at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The chunk data (empty for the terminating zero chunk).
    pub payload: Range<usize>,
    /// Bytes of the whole chunk: size line, data and its line end; for the zero chunk, the
    /// trailers and the final empty line too.
    pub len: usize,
}

/// Finds the complete chunk at the start of `buf`; `Ok(None)` if it is incomplete. Lenient like a
/// client should be (bare LF line ends, extensions, trailers); callers that check a server's exact
/// framing compare the raw `buf[..len]`.
pub fn next_chunk(buf: &[u8]) -> io::Result<Option<Chunk>> {
    let Some(eol) = memchr(b'\n', buf) else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[..eol]).map_err(|_| bad("bad chunk size"))?;
    let size = line
        .trim_end_matches('\r')
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
    let mut i = eol + 1;
    if size == 0 {
        // Trailers until an empty line.
        loop {
            let Some(eol) = memchr(b'\n', &buf[i..]) else {
                return Ok(None);
            };
            let empty = buf[i..i + eol].iter().all(|&b| b == b'\r');
            i += eol + 1;
            if empty {
                return Ok(Some(Chunk {
                    payload: i..i,
                    len: i,
                }));
            }
        }
    }
    if buf.len() < i + size + 2 {
        return Ok(None);
    }
    let payload = i..i + size;
    i += size;
    // CRLF after the data
    if buf[i] == b'\r' {
        i += 1;
    }
    if buf.get(i) != Some(&b'\n') {
        return Err(bad("chunk data not followed by CRLF"));
    }
    Ok(Some(Chunk {
        payload,
        len: i + 1,
    }))
}

/// Decodes a complete chunked body from `buf`; `Ok(None)` if incomplete.
pub fn dechunk(buf: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    let mut rest = buf;
    loop {
        let Some(c) = next_chunk(rest)? else {
            return Ok(None);
        };
        if c.payload.is_empty() {
            return Ok(Some(body));
        }
        body.extend_from_slice(&rest[c.payload]);
        rest = &rest[c.len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_parsing() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n7b\r\n")
            .expect("valid head")
            .expect("complete head");
        assert!(h.chunked && h.event_stream && !h.close);
        assert_eq!((h.status, h.version), (200, 1));
        assert_eq!(h.len, 80);
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-")
                .expect("valid so far")
                .is_none()
        );
        let h = parse_head(b"HTTP/1.0 204 No Content\r\n\r\n")
            .expect("valid head")
            .expect("complete head");
        assert!(h.close);
    }

    #[test]
    fn head_lines_in_wire_order() {
        let mut seen = Vec::new();
        parse_head_with(
            b"HTTP/1.1 204 No Content\r\nVary: Origin\r\nVary: X\r\n\r\n",
            |n, v| seen.push(format!("{n}={}", String::from_utf8_lossy(v))),
        )
        .expect("valid head")
        .expect("complete head");
        assert_eq!(seen, ["Vary=Origin", "Vary=X"]);
    }

    #[test]
    fn dechunk_body() {
        assert_eq!(
            dechunk(b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").expect("valid body"),
            Some(b"abcde".to_vec())
        );
        assert_eq!(dechunk(b"3\r\nabc\r\n0\r\n").expect("valid so far"), None);
        assert_eq!(dechunk(b"3\r\nab").expect("valid so far"), None);
    }

    #[test]
    fn chunk_spans() {
        let buf = b"5\r\nhello\r\n0\r\nX: y\r\n\r\nrest";
        let c = next_chunk(buf).expect("valid").expect("complete");
        assert_eq!((&buf[c.payload.clone()], c.len), (&b"hello"[..], 10));
        let z = next_chunk(&buf[c.len..]).expect("valid").expect("complete");
        assert_eq!((z.payload.is_empty(), z.len), (true, 11));
        assert!(next_chunk(b"5\r\nhelloXY").is_err());
    }
}
