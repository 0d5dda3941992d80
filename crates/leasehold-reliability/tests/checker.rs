//! The checkers bite: hand-made histories that are not linearizable are
//! rejected (with a minimal failing history and the seed), legal concurrent
//! histories are accepted, and the race workload against deliberately broken
//! stores reports violations. Without these, a green race test could be vacuous.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use leasehold_core::memory::MemoryStore;
use leasehold_core::{machine, Command, Context, Fence, NewTask, Task, Timestamp};
use leasehold_reliability::checker::{self, CheckOptions};
use leasehold_reliability::faults::{MutantStore, Mutation};
use leasehold_reliability::history::{Call, Op, Outcome};
use leasehold_reliability::race::{self, RaceConfig};
use leasehold_server::testing::TestServer;

fn t0() -> Timestamp {
    Timestamp::parse("2026-06-03T10:00:00Z").unwrap()
}

fn ms(n: i64) -> Timestamp {
    t0().checked_add_micros(n * 1000).unwrap()
}

fn initial() -> Task {
    machine::create(NewTask::new("t1", "s1"), &Context::new(t0(), "setup"))
        .unwrap()
        .task
}

fn op(
    id: usize,
    client: &str,
    call: Call,
    at: Timestamp,
    inv: u64,
    ret: Option<u64>,
    out: Outcome,
) -> Op {
    Op {
        id,
        client: client.into(),
        task_id: Some("t1".into()),
        call,
        at,
        actor: client.into(),
        invoke_ns: inv,
        return_ns: ret,
        outcome: out,
    }
}

fn acquire(owner: &str, at: Timestamp, until: Timestamp) -> (Call, Task) {
    let cmd = Command::Acquire {
        owner: owner.into(),
        expires_at: until,
    };
    let t = machine::apply(&initial(), &cmd, &Context::new(at, owner))
        .unwrap()
        .task;
    (Call::Apply(cmd), t)
}

fn check(ops: &[Op]) -> checker::Verdict {
    let mut init = BTreeMap::new();
    init.insert("t1".to_string(), initial());
    checker::check(&init, ops, &CheckOptions::default(), 42)
}

#[test]
fn two_overlapping_grants_of_one_lease_are_not_linearizable() {
    let (c1, t1) = acquire("a", ms(1), ms(301));
    let (c2, t2) = acquire("b", ms(2), ms(302));
    let ops = vec![
        op(0, "a", c1, ms(1), 10, Some(20), Outcome::Task(Box::new(t1))),
        op(1, "b", c2, ms(2), 11, Some(21), Outcome::Task(Box::new(t2))),
    ];
    let v = check(&ops);
    let bad = v.violations();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].contains("seed 42") && bad[0].contains("minimal failing history"),
        "{}",
        bad[0]
    );
}

#[test]
fn concurrent_grant_and_refusal_are_linearizable_in_either_order() {
    let (c1, t1) = acquire("a", ms(1), ms(301));
    let (c2, _) = acquire("b", ms(2), ms(302));
    // b's call was invoked first but a won: fine, they overlap in real time.
    let ops = vec![
        op(
            0,
            "b",
            c2,
            ms(2),
            5,
            Some(30),
            Outcome::Error(leasehold_core::ErrorCode::LeaseConflict, "x".into()),
        ),
        op(1, "a", c1, ms(1), 10, Some(20), Outcome::Task(Box::new(t1))),
    ];
    assert!(check(&ops).violations().is_empty());
}

#[test]
fn a_stale_read_after_a_completed_write_is_rejected() {
    let (c1, t1) = acquire("a", ms(1), ms(301));
    let ops = vec![
        op(0, "a", c1, ms(1), 10, Some(20), Outcome::Task(Box::new(t1))),
        // Read strictly after the acquisition returned, showing the old task.
        op(
            1,
            "r",
            Call::Get,
            ms(5),
            30,
            Some(40),
            Outcome::Found(Some(Box::new(initial()))),
        ),
    ];
    assert_eq!(check(&ops).violations().len(), 1);
}

#[test]
fn an_unanswered_write_may_or_may_not_have_happened() {
    let (c1, t1) = acquire("a", ms(1), ms(301));
    for seen in [initial(), t1.clone()] {
        let ops = vec![
            op(
                0,
                "a",
                c1.clone(),
                ms(1),
                10,
                None,
                Outcome::Unknown("timeout".into()),
            ),
            op(
                1,
                "r",
                Call::Get,
                ms(5),
                30,
                Some(40),
                Outcome::Found(Some(Box::new(seen))),
            ),
        ];
        assert!(check(&ops).violations().is_empty());
    }
}

#[test]
fn a_heartbeat_accepted_with_a_stale_token_is_rejected() {
    let (c1, t1) = acquire("a", ms(1), ms(301));
    let hb = Command::Heartbeat {
        fence: Fence::new("a", 7),
        expires_at: ms(500),
    };
    let mut forged = t1.clone();
    forged.lease_expires_at = Some(ms(500));
    forged.version += 1;
    let ops = vec![
        op(0, "a", c1, ms(1), 10, Some(20), Outcome::Task(Box::new(t1))),
        op(
            1,
            "a",
            Call::Apply(hb),
            ms(100),
            30,
            Some(40),
            Outcome::Task(Box::new(forged)),
        ),
    ];
    assert_eq!(check(&ops).violations().len(), 1);
}

#[test]
fn stored_history_that_disagrees_with_the_task_is_torn() {
    let t = initial();
    let created = machine::create(NewTask::new("t1", "s1"), &Context::new(t0(), "setup"))
        .unwrap()
        .history
        .unwrap();
    assert!(checker::check_stored(&t, std::slice::from_ref(&created)).is_empty());
    let mut torn = t.clone();
    torn.state = leasehold_core::TaskState::Dispatched;
    assert!(!checker::check_stored(&torn, std::slice::from_ref(&created)).is_empty());
    assert!(!checker::check_stored(&t, &[]).is_empty());
}

fn race_against(mutation: Mutation) -> race::RaceReport {
    let store = MutantStore::new(MemoryStore::new(), mutation);
    let server = TestServer::start(Arc::new(store), true);
    let mut cfg = RaceConfig::standard(Duration::from_secs(2), 99);
    cfg.min_ops_per_sec = 0.0;
    race::run(
        &server.url(),
        &server.operator_token(),
        &cfg,
        CheckOptions::default(),
    )
}

#[test]
fn race_against_a_store_that_loses_writes_reports_violations() {
    let r = race_against(Mutation::LostWrite(25));
    eprintln!("{r}\n{}", r.violations.first().cloned().unwrap_or_default());
    assert!(!r.violations.is_empty(), "lost writes went unnoticed: {r}");
}

#[test]
fn race_against_a_store_that_grants_over_live_leases_reports_violations() {
    let r = race_against(Mutation::GrantOverLiveLease);
    eprintln!("{r}\n{}", r.violations.first().cloned().unwrap_or_default());
    assert!(
        !r.violations.is_empty(),
        "double grants went unnoticed: {r}"
    );
    assert!(
        r.violations
            .iter()
            .any(|v| v.contains("linearizability violation")),
        "{:?}",
        r.violations
    );
}
