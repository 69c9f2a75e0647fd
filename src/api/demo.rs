//! `GET /_/`: the demo page — what a person sees first. One self-contained
//! HTML page (no assets) embedded in the binary, served only with `--demo`.
//! It opens an `EventSource` on `/api/realtime` of the same origin, lets you
//! subscribe to topics, shows what arrives, publishes through
//! `/api/publish`, and polls `/api/stats`.
//!
//! Publishing is refused to web pages when there is no admin token (any page
//! a browser has open could otherwise publish, see `access`). The demo page
//! is let through on one condition that a foreign page cannot meet: its
//! `Origin` is this server's own (`http://` + the `Host` it asked for), and
//! the usual no-token rules still hold — the `Host` names this machine and
//! the peer is loopback. ringcast serves nothing else on its origin, so a
//! request with that `Origin` comes from this page (or from a local tool,
//! which could publish anyway). It only covers publishing and reading the
//! stats, never the admin API. With `--admin-token` set, the page asks for
//! the token instead and sends it like any other client.

use crate::config::Config;
use crate::http::request::Head;

pub const PAGE: &str = include_str!("demo.html");
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// Whether a request comes from the demo page this server serves, in
/// `--demo` mode without an admin token (see the module's doc).
pub fn is_own_page(config: &Config, head: &Head) -> bool {
    if !config.demo || config.admin_token.is_some() {
        return false;
    }
    match (head.origin.as_deref(), head.host.as_deref()) {
        (Some(origin), Some(host)) => origin
            .strip_prefix("http://")
            .is_some_and(|o| o.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(origin: Option<&str>, host: Option<&str>) -> Head {
        Head {
            origin: origin.map(str::to_owned),
            host: host.map(str::to_owned),
            ..Head::default()
        }
    }

    #[test]
    fn only_the_same_origin_in_demo_mode_without_a_token() {
        let mut config = Config {
            demo: true,
            ..Config::default()
        };
        let own = head(Some("http://127.0.0.1:8090"), Some("127.0.0.1:8090"));
        assert!(is_own_page(&config, &own));
        for other in [
            head(Some("http://127.0.0.1:3000"), Some("127.0.0.1:8090")),
            head(Some("https://127.0.0.1:8090"), Some("127.0.0.1:8090")),
            head(Some("http://evil.example"), Some("127.0.0.1:8090")),
            head(None, Some("127.0.0.1:8090")),
            head(Some("http://127.0.0.1:8090"), None),
        ] {
            assert!(!is_own_page(&config, &other), "{other:?}");
        }
        config.admin_token = Some("t".into());
        assert!(!is_own_page(&config, &own));
        config.admin_token = None;
        config.demo = false;
        assert!(!is_own_page(&config, &own));
    }

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.starts_with("<!doctype html>"));
        // No external scripts, styles or images: the binary is the whole demo.
        for external in ["src=\"http", "href=\"http", "@import"] {
            assert!(!PAGE.contains(external), "{external}");
        }
    }
}
