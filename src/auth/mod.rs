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

mod jwt;
mod pocketbase;
mod proxy;
mod rules;

pub use proxy::TrustedProxies;
pub use rules::{Allow, Denied, Rules, RulesError};

use clap::Args;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// PocketBase's fixed id of its `_superusers` collection (the same in every
/// installation), so a token naming it is a superuser's even without a name.
pub const SUPERUSERS_COLLECTION_ID: &str = "pbc_3142635823";
/// PocketBase's name of the superusers collection.
pub const SUPERUSERS_COLLECTION_NAME: &str = "_superusers";
/// Default bound of the PocketBase answer cache, in tokens.
pub const DEFAULT_CACHE_SIZE: usize = 100_000;
/// Default time a PocketBase answer is trusted (keep in step with the flag).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

/// A subscriber's verified identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// The auth record's id.
    pub id: String,
    /// The id of the record's auth collection.
    pub collection_id: String,
    /// The collection's name; `""` when the token did not say.
    pub collection_name: String,
    /// Superusers may subscribe to every topic.
    pub superuser: bool,
}

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

/// Decides who the sender of a token is. Shared by every core (it is `Send +
/// Sync`); [`Verifier::verify`] never blocks the calling thread.
pub struct Verifier {
    mode: Mode,
}

enum Mode {
    None,
    // Boxed: the key and validation settings are a few hundred bytes.
    Jwt(Box<jwt::JwtVerifier>),
    PocketBase(pocketbase::Introspector),
}

impl Verifier {
    /// The verifier `args` ask for. In PocketBase mode this starts the one
    /// background thread that talks to PocketBase; it ends by itself when the
    /// verifier is dropped.
    pub fn new(args: &AuthArgs) -> Result<Verifier, AuthConfigError> {
        let given: Vec<&str> = [
            (args.auth_pocketbase.is_some(), "--auth-pocketbase"),
            (args.auth_jwt_secret.is_some(), "--auth-jwt-secret"),
            (args.auth_jwt_public_key.is_some(), "--auth-jwt-public-key"),
        ]
        .into_iter()
        .filter_map(|(set, flag)| set.then_some(flag))
        .collect();
        if given.len() > 1 {
            return Err(AuthConfigError::SeveralModes(given.join(" and ")));
        }
        let mode = if let Some(url) = &args.auth_pocketbase {
            if args.auth_jwt_algorithm.is_some() {
                return Err(AuthConfigError::AlgorithmWithoutKey);
            }
            Mode::PocketBase(pocketbase::Introspector::new(
                url,
                args.auth_cache_size,
                args.auth_cache_ttl,
            )?)
        } else if let Some(secret) = &args.auth_jwt_secret {
            Mode::Jwt(Box::new(jwt::JwtVerifier::from_secret(
                secret,
                args.auth_jwt_algorithm.as_deref(),
            )?))
        } else if let Some(path) = &args.auth_jwt_public_key {
            Mode::Jwt(Box::new(jwt::JwtVerifier::from_public_key_file(
                path,
                args.auth_jwt_algorithm.as_deref(),
            )?))
        } else if args.auth_jwt_algorithm.is_some() {
            return Err(AuthConfigError::AlgorithmWithoutKey);
        } else {
            Mode::None
        };
        Ok(Verifier { mode })
    }

    /// The identity behind a raw `Authorization` header value (the token, or
    /// `Bearer <token>`); `None` means guest, whether there was no token or a
    /// bad one. Never blocks: JWTs are checked in place (microseconds of CPU),
    /// PocketBase answers come from the cache or from the background thread
    /// through a channel, so the future may be awaited on any executor.
    pub async fn verify(&self, authorization: Option<&str>) -> Option<Auth> {
        let token = token_of(authorization?)?;
        match &self.mode {
            Mode::None => None,
            Mode::Jwt(jwt) => jwt.verify(token),
            Mode::PocketBase(pb) => pb.verify(token).await,
        }
    }

    /// `"none"`, `"jwt"` or `"pocketbase"`, for logs.
    /// Whether verifying may ask PocketBase over the network (worth cheap
    /// checks first).
    pub fn asks_pocketbase(&self) -> bool {
        matches!(self.mode, Mode::PocketBase(_))
    }

    pub fn mode(&self) -> &'static str {
        match self.mode {
            Mode::None => "none",
            Mode::Jwt(_) => "jwt",
            Mode::PocketBase(_) => "pocketbase",
        }
    }
}

/// The token in an `Authorization` value: PocketBase takes it raw or after
/// `Bearer `; we also forgive the scheme's case and stray spaces.
fn token_of(authorization: &str) -> Option<&str> {
    let value = authorization.trim_start();
    let token = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => &value[7..],
        _ => value,
    }
    .trim();
    (!token.is_empty()).then_some(token)
}

/// Whether an identity is a superuser's by PocketBase's fixed collection.
fn is_superusers_collection(collection_id: &str, collection_name: &str) -> bool {
    collection_id == SUPERUSERS_COLLECTION_ID || collection_name == SUPERUSERS_COLLECTION_NAME
}

/// Seconds since the Unix epoch, the unit of a JWT's `exp`.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        auth: AuthArgs,
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn token_of_accepts_raw_and_bearer() {
        assert_eq!(token_of("abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(token_of("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(token_of("bearer   abc"), Some("abc"));
        assert_eq!(token_of("  BEARER abc  "), Some("abc"));
        assert_eq!(token_of("Bearer "), None);
        assert_eq!(token_of(""), None);
        assert_eq!(token_of("Bearerabc"), Some("Bearerabc"));
        // Multi-byte input shorter than the scheme must not panic.
        assert_eq!(token_of("é"), Some("é"));
        assert_eq!(token_of("ééééé"), Some("ééééé"));
    }

    #[test]
    fn no_flags_means_everyone_is_a_guest() {
        let verifier = Verifier::new(&AuthArgs::default()).unwrap();
        assert_eq!(verifier.mode(), "none");
        assert_eq!(block_on(verifier.verify(Some("Bearer anything"))), None);
        assert_eq!(block_on(verifier.verify(None)), None);
    }

    #[test]
    fn default_matches_no_flags() {
        let parsed = Cli::parse_from(["ringcast"]).auth;
        let default = AuthArgs::default();
        assert_eq!(parsed.auth_cache_size, default.auth_cache_size);
        assert_eq!(parsed.auth_cache_ttl, default.auth_cache_ttl);
        assert_eq!(parsed.trusted_proxy, default.trusted_proxy);
        assert!(parsed.auth_pocketbase.is_none() && parsed.rules.is_none());
    }

    #[test]
    fn flags_parse() {
        let args = Cli::parse_from([
            "ringcast",
            "--auth-jwt-secret",
            "s3cret",
            "--auth-cache-size",
            "5",
            "--trusted-proxy",
            "10.0.0.0/8,::1",
            "--rules",
            "rules.toml",
        ])
        .auth;
        assert_eq!(args.auth_jwt_secret.as_deref(), Some("s3cret"));
        assert_eq!(args.auth_cache_size, 5);
        assert_eq!(args.trusted_proxy, ["10.0.0.0/8", "::1"]);
        assert_eq!(args.rules, Some(PathBuf::from("rules.toml")));
    }

    #[test]
    fn two_modes_are_refused_by_clap_and_by_new() {
        assert!(
            Cli::try_parse_from([
                "ringcast",
                "--auth-jwt-secret",
                "x",
                "--auth-pocketbase",
                "http://127.0.0.1:8090",
            ])
            .is_err()
        );
        let args = AuthArgs {
            auth_pocketbase: Some("http://127.0.0.1:8090".into()),
            auth_jwt_secret: Some("x".into()),
            ..AuthArgs::default()
        };
        let err = Verifier::new(&args).err().expect("two modes must fail");
        assert_eq!(
            err.to_string(),
            "--auth-pocketbase and --auth-jwt-secret were given together, but tokens are verified one way only: keep just one of --auth-pocketbase, --auth-jwt-secret and --auth-jwt-public-key"
        );
    }

    #[test]
    fn algorithm_alone_is_refused() {
        let args = AuthArgs {
            auth_jwt_algorithm: Some("HS256".into()),
            ..AuthArgs::default()
        };
        assert!(matches!(
            Verifier::new(&args),
            Err(AuthConfigError::AlgorithmWithoutKey)
        ));
    }

    #[test]
    fn superusers_collection_by_id_or_name() {
        assert!(is_superusers_collection("pbc_3142635823", ""));
        assert!(is_superusers_collection("x", "_superusers"));
        assert!(!is_superusers_collection("_pb_users_auth_", "users"));
    }
}
