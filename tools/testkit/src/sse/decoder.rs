//! Streaming decoder for an SSE stream carried in an HTTP/1.1 body (moved here from
//! `ringcast-loadgen`, whose hot path it is; the kit's strict [`super::Event`] parser uses it too).
//!
//! Why hand-written: the load tool reads from up to ~20k sockets at once and must stay cheaper than the
//! server it measures. The decoder therefore
//! * never buffers a whole event: complete lines are handed to the [`SseSink`] as slices of the read
//!   buffer (zero copy); only a line split across two reads is copied into a small per-connection carry;
//! * is a byte-exact state machine for the chunked framing, so a read may end anywhere (inside a chunk-size
//!   line, an extension, the CR LF after the data, a trailer) and several chunks may share one read;
//! * knows nothing about PocketBase: the sink interprets `id` / `event` / `data` fields.
//!
//! PocketBase writes one event per chunk, but the decoder does not rely on it: SSE lines are reassembled
//! across chunk boundaries, exactly as an EventSource would.

use memchr::memchr;

/// Largest chunk size accepted (hex digits beyond this are a protocol error, not a huge allocation: the
/// decoder never allocates per chunk, this only guards against nonsense sizes).
const MAX_CHUNK: u64 = 1 << 40;
/// Longest SSE line kept in the carry buffer before the stream is declared broken.
const MAX_LINE: usize = 1 << 20;

/// An SSE field name as far as the load tool cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Id,
    Event,
    Data,
    /// `retry` or any unknown field name (PocketBase never sends them).
    Other,
}

/// Receives decoded SSE fields. `value` has the optional single space after the colon removed.
pub trait SseSink {
    fn field(&mut self, field: Field, value: &[u8]);
    /// A blank line ended an event that had at least one field.
    fn dispatch(&mut self);
}

/// Framing of the HTTP response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked` (what PocketBase uses on HTTP/1.1).
    Chunked,
    /// Raw bytes until the connection closes (HTTP/1.0 style).
    Identity,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("invalid chunk-size line (byte 0x{0:02x})")]
    BadChunkSize(u8),
    #[error("chunk size too large")]
    ChunkTooLarge,
    #[error("chunk data not followed by CRLF (byte 0x{0:02x})")]
    MissingChunkCrlf(u8),
    #[error("SSE line longer than {MAX_LINE} bytes")]
    LineTooLong,
}

/// Result of feeding bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// All input consumed, the stream continues.
    More,
    /// The terminating zero chunk (and trailers) was read: the server ended the event stream. Bytes after
    /// it (a next keep-alive response) are ignored.
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of the chunk size.
    Size {
        value: u64,
        digits: u8,
    },
    /// Skipping `;name=value` chunk extensions (or whitespace) up to the line end.
    Ext {
        value: u64,
    },
    /// Saw CR at the end of the size line, expecting LF.
    SizeLf {
        value: u64,
    },
    /// Inside chunk data.
    Data {
        remaining: u64,
    },
    /// After chunk data: expecting CR LF.
    DataCr,
    DataLf,
    /// After the zero chunk: trailer lines until an empty line. `len` = bytes on the current line.
    Trailer {
        len: usize,
    },
    TrailerLf {
        len: usize,
    },
    Done,
}

/// Splits de-chunked bytes into SSE lines and fields.
#[derive(Debug, Default)]
struct Lines {
    /// Start of a line that did not end in the previous input.
    carry: Vec<u8>,
    /// A field was seen since the last dispatch (a blank line only dispatches a non-empty event).
    pending_event: bool,
}

impl Lines {
    fn push<S: SseSink>(&mut self, mut data: &[u8], sink: &mut S) -> Result<(), ProtoError> {
        while !data.is_empty() {
            match memchr(b'\n', data) {
                Some(i) => {
                    if self.carry.is_empty() {
                        line(&data[..i], &mut self.pending_event, sink);
                    } else {
                        self.carry.extend_from_slice(&data[..i]);
                        line(&self.carry, &mut self.pending_event, sink);
                        self.carry.clear();
                        if self.carry.capacity() > 4096 {
                            // One huge event should not pin memory for the connection's lifetime.
                            self.carry = Vec::new();
                        }
                    }
                    data = &data[i + 1..];
                }
                None => {
                    if self.carry.len() + data.len() > MAX_LINE {
                        return Err(ProtoError::LineTooLong);
                    }
                    self.carry.extend_from_slice(data);
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Handles one complete line (without its LF).
#[inline]
fn line<S: SseSink>(mut l: &[u8], pending_event: &mut bool, sink: &mut S) {
    if let [rest @ .., b'\r'] = l {
        l = rest;
    }
    if l.is_empty() {
        if *pending_event {
            *pending_event = false;
            sink.dispatch();
        }
        return;
    }
    if l[0] == b':' {
        return; // comment (keep-alive); PocketBase sends none
    }
    let (name, value) = match memchr(b':', l) {
        Some(i) => {
            let v = &l[i + 1..];
            (&l[..i], v.strip_prefix(b" ").unwrap_or(v))
        }
        None => (l, &b""[..]),
    };
    let field = match name {
        b"id" => Field::Id,
        b"event" => Field::Event,
        b"data" => Field::Data,
        _ => Field::Other,
    };
    *pending_event = true;
    sink.field(field, value);
}

/// Decoder for one response body; see the module docs.
#[derive(Debug)]
pub struct StreamDecoder {
    framing: Framing,
    chunk: Chunk,
    lines: Lines,
}

impl StreamDecoder {
    pub fn new(framing: Framing) -> Self {
        StreamDecoder {
            framing,
            chunk: Chunk::Size {
                value: 0,
                digits: 0,
            },
            lines: Lines::default(),
        }
    }

    /// Feeds bytes read from the socket (after the response head).
    pub fn feed<S: SseSink>(&mut self, input: &[u8], sink: &mut S) -> Result<Feed, ProtoError> {
        match self.framing {
            Framing::Identity => {
                self.lines.push(input, sink)?;
                Ok(Feed::More)
            }
            Framing::Chunked => self.feed_chunked(input, sink),
        }
    }

    fn feed_chunked<S: SseSink>(&mut self, input: &[u8], sink: &mut S) -> Result<Feed, ProtoError> {
        let mut i = 0;
        while i < input.len() {
            match self.chunk {
                Chunk::Data { remaining } => {
                    let n = (input.len() - i).min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    self.lines.push(&input[i..i + n], sink)?;
                    i += n;
                    let remaining = remaining - n as u64;
                    self.chunk = if remaining == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data { remaining }
                    };
                    continue;
                }
                Chunk::Done => return Ok(Feed::Ended),
                _ => {}
            }
            let b = input[i];
            i += 1;
            self.chunk = match self.chunk {
                Chunk::Size { value, digits } => match hex(b) {
                    Some(d) => {
                        // value <= MAX_CHUNK before the shift, so this cannot overflow.
                        let value = value << 4 | u64::from(d);
                        if value > MAX_CHUNK {
                            return Err(ProtoError::ChunkTooLarge);
                        }
                        Chunk::Size {
                            value,
                            digits: digits.saturating_add(1),
                        }
                    }
                    None if digits == 0 => return Err(ProtoError::BadChunkSize(b)),
                    None => match b {
                        b'\r' => Chunk::SizeLf { value },
                        b'\n' => after_size(value),
                        b';' | b' ' | b'\t' => Chunk::Ext { value },
                        _ => return Err(ProtoError::BadChunkSize(b)),
                    },
                },
                Chunk::Ext { value } => match b {
                    b'\r' => Chunk::SizeLf { value },
                    b'\n' => after_size(value),
                    _ => Chunk::Ext { value },
                },
                Chunk::SizeLf { value } => match b {
                    b'\n' => after_size(value),
                    _ => return Err(ProtoError::BadChunkSize(b)),
                },
                Chunk::DataCr => match b {
                    b'\r' => Chunk::DataLf,
                    b'\n' => Chunk::Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Err(ProtoError::MissingChunkCrlf(b)),
                },
                Chunk::DataLf => match b {
                    b'\n' => Chunk::Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Err(ProtoError::MissingChunkCrlf(b)),
                },
                Chunk::Trailer { len } => match b {
                    b'\r' => Chunk::TrailerLf { len },
                    b'\n' if len == 0 => Chunk::Done,
                    b'\n' => Chunk::Trailer { len: 0 },
                    _ => Chunk::Trailer { len: len + 1 },
                },
                Chunk::TrailerLf { len } => match b {
                    b'\n' if len == 0 => Chunk::Done,
                    b'\n' => Chunk::Trailer { len: 0 },
                    _ => Chunk::Trailer { len: len + 2 },
                },
                Chunk::Data { .. } | Chunk::Done => unreachable!("handled above"),
            };
        }
        Ok(if self.chunk == Chunk::Done {
            Feed::Ended
        } else {
            Feed::More
        })
    }
}

#[inline]
fn after_size(value: u64) -> Chunk {
    if value == 0 {
        Chunk::Trailer { len: 0 }
    } else {
        Chunk::Data { remaining: value }
    }
}

#[inline]
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects whole events, the way an EventSource would see them.
    #[derive(Debug, Default, PartialEq, Eq, Clone)]
    struct Ev {
        id: Vec<u8>,
        event: Vec<u8>,
        data: Vec<u8>,
    }

    #[derive(Default)]
    struct Collect {
        cur: Ev,
        data_lines: usize,
        events: Vec<Ev>,
    }

    impl SseSink for Collect {
        fn field(&mut self, field: Field, value: &[u8]) {
            match field {
                Field::Id => self.cur.id = value.to_vec(),
                Field::Event => self.cur.event = value.to_vec(),
                Field::Data => {
                    if self.data_lines > 0 {
                        self.cur.data.push(b'\n');
                    }
                    self.cur.data.extend_from_slice(value);
                    self.data_lines += 1;
                }
                Field::Other => {}
            }
        }
        fn dispatch(&mut self) {
            self.events.push(std::mem::take(&mut self.cur));
            self.data_lines = 0;
        }
    }

    fn ev(id: &str, event: &str, data: &str) -> Ev {
        Ev {
            id: id.into(),
            event: event.into(),
            data: data.into(),
        }
    }

    fn chunk(payload: &str) -> String {
        format!("{:x}\r\n{payload}\r\n", payload.len())
    }

    const CID: &str = "pSvBZAhg56zPGkZOjKGqoHU1IX34PMA9o5KQDbO5";

    fn pb_stream() -> (String, Vec<Ev>) {
        let connect = format!("id:{CID}\nevent:PB_CONNECT\ndata:{{\"clientId\":\"{CID}\"}}\n\n");
        let m1 = format!("id:{CID}\nevent:news\ndata:{{\"seq\":0,\"ts\":12}}\n\n");
        let m2 = format!("id:{CID}\nevent:news?options=%7B%7D\ndata:{{\"seq\":1,\"ts\":13}}\n\n");
        let mut s = chunk(&connect);
        assert!(s.starts_with("7b\r\n"), "PB_CONNECT chunk is 0x7b bytes");
        s += &chunk(&m1);
        s += &chunk(&m2);
        s += "0\r\n\r\n";
        let want = vec![
            ev(CID, "PB_CONNECT", &format!("{{\"clientId\":\"{CID}\"}}")),
            ev(CID, "news", "{\"seq\":0,\"ts\":12}"),
            ev(CID, "news?options=%7B%7D", "{\"seq\":1,\"ts\":13}"),
        ];
        (s, want)
    }

    fn decode_pieces(pieces: &[&[u8]]) -> (Vec<Ev>, Feed) {
        let mut d = StreamDecoder::new(Framing::Chunked);
        let mut c = Collect::default();
        let mut last = Feed::More;
        for p in pieces {
            last = d.feed(p, &mut c).expect("decode");
        }
        (c.events, last)
    }

    #[test]
    fn whole_stream_in_one_read() {
        let (s, want) = pb_stream();
        let (got, end) = decode_pieces(&[s.as_bytes()]);
        assert_eq!(got, want);
        assert_eq!(end, Feed::Ended);
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let (s, want) = pb_stream();
        let b = s.as_bytes();
        for cut in 0..=b.len() {
            let (got, end) = decode_pieces(&[&b[..cut], &b[cut..]]);
            assert_eq!(got, want, "cut at {cut}");
            assert_eq!(end, Feed::Ended, "cut at {cut}");
        }
        // and every pair of cuts (three reads)
        for a in 0..=b.len() {
            for c in a..=b.len() {
                let (got, _) = decode_pieces(&[&b[..a], &b[a..c], &b[c..]]);
                assert_eq!(got, want, "cuts at {a},{c}");
            }
        }
    }

    #[test]
    fn one_byte_per_read() {
        let (s, want) = pb_stream();
        let pieces: Vec<&[u8]> = s.as_bytes().chunks(1).collect();
        let (got, end) = decode_pieces(&pieces);
        assert_eq!(got, want);
        assert_eq!(end, Feed::Ended);
    }

    #[test]
    fn chunk_extensions_uppercase_hex_and_trailers() {
        let e = "id:a\nevent:t\ndata:{\"seq\":7}\n\n";
        let s = format!(
            "{:X};name=value;q=\"x;y\"\r\n{e}\r\n{:x} \t; ext\r\n{e}\r\n0;last=1\r\nX-Trailer: v\r\nY: w\r\n\r\n",
            e.len(),
            e.len()
        );
        let b = s.as_bytes();
        for cut in 0..=b.len() {
            let (got, end) = decode_pieces(&[&b[..cut], &b[cut..]]);
            assert_eq!(got, vec![ev("a", "t", "{\"seq\":7}"); 2], "cut {cut}");
            assert_eq!(end, Feed::Ended);
        }
    }

    #[test]
    fn event_split_across_chunks_and_several_per_chunk() {
        // Not what PocketBase does, but legal: lines and events are independent of chunk boundaries.
        let body = "id:a\nevent:t\ndata:1\n\nid:a\nevent:t\ndata:2\n\nid:a\nev";
        let rest = "ent:t\ndata:3\n\n";
        let s = format!("{}{}0\r\n\r\n", chunk(body), chunk(rest));
        let (got, end) = decode_pieces(&[s.as_bytes()]);
        assert_eq!(
            got,
            vec![ev("a", "t", "1"), ev("a", "t", "2"), ev("a", "t", "3")]
        );
        assert_eq!(end, Feed::Ended);
    }

    #[test]
    fn zero_chunk_ends_stream_and_ignores_following_bytes() {
        let s = format!(
            "{}0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
            chunk("id:a\nevent:t\ndata:x\n\n")
        );
        let (got, end) = decode_pieces(&[s.as_bytes()]);
        assert_eq!(got, vec![ev("a", "t", "x")]);
        assert_eq!(end, Feed::Ended);
        // Without the final CRLF the stream has not ended yet.
        let (_, end) = decode_pieces(&[b"0\r\n"]);
        assert_eq!(end, Feed::More);
    }

    #[test]
    fn sse_details_space_crlf_comments_multiline_data() {
        let s = ": keep-alive\r\nid: a\r\nevent: t\r\nretry: 10\r\ndata: x\r\ndata:y\r\n\r\n\n\n";
        let mut d = StreamDecoder::new(Framing::Identity);
        let mut c = Collect::default();
        d.feed(s.as_bytes(), &mut c).expect("valid stream");
        assert_eq!(c.events, vec![ev("a", "t", "x\ny")]);
    }

    #[test]
    fn protocol_errors() {
        let mut c = Collect::default();
        let mut d = StreamDecoder::new(Framing::Chunked);
        assert_eq!(
            d.feed(b"zz\r\n", &mut c),
            Err(ProtoError::BadChunkSize(b'z'))
        );
        let mut d = StreamDecoder::new(Framing::Chunked);
        assert_eq!(
            d.feed(b"3\r\nabcX", &mut c),
            Err(ProtoError::MissingChunkCrlf(b'X'))
        );
        let mut d = StreamDecoder::new(Framing::Chunked);
        assert_eq!(
            d.feed(b"fffffffffffffff\r\n", &mut c),
            Err(ProtoError::ChunkTooLarge)
        );
    }
}
