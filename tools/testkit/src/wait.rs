//! Polling: what a test waits for (a disconnect noticed, a counter in /api/stats) happens on the
//! server's schedule, so tests poll with a deadline instead of sleeping a guessed time.

use std::time::{Duration, Instant};

/// Poll `f` every 20 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
