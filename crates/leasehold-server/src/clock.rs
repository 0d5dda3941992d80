//! The server's clock. The server, never the worker, decides what time it is:
//! every `at` and every lease expiry comes from here. Tests inject a
//! [`ManualClock`] and move it by hand.

use std::sync::Mutex;

use leasehold_core::Timestamp;

/// Where the server gets "now".
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: Timestamp) -> ManualClock {
        ManualClock {
            now: Mutex::new(at),
        }
    }

    /// Set the time.
    pub fn set(&self, at: Timestamp) {
        *self.now.lock().expect("clock lock") = at;
    }

    /// Move the time forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        let mut now = self.now.lock().expect("clock lock");
        *now = now
            .checked_add_micros(ms * 1000)
            .expect("manual clock stays within years 1..=9999");
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().expect("clock lock")
    }
}
