//! Access settings that cannot work, each saying what to change.

use std::io;
use std::path::PathBuf;

/// A configuration that cannot work, saying what to change.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "{0} were given together, but tokens are verified one way only: keep just one of --auth-pocketbase, --auth-jwt-secret and --auth-jwt-public-key"
    )]
    SeveralModes(String),
    #[error(
        "--auth-pocketbase {url:?} is not usable: {reason}; give PocketBase's base URL, e.g. http://127.0.0.1:8090"
    )]
    PocketBaseUrl { url: String, reason: String },
    #[error("--auth-jwt-secret is empty; give the secret the tokens are signed with")]
    EmptySecret,
    #[error("cannot read the JWT public key {}: {source}", path.display())]
    KeyFile { path: PathBuf, source: io::Error },
    #[error(
        "{} is not a PEM public key ringcast can use ({reason}); give an RSA, Ed25519 or EC public key (-----BEGIN PUBLIC KEY-----)",
        path.display()
    )]
    Key { path: PathBuf, reason: String },
    #[error("--auth-jwt-algorithm {given:?}: {reason}")]
    Algorithm { given: String, reason: String },
    #[error("--auth-jwt-algorithm needs --auth-jwt-secret or --auth-jwt-public-key to go with it")]
    AlgorithmWithoutKey,
    #[error(
        "--trusted-proxy {0:?} is neither an IP address nor a CIDR range; write e.g. 10.0.0.0/8, 127.0.0.1 or ::1"
    )]
    TrustedProxy(String),
    #[error("cannot start the PocketBase token checker: {0}")]
    Checker(String),
}

/// A token that could not be checked now: the request fails visibly (the
/// client may retry) rather than quietly making its holder a guest, who
/// would then miss what it subscribed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Too many tokens are waiting for PocketBase (a flood of unknown tokens).
    #[error("too many tokens are waiting to be checked")]
    Busy,
    /// PocketBase did not answer (down, slow, 5xx, an odd answer).
    #[error("PocketBase could not check the token")]
    Unavailable,
}
