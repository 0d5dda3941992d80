//! Batch calls (`apply_many`, `heartbeat_many`, `complete_many`): one answer
//! per item, in order, exactly as if each item had been applied in turn; a
//! rejected item changes nothing and does not affect the others.

use leasehold_core::{BatchItem, Command, ErrorCode, Fence, HistoryKind, Store, TaskState};

use crate::support::*;
use crate::Harness;

fn item(task_id: &str, command: Command) -> BatchItem {
    BatchItem {
        task_id: task_id.to_string(),
        command,
    }
}

/// Mixed items: valid and rejected ones interleaved, and later items on the
/// same task seeing the effect of earlier ones.
pub fn apply_many_judges_each_item<H: Harness>(h: &H) {
    let s = h.fresh();
    leased(&s, "a", "w1", 0, 60);
    create(&s, "b", 0);
    let b_before = snapshot(&s, "b");
    let f1 = Fence::new("w1", 1);
    let items = vec![
        item(
            "a",
            Command::Heartbeat {
                fence: f1.clone(),
                expires_at: at(90),
            },
        ),
        item(
            "b",
            Command::Heartbeat {
                fence: f1.clone(),
                expires_at: at(90),
            },
        ),
        item("missing", Command::Dispatch),
        item("a", Command::Release { fence: f1.clone() }),
        item(
            "a",
            Command::Acquire {
                owner: "w2".into(),
                expires_at: at(120),
            },
        ),
        item(
            "a",
            Command::Acquire {
                owner: "w3".into(),
                expires_at: at(120),
            },
        ),
        item(
            "b",
            Command::Quarantine {
                reason: String::new(),
                fence: None,
            },
        ),
    ];
    let results = s.apply_many(items, &ctx(10)).unwrap();
    assert_eq!(results.len(), 7);
    let codes: Vec<Option<ErrorCode>> = results
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.code()))
        .collect();
    assert_eq!(
        codes,
        [
            None,
            Some(ErrorCode::LeaseConflict),
            Some(ErrorCode::NotFound),
            None,
            None,
            Some(ErrorCode::LeaseConflict),
            Some(ErrorCode::InvalidInput),
        ]
    );
    let heartbeat = results[0].as_ref().unwrap();
    assert_eq!(heartbeat.lease_expires_at, Some(at(90)));
    let released = results[3].as_ref().unwrap();
    assert_eq!(released.state, TaskState::Dispatched);
    let a = get(&s, "a");
    assert_eq!(results[4].as_ref().unwrap(), &a);
    assert_eq!(a.lease_owner.as_deref(), Some("w2"));
    assert_eq!((a.lease_token, a.attempts), (2, 2));
    let kinds: Vec<HistoryKind> = history(&s, "a").iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            HistoryKind::Created,
            HistoryKind::Leased,
            HistoryKind::Released,
            HistoryKind::Leased
        ]
    );
    assert_unchanged(&s, &b_before);
    assert_eq!(s.get("missing").unwrap(), None);
}

/// An empty batch answers an empty list; a batch over the limit is
/// `invalid_input` and applies nothing.
pub fn apply_many_empty_and_oversize<H: Harness>(h: &H) {
    let s = h.fresh();
    create(&s, "t-1", 0);
    assert!(s.apply_many(Vec::new(), &ctx(1)).unwrap().is_empty());
    let too_many: Vec<BatchItem> = (0..=leasehold_core::limits::BATCH_ITEMS_MAX)
        .map(|_| item("t-1", Command::Dispatch))
        .collect();
    rejected(&s, "t-1", ErrorCode::InvalidInput, &["batch"], |s| {
        s.apply_many(too_many.clone(), &ctx(1))
    });
    assert_eq!(get(&s, "t-1").state, TaskState::Planned);
}

/// A fleet worker heartbeats and completes its leases in one call each; a
/// stale fence fails alone.
pub fn heartbeat_many_and_complete_many<H: Harness>(h: &H) {
    let s = h.fresh();
    for id in ["x", "y", "z"] {
        leased(&s, id, "w1", 0, 60);
    }
    let z_before = snapshot(&s, "z");
    let leases = vec![
        ("x".to_string(), Fence::new("w1", 1)),
        ("y".to_string(), Fence::new("w1", 1)),
        ("z".to_string(), Fence::new("w1", 7)),
    ];
    let hb = s.heartbeat_many(&leases, at(120), &ctx(30)).unwrap();
    assert_eq!(hb[0].as_ref().unwrap().lease_expires_at, Some(at(120)));
    assert_eq!(hb[1].as_ref().unwrap().last_heartbeat_at, Some(at(30)));
    assert_eq!(hb[2].as_ref().unwrap_err().code(), ErrorCode::LeaseConflict);
    assert_unchanged(&s, &z_before);
    let done = s
        .complete_many(&leases, Some("batch done"), &ctx(40))
        .unwrap();
    assert_eq!(done.len(), 3);
    for (r, id) in done.iter().zip(["x", "y"]) {
        let t = r.as_ref().unwrap();
        assert_eq!(t.state, TaskState::Completed);
        assert_eq!(t.terminal_reason.as_deref(), Some("batch done"));
        assert_eq!(get(&s, id), *t);
        assert_eq!(history(&s, id).pop().unwrap().actor, "w1");
    }
    assert_eq!(
        done[2].as_ref().unwrap_err().code(),
        ErrorCode::LeaseConflict
    );
    assert_eq!(get(&s, "z").state, TaskState::Running);
}
