//! The filter's error type.

/// Why a filter cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// PocketBase rejects it (its list API answers 400; a subscription with it receives
    /// nothing).
    #[error("invalid filter: {reason}")]
    Invalid { reason: String },
    /// Valid for PocketBase, but it needs what the edge does not have (PocketBase's database,
    /// the subscribing request).
    #[error("filter not evaluable at the edge: {what}")]
    Unsupported { what: String },
}
