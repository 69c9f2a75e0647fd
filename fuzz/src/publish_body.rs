//! `POST /api/publish` bodies: `decode_messages(body)`.
//!
//! Invariants, on success: 1..=10,000 messages; each has at least one event
//! name, none with CR or LF; its data is JSON; its `wire_len` (what a
//! client's queue is charged) is at least the wire length of a frame under
//! each of its event names. On failure: status 400 and a JSON body.
//!
//! No known findings (fixed: a record event's `collection`, `collectionId`
//! and `record.id` could carry CR or LF into its event names).

use crate::check_error_body;
use ringcast::api::publish::{MAX_BATCH, decode_messages};
use ringcast::frame::{BodyMode, Frame, is_valid_name};
use ringcast::message::Message;

pub fn run(data: &[u8], _strict: bool) {
    match decode_messages(data) {
        Ok(messages) => {
            assert!(
                (1..=MAX_BATCH).contains(&messages.len()),
                "{} messages accepted",
                messages.len()
            );
            for m in &messages {
                check_message(m);
            }
        }
        Err(e) => check_error_body(&e, &[400]),
    }
}

fn check_message(m: &Message) {
    let names: Vec<&str> = m.event_names().collect();
    assert!(!names.is_empty(), "a message with no event name: {m:?}");
    for name in &names {
        assert!(
            is_valid_name(name),
            "event name {name:?} has a line break: {m:?}"
        );
        let frame = Frame::new(name.as_bytes(), &m.data);
        assert!(
            frame.wire_len(BodyMode::Chunked) <= m.wire_len(),
            "wire_len {} undercounts a {}-byte frame",
            m.wire_len(),
            frame.wire_len(BodyMode::Chunked)
        );
    }
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&m.data) {
        panic!(
            "message data is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&m.data)
        );
    }
}
