//! [`Caller`]: what a handler knows of who is asking and of the server.

use crate::auth::Verifier;
use crate::broker::Broker;
use crate::config::Config;
use crate::http::error::ApiError;
use std::cell::RefCell;
use std::net::IpAddr;

/// What a handler knows of who is asking and of the server: a small view of
/// the connection and of its core, instead of the connection itself.
pub struct Caller<'a> {
    /// The TCP peer's address.
    pub peer: IpAddr,
    /// The client's address: the peer's, or the one a trusted proxy names.
    pub client_ip: IpAddr,
    /// The request says it came through a proxy that is not trusted
    /// (`X-Forwarded-For` & co. from a peer outside `--trusted-proxy`): the
    /// real client is unknown, whatever the peer's address.
    pub untrusted_forward: bool,
    pub broker: &'a Broker,
    pub config: &'a Config,
    pub verifier: &'a Verifier,
    /// This core's token checks in flight, by client address.
    pub token_checks: &'a TokenChecks,
}

/// Token checks (questions to PocketBase) in flight on one core, by client
/// address: one address may keep only a few waiting, so a flood from it
/// cannot crowd out everyone else's.
#[derive(Debug, Default)]
pub struct TokenChecks {
    in_flight: RefCell<ahash::HashMap<IpAddr, u32>>,
}

/// Token checks one address may have in flight on one core.
pub const MAX_TOKEN_CHECKS_PER_IP: u32 = 8;

impl TokenChecks {
    /// Counts a check from `ip` until the guard is dropped, or refuses it.
    pub fn start(&self, ip: IpAddr) -> Result<TokenCheck<'_>, ApiError> {
        let mut in_flight = self.in_flight.borrow_mut();
        let n = in_flight.entry(ip).or_default();
        if *n >= MAX_TOKEN_CHECKS_PER_IP {
            return Err(ApiError::new(
                429,
                "Too many token checks from your address are in progress; try again shortly.",
            ));
        }
        *n += 1;
        Ok(TokenCheck { checks: self, ip })
    }
}

/// One token check in flight.
pub struct TokenCheck<'a> {
    checks: &'a TokenChecks,
    ip: IpAddr,
}

impl Drop for TokenCheck<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.checks.in_flight.borrow_mut();
        if let Some(n) = in_flight.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.ip);
            }
        }
    }
}
