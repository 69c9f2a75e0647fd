//! Server-Sent Events: the streaming decoder (shared with the load tool), the strict parse of one
//! PocketBase event, and [`SseClient`], an open `GET /api/realtime` stream in a test.

mod decoder;

pub use decoder::{Feed, Field, Framing, ProtoError, SseSink, StreamDecoder};

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::bytes::{assert_bytes, find, show};
use crate::http::{Conn, Head};
use crate::pocketbase::{assert_head, chunk, event, pb_connect_event, pb_connect_id, sse_head};
use crate::server::is_external;

/// One SSE event as PocketBase writes it: `id:<id>\nevent:<name>\ndata:<data>\n\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub name: String,
    pub data: String,
}

impl Event {
    /// Parse exactly one event in PocketBase's byte layout: the fields are read by the load tool's
    /// decoder, then re-encoded and compared, so an extra space, CR or field fails.
    #[track_caller]
    pub fn parse(bytes: &[u8]) -> Event {
        #[derive(Default)]
        struct Fields(Vec<(Field, String)>, usize);
        impl SseSink for Fields {
            fn field(&mut self, field: Field, value: &[u8]) {
                self.0
                    .push((field, String::from_utf8_lossy(value).into_owned()));
            }
            fn dispatch(&mut self) {
                self.1 += 1;
            }
        }
        let mut f = Fields::default();
        StreamDecoder::new(Framing::Identity)
            .feed(bytes, &mut f)
            .unwrap_or_else(|e| panic!("{e}: {}", show(bytes)));
        let event = match (&f.0[..], f.1) {
            ([(Field::Id, id), (Field::Event, name), (Field::Data, data)], 1) => Event {
                id: id.clone(),
                name: name.clone(),
                data: data.clone(),
            },
            _ => panic!("not one id/event/data event: {}", show(bytes)),
        };
        assert_bytes(&event.encode(), bytes, "event framing");
        event
    }

    pub fn encode(&self) -> Vec<u8> {
        event(&self.id, &self.name, &self.data)
    }
}

/// The GET the raw-socket captures sent: `Host` and `Accept: text/event-stream`, then `headers`.
pub fn stream_request(host: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut r =
        format!("GET /api/realtime HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n");
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// An open SSE stream with its client id.
pub struct SseClient {
    pub conn: Conn,
    pub id: String,
    pub head: Head,
    /// The payload of the first chunk (the PB_CONNECT event).
    pub first_chunk: Vec<u8>,
}

impl SseClient {
    /// Open a stream on `addr` (from `local`, if given) and read its PB_CONNECT, checking the
    /// event's bytes but not the head: for servers whose headers differ from PocketBase's in
    /// case and order (the baseline). The head is kept for the test to look at.
    #[track_caller]
    pub fn connect_with(local: Option<IpAddr>, addr: SocketAddr, headers: &[(&str, &str)]) -> Self {
        let mut conn = match local {
            Some(ip) => Conn::connect_from(ip, addr),
            None => Conn::connect(addr),
        };
        conn.send(&stream_request(&addr.to_string(), headers));
        let head = conn.read_head();
        let first_chunk = conn.read_chunk_payload();
        let connect = Event::parse(&first_chunk);
        assert_eq!(connect.name, "PB_CONNECT", "the first event");
        SseClient {
            conn,
            id: connect.id,
            head,
            first_chunk,
        }
    }

    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Self {
        Self::connect_with(None, addr, &[])
    }

    /// Read the stream head and the PB_CONNECT chunk from a connection that sent the GET, and
    /// check both byte for byte against PocketBase's.
    #[track_caller]
    pub fn from_conn(conn: Conn) -> SseClient {
        Self::expect_stream(conn, &sse_head(false), "GET /api/realtime")
    }

    /// Like `from_conn`, for a request whose stream head differs from the plain one (an `Origin`,
    /// `Connection: close`); `ctx` names the case in a failure.
    #[track_caller]
    pub fn expect_stream(mut conn: Conn, expected_head: &str, ctx: &str) -> SseClient {
        let head = conn.read_head();
        assert_head(&head, expected_head, ctx);
        let raw = conn.read_chunk_raw();
        let id = pb_connect_id(&raw);
        assert_bytes(
            &raw,
            &chunk(&pb_connect_event(&id)),
            &format!("{ctx}: PB_CONNECT chunk"),
        );
        let first_chunk = pb_connect_event(&id);
        SseClient {
            conn,
            id,
            head,
            first_chunk,
        }
    }

    /// The next event, parsed strictly; it must carry this client's id.
    #[track_caller]
    pub fn next_event(&mut self) -> Event {
        let chunk = self.conn.read_chunk_payload();
        assert!(
            !chunk.is_empty(),
            "stream ended while an event was expected"
        );
        let event = Event::parse(&chunk);
        assert_eq!(event.id, self.id, "every event carries the client id");
        event
    }

    /// Expect the next event to be exactly this one. An event of up to 2048 bytes must be exactly
    /// one chunk (checked raw, framing included). Larger events are compared de-chunked: PocketBase
    /// (Go's 2048-byte response buffer) splits them over several chunks, e.g. a 5063-byte event
    /// arrives as chunks of 2048 + 3013 + 2 bytes, so chunk boundaries are not part of the contract.
    #[track_caller]
    pub fn expect_event(&mut self, name: &str, data: &str) {
        let ev = event(&self.id, name, data);
        let got = self.read_event_bytes(ev.len());
        assert_bytes(&got, &ev, &format!("event {name:?}"));
    }

    /// Like `expect_event`, for data holding a JSON object with several keys. Against ringcast the
    /// bytes are exact (keys in the published order). In external mode (PocketBase +
    /// notify.pb.js) the hook re-serialises a Go map, so the key order varies from run to run:
    /// there the `id:`/`event:` lines, the length and the parsed JSON must match.
    #[track_caller]
    pub fn expect_event_unordered_keys(&mut self, name: &str, data: &str) {
        if !is_external() {
            return self.expect_event(name, data);
        }
        let ev = event(&self.id, name, data);
        let got = self.read_event_bytes(ev.len());
        let head = format!("id:{}\nevent:{name}\ndata:", self.id);
        let ok = got.len() == ev.len()
            && got.starts_with(head.as_bytes())
            && got.ends_with(b"\n\n")
            && serde_json::from_slice::<serde_json::Value>(&got[head.len()..got.len() - 2]).ok()
                == serde_json::from_str::<serde_json::Value>(data).ok();
        if !ok {
            panic!(
                "event {name:?} (key order free)\n   got: {}\nexpected: {}",
                show(&got),
                show(&ev)
            );
        }
    }

    /// Read the next event of `len` bytes: for `len <= 2048` one raw chunk (returned raw, so a
    /// comparison with `chunk(event)` checks the framing); otherwise the de-chunked payload of as
    /// many chunks as needed (returned as the bare event bytes).
    #[track_caller]
    fn read_event_bytes(&mut self, len: usize) -> Vec<u8> {
        if len <= 2048 {
            let raw = self.conn.read_chunk_raw();
            // Return the bare payload if the framing is canonical (lower-case hex size without
            // leading zeros or extensions), else the raw bytes, so the comparison fails and shows it.
            if let Some(p) = find(&raw, b"\r\n").filter(|&p| p + 4 <= raw.len()) {
                let payload = &raw[p + 2..raw.len() - 2];
                if raw[..p + 2] == *format!("{:x}\r\n", payload.len()).as_bytes() {
                    return payload.to_vec();
                }
            }
            return raw;
        }
        let mut payload = Vec::new();
        while payload.len() < len {
            let p = self.conn.read_chunk_payload();
            assert!(
                !p.is_empty(),
                "stream ended inside an event: {}",
                show(&payload)
            );
            payload.extend(p);
        }
        payload
    }

    /// Expect the next `expected.len()` chunks to be exactly these events, in any order.
    #[track_caller]
    pub fn expect_events_any_order(&mut self, expected: &[(&str, &str)]) {
        let mut exp: Vec<Vec<u8>> = expected
            .iter()
            .map(|(n, d)| event(&self.id, n, d))
            .collect();
        let mut got: Vec<Vec<u8>> = exp.iter().map(|e| self.read_event_bytes(e.len())).collect();
        got.sort();
        exp.sort();
        if got != exp {
            let g: Vec<String> = got.iter().map(|c| show(c)).collect();
            let e: Vec<String> = exp.iter().map(|c| show(c)).collect();
            panic!("events differ (sorted)\n   got: {g:#?}\nexpected: {e:#?}");
        }
    }

    /// Expect the end of the stream: exactly the zero chunk `0\r\n\r\n`.
    #[track_caller]
    pub fn expect_end(&mut self) {
        self.conn
            .expect_bytes(b"0\r\n\r\n", "end of stream (zero chunk)");
    }

    /// Expect that nothing arrives on the stream for `d`.
    #[track_caller]
    pub fn expect_silence(&mut self, d: Duration, ctx: &str) {
        self.conn.expect_silence(d, ctx);
    }
}
