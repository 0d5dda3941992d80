//! Group commit, batch calls, the counts table and reads beside a writer.
//!
//! Outcomes are counted, never timed: a batch's answers are checked item by
//! item against what the store holds afterwards, and the group-commit
//! counters prove that operations really shared transactions.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{at, ctx};
use leasehold_core::limits::BATCH_ITEMS_MAX;
use leasehold_core::{
    BatchItem, ClaimRequest, Command, ErrorCode, Fence, ListFilter, NewTask, Store, Task, TaskState,
};
use leasehold_sqlite::{SqliteOptions, SqliteStore};

fn fence(t: &Task) -> Fence {
    Fence {
        owner: t.lease_owner.clone().expect("leased"),
        token: t.lease_token,
    }
}

fn store(dir: &tempfile::TempDir, name: &str) -> SqliteStore {
    SqliteStore::open(dir.path().join(name)).unwrap()
}

fn leased(s: &SqliteStore, n: usize) -> Vec<(String, Fence)> {
    (0..n)
        .map(|i| {
            let id = format!("t{i}");
            s.create(NewTask::new(id.clone(), format!("s{i}")), &ctx(0))
                .unwrap();
            let t = s.acquire_lease(&id, "w", at(60), &ctx(1)).unwrap();
            (id, fence(&t))
        })
        .collect()
}

#[test]
fn a_rejected_item_in_a_batch_changes_nothing_and_does_not_affect_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir, "batch.db");
    let leases = leased(&s, 3);
    let before_bad = s.require("t1").unwrap();
    let history_bad = s.history("t1").unwrap();
    let stale_fence = Fence {
        owner: "w".into(),
        token: leases[1].1.token + 7,
    };
    let items = vec![
        BatchItem {
            task_id: "t0".into(),
            command: Command::Heartbeat {
                fence: leases[0].1.clone(),
                expires_at: at(120),
            },
        },
        BatchItem {
            task_id: "t1".into(),
            command: Command::Complete {
                reason: None,
                fence: Some(stale_fence),
            },
        },
        BatchItem {
            task_id: "t2".into(),
            command: Command::Complete {
                reason: Some("done".into()),
                fence: Some(leases[2].1.clone()),
            },
        },
        BatchItem {
            task_id: "nope".into(),
            command: Command::Dispatch,
        },
    ];
    let stats_before = s.group_stats();
    let out = s.apply_many(items, &ctx(2)).unwrap();
    assert_eq!(out.len(), 4);
    assert_eq!(out[0].as_ref().unwrap().lease_expires_at, Some(at(120)));
    assert_eq!(
        out[1].as_ref().unwrap_err().code(),
        ErrorCode::LeaseConflict
    );
    assert_eq!(out[2].as_ref().unwrap().state, TaskState::Completed);
    let nf = out[3].as_ref().unwrap_err();
    assert_eq!(nf.code(), ErrorCode::NotFound);
    assert!(nf.message().contains("nope"), "{nf}");
    // One call on an idle store: all four items shared one transaction.
    let stats = s.group_stats();
    assert_eq!(stats.batches - stats_before.batches, 1, "{stats:?}");
    assert_eq!(stats.ops - stats_before.ops, 4, "{stats:?}");
    // What the store holds agrees item by item; the rejected one is untouched.
    assert_eq!(s.require("t0").unwrap().lease_expires_at, Some(at(120)));
    assert_eq!(s.require("t1").unwrap(), before_bad);
    assert_eq!(s.history("t1").unwrap(), history_bad);
    assert_eq!(s.require("t2").unwrap().state, TaskState::Completed);
    assert!(s.get("nope").unwrap().is_none());
    // And it survives a reopen (the batch really committed).
    let path = s.path().to_path_buf();
    drop(s);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.require("t2").unwrap().state, TaskState::Completed);
    assert_eq!(s.require("t1").unwrap(), before_bad);
}

#[test]
fn heartbeat_many_and_complete_many_fence_each_item() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir, "many.db");
    let mut leases = leased(&s, 5);
    leases[3].1.owner = "intruder".into();
    let hb = s.heartbeat_many(&leases, at(300), &ctx(2)).unwrap();
    let codes: Vec<_> = hb
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.code()))
        .collect();
    assert_eq!(
        codes,
        vec![None, None, None, Some(ErrorCode::LeaseConflict), None]
    );
    let done = s.complete_many(&leases, Some("ok"), &ctx(3)).unwrap();
    assert_eq!(done.iter().filter(|r| r.is_ok()).count(), 4);
    let c = s.counts().unwrap();
    assert_eq!((c[&TaskState::Completed], c[&TaskState::Running]), (4, 1));
    assert_eq!(s.require("t3").unwrap().lease_expires_at, Some(at(60)));
}

#[test]
fn an_oversized_batch_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir, "big.db");
    s.create(NewTask::new("a", "sa"), &ctx(0)).unwrap();
    let items = (0..=BATCH_ITEMS_MAX)
        .map(|_| BatchItem {
            task_id: "a".into(),
            command: Command::Dispatch,
        })
        .collect();
    let e = s.apply_many(items, &ctx(1)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert!(e.message().contains(&BATCH_ITEMS_MAX.to_string()), "{e}");
    assert_eq!(s.require("a").unwrap().state, TaskState::Planned);
    assert!(s.apply_many(Vec::new(), &ctx(1)).unwrap().is_empty());
}

/// 32 threads on one handle: operations are batched (fewer transactions than
/// operations), every operation gets its own answer, and the races inside a
/// batch still have exactly one winner.
#[test]
fn concurrent_callers_share_transactions_and_keep_their_own_answers() {
    const THREADS: usize = 32;
    const ROUNDS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(store(&dir, "group.db"));
    for r in 0..ROUNDS {
        s.create(NewTask::new(format!("r{r}"), format!("sr{r}")), &ctx(0))
            .unwrap();
    }
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|w| {
            let (s, barrier) = (Arc::clone(&s), Arc::clone(&barrier));
            thread::spawn(move || {
                let owner = format!("w{w}");
                let mut wins = Vec::new();
                for r in 0..ROUNDS {
                    barrier.wait();
                    match s.acquire_lease(&format!("r{r}"), &owner, at(600), &ctx(1)) {
                        Ok(t) => {
                            assert_eq!(t.lease_owner.as_deref(), Some(owner.as_str()));
                            wins.push(r);
                        }
                        Err(e) => assert_eq!(e.code(), ErrorCode::LeaseConflict, "{e}"),
                    }
                }
                (owner, wins)
            })
        })
        .collect();
    let mut winners = vec![Vec::new(); ROUNDS];
    for h in handles {
        let (owner, wins) = h.join().unwrap();
        for r in wins {
            winners[r].push(owner.clone());
        }
    }
    for (r, w) in winners.iter().enumerate() {
        assert_eq!(w.len(), 1, "round {r}: winners {w:?}");
        let t = s.require(&format!("r{r}")).unwrap();
        assert_eq!(t.lease_owner.as_ref(), Some(&w[0]));
        assert_eq!((t.lease_token, t.attempts), (1, 1));
        assert_eq!(s.history(&t.task_id).unwrap().len(), 2);
    }
    let stats = s.group_stats();
    // ROUNDS creates + THREADS × ROUNDS acquires went through group commit.
    assert_eq!(stats.ops, (ROUNDS + THREADS * ROUNDS) as u64, "{stats:?}");
    assert!(
        stats.batches < stats.ops / 2 && stats.largest > 1,
        "32 racing threads should have shared transactions: {stats:?}"
    );
    assert_eq!(s.integrity_check().unwrap(), "ok");
}

/// Reads use their own connections and WAL snapshots: they answer while
/// another connection holds the write lock (a write would have to wait).
#[test]
fn reads_answer_while_another_connection_holds_the_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reads.db");
    let opts = SqliteOptions {
        busy_timeout: Duration::from_millis(200),
        ..SqliteOptions::default()
    };
    let s = SqliteStore::open_with(&path, opts).unwrap();
    s.create(NewTask::new("a", "sa"), &ctx(0)).unwrap();
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    blocker
        .execute("UPDATE tasks SET priority = 5 WHERE task_id = 'a'", [])
        .unwrap();
    // Writes wait for the lock and give up: unavailable, nothing changed.
    let e = s.dispatch("a", &ctx(1)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    // Reads see the last committed state at once.
    assert_eq!(s.require("a").unwrap().priority, 0);
    assert_eq!(s.counts().unwrap()[&TaskState::Planned], 1);
    assert_eq!(
        s.list(&ListFilter::default(), None, None)
            .unwrap()
            .tasks
            .len(),
        1
    );
    assert!(s.list_stale(at(10)).unwrap().is_empty());
    assert_eq!(s.history("a").unwrap().len(), 1);
    blocker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(
        s.dispatch("a", &ctx(1)).unwrap().state,
        TaskState::Dispatched
    );
}

/// The trigger-maintained counts agree with the tasks after every kind of
/// write, per state and per queue, and a database from schema 1 gets its
/// counts built by the migration.
#[test]
fn counts_table_tracks_every_write_and_is_built_for_old_databases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counts.db");
    let s = SqliteStore::open(&path).unwrap();
    for i in 0..30 {
        let mut n = NewTask::new(format!("t{i}"), format!("s{i}"));
        n.queue = Some(format!("q{}", i % 3));
        s.create(n, &ctx(0)).unwrap();
    }
    for q in ["q0", "q1"] {
        let req = ClaimRequest {
            owner: "w".into(),
            queues: vec![q.into()],
            ttl: Duration::from_secs(10),
            limit: 6,
            max_attempts: None,
        };
        let got = s.claim(&req, &ctx(1)).unwrap();
        for t in got.iter().take(2) {
            s.complete(&t.task_id, None, Some(&fence(t)), &ctx(2))
                .unwrap();
        }
    }
    s.dispatch("t2", &ctx(2)).unwrap();
    s.reclaim(1, &ctx(100)).unwrap(); // attempts 1 >= 1: quarantined
    let mut moved = s.require("t5").unwrap();
    moved.queue = "q9".into();
    s.put(moved, None, &ctx(101)).unwrap();

    let check = |s: &SqliteStore| {
        let all = s
            .list(&ListFilter::default(), None, Some(1000))
            .unwrap()
            .tasks;
        let c = s.counts().unwrap();
        for st in TaskState::ALL {
            let n = all.iter().filter(|t| t.state == st).count() as u64;
            assert_eq!(c[&st], n, "{st}");
        }
        assert_eq!(c.values().sum::<u64>(), 30);
        assert_eq!(c[&TaskState::Quarantined], 8);
        // Per queue and state: the counter table agrees with the model's
        // definition (the trait's default, paging through every task).
        let mut by_queue = std::collections::BTreeMap::new();
        for t in &all {
            *by_queue.entry((t.queue.clone(), t.state)).or_insert(0u64) += 1;
        }
        assert_eq!(s.queue_counts().unwrap(), by_queue);
        assert_eq!(by_queue[&("q9".to_string(), TaskState::Planned)], 1);
    };
    check(&s);
    drop(s);
    // Turn the file back into schema 1 and reopen: migration 2 rebuilds.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "DROP TABLE task_counts; DROP TRIGGER task_counts_insert; \
         DROP TRIGGER task_counts_update; DROP TRIGGER task_counts_delete; \
         DROP INDEX tasks_queue; DROP INDEX tasks_owner; \
         UPDATE leasehold_schema SET version = 1;",
    )
    .unwrap();
    drop(raw);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(
        s.schema_version().unwrap(),
        leasehold_sqlite::migrations::SCHEMA_VERSION
    );
    check(&s);
}
