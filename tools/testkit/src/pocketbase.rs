//! PocketBase 0.40.6's exact answers, as recorded in `shared/conformance/pocketbase-0.40.6/`:
//! response heads (names, values and order; `<DATE>` stands for a valid, current IMF-fixdate
//! `Date`), JSON bodies, event and chunk bytes, the client-id format, and the assertions that
//! compare a response with them after normalising what legitimately varies (the date, the id).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bytes::{assert_bytes, find, show};
use crate::http::{Head, Response};

/// The security headers PocketBase puts on every API response, in wire order.
pub const SECURITY_HEADERS: &str = "Cross-Origin-Opener-Policy: same-origin\r\n\
Vary: Origin\r\n\
X-Content-Type-Options: nosniff\r\n\
X-Frame-Options: SAMEORIGIN\r\n\
X-Xss-Protection: 1; mode=block\r\n";

const ACAO: &str = "Access-Control-Allow-Origin: *\r\n";

/// The stream's headers between the status line and `Date` (get-realtime-raw-socket.txt).
const SSE_HEADERS: &str = "Cache-Control: no-store\r\n\
Content-Type: text/event-stream\r\n\
Cross-Origin-Opener-Policy: same-origin\r\n\
Vary: Origin\r\n\
X-Accel-Buffering: no\r\n\
X-Content-Type-Options: nosniff\r\n\
X-Frame-Options: SAMEORIGIN\r\n\
X-Xss-Protection: 1; mode=block\r\n";

/// Head of the SSE stream (HTTP/1.1), see get-realtime-raw-socket.txt.
pub fn sse_head(origin: bool) -> String {
    let acao = if origin { ACAO } else { "" };
    format!(
        "HTTP/1.1 200 OK\r\n{acao}{SSE_HEADERS}Date: <DATE>\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
}

/// Head of the SSE stream for HTTP/1.0 (get-realtime-http10.txt) and of HEAD (head-realtime.txt):
/// same headers without `Transfer-Encoding`.
pub fn sse_head_no_te(version: &str) -> String {
    format!("{version} 200 OK\r\n{SSE_HEADERS}Date: <DATE>\r\n\r\n")
}

/// Head of a `204 No Content` answer to POST /api/realtime (post-success.txt).
pub fn no_content_head(origin: bool) -> String {
    format!(
        "HTTP/1.1 204 No Content\r\n{}{SECURITY_HEADERS}Date: <DATE>\r\n\r\n",
        if origin { ACAO } else { "" }
    )
}

/// Head of a JSON answer (API errors, health): Content-Type, security headers, Date, Content-Length.
pub fn json_head(status_line: &str, body_len: usize, origin: bool) -> String {
    format!(
        "{status_line}\r\n{}Content-Type: application/json\r\n{SECURITY_HEADERS}Date: <DATE>\r\nContent-Length: {body_len}\r\n\r\n",
        if origin { ACAO } else { "" }
    )
}

// PocketBase's JSON bodies (keys in wire order, no trailing newline).
pub const BODY_BLANK_CLIENT_ID: &str = r#"{"data":{"clientId":{"code":"validation_required","message":"Cannot be blank."}},"message":"Something went wrong while processing your request.","status":400}"#;
pub const BODY_GENERIC_400: &str =
    r#"{"data":{},"message":"Something went wrong while processing your request.","status":400}"#;
pub const BODY_MISSING_CLIENT: &str =
    r#"{"data":{},"message":"Missing or invalid client id.","status":404}"#;
pub const BODY_CLIENT_ID_TOO_LONG: &str = r#"{"data":{"clientId":{"code":"validation_length_out_of_range","message":"The length must be between 1 and 255.","params":{"max":255,"min":1}}},"message":"Something went wrong while processing your request.","status":400}"#;
pub const BODY_TOO_MANY_SUBSCRIPTIONS: &str = r#"{"data":{"subscriptions":{"code":"validation_length_too_long","message":"The length must be no more than 1000.","params":{"max":1000,"min":0}}},"message":"Something went wrong while processing your request.","status":400}"#;
pub const BODY_INVALID_CLIENT: &str =
    r#"{"data":{},"message":"Invalid realtime client.","status":400}"#;
pub const BODY_NOT_FOUND: &str =
    r#"{"data":{},"message":"The requested resource wasn't found.","status":404}"#;
pub const BODY_FILE_NOT_FOUND: &str = r#"{"data":{},"message":"File not found.","status":404}"#;
pub const BODY_HEALTH: &str = r#"{"message":"API is healthy.","code":200,"data":{}}"#;

pub const TOPIC_TOO_LONG_ERR: &str = r#"{"code":"validation_length_too_long","message":"The length must be no more than 2500.","params":{"max":2500,"min":0}}"#;

/// `{"data":{"subscriptions":{"<i>":{...too long...},...}},...}` for the given failing indices
/// (post-topic-2501-chars.txt, post-topics-several-too-long.txt).
pub fn body_topics_too_long(indices: &[usize]) -> String {
    let items: Vec<String> = indices
        .iter()
        .map(|i| format!(r#""{i}":{TOPIC_TOO_LONG_ERR}"#))
        .collect();
    format!(
        r#"{{"data":{{"subscriptions":{{{}}}}},"message":"Something went wrong while processing your request.","status":400}}"#,
        items.join(",")
    )
}

/// The SSE event PocketBase writes: `id:<id>\nevent:<name>\ndata:<data>\n\n`.
pub fn event(id: &str, name: &str, data: &str) -> Vec<u8> {
    format!("id:{id}\nevent:{name}\ndata:{data}\n\n").into_bytes()
}

/// One HTTP chunk holding `payload`: lower-case hex size, CR LF, payload, CR LF.
pub fn chunk(payload: &[u8]) -> Vec<u8> {
    let mut v = format!("{:x}\r\n", payload.len()).into_bytes();
    v.extend_from_slice(payload);
    v.extend_from_slice(b"\r\n");
    v
}

pub fn pb_connect_event(id: &str) -> Vec<u8> {
    event(id, "PB_CONNECT", &format!(r#"{{"clientId":"{id}"}}"#))
}

pub fn is_client_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|c| c.is_ascii_alphanumeric())
}

/// No two ids in a list are the same.
pub fn all_distinct<'a>(ids: impl IntoIterator<Item = &'a String>) -> bool {
    let mut seen = std::collections::HashSet::new();
    ids.into_iter().all(|i| seen.insert(i))
}

/// IMF-fixdate (RFC 9110) of a point in time, e.g. `Mon, 23 Nov 2026 00:26:17 GMT`.
fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(UNIX_EPOCH)
        .expect("a time after 1970")
        .as_secs() as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Whether `v` is the IMF-fixdate of a second between 60 s ago and 5 s from now.
fn is_current_http_date(v: &str) -> bool {
    let now = SystemTime::now();
    (-5i64..=60).any(|back| {
        let t = if back < 0 {
            now + Duration::from_secs((-back) as u64)
        } else {
            now - Duration::from_secs(back as u64)
        };
        http_date(t) == v
    })
}

/// A response head rendered as text with a valid current `Date:` value replaced by `<DATE>`
/// (an invalid or stale date is left as is, so the comparison fails and shows it).
fn normalize_head(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw).into_owned();
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        let date = line
            .strip_prefix("Date: ")
            .and_then(|l| l.strip_suffix("\r\n"));
        if date.is_some_and(is_current_http_date) {
            out.push_str("Date: <DATE>\r\n");
        } else {
            out.push_str(line);
        }
    }
    out
}

#[track_caller]
pub fn assert_head(head: &Head, expected: &str, ctx: &str) {
    let got = normalize_head(&head.raw);
    if got != expected {
        panic!(
            "{ctx}: response head differs\n   got: {}\nexpected: {}",
            show(got.as_bytes()),
            show(expected.as_bytes())
        );
    }
}

/// The client id from a PB_CONNECT chunk (`7b\r\nid:<ID>\n...`); checks the id format.
#[track_caller]
pub fn pb_connect_id(raw_chunk: &[u8]) -> String {
    let p = find(raw_chunk, b"id:").unwrap_or_else(|| panic!("no id: line in {}", show(raw_chunk)));
    let rest = &raw_chunk[p + 3..];
    let e = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
    let id = String::from_utf8_lossy(&rest[..e]).into_owned();
    assert!(
        is_client_id(&id),
        "client id {id:?} is not 40 characters of [A-Za-z0-9]: {}",
        show(raw_chunk)
    );
    id
}

impl Response {
    /// Assert the exact head (after `Date` normalisation) and the exact body.
    #[track_caller]
    pub fn assert_exact(&self, head: &str, body: &[u8], ctx: &str) {
        assert_head(&self.head, head, ctx);
        assert_bytes(&self.body, body, &format!("{ctx} (body)"));
    }
    /// Assert PocketBase's JSON answer: exact head with Content-Length and exact body.
    #[track_caller]
    pub fn assert_json(&self, status_line: &str, body: &str, ctx: &str) {
        self.assert_exact(
            &json_head(status_line, body.len(), false),
            body.as_bytes(),
            ctx,
        );
    }
    #[track_caller]
    pub fn assert_204(&self, ctx: &str) {
        self.assert_exact(&no_content_head(false), b"", ctx);
    }
}
