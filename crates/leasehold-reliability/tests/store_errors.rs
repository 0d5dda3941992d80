//! Store errors under every operation, through the server:
//! - injected: the N-th store call of each operation (N = 1, 2: a worker's
//!   request makes an authorisation read, then the write) fails as a busy or
//!   broken database does (`unavailable`) — on SQLite and on PostgreSQL;
//! - real: SQLite's write lock held by another connection (`SQLITE_BUSY` after
//!   the busy timeout); PostgreSQL's row lock held by another session past
//!   the statement timeout, and the store's connections terminated under it.
//!
//! Every time: no panic, the only server error is `unavailable` (503 with
//! `Retry-After`), nothing changed (task and history byte for byte), and a
//! retry answers exactly what the in-memory model answers for the same call.
//!
//! The faults here enter at the `Store` seam or from outside the backend;
//! `backend_faults.rs` injects them inside the backends (the N-th SQL
//! statement of an operation, between task and history, before COMMIT).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{client_for, run, setup, snapshot, OPS};
use leasehold_client::HttpStore;
use leasehold_core::memory::MemoryStore;
use leasehold_core::{ErrorCode, Store};
use leasehold_reliability::faults::FaultStore;
use leasehold_reliability::rawhttp;
use leasehold_server::testing::TestServer;
use leasehold_server::Role;
use serde_json::json;

struct Tally {
    injected: usize,
    retried: usize,
}

fn injected_faults<S: Store + 'static>(inner: S, backend: &str) {
    let fault = Arc::new(FaultStore::new(inner));
    let server = TestServer::start(fault.clone(), true);
    let operator = HttpStore::new(&server.url(), &server.operator_token())
        .unwrap()
        .with_exact_expiry();
    let worker_token = server.add_token("w1", Role::Worker);
    let worker = HttpStore::new(&server.url(), &worker_token)
        .unwrap()
        .with_exact_expiry();
    let mut tally = Tally {
        injected: 0,
        retried: 0,
    };
    let mut case = 0;
    for op in OPS {
        for n in 1..=2u64 {
            case += 1;
            let id = format!("e-{op}-{n}");
            let twin = MemoryStore::new();
            setup(op, &twin, &id, case);
            setup(op, &operator, &id, case);
            let before = snapshot(fault.inner(), &id);
            let fired_before = fault.injected();
            fault.fail_nth_from_now(n);
            let client = client_for(op, &worker, &operator);
            let r = run(op, client, &id, case);
            let expected = run(op, &twin, &id, case);
            if fault.injected() == fired_before {
                // The operation made fewer than n store calls: nothing injected.
                fault.clear();
                assert_eq!(
                    r.as_ref().ok(),
                    expected.as_ref().ok(),
                    "{backend} {op}: without a fault"
                );
                continue;
            }
            tally.injected += 1;
            let e = r.expect_err("an injected store fault must fail the call");
            assert_eq!(
                e.code(),
                ErrorCode::Unavailable,
                "{backend} {op} N={n}: {e}"
            );
            assert_eq!(
                snapshot(fault.inner(), &id),
                before,
                "{backend} {op} N={n}: changed something"
            );
            let again = run(op, client, &id, case);
            assert_eq!(
                again.map_err(|e| e.code()),
                expected.map_err(|e| e.code()),
                "{backend} {op} N={n}: the retry must answer what the model answers"
            );
            tally.retried += 1;
        }
    }
    // 503 with Retry-After on the wire, and the problem's code.
    let id = "e-raw";
    setup("dispatch", &operator, id, 99);
    fault.fail_nth_from_now(1);
    let reply = rawhttp::request(
        &server.url(),
        "POST",
        &format!("/v1/tasks/{id}/dispatch"),
        &server.operator_token(),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.header("retry-after").is_some(), "{reply:?}");
    assert!(reply.body.contains("\"unavailable\""), "{reply:?}");
    eprintln!(
        "store faults on {backend}: {} injected over {} operations x N=1,2, {} retries matched the model",
        tally.injected,
        OPS.len(),
        tally.retried
    );
    assert!(
        tally.injected >= OPS.len() + 6,
        "too few faults fired: {}",
        tally.injected
    );
}

#[test]
fn injected_store_faults_on_sqlite_are_unavailable_change_nothing_and_retry_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let s = leasehold_sqlite::SqliteStore::open(dir.path().join("f.db")).unwrap();
    injected_faults(s, "sqlite");
}

#[test]
fn injected_store_faults_on_postgres_are_unavailable_change_nothing_and_retry_cleanly() {
    let Some(cl) = leasehold_postgres::testing::shared() else {
        return;
    };
    injected_faults(cl.fresh_store(), "postgres");
}

/// Real `SQLITE_BUSY`: another connection holds the write lock.
#[test]
fn sqlite_busy_from_a_held_write_lock_is_unavailable_and_retry_matches_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let store = leasehold_sqlite::SqliteStore::open_with(
        &path,
        leasehold_sqlite::SqliteOptions {
            busy_timeout: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .unwrap();
    let server = TestServer::start(Arc::new(store), true);
    let operator = HttpStore::new(&server.url(), &server.operator_token())
        .unwrap()
        .with_exact_expiry();
    let check = leasehold_sqlite::SqliteStore::open(&path).unwrap();
    let mut busy = 0;
    for (case, op) in OPS.iter().enumerate() {
        let id = format!("b-{op}");
        let twin = MemoryStore::new();
        setup(op, &twin, &id, case);
        setup(op, &operator, &id, case);
        let before = snapshot(&check, &id);
        let lock = rusqlite::Connection::open(&path).unwrap();
        lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let r = run(op, &operator, &id, case);
        let e = r.expect_err("a write under another connection's lock must fail");
        assert_eq!(e.code(), ErrorCode::Unavailable, "{op}: {e}");
        busy += 1;
        lock.execute_batch("ROLLBACK").unwrap();
        drop(lock);
        assert_eq!(
            snapshot(&check, &id),
            before,
            "{op}: changed something while busy"
        );
        let expected = run(op, &twin, &id, case);
        let again = run(op, &operator, &id, case);
        assert_eq!(
            again.map_err(|e| e.code()),
            expected.map_err(|e| e.code()),
            "{op}: retry"
        );
    }
    assert_eq!(check.integrity_check().unwrap(), "ok");
    eprintln!("sqlite busy: {busy} operations refused under a held write lock, all retried to the model's answer");
}

/// Real PostgreSQL faults: a row lock held past the statement timeout, and
/// the store's connections terminated between calls (dropped connections).
#[test]
fn postgres_lock_timeouts_and_dropped_connections_are_unavailable_and_retry_matches_the_model() {
    let Some(cl) = leasehold_postgres::testing::shared() else {
        return;
    };
    let schema = leasehold_postgres::testing::unique_schema("pgf");
    let app = format!("lh-{schema}");
    let store = cl.store_with(leasehold_postgres::PgOptions {
        schema: schema.clone(),
        statement_timeout: Some(Duration::from_millis(300)),
        application_name: app.clone(),
        ..Default::default()
    });
    let check = cl.store(&schema);
    let server = TestServer::start(Arc::new(store), true);
    let operator = HttpStore::new(&server.url(), &server.operator_token())
        .unwrap()
        .with_exact_expiry();
    let mut raw = cl.client();
    let (mut timeouts, mut skipped, mut dropped, mut dropped_failed) = (0, 0, 0, 0);
    for (case, op) in OPS.iter().enumerate() {
        if *op == "create" {
            continue; // no row to lock yet
        }
        let id = format!("l-{op}");
        let twin = MemoryStore::new();
        setup(op, &twin, &id, case);
        setup(op, &operator, &id, case);
        let before = snapshot(&check, &id);
        let mut tx = raw.transaction().unwrap();
        tx.batch_execute(&format!(
            "SELECT 1 FROM \"{schema}\".tasks WHERE task_id = '{id}' FOR UPDATE"
        ))
        .unwrap();
        let r = run(op, &operator, &id, case);
        tx.rollback().unwrap();
        match r {
            // Claim and reclaim pass over locked rows (SKIP LOCKED) instead of waiting.
            Ok(v) if matches!(*op, "claim" | "reclaim") => {
                assert_eq!(v, json!([]), "{op}: a locked row must be skipped");
                skipped += 1;
            }
            Ok(v) => panic!("{op}: a write blocked past the statement timeout succeeded: {v}"),
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::Unavailable, "{op}: {e}");
                timeouts += 1;
            }
        }
        assert_eq!(
            snapshot(&check, &id),
            before,
            "{op}: changed something on timeout"
        );
        // Now drop every connection of the server's store, then retry.
        raw.batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}'"
        ))
        .unwrap();
        dropped += 1;
        let expected = run(op, &twin, &id, case);
        let mut again = run(op, &operator, &id, case);
        if let Err(e) = &again {
            if e.code() == ErrorCode::Unavailable {
                dropped_failed += 1;
                assert_eq!(
                    snapshot(&check, &id),
                    before,
                    "{op}: changed something on a dropped connection"
                );
                again = run(op, &operator, &id, case);
            }
        }
        assert_eq!(
            again.map_err(|e| e.code()),
            expected.map_err(|e| e.code()),
            "{op}: retry"
        );
    }
    assert!(timeouts >= 10, "too few lock timeouts: {timeouts}");
    eprintln!(
        "postgres faults: {timeouts} lock timeouts, {skipped} locked rows skipped by claim/reclaim, {dropped} connection drops ({dropped_failed} surfaced as unavailable), every retry matched the model"
    );
}

/// A connection dropped in the middle of a store transaction (the store's
/// backend is terminated while it waits for a row lock): the call either
/// fails with `unavailable` and changes nothing (then a retry matches the
/// model), or the store reruns it on a new connection and answers what the
/// model answers, applied exactly once.
#[test]
fn postgres_connection_dropped_mid_transaction_is_rerun_once_or_unavailable_never_partial() {
    let Some(cl) = leasehold_postgres::testing::shared() else {
        return;
    };
    let schema = leasehold_postgres::testing::unique_schema("pgd");
    let app = format!("lh-{schema}");
    let store = cl.store_with(leasehold_postgres::PgOptions {
        schema: schema.clone(),
        application_name: app.clone(),
        ..Default::default()
    });
    let check = cl.store(&schema);
    let server = TestServer::start(Arc::new(store), true);
    let url = server.url();
    let token = server.operator_token();
    let operator = HttpStore::new(&url, &token).unwrap().with_exact_expiry();
    let mut raw = cl.client();
    let mut watcher = cl.client();
    let (mut drops, mut healed) = (0, 0);
    for (case, op) in OPS.iter().enumerate() {
        if matches!(*op, "create" | "claim" | "reclaim") {
            continue; // no row to wait on (create) or lock-skipping (claim, reclaim)
        }
        let id = format!("d-{op}");
        let twin = MemoryStore::new();
        setup(op, &twin, &id, case);
        setup(op, &operator, &id, case);
        let before = snapshot(&check, &id);
        let mut tx = raw.transaction().unwrap();
        tx.batch_execute(&format!(
            "SELECT 1 FROM \"{schema}\".tasks WHERE task_id = '{id}' FOR UPDATE"
        ))
        .unwrap();
        let (u, t, o, i) = (url.clone(), token.clone(), op.to_string(), id.clone());
        let call = std::thread::spawn(move || {
            let c = HttpStore::new(&u, &t).unwrap().with_exact_expiry();
            run(&o, &c, &i, case).map_err(|e| e.code())
        });
        // Wait (bounded) until the store's session is blocked on our lock, then kill it.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let rows = watcher
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = $1 AND wait_event_type = 'Lock'",
                    &[&app],
                )
                .unwrap();
            if !rows.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{op}: the store never waited on the lock"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        tx.rollback().unwrap();
        let r = call.join().unwrap();
        drops += 1;
        let expected = run(op, &twin, &id, case).map_err(|e| e.code());
        match r {
            // The store ran the transaction again on a fresh connection:
            // exactly once, with the model's answer.
            Ok(v) => {
                assert_eq!(Ok(v), expected, "{op}: transparent retry");
                healed += 1;
            }
            Err(code) => {
                assert_eq!(code, ErrorCode::Unavailable, "{op}");
                assert_eq!(snapshot(&check, &id), before, "{op}: changed something");
                let again = run(op, &operator, &id, case);
                assert_eq!(again.map_err(|e| e.code()), expected, "{op}: retry");
            }
        }
        // Either way the stored task is the model's, written once.
        let stored = serde_json::to_value(check.require(&id).unwrap()).unwrap();
        assert_eq!(
            stored,
            serde_json::to_value(twin.require(&id).unwrap()).unwrap(),
            "{op}"
        );
    }
    eprintln!("postgres: {drops} connections dropped mid-transaction: {healed} rerun by the store on a new connection, {} answered unavailable with nothing changed; every final task equals the model's", drops - healed);
    assert!(drops >= 10);
}
