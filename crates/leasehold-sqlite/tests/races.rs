//! Real races on one SQLite file: many handles (own connections), real threads.
//!
//! The assertion is on counted outcomes, never on timing: every round has
//! exactly one winner and every loser gets `lease_conflict`. A `busy`
//! (`unavailable`) error would mean the busy timeout is not doing its job, so
//! it is counted and fails the test.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;

use common::{at, ctx};
use leasehold_core::{ErrorCode, NewTask, Store, TaskState};
use leasehold_sqlite::SqliteStore;

const THREADS: usize = 32;
const ROUNDS: usize = 200;

#[test]
fn acquire_race_32_handles_200_rounds_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let setup = SqliteStore::open(&path).unwrap();
    for r in 0..ROUNDS {
        setup
            .create(
                NewTask::new(format!("race-{r}"), format!("saga-{r}")),
                &ctx(0),
            )
            .unwrap();
    }
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|w| {
            let store = SqliteStore::open(&path).unwrap();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let owner = format!("worker-{w}");
                // Per round: did this worker win, lose with lease_conflict, or hit something else?
                let mut outcomes = Vec::with_capacity(ROUNDS);
                for r in 0..ROUNDS {
                    barrier.wait();
                    let res = store.acquire_lease(&format!("race-{r}"), &owner, at(600), &ctx(1));
                    outcomes.push(match res {
                        Ok(t) => {
                            assert_eq!(t.lease_owner.as_deref(), Some(owner.as_str()));
                            Ok(())
                        }
                        Err(e) => Err(e),
                    });
                }
                outcomes
            })
        })
        .collect();
    let results: Vec<_> = workers.into_iter().map(|h| h.join().unwrap()).collect();

    let mut busy = 0;
    let mut other = Vec::new();
    for r in 0..ROUNDS {
        let mut winners = Vec::new();
        let mut conflicts = 0;
        for (w, outcomes) in results.iter().enumerate() {
            match &outcomes[r] {
                Ok(()) => winners.push(w),
                Err(e) if e.code() == ErrorCode::LeaseConflict => conflicts += 1,
                Err(e) if e.code() == ErrorCode::Unavailable => busy += 1,
                Err(e) => other.push(format!("round {r} worker {w}: {e:?}")),
            }
        }
        assert_eq!(winners.len(), 1, "round {r}: winners {winners:?}");
        assert_eq!(conflicts, THREADS - 1, "round {r}: conflicts");
        // The stored task agrees with the winner: owner, token 1, one attempt.
        let t = setup.require(&format!("race-{r}")).unwrap();
        assert_eq!(t.state, TaskState::Running);
        assert_eq!(t.lease_owner, Some(format!("worker-{}", winners[0])));
        assert_eq!((t.lease_token, t.attempts, t.version), (1, 1, 2));
        let history = setup.history(&t.task_id).unwrap();
        assert_eq!(history.len(), 2, "created + exactly one leased entry");
    }
    assert_eq!(busy, 0, "busy errors despite busy_timeout");
    assert!(other.is_empty(), "unexpected errors: {other:?}");
    assert_eq!(setup.integrity_check().unwrap(), "ok");
}

/// The same race through one shared handle (the in-process writer mutex) and
/// through `claim`: every task is leased exactly once across threads.
#[test]
fn claim_race_one_shared_handle_each_task_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("claim.db")).unwrap());
    const TASKS: usize = 300;
    for i in 0..TASKS {
        store
            .create(
                NewTask::new(format!("t-{i:04}"), format!("s-{i:04}")),
                &ctx(0),
            )
            .unwrap();
    }
    let handles: Vec<_> = (0..8)
        .map(|w| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                let req = leasehold_core::ClaimRequest {
                    owner: format!("w{w}"),
                    queues: vec![],
                    ttl: std::time::Duration::from_secs(3600),
                    limit: 1 + (w as u32 % 4),
                    max_attempts: None,
                };
                let mut mine = Vec::new();
                loop {
                    let got = store.claim(&req, &ctx(1)).unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|t| t.task_id));
                }
            })
        })
        .collect();
    let mut all: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(n, TASKS, "claimed count");
    assert_eq!(all.len(), TASKS, "some task was claimed twice");
    let counts = store.counts().unwrap();
    assert_eq!(counts[&TaskState::Running], TASKS as u64);
}
