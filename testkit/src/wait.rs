//! Waiting on a condition a test can observe, never on a guessed sleep.

use std::time::{Duration, Instant};

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(10);

/// Checks `cond` every 10 ms, letting other tasks run, until it holds
/// (true) or `limit` passes (false).
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    eventually_async(limit, || std::future::ready(cond())).await
}

/// [`eventually`] for an asynchronous check.
pub async fn eventually_async<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut cond: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] for blocking tests: the thread sleeps `every` between
/// checks (checks that run a program deserve more than 10 ms).
pub fn eventually_blocking(
    limit: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}
