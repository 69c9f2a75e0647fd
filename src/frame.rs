//! SSE framing, byte-compatible with PocketBase.
//!
//! Every event is `id:<clientId>\nevent:<name>\ndata:<data>\n\n`. The `id` is the
//! *recipient's* client id, so one published message cannot be a single shared
//! buffer. Instead a [`Frame`] holds everything but the id — the chunk-size line
//! and `id:` before it, the event name and data after it — and each recipient's
//! write is `[frame head][client id][frame tail]`: three iovecs, nothing copied
//! or allocated per recipient.
//!
//! On HTTP/1.1 each event is one chunk of the chunked body (as in PocketBase);
//! on HTTP/1.0 the body is close-delimited, so the same buffer is written without
//! the chunk framing. One buffer serves both.
//!
//! Where PocketBase is wrong we are better: data containing line breaks is
//! written as several `data:` lines (valid SSE) instead of breaking the frame.

use bytes::Bytes;

/// Length of a client id; fixed by the protocol (PocketBase uses 40 too).
pub const ID_LEN: usize = 40;

/// The terminating chunk of a chunked body: how a stream is ended politely.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How a stream's body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyMode {
    /// HTTP/1.1: one chunk per event.
    Chunked,
    /// HTTP/1.0: raw bytes, delimited by closing the connection.
    Raw,
    /// HEAD: the head was written, the body is discarded.
    Discard,
}

/// One event minus the recipient's id, built once per (message, subscription
/// string) and shared by every recipient on a core.
#[derive(Debug)]
pub struct Frame {
    /// `<hex>\r\nid:` + `\nevent:<name>\ndata:<data>\n\n` + `\r\n`.
    buf: Bytes,
    /// Length of the `<hex>\r\n` prefix.
    prefix: usize,
    /// Where the client id goes (after `id:`, or after a comment's `: `).
    id_at: usize,
}

impl Frame {
    /// Builds the frame for an event named `name` carrying `data`.
    pub fn new(name: &[u8], data: &[u8]) -> Frame {
        Frame::build(name, data, None)
    }

    /// [`Frame::new`] with a second `id:` line, `cursor`, after the client
    /// id: an EventSource keeps the last `id:` of an event as its
    /// `lastEventId` and sends it back as `Last-Event-ID` when it reconnects
    /// (`--sse-ids topic`, `core::history`).
    pub fn with_cursor(name: &[u8], data: &[u8], cursor: &[u8]) -> Frame {
        Frame::build(name, data, Some(cursor))
    }

    fn build(name: &[u8], data: &[u8], cursor: Option<&[u8]>) -> Frame {
        let cursor_len = cursor.map_or(0, |c| 4 + c.len());
        let event = cursor_len + event_body_len(field_len(name), data);
        let chunk_len = 3 + ID_LEN + event;
        let hex = HexLen::new(chunk_len);
        let mut buf = Vec::with_capacity(hex.len() + 2 + chunk_len - ID_LEN + 2);
        buf.extend_from_slice(hex.as_bytes());
        buf.extend_from_slice(b"\r\nid:");
        if let Some(cursor) = cursor {
            buf.extend_from_slice(b"\nid:");
            buf.extend_from_slice(cursor);
        }
        write_event_body(&mut buf, name, data);
        buf.extend_from_slice(b"\r\n");
        Frame {
            buf: Bytes::from(buf),
            prefix: hex.len() + 2,
            id_at: hex.len() + 5,
        }
    }

    /// An SSE comment, `: <client id>`, that readers ignore: a heartbeat
    /// (`--heartbeat`), shaped like any frame so that it is queued and
    /// written like one.
    pub fn comment() -> Frame {
        let chunk_len = 2 + ID_LEN + 2;
        let hex = HexLen::new(chunk_len);
        let mut buf = Vec::with_capacity(hex.len() + 2 + chunk_len - ID_LEN + 2);
        buf.extend_from_slice(hex.as_bytes());
        buf.extend_from_slice(b"\r\n: \n\n\r\n");
        Frame {
            buf: Bytes::from(buf),
            prefix: hex.len() + 2,
            id_at: hex.len() + 4,
        }
    }

    /// The bytes that precede the client id for `mode`.
    pub fn head(&self, mode: BodyMode) -> &[u8] {
        &self.buf[self.head_range(mode)]
    }

    /// The bytes that follow the client id for `mode`.
    pub fn tail(&self, mode: BodyMode) -> &[u8] {
        &self.buf[self.tail_range(mode)]
    }

    /// [`Frame::head`] as a buffer an asynchronous write can own.
    pub fn head_bytes(&self, mode: BodyMode) -> Bytes {
        self.buf.slice(self.head_range(mode))
    }

    /// [`Frame::tail`] as a buffer an asynchronous write can own.
    pub fn tail_bytes(&self, mode: BodyMode) -> Bytes {
        self.buf.slice(self.tail_range(mode))
    }

    fn head_range(&self, mode: BodyMode) -> std::ops::Range<usize> {
        match mode {
            BodyMode::Chunked => 0..self.id_at,
            BodyMode::Raw | BodyMode::Discard => self.prefix..self.id_at,
        }
    }

    fn tail_range(&self, mode: BodyMode) -> std::ops::Range<usize> {
        match mode {
            BodyMode::Chunked => self.id_at..self.buf.len(),
            BodyMode::Raw | BodyMode::Discard => self.id_at..self.buf.len() - 2,
        }
    }

    /// Bytes on the wire for one recipient in `mode`, id included.
    pub fn wire_len(&self, mode: BodyMode) -> usize {
        match mode {
            BodyMode::Chunked => self.buf.len() + ID_LEN,
            BodyMode::Raw | BodyMode::Discard => self.buf.len() - self.prefix - 2 + ID_LEN,
        }
    }
}

/// Writes one complete event for `id` (used for `PB_CONNECT`, which is per client anyway).
pub fn write_event(out: &mut Vec<u8>, mode: BodyMode, id: &[u8], name: &[u8], data: &[u8]) {
    let chunk_len = 3 + id.len() + event_body_len(field_len(name), data);
    if mode == BodyMode::Chunked {
        out.extend_from_slice(HexLen::new(chunk_len).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"id:");
    out.extend_from_slice(id);
    write_event_body(out, name, data);
    if mode == BodyMode::Chunked {
        out.extend_from_slice(b"\r\n");
    }
}

/// Whether `name` can be an event name: a line break would end the `event:`
/// field and let the rest pass for fields of its own (forged events).
pub fn is_valid_name(name: &str) -> bool {
    !name.contains(['\r', '\n'])
}

/// Bytes one event takes on the wire at most (chunked, id included), with
/// `name_len` the [`field_len`] of its name: what counts against a client's
/// `--max-queue-bytes`.
pub fn max_wire_len(name_len: usize, data: &[u8]) -> usize {
    let chunk = 3 + ID_LEN + event_body_len(name_len, data);
    HexLen::new(chunk).as_bytes().len() + 2 + chunk + 2
}

/// `\nevent:<name>\n` + one `data:<line>\n` per line + `\n`.
fn write_event_body(out: &mut Vec<u8>, name: &[u8], data: &[u8]) {
    out.extend_from_slice(b"\nevent:");
    write_field(out, name);
    for line in DataLines::new(data) {
        out.extend_from_slice(b"data:");
        write_field(out, line);
    }
    out.push(b'\n');
}

/// A field's value and its line end. A reader drops one space after the
/// colon, so a value starting with a space gets one more (PocketBase writes
/// none, and its `event: x` arrives as `x`); every other value is written
/// as PocketBase writes it.
fn write_field(out: &mut Vec<u8>, value: &[u8]) {
    if value.first() == Some(&b' ') {
        out.push(b' ');
    }
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Bytes [`write_field`] writes for `value` before its line end.
pub fn field_len(value: &[u8]) -> usize {
    value.len() + usize::from(value.first() == Some(&b' '))
}

fn event_body_len(name_len: usize, data: &[u8]) -> usize {
    let lines: usize = DataLines::new(data).map(|l| 6 + field_len(l)).sum();
    7 + name_len + 1 + lines + 1
}

/// Splits data at CR LF, LF or CR — the line ends SSE recognises — so that each
/// piece can be written as its own `data:` field. Empty data is one empty line.
struct DataLines<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> DataLines<'a> {
    fn new(data: &'a [u8]) -> Self {
        DataLines { rest: Some(data) }
    }
}

impl<'a> Iterator for DataLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match memchr::memchr2(b'\n', b'\r', rest) {
            None => {
                self.rest = None;
                Some(rest)
            }
            Some(i) => {
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                self.rest = Some(&rest[i + skip..]);
                Some(&rest[..i])
            }
        }
    }
}

/// A chunk size in lower-case hex (as Go writes it), without allocating.
struct HexLen {
    digits: [u8; 16],
    start: usize,
}

impl HexLen {
    fn new(mut n: usize) -> Self {
        let mut digits = [0u8; 16];
        let mut start = 16;
        loop {
            start -= 1;
            digits[start] = b"0123456789abcdef"[n & 0xf];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        HexLen { digits, start }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }

    fn len(&self) -> usize {
        16 - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &[u8; 40] = b"abcdefghijABCDEFGHIJ0123456789abcdefghij";

    fn render(frame: &Frame, mode: BodyMode) -> Vec<u8> {
        let mut out = frame.head(mode).to_vec();
        out.extend_from_slice(ID);
        out.extend_from_slice(frame.tail(mode));
        assert_eq!(frame.head_bytes(mode), frame.head(mode));
        assert_eq!(frame.tail_bytes(mode), frame.tail(mode));
        assert_eq!(out.len(), frame.wire_len(mode));
        out
    }

    #[test]
    fn a_cursor_is_a_second_id_line_and_a_heartbeat_a_comment() {
        let id = std::str::from_utf8(ID).unwrap();
        let frame = Frame::with_cursor(b"chat", b"{}", b"7:42");
        let raw = String::from_utf8(render(&frame, BodyMode::Raw)).unwrap();
        assert_eq!(raw, format!("id:{id}\nid:7:42\nevent:chat\ndata:{{}}\n\n"));
        let chunked = String::from_utf8(render(&frame, BodyMode::Chunked)).unwrap();
        assert_eq!(chunked, format!("{:x}\r\n{raw}\r\n", raw.len()));
        let beat = String::from_utf8(render(&Frame::comment(), BodyMode::Chunked)).unwrap();
        assert_eq!(beat, format!("2c\r\n: {id}\n\n\r\n"));
    }

    #[test]
    fn pb_connect_is_one_7b_chunk() {
        let data = format!(r#"{{"clientId":"{}"}}"#, std::str::from_utf8(ID).unwrap());
        let mut out = Vec::new();
        write_event(
            &mut out,
            BodyMode::Chunked,
            ID,
            b"PB_CONNECT",
            data.as_bytes(),
        );
        let expected = format!(
            "7b\r\nid:{id}\nevent:PB_CONNECT\ndata:{{\"clientId\":\"{id}\"}}\n\n\r\n",
            id = std::str::from_utf8(ID).unwrap()
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn shared_frame_matches_a_directly_written_event() {
        for mode in [BodyMode::Chunked, BodyMode::Raw] {
            let frame = Frame::new(b"chat?options=%7B%7D", br#"{"a":1}"#);
            let mut direct = Vec::new();
            write_event(&mut direct, mode, ID, b"chat?options=%7B%7D", br#"{"a":1}"#);
            assert_eq!(render(&frame, mode), direct);
        }
    }

    #[test]
    fn raw_mode_has_no_chunk_framing() {
        let frame = Frame::new(b"t", b"x");
        let out = render(&frame, BodyMode::Raw);
        assert_eq!(
            out,
            [b"id:".as_slice(), ID, b"\nevent:t\ndata:x\n\n"].concat()
        );
    }

    #[test]
    fn a_leading_space_survives_a_reader() {
        // Found by fuzz/sse_frame: a reader drops one space after the colon.
        let frame = Frame::new(b" chat", b"1\n indented");
        let out = render(&frame, BodyMode::Chunked);
        assert!(
            out.ends_with(b"\nevent:  chat\ndata:1\ndata:  indented\n\n\r\n"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(out.len(), frame.wire_len(BodyMode::Chunked));
        assert_eq!(
            out.len(),
            max_wire_len(field_len(b" chat"), b"1\n indented")
        );
    }

    #[test]
    fn chunk_size_counts_the_whole_event() {
        let frame = Frame::new(b"t", &[b'y'; 300]);
        let out = render(&frame, BodyMode::Chunked);
        let crlf = out.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&out[..crlf]).unwrap(), 16).unwrap();
        assert_eq!(size, out.len() - crlf - 4);
        assert!(out.ends_with(b"\n\n\r\n"));
    }

    #[test]
    fn line_breaks_in_data_become_several_data_lines() {
        let frame = Frame::new(b"t", b"a\nb\r\nc\rd\n");
        let out = render(&frame, BodyMode::Raw);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("\nevent:t\ndata:a\ndata:b\ndata:c\ndata:d\ndata:\n\n"),
            "{text}"
        );
    }

    #[test]
    fn empty_data_is_an_empty_data_line() {
        let out = render(&Frame::new(b"t", b""), BodyMode::Raw);
        assert!(out.ends_with(b"\nevent:t\ndata:\n\n"));
    }

    #[test]
    fn hex_is_lower_case_without_padding() {
        assert_eq!(HexLen::new(0).as_bytes(), b"0");
        assert_eq!(HexLen::new(0x7b).as_bytes(), b"7b");
        assert_eq!(HexLen::new(0xabcdef).as_bytes(), b"abcdef");
    }
}
