//! The access flags: how tokens are verified, which topic rules apply, which
//! proxies are trusted (flattened into `Config`; every flag has a
//! `RINGCAST_*` variable).

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Default bound of the PocketBase answer cache, in tokens.
pub const DEFAULT_CACHE_SIZE: usize = 100_000;
/// Default time a PocketBase answer is trusted (keep in step with the flag).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

/// How tokens are verified, which topic rules apply and which proxies are
/// trusted: flattened into `Config` (every flag has a `RINGCAST_*` variable).
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Verify tokens by asking this PocketBase (its base URL, e.g.
    /// http://127.0.0.1:8090); answers are cached until the token expires.
    #[arg(
        long,
        env = "RINGCAST_AUTH_POCKETBASE",
        value_name = "URL",
        conflicts_with_all = ["auth_jwt_secret", "auth_jwt_public_key"]
    )]
    pub auth_pocketbase: Option<String>,

    /// Verify tokens locally as HS256 JWTs signed with this secret.
    #[arg(
        long,
        env = "RINGCAST_AUTH_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        conflicts_with = "auth_jwt_public_key"
    )]
    pub auth_jwt_secret: Option<String>,

    /// Verify tokens locally as JWTs signed by the private half of this PEM
    /// public key: RSA → RS256, Ed25519 → EdDSA (EC keys need
    /// --auth-jwt-algorithm).
    #[arg(long, env = "RINGCAST_AUTH_JWT_PUBLIC_KEY", value_name = "PEM FILE")]
    pub auth_jwt_public_key: Option<PathBuf>,

    /// The JWT algorithm, when the key type alone does not say it (HS384,
    /// RS512, PS256, ES256, ES384, EdDSA, …).
    #[arg(long, env = "RINGCAST_AUTH_JWT_ALGORITHM", value_name = "ALG")]
    pub auth_jwt_algorithm: Option<String>,

    /// Most tokens whose PocketBase answer is remembered (0: ask every time).
    #[arg(long, env = "RINGCAST_AUTH_CACHE_SIZE", value_name = "N", default_value_t = DEFAULT_CACHE_SIZE)]
    pub auth_cache_size: usize,

    /// How long PocketBase's "this token is user X" is trusted before asking
    /// again (never past the token's expiry): how long a password change or a
    /// deleted user may go unnoticed.
    #[arg(long, env = "RINGCAST_AUTH_CACHE_TTL", value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub auth_cache_ttl: Duration,

    /// TOML file of topic rules (who may subscribe to what); without one,
    /// anyone may subscribe to anything, as in PocketBase for custom topics.
    #[arg(long, env = "RINGCAST_RULES", value_name = "FILE")]
    pub rules: Option<PathBuf>,

    /// Proxies whose X-Real-IP / X-Forwarded-For are believed, comma
    /// separated CIDRs or addresses (e.g. 10.0.0.0/8,::1).
    #[arg(
        long,
        env = "RINGCAST_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub trusted_proxy: Vec<String>,
}

impl Default for AuthArgs {
    /// The same as no flags: no verification, no rules, no trusted proxy.
    fn default() -> Self {
        AuthArgs {
            auth_pocketbase: None,
            auth_jwt_secret: None,
            auth_jwt_public_key: None,
            auth_jwt_algorithm: None,
            auth_cache_size: DEFAULT_CACHE_SIZE,
            auth_cache_ttl: DEFAULT_CACHE_TTL,
            rules: None,
            trusted_proxy: Vec::new(),
        }
    }
}
