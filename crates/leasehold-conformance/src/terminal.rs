//! The four terminal markers (complete, fail, compensate, quarantine): from
//! which states they apply, how fences are checked (also past expiry), and
//! that a terminal task refuses every further change except audit metadata.

use leasehold_core::{ErrorCode, Fence, HistoryKind, Result, Store, Task, TaskState};

use crate::support::*;
use crate::Harness;

/// The four terminal markers, in SPEC order.
pub const TERMINAL: [TaskState; 4] = [
    TaskState::Completed,
    TaskState::Failed,
    TaskState::Compensated,
    TaskState::Quarantined,
];

/// Apply the terminal marker for `state` to `id`.
pub fn mark<S: Store + ?Sized>(
    s: &S,
    id: &str,
    state: TaskState,
    reason: &str,
    fence: Option<&Fence>,
    secs: i64,
) -> Result<Task> {
    match state {
        TaskState::Completed => s.complete(id, Some(reason), fence, &ctx(secs)),
        TaskState::Failed => s.fail(id, reason, Some(comp("b")), fence, &ctx(secs)),
        TaskState::Compensated => s.compensate(id, Some(reason), fence, &ctx(secs)),
        TaskState::Quarantined => s.quarantine(id, reason, fence, &ctx(secs)),
        other => panic!("{other} is not terminal"),
    }
}

fn kind_of(state: TaskState) -> HistoryKind {
    match state {
        TaskState::Completed => HistoryKind::Completed,
        TaskState::Failed => HistoryKind::Failed,
        TaskState::Compensated => HistoryKind::Compensated,
        _ => HistoryKind::Quarantined,
    }
}

/// Operators may end a task from any non-terminal state without a fence —
/// planned, dispatched, or running under someone else's active lease; the
/// entry's actor is the operator and the last lease is kept for the record.
pub fn operator_marks_from_every_state<H: Harness>(h: &H) {
    let s = h.fresh();
    for state in TERMINAL {
        let p = format!("{}-planned", state.as_str());
        let d = format!("{}-dispatched", state.as_str());
        let r = format!("{}-running", state.as_str());
        create(&s, &p, 0);
        create(&s, &d, 0);
        s.dispatch(&d, &ctx(1)).unwrap();
        leased(&s, &r, "w1", 1, 60);
        for id in [&p, &d, &r] {
            let before = get(&s, id);
            let t = mark(&s, id, state, "by operator", None, 10).unwrap();
            assert_eq!(t.state, state);
            assert_eq!(t.terminal_reason.as_deref(), Some("by operator"));
            assert_eq!(t.version, before.version + 1);
            assert_eq!(t.lease_owner, before.lease_owner);
            assert_eq!(t.lease_token, before.lease_token);
            assert_eq!(t.lease_expires_at, before.lease_expires_at);
            let last = history(&s, id).pop().unwrap();
            assert_eq!(last.kind, kind_of(state));
            assert_eq!(last.actor, OPERATOR);
            assert_eq!(last.from_state, Some(before.state));
            assert_eq!(last.detail.as_deref(), Some("by operator"));
        }
    }
}

/// A fenced marker with the wrong owner, a stale token, or on a task without
/// a lease is `lease_conflict`, unchanged.
pub fn fenced_marker_checks_fence<H: Harness>(h: &H) {
    let s = h.fresh();
    for state in TERMINAL {
        let id = format!("t-{}", state.as_str());
        leased(&s, &id, "w1", 0, 60);
        s.release(&id, &fence("w1", 1), &ctx(1)).unwrap();
        s.acquire_lease(&id, "w1", at(60), &ctx(2)).unwrap(); // token 2
        let lc = ErrorCode::LeaseConflict;
        rejected(&s, &id, lc, &[&id], |s| {
            mark(s, &id, state, "r", Some(&fence("w2", 2)), 3)
        });
        rejected(&s, &id, lc, &[&id], |s| {
            mark(s, &id, state, "r", Some(&fence("w1", 1)), 3)
        });
        let planned = format!("p-{}", state.as_str());
        create(&s, &planned, 0);
        rejected(&s, &planned, lc, &[&planned], |s| {
            mark(s, &planned, state, "r", Some(&fence("w1", 0)), 3)
        });
        let t = mark(&s, &id, state, "r", Some(&fence("w1", 2)), 3).unwrap();
        assert_eq!(t.state, state);
        assert_eq!(history(&s, &id).pop().unwrap().actor, "w1");
    }
}

/// A fence stays current past expiry until someone acquires, releases or
/// reclaims: a late `complete` with it succeeds; after a reclaim it fails.
pub fn fence_current_past_expiry_until_reclaimed<H: Harness>(h: &H) {
    let s = h.fresh();
    for state in TERMINAL {
        let late = format!("late-{}", state.as_str());
        leased(&s, &late, "w1", 0, 30);
        let t = mark(
            &s,
            &late,
            state,
            "late but fine",
            Some(&fence("w1", 1)),
            100,
        )
        .unwrap();
        assert_eq!(t.state, state);
    }
    leased(&s, "reclaimed", "w1", 0, 30);
    assert_eq!(ids(&s.reclaim(5, &ctx(100)).unwrap()), ["reclaimed"]);
    for state in TERMINAL {
        rejected(
            &s,
            "reclaimed",
            ErrorCode::LeaseConflict,
            &["reclaimed"],
            |s| {
                mark(
                    s,
                    "reclaimed",
                    state,
                    "too late",
                    Some(&fence("w1", 1)),
                    101,
                )
            },
        );
    }
    leased(&s, "retaken", "w1", 0, 30);
    s.acquire_lease("retaken", "w2", at(200), &ctx(100))
        .unwrap();
    for state in TERMINAL {
        rejected(&s, "retaken", ErrorCode::LeaseConflict, &["retaken"], |s| {
            mark(s, "retaken", state, "too late", Some(&fence("w1", 1)), 101)
        });
    }
}

/// Quarantine needs a non-blank reason; fail needs a non-blank reason; both
/// are `invalid_input` otherwise, unchanged. Complete's reason is optional.
pub fn reasons_required_where_specified<H: Harness>(h: &H) {
    let s = h.fresh();
    task("t-1").compensation("b").create(&s, 0);
    let inv = ErrorCode::InvalidInput;
    rejected(&s, "t-1", inv, &["reason"], |s| {
        s.quarantine("t-1", "", None, &ctx(1))
    });
    rejected(&s, "t-1", inv, &["reason"], |s| {
        s.quarantine("t-1", "  ", None, &ctx(1))
    });
    rejected(&s, "t-1", inv, &["reason"], |s| {
        s.fail("t-1", "", None, None, &ctx(1))
    });
    let t = s.complete("t-1", None, None, &ctx(2)).unwrap();
    assert_eq!(t.terminal_reason, None);
    assert_eq!(t.state, TaskState::Completed);
}

/// Every terminal state — reached by marker, by reclaim past max attempts,
/// or inserted by `put` — refuses lease, heartbeat, release, dispatch, every
/// other marker and any put changing state or fields, with `terminal`.
pub fn terminal_refuses_every_change<H: Harness>(h: &H) {
    let s = h.fresh();
    let mut ids_states = Vec::new();
    for state in TERMINAL {
        let id = format!("m-{}", state.as_str());
        leased(&s, &id, "w1", 0, 60);
        mark(&s, &id, state, "r", None, 1).unwrap();
        ids_states.push(id);
    }
    leased(&s, "by-reclaim", "w1", 0, 10);
    let q = s.reclaim(1, &ctx(20)).unwrap();
    assert_eq!(q[0].state, TaskState::Quarantined);
    ids_states.push("by-reclaim".into());
    let mut imported = get(&s, "m-completed");
    imported.task_id = "imported-done".into();
    imported.saga_id = "saga-imported-done".into();
    s.put(imported, None, &ctx(21)).unwrap();
    ids_states.push("imported-done".into());

    let term = ErrorCode::Terminal;
    for id in &ids_states {
        let id = id.as_str();
        let f = fence("w1", get(&s, id).lease_token);
        rejected(&s, id, term, &[id], |s| {
            s.acquire_lease(id, "w9", at(500), &ctx(100))
        });
        rejected(&s, id, term, &[id], |s| {
            s.heartbeat(id, &f, at(500), &ctx(100))
        });
        rejected(&s, id, term, &[id], |s| s.release(id, &f, &ctx(100)));
        rejected(&s, id, term, &[id], |s| s.dispatch(id, &ctx(100)));
        for other in TERMINAL {
            rejected(&s, id, term, &[id], |s| {
                mark(s, id, other, "again", None, 100)
            });
            rejected(&s, id, term, &[id], |s| {
                mark(s, id, other, "again", Some(&f), 100)
            });
        }
        let cur = get(&s, id);
        for edit in 0..5 {
            let mut c = cur.clone();
            match edit {
                0 => c.state = TaskState::Planned,
                1 => {
                    c.state = if cur.state == TaskState::Compensated {
                        TaskState::Completed
                    } else {
                        TaskState::Compensated
                    }
                }
                2 => c.branch = Some("changed".into()),
                3 => c.queue = "other".into(),
                _ => c.issue = Some(7),
            }
            rejected(&s, id, term, &[id], |s| s.put(c.clone(), None, &ctx(100)));
        }
    }
    // Audit metadata stays editable on every terminal state.
    for id in &ids_states {
        let id = id.as_str();
        let cur = get(&s, id);
        let mut c = cur.clone();
        c.terminal_reason = Some(format!("{id}: reviewed"));
        let t = s.put(c, Some(cur.version), &ctx(200)).unwrap();
        assert_eq!(t.state, cur.state);
        assert_eq!(t.terminal_reason, Some(format!("{id}: reviewed")));
        let t = s.annotate(id, "auditor", "seen", &ctx(201)).unwrap();
        assert_eq!(t.notes.len(), cur.notes.len() + 1);
        if !t.compensations.is_empty() {
            let t = s
                .record_compensation(
                    id,
                    0,
                    leasehold_core::CompensationStatus::Applied,
                    Some("done"),
                    &ctx(202),
                )
                .unwrap();
            assert_eq!(
                t.compensations[0].status,
                leasehold_core::CompensationStatus::Applied
            );
        }
        let t = get(&s, id);
        assert_eq!(t.state, cur.state, "audit edits must not change the state");
        assert_eq!(t.lease_token, cur.lease_token);
        let kinds: Vec<HistoryKind> = history(&s, id)
            .iter()
            .rev()
            .take(2)
            .map(|e| e.kind)
            .collect();
        assert!(kinds.contains(&HistoryKind::Annotated), "{id}: {kinds:?}");
    }
    let req = leasehold_core::ClaimRequest {
        owner: "w9".into(),
        queues: vec![],
        ttl: std::time::Duration::from_secs(60),
        limit: 100,
        max_attempts: None,
    };
    assert!(s.claim(&req, &ctx(1000)).unwrap().is_empty());
    assert!(s.reclaim(1, &ctx(1000)).unwrap().is_empty());
}
