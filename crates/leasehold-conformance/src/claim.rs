//! `claim`: atomically lease up to `limit` claimable tasks from the given
//! queues, priority descending then creation order.

use std::time::Duration;

use leasehold_core::{ClaimRequest, ErrorCode, HistoryKind, Store, TaskState};

use crate::support::*;
use crate::Harness;

/// A claim request shorthand.
pub fn req(owner: &str, queues: &[&str], ttl_secs: u64, limit: u32) -> ClaimRequest {
    ClaimRequest {
        owner: owner.to_string(),
        queues: queues.iter().map(|q| q.to_string()).collect(),
        ttl: Duration::from_secs(ttl_secs),
        limit,
        max_attempts: None,
    }
}

/// Priority descending, then creation order (not timestamp order); `limit`
/// caps each call; each claimed task is leased like `acquire_lease`.
pub fn claim_order_and_limit<H: Harness>(h: &H) {
    let s = h.fresh();
    task("low-first").priority(-5).create(&s, 50);
    task("mid-a").create(&s, 40);
    task("high").priority(10).create(&s, 30);
    task("mid-b").create(&s, 20);
    task("mid-c").priority(0).create(&s, 10);
    let first = s.claim(&req("w1", &[], 60, 2), &ctx(100)).unwrap();
    assert_eq!(ids(&first), ["high", "mid-a"]);
    for t in &first {
        assert_eq!(t.state, TaskState::Running);
        assert_eq!(t.lease_owner.as_deref(), Some("w1"));
        assert_eq!(t.lease_expires_at, Some(at(160)));
        assert_eq!(t.lease_acquired_at, Some(at(100)));
        assert_eq!(t.last_heartbeat_at, Some(at(100)));
        assert_eq!((t.lease_token, t.attempts), (1, 1));
        assert_eq!(*t, get(&s, &t.task_id));
        let last = history(&s, &t.task_id).pop().unwrap();
        assert_eq!(
            (last.kind, last.actor.as_str()),
            (HistoryKind::Leased, "w1")
        );
    }
    let second = s.claim(&req("w2", &[], 60, 10), &ctx(101)).unwrap();
    assert_eq!(ids(&second), ["mid-b", "mid-c", "low-first"]);
    assert!(s
        .claim(&req("w3", &[], 60, 10), &ctx(102))
        .unwrap()
        .is_empty());
}

/// Queues: none given means `default`; given queues only; other queues untouched.
pub fn claim_respects_queues<H: Harness>(h: &H) {
    let s = h.fresh();
    create(&s, "d-1", 0);
    task("a-1").queue("alpha").create(&s, 1);
    task("b-1").queue("beta").priority(5).create(&s, 2);
    task("g-1").queue("gamma").create(&s, 3);
    assert_eq!(
        ids(&s.claim(&req("w", &[], 60, 10), &ctx(10)).unwrap()),
        ["d-1"]
    );
    let got = s
        .claim(&req("w", &["alpha", "beta", "alpha"], 60, 10), &ctx(10))
        .unwrap();
    assert_eq!(ids(&got), ["b-1", "a-1"]);
    assert_eq!(get(&s, "g-1").state, TaskState::Planned);
    assert!(s
        .claim(&req("w", &["nobody"], 60, 10), &ctx(10))
        .unwrap()
        .is_empty());
}

/// Claim takes planned and dispatched tasks and expired leases (next token),
/// never active leases or terminal tasks.
pub fn claim_takes_expired_not_active_or_terminal<H: Harness>(h: &H) {
    let s = h.fresh();
    leased(&s, "active", "w1", 0, 100);
    leased(&s, "expired", "w1", 0, 50);
    create(&s, "done", 0);
    s.complete("done", None, None, &ctx(1)).unwrap();
    create(&s, "dispatched", 0);
    s.dispatch("dispatched", &ctx(1)).unwrap();
    let active = snapshot(&s, "active");
    let got = s.claim(&req("w2", &[], 30, 10), &ctx(50)).unwrap();
    assert_eq!(ids(&got), ["expired", "dispatched"]);
    assert_eq!(got[0].lease_token, 2);
    assert_eq!(got[0].attempts, 2);
    assert_eq!(got[0].lease_owner.as_deref(), Some("w2"));
    assert_unchanged(&s, &active);
    assert_eq!(get(&s, "done").state, TaskState::Completed);
}

/// With the reaper's `max_attempts`, a stale lease that used up its attempts
/// is not claimable: it is left for `reclaim` to quarantine, and it does not
/// stand in front of other claimable tasks. Unleased tasks are claimable
/// whatever their attempts; a higher limit or none takes the stale one.
pub fn claim_leaves_exhausted_stale_leases_to_reclaim<H: Harness>(h: &H) {
    let s = h.fresh();
    for id in ["poison-a", "poison-b"] {
        task(id).priority(9).create(&s, 0);
        leased(&s, id, "w1", 1, 4); // attempt 1, expired at 5
        leased(&s, id, "w2", 10, 10); // attempt 2, expires at 20
    }
    leased(&s, "slow", "w1", 1, 19); // attempt 1, expires at 20
    leased(&s, "returned", "w1", 1, 4);
    let t = leased(&s, "returned", "w2", 10, 10);
    s.release("returned", &fence("w2", t.lease_token), &ctx(11))
        .unwrap(); // attempts 2, no lease
    let (a, b) = (snapshot(&s, "poison-a"), snapshot(&s, "poison-b"));

    let mut capped = req("w3", &[], 60, 10);
    capped.max_attempts = Some(2);
    let got = s.claim(&capped, &ctx(30)).unwrap();
    assert_eq!(ids(&got), ["slow", "returned"], "poison tasks left out");
    assert_eq!((got[0].attempts, got[1].attempts), (2, 3));
    assert_unchanged(&s, &a);
    assert_unchanged(&s, &b);
    assert!(s.claim(&capped, &ctx(31)).unwrap().is_empty());
    let stale = ids(&s.list_stale(at(31)).unwrap());
    assert_eq!(
        stale,
        ["poison-a", "poison-b"],
        "still stale, for the reaper"
    );

    let mut looser = req("w4", &[], 60, 1);
    looser.max_attempts = Some(3);
    let got = s.claim(&looser, &ctx(32)).unwrap();
    assert_eq!(ids(&got), ["poison-a"]);
    assert_eq!((got[0].attempts, got[0].lease_token), (3, 3));
    let got = s.claim(&req("w5", &[], 60, 1), &ctx(33)).unwrap();
    assert_eq!(ids(&got), ["poison-b"], "no bound: any expired lease");
    assert_eq!(got[0].attempts, 3);
}

/// Bad requests are `invalid_input` and lease nothing.
pub fn claim_rejects_bad_requests<H: Harness>(h: &H) {
    let s = h.fresh();
    create(&s, "t-1", 0);
    let inv = ErrorCode::InvalidInput;
    let too_many: Vec<String> = (0..65).map(|i| format!("q{i}")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let bad = [
        req("w", &[], 60, 0),
        req("w", &[], 60, 1001),
        req("", &[], 60, 1),
        req("w", &["bad queue"], 60, 1),
        req("w", &too_many, 60, 1),
        ClaimRequest {
            ttl: Duration::ZERO,
            ..req("w", &[], 60, 1)
        },
        ClaimRequest {
            max_attempts: Some(0),
            ..req("w", &[], 60, 1)
        },
    ];
    for r in bad {
        rejected(&s, "t-1", inv, &[], |s| s.claim(&r, &ctx(1)));
    }
    assert_eq!(s.claim(&req("w", &[], 60, 1000), &ctx(1)).unwrap().len(), 1);
}
