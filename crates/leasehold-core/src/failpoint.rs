//! Failpoints: named places in the server and the backends where the
//! reliability battery makes Leasehold fail on purpose (issue #7): an SQL
//! statement that answers `SQLITE_BUSY`, a PostgreSQL transaction that hits a
//! serialization failure, a process that aborts just before or just after
//! COMMIT.
//!
//! **Built on tikv's `fail` crate (fail-rs), compiled out by default.** With
//! this crate's cargo feature `failpoints` off (the default, and every release
//! build), [`eval`] is an empty `#[inline(always)]` function returning `None`,
//! the `fail` crate is not even a dependency, and the hooks in the backends
//! fold away. With it on, [`eval`] asks fail-rs's registry. We use fail-rs
//! rather than our own code because it already has what the battery needs and
//! is well kept: per-point action chains with counts (`2*off->1*return(busy)->off`
//! fails exactly the third hit), run-time (re)configuration with [`cfg`]
//! between operations of an in-process test, the `FAILPOINTS` environment
//! variable for server processes, and a scenario lock ([`Scenario`]) that
//! keeps tests of one process from configuring points under each other.
//! Two things it lacks are added here, thinly:
//!
//! - an `abort` action (fail-rs can `panic`, but a panic inside a server is
//!   caught and answered, not a crash): the payload `return(abort)` makes
//!   [`eval`] call [`std::process::abort`] on the spot, like `kill -9` at
//!   that instant;
//! - counts: [`hits`] (how often a point was reached) and [`injected`] (how
//!   often it fired), so a test can prove that the faults it configured were
//!   really injected, and measure how many statements an operation issues.
//!
//! We call `fail::eval` (the function behind `fail_point!`) instead of the
//! macro because every hook maps the payload to its own backend's error
//! value (a `rusqlite` error, a PostgreSQL statement that raises), and the
//! macro's `cfg` would be evaluated in each calling crate rather than here.
//!
//! **Configuring.** In-process tests: `let _s = Scenario::setup();` then
//! [`cfg`]`("sqlite::statement", "2*off->1*return(busy)")` before the
//! operation. Server processes: `FAILPOINTS="before_commit_name=return(abort)"`
//! (fail-rs syntax, `name=actions;name=actions`), read at the first [`eval`]
//! of the process (or by [`Scenario::setup`]).
//!
//! **Payloads** (`return(PAYLOAD)`): `abort` everywhere; `error` (the server's
//! points answer `unavailable`); SQLite: `busy`, `ioerr`, `full`; PostgreSQL:
//! `serialization` (SQLSTATE 40001), `deadlock` (40P01), `disconnect` (the
//! session terminates itself). The point names are listed in
//! `docs/reliability.md` ("Failpoints").

/// Whether failpoints are compiled in (the `failpoints` feature).
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// Evaluate the failpoint `name`. `None`: carry on (always, when failpoints
/// are compiled out). `Some(payload)`: the point fires with `return(payload)`
/// (`""` for a bare `return`) and the caller injects the fault the payload
/// names. The payload `abort` never returns: the process aborts here.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn eval(_name: &str) -> Option<String> {
    None
}

/// Evaluate the failpoint `name`. `None`: carry on (always, when failpoints
/// are compiled out). `Some(payload)`: the point fires with `return(payload)`
/// (`""` for a bare `return`) and the caller injects the fault the payload
/// names. The payload `abort` never returns: the process aborts here.
#[cfg(feature = "failpoints")]
pub fn eval(name: &str) -> Option<String> {
    imp::eval(name)
}

/// How many times the point `name` was reached (fired or not) in this
/// process; always 0 when failpoints are compiled out.
pub fn hits(name: &str) -> u64 {
    #[cfg(feature = "failpoints")]
    {
        imp::count(name).0
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        0
    }
}

/// How many times the point `name` fired (answered a payload) in this
/// process; always 0 when failpoints are compiled out.
pub fn injected(name: &str) -> u64 {
    #[cfg(feature = "failpoints")]
    {
        imp::count(name).1
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        0
    }
}

#[cfg(feature = "failpoints")]
pub use imp::{cfg, remove, Scenario};

#[cfg(feature = "failpoints")]
mod imp {
    use std::collections::HashMap;
    use std::sync::{Mutex, Once};

    /// Environment variable read by server processes (fail-rs's own).
    pub const ENV: &str = "FAILPOINTS";

    fn counts() -> &'static Mutex<HashMap<String, (u64, u64)>> {
        static COUNTS: std::sync::OnceLock<Mutex<HashMap<String, (u64, u64)>>> =
            std::sync::OnceLock::new();
        COUNTS.get_or_init(|| Mutex::new(HashMap::new()))
    }

    fn bump(name: &str, fired: bool) {
        let mut c = counts().lock().unwrap_or_else(|e| e.into_inner());
        let e = c.entry(name.to_string()).or_default();
        e.0 += 1;
        if fired {
            e.1 += 1;
        }
    }

    pub fn count(name: &str) -> (u64, u64) {
        let c = counts().lock().unwrap_or_else(|e| e.into_inner());
        c.get(name).copied().unwrap_or_default()
    }

    /// Configure the points named in `FAILPOINTS`, once per process.
    fn from_env() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let Ok(spec) = std::env::var(ENV) else {
                return;
            };
            for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                let configured = item
                    .split_once('=')
                    .ok_or_else(|| "expected NAME=ACTIONS".to_string())
                    .and_then(|(name, actions)| fail::cfg(name.trim(), actions.trim()));
                if let Err(e) = configured {
                    // A server must not start silently without the fault its
                    // test asked for; the test then sees no crash and fails.
                    eprintln!("{ENV}: ignoring {item:?}: {e}");
                }
            }
        });
    }

    pub fn eval(name: &str) -> Option<String> {
        from_env();
        let fired = fail::eval(name, |arg| arg.unwrap_or_default());
        bump(name, fired.is_some());
        if fired.as_deref() == Some("abort") {
            eprintln!("failpoint {name}: aborting the process");
            std::process::abort();
        }
        fired
    }

    /// Set the actions of the point `name` (fail-rs syntax, e.g.
    /// `"2*off->1*return(busy)"`), replacing any earlier configuration.
    pub fn cfg(name: &str, actions: &str) -> Result<(), String> {
        from_env();
        fail::cfg(name, actions)
    }

    /// Remove the configuration of the point `name` (it passes again).
    pub fn remove(name: &str) {
        fail::remove(name)
    }

    /// A test's exclusive use of the failpoints of this process: set up with
    /// the `FAILPOINTS` environment variable's points, every point cleared
    /// when dropped. Tests of one process holding a `Scenario` run one after
    /// the other.
    pub struct Scenario {
        _inner: fail::FailScenario<'static>,
    }

    impl Scenario {
        /// Wait for other tests' scenarios to end, then start this one.
        pub fn setup() -> Scenario {
            from_env();
            Scenario {
                _inner: fail::FailScenario::setup(),
            }
        }
    }

    impl std::fmt::Debug for Scenario {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Scenario")
        }
    }
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use super::*;

    #[test]
    fn counted_actions_fire_exactly_the_configured_hit_and_are_counted() {
        let _s = Scenario::setup();
        let name = "core::test_point";
        let (h0, i0) = (hits(name), injected(name));
        assert_eq!(eval(name), None, "unconfigured points pass");
        cfg(name, "2*off->1*return(busy)").unwrap();
        let seen: Vec<_> = (0..5).map(|_| eval(name)).collect();
        assert_eq!(seen, vec![None, None, Some("busy".into()), None, None]);
        assert_eq!(hits(name) - h0, 6);
        assert_eq!(injected(name) - i0, 1);
        cfg(name, "return").unwrap();
        assert_eq!(eval(name), Some(String::new()));
        remove(name);
        assert_eq!(eval(name), None);
        assert!(cfg(name, "nonsense(").is_err(), "bad actions are refused");
    }
}

#[cfg(all(test, not(feature = "failpoints")))]
mod tests {
    use super::*;

    #[test]
    fn compiled_out_points_never_fire_and_count_nothing() {
        const { assert!(!ENABLED) };
        assert_eq!(eval("anything"), None);
        assert_eq!((hits("anything"), injected("anything")), (0, 0));
    }
}
