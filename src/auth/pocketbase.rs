//! Token verification by the PocketBase that issued the token
//! (`--auth-pocketbase URL`): only PocketBase knows its per-record token keys,
//! so we ask it, `POST {URL}/api/collections/{collectionId}/auth-refresh`
//! with the token, and take the record from its answer.
//!
//! * The token's payload is read unverified first, for `collectionId` (which
//!   collection to ask) and `exp`: an expired or malformed token is a guest
//!   with no request made.
//! * Answers are cached by token string: a record for `--auth-cache-ttl`
//!   (default 5 minutes, never past the token's `exp`), a refusal
//!   (400/401/403/404) for at most [`NEGATIVE_TTL_SECS`]. The cache is bounded
//!   (`--auth-cache-size`, least recently used go first) and read on the
//!   caller's thread, so a hit never leaves it. The TTL is how long a password
//!   change or a deleted user may go unnoticed: PocketBase's tokens live for
//!   days, so trusting them until `exp` would be far too long.
//! * Misses go to one background thread running its own current-thread tokio
//!   runtime and HTTP client; callers only await a `oneshot`, which works from
//!   any executor (the cores run tokio-uring). Concurrent misses on one token
//!   share one request, and at most [`MAX_REQUESTS`] requests run at once.
//! * PocketBase down, slow (over [`TIMEOUT`]) or answering 5xx: the request
//!   fails with [`VerifyError::Unavailable`] (answered 503), a warning is
//!   logged, and nothing is cached. A flood of unknown tokens that fills the
//!   queue fails the same way ([`VerifyError::Busy`], 429): real users are
//!   told, not silently made guests.

use super::error::{AuthConfigError, VerifyError};
use super::identity::{Auth, is_superusers_collection, unix_now};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{Id, JoinSet};

/// The longest wait for PocketBase's answer, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// How long a refusal is remembered: a token refused now may not be later
/// (PocketBase restored from a backup, a record recreated), so not for long.
pub const NEGATIVE_TTL_SECS: u64 = 60;
/// Requests to PocketBase in flight at once; more wait their turn, so a flood
/// of made-up tokens cannot open unbounded connections to it.
pub const MAX_REQUESTS: usize = 64;
/// Misses queued for the background thread before callers wait to enqueue.
const QUEUE: usize = 1024;

type Cache = quick_cache::sync::Cache<String, Answer>;
type Reply = oneshot::Sender<Result<Option<Auth>, VerifyError>>;

/// A definite answer and the Unix second it stops being trusted.
#[derive(Clone, Debug)]
struct Answer {
    auth: Option<Auth>,
    until: u64,
}

struct Job {
    token: String,
    collection: String,
    exp: u64,
    reply: Reply,
}

pub struct Introspector {
    cache: Option<Arc<Cache>>,
    jobs: mpsc::Sender<Job>,
}

/// The unverified claims we need before asking.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Peek {
    collection_id: String,
    exp: u64,
}

impl Introspector {
    /// Checks the URL, builds the client and starts the background thread,
    /// which ends by itself once this introspector is dropped.
    pub fn new(url: &str, cache_size: usize, ttl: Duration) -> Result<Self, AuthConfigError> {
        let base = base_url(url)?;
        let checker_error = |e: &dyn std::fmt::Display| AuthConfigError::Checker(e.to_string());
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            // A redirect would carry the token elsewhere; PocketBase never
            // redirects its API, so a 3xx means a wrong URL (logged).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ringcast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| checker_error(&e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| checker_error(&e))?;
        let cache = (cache_size > 0).then(|| Arc::new(Cache::new(cache_size)));
        let checker = Arc::new(Checker {
            client,
            base,
            cache: cache.clone(),
            ttl: ttl.as_secs(),
            limit: Semaphore::new(MAX_REQUESTS),
        });
        let (jobs, queue) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("ringcast-auth".into())
            .spawn(move || runtime.block_on(checker.run(queue)))
            .map_err(|e| checker_error(&e))?;
        Ok(Introspector { cache, jobs })
    }

    pub async fn verify(&self, token: &str) -> Result<Option<Auth>, VerifyError> {
        let now = unix_now();
        let Some((collection, exp)) = precheck(token, now) else {
            return Ok(None);
        };
        if let Some(answer) = fresh(self.cache.as_deref(), token, now) {
            return Ok(answer);
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            token: token.to_owned(),
            collection,
            exp,
            reply,
        };
        // A full queue (a flood of unknown tokens) fails fast rather than
        // holding every core's subscription POSTs behind it.
        if let Err(e) = self.jobs.try_send(job) {
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => VerifyError::Busy,
                // The background thread is gone (never while `self` lives).
                mpsc::error::TrySendError::Closed(_) => VerifyError::Unavailable,
            });
        }
        answer.await.unwrap_or(Err(VerifyError::Unavailable))
    }
}

/// The collection to ask about and the token's `exp`, or `None` (guest, no
/// request) when the token is malformed, expired, or names no plausible
/// collection. Collection ids and names are `[A-Za-z0-9_]`, which also keeps
/// the URL path intact.
fn precheck(token: &str, now: u64) -> Option<(String, u64)> {
    let peek = jsonwebtoken::dangerous::insecure_decode::<Peek>(token)
        .ok()?
        .claims;
    let plausible = (1..=100).contains(&peek.collection_id.len())
        && peek
            .collection_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (peek.exp > now && plausible).then_some((peek.collection_id, peek.exp))
}

/// A cached answer still in force.
fn fresh(cache: Option<&Cache>, token: &str, now: u64) -> Option<Option<Auth>> {
    let answer = cache?.get(token)?;
    (answer.until > now).then_some(answer.auth)
}

/// `URL` without its trailing `/`, if PocketBase can be reached there.
fn base_url(url: &str) -> Result<String, AuthConfigError> {
    let bad = |reason: &str| AuthConfigError::PocketBaseUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("only http:// and https:// are supported"));
    }
    if parsed.host().is_none() {
        return Err(bad("it has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("it has a query or fragment"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// What one request to PocketBase concluded.
enum Outcome {
    /// PocketBase's own verdict, safe to cache.
    Definite(Option<Auth>),
    /// No verdict (PocketBase unreachable, 5xx, odd answer): the request
    /// fails, nothing is cached.
    Unavailable,
}

/// The background side: owns the HTTP client and the in-flight table.
struct Checker {
    client: reqwest::Client,
    base: String,
    cache: Option<Arc<Cache>>,
    /// Seconds a record answer is trusted.
    ttl: u64,
    limit: Semaphore,
}

/// The part of PocketBase's auth answer we read.
#[derive(serde::Deserialize)]
struct AuthResponse {
    record: Record,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    id: String,
    collection_id: String,
    collection_name: String,
    /// Every field: what rules and filters read as `@request.auth.*`.
    #[serde(flatten)]
    all: serde_json::Map<String, serde_json::Value>,
}

impl Checker {
    /// Serves jobs until every sender is gone (the verifier was dropped);
    /// requests still running then are abandoned with the runtime.
    async fn run(self: Arc<Self>, mut jobs: mpsc::Receiver<Job>) {
        let mut waiting: HashMap<String, Vec<Reply>> = HashMap::new();
        let mut running: HashMap<Id, (String, u64)> = HashMap::new();
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                job = jobs.recv() => {
                    let Some(job) = job else { break };
                    // Answered while this job was queued?
                    if let Some(answer) = fresh(self.cache.as_deref(), &job.token, unix_now()) {
                        let _ = job.reply.send(Ok(answer));
                        continue;
                    }
                    match waiting.entry(job.token) {
                        Entry::Occupied(mut entry) => entry.get_mut().push(job.reply),
                        Entry::Vacant(entry) => {
                            let token = entry.key().clone();
                            entry.insert(vec![job.reply]);
                            let checker = self.clone();
                            let (request_token, collection) = (token.clone(), job.collection);
                            let task = tasks.spawn(async move {
                                checker.ask(&request_token, &collection).await
                            });
                            running.insert(task.id(), (token, job.exp));
                        }
                    }
                }
                Some(done) = tasks.join_next_with_id() => {
                    let (id, outcome) = match done {
                        Ok((id, outcome)) => (id, outcome),
                        // A task that panicked: its waiters get no verdict.
                        Err(e) => (e.id(), Outcome::Unavailable),
                    };
                    let Some((token, exp)) = running.remove(&id) else { continue };
                    let auth = match outcome {
                        Outcome::Definite(auth) => {
                            self.remember(&token, exp, &auth);
                            Ok(auth)
                        }
                        Outcome::Unavailable => Err(VerifyError::Unavailable),
                    };
                    for reply in waiting.remove(&token).unwrap_or_default() {
                        let _ = reply.send(auth.clone());
                    }
                }
            }
        }
    }

    /// Caches a definite answer for the TTL, never past the token's `exp` (a
    /// refusal for at most [`NEGATIVE_TTL_SECS`]).
    fn remember(&self, token: &str, exp: u64, auth: &Option<Auth>) {
        let Some(cache) = &self.cache else { return };
        let now = unix_now();
        let until = match auth {
            Some(_) => exp.min(now.saturating_add(self.ttl)),
            None => exp.min(now + NEGATIVE_TTL_SECS),
        };
        cache.insert(
            token.to_owned(),
            Answer {
                auth: auth.clone(),
                until,
            },
        );
    }

    /// One `auth-refresh` request: the record, a refusal, or no verdict.
    async fn ask(&self, token: &str, collection: &str) -> Outcome {
        // Never closed, so acquiring cannot fail.
        let Ok(_permit) = self.limit.acquire().await else {
            return Outcome::Unavailable;
        };
        let url = format!("{}/api/collections/{collection}/auth-refresh", self.base);
        let response = match self
            .client
            .post(&url)
            .header(reqwest::header::AUTHORIZATION, token)
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(%url, error = %e, "cannot reach PocketBase to verify a token; the subscription request is refused (503)");
                return Outcome::Unavailable;
            }
        };
        let status = response.status().as_u16();
        match status {
            200 => {}
            400 | 401 | 403 | 404 => return Outcome::Definite(None),
            _ => {
                tracing::warn!(%url, status, "PocketBase did not verify a token; the subscription request is refused (503)");
                return Outcome::Unavailable;
            }
        }
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(%url, error = %e, "PocketBase's token answer was cut short; the subscription request is refused (503)");
                return Outcome::Unavailable;
            }
        };
        match serde_json::from_slice::<AuthResponse>(&body) {
            Ok(AuthResponse { record }) if !record.id.is_empty() => {
                let superuser =
                    is_superusers_collection(&record.collection_id, &record.collection_name);
                let mut fields = record.all;
                fields.insert("id".into(), record.id.clone().into());
                fields.insert("collectionId".into(), record.collection_id.clone().into());
                fields.insert(
                    "collectionName".into(),
                    record.collection_name.clone().into(),
                );
                Outcome::Definite(Some(Auth {
                    id: record.id,
                    collection_id: record.collection_id,
                    collection_name: record.collection_name,
                    superuser,
                    record: Some(Arc::new(fields.into())),
                }))
            }
            _ => {
                tracing::warn!(%url, "PocketBase's token answer has no auth record (is the URL PocketBase's?); the subscription request is refused (503)");
                Outcome::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::json;

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"unknown to us"),
        )
        .unwrap()
    }

    #[test]
    fn precheck_reads_the_unverified_payload() {
        let now = 1_000_000;
        let ok = token(json!({"id": "u", "collectionId": "_pb_users_auth_", "exp": now + 1}));
        assert_eq!(
            precheck(&ok, now),
            Some(("_pb_users_auth_".into(), now + 1))
        );

        let expired = token(json!({"collectionId": "c", "exp": now}));
        assert_eq!(precheck(&expired, now), None);
        let no_exp = token(json!({"collectionId": "c"}));
        assert_eq!(precheck(&no_exp, now), None);
        let no_collection = token(json!({"exp": now + 60}));
        assert_eq!(precheck(&no_collection, now), None);
        let path_trick = token(json!({"collectionId": "../../api/health?", "exp": now + 60}));
        assert_eq!(precheck(&path_trick, now), None);
        assert_eq!(precheck("garbage", now), None);
        assert_eq!(precheck("a.b.c", now), None);
    }

    #[test]
    fn cached_answers_expire() {
        let cache = Cache::new(10);
        let auth = Auth {
            id: "u".into(),
            collection_id: "c".into(),
            collection_name: "users".into(),
            superuser: false,
            record: None,
        };
        cache.insert(
            "t".into(),
            Answer {
                auth: Some(auth.clone()),
                until: 100,
            },
        );
        assert_eq!(fresh(Some(&cache), "t", 99), Some(Some(auth)));
        assert_eq!(fresh(Some(&cache), "t", 100), None);
        assert_eq!(fresh(Some(&cache), "other", 99), None);
        assert_eq!(fresh(None, "t", 99), None);
    }

    #[test]
    fn negative_answers_are_kept_at_most_a_minute() {
        let checker = Checker {
            client: reqwest::Client::new(),
            base: String::new(),
            cache: Some(Arc::new(Cache::new(10))),
            ttl: 300,
            limit: Semaphore::new(1),
        };
        let now = unix_now();
        let long = "long".to_owned();
        checker.remember(&long, now + 3600, &None);
        let cache = checker.cache.as_deref().unwrap();
        let until = cache.get(long.as_str()).unwrap().until;
        assert!((now + NEGATIVE_TTL_SECS..=now + NEGATIVE_TTL_SECS + 2).contains(&until));
        let auth = Some(Auth {
            id: "u".into(),
            collection_id: "c".into(),
            collection_name: String::new(),
            superuser: false,
            record: None,
        });
        checker.remember(&long, now + 3600, &auth);
        let until = cache.get(long.as_str()).unwrap().until;
        assert!(
            (now + 300..=now + 302).contains(&until),
            "records are kept for the TTL"
        );
        let short = "short".to_owned();
        checker.remember(&short, now + 5, &None);
        assert_eq!(cache.get(short.as_str()).unwrap().until, now + 5);
    }

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            base_url("http://127.0.0.1:8090/").unwrap(),
            "http://127.0.0.1:8090"
        );
        assert_eq!(
            base_url("https://example.com/pb/").unwrap(),
            "https://example.com/pb"
        );
        for (url, reason) in [
            ("127.0.0.1:8090", "relative URL without a base"),
            ("localhost:8090", "only http:// and https://"),
            ("ftp://host", "only http:// and https://"),
            ("http://host/?x=1", "query or fragment"),
        ] {
            let err = base_url(url).err().unwrap().to_string();
            assert!(
                err.starts_with(&format!("--auth-pocketbase {url:?} is not usable: ")),
                "{err}"
            );
            assert!(err.contains(reason), "{err}");
            assert!(err.ends_with("e.g. http://127.0.0.1:8090"), "{err}");
        }
    }

    #[test]
    fn unreachable_pocketbase_is_an_error_and_is_not_cached() {
        // Port 1 on loopback refuses at once: no verdict, so nothing cached.
        let introspector =
            Introspector::new("http://127.0.0.1:1", 10, Duration::from_secs(300)).unwrap();
        let t = token(json!({"id": "u", "collectionId": "users", "exp": unix_now() + 600}));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(
            rt.block_on(introspector.verify(&t)),
            Err(VerifyError::Unavailable)
        );
        assert_eq!(introspector.cache.as_deref().unwrap().len(), 0);
    }
}
