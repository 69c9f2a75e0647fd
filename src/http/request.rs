//! HTTP/1.1 request heads and bodies, parsed with `httparse`.
//!
//! The parser works on the connection's receive buffer and copies out only the
//! few header values the routes need into a [`Head`], so the buffer can keep
//! filling while a body is read. Bodies are framed by `Content-Length` or
//! `Transfer-Encoding: chunked`; both are bounded, and every violation maps to
//! a status and message the client can act on.

use crate::http::error::ApiError;

/// Headers beyond this count make the head "too large" (431), like a huge head.
const MAX_HEADERS: usize = 100;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Delete,
    Options,
    #[default]
    Other,
}

/// What the routes need from a request head.
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub method: Method,
    /// The path without the query string.
    pub path: String,
    /// The query string, without the `?`.
    pub query: String,
    /// HTTP/1.0 (`false`) or 1.1 (`true`).
    pub http11: bool,
    pub body: BodyFraming,
    pub content_type: Option<String>,
    pub origin: Option<String>,
    pub authorization: Option<String>,
    /// Where a stream or its subscriptions resume (`core::history`).
    pub last_event_id: Option<String>,
    pub forwarded_for: Option<String>,
    pub real_ip: Option<String>,
    /// Any of `X-Forwarded-For`, `X-Real-IP` or `Forwarded` was sent: a proxy
    /// says it forwarded this request (or a client pretends one did).
    pub proxied: bool,
    pub host: Option<String>,
    /// Every header, kept only for requests that open a stream (the connect
    /// hook sees them); other requests keep just the fields above.
    pub headers: Vec<(String, String)>,
    pub cors_request_method: Option<String>,
    pub cors_request_headers: Option<String>,
    pub expect_continue: bool,
    /// The connection closes after this request: `Connection: close`, or
    /// HTTP/1.0 without `Connection: keep-alive`.
    pub close: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyFraming {
    #[default]
    None,
    Length(usize),
    Chunked,
}

/// Parses a request head at the start of `buf`.
///
/// `Ok(None)`: the head is incomplete — read more. `Ok(Some((head, n)))`: the
/// head used `n` bytes. Errors are answered and the connection is closed,
/// since after a malformed head the byte stream cannot be trusted.
pub fn parse_head(buf: &[u8], max_head_bytes: usize) -> Result<Option<(Head, usize)>, ApiError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    // Only the bytes a head may take are read: the answer then does not
    // depend on how many more had arrived (a malformed byte past the limit
    // is a head too large, however the bytes came).
    let within = &buf[..buf.len().min(max_head_bytes)];
    let status = match req.parse(within) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => return Err(head_too_large(max_head_bytes)),
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "Malformed HTTP request: {e}."
            )));
        }
    };
    let len = match status {
        httparse::Status::Partial if buf.len() > max_head_bytes => {
            return Err(head_too_large(max_head_bytes));
        }
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(n) => n,
    };

    let target = req.path.unwrap_or("/");
    let target = target.split('#').next().unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let http11 = req.version == Some(1);
    let mut head = Head {
        method: match req.method.unwrap_or("") {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        },
        path: path.to_owned(),
        query: query.to_owned(),
        http11,
        close: !http11,
        ..Head::default()
    };
    let opens_stream =
        matches!(head.method, Method::Get | Method::Head) && head.path == "/api/realtime";
    let mut length: Option<usize> = None;
    for h in req.headers.iter() {
        if opens_stream {
            head.headers.push((
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            ));
        }
        let value = || String::from_utf8_lossy(h.value).trim().to_owned();
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| ApiError::bad_request("Invalid Content-Length header."))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(ApiError::bad_request("Conflicting Content-Length headers."));
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let v = value();
            if v.eq_ignore_ascii_case("chunked") {
                head.body = BodyFraming::Chunked;
            } else if !v.eq_ignore_ascii_case("identity") {
                return Err(ApiError::new(
                    501,
                    format!("Unsupported Transfer-Encoding {v:?}: only chunked is accepted."),
                ));
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            head.content_type = Some(value());
        } else if name.eq_ignore_ascii_case("origin") {
            head.origin = Some(value());
        } else if name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(value());
        } else if name.eq_ignore_ascii_case("last-event-id") {
            head.last_event_id = Some(value());
        } else if name.eq_ignore_ascii_case("host") {
            head.host = Some(value());
        } else if name.eq_ignore_ascii_case("forwarded") {
            head.proxied = true;
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            head.proxied = true;
            // Several lines form one list, in the order received.
            let v = value();
            head.forwarded_for = Some(match head.forwarded_for.take() {
                Some(before) => format!("{before}, {v}"),
                None => v,
            });
        } else if name.eq_ignore_ascii_case("x-real-ip") {
            head.proxied = true;
            head.real_ip = Some(value());
        } else if name.eq_ignore_ascii_case("access-control-request-method") {
            head.cors_request_method = Some(value());
        } else if name.eq_ignore_ascii_case("access-control-request-headers") {
            head.cors_request_headers = Some(value());
        } else if name.eq_ignore_ascii_case("expect") {
            head.expect_continue = value().eq_ignore_ascii_case("100-continue");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in String::from_utf8_lossy(h.value).split(',') {
                let token = token.trim();
                if token.eq_ignore_ascii_case("close") {
                    head.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && !http11 {
                    head.close = false;
                }
            }
        }
    }
    if head.body != BodyFraming::Chunked {
        if let Some(n) = length.filter(|&n| n > 0) {
            head.body = BodyFraming::Length(n);
        }
    } else if length.is_some() {
        // RFC 9112 §6.3: both present is a smuggling vector; refuse.
        return Err(ApiError::bad_request(
            "Both Content-Length and Transfer-Encoding were sent; send one.",
        ));
    }
    Ok(Some((head, len)))
}

pub fn head_too_large(max: usize) -> ApiError {
    ApiError::new(
        431,
        format!(
            "The request head is larger than the {max}-byte limit (or has over {MAX_HEADERS} headers)."
        ),
    )
}

/// The error for a body over the configured limit.
pub fn body_too_large(max: usize) -> ApiError {
    ApiError::new(
        413,
        format!("The request body is larger than the {max}-byte limit."),
    )
}

/// Where the request head at the start of `buf` ends (just past its empty
/// line), looking at the bytes from `from` on — less the three that a
/// terminator split across reads may need. The caller remembers how far it
/// looked, so a head that arrives in tiny pieces costs linear time, and only
/// a buffer holding a whole head is handed to the parser.
pub fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3).min(buf.len());
    memchr::memchr_iter(b'\n', &buf[start..]).find_map(|i| {
        let i = start + i;
        match (buf.get(i + 1), buf.get(i + 2)) {
            (Some(b'\n'), _) => Some(i + 2),
            (Some(b'\r'), Some(b'\n')) => Some(i + 3),
            _ => None,
        }
    })
}

/// Longest chunk-size line (with extensions) accepted; real clients send a
/// few hex digits.
const MAX_CHUNK_LINE: usize = 4096;
/// Longest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;

/// Incremental decoder for a chunked body.
///
/// It is fed the unconsumed part of the receive buffer each time more bytes
/// arrive and resumes where it stopped, so a body sent in small pieces costs
/// linear time. The caller may drop what is decoded from the front of its
/// buffer as it goes ([`ChunkedDecoder::take_consumed`]), so the framing of
/// a body of many tiny chunks is never held, only the decoded bytes are.
/// Framing is bounded: a chunk-size line or a trailer section that does not
/// end is refused.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    /// Bytes of the buffer consumed and not yet taken by the caller.
    pos: usize,
    state: ChunkState,
    body: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line.
    #[default]
    Size,
    /// This many bytes of chunk data left.
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty line; this many
    /// bytes were already searched.
    Trailers(usize),
}

impl ChunkedDecoder {
    /// `Ok(Some((body, consumed)))` once the last chunk and trailers were
    /// read; `consumed` counts from the start of `buf`.
    pub fn decode(&mut self, buf: &[u8], max: usize) -> Result<Option<(Vec<u8>, usize)>, ApiError> {
        loop {
            let rest = &buf[self.pos.min(buf.len())..];
            match self.state {
                ChunkState::Data(remaining) => {
                    let avail = rest.len().min(remaining);
                    self.body.extend_from_slice(&rest[..avail]);
                    self.pos += avail;
                    if avail < remaining {
                        self.state = ChunkState::Data(remaining - avail);
                        return Ok(None);
                    }
                    self.state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => match rest.get(..2) {
                    Some(b"\r\n") => {
                        self.pos += 2;
                        self.state = ChunkState::Size;
                    }
                    Some(_) => return Err(bad_chunk()),
                    None if rest.first().is_some_and(|&b| b != b'\r') => return Err(bad_chunk()),
                    None => return Ok(None),
                },
                // httparse takes an empty size line for a last chunk: a
                // smuggling door (what follows would be read as trailers,
                // then as the next request). A size starts with a hex digit.
                ChunkState::Size if rest.first().is_some_and(|b| !b.is_ascii_hexdigit()) => {
                    return Err(bad_chunk());
                }
                ChunkState::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Partial) if rest.len() > MAX_CHUNK_LINE => {
                        return Err(ApiError::bad_request(format!(
                            "A chunk-size line is longer than {MAX_CHUNK_LINE} bytes."
                        )));
                    }
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(_) => return Err(bad_chunk()),
                    Ok(httparse::Status::Complete((used, 0))) => {
                        self.pos += used;
                        self.state = ChunkState::Trailers(0);
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        let size = usize::try_from(size).map_err(|_| body_too_large(max))?;
                        if self.body.len().saturating_add(size) > max {
                            return Err(body_too_large(max));
                        }
                        self.pos += used;
                        self.state = ChunkState::Data(size);
                    }
                },
                ChunkState::Trailers(searched) => {
                    let end = if rest.starts_with(b"\r\n") {
                        Some(2)
                    } else {
                        let from = searched.saturating_sub(3);
                        memchr::memmem::find(&rest[from..], b"\r\n\r\n").map(|i| from + i + 4)
                    };
                    // Over the limit with or without their end in sight: the
                    // answer does not depend on how the bytes arrived.
                    let Some(end) = end.filter(|&end| end <= MAX_TRAILERS) else {
                        if end.is_some() || rest.len() > MAX_TRAILERS {
                            return Err(bad_chunk());
                        }
                        self.state = ChunkState::Trailers(rest.len());
                        return Ok(None);
                    };
                    let consumed = self.pos + end;
                    *self = ChunkedDecoder {
                        body: std::mem::take(&mut self.body),
                        ..ChunkedDecoder::default()
                    };
                    return Ok(Some((std::mem::take(&mut self.body), consumed)));
                }
            }
        }
    }

    /// How many bytes from the start of the buffer are decoded and may be
    /// dropped by the caller, who then passes only the rest next time.
    pub fn take_consumed(&mut self) -> usize {
        std::mem::take(&mut self.pos)
    }
}

fn bad_chunk() -> ApiError {
    ApiError::bad_request("Malformed chunked request body.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head_and_strips_the_query() {
        let raw = b"GET /api/realtime?x=1 HTTP/1.1\r\nHost: a\r\nOrigin: http://e\r\n\r\nrest";
        let (head, n) = parse_head(raw, 8192).unwrap().unwrap();
        assert_eq!(n, raw.len() - 4);
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.path, "/api/realtime");
        assert!(head.http11 && !head.close);
        assert_eq!(head.origin.as_deref(), Some("http://e"));
        assert_eq!(head.body, BodyFraming::None);
    }

    #[test]
    fn partial_head_asks_for_more() {
        assert!(
            parse_head(b"GET / HTTP/1.1\r\nHost:", 8192)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn oversized_head_is_431() {
        let mut raw = b"GET / HTTP/1.1\r\nX: ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 9000));
        assert_eq!(parse_head(&raw, 8192).unwrap_err().status, 431);
        raw.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_head(&raw, 8192).unwrap_err().status, 431);
    }

    #[test]
    fn the_answer_does_not_depend_on_how_the_bytes_arrive() {
        // Found by fuzz/head_chunked: a bad byte past the limit was 400 when
        // it arrived with the rest and 431 when the prefix came first.
        let raw = b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n";
        for piece in [&raw[..17], &raw[..]] {
            assert_eq!(parse_head(piece, 16).unwrap_err().status, 431);
        }
        let mut wire = b"0\r\nX-Long: ".to_vec();
        wire.extend(std::iter::repeat_n(b'a', 17_000));
        wire.extend_from_slice(b"\r\n\r\n");
        let whole = ChunkedDecoder::default().decode(&wire, 1 << 20);
        assert_eq!(
            whole.unwrap_err().status,
            400,
            "trailers over 16 KiB, whole"
        );
    }

    #[test]
    fn http10_closes_and_connection_close_is_seen() {
        let (h, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n", 8192)
            .unwrap()
            .unwrap();
        assert!(!h.http11 && h.close);
        let (h, _) = parse_head(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", 8192)
            .unwrap()
            .unwrap();
        assert!(h.close);
        let (h, _) = parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 8192)
            .unwrap()
            .unwrap();
        assert!(!h.http11 && !h.close);
    }

    #[test]
    fn body_framing() {
        let (h, _) = parse_head(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n", 8192)
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyFraming::Length(12));
        let (h, _) = parse_head(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            8192,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.body, BodyFraming::Chunked);
        let both = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(parse_head(both, 8192).unwrap_err().status, 400);
        let bad = b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n";
        assert_eq!(parse_head(bad, 8192).unwrap_err().status, 400);
        let gzip = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(parse_head(gzip, 8192).unwrap_err().status, 501);
    }

    #[test]
    fn garbage_is_400() {
        assert_eq!(
            parse_head(b"\x00\x01\x02 nonsense\r\n\r\n", 8192)
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn chunked_body_in_every_split() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for split in 0..wire.len() {
            let mut dec = ChunkedDecoder::default();
            let first = dec.decode(&wire[..split], 1024).unwrap();
            let (body, used) = match first {
                Some(done) => done,
                None => dec.decode(wire, 1024).unwrap().unwrap(),
            };
            assert_eq!(body, b"hello world", "split at {split}");
            assert_eq!(&wire[used..], b"NEXT");
        }
    }

    #[test]
    fn chunked_body_limit_and_garbage() {
        let mut dec = ChunkedDecoder::default();
        assert_eq!(dec.decode(b"ff\r\n", 16).unwrap_err().status, 413);
        let mut dec = ChunkedDecoder::default();
        assert_eq!(dec.decode(b"zz\r\n", 16).unwrap_err().status, 400);
        let mut dec = ChunkedDecoder::default();
        assert_eq!(dec.decode(b"1\r\naXX", 16).unwrap_err().status, 400);
    }

    #[test]
    fn chunked_body_drained_as_it_goes() {
        // Many 1-byte chunks: the caller keeps only what is not decoded yet.
        let wire: Vec<u8> = std::iter::repeat_n(&b"1\r\na\r\n"[..], 1000)
            .flatten()
            .copied()
            .chain(*b"0\r\n\r\nNEXT")
            .collect();
        let mut dec = ChunkedDecoder::default();
        let mut buf = Vec::new();
        let mut most = 0;
        for piece in wire.chunks(7) {
            buf.extend_from_slice(piece);
            if let Some((body, used)) = dec.decode(&buf, 4096).unwrap() {
                assert_eq!(body.len(), 1000);
                assert!(b"NEXT".starts_with(&buf[used..]), "{:?}", &buf[used..]);
                return assert!(most < 16, "held {most} raw bytes");
            }
            buf.drain(..dec.take_consumed());
            most = most.max(buf.len());
        }
        panic!("the body never completed");
    }

    #[test]
    fn an_empty_chunk_size_line_is_refused() {
        for wire in [
            &b"\r\n\r\nPOST /x HTTP/1.1\r\n\r\n"[..],
            b";ext\r\n",
            b" 5\r\n",
        ] {
            let mut dec = ChunkedDecoder::default();
            assert_eq!(dec.decode(wire, 1024).unwrap_err().status, 400, "{wire:?}");
        }
        let mut dec = ChunkedDecoder::default();
        assert_eq!(dec.decode(b"", 1024).unwrap(), None);
    }

    #[test]
    fn chunk_framing_is_bounded() {
        let mut dec = ChunkedDecoder::default();
        let line = vec![b'1'; 5000];
        assert_eq!(dec.decode(&line, 1 << 20).unwrap_err().status, 400);
        let mut dec = ChunkedDecoder::default();
        let mut trailers = b"0\r\n".to_vec();
        trailers.extend(std::iter::repeat_n(b'x', 20_000));
        assert_eq!(dec.decode(&trailers, 1 << 20).unwrap_err().status, 400);
        let mut dec = ChunkedDecoder::default();
        assert_eq!(dec.decode(b"1\r\naX", 16).unwrap_err().status, 400);
    }

    #[test]
    fn head_end_finds_the_empty_line_across_reads() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        assert_eq!(head_end(raw, 0), Some(raw.len() - 4));
        for split in 0..raw.len() {
            let found = head_end(&raw[..split], 0).or_else(|| head_end(raw, split));
            assert_eq!(found, Some(raw.len() - 4), "split at {split}");
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\n", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
    }
}
