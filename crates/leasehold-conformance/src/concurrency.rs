//! Races with real threads, each on its own handle (`Harness::another`):
//! one winner per lease race, every task claimed exactly once, a terminal
//! transition beats racing worker writes, duplicate creates and concurrent
//! reapers. The macro runs modest sizes; the `*_sized` functions take sizes
//! so a backend can run the full 200-round version in its own tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use leasehold_core::{ErrorCode, Store, TaskState};

use crate::claim::req;
use crate::support::*;
use crate::Harness;

/// A barrier that fails instead of hanging. `std::sync::Barrier` waits
/// forever for a thread that panicked before reaching it, so one failing
/// assertion in a race turned into a hang until the test runner's timeout.
/// Here a thread that panics while holding a [`GateGuard`] breaks the gate:
/// every thread waiting on it, and every thread arriving later, panics with
/// a message pointing at the first panic.
struct Gate {
    parties: usize,
    state: Mutex<GateState>,
    turned: Condvar,
}

#[derive(Default)]
struct GateState {
    arrived: usize,
    generation: u64,
    broken: bool,
}

/// Breaks its [`Gate`] if the thread holding it unwinds.
struct GateGuard(Arc<Gate>);

impl Drop for GateGuard {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.lock().broken = true;
            self.0.turned.notify_all();
        }
    }
}

impl Gate {
    fn new(parties: usize) -> Arc<Gate> {
        Arc::new(Gate {
            parties,
            state: Mutex::default(),
            turned: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Held by each racing thread for its whole life.
    fn guard(self: &Arc<Self>) -> GateGuard {
        GateGuard(Arc::clone(self))
    }

    /// Wait until all parties arrive; panic if another party panicked.
    fn wait(&self) {
        const BROKEN: &str = "another thread of this race panicked (see its message above)";
        let mut st = self.lock();
        assert!(!st.broken, "{BROKEN}");
        st.arrived += 1;
        if st.arrived == self.parties {
            st.arrived = 0;
            st.generation += 1;
            self.turned.notify_all();
            return;
        }
        let generation = st.generation;
        while st.generation == generation && !st.broken {
            st = self.turned.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        assert!(st.generation != generation, "{BROKEN}");
    }
}

/// Per round: (thread, `None` on success or the error code).
type Outcomes = BTreeMap<usize, Vec<(usize, Option<ErrorCode>)>>;

/// Threads per lease race in the quick tier (SEED-SCENARIOS: 32).
pub const RACE_THREADS: usize = 32;
/// Rounds per lease race in the quick tier (the full tier runs 200).
pub const RACE_ROUNDS_QUICK: usize = 20;

/// 32 threads race `acquire_lease` on one task, 20 rounds.
pub fn lease_race<H: Harness>(h: &H) {
    lease_race_sized(h, RACE_ROUNDS_QUICK, RACE_THREADS);
}

/// `threads` threads race `acquire_lease` on a fresh task, `rounds` times:
/// exactly one winner per round, every other thread `lease_conflict`, and
/// the stored owner is the winner with token 1.
pub fn lease_race_sized<H: Harness>(h: &H, rounds: usize, threads: usize) {
    assert!(threads >= 2 && rounds >= 1);
    let s = h.fresh();
    for r in 0..rounds {
        create(&s, &format!("race-{r}"), 0);
    }
    let handles: Vec<H::S> = (0..threads).map(|_| h.another(&s)).collect();
    let barrier = Gate::new(threads);
    // outcomes[round] = list of (thread, Ok | error code)
    let outcomes: Arc<Mutex<Outcomes>> = Arc::default();
    thread::scope(|scope| {
        for (i, store) in handles.into_iter().enumerate() {
            let barrier = Arc::clone(&barrier);
            let outcomes = Arc::clone(&outcomes);
            scope.spawn(move || {
                let _guard = barrier.guard();
                for r in 0..rounds {
                    barrier.wait();
                    let res = store.acquire_lease(
                        &format!("race-{r}"),
                        &format!("w{i}"),
                        at(600),
                        &ctx(1),
                    );
                    let code = res.err().map(|e| e.code());
                    outcomes
                        .lock()
                        .unwrap()
                        .entry(r)
                        .or_default()
                        .push((i, code));
                }
            });
        }
    });
    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), rounds);
    for (r, results) in outcomes.iter() {
        assert_eq!(results.len(), threads);
        let winners: Vec<usize> = results
            .iter()
            .filter(|(_, c)| c.is_none())
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "round {r}: winners {winners:?}");
        for (i, c) in results {
            if let Some(c) = c {
                assert_eq!(*c, ErrorCode::LeaseConflict, "round {r} thread {i}");
            }
        }
        let t = get(&s, &format!("race-{r}"));
        assert_eq!(t.lease_owner, Some(format!("w{}", winners[0])));
        assert_eq!((t.lease_token, t.attempts), (1, 1));
        assert_eq!(history(&s, &t.task_id).len(), 2, "one created, one leased");
    }
}

/// Many threads `claim` until the queue is empty: every task is leased
/// exactly once.
pub fn claim_race<H: Harness>(h: &H) {
    claim_race_sized(h, 60, 8);
}

/// `tasks` tasks, `threads` claimers (batches of 1–3) until each gets an
/// empty result: every task claimed exactly once, by the owner that got it.
pub fn claim_race_sized<H: Harness>(h: &H, tasks: usize, threads: usize) {
    let s = h.fresh();
    for i in 0..tasks {
        task(&format!("job-{i:04}"))
            .priority((i % 3) as i32)
            .create(&s, 0);
    }
    let handles: Vec<H::S> = (0..threads).map(|_| h.another(&s)).collect();
    let barrier = Gate::new(threads);
    let claimed: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    thread::scope(|scope| {
        for (i, store) in handles.into_iter().enumerate() {
            let barrier = Arc::clone(&barrier);
            let claimed = Arc::clone(&claimed);
            scope.spawn(move || {
                let _guard = barrier.guard();
                let owner = format!("w{i}");
                barrier.wait();
                for round in 0.. {
                    let limit = 1 + ((i + round) % 3) as u32;
                    let got = store
                        .claim(&req(&owner, &[], 600, limit), &ctx(1))
                        .unwrap_or_else(|e| panic!("{owner} claim failed: {e}"));
                    assert!(got.len() <= limit as usize);
                    if got.is_empty() {
                        break;
                    }
                    let mut c = claimed.lock().unwrap();
                    c.extend(got.into_iter().map(|t| (t.task_id, owner.clone())));
                }
            });
        }
    });
    let claimed = claimed.lock().unwrap();
    let mut by_task: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (t, o) in claimed.iter() {
        by_task.entry(t).or_default().push(o);
    }
    assert_eq!(by_task.len(), tasks, "not every task was claimed");
    for (t, owners) in &by_task {
        assert_eq!(owners.len(), 1, "{t} claimed by {owners:?}");
        let stored = get(&s, t);
        assert_eq!(stored.state, TaskState::Running);
        assert_eq!(stored.lease_owner.as_deref(), Some(owners[0]));
        assert_eq!(stored.lease_token, 1);
    }
}

/// An operator completes while the worker heartbeats from other threads:
/// each heartbeat either succeeded before the completion or got `terminal`;
/// the task ends completed with the operator's reason.
pub fn terminal_race<H: Harness>(h: &H) {
    let s = h.fresh();
    let rounds = 10;
    for r in 0..rounds {
        leased(&s, &format!("tr-{r}"), "w1", 0, 10_000);
    }
    let threads = 4;
    let handles: Vec<H::S> = (0..threads + 1).map(|_| h.another(&s)).collect();
    let barrier = Gate::new(threads + 1);
    let bad: Arc<Mutex<Vec<String>>> = Arc::default();
    thread::scope(|scope| {
        for (i, store) in handles.into_iter().enumerate() {
            let barrier = Arc::clone(&barrier);
            let bad = Arc::clone(&bad);
            scope.spawn(move || {
                let _guard = barrier.guard();
                for r in 0..rounds {
                    let id = format!("tr-{r}");
                    barrier.wait();
                    if i == 0 {
                        store
                            .complete(&id, Some("operator wins"), None, &ctx(5))
                            .unwrap();
                        continue;
                    }
                    for k in 0..5i64 {
                        // Expiries strictly rise per thread; another thread
                        // may have extended further (lease_conflict is fine).
                        let exp = at(20_000 + (i as i64) * 1000 + k);
                        match store.heartbeat(&id, &fence("w1", 1), exp, &ctx(5)) {
                            Ok(_) => {}
                            Err(e)
                                if matches!(
                                    e.code(),
                                    ErrorCode::Terminal | ErrorCode::LeaseConflict
                                ) => {}
                            Err(e) => bad.lock().unwrap().push(format!("{id}: {e}")),
                        }
                    }
                }
            });
        }
    });
    assert!(bad.lock().unwrap().is_empty(), "{:?}", bad.lock().unwrap());
    for r in 0..rounds {
        let t = get(&s, &format!("tr-{r}"));
        assert_eq!(t.state, TaskState::Completed);
        assert_eq!(t.terminal_reason.as_deref(), Some("operator wins"));
        let f = fence("w1", 1);
        expect_err(
            s.heartbeat(&t.task_id, &f, at(99_999), &ctx(6)),
            ErrorCode::Terminal,
            &[],
        );
    }
}

/// 16 threads create the same id (each with its own saga), and the same saga
/// (each with its own id): exactly one of each succeeds.
pub fn create_race<H: Harness>(h: &H) {
    let s = h.fresh();
    let threads = 16;
    let handles: Vec<H::S> = (0..threads).map(|_| h.another(&s)).collect();
    let barrier = Gate::new(threads);
    let results = Arc::new(Mutex::new(Vec::<(bool, Option<ErrorCode>)>::new()));
    thread::scope(|scope| {
        for (i, store) in handles.into_iter().enumerate() {
            let barrier = Arc::clone(&barrier);
            let results = Arc::clone(&results);
            scope.spawn(move || {
                let _guard = barrier.guard();
                barrier.wait();
                let a = store.create(task("same-id").saga(&format!("saga-{i}")).build(), &ctx(0));
                let b = store.create(task(&format!("id-{i}")).saga("same-saga").build(), &ctx(0));
                let mut r = results.lock().unwrap();
                r.push((true, a.err().map(|e| e.code())));
                r.push((false, b.err().map(|e| e.code())));
            });
        }
    });
    let results = results.lock().unwrap();
    for same_id in [true, false] {
        let mine: Vec<_> = results.iter().filter(|(k, _)| *k == same_id).collect();
        assert_eq!(mine.iter().filter(|(_, c)| c.is_none()).count(), 1);
        assert!(mine
            .iter()
            .all(|(_, c)| c.is_none() || *c == Some(ErrorCode::AlreadyExists)));
    }
    let total: u64 = s.counts().unwrap().values().sum();
    assert_eq!(total, 2);
}

/// Several reapers at once: each stale task is reclaimed exactly once.
pub fn reclaim_race<H: Harness>(h: &H) {
    let s = h.fresh();
    let tasks = 30;
    for i in 0..tasks {
        leased(&s, &format!("st-{i:03}"), "w1", 0, 10);
    }
    let threads = 6;
    let handles: Vec<H::S> = (0..threads).map(|_| h.another(&s)).collect();
    let barrier = Gate::new(threads);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    thread::scope(|scope| {
        for store in handles {
            let barrier = Arc::clone(&barrier);
            let seen = Arc::clone(&seen);
            scope.spawn(move || {
                let _guard = barrier.guard();
                barrier.wait();
                let got = store.reclaim(5, &ctx(20)).unwrap();
                seen.lock().unwrap().extend(ids(&got));
            });
        }
    });
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let expected: Vec<String> = (0..tasks).map(|i| format!("st-{i:03}")).collect();
    assert_eq!(seen, expected, "each stale task reclaimed exactly once");
    for id in &expected {
        let expired = history(&s, id)
            .iter()
            .filter(|e| e.kind == leasehold_core::HistoryKind::Expired)
            .count();
        assert_eq!(expired, 1, "{id}");
    }
}

/// `acquire_lease` and `claim` race for the same task (each round's task in
/// its own queue): exactly one of all the threads leases it.
pub fn mixed_acquire_claim_race<H: Harness>(h: &H) {
    let s = h.fresh();
    let (rounds, threads) = (10, 16);
    for r in 0..rounds {
        task(&format!("mix-{r}"))
            .queue(&format!("mix-q{r}"))
            .create(&s, 0);
    }
    let handles: Vec<H::S> = (0..threads).map(|_| h.another(&s)).collect();
    let barrier = Gate::new(threads);
    let wins: Arc<Mutex<BTreeMap<usize, Vec<String>>>> = Arc::default();
    let bad: Arc<Mutex<Vec<String>>> = Arc::default();
    thread::scope(|scope| {
        for (i, store) in handles.into_iter().enumerate() {
            let (barrier, wins, bad) = (Arc::clone(&barrier), Arc::clone(&wins), Arc::clone(&bad));
            scope.spawn(move || {
                let _guard = barrier.guard();
                let owner = format!("w{i}");
                for r in 0..rounds {
                    barrier.wait();
                    let id = format!("mix-{r}");
                    let won = if i % 2 == 0 {
                        match store.acquire_lease(&id, &owner, at(600), &ctx(1)) {
                            Ok(_) => true,
                            Err(e) if e.code() == ErrorCode::LeaseConflict => false,
                            Err(e) => {
                                bad.lock().unwrap().push(format!("{owner} acquire: {e}"));
                                false
                            }
                        }
                    } else {
                        let queue = format!("mix-q{r}");
                        match store.claim(&req(&owner, &[&queue], 600, 1), &ctx(1)) {
                            Ok(got) => !got.is_empty(),
                            Err(e) => {
                                bad.lock().unwrap().push(format!("{owner} claim: {e}"));
                                false
                            }
                        }
                    };
                    if won {
                        wins.lock()
                            .unwrap()
                            .entry(r)
                            .or_default()
                            .push(owner.clone());
                    }
                }
            });
        }
    });
    assert!(bad.lock().unwrap().is_empty(), "{:?}", bad.lock().unwrap());
    let wins = wins.lock().unwrap();
    for r in 0..rounds {
        let w = wins.get(&r).cloned().unwrap_or_default();
        assert_eq!(w.len(), 1, "round {r}: winners {w:?}");
        let t = get(&s, &format!("mix-{r}"));
        assert_eq!(t.lease_owner.as_deref(), Some(w[0].as_str()));
        assert_eq!(t.lease_token, 1);
    }
}

/// Many threads take over one expired lease at once: exactly one succeeds,
/// with the next token; the old owner's fence is dead.
pub fn expired_takeover_race<H: Harness>(h: &H) {
    let s = h.fresh();
    let (rounds, threads) = (10, 16);
    for r in 0..rounds {
        leased(&s, &format!("exp-{r}"), "old", 0, 10);
    }
    let handles: Vec<H::S> = (0..threads).map(|_| h.another(&s)).collect();
    let barrier = Gate::new(threads);
    let wins: Arc<Mutex<BTreeMap<usize, Vec<usize>>>> = Arc::default();
    thread::scope(|scope| {
        for (i, store) in handles.into_iter().enumerate() {
            let (barrier, wins) = (Arc::clone(&barrier), Arc::clone(&wins));
            scope.spawn(move || {
                let _guard = barrier.guard();
                for r in 0..rounds {
                    barrier.wait();
                    let res = store.acquire_lease(
                        &format!("exp-{r}"),
                        &format!("w{i}"),
                        at(600),
                        &ctx(20),
                    );
                    match res {
                        Ok(_) => wins.lock().unwrap().entry(r).or_default().push(i),
                        Err(e) => assert_eq!(e.code(), ErrorCode::LeaseConflict, "w{i}: {e}"),
                    }
                }
            });
        }
    });
    let wins = wins.lock().unwrap();
    for r in 0..rounds {
        let id = format!("exp-{r}");
        let w = wins.get(&r).cloned().unwrap_or_default();
        assert_eq!(w.len(), 1, "{id}: winners {w:?}");
        let t = get(&s, &id);
        assert_eq!(t.lease_owner, Some(format!("w{}", w[0])));
        assert_eq!((t.lease_token, t.attempts), (2, 2));
        expect_err(
            s.heartbeat(&id, &fence("old", 1), at(700), &ctx(21)),
            ErrorCode::LeaseConflict,
            &[&id],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_racer_breaks_the_gate_instead_of_hanging_the_others() {
        let gate = Gate::new(3);
        let outcomes: Vec<bool> = thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|i| {
                    let gate = Arc::clone(&gate);
                    scope.spawn(move || {
                        let _guard = gate.guard();
                        gate.wait(); // round 1: everybody arrives
                        assert!(i != 2, "racer 2 fails between rounds");
                        gate.wait(); // round 2: racer 2 never arrives
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().is_ok()).collect()
        });
        assert_eq!(
            outcomes,
            vec![false, false, false],
            "all three fail, none hangs"
        );
    }

    #[test]
    fn a_gate_without_panics_lets_every_round_through() {
        let gate = Gate::new(4);
        let passed = Arc::new(Mutex::new(0));
        thread::scope(|scope| {
            for _ in 0..4 {
                let (gate, passed) = (Arc::clone(&gate), Arc::clone(&passed));
                scope.spawn(move || {
                    let _guard = gate.guard();
                    for _ in 0..50 {
                        gate.wait();
                        *passed.lock().unwrap() += 1;
                    }
                });
            }
        });
        assert_eq!(*passed.lock().unwrap(), 200);
    }
}
