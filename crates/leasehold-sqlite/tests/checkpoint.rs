//! WAL checkpoints happen in the background, never inside a commit, and keep
//! the log bounded under a constant stream of writes; reclaim holds the
//! writer for bounded chunks.
//!
//! Outcomes are counted, never timed: the checkpoint test writes until the
//! background checkpointer has copied a given amount (with a generous
//! deadline in case it never does) and checks the log file's size all along.

mod common;

use common::{at, ctx};
use leasehold_core::{HistoryKind, NewTask, Store, TaskState};
use leasehold_sqlite::{SqliteStore, RECLAIM_TRANSACTION_MAX, WAL_RESTART_FRAMES};

/// Writing far more than the log may hold, without pause, leaves a bounded
/// log file: the background checkpointer copies it into the database and the
/// log starts over, even though some commit is always appending (the
/// catch-up pass). The data survives a reopen and the file is sound.
#[test]
fn a_constant_stream_of_commits_is_checkpointed_in_the_background_with_a_bounded_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let wal = dir.path().join("c.db-wal");
    let store = SqliteStore::open(&path).unwrap();
    // ~24 KiB of metadata per task: a dozen overflow pages per commit.
    let blob = "x".repeat(24 * 1024);
    // 64 MiB of 2 KiB pages copied: eight times what the log may hold.
    let goal = 8 * 4 * WAL_RESTART_FRAMES;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let mut written = 0usize;
    let mut wal_max = 0u64;
    while store.checkpoint_stats().frames < goal {
        assert!(
            std::time::Instant::now() < deadline,
            "the checkpointer copied only {:?} after {written} commits",
            store.checkpoint_stats()
        );
        let mut t = NewTask::new(format!("t{written}"), format!("s{written}"));
        t.metadata = Some(serde_json::json!({ "blob": blob, "n": written }));
        store.create(t, &ctx(0)).unwrap();
        written += 1;
        wal_max = wal_max.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    let stats = store.checkpoint_stats();
    eprintln!("{written} commits, log file at most {wal_max} bytes, {stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");
    // Unbounded, the log would hold all 64 MiB; bounded, it holds the
    // restart threshold plus what arrives during one interval and pass.
    assert!(
        wal_max <= 32 * 1024 * 1024,
        "the log grew to {wal_max} bytes: {stats:?}"
    );
    drop(store);
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(again.integrity_check().unwrap(), "ok");
    let last = again.require(&format!("t{}", written - 1)).unwrap();
    assert_eq!(last.metadata["n"], serde_json::json!(written - 1));
    assert_eq!(
        again.counts().unwrap()[&TaskState::Planned],
        written as u64,
        "every acknowledged create is there"
    );
}

/// A reclaim of many stale tasks runs as several short transactions of at
/// most `RECLAIM_TRANSACTION_MAX` tasks (heartbeats commit in between), and
/// answers exactly what one big transaction answered: every stale task,
/// oldest expiry first, each with its `expired` history entry.
#[test]
fn reclaim_runs_in_bounded_transactions_and_answers_every_stale_task_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("r.db")).unwrap();
    let n = 2 * RECLAIM_TRANSACTION_MAX + RECLAIM_TRANSACTION_MAX / 2;
    // Created in one order, expiring in the reverse one.
    for i in 0..n {
        let id = format!("t{i:04}");
        store
            .create(NewTask::new(id.clone(), format!("s{i}")), &ctx(0))
            .unwrap();
        store
            .acquire_lease(&id, "w", at(1000 - i as i64), &ctx(1))
            .unwrap();
    }
    // One task that is not stale stays leased.
    store
        .create(NewTask::new("fresh", "s-fresh"), &ctx(0))
        .unwrap();
    store
        .acquire_lease("fresh", "w", at(5000), &ctx(1))
        .unwrap();
    let before = store.group_stats().batches;
    let got = store.reclaim(10, &ctx(2000)).unwrap();
    let transactions = store.group_stats().batches - before;
    let ids: Vec<String> = got.iter().map(|t| t.task_id.clone()).collect();
    let want: Vec<String> = (0..n).rev().map(|i| format!("t{i:04}")).collect();
    assert_eq!(ids, want, "every stale task, oldest expiry first");
    assert!(got.iter().all(|t| t.state == TaskState::Dispatched));
    assert_eq!(
        transactions as usize,
        n.div_ceil(RECLAIM_TRANSACTION_MAX),
        "one transaction per chunk of {RECLAIM_TRANSACTION_MAX}"
    );
    for id in &want {
        let h = store.history(id).unwrap();
        assert_eq!(h.last().unwrap().kind, HistoryKind::Expired, "{id}: {h:?}");
    }
    assert_eq!(store.require("fresh").unwrap().state, TaskState::Running);
    // Nothing stale is left: the next pass is one empty transaction.
    assert!(store.reclaim(10, &ctx(2000)).unwrap().is_empty());
}
