//! `POST /api/realtime` bodies: `decode_form(content_type, body)`.
//!
//! The first input byte picks the content type (see [`content_type`]); for
//! the two free-form kinds the content type's text is the input up to the
//! first `\n`. The rest is the body.
//!
//! Invariants, on success: the client id is 1..=255 bytes; at most 1000
//! subscriptions, each non-empty, at most 2500 bytes, no two equal; the form
//! re-encoded as JSON and as a urlencoded form decodes to itself. On failure:
//! status 400, PocketBase's message, a JSON body whose `data` names only
//! `clientId` and `subscriptions`; no subscription has a line break
//! (subscriptions become SSE event names: `pubsub` names each frame by the
//! subscription string).
//!
//! No known findings (fixed: a subscription could contain CR or LF).

use crate::check_error_body;
use ringcast::api::subscribe::{
    MAX_CLIENT_ID_BYTES, MAX_SUBSCRIPTIONS, SubscribeForm, decode_form,
};
use ringcast::frame::is_valid_name;
use ringcast::http::error::SOMETHING_WENT_WRONG;

/// PocketBase's limit, stated here rather than imported from
/// `api::validation`, so that a change there fails the target.
const MAX_TOPIC_BYTES: usize = 2500;

pub fn run(data: &[u8], _strict: bool) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let (ct, body) = content_type(kind, rest);
    match decode_form(ct.as_deref(), body) {
        Ok(form) => check_form(&form),
        Err(e) => {
            check_error_body(&e, &[400]);
            assert_eq!(e.message, SOMETHING_WENT_WRONG, "error message");
            assert!(
                e.data
                    .keys()
                    .all(|k| k == "clientId" || k == "subscriptions"),
                "error data names other fields: {:?}",
                e.data
            );
        }
    }
}

/// The content type for selector `kind`, and the body.
pub fn content_type(kind: u8, rest: &[u8]) -> (Option<String>, &[u8]) {
    let fixed = |ct: &str| (Some(ct.to_owned()), rest);
    let line = || {
        let (line, body) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        (String::from_utf8_lossy(line).into_owned(), body)
    };
    match kind % 9 {
        0 => fixed("application/json"),
        1 => fixed("application/json; charset=utf-8"),
        2 => fixed("application/x-www-form-urlencoded"),
        3 => fixed("multipart/form-data; boundary=XX"),
        // The parameters (boundary=…, quoted or not, other ones) from the input.
        4 => {
            let (params, body) = line();
            (Some(format!("multipart/form-data{params}")), body)
        }
        5 => fixed("application/xml"),
        6 => fixed("text/xml"),
        7 => (None, rest),
        _ => {
            let (ct, body) = line();
            (Some(ct), body)
        }
    }
}

fn check_form(form: &SubscribeForm) {
    let id = form.client_id.len();
    assert!(
        (1..=MAX_CLIENT_ID_BYTES).contains(&id),
        "client id of {id} bytes accepted"
    );
    let subs = &form.subscriptions;
    assert!(
        subs.len() <= MAX_SUBSCRIPTIONS,
        "{} subscriptions accepted",
        subs.len()
    );
    let mut seen = std::collections::HashSet::new();
    for s in subs {
        assert!(!s.is_empty(), "empty subscription kept");
        assert!(
            s.len() <= MAX_TOPIC_BYTES,
            "subscription of {} bytes accepted",
            s.len()
        );
        assert!(seen.insert(s), "duplicate subscription {s:?} kept");
        assert!(
            is_valid_name(s),
            "subscription {s:?} has a line break; it becomes an SSE event name"
        );
    }

    let json = serde_json::json!({"clientId": form.client_id, "subscriptions": subs}).to_string();
    let again = decode_form(Some("application/json"), json.as_bytes());
    assert_eq!(again.as_ref(), Ok(form), "re-encoded as JSON: {json}");

    let mut urlencoded = format!("clientId={}", percent(&form.client_id));
    for s in subs {
        urlencoded.push_str("&subscriptions=");
        urlencoded.push_str(&percent(s));
    }
    let again = decode_form(
        Some("application/x-www-form-urlencoded"),
        urlencoded.as_bytes(),
    );
    assert_eq!(
        again.as_ref(),
        Ok(form),
        "re-encoded as a form: {urlencoded}"
    );
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
