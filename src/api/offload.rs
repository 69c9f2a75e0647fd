//! Work too large for a core's event loop, done on a thread of its own.
//!
//! Decoding a 32 MiB publish body takes tens of milliseconds (far more in a
//! debug build); done on the core, every stream and request of that core
//! would wait for it. Such jobs go to one background thread instead, and the
//! core only awaits the answer. One thread, at the lowest priority: large
//! bodies are rare (publishers are trusted, subscription bodies are capped
//! at 4 MiB), so they queue and yield the CPU to the cores rather than
//! compete with them.

use crate::http::error::ApiError;
use std::sync::OnceLock;
use std::sync::mpsc;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Bodies larger than this are decoded here rather than on the core.
pub const LARGE_BODY: usize = 256 * 1024;

/// `decode(&body)`, on the background thread when the body is large.
pub async fn decode<T: Send + 'static>(
    body: Vec<u8>,
    decode: impl FnOnce(&[u8]) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if body.len() <= LARGE_BODY {
        return decode(&body);
    }
    run(move || decode(&body))
        .await
        .ok_or_else(|| ApiError::new(503, "The server cannot decode large bodies right now."))?
}

/// Runs `f` on the background thread and resolves with its result; `None`
/// only if that thread could not be started (then nothing ran).
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    static JOBS: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    let jobs = JOBS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ringcast-decode".into())
            .spawn(move || {
                crate::runtime::lower_priority();
                for job in rx {
                    job();
                }
            })
            .ok()
            .map(|_| tx)
    });
    let (reply, answer) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = reply.send(f());
    });
    jobs.as_ref()?.send(job).ok()?;
    answer.await.ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn jobs_run_off_the_calling_thread() {
        let here = std::thread::current().id();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let there = rt.block_on(super::run(|| std::thread::current().id()));
        assert!(there.is_some_and(|t| t != here));
    }
}
