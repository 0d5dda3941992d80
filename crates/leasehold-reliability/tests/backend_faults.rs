//! Faults injected INSIDE the backends (issue #7, "store errors"), through
//! the real server, with the failpoints of `leasehold_core::failpoint`
//! (needs `--features failpoints`; without it this file has no tests).
//!
//! For every write operation and every N from 1 to the number of statements
//! that operation issues (measured, not assumed), the fault is injected at
//! the N-th statement:
//! - SQLite: `SQLITE_BUSY` and `SQLITE_IOERR` (real rusqlite error values,
//!   through the backend's own error mapping and savepoint rollback), also
//!   between the task row write and its history insert, and before COMMIT.
//!   The answer is `unavailable`, nothing changed (task and history byte for
//!   byte), and a retry answers what the in-memory model answers.
//! - PostgreSQL: a serialization failure (SQLSTATE 40001) and a deadlock
//!   (40P01) raised by a statement on the transaction's own connection, and
//!   the session terminating itself (`pg_terminate_backend`), at the N-th
//!   statement and just before COMMIT: the store runs the transaction again
//!   (its pool counts the retry) and answers the model's answer, applied
//!   exactly once (task and history equal the model's). When the fault
//!   persists, the retries run out: `unavailable`, nothing changed, and the
//!   retry after it matches the model.
//!
//! On the wire a backend fault is 503 with `Retry-After`. Every configured
//! fault is counted as it fires (`failpoint::injected`) and the totals are
//! asserted, so the test cannot pass without injecting.
#![cfg(feature = "failpoints")]

mod common;

use std::sync::Arc;

use common::{client_for, run, setup, snapshot, OPS};
use leasehold_client::HttpStore;
use leasehold_core::failpoint::{self, Scenario};
use leasehold_core::memory::MemoryStore;
use leasehold_core::{ErrorCode, Store};
use leasehold_reliability::rawhttp;
use leasehold_server::testing::TestServer;
use leasehold_server::Role;

/// What a configured fault must lead to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// The call answers `unavailable` and changes nothing.
    Unavailable,
    /// The store retries internally: the call answers the model's answer.
    Retried,
}

struct Harness<'a> {
    backend: &'a str,
    server: TestServer,
    operator: HttpStore,
    worker: HttpStore,
    /// Reads the stored task and history directly (not through the server).
    check: &'a dyn Store,
    case: usize,
    injected: u64,
    unavailable: u64,
    retried: u64,
}

impl<'a> Harness<'a> {
    fn new(backend: &'a str, store: Arc<dyn Store>, check: &'a dyn Store) -> Harness<'a> {
        let server = TestServer::start(store, true);
        let operator = HttpStore::new(&server.url(), &server.operator_token())
            .unwrap()
            .with_exact_expiry();
        let worker_token = server.add_token("w1", Role::Worker);
        let worker = HttpStore::new(&server.url(), &worker_token)
            .unwrap()
            .with_exact_expiry();
        Harness {
            backend,
            server,
            operator,
            worker,
            check,
            case: 0,
            injected: 0,
            unavailable: 0,
            retried: 0,
        }
    }

    fn client(&self, op: &str) -> &HttpStore {
        client_for(op, &self.worker, &self.operator)
    }

    /// How many times `op` reaches the point `point` (a fresh task, no fault).
    fn measure(&mut self, op: &str, point: &str) -> u64 {
        if op == "reclaim" {
            // Tasks of earlier operations whose leases have run out would be
            // reclaimed too: clear them first so only this task counts.
            self.case += 1;
            let c = common::at(self.case, 10);
            self.operator.reclaim(5, &c).unwrap();
        }
        self.case += 1;
        let id = format!("m-{}-{op}-{}", point.replace("::", "-"), self.case);
        setup(op, &self.operator, &id, self.case);
        let before = failpoint::hits(point);
        run(op, self.client(op), &id, self.case).unwrap();
        failpoint::hits(point) - before
    }

    /// Run `op` on a fresh task with `point` configured to `actions`; check
    /// the outcome against the model.
    fn inject(&mut self, op: &str, point: &str, actions: &str, expect: Expect, fires: u64) {
        self.case += 1;
        let case = self.case;
        let what = format!("{} {op} at {point}={actions}", self.backend);
        let id = format!("f-{}-{op}-{case}", point.replace("::", "-"));
        let twin = MemoryStore::new();
        setup(op, &twin, &id, case);
        setup(op, &self.operator, &id, case);
        let before = snapshot(self.check, &id);
        let fired0 = failpoint::injected(point);
        failpoint::cfg(point, actions).unwrap();
        let r = run(op, self.client(op), &id, case);
        failpoint::remove(point);
        let fired = failpoint::injected(point) - fired0;
        assert_eq!(
            fired, fires,
            "{what}: the fault must fire exactly {fires} times"
        );
        self.injected += fired;
        let expected = run(op, &twin, &id, case);
        match expect {
            Expect::Unavailable => {
                let e = r.expect_err(&format!("{what}: must fail"));
                assert_eq!(e.code(), ErrorCode::Unavailable, "{what}: {e}");
                assert_eq!(
                    snapshot(self.check, &id),
                    before,
                    "{what}: changed something"
                );
                let again = run(op, self.client(op), &id, case);
                assert_eq!(
                    again.map_err(|e| e.code()),
                    expected.map_err(|e| e.code()),
                    "{what}: the retry must answer what the model answers"
                );
                self.unavailable += 1;
            }
            Expect::Retried => {
                assert_eq!(
                    r.map_err(|e| e.code()),
                    expected.map_err(|e| e.code()),
                    "{what}: the store's own retry must answer the model's answer"
                );
                self.retried += 1;
            }
        }
        // Either way the change is stored exactly once: task and history
        // equal the model's after the same calls.
        assert_eq!(
            snapshot(self.check, &id),
            snapshot(&twin, &id),
            "{what}: stored task and history differ from the model's"
        );
    }
}

/// `N*off->1*return(payload)`: fire at the N-th hit from now, once.
fn nth(n: u64, payload: &str) -> String {
    if n <= 1 {
        format!("1*return({payload})")
    } else {
        format!("{}*off->1*return({payload})", n - 1)
    }
}

#[test]
fn sqlite_faults_inside_the_backend_are_unavailable_change_nothing_and_retry_to_the_model() {
    let _s = Scenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bf.db");
    let store = Arc::new(leasehold_sqlite::SqliteStore::open(&path).unwrap());
    let check = leasehold_sqlite::SqliteStore::open(&path).unwrap();
    let mut h = Harness::new("sqlite", store, &check);
    let (mut statements, mut no_history) = (0, Vec::new());
    for op in OPS {
        let s = h.measure(op, "sqlite::statement");
        assert!(s >= 2, "sqlite {op}: only {s} statements counted");
        statements += s;
        for n in 1..=s {
            for payload in ["busy", "ioerr"] {
                h.inject(
                    op,
                    "sqlite::statement",
                    &nth(n, payload),
                    Expect::Unavailable,
                    1,
                );
            }
        }
        for point in ["sqlite::between_task_and_history", "sqlite::before_commit"] {
            let k = h.measure(op, point);
            if k == 0 && point == "sqlite::between_task_and_history" {
                // A heartbeat records no history entry: nothing to be between.
                no_history.push(op);
                continue;
            }
            assert_eq!(k, 1, "sqlite {op}: {point} once per write");
            for payload in ["busy", "ioerr"] {
                h.inject(op, point, &nth(1, payload), Expect::Unavailable, 1);
            }
        }
    }
    // On the wire: 503, Retry-After, a problem with code `unavailable`.
    h.case += 1;
    let id = "bf-raw";
    setup("dispatch", &h.operator, id, h.case);
    failpoint::cfg("sqlite::statement", "1*return(ioerr)").unwrap();
    let reply = rawhttp::request(
        &h.server.url(),
        "POST",
        &format!("/v1/tasks/{id}/dispatch"),
        &h.server.operator_token(),
        &[],
        None,
    )
    .unwrap();
    failpoint::remove("sqlite::statement");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.header("retry-after").is_some(), "{reply:?}");
    assert!(reply.body.contains("\"unavailable\""), "{reply:?}");
    assert_eq!(check.integrity_check().unwrap(), "ok");
    eprintln!(
        "sqlite backend faults: {} injected ({statements} statements over {} operations x busy/ioerr, + between task and history (not reached by {no_history:?}), + before commit), {} answered unavailable with nothing changed, every retry = model",
        h.injected,
        OPS.len(),
        h.unavailable
    );
    assert!(
        no_history.len() <= 1,
        "only heartbeats write no history: {no_history:?}"
    );
    // 2 payloads per statement, 2 per point per operation.
    let points = 2 * OPS.len() - no_history.len();
    assert_eq!(h.injected, 2 * statements + 2 * points as u64);
    assert_eq!(h.unavailable, h.injected);
}

#[test]
fn postgres_faults_inside_the_backend_are_retried_once_or_unavailable_never_partial() {
    let _s = Scenario::setup();
    let Some(cl) = leasehold_postgres::testing::shared() else {
        return;
    };
    let schema = leasehold_postgres::testing::unique_schema("bf");
    let store = Arc::new(cl.store(&schema));
    let check = cl.store(&schema);
    let mut h = Harness::new("postgres", store.clone(), &check);
    let stats0 = store.stats();
    let (mut statements, mut exhausted) = (0, 0);
    let retries = u64::from(leasehold_postgres::PgOptions::default().retries);
    for op in OPS {
        let s = h.measure(op, "pg::statement");
        assert!(s >= 1, "postgres {op}: no statement counted");
        statements += s;
        for n in 1..=s {
            for payload in ["serialization", "deadlock", "disconnect"] {
                h.inject(op, "pg::statement", &nth(n, payload), Expect::Retried, 1);
            }
        }
        assert_eq!(
            h.measure(op, "pg::before_commit"),
            1,
            "postgres {op}: before commit"
        );
        for payload in ["serialization", "deadlock", "disconnect"] {
            h.inject(
                op,
                "pg::before_commit",
                &nth(1, payload),
                Expect::Retried,
                1,
            );
        }
        // A fault that persists: the store gives up after its retries
        // (serialization: 1 + retries attempts; a lost connection: 2).
        h.inject(
            op,
            "pg::statement",
            "return(serialization)",
            Expect::Unavailable,
            1 + retries,
        );
        h.inject(
            op,
            "pg::statement",
            "return(disconnect)",
            Expect::Unavailable,
            2,
        );
        exhausted += 2;
    }
    let stats = store.stats();
    let serialization = stats.serialization_retries - stats0.serialization_retries;
    let reconnects = stats.reconnect_retries - stats0.reconnect_retries;
    // On the wire: a fault the store cannot retry away is 503 with Retry-After.
    h.case += 1;
    let id = "bf-raw";
    setup("dispatch", &h.operator, id, h.case);
    failpoint::cfg("pg::statement", "return(deadlock)").unwrap();
    let reply = rawhttp::request(
        &h.server.url(),
        "POST",
        &format!("/v1/tasks/{id}/dispatch"),
        &h.server.operator_token(),
        &[],
        None,
    )
    .unwrap();
    failpoint::remove("pg::statement");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.header("retry-after").is_some(), "{reply:?}");
    assert!(reply.body.contains("\"unavailable\""), "{reply:?}");
    eprintln!(
        "postgres backend faults: {} injected ({statements} statements over {} operations x serialization/deadlock/disconnect, + before commit, + {exhausted} persistent faults), {} rerun by the store with the model's answer ({serialization} serialization/deadlock retries, {reconnects} reconnects), {} answered unavailable with nothing changed",
        h.injected,
        OPS.len(),
        h.retried,
        h.unavailable
    );
    let ops = OPS.len() as u64;
    assert_eq!(h.retried, 3 * statements + 3 * ops);
    assert_eq!(h.unavailable, exhausted);
    // Every one-off fault was retried by the pool; persistent ones until it gave up.
    assert_eq!(serialization, 2 * statements + 2 * ops + retries * ops);
    assert_eq!(reconnects, statements + ops + ops);
}
