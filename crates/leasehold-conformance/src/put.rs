//! `put`, the whole-task upsert (import, seed-compatible writes): insert
//! rules, compare-and-set, and the guards that keep a stale or careless copy
//! from clearing a lease, rewriting a token, or reviving a terminal task.

use leasehold_core::{ErrorCode, HistoryKind, Store, Task, TaskState};

use crate::support::*;
use crate::Harness;

/// An edit applied to a copy of a task before a `put`.
type Edit = Box<dyn Fn(&mut Task)>;

/// A planned task as `put` would receive it for an insert.
fn template<S: Store + ?Sized>(s: &S, id: &str) -> Task {
    // Build through create on a scratch id to get a well-formed task, then
    // rename; the scratch task stays in the store (harmless).
    let scratch = format!("tmpl-{id}");
    let mut t = create(s, &scratch, 0);
    t.task_id = id.to_string();
    t.saga_id = format!("saga-{id}");
    t
}

/// Insert: any non-leased state, version 1, created now, an `imported` entry.
pub fn insert_records_imported<H: Harness>(h: &H) {
    let s = h.fresh();
    for (i, state) in [
        TaskState::Planned,
        TaskState::Dispatched,
        TaskState::Completed,
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("ins-{i}");
        let mut t = template(&s, &id);
        t.state = state;
        t.version = 42;
        t.priority = 3;
        t.branch = Some("imported/branch".into());
        let stored = s.put(t.clone(), None, &ctx(5)).unwrap();
        assert_eq!(stored.state, state);
        assert_eq!(stored.version, 1);
        assert_eq!((stored.created_at, stored.updated_at), (at(5), at(5)));
        assert_eq!(stored.branch.as_deref(), Some("imported/branch"));
        assert_eq!(get(&s, &id), stored);
        let hist = history(&s, &id);
        assert_eq!(hist.len(), 1);
        assert_eq!(hist[0].kind, HistoryKind::Imported);
        assert_eq!(hist[0].from_state, None);
        assert_eq!(hist[0].to_state, state);
        assert_eq!(hist[0].actor, OPERATOR);
    }
    // A failed task with its compensation may be inserted.
    let mut f = template(&s, "ins-failed");
    f.state = TaskState::Failed;
    f.compensations = get(&s, "tmpl-ins-0").compensations;
    f.compensations.push(comp("b").into_record(at(0)));
    assert_eq!(s.put(f, Some(0), &ctx(6)).unwrap().state, TaskState::Failed);
}

/// Insert validation: bad ids, oversize metadata, a running task without a
/// lease, lease fields on a planned task, duplicate saga: rejected, nothing
/// inserted, the saga's owner unchanged.
pub fn insert_validated_like_create<H: Harness>(h: &H) {
    let s = h.fresh();
    let base = template(&s, "x");
    let inv = ErrorCode::InvalidInput;
    let cases: Vec<(&str, Edit)> = vec![
        ("bad id", Box::new(|t| t.task_id = "bad id".into())),
        ("bad saga", Box::new(|t| t.saga_id = "bad saga!".into())),
        ("bad queue", Box::new(|t| t.queue = String::new())),
        (
            "big metadata",
            Box::new(|t| t.metadata = serde_json::json!({"k": "x".repeat(64 * 1024)})),
        ),
        (
            "array metadata",
            Box::new(|t| t.metadata = serde_json::json!([1])),
        ),
        (
            "running without lease",
            Box::new(|t| t.state = TaskState::Running),
        ),
        (
            "planned with lease",
            Box::new(|t| {
                t.lease_owner = Some("w1".into());
                t.lease_token = 1;
                t.attempts = 1;
                t.lease_acquired_at = Some(at(0));
                t.lease_expires_at = Some(at(60));
            }),
        ),
    ];
    let before = s.counts().unwrap();
    for (what, edit) in cases {
        let mut t = base.clone();
        edit(&mut t);
        let e = expect_err(s.put(t, None, &ctx(1)), inv, &[]);
        // Counted rather than fetched: `get` of a malformed id may itself be
        // `invalid_input` over HTTP.
        assert_eq!(
            s.counts().unwrap(),
            before,
            "{what} inserted something: {e}"
        );
        assert_eq!(s.get("x").unwrap(), None, "{what}: {e}");
    }
    create(&s, "owner-of-saga", 0);
    let saga_owner = snapshot(&s, "owner-of-saga");
    let mut dup = base.clone();
    dup.saga_id = "saga-owner-of-saga".into();
    expect_err(
        s.put(dup, None, &ctx(1)),
        ErrorCode::AlreadyExists,
        &["saga-owner-of-saga"],
    );
    assert_eq!(s.get("x").unwrap(), None);
    assert_unchanged(&s, &saga_owner);
}

/// Update: fields change, version +1, created_at kept, an `updated` entry; an
/// identical put is a no-op (same version, no entry).
pub fn update_fields_and_noop<H: Harness>(h: &H) {
    let s = h.fresh();
    let t = create(&s, "t-1", 0);
    let mut c = t.clone();
    c.branch = Some("b2".into());
    c.priority = 9;
    c.queue = "q2".into();
    c.issue = Some(12);
    c.worktree = Some("wt".into());
    c.metadata = serde_json::json!({"a": [1, 2]});
    c.terminal_reason = Some("not terminal yet".into());
    c.created_at = at(999);
    let u = s.put(c.clone(), Some(1), &ctx(10)).unwrap();
    assert_eq!(u.version, 2);
    assert_eq!(u.created_at, at(0));
    assert_eq!(u.updated_at, at(10));
    assert_eq!((u.priority, u.queue.as_str()), (9, "q2"));
    assert_eq!(u.metadata, serde_json::json!({"a": [1, 2]}));
    assert_eq!(get(&s, "t-1"), u);
    let last = history(&s, "t-1").pop().unwrap();
    assert_eq!(last.kind, HistoryKind::Updated);
    assert_eq!(last.actor, OPERATOR);
    let before = snapshot(&s, "t-1");
    let same = s.put(u.clone(), None, &ctx(20)).unwrap();
    assert_eq!(same, u);
    assert_unchanged(&s, &before);
    // State moves that need no lease are allowed.
    let mut d = u.clone();
    d.state = TaskState::Dispatched;
    assert_eq!(
        s.put(d, Some(2), &ctx(21)).unwrap().state,
        TaskState::Dispatched
    );
}

/// Compare-and-set: a non-current version is `version_conflict`, unchanged;
/// on a missing task any version but 0 is `version_conflict`, nothing inserted.
pub fn version_conflicts<H: Harness>(h: &H) {
    let s = h.fresh();
    let t = create(&s, "t-1", 0);
    s.annotate("t-1", "a", "n", &ctx(1)).unwrap(); // version 2
    let mut c = get(&s, "t-1");
    c.branch = Some("x".into());
    let vc = ErrorCode::VersionConflict;
    rejected(&s, "t-1", vc, &["t-1"], |s| {
        s.put(c.clone(), Some(t.version), &ctx(2))
    });
    rejected(&s, "t-1", vc, &["t-1"], |s| {
        s.put(c.clone(), Some(3), &ctx(2))
    });
    assert_eq!(s.put(c, Some(2), &ctx(2)).unwrap().version, 3);
    let mut n = t.clone();
    n.task_id = "t-new".into();
    n.saga_id = "saga-t-new".into();
    expect_err(s.put(n, Some(3), &ctx(3)), vc, &["t-new"]);
    assert_eq!(s.get("t-new").unwrap(), None);
}

/// Lease fields (owner, token, times, attempts) belong to the lease
/// operations: a put changing any of them is `lease_conflict` — also on a
/// task without an active lease, so a token can never go backwards.
pub fn lease_fields_are_not_put<H: Harness>(h: &H) {
    let s = h.fresh();
    leased(&s, "t-1", "w1", 0, 60);
    s.release("t-1", &fence("w1", 1), &ctx(1)).unwrap();
    let cur = get(&s, "t-1");
    let lc = ErrorCode::LeaseConflict;
    let edits: Vec<Edit> = vec![
        Box::new(|t| t.lease_token = 0),
        Box::new(|t| t.lease_token = 7),
        Box::new(|t| t.attempts = 0),
        Box::new(|t| t.last_heartbeat_at = None),
    ];
    for edit in edits {
        let mut c = cur.clone();
        edit(&mut c);
        rejected(&s, "t-1", lc, &["t-1"], |s| s.put(c.clone(), None, &ctx(2)));
    }
    let active = leased(&s, "t-2", "w1", 0, 60);
    let edits: Vec<Edit> = vec![
        Box::new(|t| t.lease_owner = Some("w2".into())),
        Box::new(|t| t.lease_expires_at = Some(at(600))),
        Box::new(|t| t.lease_token = 2),
        Box::new(|t| {
            t.state = TaskState::Dispatched;
            t.lease_owner = None;
            t.lease_acquired_at = None;
            t.lease_expires_at = None;
        }),
    ];
    for edit in edits {
        let mut c = active.clone();
        edit(&mut c);
        rejected(&s, "t-2", lc, &["t-2"], |s| s.put(c.clone(), None, &ctx(2)));
    }
}

/// An active lease pins the state: a put moving it anywhere (even terminal)
/// is `lease_conflict`; other fields may change under the lease. Once the
/// lease expired, put may end the task but not send it back to the pool.
pub fn active_lease_pins_state<H: Harness>(h: &H) {
    let s = h.fresh();
    let t = leased(&s, "t-1", "w1", 0, 60);
    let lc = ErrorCode::LeaseConflict;
    for state in [
        TaskState::Planned,
        TaskState::Dispatched,
        TaskState::Completed,
    ] {
        let mut c = t.clone();
        c.state = state;
        rejected(&s, "t-1", lc, &["t-1"], |s| {
            s.put(c.clone(), None, &ctx(10))
        });
    }
    let mut c = t.clone();
    c.branch = Some("renamed".into());
    let u = s.put(c, Some(t.version), &ctx(10)).unwrap();
    assert_eq!(u.lease_owner.as_deref(), Some("w1"));
    assert_eq!(u.state, TaskState::Running);
    let mut c = u.clone();
    c.state = TaskState::Dispatched;
    rejected(&s, "t-1", lc, &["t-1"], |s| {
        s.put(c.clone(), None, &ctx(100))
    });
    let mut c = u.clone();
    c.state = TaskState::Compensated;
    let done = s.put(c, None, &ctx(100)).unwrap();
    assert_eq!(done.state, TaskState::Compensated);
    assert_eq!(done.lease_owner.as_deref(), Some("w1"));
}

/// A put moving a task's saga id to one that is taken is `already_exists`;
/// both tasks unchanged.
pub fn update_saga_must_stay_unique<H: Harness>(h: &H) {
    let s = h.fresh();
    create(&s, "t-1", 0);
    create(&s, "t-2", 0);
    let other = snapshot(&s, "t-2");
    let mut c = get(&s, "t-1");
    c.saga_id = "saga-t-2".into();
    rejected(&s, "t-1", ErrorCode::AlreadyExists, &["saga-t-2"], |s| {
        s.put(c.clone(), None, &ctx(1))
    });
    assert_unchanged(&s, &other);
    let mut c = get(&s, "t-1");
    c.saga_id = "saga-free".into();
    assert_eq!(s.put(c, None, &ctx(2)).unwrap().saga_id, "saga-free");
    // The old saga id is free again.
    task("t-3").saga("saga-t-1").create(&s, 3);
}
