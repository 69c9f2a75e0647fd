//! Requests and checks for the tokio+axum baseline's tests. The baseline answers with PocketBase's
//! statuses, bodies and header values, but hyper orders and cases headers its own way (and writes
//! upper-case chunk sizes), so these check the parts that matter there instead of exact heads.

use std::net::{IpAddr, SocketAddr};

use crate::http::{Conn, Response, curl_request};

/// One request on a fresh connection (from `local`, if given) with `Connection: close`; the
/// response is read and then the connection must close with nothing more sent.
#[track_caller]
pub fn request_from(
    local: Option<IpAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut c = match local {
        Some(ip) => Conn::connect_from(ip, addr),
        None => Conn::connect(addr),
    };
    let mut all = vec![("Connection", "close")];
    all.extend_from_slice(headers);
    let has_body = method != "GET" && method != "HEAD";
    c.send(&curl_request(
        &addr.to_string(),
        method,
        path,
        &all,
        has_body.then_some(body),
        &[],
    ));
    let r = c.read_response_to(method == "HEAD");
    c.expect_close(&format!("{method} {path} with Connection: close"));
    r
}

#[track_caller]
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    request_from(None, addr, method, path, headers, body)
}

#[track_caller]
pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> Response {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// Replaces the subscriptions of `id`, asserting 204.
#[track_caller]
pub fn subscribe(addr: SocketAddr, id: &str, topics: &[&str]) {
    let body = format!(
        r#"{{"clientId":"{id}","subscriptions":[{}]}}"#,
        topics
            .iter()
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    post_json(addr, "/api/realtime", &body).assert_no_content();
}

/// Publishes and returns the `recipients` count, asserting the exact answer shape.
#[track_caller]
pub fn publish(addr: SocketAddr, body: &str) -> usize {
    let response = post_json(addr, "/api/publish", body);
    assert_eq!(response.status(), 200, "publish failed: {response:#?}");
    assert_eq!(
        response.head.header("content-type"),
        Some("application/json")
    );
    let text = response.body_str();
    text.strip_prefix(r#"{"recipients":"#)
        .and_then(|rest| rest.strip_suffix('}'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected publish answer {text:?}"))
}

impl Response {
    /// Asserts status, `Content-Type: application/json`, `Content-Length` and the exact body.
    #[track_caller]
    pub fn assert_status_json(&self, status: u16, body: &str) {
        assert_eq!(
            (self.status(), self.body_str().as_str()),
            (status, body),
            "unexpected response: {self:#?}"
        );
        assert_eq!(self.head.header("content-type"), Some("application/json"));
        assert_eq!(
            self.head.header("content-length"),
            Some(body.len().to_string().as_str())
        );
    }

    /// Asserts 204 with no body and no `Content-Type`.
    #[track_caller]
    pub fn assert_no_content(&self) {
        assert_eq!(self.status(), 204, "unexpected response: {self:#?}");
        assert!(self.body.is_empty());
        assert_eq!(self.head.header("content-type"), None);
    }
}
