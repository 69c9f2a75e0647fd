//! [`Caller`]: what a handler knows of who is asking and of the server.

use crate::auth::Verifier;
use crate::broker::Broker;
use crate::config::Config;
use std::net::IpAddr;

/// What a handler knows of who is asking and of the server: a small view of
/// the connection and of its core, instead of the connection itself.
pub struct Caller<'a> {
    /// The TCP peer's address.
    pub peer: IpAddr,
    /// The client's address: the peer's, or the one a trusted proxy names.
    pub client_ip: IpAddr,
    pub broker: &'a Broker,
    pub config: &'a Config,
    pub verifier: &'a Verifier,
}
