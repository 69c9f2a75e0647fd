//! The rules a core applies to its clients, and the embedder's hooks on the
//! same paths: who may connect, which subscription requests are applied, what
//! each recipient gets, and who hears of a disconnect.

use super::client::Client;
use super::error::CoreError;
use crate::auth::{Auth, Rules};
use crate::hooks::{
    ConnectEvent, DisconnectEvent, EndReason, Hooks, MessageEvent, Outcome, Request, Store,
    SubscribeEvent,
};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Policy {
    hooks: Hooks,
    /// Who may subscribe to what (`--rules`).
    rules: Arc<Rules>,
}

impl Policy {
    pub fn new(hooks: Hooks, rules: Arc<Rules>) -> Policy {
        Policy { hooks, rules }
    }

    /// Runs the connect hook for a client about to become a stream, and
    /// keeps what it set (timeouts, store values).
    pub fn connect(&self, client: &mut Client, request: &Request<'_>) -> Result<(), CoreError> {
        if !self.hooks.has_connect() {
            return Ok(());
        }
        let mut event = ConnectEvent {
            client_id: client.id_str(),
            request: *request,
            idle_timeout: None,
            max_lifetime: None,
            store: Store::default(),
        };
        self.hooks.run_connect(&mut event)?;
        let ConnectEvent {
            idle_timeout,
            max_lifetime,
            store,
            ..
        } = event;
        if idle_timeout.is_some() || max_lifetime.is_some() || !store.is_empty() {
            let extra = client.extra_mut();
            let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            extra.idle_timeout_ms = idle_timeout.map(ms);
            extra.max_lifetime_ms = max_lifetime.map(ms);
            extra.store = store;
        }
        Ok(())
    }

    /// The subscriptions `client` gets from a request for `subs` carrying
    /// `auth`, in PocketBase's order of checks after the id and IP: the auth
    /// (a guest may become a user once; any other change is refused), then
    /// ringcast's topic rules, then the subscribe hook (which may rewrite the
    /// list). Nothing is changed here.
    pub fn admit(
        &self,
        client: &Client,
        subs: Vec<String>,
        auth: Option<&Auth>,
    ) -> Result<Vec<String>, CoreError> {
        if let Some(stored) = client.auth() {
            let same =
                auth.is_some_and(|a| a.id == stored.id && a.collection_id == stored.collection_id);
            if !same {
                return Err(CoreError::AuthChanged);
            }
        }
        if let Err(denied) = self.rules.check(&subs, auth) {
            return Err(CoreError::Forbidden(denied.topic.to_owned()));
        }
        let mut event = SubscribeEvent {
            client: client.view(),
            auth,
            subscriptions: subs,
        };
        self.hooks.run_subscribe(&mut event)?;
        let mut subs = event.subscriptions;
        if self.hooks.has_subscribe() {
            // The decoder already dropped duplicates and blanks; a hook may add them back.
            let mut seen = ahash::HashSet::default();
            subs.retain(|s| !s.is_empty() && seen.insert(s.clone()));
        }
        Ok(subs)
    }

    #[inline]
    pub fn has_message_hook(&self) -> bool {
        self.hooks.has_message()
    }

    /// What the message hook decides for one message to `client`.
    pub(crate) fn message(&self, client: &Client, name: &str, data: &[u8]) -> Outcome {
        if !self.hooks.has_message() {
            return Outcome::Deliver;
        }
        self.hooks.run_message(&mut MessageEvent {
            client: client.view(),
            name,
            data,
            outcome: Outcome::Deliver,
        })
    }

    /// Tells the disconnect hook that `client` (already unregistered) left;
    /// `subscriptions` names what it held, asked only when there is a hook.
    /// `true` if the hook panicked.
    pub fn disconnect(
        &self,
        client: &Client,
        reason: EndReason,
        subscriptions: impl FnOnce() -> Vec<String>,
    ) -> bool {
        self.hooks.has_disconnect()
            && self.hooks.run_disconnect(&DisconnectEvent {
                client: client.view(),
                reason,
                subscriptions: &subscriptions(),
            })
    }
}
