//! Reads: `get`, `list` (filters and cursor pagination, creation order),
//! `list_in_flight`, `list_stale` and `counts`.

use leasehold_core::{ErrorCode, ListFilter, Store, TaskState};

use crate::support::*;
use crate::Harness;

fn filter() -> ListFilter {
    ListFilter::default()
}

/// Every page of a listing with page size `limit`.
fn pages<S: Store + ?Sized>(s: &S, f: &ListFilter, limit: u32) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s.list(f, cursor.as_deref(), Some(limit)).unwrap();
        assert!(page.tasks.len() <= limit as usize);
        out.push(ids(&page.tasks));
        match page.next_cursor {
            Some(c) => {
                assert!(!page.tasks.is_empty(), "a cursor after an empty page");
                cursor = Some(c);
            }
            None => return out,
        }
        assert!(out.len() < 100, "cursors never end");
    }
}

/// Filters by state(s), queue, owner and staleness, alone and combined; all
/// in creation order.
pub fn list_filters<H: Harness>(h: &H) {
    let s = h.fresh();
    task("p-def").create(&s, 50);
    task("r-alpha").queue("alpha").create(&s, 40);
    task("p-alpha").queue("alpha").create(&s, 30);
    task("x-stale").create(&s, 20);
    task("c-done").create(&s, 10);
    s.acquire_lease("r-alpha", "w1", at(1000), &ctx(60))
        .unwrap();
    s.acquire_lease("x-stale", "w2", at(70), &ctx(60)).unwrap();
    s.complete("c-done", None, None, &ctx(60)).unwrap();
    let all = s.list(&filter(), None, None).unwrap();
    assert_eq!(
        ids(&all.tasks),
        ["p-def", "r-alpha", "p-alpha", "x-stale", "c-done"]
    );
    assert_eq!(all.next_cursor, None);
    let f = ListFilter {
        states: vec![TaskState::Planned],
        ..filter()
    };
    assert_eq!(
        ids(&s.list(&f, None, None).unwrap().tasks),
        ["p-def", "p-alpha"]
    );
    let f = ListFilter {
        states: vec![TaskState::Running, TaskState::Completed],
        ..filter()
    };
    assert_eq!(
        ids(&s.list(&f, None, None).unwrap().tasks),
        ["r-alpha", "x-stale", "c-done"]
    );
    let f = ListFilter {
        queue: Some("alpha".into()),
        ..filter()
    };
    assert_eq!(
        ids(&s.list(&f, None, None).unwrap().tasks),
        ["r-alpha", "p-alpha"]
    );
    let f = ListFilter {
        owner: Some("w2".into()),
        ..filter()
    };
    assert_eq!(ids(&s.list(&f, None, None).unwrap().tasks), ["x-stale"]);
    let f = ListFilter {
        stale_at: Some(at(70)),
        ..filter()
    };
    assert_eq!(ids(&s.list(&f, None, None).unwrap().tasks), ["x-stale"]);
    let f = ListFilter {
        stale_at: Some(at(69)),
        ..filter()
    };
    assert!(s.list(&f, None, None).unwrap().tasks.is_empty());
    let f = ListFilter {
        states: vec![TaskState::Running],
        queue: Some("default".into()),
        ..filter()
    };
    assert_eq!(ids(&s.list(&f, None, None).unwrap().tasks), ["x-stale"]);
    for t in all.tasks {
        assert_eq!(t, get(&s, &t.task_id), "list and get disagree");
    }
}

/// Cursor pagination walks every matching task exactly once, in creation
/// order, and the last page has no cursor; a task changing between pages
/// keeps its place.
pub fn list_cursor_pagination<H: Harness>(h: &H) {
    let s = h.fresh();
    let names: Vec<String> = (0..7).map(|i| format!("t-{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        create(&s, n, 100 - i as i64);
    }
    let got = pages(&s, &filter(), 3);
    assert_eq!(got.len(), 3);
    assert_eq!(got.concat(), names);
    assert_eq!(got[2].len(), 1);
    assert_eq!(
        pages(&s, &filter(), 7).len(),
        1,
        "an exact fit has no next page"
    );
    let first = s.list(&filter(), None, Some(2)).unwrap();
    s.dispatch("t-0", &ctx(200)).unwrap();
    s.complete("t-1", None, None, &ctx(200)).unwrap();
    let rest = s
        .list(&filter(), first.next_cursor.as_deref(), Some(10))
        .unwrap();
    assert_eq!(ids(&rest.tasks), &names[2..]);
    let f = ListFilter {
        states: vec![TaskState::Planned],
        ..filter()
    };
    assert_eq!(pages(&s, &f, 2).concat(), &names[2..]);
    let default_page = s.list(&filter(), None, Some(0)).unwrap();
    assert_eq!(default_page.tasks.len(), 7);
}

/// A cursor the store did not issue, or a limit above 1000, is `invalid_input`.
pub fn list_rejects_bad_cursor_and_limit<H: Harness>(h: &H) {
    let s = h.fresh();
    create(&s, "t-1", 0);
    let inv = ErrorCode::InvalidInput;
    expect_err(
        s.list(&filter(), Some("not-a-cursor"), None),
        inv,
        &["cursor"],
    );
    expect_err(s.list(&filter(), None, Some(1001)), inv, &["limit"]);
    assert_eq!(s.list(&filter(), None, Some(1000)).unwrap().tasks.len(), 1);
}

/// `counts` has every state, zeros included, and follows transitions.
pub fn counts_every_state<H: Harness>(h: &H) {
    let s = h.fresh();
    let c = s.counts().unwrap();
    assert_eq!(c.len(), TaskState::ALL.len());
    assert!(c.values().all(|n| *n == 0));
    create(&s, "p", 0);
    create(&s, "d", 0);
    s.dispatch("d", &ctx(1)).unwrap();
    leased(&s, "r", "w", 1, 60);
    create(&s, "c", 0);
    s.complete("c", None, None, &ctx(1)).unwrap();
    task("f").compensation("b").create(&s, 0);
    s.fail("f", "x", None, None, &ctx(1)).unwrap();
    create(&s, "k", 0);
    s.compensate("k", None, None, &ctx(1)).unwrap();
    create(&s, "q", 0);
    s.quarantine("q", "why", None, &ctx(1)).unwrap();
    create(&s, "p2", 0);
    let c = s.counts().unwrap();
    let expect = [
        (TaskState::Planned, 2),
        (TaskState::Dispatched, 1),
        (TaskState::Running, 1),
        (TaskState::Completed, 1),
        (TaskState::Failed, 1),
        (TaskState::Compensated, 1),
        (TaskState::Quarantined, 1),
    ];
    for (state, n) in expect {
        assert_eq!(c[&state], n, "count of {state}");
    }
    assert_eq!(c.len(), 7);
}

/// `get` of a missing id is `None`, not an error; `list_in_flight` follows
/// transitions (a released task is in flight, a reclaimed-to-quarantine one not).
pub fn get_and_in_flight<H: Harness>(h: &H) {
    let s = h.fresh();
    assert_eq!(s.get("nope").unwrap(), None);
    assert!(s.list_in_flight().unwrap().is_empty());
    leased(&s, "a", "w", 0, 10);
    leased(&s, "b", "w", 0, 10);
    s.release("b", &fence("w", 1), &ctx(1)).unwrap();
    assert_eq!(ids(&s.list_in_flight().unwrap()), ["a", "b"]);
    s.reclaim(1, &ctx(20)).unwrap();
    assert_eq!(ids(&s.list_in_flight().unwrap()), ["b"]);
}
