//! Local JWT verification (`--auth-jwt-secret`, `--auth-jwt-public-key`): for
//! deployments whose own auth service signs tokens for ringcast.
//!
//! Claims read: `id` and `collectionId` (required, non-empty strings),
//! `collectionName` (optional), `superuser` (optional boolean), `exp`
//! (required: a token that never expires could never be revoked) and `nbf`
//! (checked when present). A `type` claim other than `"auth"` is refused, so
//! PocketBase-style file or verification tokens signed with the same key do
//! not pass as logins. `exp` gets [`LEEWAY_SECS`] of grace for clock skew
//! between the issuer and us. `aud` is not checked: give ringcast a key of its
//! own. Any failure means guest, as in PocketBase.

use super::error::AuthConfigError;
use super::identity::{Auth, is_superusers_collection};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::path::Path;

/// Seconds a token is still accepted after its `exp` (clock skew).
pub const LEEWAY_SECS: u64 = 5;

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Claims {
    id: String,
    collection_id: String,
    #[serde(default)]
    collection_name: String,
    #[serde(default)]
    superuser: bool,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    /// Every claim: the auth record rules and filters read as `@request.auth.*`.
    #[serde(flatten)]
    all: serde_json::Map<String, serde_json::Value>,
}

/// The key families, each with the algorithms it can verify.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

impl Family {
    fn of(alg: Algorithm) -> Family {
        use Algorithm::*;
        match alg {
            HS256 | HS384 | HS512 => Family::Hmac,
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Family::Rsa,
            ES256 | ES384 => Family::Ec,
            EdDSA => Family::Ed,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Family::Hmac => "a secret (HS256, HS384, HS512)",
            Family::Rsa => "an RSA key (RS256, RS384, RS512, PS256, PS384, PS512)",
            Family::Ec => "an EC key (ES256, ES384)",
            Family::Ed => "an Ed25519 key (EdDSA)",
        }
    }
}

impl JwtVerifier {
    pub fn from_secret(secret: &str, algorithm: Option<&str>) -> Result<Self, AuthConfigError> {
        if secret.is_empty() {
            return Err(AuthConfigError::EmptySecret);
        }
        let alg = algorithm_for(Family::Hmac, algorithm)?;
        Ok(Self::with(DecodingKey::from_secret(secret.as_bytes()), alg))
    }

    pub fn from_public_key_file(
        path: &Path,
        algorithm: Option<&str>,
    ) -> Result<Self, AuthConfigError> {
        let pem = std::fs::read(path).map_err(|source| AuthConfigError::KeyFile {
            path: path.to_owned(),
            source,
        })?;
        let bad = |reason: String| AuthConfigError::Key {
            path: path.to_owned(),
            reason,
        };
        // Each constructor accepts only its own key type, so the first that
        // succeeds names the family.
        let (key, family) = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            (key, Family::Rsa)
        } else if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
            (key, Family::Ed)
        } else {
            match DecodingKey::from_ec_pem(&pem) {
                Ok(key) => (key, Family::Ec),
                Err(e) => return Err(bad(e.to_string())),
            }
        };
        let alg = match (family, algorithm) {
            (Family::Ec, None) => {
                return Err(bad(
                    "an EC key: say which curve's algorithm with --auth-jwt-algorithm ES256 or ES384"
                        .into(),
                ));
            }
            (family, given) => algorithm_for(family, given)?,
        };
        Ok(Self::with(key, alg))
    }

    fn with(key: DecodingKey, alg: Algorithm) -> Self {
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        JwtVerifier { key, validation }
    }

    /// The identity in a valid token, `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<Auth> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .ok()?
            .claims;
        if claims.id.is_empty()
            || claims.collection_id.is_empty()
            || claims.kind.as_deref().is_some_and(|kind| kind != "auth")
        {
            return None;
        }
        let superuser = claims.superuser
            || is_superusers_collection(&claims.collection_id, &claims.collection_name);
        let mut record = claims.all;
        record.insert("id".into(), claims.id.clone().into());
        record.insert("collectionId".into(), claims.collection_id.clone().into());
        record.insert(
            "collectionName".into(),
            claims.collection_name.clone().into(),
        );
        Some(Auth {
            id: claims.id,
            collection_id: claims.collection_id,
            collection_name: claims.collection_name,
            superuser,
            record: Some(std::sync::Arc::new(record.into())),
        })
    }
}

/// The algorithm to verify with: the one given (if it suits the key) or the
/// family's usual one.
fn algorithm_for(family: Family, given: Option<&str>) -> Result<Algorithm, AuthConfigError> {
    let Some(given) = given else {
        return Ok(match family {
            Family::Hmac => Algorithm::HS256,
            Family::Rsa => Algorithm::RS256,
            Family::Ed => Algorithm::EdDSA,
            // Callers ask for an explicit algorithm first.
            Family::Ec => Algorithm::ES256,
        });
    };
    let alg: Algorithm = given.parse().map_err(|_| AuthConfigError::Algorithm {
        given: given.into(),
        reason: "unknown; use one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA".into(),
    })?;
    if Family::of(alg) != family {
        return Err(AuthConfigError::Algorithm {
            given: given.into(),
            reason: format!(
                "it needs {}, but the key given is {}",
                Family::of(alg).describe(),
                family.describe()
            ),
        });
    }
    Ok(alg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::identity::unix_now;
    use crate::auth::{AuthArgs, Verifier};
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::{Value, json};

    // Test-only key pairs (generated with openssl for these tests).
    const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
    const ED_PRIVATE: &str = include_str!("testdata/ed25519_private.pem");
    const ED_PUBLIC: &str = include_str!("testdata/ed25519_public.pem");
    const EC_PUBLIC: &str = include_str!("testdata/ec_p256_public.pem");

    const SECRET: &str = "test-secret-of-reasonable-length";

    fn hs256(claims: &Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn user(exp: u64) -> Value {
        json!({"id": "u1", "collectionId": "_pb_users_auth_", "collectionName": "users", "exp": exp})
    }

    fn secret_verifier() -> JwtVerifier {
        JwtVerifier::from_secret(SECRET, None).unwrap()
    }

    fn key_file(contents: &str) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ringcast-jwt-{}-{}.pem",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn valid_hs256_token_gives_its_identity() {
        let token = hs256(&user(unix_now() + 600));
        assert_eq!(
            secret_verifier().verify(&token),
            Some(Auth {
                id: "u1".into(),
                collection_id: "_pb_users_auth_".into(),
                collection_name: "users".into(),
                superuser: false,
                record: None,
            })
        );
    }

    #[test]
    fn through_the_verifier_with_bearer() {
        let verifier = Verifier::new(&AuthArgs {
            auth_jwt_secret: Some(SECRET.into()),
            ..AuthArgs::default()
        })
        .unwrap();
        assert_eq!(verifier.mode(), "jwt");
        let token = hs256(&user(unix_now() + 600));
        let header = format!("Bearer {token}");
        let auth = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(verifier.verify(Some(&header)));
        assert_eq!(auth.map(|a| a.map(|a| a.id)), Ok(Some("u1".to_owned())));
    }

    #[test]
    fn collection_name_is_optional() {
        let token = hs256(&json!({"id": "u1", "collectionId": "c1", "exp": unix_now() + 60}));
        let auth = secret_verifier().verify(&token).unwrap();
        assert_eq!(auth.collection_name, "");
        assert!(!auth.superuser);
    }

    #[test]
    fn superuser_by_claim_name_or_id() {
        let now = unix_now() + 60;
        for claims in [
            json!({"id": "a", "collectionId": "c", "superuser": true, "exp": now}),
            json!({"id": "a", "collectionId": "c", "collectionName": "_superusers", "exp": now}),
            json!({"id": "a", "collectionId": "pbc_3142635823", "exp": now}),
        ] {
            let auth = secret_verifier().verify(&hs256(&claims)).unwrap();
            assert!(auth.superuser, "{claims}");
        }
        let plain = json!({"id": "a", "collectionId": "c", "superuser": false, "exp": now});
        assert!(!secret_verifier().verify(&hs256(&plain)).unwrap().superuser);
    }

    #[test]
    fn bad_tokens_are_guests() {
        let now = unix_now();
        let v = secret_verifier();
        let cases = [
            ("expired", hs256(&user(now - LEEWAY_SECS - 2))),
            ("no exp", hs256(&json!({"id": "u1", "collectionId": "c"}))),
            (
                "exp as string",
                hs256(&json!({"id": "u1", "collectionId": "c", "exp": (now + 60).to_string()})),
            ),
            (
                "no id",
                hs256(&json!({"collectionId": "c", "exp": now + 60})),
            ),
            (
                "empty id",
                hs256(&json!({"id": "", "collectionId": "c", "exp": now + 60})),
            ),
            (
                "no collectionId",
                hs256(&json!({"id": "u1", "exp": now + 60})),
            ),
            (
                "numeric id",
                hs256(&json!({"id": 7, "collectionId": "c", "exp": now + 60})),
            ),
            (
                "file token",
                hs256(&json!({"id": "u1", "collectionId": "c", "type": "file", "exp": now + 60})),
            ),
            (
                "not yet valid",
                hs256(
                    &json!({"id": "u1", "collectionId": "c", "nbf": now + 600, "exp": now + 900}),
                ),
            ),
            (
                "other secret",
                encode(
                    &Header::new(Algorithm::HS256),
                    &user(now + 60),
                    &EncodingKey::from_secret(b"another secret"),
                )
                .unwrap(),
            ),
            ("garbage", "not-a-jwt".to_owned()),
        ];
        for (what, token) in cases {
            assert_eq!(v.verify(&token), None, "{what}");
        }
        // An explicit "auth" type is fine.
        let typed = json!({"id": "u1", "collectionId": "c", "type": "auth", "exp": now + 60});
        assert!(v.verify(&hs256(&typed)).is_some());
    }

    #[test]
    fn tampered_payload_is_refused() {
        let token = hs256(&user(unix_now() + 600));
        let forged_claims = hs256(
            &json!({"id": "admin", "collectionId": "pbc_3142635823", "exp": unix_now() + 600}),
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_payload = forged_claims.split('.').nth(1).unwrap();
        parts[1] = forged_payload;
        assert_eq!(secret_verifier().verify(&parts.join(".")), None);
    }

    #[test]
    fn alg_none_and_alg_confusion_are_refused() {
        // `alg: none` with no signature.
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        let payload = hs256(&user(unix_now() + 60));
        let payload = payload.split('.').nth(1).unwrap();
        assert_eq!(
            secret_verifier().verify(&format!("{header}.{payload}.")),
            None
        );
        // An HS256 token "signed" with the RSA public key must not pass an RSA verifier.
        let rsa = JwtVerifier::from_public_key_file(&key_file(RSA_PUBLIC), None).unwrap();
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &user(unix_now() + 60),
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        )
        .unwrap();
        assert_eq!(rsa.verify(&confused), None);
    }

    #[test]
    fn rs256_public_key() {
        let v = JwtVerifier::from_public_key_file(&key_file(RSA_PUBLIC), None).unwrap();
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let token = encode(&Header::new(Algorithm::RS256), &user(unix_now() + 60), &key).unwrap();
        assert_eq!(v.verify(&token).map(|a| a.id), Some("u1".into()));
        // The key also verifies RS512 when asked to, and then only RS512.
        let v512 = JwtVerifier::from_public_key_file(&key_file(RSA_PUBLIC), Some("RS512")).unwrap();
        assert_eq!(v512.verify(&token), None);
        let token512 =
            encode(&Header::new(Algorithm::RS512), &user(unix_now() + 60), &key).unwrap();
        assert!(v512.verify(&token512).is_some());
    }

    #[test]
    fn eddsa_public_key() {
        let v = JwtVerifier::from_public_key_file(&key_file(ED_PUBLIC), None).unwrap();
        let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
        let token = encode(&Header::new(Algorithm::EdDSA), &user(unix_now() + 60), &key).unwrap();
        assert_eq!(v.verify(&token).map(|a| a.id), Some("u1".into()));
        let other = encode(
            &Header::new(Algorithm::EdDSA),
            &user(unix_now() + 60),
            &EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        let mut tampered = other.clone();
        tampered.insert(other.len() - 10, 'A');
        assert_eq!(v.verify(&tampered), None);
    }

    #[test]
    fn key_errors_say_what_to_fix() {
        let missing = std::path::Path::new("/nonexistent/key.pem");
        let err = JwtVerifier::from_public_key_file(missing, None)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("cannot read the JWT public key /nonexistent/key.pem: "),
            "{err}"
        );

        let err = JwtVerifier::from_public_key_file(&key_file("hello"), None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("is not a PEM public key"), "{err}");

        let err = JwtVerifier::from_public_key_file(&key_file(EC_PUBLIC), None)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("--auth-jwt-algorithm ES256 or ES384"),
            "{err}"
        );
        assert!(JwtVerifier::from_public_key_file(&key_file(EC_PUBLIC), Some("ES256")).is_ok());

        let err = JwtVerifier::from_public_key_file(&key_file(RSA_PUBLIC), Some("EdDSA"))
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "--auth-jwt-algorithm \"EdDSA\": it needs an Ed25519 key (EdDSA), but the key given is an RSA key (RS256, RS384, RS512, PS256, PS384, PS512)"
        );

        let err = JwtVerifier::from_secret(SECRET, Some("HS999"))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("--auth-jwt-algorithm \"HS999\": unknown; use one of"),
            "{err}"
        );

        assert!(matches!(
            JwtVerifier::from_secret("", None),
            Err(AuthConfigError::EmptySecret)
        ));
    }
}
