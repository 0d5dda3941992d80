//! PostgreSQL-specific behaviour the shared suite cannot see: migrations,
//! schemas, error normalisation, retries, the pool, and the guarantees the
//! database itself enforces (row locks, SKIP LOCKED, the guard trigger).

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use leasehold_conformance::support::{at, ctx};
use leasehold_core::{ClaimRequest, ErrorCode, NewTask, Store};
use leasehold_postgres::testing::{self, Cluster};
use leasehold_postgres::{schema, PgOptions, PgStore};

fn cluster() -> Option<&'static Cluster> {
    testing::shared()
}

fn new_task(id: &str) -> NewTask {
    NewTask::new(id, format!("saga-{id}"))
}

fn count(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).expect(sql).get(0)
}

#[test]
fn migrations_run_once_when_many_processes_start_together() {
    let Some(cl) = cluster() else { return };
    let schema_name = testing::unique_schema("mig");
    let url = cl.url_with_schema(&schema_name);
    let n = 12;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let url = url.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                PgStore::connect(&url).map(|s| s.schema().to_string())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap(), schema_name);
    }
    let mut c = cl.client();
    let rows = c
        .query(
            &format!("SELECT version FROM \"{schema_name}\".schema_migrations ORDER BY version"),
            &[],
        )
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=schema::SCHEMA_VERSION).collect::<Vec<_>>());
}

#[test]
fn schema_from_url_keeps_installations_apart() {
    let Some(cl) = cluster() else { return };
    let (a, b) = (
        testing::unique_schema("inst_a"),
        testing::unique_schema("inst_b"),
    );
    let sa = PgStore::connect(&cl.url_with_schema(&a)).unwrap();
    let sb = PgStore::connect(&cl.url_with_schema(&b)).unwrap();
    assert_eq!(sa.schema(), a);
    sa.create(new_task("same-id"), &ctx(0)).unwrap();
    sb.create(new_task("same-id"), &ctx(1)).unwrap();
    sb.dispatch("same-id", &ctx(2)).unwrap();
    assert_eq!(sa.require("same-id").unwrap().state.as_str(), "planned");
    assert_eq!(sb.require("same-id").unwrap().state.as_str(), "dispatched");
    let mut c = cl.client();
    for s in [&a, &b] {
        let tables = count(
            &mut c,
            &format!(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{s}' \
                 AND table_name IN ('tasks', 'task_history', 'schema_migrations')"
            ),
        );
        assert_eq!(tables, 3, "schema {s}");
    }
    // The option works too, and the URL parameter wins over it.
    let via_opt = cl.store(&a);
    assert_eq!(
        via_opt.require("same-id").unwrap().state.as_str(),
        "planned"
    );
    let url_wins = PgStore::connect_with(
        &cl.url_with_schema(&b),
        PgOptions {
            schema: a.clone(),
            ..PgOptions::default()
        },
    )
    .unwrap();
    assert_eq!(url_wins.schema(), b);
}

#[test]
fn schema_migrated_by_a_newer_leasehold_is_refused() {
    let Some(cl) = cluster() else { return };
    let s = testing::unique_schema("newer");
    cl.store(&s);
    let mut c = cl.client();
    c.execute(
        &format!("INSERT INTO \"{s}\".schema_migrations (version, name) VALUES (999, 'future')"),
        &[],
    )
    .unwrap();
    let e = PgStore::connect(&cl.url_with_schema(&s)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Internal, "{e}");
    assert!(e.message().contains("999"), "{e}");
}

#[test]
fn unreachable_server_is_unavailable_quickly() {
    // A port nothing listens on: bind, read it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let e =
        PgStore::connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    assert!(!e.message().contains("password"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn concurrent_creates_of_one_id_one_wins_the_rest_already_exists() {
    let Some(cl) = cluster() else { return };
    let store = cl.fresh_store();
    let n = 16;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let s = cl.store(store.schema());
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                // Same task id, different sagas; then different ids, same saga.
                let a = s.create(NewTask::new("dup", format!("saga-{i}")), &ctx(0));
                let b = s.create(NewTask::new(format!("other-{i}"), "shared-saga"), &ctx(0));
                (a, b)
            })
        })
        .collect();
    let (mut ok_a, mut ok_b) = (0, 0);
    for h in handles {
        let (a, b) = h.join().unwrap();
        match a {
            Ok(_) => ok_a += 1,
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::AlreadyExists, "{e}");
                assert!(e.message().contains("\"dup\""), "{e}");
            }
        }
        match b {
            Ok(_) => ok_b += 1,
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::AlreadyExists, "{e}");
                assert!(e.message().contains("shared-saga"), "{e}");
            }
        }
    }
    assert_eq!((ok_a, ok_b), (1, 1));
    let mut c = cl.client();
    let s = store.schema();
    assert_eq!(
        count(&mut c, &format!("SELECT count(*) FROM \"{s}\".tasks")),
        2
    );
    assert_eq!(
        count(
            &mut c,
            &format!("SELECT count(*) FROM \"{s}\".task_history")
        ),
        2,
        "one created entry per stored task, none for the losers"
    );
}

/// Wait (bounded) until a session of `app` waits on a lock.
fn wait_until_blocked(c: &mut postgres::Client, app: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
                 AND wait_event_type = 'Lock'",
                &[&app],
            )
            .unwrap()
            .get::<_, i64>(0);
        if n > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{app} never blocked on the row lock"
        );
        thread::yield_now();
    }
}

/// A serializable store whose transaction is forced into a serialization
/// failure: a raw session locks the task row, the store blocks on it, the raw
/// session updates the row and commits.
fn forced_serialization_failure(
    retries: u32,
) -> Option<(PgStore, leasehold_core::Result<leasehold_core::Task>)> {
    let cl = cluster()?;
    let s = testing::unique_schema("ser");
    let app = format!("ser_{s}");
    let url = format!(
        "{}?schema={s}&application_name={app}&options=-c%20default_transaction_isolation%3Dserializable",
        cl.url()
    );
    let store = PgStore::connect_with(
        &url,
        PgOptions {
            retries,
            ..PgOptions::default()
        },
    )
    .unwrap();
    store.create(new_task("t"), &ctx(0)).unwrap();
    let mut raw = cl.client();
    let mut tx = raw.transaction().unwrap();
    tx.query(
        &format!("SELECT 1 FROM \"{s}\".tasks WHERE task_id = 't' FOR UPDATE"),
        &[],
    )
    .unwrap();
    let worker = {
        let store = store.clone();
        thread::spawn(move || store.acquire_lease("t", "w1", at(60), &ctx(1)))
    };
    let mut watcher = cl.client();
    wait_until_blocked(&mut watcher, &app);
    // A harmless change that still obeys the guard: bump the version.
    tx.execute(
        &format!("UPDATE \"{s}\".tasks SET version = version + 1 WHERE task_id = 't'"),
        &[],
    )
    .unwrap();
    tx.commit().unwrap();
    Some((store, worker.join().unwrap()))
}

#[test]
fn serialization_failure_is_retried_inside_the_backend() {
    let Some((store, result)) = forced_serialization_failure(5) else {
        return;
    };
    let task = result.expect("the retried acquisition succeeds");
    assert_eq!(task.lease_owner.as_deref(), Some("w1"));
    assert_eq!(task.lease_token, 1);
    assert_eq!(
        task.version, 3,
        "read after the concurrent bump (2), then leased (3)"
    );
    assert!(
        store.stats().serialization_retries >= 1,
        "{:?}",
        store.stats()
    );
}

#[test]
fn serialization_failure_without_retries_left_is_unavailable() {
    let Some((store, result)) = forced_serialization_failure(0) else {
        return;
    };
    let e = result.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    assert!(e.is_retryable());
    let t = store.require("t").unwrap();
    assert_eq!(
        (t.lease_owner, t.lease_token, t.version),
        (None, 0, 2),
        "nothing applied"
    );
}

#[test]
fn database_refuses_a_token_going_back_or_a_terminal_task_changing_state() {
    let Some(cl) = cluster() else { return };
    let store = cl.fresh_store();
    let s = store.schema().to_string();
    store.create(new_task("t"), &ctx(0)).unwrap();
    store.acquire_lease("t", "w", at(60), &ctx(1)).unwrap();
    store.complete("t", Some("done"), None, &ctx(2)).unwrap();
    let mut c = cl.client();
    for sql in [
        format!("UPDATE \"{s}\".tasks SET lease_token = 0, version = version + 1"),
        format!("UPDATE \"{s}\".tasks SET state = 'dispatched', version = version + 1"),
        format!("UPDATE \"{s}\".tasks SET priority = 5"),
    ] {
        let e = c.execute(&sql, &[]).unwrap_err();
        let db = e.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "LH001", "{sql}: {db}");
        assert!(
            db.message().contains("\"t\"") || db.message().contains(" t "),
            "{db}"
        );
    }
    let t = store.require("t").unwrap();
    assert_eq!((t.state.as_str(), t.lease_token), ("completed", 1));
}

#[test]
fn timestamps_are_bigint_microseconds() {
    let Some(cl) = cluster() else { return };
    let store = cl.fresh_store();
    let s = store.schema().to_string();
    let t = store.create(new_task("t"), &ctx(0)).unwrap();
    store.acquire_lease("t", "w", at(60), &ctx(1)).unwrap();
    let mut c = cl.client();
    let row = c
        .query_one(
            &format!("SELECT created_at, lease_expires_at FROM \"{s}\".tasks WHERE task_id = 't'"),
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), t.created_at.as_micros());
    assert_eq!(row.get::<_, Option<i64>>(1), Some(at(60).as_micros()));
}

#[test]
fn claim_skips_rows_locked_by_another_transaction_without_waiting() {
    let Some(cl) = cluster() else { return };
    let store = cl.fresh_store();
    let s = store.schema().to_string();
    for (id, prio) in [("high", 9), ("low", 1)] {
        let mut n = new_task(id);
        n.priority = Some(prio);
        store.create(n, &ctx(0)).unwrap();
    }
    let mut raw = cl.client();
    let mut tx = raw.transaction().unwrap();
    tx.query(
        &format!("SELECT 1 FROM \"{s}\".tasks WHERE task_id = 'high' FOR UPDATE"),
        &[],
    )
    .unwrap();
    let req = ClaimRequest {
        owner: "w".into(),
        queues: vec![],
        ttl: Duration::from_secs(30),
        limit: 1,
        max_attempts: None,
    };
    // Runs while the lock is held: it would block forever without SKIP LOCKED.
    let got = store.claim(&req, &ctx(1)).unwrap();
    assert_eq!(
        got.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(),
        ["low"]
    );
    tx.rollback().unwrap();
    let got = store.claim(&req, &ctx(2)).unwrap();
    assert_eq!(
        got.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(),
        ["high"]
    );
}

#[test]
fn text_postgres_cannot_store_is_invalid_input_and_changes_nothing() {
    let Some(cl) = cluster() else { return };
    let store = cl.fresh_store();
    store.create(new_task("t"), &ctx(0)).unwrap();
    let before = store.require("t").unwrap();
    let e = store
        .annotate("t", "op", "nul \u{0} inside", &ctx(1))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput, "{e}");
    assert_eq!(store.require("t").unwrap(), before);
    assert_eq!(store.history("t").unwrap().len(), 1);
}

#[test]
fn pool_drops_killed_connections_and_the_next_call_succeeds() {
    let Some(cl) = cluster() else { return };
    let s = testing::unique_schema("kill");
    let app = format!("kill_{s}");
    let store = PgStore::connect_with(
        &format!("{}?schema={s}&application_name={app}", cl.url()),
        PgOptions {
            pool_size: 4,
            ..PgOptions::default()
        },
    )
    .unwrap();
    // Open several connections by using them at once.
    thread::scope(|sc| {
        for i in 0..4 {
            let store = &store;
            sc.spawn(move || store.create(new_task(&format!("t{i}")), &ctx(0)).unwrap());
        }
    });
    let mut c = cl.client();
    let killed = count(
        &mut c,
        &format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = '{app}') k"
        ),
    );
    assert!(killed >= 1, "no connection of the store was found");
    // Termination is asynchronous: wait (bounded) until they are gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(
        &mut c,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'"),
    ) > 0
    {
        assert!(
            Instant::now() < deadline,
            "the store's sessions survived termination"
        );
        thread::yield_now();
    }
    // Every idle connection is dead now; the calls still succeed.
    store.dispatch("t0", &ctx(1)).unwrap();
    assert_eq!(store.list_in_flight().unwrap().len(), 4);
    assert!(store.stats().dropped_broken >= 1, "{:?}", store.stats());
}

#[test]
fn pool_size_bounds_connections_and_busy_pool_times_out_as_unavailable() {
    let Some(cl) = cluster() else { return };
    let s = testing::unique_schema("busy");
    let store = PgStore::connect_with(
        &cl.url_with_schema(&s),
        PgOptions {
            pool_size: 1,
            checkout_timeout: Duration::from_millis(200),
            ..PgOptions::default()
        },
    )
    .unwrap();
    store.create(new_task("t"), &ctx(0)).unwrap();
    // Hold the row lock elsewhere so that the store's only connection blocks.
    let mut raw = cl.client();
    let mut tx = raw.transaction().unwrap();
    tx.query(
        &format!("SELECT 1 FROM \"{s}\".tasks WHERE task_id = 't' FOR UPDATE"),
        &[],
    )
    .unwrap();
    let blocked = {
        let store = store.clone();
        thread::spawn(move || store.dispatch("t", &ctx(1)))
    };
    let mut watcher = cl.client();
    // The store's application_name is the default; find it by its query.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND query LIKE '%' || $1 || '%'",
                &[&s],
            )
            .unwrap()
            .get(0);
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the store never blocked");
        thread::yield_now();
    }
    let e = store.get("t").unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    assert!(e.message().contains("pool_size"), "{e}");
    tx.commit().unwrap();
    assert_eq!(
        blocked.join().unwrap().unwrap().state.as_str(),
        "dispatched"
    );
    assert_eq!(store.stats().connects, 1);
}

#[test]
fn concurrent_puts_inserting_one_task_all_succeed_and_insert_once() {
    let Some(cl) = cluster() else { return };
    let store = cl.fresh_store();
    // A task as the model would store it, written by 12 puts at once: one
    // inserts, the others lose the insert race, run again as updates, and
    // find nothing to change.
    let template = {
        let probe = leasehold_core::memory::MemoryStore::new();
        probe.create(new_task("p"), &ctx(0)).unwrap()
    };
    let n = 12;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let s = cl.store(store.schema());
            let (barrier, task) = (barrier.clone(), template.clone());
            thread::spawn(move || {
                barrier.wait();
                s.put(task, None, &ctx(1))
            })
        })
        .collect();
    for h in handles {
        let t = h.join().unwrap().expect("every put succeeds");
        assert_eq!((t.task_id.as_str(), t.version), ("p", 1));
    }
    let history = store.history("p").unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].kind.as_str(), "imported");
}

#[test]
fn too_many_connections_is_unavailable_and_permission_denied_is_internal() {
    let Some(cl) = cluster() else { return };
    let schema_name = testing::unique_schema("roles");
    cl.store(&schema_name);
    let role = format!("r_{schema_name}");
    let mut c = cl.client();
    // A plain role (superusers ignore connection limits) with one connection.
    c.batch_execute(&format!("CREATE ROLE {role} LOGIN CONNECTION LIMIT 1"))
        .unwrap();
    let url = format!(
        "postgres://{role}@127.0.0.1:{}/postgres?schema={schema_name}",
        cl.port()
    );
    // No rights on the schema: the migration check is refused.
    let e = PgStore::connect(&url).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Internal, "{e}");
    assert!(e.message().contains("permission denied"), "{e}");
    // The refused store's connection closes asynchronously on the server;
    // wait (bounded) until the role has no session left.
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(
        &mut c,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'"),
    ) > 0
    {
        assert!(Instant::now() < deadline, "{role} kept a session");
        thread::yield_now();
    }
    // Its only connection taken, the next one is refused by the server.
    let _held = postgres::Client::connect(
        &format!("postgres://{role}@127.0.0.1:{}/postgres", cl.port()),
        postgres::NoTls,
    )
    .unwrap();
    let e = PgStore::connect(&url).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    assert!(e.message().contains("too many connections"), "{e}");
}

#[test]
fn racing_puts_taking_one_saga_id_one_wins_the_other_already_exists() {
    let Some(cl) = cluster() else { return };
    let store = cl.fresh_store();
    for round in 0..20 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        let ta = store.create(new_task(&a), &ctx(0)).unwrap();
        let tb = store.create(new_task(&b), &ctx(0)).unwrap();
        let wanted = format!("wanted-{round}");
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = [ta, tb]
            .into_iter()
            .map(|mut t| {
                let s = cl.store(store.schema());
                let barrier = barrier.clone();
                t.saga_id = wanted.clone();
                thread::spawn(move || {
                    barrier.wait();
                    s.put(t, None, &ctx(1))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        let e = results.into_iter().find_map(|r| r.err()).unwrap();
        assert_eq!(e.code(), ErrorCode::AlreadyExists, "{e}");
        assert!(e.message().contains(&wanted), "{e}");
    }
}

/// Regression: `leasehold serve --db postgres://…` panicked at shutdown
/// ("Cannot drop a runtime in a context where blocking is not allowed") when
/// the server dropped its last store handle on a Tokio thread: each pooled
/// connection owns a small runtime of its own.
#[test]
fn dropping_a_store_inside_a_tokio_runtime_does_not_panic() {
    let Some(cl) = cluster() else { return };
    let store = cl.store(&testing::unique_schema("drop_rt"));
    store.create(new_task("t"), &ctx(0)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async move { drop(store) });
}
