//! Realtime hooks: the embedder's code on the connect, subscribe, message and
//! disconnect paths, like PocketBase's `OnRealtime*` hooks.
//!
//! Hooks are plain closures, set once on the [`Hooks`] given to the server
//! builder and shared by every core. Each runs on the core that owns the
//! client, synchronously, with that core's state at hand: a hook must be quick
//! and must not block (hand slow work to another thread). A hook that is not
//! set costs nothing; in particular, without a message hook the fan-out stays
//! free of per-recipient work.
//!
//! A panicking hook is caught and logged: connect and subscribe requests are
//! answered 500, a message is delivered as it was, and the core goes on
//! (unless the application is built with `panic = "abort"`). A hook must not
//! wait for a [`Broker`](crate::Broker) call: the core it runs on is the one
//! that would answer. A disconnect hook may not run for streams still open
//! when a shutdown's grace period (3 s) ends.
//!
//! ```
//! use ringcast::hooks::{Hooks, Reject};
//!
//! let hooks = Hooks::new()
//!     .on_connect(|e| {
//!         if e.header("x-app-key") != Some("secret") {
//!             return Err(Reject::new(403, "connect rejected by hook"));
//!         }
//!         e.set_idle_timeout(std::time::Duration::from_secs(60));
//!         Ok(())
//!     })
//!     .on_subscribe(|e| {
//!         let own = format!("clients/{}", e.client().id());
//!         e.subscriptions_mut().push(own);
//!         Ok(())
//!     })
//!     .on_message(|e| {
//!         if e.name() == "internal" {
//!             e.skip();
//!         }
//!     })
//!     .on_disconnect(|e| eprintln!("{} left: {:?}", e.client().id(), e.reason()));
//! # let _ = hooks;
//! ```

use crate::auth::Auth;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

/// Why a stream ended; reported in logs, stats and the disconnect hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The peer closed its side or a write failed.
    ClientClosed,
    /// No message was delivered for the idle timeout.
    IdleTimeout,
    /// The maximum lifetime was reached.
    Lifetime,
    /// The server is shutting down.
    Shutdown,
    /// The client does not read fast enough: its queue went over its byte
    /// cap, or its socket took nothing for an idle timeout.
    SlowConsumer,
    /// Server code asked for it (`Broker::unregister`, `DELETE /api/clients/{id}`).
    Unregistered,
}

impl EndReason {
    /// Ends that close the stream politely (zero chunk, connection kept).
    pub fn is_graceful(self) -> bool {
        matches!(
            self,
            EndReason::IdleTimeout
                | EndReason::Lifetime
                | EndReason::Shutdown
                | EndReason::Unregistered
        )
    }
}

/// A client's key/value store (PocketBase's `client.Get/Set/Unset`).
pub type Store = ahash::HashMap<String, Value>;

type ConnectFn = dyn Fn(&mut ConnectEvent<'_>) -> Result<(), Reject> + Send + Sync;
type SubscribeFn = dyn Fn(&mut SubscribeEvent<'_>) -> Result<(), Reject> + Send + Sync;
type MessageFn = dyn Fn(&mut MessageEvent<'_>) + Send + Sync;
type DisconnectFn = dyn Fn(&DisconnectEvent<'_>) + Send + Sync;

/// The hooks of one server; every one is optional.
#[derive(Clone, Default)]
pub struct Hooks {
    connect: Option<Arc<ConnectFn>>,
    subscribe: Option<Arc<SubscribeFn>>,
    message: Option<Arc<MessageFn>>,
    disconnect: Option<Arc<DisconnectFn>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("connect", &self.connect.is_some())
            .field("subscribe", &self.subscribe.is_some())
            .field("message", &self.message.is_some())
            .field("disconnect", &self.disconnect.is_some())
            .finish()
    }
}

impl Hooks {
    pub fn new() -> Hooks {
        Hooks::default()
    }

    /// Runs before a `GET /api/realtime` becomes a stream (before
    /// `PB_CONNECT`). It may reject the connection, set this client's
    /// timeouts and fill its store.
    pub fn on_connect(
        mut self,
        f: impl Fn(&mut ConnectEvent<'_>) -> Result<(), Reject> + Send + Sync + 'static,
    ) -> Hooks {
        self.connect = Some(Arc::new(f));
        self
    }

    /// Runs on a `POST /api/realtime` that passed validation, the id, IP and
    /// auth checks and the topic rules. It may rewrite the new subscription
    /// list or reject the request (nothing changes then). Topics it adds are
    /// trusted as server code: neither `--rules` nor the length limits apply
    /// to them.
    pub fn on_subscribe(
        mut self,
        f: impl Fn(&mut SubscribeEvent<'_>) -> Result<(), Reject> + Send + Sync + 'static,
    ) -> Hooks {
        self.subscribe = Some(Arc::new(f));
        self
    }

    /// Runs for every message about to be queued for a client, `PB_CONNECT`
    /// included. It may skip the message for this client or replace its name
    /// or data (then this client gets a frame of its own).
    pub fn on_message(
        mut self,
        f: impl Fn(&mut MessageEvent<'_>) + Send + Sync + 'static,
    ) -> Hooks {
        self.message = Some(Arc::new(f));
        self
    }

    /// Runs after a client was unregistered, with the reason.
    pub fn on_disconnect(
        mut self,
        f: impl Fn(&DisconnectEvent<'_>) + Send + Sync + 'static,
    ) -> Hooks {
        self.disconnect = Some(Arc::new(f));
        self
    }

    pub(crate) fn has_connect(&self) -> bool {
        self.connect.is_some()
    }

    pub(crate) fn has_subscribe(&self) -> bool {
        self.subscribe.is_some()
    }

    pub(crate) fn has_message(&self) -> bool {
        self.message.is_some()
    }

    pub(crate) fn has_disconnect(&self) -> bool {
        self.disconnect.is_some()
    }

    pub(crate) fn run_connect(&self, event: &mut ConnectEvent<'_>) -> Result<(), HookError> {
        let Some(hook) = &self.connect else {
            return Ok(());
        };
        guarded("connect", || hook(event))
    }

    pub(crate) fn run_subscribe(&self, event: &mut SubscribeEvent<'_>) -> Result<(), HookError> {
        let Some(hook) = &self.subscribe else {
            return Ok(());
        };
        guarded("subscribe", || hook(event))
    }

    /// Runs the message hook, if any. A panic delivers the message as it was
    /// ([`Outcome::Panicked`], so that it is counted).
    pub(crate) fn run_message(&self, event: &mut MessageEvent<'_>) -> Outcome {
        if let Some(hook) = &self.message {
            if contained(|| hook(event)).is_err() {
                tracing::error!(
                    client = event.client.id,
                    "the message hook panicked; the message is delivered unchanged"
                );
                return Outcome::Panicked;
            }
        }
        std::mem::take(&mut event.outcome)
    }

    /// Runs the disconnect hook, if any; `true` if it panicked.
    pub(crate) fn run_disconnect(&self, event: &DisconnectEvent<'_>) -> bool {
        if let Some(hook) = &self.disconnect {
            if contained(|| hook(event)).is_err() {
                tracing::error!(client = event.client.id, "the disconnect hook panicked");
                return true;
            }
        }
        false
    }
}

thread_local! {
    /// Set while an embedder's hook runs: its panic is caught and answered,
    /// unlike a panic of the server's own code (see [`in_hook`]).
    static IN_HOOK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs an embedder's hook and catches its panic.
fn contained<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    let outer = IN_HOOK.with(|h| h.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_HOOK.with(|h| h.set(outer));
    result
}

/// Whether the panic under way on this thread comes from a hook.
pub(crate) fn in_hook() -> bool {
    IN_HOOK.with(|h| h.get())
}

/// Why a connect or subscribe hook stopped a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The hook said no; answered with its status and message.
    #[error("refused by a hook: {} {}", .0.status, .0.message)]
    Rejected(Reject),
    /// The hook panicked (logged); answered 500.
    #[error("the {0} hook panicked")]
    Panicked(&'static str),
}

/// Runs a request hook, catching a panic.
fn guarded(which: &'static str, f: impl FnOnce() -> Result<(), Reject>) -> Result<(), HookError> {
    match contained(f) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reject)) => Err(HookError::Rejected(reject)),
        Err(_) => {
            tracing::error!("the {which} hook panicked; the request is answered 500");
            Err(HookError::Panicked(which))
        }
    }
}

/// A hook's refusal: answered as a PocketBase JSON error with this status
/// (400 if it is not an error status). The message is "sentenized" as
/// PocketBase does (capital first letter, final period).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub message: String,
}

impl Reject {
    pub fn new(status: u16, message: impl Into<String>) -> Reject {
        Reject {
            status,
            message: message.into(),
        }
    }
}

/// What hooks may read about a client.
#[derive(Debug, Clone, Copy)]
pub struct ClientRef<'a> {
    pub(crate) id: &'a str,
    pub(crate) ip: IpAddr,
    pub(crate) auth: Option<&'a Auth>,
    pub(crate) store: Option<&'a Store>,
}

impl<'a> ClientRef<'a> {
    /// The 40-character client id (the `id:` of its events).
    pub fn id(&self) -> &'a str {
        self.id
    }

    /// The IP its stream came from.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Who it is, once a subscription POST carried a valid token.
    pub fn auth(&self) -> Option<&'a Auth> {
        self.auth
    }

    /// A value of its store.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.store?.get(key)
    }
}

/// What the connect hook sees of a `GET /api/realtime` request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub(crate) remote_addr: SocketAddr,
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    pub(crate) headers: &'a [(String, String)],
}

/// The request that opens a stream.
#[derive(Debug)]
pub struct ConnectEvent<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) request: Request<'a>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) store: Store,
}

impl<'a> ConnectEvent<'a> {
    /// The id the client gets if it is accepted.
    pub fn client_id(&self) -> &'a str {
        self.client_id
    }

    /// The peer's address (with `--trusted-proxy`, the client's, taken from
    /// the proxy's headers).
    pub fn remote_addr(&self) -> SocketAddr {
        self.request.remote_addr
    }

    pub fn path(&self) -> &'a str {
        self.request.path
    }

    /// The raw query string, without the `?` (empty when none).
    pub fn query(&self) -> &'a str {
        self.request.query
    }

    /// The decoded value of query parameter `name`, if present.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.request.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header, names as sent.
    pub fn headers(&self) -> &'a [(String, String)] {
        self.request.headers
    }

    /// This client's idle timeout instead of the server's.
    pub fn set_idle_timeout(&mut self, timeout: Duration) {
        self.idle_timeout = Some(timeout);
    }

    /// This client's maximum stream lifetime instead of the server's.
    pub fn set_max_lifetime(&mut self, lifetime: Duration) {
        self.max_lifetime = Some(lifetime);
    }

    /// Puts a value in the client's store.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        self.store.insert(key.into(), value);
    }
}

/// A subscription request about to be applied.
#[derive(Debug)]
pub struct SubscribeEvent<'a> {
    pub(crate) client: ClientRef<'a>,
    /// The identity this request carries (it replaces the stored one).
    pub(crate) auth: Option<&'a Auth>,
    pub(crate) subscriptions: Vec<String>,
}

impl<'a> SubscribeEvent<'a> {
    pub fn client(&self) -> ClientRef<'a> {
        self.client
    }

    /// The identity this request carries (guest: `None`).
    pub fn auth(&self) -> Option<&'a Auth> {
        self.auth
    }

    /// The new subscription list (it replaces the whole set).
    pub fn subscriptions(&self) -> &[String] {
        &self.subscriptions
    }

    /// Add, remove or reorder the new subscriptions.
    pub fn subscriptions_mut(&mut self) -> &mut Vec<String> {
        &mut self.subscriptions
    }
}

/// What the message hook decided for one recipient.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) enum Outcome {
    #[default]
    Deliver,
    Skip,
    Replace {
        name: Option<String>,
        data: Option<Vec<u8>>,
    },
    /// The hook panicked: delivered as it was.
    Panicked,
}

impl Outcome {
    /// The event to write for a message named `name` with `data`: itself,
    /// the hook's replacement, or `None` when skipped. A replacement name
    /// with a line break (it would forge SSE fields) is ignored, with a log.
    pub(crate) fn event<'a>(
        &'a self,
        name: &'a str,
        data: &'a [u8],
    ) -> Option<(&'a str, &'a [u8])> {
        match self {
            Outcome::Deliver | Outcome::Panicked => Some((name, data)),
            Outcome::Skip => None,
            Outcome::Replace {
                name: new_name,
                data: new_data,
            } => {
                let new_name = match new_name.as_deref() {
                    Some(n) if !crate::frame::is_valid_name(n) => {
                        tracing::error!(
                            name = n,
                            "the message hook's event name has a line break; kept {name:?}"
                        );
                        name
                    }
                    other => other.unwrap_or(name),
                };
                Some((new_name, new_data.as_deref().unwrap_or(data)))
            }
        }
    }
}

/// One message about to be queued for one client.
#[derive(Debug)]
pub struct MessageEvent<'a> {
    pub(crate) client: ClientRef<'a>,
    pub(crate) name: &'a str,
    pub(crate) data: &'a [u8],
    pub(crate) outcome: Outcome,
}

impl<'a> MessageEvent<'a> {
    pub fn client(&self) -> ClientRef<'a> {
        self.client
    }

    /// The event name: the subscription string it matched, `PB_CONNECT`, or
    /// the name given to a targeted send or broadcast.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The event data (JSON for everything ringcast builds).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Do not deliver this message to this client.
    pub fn skip(&mut self) {
        self.outcome = Outcome::Skip;
    }

    /// Deliver it to this client under another name.
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.replace(Some(name.into()), None);
    }

    /// Deliver other data to this client.
    pub fn set_data(&mut self, data: impl Into<Vec<u8>>) {
        self.replace(None, Some(data.into()));
    }

    fn replace(&mut self, new_name: Option<String>, new_data: Option<Vec<u8>>) {
        let (name, data) = match std::mem::take(&mut self.outcome) {
            Outcome::Replace { name, data } => (name, data),
            Outcome::Deliver | Outcome::Skip | Outcome::Panicked => (None, None),
        };
        self.outcome = Outcome::Replace {
            name: new_name.or(name),
            data: new_data.or(data),
        };
    }
}

/// A client that is gone (already unregistered).
#[derive(Debug)]
pub struct DisconnectEvent<'a> {
    pub(crate) client: ClientRef<'a>,
    pub(crate) reason: EndReason,
    pub(crate) subscriptions: &'a [String],
}

impl<'a> DisconnectEvent<'a> {
    pub fn client(&self) -> ClientRef<'a> {
        self.client
    }

    pub fn reason(&self) -> EndReason {
        self.reason
    }

    /// What it was subscribed to when it left.
    pub fn subscriptions(&self) -> &'a [String] {
        self.subscriptions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientRef<'static> {
        ClientRef {
            id: "abc",
            ip: IpAddr::from([127, 0, 0, 1]),
            auth: None,
            store: None,
        }
    }

    #[test]
    fn rejections_and_panics_are_reported() {
        let hooks = Hooks::new()
            .on_subscribe(|_| Err(Reject::new(403, "topic not allowed by hook")))
            .on_connect(|_| panic!("boom"));
        let mut e = SubscribeEvent {
            client: client(),
            auth: None,
            subscriptions: vec![],
        };
        assert_eq!(
            hooks.run_subscribe(&mut e),
            Err(HookError::Rejected(Reject::new(
                403,
                "topic not allowed by hook"
            )))
        );
        let mut c = ConnectEvent {
            client_id: "abc",
            request: Request {
                remote_addr: "127.0.0.1:1".parse().unwrap(),
                path: "/api/realtime",
                query: "",
                headers: &[],
            },
            idle_timeout: None,
            max_lifetime: None,
            store: Store::default(),
        };
        assert_eq!(
            hooks.run_connect(&mut c),
            Err(HookError::Panicked("connect"))
        );
    }

    #[test]
    fn message_outcomes() {
        let hooks = Hooks::new().on_message(|e| match e.name() {
            "skip" => e.skip(),
            "rename" => {
                e.set_name("renamed");
                e.set_data(b"{}".to_vec());
            }
            "boom" => panic!("boom"),
            _ => {}
        });
        let run = |name| {
            hooks.run_message(&mut MessageEvent {
                client: client(),
                name,
                data: b"1",
                outcome: Outcome::Deliver,
            })
        };
        assert_eq!(run("skip"), Outcome::Skip);
        assert_eq!(run("plain"), Outcome::Deliver);
        assert_eq!(run("boom"), Outcome::Panicked);
        assert_eq!(
            run("rename"),
            Outcome::Replace {
                name: Some("renamed".into()),
                data: Some(b"{}".to_vec())
            }
        );
    }

    #[test]
    fn connect_event_reads_the_request() {
        let headers = vec![("X-App-Key".to_owned(), "k".to_owned())];
        let e = ConnectEvent {
            client_id: "abc",
            request: Request {
                remote_addr: "127.0.0.1:1".parse().unwrap(),
                path: "/api/realtime",
                query: "a=1&b=x%20y",
                headers: &headers,
            },
            idle_timeout: None,
            max_lifetime: None,
            store: Store::default(),
        };
        assert_eq!(e.header("x-app-key"), Some("k"));
        assert_eq!(e.query_param("b").as_deref(), Some("x y"));
        assert_eq!(e.query_param("c"), None);
    }
}
