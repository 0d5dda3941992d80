//! Test sizes: the quick tier (default; minutes in total on 2 cores) and the
//! long tier (`LEASEHOLD_SOAK=1`), with the full sizes.

use std::time::Duration;

/// Whether the long tier was asked for (`LEASEHOLD_SOAK` set, not `0`/`false`).
pub fn soak() -> bool {
    std::env::var("LEASEHOLD_SOAK").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// `quick` normally, `long` under `LEASEHOLD_SOAK=1`.
pub fn pick<T>(quick: T, long: T) -> T {
    if soak() {
        long
    } else {
        quick
    }
}

/// Race workload duration per backend: 5 s quick, 30 s long.
pub fn race_duration() -> Duration {
    pick(Duration::from_secs(5), Duration::from_secs(30))
}

/// Paused-worker episodes: 20 quick, 200 long.
pub fn paused_episodes() -> usize {
    pick(20, 200)
}

/// Random-moment server kills per backend: 10 quick, 50 long.
pub fn kills() -> usize {
    pick(10, 50)
}

/// Rescue trials: 20 quick, 200 long.
pub fn rescue_trials() -> usize {
    pick(20, 200)
}

/// Heartbeat soak: (workers, duration): 10 for 5 s quick, 50 for 10 min long.
/// `LEASEHOLD_SOAK_SECONDS=N` shortens (or lengthens) the duration of either
/// tier, for iterating on a long-tier failure.
pub fn heartbeat_soak() -> (usize, Duration) {
    let (workers, duration) = pick((10, Duration::from_secs(5)), (50, Duration::from_secs(600)));
    let duration = std::env::var("LEASEHOLD_SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(duration, Duration::from_secs);
    (workers, duration)
}

/// Seed for a run: `LEASEHOLD_SEED` if set (to replay a failure), else `default`.
pub fn seed(default: u64) -> u64 {
    std::env::var("LEASEHOLD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
