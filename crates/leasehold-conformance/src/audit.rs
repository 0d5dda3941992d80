//! History and audit metadata: every change recorded in order with kind,
//! time, actor, states and token; notes and compensation results allowed
//! on terminal tasks; bad indexes rejected.

use leasehold_core::{CompensationStatus, Context, ErrorCode, HistoryKind, Store, TaskState};

use crate::claim::req;
use crate::support::*;
use crate::Harness;

/// A whole life: every entry's kind, time, actor, from/to state and token,
/// in order; heartbeats and no-op dispatches leave no entry.
pub fn history_records_every_change_in_order<H: Harness>(h: &H) {
    use HistoryKind as K;
    use TaskState as S;
    let s = h.fresh();
    task("t-1").create(&s, 0);
    s.dispatch("t-1", &ctx(1)).unwrap();
    s.dispatch("t-1", &ctx(2)).unwrap(); // no-op
    s.acquire_lease("t-1", "w1", at(60), &ctx(3)).unwrap();
    s.heartbeat("t-1", &fence("w1", 1), at(90), &ctx(4))
        .unwrap();
    s.release("t-1", &fence("w1", 1), &ctx(5)).unwrap();
    s.acquire_lease("t-1", "w2", at(20), &ctx(6)).unwrap();
    s.reclaim(5, &Context::new(at(30), "reaper")).unwrap();
    s.claim(&req("w3", &[], 60, 1), &ctx(31)).unwrap();
    s.annotate("t-1", "alice", "watching", &ctx(32)).unwrap();
    s.fail(
        "t-1",
        "broke",
        Some(comp("b")),
        Some(&fence("w3", 3)),
        &ctx(33),
    )
    .unwrap();
    s.record_compensation(
        "t-1",
        0,
        CompensationStatus::Applied,
        Some("gone"),
        &ctx(34),
    )
    .unwrap();
    s.annotate("t-1", "bob", "post mortem", &ctx(35)).unwrap();
    let mut c = get(&s, "t-1");
    c.terminal_reason = Some("broke: flaky disk".into());
    s.put(c, None, &Context::new(at(36), "importer")).unwrap();

    type Row<'a> = (K, i64, &'a str, Option<S>, S, u64);
    let expected: Vec<Row<'_>> = vec![
        (K::Created, 0, OPERATOR, None, S::Planned, 0),
        (
            K::Dispatched,
            1,
            OPERATOR,
            Some(S::Planned),
            S::Dispatched,
            0,
        ),
        (K::Leased, 3, "w1", Some(S::Dispatched), S::Running, 1),
        (K::Released, 5, "w1", Some(S::Running), S::Dispatched, 1),
        (K::Leased, 6, "w2", Some(S::Dispatched), S::Running, 2),
        (K::Expired, 30, "reaper", Some(S::Running), S::Dispatched, 2),
        (K::Leased, 31, "w3", Some(S::Dispatched), S::Running, 3),
        (K::Annotated, 32, "alice", Some(S::Running), S::Running, 3),
        (K::Failed, 33, "w3", Some(S::Running), S::Failed, 3),
        (
            K::CompensationRecorded,
            34,
            OPERATOR,
            Some(S::Failed),
            S::Failed,
            3,
        ),
        (K::Annotated, 35, "bob", Some(S::Failed), S::Failed, 3),
        (K::Updated, 36, "importer", Some(S::Failed), S::Failed, 3),
    ];
    let got = history(&s, "t-1");
    let got_rows: Vec<_> = got
        .iter()
        .map(|e| {
            (
                e.kind,
                e.at,
                e.actor.as_str(),
                e.from_state,
                e.to_state,
                e.lease_token,
            )
        })
        .collect();
    let want_rows: Vec<_> = expected
        .iter()
        .map(|(k, t, a, f, to, tok)| (*k, at(*t), *a, *f, *to, *tok))
        .collect();
    assert_eq!(got_rows, want_rows);
    assert!(got.iter().all(|e| e.task_id == "t-1"));
    assert_eq!(got[8].detail.as_deref(), Some("broke"));
    assert_eq!(got[7].detail.as_deref(), Some("watching"));
    let rec = got[9].detail.clone().unwrap_or_default();
    assert!(rec.contains("applied") && rec.contains("gone"), "{rec}");
    // History survives a reopen unchanged.
    let s = h.reopen(s);
    assert_eq!(history(&s, "t-1"), got);
}

/// Notes append in order with author and time, on any state.
pub fn annotate_appends_notes<H: Harness>(h: &H) {
    let s = h.fresh();
    create(&s, "t-1", 0);
    s.annotate("t-1", "alice", "first", &ctx(1)).unwrap();
    s.complete("t-1", None, None, &ctx(2)).unwrap();
    let t = s.annotate("t-1", "bob", "second", &ctx(3)).unwrap();
    assert_eq!(t.state, TaskState::Completed);
    let notes: Vec<(&str, &str, _)> = t
        .notes
        .iter()
        .map(|n| (n.author.as_str(), n.note.as_str(), n.at))
        .collect();
    assert_eq!(notes, [("alice", "first", at(1)), ("bob", "second", at(3))]);
    assert_eq!(get(&s, "t-1"), t);
    let inv = ErrorCode::InvalidInput;
    rejected(&s, "t-1", inv, &["note"], |s| {
        s.annotate("t-1", "bob", "", &ctx(4))
    });
    rejected(&s, "t-1", inv, &["author"], |s| {
        s.annotate("t-1", " ", "x", &ctx(4))
    });
}

/// Compensation results: status, detail and time recorded on any state; an
/// index out of range is `invalid_input`, unchanged.
pub fn record_compensation_rules<H: Harness>(h: &H) {
    let s = h.fresh();
    task("t-1")
        .compensation("c0")
        .compensation("c1")
        .create(&s, 0);
    let t = s
        .record_compensation(
            "t-1",
            1,
            CompensationStatus::Failed,
            Some("denied"),
            &ctx(1),
        )
        .unwrap();
    assert_eq!(t.compensations[1].status, CompensationStatus::Failed);
    assert_eq!(t.compensations[1].detail.as_deref(), Some("denied"));
    assert_eq!(t.compensations[1].updated_at, at(1));
    assert_eq!(t.compensations[0].status, CompensationStatus::Pending);
    assert_eq!(t.compensations[0].updated_at, at(0));
    s.compensate("t-1", Some("unwound"), None, &ctx(2)).unwrap();
    let t = s
        .record_compensation("t-1", 1, CompensationStatus::Applied, None, &ctx(3))
        .unwrap();
    assert_eq!(t.state, TaskState::Compensated);
    assert_eq!(t.compensations[1].status, CompensationStatus::Applied);
    assert_eq!(t.compensations[1].detail, None);
    let inv = ErrorCode::InvalidInput;
    rejected(&s, "t-1", inv, &["t-1", "index"], |s| {
        s.record_compensation("t-1", 2, CompensationStatus::Applied, None, &ctx(4))
    });
    create(&s, "t-none", 0);
    rejected(&s, "t-none", inv, &["t-none"], |s| {
        s.record_compensation("t-none", 0, CompensationStatus::Applied, None, &ctx(4))
    });
}
