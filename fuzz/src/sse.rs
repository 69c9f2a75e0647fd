//! An SSE parser written from the WHATWG HTML standard ("Interpreting an
//! event stream"), independent of `ringcast::frame`, over bytes, and an
//! HTTP/1.1 chunk parser for one chunk.

/// One field line as read: its name and value (one leading space removed).
pub type Field = (Vec<u8>, Vec<u8>);

/// A dispatched event.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    /// The last event id when it was dispatched.
    pub id: Vec<u8>,
    /// The event type buffer (empty means the default, `message`).
    pub event: Vec<u8>,
    /// The data buffer without its final LF.
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Stream {
    pub events: Vec<Event>,
    /// Every field line, in order, dispatched or not.
    pub fields: Vec<Field>,
    /// Comment lines (starting with `:`).
    pub comments: usize,
    /// Bytes after the last line end: an incomplete line, discarded.
    pub pending: Vec<u8>,
}

/// Parses a whole stream. Lines end at CR LF, LF or CR.
pub fn parse(stream: &[u8]) -> Stream {
    let mut out = Stream::default();
    let (mut id, mut event, mut data) = (Vec::new(), Vec::new(), Vec::new());
    let mut rest = stream;
    loop {
        let Some(i) = rest.iter().position(|&b| b == b'\r' || b == b'\n') else {
            out.pending = rest.to_vec();
            return out;
        };
        let line = &rest[..i];
        // A CR at the very end might be the first half of a CR LF; the
        // standard takes it as a line end, and so does this parser.
        let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        rest = &rest[i + skip..];

        if line.is_empty() {
            if !data.is_empty() {
                data.pop();
                out.events.push(Event {
                    id: id.clone(),
                    event: std::mem::take(&mut event),
                    data: std::mem::take(&mut data),
                });
            }
            event.clear();
            continue;
        }
        if line[0] == b':' {
            out.comments += 1;
            continue;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        match name {
            b"event" => event = value.to_vec(),
            b"data" => {
                data.extend_from_slice(value);
                data.push(b'\n');
            }
            b"id" if !value.contains(&0) => id = value.to_vec(),
            _ => {}
        }
        out.fields.push((name.to_vec(), value.to_vec()));
    }
}

/// Splits `<hex size>\r\n<data>\r\n` (one chunk, no extensions) into the
/// size as written and the data; `Err` says what is wrong.
pub fn one_chunk(wire: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let line_end = wire
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or("no CR LF after the chunk size")?;
    let size_text = &wire[..line_end];
    let size = std::str::from_utf8(size_text)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|s| usize::from_str_radix(s, 16).ok())
        .ok_or_else(|| format!("chunk size line {size_text:?} is not hex"))?;
    let chunk = &wire[line_end + 2..];
    let data = chunk
        .get(..size)
        .ok_or_else(|| format!("chunk size {size} but {} bytes follow", chunk.len()))?;
    match &chunk[size..] {
        b"\r\n" => Ok((size_text, data)),
        after => Err(format!(
            "chunk of size {size} is followed by {after:?}, not CR LF"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standards_examples() {
        let s = parse(b"data: YHOO\ndata: +2\ndata: 10\n\n");
        assert_eq!(s.events[0].data, b"YHOO\n+2\n10");
        let s = parse(b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n");
        assert_eq!(s.comments, 1);
        let got: Vec<_> = s.events.iter().map(|e| (&e.id[..], &e.data[..])).collect();
        assert_eq!(
            got,
            [
                (&b"1"[..], &b"first event"[..]),
                (b"", b"second event"),
                (b"", b" third event")
            ]
        );
        let s = parse(b"data\n\ndata\ndata\n\ndata:");
        let got: Vec<_> = s.events.iter().map(|e| &e.data[..]).collect();
        assert_eq!(got, [&b""[..], b"\n"]);
        assert_eq!(s.pending, b"data:");
        let s = parse(b"event:a\r\ndata:x\rdata:y\r\n\r\n");
        assert_eq!(s.events[0].event, b"a");
        assert_eq!(s.events[0].data, b"x\ny");
    }

    #[test]
    fn chunks() {
        assert_eq!(one_chunk(b"3\r\nabc\r\n"), Ok((&b"3"[..], &b"abc"[..])));
        assert!(one_chunk(b"3\r\nabcd\r\n").is_err());
        assert!(one_chunk(b"x\r\n\r\n").is_err());
    }
}
