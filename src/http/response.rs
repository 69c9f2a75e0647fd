//! Response heads, written the way PocketBase (Go's net/http) writes them.
//!
//! Go sorts header names, then appends `Date`, `Content-Length`, `Connection`
//! and `Transfer-Encoding`. Clients rarely care, but byte-level compatibility
//! makes transcripts comparable and surprises rare, so every head here is a
//! fixed sequence in that order.

use crate::http::error::ApiError;
use crate::http::request::Head;
use std::io::Write;
use std::time::SystemTime;

/// The security headers PocketBase adds to every API response, in sorted order
/// around where `Content-Type` and `Cache-Control` fall.
const COOP: &str = "Cross-Origin-Opener-Policy: same-origin\r\nVary: Origin\r\n";
const NOSNIFF_ETC: &str = "X-Content-Type-Options: nosniff\r\nX-Frame-Options: SAMEORIGIN\r\nX-Xss-Protection: 1; mode=block\r\n";

/// Allowed CORS origins (`*` by default, like PocketBase).
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    pub fn new(origins: Vec<String>) -> Self {
        Cors { origins }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`.
    pub fn allow_origin<'a>(&'a self, origin: Option<&'a str>) -> Option<&'a str> {
        let origin = origin?;
        if self.origins.iter().any(|o| o == "*") {
            Some("*")
        } else {
            self.origins.iter().any(|o| o == origin).then_some(origin)
        }
    }
}

/// Writes responses for one request: knows its HTTP version, whether the
/// connection closes afterwards and which CORS origin to allow.
pub struct Responder<'a> {
    pub http11: bool,
    pub close: bool,
    pub allow_origin: Option<&'a str>,
}

impl<'a> Responder<'a> {
    pub fn new(head: &'a Head, cors: &'a Cors) -> Self {
        Responder {
            http11: head.http11,
            close: head.close,
            allow_origin: cors.allow_origin(head.origin.as_deref()),
        }
    }

    fn status_line(&self, out: &mut Vec<u8>, status: u16) {
        let version = if self.http11 { "HTTP/1.1" } else { "HTTP/1.0" };
        let _ = write!(out, "{version} {status} {}\r\n", reason(status));
        if let Some(origin) = self.allow_origin {
            let _ = write!(out, "Access-Control-Allow-Origin: {origin}\r\n");
        }
    }

    fn trailer(&self, out: &mut Vec<u8>, content_length: Option<usize>) {
        let _ = write!(
            out,
            "Date: {}\r\n",
            httpdate::fmt_http_date(SystemTime::now())
        );
        if let Some(n) = content_length {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        self.connection(out);
    }

    /// Go announces a close on HTTP/1.1 and a kept connection on HTTP/1.0.
    fn connection(&self, out: &mut Vec<u8>) {
        match (self.http11, self.close) {
            (true, true) => out.extend_from_slice(b"Connection: close\r\n"),
            (false, false) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
            _ => {}
        }
    }

    /// A JSON response (`body` already serialised).
    pub fn json(&self, out: &mut Vec<u8>, status: u16, body: &[u8]) {
        self.typed(out, status, "application/json", body);
    }

    /// A response with a body of another type (`/metrics`, the demo page).
    pub fn typed(&self, out: &mut Vec<u8>, status: u16, content_type: &str, body: &[u8]) {
        self.status_line(out, status);
        let _ = write!(out, "Content-Type: {content_type}\r\n");
        out.extend_from_slice(COOP.as_bytes());
        out.extend_from_slice(NOSNIFF_ETC.as_bytes());
        self.trailer(out, Some(body.len()));
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }

    pub fn error(&self, out: &mut Vec<u8>, err: &ApiError) {
        self.json(out, err.status, &err.body());
    }

    /// `204 No Content` (a successful subscription POST).
    pub fn no_content(&self, out: &mut Vec<u8>) {
        self.status_line(out, 204);
        out.extend_from_slice(COOP.as_bytes());
        out.extend_from_slice(NOSNIFF_ETC.as_bytes());
        self.trailer(out, None);
        out.extend_from_slice(b"\r\n");
    }

    /// The head of an event stream: chunked on HTTP/1.1, close-delimited on 1.0.
    pub fn event_stream(&self, out: &mut Vec<u8>, head_only: bool) {
        self.stream_head_fields(out, 200);
        let _ = write!(
            out,
            "Date: {}\r\n",
            httpdate::fmt_http_date(SystemTime::now())
        );
        if self.http11 && self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        if self.http11 && !head_only {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// An error answered to a stream request after its SSE headers were set
    /// (a refused connect): PocketBase keeps them, with a JSON body (not
    /// written for HEAD).
    pub fn stream_error(&self, out: &mut Vec<u8>, err: &ApiError, head_only: bool) {
        let body = err.body();
        self.stream_head_fields(out, err.status);
        self.trailer(out, Some(body.len()));
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&body);
        }
    }

    fn stream_head_fields(&self, out: &mut Vec<u8>, status: u16) {
        self.status_line(out, status);
        out.extend_from_slice(b"Cache-Control: no-store\r\nContent-Type: text/event-stream\r\n");
        out.extend_from_slice(COOP.as_bytes());
        out.extend_from_slice(b"X-Accel-Buffering: no\r\n");
        out.extend_from_slice(NOSNIFF_ETC.as_bytes());
    }

    /// `OPTIONS`: a CORS preflight answer, or a bare 204 without one.
    pub fn preflight(&self, out: &mut Vec<u8>, head: &Head) {
        let version = if self.http11 { "HTTP/1.1" } else { "HTTP/1.0" };
        let _ = write!(out, "{version} 204 No Content\r\n");
        // A preflight from an origin that is not allowed gets a bare answer.
        let is_preflight = head.cors_request_method.is_some() && self.allow_origin.is_some();
        if let (true, Some(origin)) = (is_preflight, self.allow_origin) {
            if let Some(h) = &head.cors_request_headers {
                let _ = write!(out, "Access-Control-Allow-Headers: {h}\r\n");
            }
            out.extend_from_slice(
                b"Access-Control-Allow-Methods: GET,HEAD,PUT,PATCH,POST,DELETE\r\n",
            );
            let _ = write!(out, "Access-Control-Allow-Origin: {origin}\r\n");
        }
        out.extend_from_slice(b"Vary: Origin\r\n");
        if is_preflight {
            out.extend_from_slice(
                b"Vary: Access-Control-Request-Method\r\nVary: Access-Control-Request-Headers\r\n",
            );
        }
        self.trailer(out, None);
        out.extend_from_slice(b"\r\n");
    }
}

/// `100 Continue`, sent before reading a body the client is holding back.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        431 => "Request Header Fields Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::parse_head;

    fn strip_date(out: &[u8]) -> String {
        let s = String::from_utf8(out.to_vec()).unwrap();
        s.lines()
            .map(|l| {
                if l.starts_with("Date: ") {
                    "Date: <DATE>"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn error_head_matches_pocketbase_order() {
        let (head, _) = parse_head(b"POST /api/realtime HTTP/1.1\r\nOrigin: x\r\n\r\n", 4096)
            .unwrap()
            .unwrap();
        let cors = Cors::new(vec!["*".into()]);
        let mut out = Vec::new();
        Responder::new(&head, &cors).error(&mut out, &ApiError::not_found());
        assert_eq!(
            strip_date(&out),
            "HTTP/1.1 404 Not Found\nAccess-Control-Allow-Origin: *\nContent-Type: application/json\nCross-Origin-Opener-Policy: same-origin\nVary: Origin\nX-Content-Type-Options: nosniff\nX-Frame-Options: SAMEORIGIN\nX-Xss-Protection: 1; mode=block\nDate: <DATE>\nContent-Length: 73\n\n{\"data\":{},\"message\":\"The requested resource wasn't found.\",\"status\":404}"
        );
    }

    #[test]
    fn cors_origin_lists() {
        let any = Cors::new(vec!["*".into()]);
        assert_eq!(any.allow_origin(Some("http://a")), Some("*"));
        assert_eq!(any.allow_origin(None), None);
        let list = Cors::new(vec!["http://a".into()]);
        assert_eq!(list.allow_origin(Some("http://a")), Some("http://a"));
        assert_eq!(list.allow_origin(Some("http://b")), None);
    }

    #[test]
    fn preflight_echoes_requested_headers() {
        let raw = b"OPTIONS /api/realtime HTTP/1.1\r\nOrigin: http://e\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n";
        let (head, _) = parse_head(raw, 4096).unwrap().unwrap();
        let cors = Cors::new(vec!["*".into()]);
        let mut out = Vec::new();
        Responder::new(&head, &cors).preflight(&mut out, &head);
        assert_eq!(
            strip_date(&out),
            "HTTP/1.1 204 No Content\nAccess-Control-Allow-Headers: content-type\nAccess-Control-Allow-Methods: GET,HEAD,PUT,PATCH,POST,DELETE\nAccess-Control-Allow-Origin: *\nVary: Origin\nVary: Access-Control-Request-Method\nVary: Access-Control-Request-Headers\nDate: <DATE>\n"
        );
    }
}
