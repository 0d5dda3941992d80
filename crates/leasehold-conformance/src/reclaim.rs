//! `reclaim` (the reaper): stale tasks go back to `dispatched`, or to
//! `quarantined` once they used up their attempts.

use leasehold_core::{Context, ErrorCode, HistoryKind, Store, TaskState};

use crate::support::*;
use crate::Harness;

fn reaper(secs: i64) -> Context {
    Context::new(at(secs), "reaper")
}

/// Below max attempts: → `dispatched`, lease cleared, token kept, an
/// `expired` entry by the reaper naming the last owner; oldest expiry first,
/// a lease expiring exactly now included, fresh and terminal tasks untouched.
pub fn reclaim_dispatches_stale<H: Harness>(h: &H) {
    let s = h.fresh();
    leased(&s, "late", "w-late", 0, 40);
    leased(&s, "early", "w-early", 0, 20);
    leased(&s, "fresh", "w1", 0, 41);
    leased(&s, "done", "w1", 0, 10);
    s.complete("done", None, None, &ctx(11)).unwrap();
    let fresh = snapshot(&s, "fresh");
    let done = snapshot(&s, "done");
    let got = s.reclaim(5, &reaper(40)).unwrap();
    assert_eq!(ids(&got), ["early", "late"]);
    for t in &got {
        assert_eq!(t.state, TaskState::Dispatched);
        assert_eq!(t.lease_owner, None);
        assert_eq!(t.lease_acquired_at, None);
        assert_eq!(t.lease_expires_at, None);
        assert_eq!((t.lease_token, t.attempts), (1, 1));
        assert_eq!(*t, get(&s, &t.task_id));
        let last = history(&s, &t.task_id).pop().unwrap();
        assert_eq!(last.kind, HistoryKind::Expired);
        assert_eq!(last.actor, "reaper");
        assert_eq!(last.lease_token, 1);
        assert_eq!(last.at, at(40));
        let detail = last.detail.unwrap_or_default();
        assert!(detail.contains(&format!("w-{}", t.task_id)), "{detail}");
    }
    assert_unchanged(&s, &fresh);
    assert_unchanged(&s, &done);
    assert!(
        s.reclaim(5, &reaper(40)).unwrap().is_empty(),
        "reclaim twice"
    );
    assert!(s.list_stale(at(40)).unwrap().is_empty());
}

/// At `attempts >= max_attempts`: → `quarantined` with a reason naming the
/// attempts and the last owner; the last lease is kept for the record.
pub fn reclaim_quarantines_at_max_attempts<H: Harness>(h: &H) {
    let s = h.fresh();
    create(&s, "t-1", 0);
    for round in 0..3i64 {
        let base = round * 100;
        let t = s
            .acquire_lease("t-1", &format!("w{round}"), at(base + 30), &ctx(base + 1))
            .unwrap();
        assert_eq!(t.lease_token, round as u64 + 1);
        let got = s.reclaim(3, &reaper(base + 50)).unwrap();
        assert_eq!(got.len(), 1);
        if round < 2 {
            assert_eq!(got[0].state, TaskState::Dispatched);
        } else {
            let q = &got[0];
            assert_eq!(q.state, TaskState::Quarantined);
            let reason = q.terminal_reason.clone().unwrap_or_default();
            assert!(reason.contains('3'), "reason {reason:?} names the attempts");
            assert!(
                reason.contains("w2"),
                "reason {reason:?} names the last owner"
            );
            assert_eq!(q.lease_owner.as_deref(), Some("w2"));
            assert_eq!(q.lease_token, 3);
            assert_eq!(q.attempts, 3);
            let last = history(&s, "t-1").pop().unwrap();
            assert_eq!(last.kind, HistoryKind::Quarantined);
            assert_eq!(last.actor, "reaper");
            assert_eq!(last.detail.as_deref(), Some(reason.as_str()));
        }
    }
    expect_err(
        s.acquire_lease("t-1", "w9", at(1000), &ctx(500)),
        ErrorCode::Terminal,
        &["t-1"],
    );
    // max_attempts 1 quarantines after the first lease.
    leased(&s, "t-2", "solo", 0, 10);
    let got = s.reclaim(1, &reaper(20)).unwrap();
    assert_eq!(got[0].state, TaskState::Quarantined);
}

/// `max_attempts` 0 is `invalid_input` and reclaims nothing.
pub fn reclaim_rejects_zero_max_attempts<H: Harness>(h: &H) {
    let s = h.fresh();
    leased(&s, "t-1", "w1", 0, 10);
    rejected(&s, "t-1", ErrorCode::InvalidInput, &["max_attempts"], |s| {
        s.reclaim(0, &reaper(20))
    });
    assert_eq!(s.reclaim(1, &reaper(20)).unwrap().len(), 1);
}

/// Expiry ties are broken by creation order; the reaper's order is the
/// `list_stale` order.
pub fn reclaim_order_matches_list_stale<H: Harness>(h: &H) {
    let s = h.fresh();
    for id in ["c", "a", "b"] {
        leased(&s, id, "w1", 0, 30);
    }
    leased(&s, "z-earliest", "w1", 0, 20);
    let stale = ids(&s.list_stale(at(30)).unwrap());
    assert_eq!(stale, ["z-earliest", "c", "a", "b"]);
    assert_eq!(ids(&s.reclaim(5, &reaper(30)).unwrap()), stale);
}
