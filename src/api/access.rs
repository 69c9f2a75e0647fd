//! Who may publish, use the admin API and read stats: holders of the admin
//! token when one is configured, otherwise local clients only. Without the
//! token, "local" is checked three ways, because each alone can be fooled:
//! the peer and the client behind a trusted proxy are loopback, no untrusted
//! proxy says it forwarded the request (a reverse proxy on the same host
//! would otherwise make the whole internet "loopback"), and the `Host` names
//! this machine (a page on an attacker's domain that DNS rebinding points at
//! 127.0.0.1 sends its own domain). And never a web page (`Origin`): a page
//! open on the server's host must not drive the API (CSRF, reading client ids).

use super::caller::Caller;
use crate::http::error::ApiError;
use crate::http::request::Head;

pub fn authorize(caller: &Caller<'_>, head: &Head) -> Result<(), ApiError> {
    match &caller.config.admin_token {
        Some(token) => {
            let given = head
                .authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "));
            match given {
                None => Err(ApiError::new(
                    401,
                    "This endpoint needs the admin token: send \"Authorization: Bearer <token>\".",
                )),
                Some(t) if constant_time_eq(t.trim().as_bytes(), token.as_bytes()) => Ok(()),
                Some(_) => Err(ApiError::new(403, "The admin token is not valid.")),
            }
        }
        // Browsers send `Origin`. Behind a trusted proxy the client's address
        // must be loopback too, not only the proxy's.
        None if head.origin.is_some() => Err(ApiError::new(
            403,
            "Browsers may not use this endpoint without an admin token; start ringcast with --admin-token.",
        )),
        None if caller.untrusted_forward => Err(ApiError::new(
            403,
            "This request came through a proxy that is not trusted (X-Forwarded-For, X-Real-IP or Forwarded), so it may not publish without an admin token; start ringcast with --admin-token, or name the proxy with --trusted-proxy.",
        )),
        None if !head.host.as_deref().is_none_or(is_local_host) => Err(ApiError::new(
            403,
            "The Host header does not name this machine (localhost, 127.0.0.1 or ::1), so this request may not publish without an admin token; start ringcast with --admin-token.",
        )),
        None if caller.peer.to_canonical().is_loopback()
            && caller.client_ip.to_canonical().is_loopback() =>
        {
            Ok(())
        }
        None => Err(ApiError::new(
            403,
            "Only loopback clients may publish when no admin token is set; start ringcast with --admin-token to publish from elsewhere.",
        )),
    }
}

/// Whether a `Host` value names this machine by a loopback name or address.
fn is_local_host(host: &str) -> bool {
    let loopback = |name: &str| {
        name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.to_canonical().is_loopback())
    };
    if loopback(host) {
        return true;
    }
    let name = match host.strip_prefix('[') {
        // `[::1]` or `[::1]:8090`
        Some(rest) => rest.split_once(']').map_or(rest, |(addr, _)| addr),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    loopback(name)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts() {
        for host in [
            "localhost",
            "LOCALHOST:8090",
            "127.0.0.1",
            "127.0.0.2:1",
            "[::1]",
            "[::1]:8090",
            "::1",
        ] {
            assert!(is_local_host(host), "{host}");
        }
        for host in [
            "example.com",
            "localhost.example.com",
            "10.0.0.1:8090",
            "[2001:db8::1]:80",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_local_host(host), "{host}");
        }
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
