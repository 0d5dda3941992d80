//! A busy handler that keeps waiting writers from starving.
//!
//! SQLite's default busy handler (what `busy_timeout` installs) sleeps
//! 1, 2, 5, 10, … up to 100 ms between attempts. Under contention that is
//! unfair: a connection that just committed begins its next `BEGIN IMMEDIATE`
//! within microseconds, while a waiter sleeping 100 ms rarely polls in the
//! short gap between two transactions. With 32 connections claiming in a loop
//! we measured waiters exceeding a 10 s timeout (`unavailable`) while others
//! committed thousands of times.
//!
//! This handler polls often instead: a short, jittered sleep (≈ 50 µs growing
//! to ≈ 1 ms) so that every waiter regularly tries in the gaps, and gives up
//! once the configured `busy_timeout` has passed since the first attempt of
//! this locking event. The jitter keeps waiters from polling in lockstep.
//!
//! `rusqlite` takes a plain `fn(i32) -> bool`, so the timeout and the start of
//! the current wait live in thread-locals: SQLite calls the handler on the
//! thread that is executing the statement, which is the thread that set them
//! (see [`set_timeout`], called before every transaction).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Longest sleep between two attempts.
const SLEEP_MAX: Duration = Duration::from_millis(1);
/// First sleep; doubles per attempt up to [`SLEEP_MAX`].
const SLEEP_FIRST: Duration = Duration::from_micros(50);

thread_local! {
    static TIMEOUT: Cell<Duration> = const { Cell::new(crate::BUSY_TIMEOUT_DEFAULT) };
    static STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// Use `timeout` for the busy waits of the calling thread from now on.
pub fn set_timeout(timeout: Duration) {
    TIMEOUT.with(|t| t.set(timeout));
}

/// A cheap per-thread xorshift for jitter; quality does not matter here.
fn jitter() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        if x == 0 {
            // Seed from the address of a thread-local and the time: distinct per thread.
            let addr = r as *const Cell<u64> as u64;
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            x = addr ^ nanos.rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        x
    })
}

/// The handler installed on every connection: `true` = try again.
pub fn handler(attempt: i32) -> bool {
    let now = Instant::now();
    let started = STARTED.with(|s| {
        if attempt == 0 || s.get().is_none() {
            s.set(Some(now));
        }
        s.get().unwrap_or(now)
    });
    let timeout = TIMEOUT.with(Cell::get);
    let waited = now.saturating_duration_since(started);
    if waited >= timeout {
        return false;
    }
    let shift = attempt.clamp(0, 10) as u32;
    let base = SLEEP_FIRST.saturating_mul(1 << shift).min(SLEEP_MAX);
    // Sleep between half and all of `base`, never past the deadline.
    let nanos = base.as_nanos() as u64;
    let sleep = Duration::from_nanos(nanos / 2 + jitter() % (nanos / 2 + 1));
    std::thread::sleep(sleep.min(timeout - waited));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_up_after_the_timeout_and_not_before() {
        let timeout = Duration::from_millis(20);
        set_timeout(timeout);
        let start = Instant::now();
        assert!(handler(0), "the first attempt waits");
        let mut attempt = 1;
        while handler(attempt) {
            attempt += 1;
            assert!(attempt < 1_000_000, "handler never gave up");
        }
        // Not before: it kept saying "retry" until the deadline had passed.
        assert!(
            start.elapsed() >= timeout,
            "gave up after {:?}",
            start.elapsed()
        );
        // Polls repeatedly rather than sleeping the whole timeout at once
        // (sleeps are at most SLEEP_MAX = 1 ms).
        assert!(attempt >= 2, "polled only {attempt} times");
        // A new locking event (attempt 0) starts a new wait.
        assert!(handler(0));
        set_timeout(crate::BUSY_TIMEOUT_DEFAULT);
    }
}
