//! What a core refuses, and why.
//!
//! The core speaks in these terms only; `crate::api` turns them into
//! PocketBase's HTTP answers and the [`Broker`](crate::Broker) hands them to
//! embedders as they are.

use crate::hooks::HookError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// No open stream has this id (PocketBase's wording).
    #[error("no client associated with connection ID \"{0}\"")]
    NotFound(String),
    /// A subscription request came from another IP than the stream it names.
    #[error("the request comes from another address than the client's stream")]
    ForeignAddress,
    /// A subscription request carries another identity than the client has
    /// (only a guest may become a user, once).
    #[error("the current and the previous request authorization don't match")]
    AuthChanged,
    /// `--rules` forbid this subscription to this client.
    #[error("the client may not subscribe to {0:?}")]
    Forbidden(String),
    /// A connect or subscribe hook refused the request, or panicked.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// The client's queue is at `--max-queue-bytes`: it does not read fast
    /// enough. The message was not queued; the client stays connected.
    #[error("client \"{0}\" has a full queue (--max-queue-bytes); it is not reading fast enough")]
    QueueFull(String),
    /// The event alone is larger than `--max-queue-bytes` (this many bytes):
    /// no client could ever take it.
    #[error("the event is {0} bytes, more than a client may have queued (--max-queue-bytes)")]
    TooLarge(usize),
    /// This core holds as many clients as its ids can name.
    #[error("this core holds as many realtime clients as it can")]
    Full,
    /// This address has as many streams open as `--max-streams-per-ip` allows.
    #[error("too many realtime connections from this address")]
    TooManyStreams,
    /// This core holds as many distinct subscription strings as
    /// `--max-topics-per-core` allows.
    #[error("this core holds as many distinct subscriptions as it may")]
    TooManyTopics,
    /// A subscription (as a hook or an embedder left it) contains a line
    /// break: it names the client's events, whose SSE fields it would forge.
    #[error("the subscription {0:?} contains a line break")]
    InvalidSubscription(String),
    /// A subscription's `since` or a `Last-Event-ID` is not a history cursor.
    #[error(transparent)]
    InvalidCursor(#[from] super::history::InvalidCursor),
}
