//! Who a realtime subscriber is, which topics it may hold, and which address
//! it really connects from.
//!
//! * [`Verifier`] turns a POST's `Authorization` header into an [`Auth`], in
//!   one of three modes chosen by [`AuthArgs`]: `none` (everyone is a guest),
//!   `jwt` (tokens checked locally against a shared secret or a public key) or
//!   `pocketbase` (tokens checked by asking the PocketBase that issued them,
//!   with the answers cached). As in PocketBase, a bad or expired token is not
//!   an error: its holder is a guest.
//! * [`Rules`] (`rules.rs`) says which topics guests, users and superusers may
//!   subscribe to; it runs once per subscribe POST, never on the fan-out path.
//! * [`TrustedProxies`] (`proxy.rs`) picks the client address from
//!   `X-Real-IP` / `X-Forwarded-For` when the TCP peer is a proxy we trust.

mod args;
mod error;
mod identity;
mod jwt;
mod pocketbase;
mod proxy;
mod rules;
mod verifier;

pub use args::{AuthArgs, DEFAULT_CACHE_SIZE, DEFAULT_CACHE_TTL};
pub use error::{AuthConfigError, VerifyError};
pub use identity::{Auth, SUPERUSERS_COLLECTION_ID, SUPERUSERS_COLLECTION_NAME};
pub use proxy::TrustedProxies;
pub use rules::{Allow, Denied, Rules, RulesError};
pub use verifier::Verifier;

/// Everything about access a core needs, built once at start from the
/// config and shared by every core.
pub struct Access {
    pub verifier: Verifier,
    pub rules: std::sync::Arc<Rules>,
    pub proxies: TrustedProxies,
}

/// Why the access settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error(transparent)]
    Rules(#[from] RulesError),
}

impl Access {
    pub fn new(args: &AuthArgs) -> Result<Access, AccessError> {
        let rules = match &args.rules {
            Some(path) => Rules::load(path)?,
            None => Rules::default(),
        };
        Ok(Access {
            verifier: Verifier::new(args)?,
            rules: std::sync::Arc::new(rules),
            proxies: TrustedProxies::new(&args.trusted_proxy)?,
        })
    }
}
