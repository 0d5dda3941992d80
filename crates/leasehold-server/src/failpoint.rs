//! Failpoints for the reliability battery: named places in the request path
//! where a test can make the server abort (like `kill -9` at that exact
//! instant) or answer a store error.
//!
//! Compiled in only with the cargo feature `failpoints`; without it [`hit`]
//! is an empty inline function and release builds carry nothing. Configured
//! from the environment once, at the first hit:
//!
//! `LEASEHOLD_FAILPOINT=NAME:ACTION[@N][,NAME:ACTION[@N]…]`
//!
//! - `NAME`: `before_store_call` (before the store is called, so before any
//!   commit) or `after_commit_before_response` (the store call succeeded and
//!   committed; the HTTP answer is not yet written).
//! - `ACTION`: `abort` (the process aborts at once, no cleanup, no answer)
//!   or `error` (the call answers `unavailable`, i.e. 503).
//! - `@N`: trigger on the N-th hit only (1-based; default: every hit).
//!
//! Backends (SQLite, PostgreSQL) do not have failpoints of their own yet; a
//! failpoint between the task write and its history write would belong in
//! their write paths (see `docs/reliability.md`).

/// Evaluate the failpoint `name`: abort, fail with `unavailable`, or pass.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) -> leasehold_core::Result<()> {
    Ok(())
}

/// Evaluate the failpoint `name`: abort, fail with `unavailable`, or pass.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) -> leasehold_core::Result<()> {
    imp::hit(name)
}

#[cfg(feature = "failpoints")]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    use leasehold_core::Error;

    /// Environment variable holding the failpoint specification.
    pub const ENV: &str = "LEASEHOLD_FAILPOINT";

    #[derive(Debug)]
    struct Point {
        name: String,
        abort: bool,
        nth: Option<u64>,
        hits: AtomicU64,
    }

    fn points() -> &'static Vec<Point> {
        static POINTS: OnceLock<Vec<Point>> = OnceLock::new();
        POINTS.get_or_init(|| {
            let spec = std::env::var(ENV).unwrap_or_default();
            spec.split(',')
                .filter(|s| !s.trim().is_empty())
                .filter_map(|s| {
                    let (name, rest) = s.trim().split_once(':')?;
                    let (action, nth) = match rest.split_once('@') {
                        Some((a, n)) => (a, n.parse().ok()),
                        None => (rest, None),
                    };
                    let abort = match action {
                        "abort" => true,
                        "error" => false,
                        _ => {
                            eprintln!("ignoring failpoint {s:?}: action must be abort or error");
                            return None;
                        }
                    };
                    Some(Point {
                        name: name.to_string(),
                        abort,
                        nth,
                        hits: AtomicU64::new(0),
                    })
                })
                .collect()
        })
    }

    pub fn hit(name: &str) -> leasehold_core::Result<()> {
        for p in points().iter().filter(|p| p.name == name) {
            let n = p.hits.fetch_add(1, Ordering::SeqCst) + 1;
            if p.nth.is_some_and(|want| want != n) {
                continue;
            }
            if p.abort {
                eprintln!("failpoint {name}: aborting (hit {n})");
                std::process::abort();
            }
            return Err(Error::Unavailable(format!(
                "failpoint {name} injected a store error (hit {n})"
            )));
        }
        Ok(())
    }
}
