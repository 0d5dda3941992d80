//! Heartbeats beyond the seed: boundaries in microseconds, what a heartbeat
//! touches (and does not), and heartbeats after a release or a re-lease.

use leasehold_core::{ErrorCode, Store, TaskState};

use crate::support::*;
use crate::Harness;

/// A heartbeat one microsecond before expiry extends; one that extends by one
/// microsecond is enough; at expiry it is too late.
pub fn heartbeat_boundaries<H: Harness>(h: &H) {
    let s = h.fresh();
    leased(&s, "t-1", "w1", 0, 60);
    let f = fence("w1", 1);
    let t = s
        .heartbeat(
            "t-1",
            &f,
            at_micros(60, 1),
            &leasehold_core::Context::new(at_micros(59, 999_999), "w1"),
        )
        .unwrap();
    assert_eq!(t.lease_expires_at, Some(at_micros(60, 1)));
    assert_eq!(t.last_heartbeat_at, Some(at_micros(59, 999_999)));
    rejected(&s, "t-1", ErrorCode::LeaseConflict, &["t-1"], |s| {
        s.heartbeat(
            "t-1",
            &f,
            at(90),
            &leasehold_core::Context::new(at_micros(60, 1), "w1"),
        )
    });
}

/// A heartbeat changes only expiry, last heartbeat, version and updated_at.
pub fn heartbeat_touches_only_lease_clock<H: Harness>(h: &H) {
    let s = h.fresh();
    task("t-1").branch("b").compensation("b").create(&s, 0);
    let before = s.acquire_lease("t-1", "w1", at(60), &ctx(1)).unwrap();
    let after = s
        .heartbeat("t-1", &fence("w1", 1), at(90), &ctx(30))
        .unwrap();
    let mut expected = before.clone();
    expected.lease_expires_at = Some(at(90));
    expected.last_heartbeat_at = Some(at(30));
    expected.version = before.version + 1;
    expected.updated_at = at(30);
    assert_eq!(after, expected);
    assert_eq!(after.state, TaskState::Running);
}

/// After a release, and after someone else re-leases, the old fence is dead;
/// a heartbeat on a missing task is `not_found`.
pub fn heartbeat_after_release_or_new_lease_rejected<H: Harness>(h: &H) {
    let s = h.fresh();
    leased(&s, "t-1", "w1", 0, 60);
    s.release("t-1", &fence("w1", 1), &ctx(5)).unwrap();
    let lc = ErrorCode::LeaseConflict;
    rejected(&s, "t-1", lc, &["t-1"], |s| {
        s.heartbeat("t-1", &fence("w1", 1), at(90), &ctx(6))
    });
    s.acquire_lease("t-1", "w1", at(60), &ctx(7)).unwrap();
    // Same owner, old token: still rejected (the token, not the name, fences).
    rejected(&s, "t-1", lc, &["t-1", "stale"], |s| {
        s.heartbeat("t-1", &fence("w1", 1), at(90), &ctx(8))
    });
    s.heartbeat("t-1", &fence("w1", 2), at(90), &ctx(8))
        .unwrap();
    expect_err(
        s.heartbeat("t-missing", &fence("w1", 1), at(90), &ctx(8)),
        ErrorCode::NotFound,
        &["t-missing"],
    );
}
