//! SQLite-specific behaviour the shared suite cannot see: schema versioning,
//! error mapping (busy, corruption, out-of-range integers), readers not
//! blocking behind a writer, and opening odd paths.

mod common;

use std::time::Duration;

use common::{at, ctx};
use leasehold_core::{ErrorCode, NewTask, Store, TaskState};
use leasehold_sqlite::migrations::SCHEMA_VERSION;
use leasehold_sqlite::{SqliteOptions, SqliteStore};
use rusqlite::Connection;

fn new_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("t.db")).unwrap();
    (dir, store)
}

fn raw(store: &SqliteStore) -> Connection {
    let c = Connection::open(store.path()).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

#[test]
fn open_is_idempotent_and_records_the_schema_version() {
    let (_dir, store) = new_store();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    store.create(NewTask::new("a", "sa"), &ctx(0)).unwrap();
    let path = store.path().to_path_buf();
    drop(store);
    for _ in 0..3 {
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(s.require("a").unwrap().version, 1);
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }
    let c = Connection::open(&path).unwrap();
    let rows: i64 = c
        .query_row("SELECT COUNT(*) FROM leasehold_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1, "reopening must not add version rows");
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_newer_schema_is_refused_with_a_clear_error() {
    let (_dir, store) = new_store();
    let path = store.path().to_path_buf();
    drop(store);
    Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE leasehold_schema SET version = ?1",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput, "{err}");
    assert!(err.message().contains("newer"), "{err}");
    assert!(
        err.message().contains(&format!("{}", SCHEMA_VERSION + 1)),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput, "{err}");
    assert!(err.message().contains("junk.db"), "{err}");

    let err = SqliteStore::open(dir.path().join("no/such/dir/x.db")).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput, "{err}");

    let err = SqliteStore::open(":memory:").unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput, "{err}");
    assert!(err.message().contains("WAL"), "{err}");
}

#[test]
fn a_held_write_lock_makes_writes_unavailable_but_not_reads() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions {
        busy_timeout: Duration::from_millis(100),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(dir.path().join("t.db"), opts).unwrap();
    store.create(NewTask::new("a", "sa"), &ctx(0)).unwrap();

    let mut other = raw(&store);
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    tx.execute("UPDATE tasks SET priority = 7 WHERE task_id = 'a'", [])
        .unwrap();

    let err = store.acquire_lease("a", "w", at(60), &ctx(1)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unavailable, "{err}");
    assert!(err.is_retryable());
    let err = store.create(NewTask::new("b", "sb"), &ctx(1)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unavailable, "{err}");
    // Reads are served from the last committed snapshot, without waiting.
    let a = store.require("a").unwrap();
    assert_eq!((a.priority, a.state), (0, TaskState::Planned));
    assert!(store.get("b").unwrap().is_none());
    assert_eq!(store.counts().unwrap()[&TaskState::Planned], 1);

    tx.rollback().unwrap();
    // Nothing of the failed calls was written; once the lock is free it works.
    assert_eq!(store.history("a").unwrap().len(), 1);
    let t = store.acquire_lease("a", "w", at(60), &ctx(1)).unwrap();
    assert_eq!(t.lease_token, 1);
}

#[test]
fn corrupt_rows_are_internal_errors_and_never_written_over() {
    let (_dir, store) = new_store();
    for id in ["bad-state", "bad-json", "bad-invariant", "bad-type", "good"] {
        store
            .create(NewTask::new(id, format!("saga-{id}")), &ctx(0))
            .unwrap();
    }
    let c = raw(&store);
    c.execute_batch(
        "UPDATE tasks SET state = 'exploded' WHERE task_id = 'bad-state';
         UPDATE tasks SET metadata = '{not json' WHERE task_id = 'bad-json';
         UPDATE tasks SET state = 'running' WHERE task_id = 'bad-invariant';
         UPDATE tasks SET priority = 'high' WHERE task_id = 'bad-type';",
    )
    .unwrap();
    for (id, needle) in [
        ("bad-state", "exploded"),
        ("bad-json", "metadata"),
        ("bad-invariant", "running"),
        ("bad-type", "priority"),
    ] {
        let err = store.get(id).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Internal, "{id}: {err}");
        assert!(err.message().contains(id), "{id}: {err}");
        assert!(err.message().contains(needle), "{id}: {err}");
        // A write never feeds a corrupt row to the state machine.
        let err = store.dispatch(id, &ctx(1)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Internal, "{id}: {err}");
        assert_eq!(history_len_raw(&c, id), 1, "{id}: nothing appended");
    }
    // Listing fails loudly too, rather than skipping rows.
    let err = store.list(&Default::default(), None, None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Internal);
    // The healthy task is unaffected.
    assert_eq!(
        store.dispatch("good", &ctx(1)).unwrap().state,
        TaskState::Dispatched
    );
    c.execute(
        "UPDATE tasks SET state = 'exploded2' WHERE task_id = 'good'",
        [],
    )
    .unwrap();
    let err = store.counts().unwrap_err();
    assert_eq!(err.code(), ErrorCode::Internal);
    assert!(err.message().contains("exploded"), "{err}");
}

/// History rows of `id`, counted behind the store's back.
fn history_len_raw(c: &Connection, id: &str) -> i64 {
    c.query_row(
        "SELECT COUNT(*) FROM history WHERE task_id = ?1",
        [id],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn tokens_beyond_i64_are_refused_not_wrapped() {
    let (_dir, store) = new_store();
    let mut t = store.create(NewTask::new("a", "sa"), &ctx(0)).unwrap();
    t.lease_token = u64::MAX;
    let err = store.put(t.clone(), None, &ctx(1)).unwrap_err();
    // The lease-fields rule wins for an update; an insert reaches the storage limit.
    assert_eq!(err.code(), ErrorCode::LeaseConflict, "{err}");
    t.task_id = "b".into();
    t.saga_id = "sb".into();
    let err = store.put(t, None, &ctx(1)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput, "{err}");
    assert!(err.message().contains("lease_token"), "{err}");
    assert!(store.get("b").unwrap().is_none(), "nothing written");
}

#[test]
fn history_rows_commit_with_their_task() {
    let (_dir, store) = new_store();
    store.create(NewTask::new("a", "sa"), &ctx(0)).unwrap();
    store.acquire_lease("a", "w", at(60), &ctx(1)).unwrap();
    // A rejected command leaves both the row and the history as they were.
    let err = store.acquire_lease("a", "v", at(60), &ctx(2)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::LeaseConflict);
    let h = store.history("a").unwrap();
    assert_eq!(
        h.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["created", "leased"]
    );
    assert_eq!(store.require("a").unwrap().version, 2);
}

#[test]
fn an_up_to_date_database_opens_while_another_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).unwrap();
    store.create(NewTask::new("a", "sa"), &ctx(0)).unwrap();
    let mut other = raw(&store);
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let opts = SqliteOptions {
        busy_timeout: Duration::from_millis(50),
        ..SqliteOptions::default()
    };
    let second = SqliteStore::open_with(&path, opts).expect("open needs no write lock");
    assert_eq!(second.require("a").unwrap().version, 1);
    drop(tx);
}

#[test]
fn a_cursor_past_every_row_gives_an_empty_page() {
    let (_dir, store) = new_store();
    store.create(NewTask::new("a", "sa"), &ctx(0)).unwrap();
    let page = store
        .list(
            &Default::default(),
            Some(&format!("s{}", u64::MAX - 1)),
            None,
        )
        .unwrap();
    assert!(page.tasks.is_empty() && page.next_cursor.is_none());
    let err = store
        .list(&Default::default(), Some("nope"), None)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
}
