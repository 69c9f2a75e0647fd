//! Which handler answers a request: a pure function of the request head,
//! with PocketBase's routing (methods, trailing slashes, 404 wordings).

use crate::http::request::{Head, Method};

/// Where a request goes: into an event stream, or to an API handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `GET`/`HEAD /api/realtime`: served by `crate::stream`.
    Stream { head_only: bool },
    /// Answered at once by `crate::api`.
    Api(Endpoint<'a>),
}

/// The requests `crate::api` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `POST /api/realtime`.
    Subscribe,
    /// `POST /api/publish`.
    Publish,
    Health {
        head_only: bool,
    },
    Stats,
    /// `GET /metrics` (Prometheus).
    Metrics,
    /// `GET /_/`: the demo page (served with `--demo` only).
    Demo,
    /// The client listing and messaging API (`crate::api::admin`).
    Admin(AdminRoute<'a>),
    /// `OPTIONS` anywhere (CORS preflight).
    Preflight,
    /// PocketBase answers unknown GETs from its static file handler, other
    /// methods from the router; the messages differ.
    NotFound {
        file: bool,
    },
}

/// An admin request, with the client id its path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRoute<'a> {
    /// `GET /api/clients`
    List,
    /// `GET /api/clients/{id}`
    Get(&'a str),
    /// `DELETE /api/clients/{id}`
    Disconnect(&'a str),
    /// `POST /api/clients/{id}/send`
    Send(&'a str),
    /// `POST /api/broadcast`
    Broadcast,
}

pub fn route(head: &Head) -> Route<'_> {
    let method = head.method;
    if let Some(admin) = admin_route(&head.path, method) {
        return Route::Api(Endpoint::Admin(admin));
    }
    let endpoint = match (head.path.as_str(), method) {
        (_, Method::Options) => Endpoint::Preflight,
        ("/api/realtime", Method::Get | Method::Head) => {
            return Route::Stream {
                head_only: method == Method::Head,
            };
        }
        ("/api/realtime", Method::Post) => Endpoint::Subscribe,
        ("/api/publish", Method::Post) => Endpoint::Publish,
        ("/api/health", Method::Get | Method::Head) => Endpoint::Health {
            head_only: method == Method::Head,
        },
        ("/api/stats", Method::Get) => Endpoint::Stats,
        ("/metrics", Method::Get) => Endpoint::Metrics,
        ("/_/", Method::Get) => Endpoint::Demo,
        (_, Method::Get | Method::Head) => Endpoint::NotFound { file: true },
        _ => Endpoint::NotFound { file: false },
    };
    Route::Api(endpoint)
}

fn admin_route(path: &str, method: Method) -> Option<AdminRoute<'_>> {
    if path == "/api/broadcast" {
        return (method == Method::Post).then_some(AdminRoute::Broadcast);
    }
    if path == "/api/clients" {
        return (method == Method::Get).then_some(AdminRoute::List);
    }
    let rest = path.strip_prefix("/api/clients/")?;
    match (rest.split_once('/'), method) {
        (None, Method::Get) if !rest.is_empty() => Some(AdminRoute::Get(rest)),
        (None, Method::Delete) if !rest.is_empty() => Some(AdminRoute::Disconnect(rest)),
        (Some((id, "send")), Method::Post) if !id.is_empty() => Some(AdminRoute::Send(id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::parse_head;

    /// The route of a raw request, checked against `expected`.
    fn check(cases: &[(&str, Route<'_>)]) {
        for (raw, expected) in cases {
            let (head, _) = parse_head(raw.as_bytes(), 4096).unwrap().unwrap();
            assert_eq!(route(&head), *expected, "{raw:?}");
        }
    }

    #[test]
    fn routes_like_pocketbase() {
        check(&[
            (
                "GET /api/realtime?x HTTP/1.1\r\n\r\n",
                Route::Stream { head_only: false },
            ),
            (
                "HEAD /api/realtime HTTP/1.1\r\n\r\n",
                Route::Stream { head_only: true },
            ),
            (
                "POST /api/realtime HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::Subscribe),
            ),
            (
                "PUT /api/realtime HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::NotFound { file: false }),
            ),
            (
                "GET /api/realtime/ HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::NotFound { file: true }),
            ),
            (
                "POST /api/realtime/ HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::NotFound { file: false }),
            ),
            (
                "OPTIONS /api/realtime HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::Preflight),
            ),
            (
                "HEAD /api/health HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::Health { head_only: true }),
            ),
            (
                "GET /metrics HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::Metrics),
            ),
            ("GET /_/?x HTTP/1.1\r\n\r\n", Route::Api(Endpoint::Demo)),
            (
                "POST /metrics HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::NotFound { file: false }),
            ),
        ]);
    }

    #[test]
    fn admin_routes() {
        check(&[
            (
                "GET /api/clients?page=2 HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::Admin(AdminRoute::List)),
            ),
            (
                "GET /api/clients/abc HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::Admin(AdminRoute::Get("abc"))),
            ),
            (
                "DELETE /api/clients/abc HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::Admin(AdminRoute::Disconnect("abc"))),
            ),
            (
                "POST /api/clients/abc/send HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::Admin(AdminRoute::Send("abc"))),
            ),
            (
                "POST /api/broadcast HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::Admin(AdminRoute::Broadcast)),
            ),
            (
                "POST /api/clients HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::NotFound { file: false }),
            ),
            (
                "GET /api/clients/ HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::NotFound { file: true }),
            ),
            (
                "GET /api/clients/a/b HTTP/1.1\r\n\r\n",
                Route::Api(Endpoint::NotFound { file: true }),
            ),
        ]);
    }
}
