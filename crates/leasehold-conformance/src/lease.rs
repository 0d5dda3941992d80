//! `acquire_lease`, `release` and `dispatch`: who may take a lease, what a
//! lease records, and how tokens rise (SPEC guarantees 1 and 2).

use leasehold_core::{ErrorCode, HistoryKind, Store, TaskState};

use crate::support::*;
use crate::Harness;

/// An `expires_at` at or before `at` is `invalid_input`; nothing changes.
pub fn acquire_expiry_must_follow_at<H: Harness>(h: &H) {
    let s = h.fresh();
    create(&s, "t-1", 0);
    let inv = ErrorCode::InvalidInput;
    rejected(&s, "t-1", inv, &["t-1", "expire"], |s| {
        s.acquire_lease("t-1", "w1", at(10), &ctx(10))
    });
    rejected(&s, "t-1", inv, &["t-1"], |s| {
        s.acquire_lease("t-1", "w1", at(9), &ctx(10))
    });
    let t = s
        .acquire_lease("t-1", "w1", at_micros(10, 1), &ctx(10))
        .unwrap();
    assert_eq!(t.lease_expires_at, Some(at_micros(10, 1)));
}

/// A blank, over-long or control-character owner is `invalid_input`.
pub fn acquire_rejects_bad_owner<H: Harness>(h: &H) {
    let s = h.fresh();
    create(&s, "t-1", 0);
    let inv = ErrorCode::InvalidInput;
    for owner in ["", "   ", "bad\nowner", &"o".repeat(257)] {
        rejected(&s, "t-1", inv, &["owner"], |s| {
            s.acquire_lease("t-1", owner, at(60), &ctx(1))
        });
    }
    s.acquire_lease("t-1", &"o".repeat(256), at(60), &ctx(1))
        .unwrap();
}

/// An active lease blocks every owner until the instant it expires; at
/// `at == lease_expires_at` the lease is over and anyone may take the task,
/// with the next token.
pub fn acquire_after_expiry_takes_next_token<H: Harness>(h: &H) {
    let s = h.fresh();
    leased(&s, "t-1", "w1", 0, 60);
    rejected(&s, "t-1", ErrorCode::LeaseConflict, &["t-1", "w1"], |s| {
        s.acquire_lease("t-1", "w2", at(100), &ctx_micros(59, 999_999))
    });
    let t = s.acquire_lease("t-1", "w2", at(100), &ctx(60)).unwrap();
    assert_eq!(t.lease_owner.as_deref(), Some("w2"));
    assert_eq!((t.lease_token, t.attempts), (2, 2));
    assert_eq!(t.lease_acquired_at, Some(at(60)));
    assert_eq!(t.last_heartbeat_at, Some(at(60)));
    let last = history(&s, "t-1").pop().unwrap();
    assert_eq!(last.kind, HistoryKind::Leased);
    assert_eq!(last.actor, "w2");
    assert_eq!(last.lease_token, 2);
    assert_eq!(last.from_state, Some(TaskState::Running));
}

fn ctx_micros(secs: i64, micros: i64) -> leasehold_core::Context {
    leasehold_core::Context::new(at_micros(secs, micros), OPERATOR)
}

/// Tokens strictly increase across release, expiry, reclaim and claim, and
/// are never reused; attempts count every acquisition.
pub fn tokens_strictly_increase<H: Harness>(h: &H) {
    let s = h.fresh();
    create(&s, "t-1", 0);
    let mut tokens = Vec::new();
    let t = s.acquire_lease("t-1", "w1", at(10), &ctx(1)).unwrap();
    tokens.push(t.lease_token);
    s.release("t-1", &fence("w1", t.lease_token), &ctx(2))
        .unwrap();
    let t = s.acquire_lease("t-1", "w1", at(20), &ctx(3)).unwrap();
    tokens.push(t.lease_token);
    assert_eq!(ids(&s.reclaim(10, &ctx(20)).unwrap()), ["t-1"]);
    assert_eq!(
        get(&s, "t-1").lease_token,
        t.lease_token,
        "reclaim keeps the token"
    );
    let t = s.acquire_lease("t-1", "w2", at(40), &ctx(21)).unwrap();
    tokens.push(t.lease_token);
    // Expired, taken over by claim without a reclaim in between.
    let req = leasehold_core::ClaimRequest {
        owner: "w3".into(),
        queues: vec![],
        ttl: std::time::Duration::from_secs(30),
        limit: 1,
        max_attempts: None,
    };
    let t = s.claim(&req, &ctx(50)).unwrap().pop().unwrap();
    tokens.push(t.lease_token);
    let s = h.reopen(s);
    s.release("t-1", &fence("w3", t.lease_token), &ctx(51))
        .unwrap();
    let t = s.acquire_lease("t-1", "w1", at(100), &ctx(52)).unwrap();
    tokens.push(t.lease_token);
    assert_eq!(tokens, [1, 2, 3, 4, 5]);
    assert_eq!(t.attempts, 5);
    let leased_tokens: Vec<u64> = history(&s, "t-1")
        .iter()
        .filter(|e| e.kind == HistoryKind::Leased)
        .map(|e| e.lease_token)
        .collect();
    assert_eq!(leased_tokens, tokens);
}

/// Release: → `dispatched`, owner/acquired/expiry cleared, token kept as the
/// high-water mark, a `released` entry by the owner.
pub fn release_returns_task_to_dispatched<H: Harness>(h: &H) {
    let s = h.fresh();
    let leased_task = leased(&s, "t-1", "w1", 0, 60);
    let t = s.release("t-1", &fence("w1", 1), &ctx(10)).unwrap();
    assert_eq!(t.state, TaskState::Dispatched);
    assert_eq!(t.lease_owner, None);
    assert_eq!(t.lease_acquired_at, None);
    assert_eq!(t.lease_expires_at, None);
    assert_eq!(t.lease_token, 1);
    assert_eq!(t.attempts, 1);
    assert_eq!(t.version, leased_task.version + 1);
    assert_eq!(get(&s, "t-1"), t);
    let last = history(&s, "t-1").pop().unwrap();
    assert_eq!(last.kind, HistoryKind::Released);
    assert_eq!(last.actor, "w1");
    assert_eq!(last.lease_token, 1);
    assert_eq!(
        (last.from_state, last.to_state),
        (Some(TaskState::Running), TaskState::Dispatched)
    );
    assert!(s.list_stale(at(1000)).unwrap().is_empty());
}

/// Release is fenced like heartbeat: wrong owner, stale token, no lease and
/// expired lease are `lease_conflict` with the task unchanged.
pub fn release_adversarial_rejected<H: Harness>(h: &H) {
    let s = h.fresh();
    leased(&s, "t-1", "w1", 0, 60);
    s.release("t-1", &fence("w1", 1), &ctx(1)).unwrap();
    s.acquire_lease("t-1", "w1", at(60), &ctx(2)).unwrap(); // token 2
    let lc = ErrorCode::LeaseConflict;
    rejected(&s, "t-1", lc, &["t-1"], |s| {
        s.release("t-1", &fence("w2", 2), &ctx(3))
    });
    rejected(&s, "t-1", lc, &["t-1", "stale"], |s| {
        s.release("t-1", &fence("w1", 1), &ctx(3))
    });
    rejected(&s, "t-1", lc, &["t-1", "expired"], |s| {
        s.release("t-1", &fence("w1", 2), &ctx(60))
    });
    create(&s, "t-2", 0);
    rejected(&s, "t-2", lc, &["t-2"], |s| {
        s.release("t-2", &fence("w1", 0), &ctx(3))
    });
    s.release("t-1", &fence("w1", 2), &ctx(59)).unwrap();
    rejected(&s, "t-1", lc, &["t-1"], |s| {
        s.release("t-1", &fence("w1", 2), &ctx(59))
    });
}

/// Dispatch: `planned` → `dispatched` with a `dispatched` entry; again on a
/// dispatched task is a no-op; a leased task (active or expired) is
/// `lease_conflict`.
pub fn dispatch_rules<H: Harness>(h: &H) {
    let s = h.fresh();
    create(&s, "t-1", 0);
    let t = s.dispatch("t-1", &ctx(1)).unwrap();
    assert_eq!(t.state, TaskState::Dispatched);
    assert_eq!(t.version, 2);
    assert_eq!(t.updated_at, at(1));
    let last = history(&s, "t-1").pop().unwrap();
    assert_eq!(last.kind, HistoryKind::Dispatched);
    assert_eq!(last.actor, OPERATOR);
    let before = snapshot(&s, "t-1");
    let again = s.dispatch("t-1", &ctx(2)).unwrap();
    assert_eq!(Some(again), before.task);
    assert_unchanged(&s, &before);

    leased(&s, "t-2", "w1", 0, 60);
    let lc = ErrorCode::LeaseConflict;
    rejected(&s, "t-2", lc, &["t-2"], |s| s.dispatch("t-2", &ctx(10)));
    rejected(&s, "t-2", lc, &["t-2"], |s| s.dispatch("t-2", &ctx(100)));
}
