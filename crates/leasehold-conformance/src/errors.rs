//! Errors: `not_found` for every write on a missing id, invalid input of every
//! kind rejected with `invalid_input` before anything changes, and messages
//! that name the task.

use leasehold_core::{CompensationStatus, ErrorCode, NewTask, Result, Store, Task};

use crate::support::*;
use crate::Harness;

/// Every write on a missing id is `not_found` naming it, and creates nothing.
pub fn not_found_for_every_write<H: Harness>(h: &H) {
    let s = h.fresh();
    create(&s, "present", 0);
    let id = "t-missing";
    let f = fence("w1", 1);
    type Op<'a, S> = Box<dyn Fn(&S) -> Result<Task> + 'a>;
    let ops: Vec<(&str, Op<'_, H::S>)> = vec![
        ("dispatch", Box::new(|s| s.dispatch(id, &ctx(1)))),
        (
            "acquire",
            Box::new(|s| s.acquire_lease(id, "w1", at(60), &ctx(1))),
        ),
        (
            "heartbeat",
            Box::new(|s| s.heartbeat(id, &f, at(60), &ctx(1))),
        ),
        ("release", Box::new(|s| s.release(id, &f, &ctx(1)))),
        (
            "complete",
            Box::new(|s| s.complete(id, None, None, &ctx(1))),
        ),
        (
            "compensate",
            Box::new(|s| s.compensate(id, None, None, &ctx(1))),
        ),
        (
            "fail",
            Box::new(|s| s.fail(id, "r", Some(comp("b")), None, &ctx(1))),
        ),
        (
            "quarantine",
            Box::new(|s| s.quarantine(id, "r", None, &ctx(1))),
        ),
        ("annotate", Box::new(|s| s.annotate(id, "a", "n", &ctx(1)))),
        (
            "record_compensation",
            Box::new(|s| s.record_compensation(id, 0, CompensationStatus::Applied, None, &ctx(1))),
        ),
    ];
    let present = snapshot(&s, "present");
    for (name, op) in ops {
        let e = expect_err(op(&s), ErrorCode::NotFound, &[id]);
        assert_eq!(s.get(id).unwrap(), None, "{name} created the task: {e}");
        assert_unchanged(&s, &present);
    }
    expect_err(s.history(id), ErrorCode::NotFound, &[id]);
    let total: u64 = s.counts().unwrap().values().sum();
    assert_eq!(total, 1);
}

/// Bad task, saga and queue ids are `invalid_input`; nothing is created.
pub fn create_rejects_bad_ids<H: Harness>(h: &H) {
    let s = h.fresh();
    let long = "x".repeat(129);
    let bad: Vec<NewTask> = vec![
        NewTask::new("", "s"),
        NewTask::new("has space", "s"),
        NewTask::new(long.as_str(), "s"),
        NewTask::new("é", "s"),
        NewTask::new("t", ""),
        NewTask::new("t", "saga?"),
        task("t").queue("").build(),
        task("t").queue("q q").build(),
    ];
    for new in bad {
        let shown = format!("{new:?}");
        let e = expect_err(s.create(new, &ctx(0)), ErrorCode::InvalidInput, &[]);
        assert!(
            s.list(&Default::default(), None, None)
                .unwrap()
                .tasks
                .is_empty(),
            "{shown} was created despite {e}"
        );
    }
    let edge = "Az09._:/-".to_string() + &"y".repeat(119);
    assert_eq!(edge.len(), 128);
    task(&edge).saga(&edge).create(&s, 0);
}

/// Metadata must be a JSON object of at most 64 KiB serialised; compensation
/// kind and target must not be blank.
pub fn create_rejects_bad_metadata_and_compensations<H: Harness>(h: &H) {
    let s = h.fresh();
    let inv = ErrorCode::InvalidInput;
    // {"k":"…"} is 8 bytes plus the string.
    let fits = serde_json::json!({"k": "x".repeat(64 * 1024 - 8)});
    assert_eq!(serde_json::to_vec(&fits).unwrap().len(), 64 * 1024);
    let over = serde_json::json!({"k": "x".repeat(64 * 1024 - 7)});
    expect_err(
        s.create(task("big").metadata(over).build(), &ctx(0)),
        inv,
        &["big", "metadata"],
    );
    expect_err(
        s.create(
            task("arr").metadata(serde_json::json!([1, 2])).build(),
            &ctx(0),
        ),
        inv,
        &["arr", "metadata"],
    );
    let mut blank = task("blank").build();
    blank
        .compensations
        .push(leasehold_core::NewCompensation::new(" ", "t", "r"));
    expect_err(s.create(blank, &ctx(0)), inv, &["compensation"]);
    assert_eq!(s.get("big").unwrap(), None);
    assert_eq!(s.get("arr").unwrap(), None);
    assert_eq!(s.get("blank").unwrap(), None);
    let t = task("fits").metadata(fits.clone()).create(&s, 0);
    assert_eq!(t.metadata, fits);
    let s = h.reopen(s);
    assert_eq!(get(&s, "fits").metadata, fits);
    // Growing metadata past the limit by put is rejected too.
    let mut c = get(&s, "fits");
    c.metadata = serde_json::json!({"k": "x".repeat(64 * 1024)});
    rejected(&s, "fits", inv, &["fits", "metadata"], |s| {
        s.put(c.clone(), None, &ctx(1))
    });
}

/// Invalid input on an existing task is rejected before the rules run, even
/// where the rules would also object (checks run in a fixed order:
/// validation, then `terminal`, then fence and lease).
pub fn check_order_is_fixed<H: Harness>(h: &H) {
    let s = h.fresh();
    create(&s, "done", 0);
    s.complete("done", None, None, &ctx(1)).unwrap();
    let inv = ErrorCode::InvalidInput;
    rejected(&s, "done", inv, &[], |s| {
        s.acquire_lease("done", "w", at(1), &ctx(2))
    });
    rejected(&s, "done", inv, &[], |s| {
        s.quarantine("done", "", None, &ctx(2))
    });
    rejected(&s, "done", inv, &[], |s| {
        s.fail("done", "", None, None, &ctx(2))
    });
    // Terminal before fence and compensation checks.
    rejected(&s, "done", ErrorCode::Terminal, &["done"], |s| {
        s.fail("done", "r", None, Some(&fence("nobody", 9)), &ctx(2))
    });
    // A missing task is `not_found` before its input is validated: backends
    // load the task, then run the machine (the model's order). An HTTP layer
    // that validates request bodies first must keep this order too.
    expect_err(
        s.acquire_lease("missing", "", at(0), &ctx(2)),
        ErrorCode::NotFound,
        &["missing"],
    );
}
