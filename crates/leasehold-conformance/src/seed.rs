//! The 18 seed scenarios of `SEED-SCENARIOS.md` (the Python seed's tests),
//! restated against the [`Store`] seam. Numbered like
//! the document so a failure points at the scenario it breaks.

use leasehold_core::{
    CompensationStatus, ErrorCode, HistoryKind, ListFilter, Store, TaskState, Timestamp,
};

use crate::support::*;
use crate::Harness;

/// 1. A task written and read back after closing and reopening the store is
///    equal field for field, compensations and lease included.
pub fn s01_round_trip_after_reopen<H: Harness>(h: &H) {
    let s = h.fresh();
    task("t-rich")
        .saga("saga-rich")
        .queue("builds")
        .priority(-7)
        .issue(184)
        .branch("feature/leases")
        .worktree("../wt/leases")
        .metadata(serde_json::json!({"pr": 184, "labels": ["a", "b"], "nested": {"x": null}}))
        .compensation("feature/leases")
        .compensation("../wt/leases")
        .create(&s, 0);
    s.acquire_lease("t-rich", "worker-1", at_micros(60, 250), &ctx(1))
        .unwrap();
    s.heartbeat(
        "t-rich",
        &fence("worker-1", 1),
        at_micros(120, 999_999),
        &ctx(30),
    )
    .unwrap();
    s.annotate("t-rich", "alice", "looks fine", &ctx(31))
        .unwrap();
    s.record_compensation(
        "t-rich",
        1,
        CompensationStatus::Applied,
        Some("removed"),
        &ctx(32),
    )
    .unwrap();
    create(&s, "t-plain", 2);
    let before_rich = get(&s, "t-rich");
    let before_plain = get(&s, "t-plain");
    let before_hist = history(&s, "t-rich");
    let before_list = s.list(&ListFilter::default(), None, None).unwrap();
    assert_eq!(before_rich.compensations.len(), 2);
    assert_eq!(before_rich.lease_owner.as_deref(), Some("worker-1"));

    let s = h.reopen(s);
    assert_eq!(get(&s, "t-rich"), before_rich);
    assert_eq!(
        serde_json::to_vec(&get(&s, "t-rich")).unwrap(),
        serde_json::to_vec(&before_rich).unwrap()
    );
    assert_eq!(get(&s, "t-plain"), before_plain);
    assert_eq!(history(&s, "t-rich"), before_hist);
    assert_eq!(
        s.list(&ListFilter::default(), None, None).unwrap(),
        before_list
    );
}

/// 2. Getting a missing id after reopen returns nothing (`not_found` for history).
pub fn s02_missing_after_reopen_is_none<H: Harness>(h: &H) {
    let s = h.fresh();
    create(&s, "t-1", 0);
    let s = h.reopen(s);
    assert_eq!(s.get("t-missing").unwrap(), None);
    expect_err(s.history("t-missing"), ErrorCode::NotFound, &["t-missing"]);
    expect_err(s.require("t-missing"), ErrorCode::NotFound, &["t-missing"]);
    assert!(s.get("t-1").unwrap().is_some());
}

/// 3. `list_in_flight` returns only non-terminal tasks, in creation order
///    (an insertion sequence, not the timestamp), shaped like `get`.
pub fn s03_in_flight_is_non_terminal_in_creation_order<H: Harness>(h: &H) {
    let s = h.fresh();
    // Created first but with the latest timestamp: order is by insertion.
    create(&s, "z-running", 100);
    create(&s, "y-done", 50);
    create(&s, "x-planned", 10);
    task("w-failed").compensation("b").create(&s, 5);
    create(&s, "v-dispatched", 1);
    s.acquire_lease("z-running", "w1", at(500), &ctx(110))
        .unwrap();
    s.complete("y-done", Some("ok"), None, &ctx(111)).unwrap();
    s.fail("w-failed", "broke", None, None, &ctx(112)).unwrap();
    s.dispatch("v-dispatched", &ctx(113)).unwrap();
    let in_flight = s.list_in_flight().unwrap();
    assert_eq!(ids(&in_flight), ["z-running", "x-planned", "v-dispatched"]);
    for t in &in_flight {
        assert_eq!(*t, get(&s, &t.task_id), "list_in_flight and get disagree");
    }
}

/// 4. Lease race: A reads, B acquires, A's acquire gets `lease_conflict`;
///    the stored owner is B with B's heartbeat time.
pub fn s04_lease_race_loser_gets_conflict<H: Harness>(h: &H) {
    let s = h.fresh();
    create(&s, "t-1", 0);
    let seen_by_a = get(&s, "t-1");
    assert_eq!(seen_by_a.lease_owner, None);
    let b = h.another(&s);
    b.acquire_lease("t-1", "worker-b", at(60), &ctx(1)).unwrap();
    rejected(&s, "t-1", ErrorCode::LeaseConflict, &["t-1"], |s| {
        s.acquire_lease("t-1", "worker-a", at(90), &ctx(2))
    });
    // The same owner cannot re-acquire an active lease either.
    rejected(&s, "t-1", ErrorCode::LeaseConflict, &["t-1"], |s| {
        s.acquire_lease("t-1", "worker-b", at(90), &ctx(2))
    });
    let t = get(&s, "t-1");
    assert_eq!(t.lease_owner.as_deref(), Some("worker-b"));
    assert_eq!(t.last_heartbeat_at, Some(at(1)));
    assert_eq!(t.lease_token, 1);
}

/// 5. Created: `planned`, no owner, no expiry. After `acquire_lease`:
///    `running`, owner, expiry, and `last_heartbeat_at` = acquisition time.
pub fn s05_acquire_sets_owner_expiry_and_heartbeat<H: Harness>(h: &H) {
    let s = h.fresh();
    let t = create(&s, "t-1", 0);
    assert_eq!(t.state, TaskState::Planned);
    assert_eq!(t.lease_owner, None);
    assert_eq!(t.lease_expires_at, None);
    assert_eq!(t.last_heartbeat_at, None);
    assert_eq!((t.lease_token, t.attempts, t.version), (0, 0, 1));
    assert_eq!((t.created_at, t.updated_at), (at(0), at(0)));
    assert_eq!(t.queue, "default");
    assert_eq!(t.priority, 0);
    assert_eq!(t.metadata, serde_json::json!({}));
    assert_eq!(get(&s, "t-1"), t);

    let t = s
        .acquire_lease("t-1", "worker-1", at(70), &ctx(10))
        .unwrap();
    assert_eq!(t.state, TaskState::Running);
    assert_eq!(t.lease_owner.as_deref(), Some("worker-1"));
    assert_eq!(t.lease_expires_at, Some(at(70)));
    assert_eq!(t.lease_acquired_at, Some(at(10)));
    assert_eq!(t.last_heartbeat_at, Some(at(10)));
    assert_eq!((t.lease_token, t.attempts, t.version), (1, 1, 2));
    assert_eq!(t.updated_at, at(10));
    assert_eq!(get(&s, "t-1"), t);
}

/// 6. Creating a task whose id (or saga id) exists fails with
///    `already_exists` and leaves the first one unchanged.
pub fn s06_duplicate_id_or_saga_leaves_first_unchanged<H: Harness>(h: &H) {
    let s = h.fresh();
    task("t-1").saga("saga-1").branch("b1").create(&s, 0);
    s.acquire_lease("t-1", "w1", at(60), &ctx(1)).unwrap();
    let before = snapshot(&s, "t-1");
    let dup_id = task("t-1").saga("saga-2").branch("other").build();
    expect_err(
        s.create(dup_id, &ctx(2)),
        ErrorCode::AlreadyExists,
        &["t-1"],
    );
    assert_unchanged(&s, &before);
    let dup_saga = task("t-2").saga("saga-1").build();
    expect_err(
        s.create(dup_saga, &ctx(3)),
        ErrorCode::AlreadyExists,
        &["saga-1"],
    );
    assert_unchanged(&s, &before);
    assert_eq!(
        s.get("t-2").unwrap(),
        None,
        "a rejected create must not insert"
    );
    let total: u64 = s.counts().unwrap().values().sum();
    assert_eq!(total, 1);
    // Nothing was reserved by the rejected calls.
    task("t-2").saga("saga-2").create(&s, 4);
}

/// 7. A heartbeat before expiry extends `lease_expires_at` and sets
///    `last_heartbeat_at` (no history entry).
pub fn s07_heartbeat_extends_lease<H: Harness>(h: &H) {
    let s = h.fresh();
    let t = leased(&s, "t-1", "w1", 0, 60);
    let hist = history(&s, "t-1").len();
    let hb = s
        .heartbeat("t-1", &fence("w1", 1), at(120), &ctx(30))
        .unwrap();
    assert_eq!(hb.lease_expires_at, Some(at(120)));
    assert_eq!(hb.last_heartbeat_at, Some(at(30)));
    assert_eq!(hb.lease_acquired_at, Some(at(0)));
    assert_eq!(hb.lease_token, 1);
    assert_eq!(hb.version, t.version + 1);
    assert_eq!(get(&s, "t-1"), hb);
    assert_eq!(history(&s, "t-1").len(), hist, "heartbeats are not history");
    // Just before expiry still works.
    let hb2 = s
        .heartbeat(
            "t-1",
            &fence("w1", 1),
            at(200),
            &ctx_at_micros(119, 999_999),
        )
        .unwrap();
    assert_eq!(hb2.lease_expires_at, Some(at(200)));
}

fn ctx_at_micros(secs: i64, micros: i64) -> leasehold_core::Context {
    leasehold_core::Context::new(at_micros(secs, micros), OPERATOR)
}

/// 8. Adversarial heartbeats, each `lease_conflict` with the task unchanged:
///    wrong owner, stale token, no active lease, expired, not extending.
pub fn s08_adversarial_heartbeats_rejected<H: Harness>(h: &H) {
    let s = h.fresh();
    leased(&s, "t-1", "w1", 0, 60);
    s.release("t-1", &fence("w1", 1), &ctx(10)).unwrap();
    s.acquire_lease("t-1", "w1", at(80), &ctx(20)).unwrap(); // token 2
    let hb = |f: leasehold_core::Fence, exp: i64, now: i64| {
        move |s: &H::S| s.heartbeat("t-1", &f, at(exp), &ctx(now))
    };
    rejected(
        &s,
        "t-1",
        ErrorCode::LeaseConflict,
        &["t-1", "w1"],
        hb(fence("w2", 2), 100, 30),
    );
    rejected(
        &s,
        "t-1",
        ErrorCode::LeaseConflict,
        &["t-1", "stale"],
        hb(fence("w1", 1), 100, 30),
    );
    rejected(
        &s,
        "t-1",
        ErrorCode::LeaseConflict,
        &["t-1"],
        hb(fence("w1", 3), 100, 30),
    );
    rejected(
        &s,
        "t-1",
        ErrorCode::LeaseConflict,
        &["t-1", "extend"],
        hb(fence("w1", 2), 80, 30),
    );
    rejected(
        &s,
        "t-1",
        ErrorCode::LeaseConflict,
        &["t-1", "extend"],
        hb(fence("w1", 2), 70, 30),
    );
    rejected(
        &s,
        "t-1",
        ErrorCode::LeaseConflict,
        &["t-1", "expired"],
        hb(fence("w1", 2), 200, 80),
    );
    rejected(
        &s,
        "t-1",
        ErrorCode::LeaseConflict,
        &["t-1", "expired"],
        hb(fence("w1", 2), 200, 81),
    );
    // No active lease: never leased, and released.
    create(&s, "t-2", 0);
    rejected(
        &s,
        "t-2",
        ErrorCode::LeaseConflict,
        &["t-2", "no active lease"],
        |s| s.heartbeat("t-2", &fence("w1", 0), at(100), &ctx(30)),
    );
    leased(&s, "t-3", "w1", 0, 60);
    s.release("t-3", &fence("w1", 1), &ctx(5)).unwrap();
    rejected(
        &s,
        "t-3",
        ErrorCode::LeaseConflict,
        &["t-3", "no active lease"],
        |s| s.heartbeat("t-3", &fence("w1", 1), at(100), &ctx(30)),
    );
    // The valid heartbeat still works afterwards: the rejections changed nothing.
    s.heartbeat("t-1", &fence("w1", 2), at(100), &ctx(30))
        .unwrap();
}

/// 9. Writing back a stale copy (read before the lease was taken) does not
///    clear the active lease: `lease_conflict`, lease unchanged.
pub fn s09_stale_copy_does_not_clear_lease<H: Harness>(h: &H) {
    let s = h.fresh();
    let copy = create(&s, "t-1", 0);
    s.acquire_lease("t-1", "w1", at(60), &ctx(1)).unwrap();
    rejected(&s, "t-1", ErrorCode::LeaseConflict, &["t-1"], |s| {
        s.put(copy.clone(), None, &ctx(2))
    });
    let mut edited = copy.clone();
    edited.branch = Some("sneaky".into());
    rejected(&s, "t-1", ErrorCode::LeaseConflict, &["t-1"], |s| {
        s.put(edited.clone(), None, &ctx(2))
    });
    // With its (old) version as compare-and-set, the copy is a version conflict.
    rejected(&s, "t-1", ErrorCode::VersionConflict, &["t-1"], |s| {
        s.put(copy.clone(), Some(copy.version), &ctx(2))
    });
    // Also after expiry: a stale copy never rewrites the lease record.
    rejected(&s, "t-1", ErrorCode::LeaseConflict, &["t-1"], |s| {
        s.put(copy.clone(), None, &ctx(100))
    });
    let t = get(&s, "t-1");
    assert_eq!(t.lease_owner.as_deref(), Some("w1"));
    assert_eq!(t.lease_expires_at, Some(at(60)));
}

/// 10. Heartbeat race: A's lease expired, B reclaimed it; A's late heartbeat
///     gets `lease_conflict`; owner stays B.
pub fn s10_late_heartbeat_after_reclaim_loses<H: Harness>(h: &H) {
    let s = h.fresh();
    // Via reclaim, then acquire.
    leased(&s, "t-1", "worker-a", 0, 30);
    let reclaimed = s.reclaim(5, &ctx(40)).unwrap();
    assert_eq!(ids(&reclaimed), ["t-1"]);
    s.acquire_lease("t-1", "worker-b", at(100), &ctx(41))
        .unwrap();
    rejected(&s, "t-1", ErrorCode::LeaseConflict, &["t-1"], |s| {
        s.heartbeat("t-1", &fence("worker-a", 1), at(200), &ctx(42))
    });
    assert_eq!(get(&s, "t-1").lease_owner.as_deref(), Some("worker-b"));
    // Via claim of the expired lease directly.
    leased(&s, "t-2", "worker-a", 0, 30);
    let claimed = s
        .claim(
            &leasehold_core::ClaimRequest {
                owner: "worker-b".into(),
                queues: vec![],
                ttl: std::time::Duration::from_secs(60),
                limit: 1,
                max_attempts: None,
            },
            &ctx(45),
        )
        .unwrap();
    assert_eq!(ids(&claimed), ["t-2"]);
    assert_eq!(claimed[0].lease_token, 2);
    rejected(&s, "t-2", ErrorCode::LeaseConflict, &["t-2"], |s| {
        s.heartbeat("t-2", &fence("worker-a", 1), at(200), &ctx(46))
    });
    assert_eq!(get(&s, "t-2").lease_owner.as_deref(), Some("worker-b"));
}

/// 11. `list_stale(now)` returns exactly the non-terminal tasks whose lease
///     expired at or before `now`, oldest expiry first.
pub fn s11_list_stale_exactly_expired_non_terminal<H: Harness>(h: &H) {
    let s = h.fresh();
    leased(&s, "a-expires-at-now", "w1", 0, 100);
    leased(&s, "b-fresh", "w1", 0, 101);
    leased(&s, "c-expired-earlier", "w1", 0, 50);
    leased(&s, "d-terminal", "w1", 0, 10);
    s.complete("d-terminal", None, None, &ctx(20)).unwrap();
    create(&s, "e-planned", 0);
    leased(&s, "f-released", "w1", 0, 10);
    s.release("f-released", &fence("w1", 1), &ctx(5)).unwrap();
    let stale = s.list_stale(at(100)).unwrap();
    assert_eq!(ids(&stale), ["c-expired-earlier", "a-expires-at-now"]);
    for t in &stale {
        assert_eq!(*t, get(&s, &t.task_id));
    }
    assert_eq!(
        ids(&s.list_stale(at_micros(99, 999_999)).unwrap()),
        ["c-expired-earlier"]
    );
    assert!(s.list_stale(at(49)).unwrap().is_empty());
}

/// 12. A completed task cannot be leased again: `terminal`, naming the task.
pub fn s12_completed_cannot_be_leased<H: Harness>(h: &H) {
    let s = h.fresh();
    leased(&s, "t-done", "w1", 0, 60);
    s.complete("t-done", Some("shipped"), Some(&fence("w1", 1)), &ctx(10))
        .unwrap();
    rejected(&s, "t-done", ErrorCode::Terminal, &["t-done"], |s| {
        s.acquire_lease("t-done", "w2", at(100), &ctx(20))
    });
    rejected(&s, "t-done", ErrorCode::Terminal, &["t-done"], |s| {
        s.acquire_lease("t-done", "w1", at(100), &ctx(70))
    });
    let claimed = s
        .claim(
            &leasehold_core::ClaimRequest {
                owner: "w2".into(),
                queues: vec![],
                ttl: std::time::Duration::from_secs(60),
                limit: 10,
                max_attempts: None,
            },
            &ctx(80),
        )
        .unwrap();
    assert!(claimed.is_empty(), "claim leased a completed task");
}

/// 13. Each terminal marker stores its state and reason; every later lease,
///     heartbeat, release or state change is rejected with `terminal`.
pub fn s13_terminal_markers_store_state_and_reason<H: Harness>(h: &H) {
    let s = h.fresh();
    let cases = [
        ("t-complete", TaskState::Completed, HistoryKind::Completed),
        ("t-fail", TaskState::Failed, HistoryKind::Failed),
        (
            "t-compensate",
            TaskState::Compensated,
            HistoryKind::Compensated,
        ),
        (
            "t-quarantine",
            TaskState::Quarantined,
            HistoryKind::Quarantined,
        ),
    ];
    for (id, state, kind) in cases {
        leased(&s, id, "w1", 0, 60);
        let f = fence("w1", 1);
        let reason = format!("reason for {id}");
        let t = match state {
            TaskState::Completed => s.complete(id, Some(&reason), Some(&f), &ctx(10)),
            TaskState::Failed => s.fail(id, &reason, Some(comp("b")), Some(&f), &ctx(10)),
            TaskState::Compensated => s.compensate(id, Some(&reason), Some(&f), &ctx(10)),
            _ => s.quarantine(id, &reason, Some(&f), &ctx(10)),
        }
        .unwrap();
        assert_eq!(t.state, state);
        assert_eq!(t.terminal_reason.as_deref(), Some(reason.as_str()));
        // Terminal transitions keep the last lease for the record.
        assert_eq!(t.lease_owner.as_deref(), Some("w1"));
        assert_eq!(t.lease_token, 1);
        assert_eq!(t.lease_expires_at, Some(at(60)));
        assert_eq!(get(&s, id), t);
        let last = history(&s, id).pop().unwrap();
        assert_eq!(last.kind, kind);
        assert_eq!(last.actor, "w1");
        assert_eq!(last.to_state, state);
        assert_eq!(last.from_state, Some(TaskState::Running));

        let term = ErrorCode::Terminal;
        rejected(&s, id, term, &[id], |s| {
            s.acquire_lease(id, "w2", at(100), &ctx(20))
        });
        rejected(&s, id, term, &[id], |s| {
            s.heartbeat(id, &f, at(100), &ctx(20))
        });
        rejected(&s, id, term, &[id], |s| s.release(id, &f, &ctx(20)));
        rejected(&s, id, term, &[id], |s| s.dispatch(id, &ctx(20)));
        rejected(&s, id, term, &[id], |s| {
            s.complete(id, None, None, &ctx(20))
        });
        rejected(&s, id, term, &[id], |s| {
            s.compensate(id, None, None, &ctx(20))
        });
        rejected(&s, id, term, &[id], |s| {
            s.fail(id, "again", Some(comp("x")), None, &ctx(20))
        });
        rejected(&s, id, term, &[id], |s| {
            s.quarantine(id, "again", None, &ctx(20))
        });
        let mut moved = get(&s, id);
        moved.state = TaskState::Dispatched;
        moved.lease_owner = None;
        moved.lease_acquired_at = None;
        moved.lease_expires_at = None;
        rejected(&s, id, term, &[id], |s| {
            s.put(moved.clone(), None, &ctx(20))
        });
    }
    // Past every expiry, reclaim leaves terminal tasks alone.
    assert!(s.list_stale(at(1000)).unwrap().is_empty());
    assert!(s.reclaim(1, &ctx(1000)).unwrap().is_empty());
}

/// 14. A terminal task cannot be changed (state, branch, anything) except its
///     audit metadata: a new terminal reason, notes, compensation results.
pub fn s14_terminal_only_audit_metadata_changes<H: Harness>(h: &H) {
    let s = h.fresh();
    task("t-1").branch("b1").compensation("b1").create(&s, 0);
    s.complete("t-1", Some("done"), None, &ctx(1)).unwrap();
    let base = get(&s, "t-1");
    let term = ErrorCode::Terminal;
    let mut c = base.clone();
    c.branch = Some("b2".into());
    rejected(&s, "t-1", term, &["t-1"], |s| {
        s.put(c.clone(), None, &ctx(2))
    });
    let mut c = base.clone();
    c.state = TaskState::Planned;
    rejected(&s, "t-1", term, &["t-1"], |s| {
        s.put(c.clone(), None, &ctx(2))
    });
    let mut c = base.clone();
    c.metadata = serde_json::json!({"k": 1});
    rejected(&s, "t-1", term, &["t-1"], |s| {
        s.put(c.clone(), None, &ctx(2))
    });
    let mut c = base.clone();
    c.priority = 9;
    c.terminal_reason = Some("new".into());
    rejected(&s, "t-1", term, &["t-1"], |s| {
        s.put(c.clone(), None, &ctx(2))
    });
    let mut c = base.clone();
    c.compensations[0].status = CompensationStatus::Applied;
    rejected(&s, "t-1", term, &["t-1"], |s| {
        s.put(c.clone(), None, &ctx(2))
    });

    // Audit metadata: terminal reason via put, a note, a compensation result.
    let mut c = base.clone();
    c.terminal_reason = Some("done, and verified".into());
    let t = s.put(c, Some(base.version), &ctx(3)).unwrap();
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.terminal_reason.as_deref(), Some("done, and verified"));
    assert_eq!(t.version, base.version + 1);
    let t = s.annotate("t-1", "alice", "checked", &ctx(4)).unwrap();
    assert_eq!(t.notes.len(), 1);
    let t = s
        .record_compensation(
            "t-1",
            0,
            CompensationStatus::Applied,
            Some("deleted"),
            &ctx(5),
        )
        .unwrap();
    assert_eq!(t.compensations[0].status, CompensationStatus::Applied);
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.version, base.version + 3);
    let kinds: Vec<HistoryKind> = history(&s, "t-1").iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            HistoryKind::Created,
            HistoryKind::Completed,
            HistoryKind::Updated,
            HistoryKind::Annotated,
            HistoryKind::CompensationRecorded
        ]
    );
}

/// 15. A write racing a terminal transition loses: the task stays terminal
///     with the terminal transition's reason.
pub fn s15_write_racing_terminal_loses<H: Harness>(h: &H) {
    let s = h.fresh();
    let copy = leased(&s, "t-1", "w1", 0, 60);
    let op = h.another(&s);
    op.complete("t-1", Some("superseded by operator"), None, &ctx(10))
        .unwrap();
    let f = fence("w1", 1);
    let term = ErrorCode::Terminal;
    rejected(&s, "t-1", term, &["t-1"], |s| {
        s.heartbeat("t-1", &f, at(100), &ctx(11))
    });
    rejected(&s, "t-1", term, &["t-1"], |s| {
        s.release("t-1", &f, &ctx(11))
    });
    rejected(&s, "t-1", term, &["t-1"], |s| {
        s.complete("t-1", Some("worker done"), Some(&f), &ctx(11))
    });
    rejected(&s, "t-1", term, &["t-1"], |s| {
        s.fail("t-1", "worker failed", Some(comp("b")), Some(&f), &ctx(11))
    });
    rejected(&s, "t-1", term, &["t-1"], |s| {
        s.put(copy.clone(), None, &ctx(11))
    });
    let t = get(&s, "t-1");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.terminal_reason.as_deref(), Some("superseded by operator"));
}

/// 16. Failing keeps existing compensations; failing with none is rejected
///     (`lease_conflict` naming "compensation") unless the call supplies one.
///     Writing a `failed` task with none directly is rejected the same way.
pub fn s16_fail_requires_compensation<H: Harness>(h: &H) {
    let s = h.fresh();
    task("t-has").compensation("b-has").create(&s, 0);
    let t = s.fail("t-has", "broke", None, None, &ctx(1)).unwrap();
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.compensations.len(), 1);
    assert_eq!(t.compensations[0].target, "b-has");
    assert_eq!(t.compensations[0].updated_at, at(0));

    leased(&s, "t-none", "w1", 0, 60);
    let lc = ErrorCode::LeaseConflict;
    rejected(&s, "t-none", lc, &["t-none", "compensation"], |s| {
        s.fail("t-none", "broke", None, Some(&fence("w1", 1)), &ctx(2))
    });
    rejected(&s, "t-none", lc, &["t-none", "compensation"], |s| {
        s.fail("t-none", "broke", None, None, &ctx(2))
    });
    let t = s
        .fail(
            "t-none",
            "broke",
            Some(comp("b-new")),
            Some(&fence("w1", 1)),
            &ctx(3),
        )
        .unwrap();
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.terminal_reason.as_deref(), Some("broke"));
    assert_eq!(t.compensations.len(), 1);
    assert_eq!(t.compensations[0].target, "b-new");
    assert_eq!(t.compensations[0].status, CompensationStatus::Pending);
    assert_eq!(t.compensations[0].updated_at, at(3));
    assert_eq!(get(&s, "t-none"), t);

    // put: update to failed without a compensation.
    let planned = create(&s, "t-put", 0);
    let mut failed = planned.clone();
    failed.state = TaskState::Failed;
    failed.terminal_reason = Some("broke".into());
    rejected(&s, "t-put", lc, &["t-put", "compensation"], |s| {
        s.put(failed.clone(), None, &ctx(4))
    });
    // put: insert of a failed task without a compensation.
    let mut fresh = failed.clone();
    fresh.task_id = "t-put-new".into();
    fresh.saga_id = "saga-t-put-new".into();
    expect_err(
        s.put(fresh, None, &ctx(5)),
        lc,
        &["t-put-new", "compensation"],
    );
    assert_eq!(s.get("t-put-new").unwrap(), None);
}

/// 17. After reopen, the lease (owner, token, expiry, heartbeat) and the
///     compensations are preserved, and the lease is still usable.
pub fn s17_lease_and_compensations_survive_reopen<H: Harness>(h: &H) {
    let s = h.fresh();
    task("t-1")
        .compensation("c0")
        .compensation("c1")
        .create(&s, 0);
    s.acquire_lease("t-1", "w1", at(60), &ctx(1)).unwrap();
    s.release("t-1", &fence("w1", 1), &ctx(2)).unwrap();
    s.acquire_lease("t-1", "w1", at(60), &ctx(3)).unwrap();
    s.heartbeat("t-1", &fence("w1", 2), at_micros(120, 7), &ctx(30))
        .unwrap();
    s.record_compensation(
        "t-1",
        1,
        CompensationStatus::Failed,
        Some("no perms"),
        &ctx(31),
    )
    .unwrap();
    let before = get(&s, "t-1");
    let s = h.reopen(s);
    let after = get(&s, "t-1");
    assert_eq!(after, before);
    assert_eq!(after.lease_owner.as_deref(), Some("w1"));
    assert_eq!(after.lease_token, 2);
    assert_eq!(after.lease_expires_at, Some(at_micros(120, 7)));
    assert_eq!(after.last_heartbeat_at, Some(at(30)));
    assert_eq!(after.compensations[1].status, CompensationStatus::Failed);
    assert_eq!(after.compensations[1].detail.as_deref(), Some("no perms"));
    // Still fenced by the same lease after reopen; the token keeps rising.
    s.heartbeat("t-1", &fence("w1", 2), at(200), &ctx(40))
        .unwrap();
    s.release("t-1", &fence("w1", 2), &ctx(41)).unwrap();
    let t = s.acquire_lease("t-1", "w2", at(300), &ctx(42)).unwrap();
    assert_eq!(t.lease_token, 3);
}

/// 18. Timestamps with any offset are stored and compared in UTC:
///     10:00+02:00 equals 08:00Z; no offset is `invalid_input`.
pub fn s18_timestamps_normalised_to_utc<H: Harness>(h: &H) {
    let p = |s: &str| Timestamp::parse(s).unwrap();
    assert_eq!(p("2026-06-03T10:00:00+02:00"), p("2026-06-03T08:00:00Z"));
    assert_eq!(p("2026-06-03T12:00:00+02:00"), at(0));
    assert_eq!(p("2026-06-03T05:30:00-04:30"), at(0));
    expect_err(
        Timestamp::parse("2026-06-03T10:00:00"),
        ErrorCode::InvalidInput,
        &["offset"],
    );
    let s = h.fresh();
    create(&s, "t-1", 0);
    let ctx_plus2 = leasehold_core::Context::new(p("2026-06-03T12:00:00+02:00"), "op");
    let t = s
        .acquire_lease(
            "t-1",
            "w1",
            p("2026-06-03T12:01:00.000001+02:00"),
            &ctx_plus2,
        )
        .unwrap();
    assert_eq!(t.lease_acquired_at, Some(at(0)));
    assert_eq!(t.lease_expires_at, Some(at_micros(60, 1)));
    let s = h.reopen(s);
    let t = get(&s, "t-1");
    assert_eq!(t.lease_expires_at, Some(at_micros(60, 1)));
    assert_eq!(
        serde_json::to_value(t.lease_expires_at).unwrap(),
        serde_json::json!("2026-06-03T10:01:00.000001Z")
    );
    // Compared as instants, not text: 10:01:00Z is before 12:01:00.000001+02:00.
    assert!(s.list_stale(p("2026-06-03T10:01:00Z")).unwrap().is_empty());
    assert_eq!(
        ids(&s.list_stale(p("2026-06-03T12:01:00.000001+02:00")).unwrap()),
        ["t-1"]
    );
    assert_eq!(
        ids(&s.list_stale(p("2026-06-03T06:01:00.000001-04:00")).unwrap()),
        ["t-1"]
    );
}
