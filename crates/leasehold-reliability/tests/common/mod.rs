//! What the store-fault tests share: the 14 write operations, how to bring a
//! task to the state each needs, how to run one (on any `Store`: the server
//! through `HttpStore`, or the in-memory model), and a byte-for-byte snapshot.

#![allow(dead_code)] // each test binary uses its own subset

use std::time::Duration;

use leasehold_client::HttpStore;
use leasehold_core::{
    ClaimRequest, CompensationStatus, Context, Fence, NewCompensation, NewTask, Store, Timestamp,
};
use serde_json::{json, Value};

pub const OPS: [&str; 14] = [
    "create",
    "dispatch",
    "acquire",
    "claim",
    "heartbeat",
    "release",
    "complete",
    "fail",
    "compensate",
    "quarantine",
    "reclaim",
    "annotate",
    "record_compensation",
    "put",
];

pub fn base(case: usize) -> Timestamp {
    Timestamp::parse("2026-06-03T10:00:00Z")
        .unwrap()
        .checked_add_micros(case as i64 * 3_600_000_000)
        .unwrap()
}

pub fn at(case: usize, secs: i64) -> Context {
    Context::new(
        base(case).checked_add_micros(secs * 1_000_000).unwrap(),
        "w1",
    )
}

/// Bring `id` to the state the operation needs, on `s`.
pub fn setup(op: &str, s: &dyn Store, id: &str, case: usize) {
    if op == "create" {
        return;
    }
    let mut nt = NewTask::new(id, format!("saga-{id}"));
    nt.queue = Some(format!("q-{id}"));
    nt.compensations
        .push(NewCompensation::new("delete_branch", id, "setup"));
    s.create(nt, &at(case, 0)).unwrap();
    let needs_lease = matches!(
        op,
        "heartbeat" | "release" | "complete" | "fail" | "compensate" | "quarantine" | "reclaim"
    );
    if needs_lease {
        // Expires 5 s after the start; the operation runs at +1 s (or +10 s for reclaim).
        s.acquire_lease(id, "w1", at(case, 5).at, &at(case, 0))
            .unwrap();
    }
}

/// Run the operation under test; the answer as JSON for comparison.
pub fn run(op: &str, s: &dyn Store, id: &str, case: usize) -> leasehold_core::Result<Value> {
    let c = at(case, 1);
    let f = Fence::new("w1", 1);
    let j = |t: leasehold_core::Task| serde_json::to_value(t).unwrap();
    Ok(match op {
        "create" => {
            let mut nt = NewTask::new(id, format!("saga-{id}"));
            nt.queue = Some(format!("q-{id}"));
            j(s.create(nt, &c)?)
        }
        "dispatch" => j(s.dispatch(id, &c)?),
        "acquire" => j(s.acquire_lease(id, "w1", at(case, 60).at, &c)?),
        "claim" => json!(s.claim(
            &ClaimRequest {
                owner: "w1".into(),
                queues: vec![format!("q-{id}")],
                ttl: Duration::from_secs(60),
                limit: 1,
                max_attempts: None,
            },
            &c
        )?),
        "heartbeat" => j(s.heartbeat(id, &f, at(case, 60).at, &c)?),
        "release" => j(s.release(id, &f, &c)?),
        "complete" => j(s.complete(id, Some("done"), Some(&f), &c)?),
        "fail" => j(s.fail(id, "broke", None, Some(&f), &c)?),
        "compensate" => j(s.compensate(id, None, Some(&f), &c)?),
        "quarantine" => j(s.quarantine(id, "odd", Some(&f), &c)?),
        // Reclaim covers every stale task; only this case's task is compared.
        "reclaim" => json!(s
            .reclaim(5, &at(case, 10))?
            .into_iter()
            .filter(|t| t.task_id == id)
            .collect::<Vec<_>>()),
        "annotate" => j(s.annotate(id, "w1", "a note", &c)?),
        "record_compensation" => {
            j(s.record_compensation(id, 0, CompensationStatus::Applied, Some("ok"), &c)?)
        }
        "put" => {
            let mut t = s.require(id)?;
            t.priority = 7;
            j(s.put(t, None, &c)?)
        }
        other => panic!("unknown op {other}"),
    })
}

pub fn snapshot(s: &dyn Store, id: &str) -> Value {
    json!({ "task": s.get(id).unwrap(), "history": s.history(id).ok() })
}

/// Which token a client uses for `op`: worker writes use the worker token
/// (two store calls: the authorisation read, then the write).
pub fn client_for<'a>(op: &str, worker: &'a HttpStore, operator: &'a HttpStore) -> &'a HttpStore {
    match op {
        "heartbeat" | "release" | "complete" | "fail" | "compensate" | "quarantine" | "acquire"
        | "claim" => worker,
        _ => operator,
    }
}
