//! The SSE frame writer, round trip: `Frame::new(name, data)` rendered as
//! `[head][40-byte id][tail]` in `Chunked` and `Raw` mode, read back with the
//! independent parser in [`crate::sse`].
//!
//! Input: the event name up to the first `\n` (CRs dropped: the server never
//! writes a name with a line break), then the data.
//!
//! Invariants: chunked, the frame is exactly one chunk whose size line is
//! lower-case hex without leading zeros and equals the chunk's length, and
//! the chunk is the raw frame; the raw frame is one SSE event and nothing
//! else: fields `id`, `event`, then one `data` per data line, no CR; the event's
//! id is the client id, its type the name, its data the data with CR LF and
//! CR turned into LF; `wire_len` is the rendered length in every mode
//! (`Discard` as `Raw`), `max_wire_len` the chunked one; `head_bytes` and
//! `tail_bytes` are `head` and `tail`; `write_event` writes the same bytes;
//! a name or data line starting with a space reads back with that space (the
//! standard removes one space after the colon).
//!
//! No known findings (fixed: such a leading space was lost).

use crate::sse;
use ringcast::frame::{BodyMode, Frame, ID_LEN, field_len, max_wire_len, write_event};

/// A client id as the server makes them: 40 characters of `A-Za-z0-9`.
const ID: &[u8; ID_LEN] = b"Y4XViRWkJrItsXGEKMhCYXkYA2OYKIbxP1jtlx8R";

pub fn run(input: &[u8], _strict: bool) {
    let (name, data) = match input.iter().position(|&b| b == b'\n') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[][..]),
    };
    let name: Vec<u8> = name.iter().copied().filter(|&b| b != b'\r').collect();
    let frame = Frame::new(&name, data);

    let chunked = render(&frame, BodyMode::Chunked);
    let raw = render(&frame, BodyMode::Raw);
    assert_eq!(
        render(&frame, BodyMode::Discard),
        raw,
        "Discard mode renders differently from Raw"
    );
    assert_eq!(
        max_wire_len(field_len(&name), data),
        chunked.len(),
        "max_wire_len vs the chunked frame"
    );

    let (size, chunk) = match sse::one_chunk(&chunked) {
        Ok(c) => c,
        Err(e) => panic!(
            "chunked frame: {e}: {:?}",
            String::from_utf8_lossy(&chunked)
        ),
    };
    assert_eq!(
        size,
        format!("{:x}", chunk.len()).as_bytes(),
        "chunk size line is not the chunk's length in lower-case hex"
    );
    assert_eq!(chunk, &raw[..], "the chunk is not the raw frame");

    for (mode, shared) in [(BodyMode::Chunked, &chunked), (BodyMode::Raw, &raw)] {
        let mut direct = Vec::new();
        write_event(&mut direct, mode, ID, &name, data);
        assert!(
            direct == *shared,
            "write_event in {mode:?} differs from the shared frame"
        );
    }

    check_event(&raw, &name, data);
}

/// `[head][id][tail]`, checked against `wire_len`, the `Bytes` accessors and
/// `write_event`.
fn render(frame: &Frame, mode: BodyMode) -> Vec<u8> {
    let mut out = frame.head(mode).to_vec();
    out.extend_from_slice(ID);
    out.extend_from_slice(frame.tail(mode));
    assert_eq!(out.len(), frame.wire_len(mode), "wire_len in {mode:?}");
    assert_eq!(
        frame.head_bytes(mode),
        frame.head(mode),
        "head_bytes in {mode:?}"
    );
    assert_eq!(
        frame.tail_bytes(mode),
        frame.tail(mode),
        "tail_bytes in {mode:?}"
    );
    out
}

fn check_event(raw: &[u8], name: &[u8], data: &[u8]) {
    let text = || String::from_utf8_lossy(raw).into_owned();
    assert!(!raw.contains(&b'\r'), "CR in the event: {:?}", text());
    let stream = sse::parse(raw);
    assert!(
        stream.pending.is_empty() && stream.comments == 0,
        "bytes outside the event: {:?}",
        text()
    );
    let names: Vec<&[u8]> = stream.fields.iter().map(|(n, _)| &n[..]).collect();
    let lines = lines(data);
    let mut expected_names: Vec<&[u8]> = vec![b"id", b"event"];
    expected_names.extend(std::iter::repeat_n(&b"data"[..], lines.len()));
    assert_eq!(names, expected_names, "fields of {:?}", text());

    let [event] = &stream.events[..] else {
        panic!("{} events in {:?}", stream.events.len(), text());
    };
    let expected_data = lines.join(&b'\n');
    assert_eq!(event.id, ID, "id of {:?}", text());
    assert!(
        event.event == name,
        "event type {:?}, expected {:?}: {:?}",
        String::from_utf8_lossy(&event.event),
        String::from_utf8_lossy(name),
        text()
    );
    assert!(
        event.data == expected_data,
        "data {:?}, expected {:?}: {:?}",
        String::from_utf8_lossy(&event.data),
        String::from_utf8_lossy(&expected_data),
        text()
    );
}

/// `data` split at CR LF, LF and CR, independently of the writer.
fn lines(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\n' => {
                out.push(&data[start..i]);
                start = i + 1;
            }
            b'\r' => {
                out.push(&data[start..i]);
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&data[start..]);
    out
}
