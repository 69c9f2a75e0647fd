//! What every task of one core shares: the core's state, the way to the
//! other cores, and the read-only settings. Connection and stream tasks hold
//! it; handlers get only the [`Caller`](crate::api::Caller) view of it.

use crate::api::TokenChecks;
use crate::auth::Access;
use crate::broker::Broker;
use crate::config::Config;
use crate::core::Core;
use crate::http::response::Cors;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

pub struct CoreCtx {
    pub index: usize,
    /// Shared with the ring's in-place calls (`crate::ring::enter`).
    pub core: Rc<RefCell<Core>>,
    pub broker: Broker,
    pub cors: Cors,
    pub config: Arc<Config>,
    pub access: Arc<Access>,
    pub token_checks: TokenChecks,
}
