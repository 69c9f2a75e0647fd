//! Who may publish, use the admin API and read stats: holders of the admin
//! token when one is configured, otherwise loopback peers only — and never a
//! web page without the token (a page open on the server's host must not
//! drive the API: CSRF, reading client ids).

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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
