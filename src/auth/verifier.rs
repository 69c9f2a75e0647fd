//! [`Verifier`]: the identity behind a subscription POST's token, in the mode
//! the flags chose.

use super::args::AuthArgs;
use super::error::{AuthConfigError, VerifyError};
use super::identity::Auth;
use super::{jwt, pocketbase};

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
    /// `Bearer <token>`); `Ok(None)` means guest, whether there was no token
    /// or a bad one; an error, that the token could not be checked now
    /// (PocketBase mode only). Never blocks: JWTs are checked in place (microseconds of CPU),
    /// PocketBase answers come from the cache or from the background thread
    /// through a channel, so the future may be awaited on any executor.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<Option<Auth>, VerifyError> {
        let Some(token) = authorization.and_then(token_of) else {
            return Ok(None);
        };
        match &self.mode {
            Mode::None => Ok(None),
            Mode::Jwt(jwt) => Ok(jwt.verify(token)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::identity::is_superusers_collection;
    use clap::Parser;
    use std::path::PathBuf;

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
        assert_eq!(block_on(verifier.verify(Some("Bearer anything"))), Ok(None));
        assert_eq!(block_on(verifier.verify(None)), Ok(None));
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
