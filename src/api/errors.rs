//! What the core and the broker refuse, answered in PocketBase's words: the
//! one place that maps their typed errors to status codes and messages.

use crate::auth::VerifyError;
use crate::broker::BrokerError;
use crate::cluster::ClusterError;
use crate::core::CoreError;
use crate::hooks::{HookError, Reject};
use crate::http::error::{ApiError, SOMETHING_WENT_WRONG};
use crate::ring::ShuttingDown;

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        match e {
            CoreError::NotFound(_) => ApiError::new(404, "Missing or invalid client id."),
            CoreError::ForeignAddress => ApiError::bad_request("Invalid realtime client."),
            CoreError::AuthChanged => ApiError::new(
                403,
                "The current and the previous request authorization don't match.",
            ),
            CoreError::Forbidden(topic) => ApiError::new(
                403,
                format!("The current client is not allowed to subscribe to \"{topic}\"."),
            ),
            CoreError::Hook(HookError::Rejected(reject)) => reject.into(),
            CoreError::Hook(HookError::Panicked(_)) => ApiError::new(500, SOMETHING_WENT_WRONG),
            CoreError::QueueFull(_) => ApiError::new(
                503,
                "The client's queue is full: it is not reading fast enough. Try again later.",
            ),
            CoreError::TooLarge(n) => ApiError::new(
                413,
                format!(
                    "The event is {n} bytes, more than a client may have queued (--max-queue-bytes)."
                ),
            ),
            CoreError::Full => {
                ApiError::new(503, "This server holds as many realtime clients as it can.")
            }
            CoreError::TooManyStreams => ApiError::new(
                429,
                "Too many realtime connections from your address (--max-streams-per-ip).",
            ),
            CoreError::TooManyTopics => ApiError::new(
                503,
                "This server holds as many distinct subscriptions as it may (--max-topics-per-core); try again later.",
            ),
            CoreError::InvalidSubscription(_) => {
                ApiError::new(400, "A subscription must not contain line breaks.")
            }
            CoreError::InvalidCursor(_) => ApiError::new(
                400,
                "Invalid history cursor: \"since\" and Last-Event-ID take <epoch>:<offset>.",
            ),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> ApiError {
        match e {
            BrokerError::Core(e) => e.into(),
            BrokerError::TooLarge { index, bytes, max } => {
                let what = match index {
                    Some(i) => format!("Message {i} takes"),
                    None => "The event takes".to_owned(),
                };
                ApiError::new(
                    413,
                    format!(
                        "{what} {bytes} bytes as an event, more than the {max} bytes a client may have queued (--max-queue-bytes): no client could receive it."
                    ),
                )
            }
            e @ BrokerError::InvalidEvent(_) => ApiError::bad_request(format!("{e}.")),
            BrokerError::Data(m) => ApiError::bad_request(m),
            BrokerError::ShuttingDown => ShuttingDown.into(),
            BrokerError::Cluster(ClusterError::Timeout) => ApiError::new(
                503,
                "The node that owns this client did not answer in time; try again.",
            ),
            BrokerError::Cluster(_) => ApiError::new(
                503,
                "The cluster cannot reach the node that owns this client (Redis is unreachable); try again.",
            ),
            // Handlers that publish answer this one themselves, with what was delivered.
            e @ BrokerError::ClusterUnreachable { .. } => ApiError::new(503, format!("{e}.")),
        }
    }
}

impl From<VerifyError> for ApiError {
    fn from(e: VerifyError) -> ApiError {
        match e {
            VerifyError::Busy => ApiError::new(
                429,
                "Too many tokens are waiting to be checked; try again shortly.",
            ),
            VerifyError::Unavailable => ApiError::new(
                503,
                "The token could not be checked with PocketBase right now; try again shortly.",
            ),
        }
    }
}

impl From<ShuttingDown> for ApiError {
    fn from(_: ShuttingDown) -> Self {
        ApiError::new(503, "The server is shutting down.")
    }
}

/// A hook's refusal, in PocketBase's words: an error status (400 if the hook
/// gave none) and its message "sentenized" (capital first letter, final
/// period).
impl From<Reject> for ApiError {
    fn from(r: Reject) -> ApiError {
        let status = if (400..600).contains(&r.status) {
            r.status
        } else {
            400
        };
        ApiError::new(status, sentenize(&r.message))
    }
}

fn sentenize(message: &str) -> String {
    let trimmed = message.trim();
    let mut chars = trimmed.chars();
    let Some(first) = chars.next() else {
        return SOMETHING_WENT_WRONG.to_owned();
    };
    let mut out: String = first.to_uppercase().chain(chars).collect();
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_in_pocketbase_words() {
        let hook = |r| ApiError::from(CoreError::Hook(r));
        let e = hook(HookError::Rejected(Reject::new(
            403,
            "topic not allowed by hook",
        )));
        assert_eq!((e.status, &*e.message), (403, "Topic not allowed by hook."));
        assert_eq!(hook(HookError::Panicked("connect")).status, 500);
        assert_eq!(
            ApiError::from(Reject::new(200, "")).message,
            SOMETHING_WENT_WRONG
        );
        assert_eq!(ApiError::from(Reject::new(200, "x")).status, 400);
        let e = ApiError::from(BrokerError::TooLarge {
            index: Some(3),
            bytes: 10,
            max: 5,
        });
        assert_eq!(e.status, 413);
        assert!(
            e.message.starts_with("Message 3 takes 10 bytes"),
            "{}",
            e.message
        );
        let e = ApiError::from(CoreError::Forbidden("a?b".into()));
        assert_eq!(
            e.message,
            "The current client is not allowed to subscribe to \"a?b\"."
        );
    }
}
