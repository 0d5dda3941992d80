//! Kill -9 of the server under load, at random moments and (with the
//! `failpoints` feature) at named failpoints where the server aborts itself:
//! in the server, before the store call and after commit before the
//! response; inside SQLite, between a task row write and its history insert,
//! before COMMIT and after COMMIT before the callers are answered; inside
//! PostgreSQL, before COMMIT and after COMMIT (PostgreSQL writes a task and
//! its history in one statement, so it has no point between them). After
//! each crash the store is opened directly and checked: no acknowledged
//! operation lost (every task is exactly as last acknowledged, or one
//! in-flight call further), no torn task (state, lease, history and
//! compensations agree), tokens never go back, SQLite `integrity_check` is
//! `ok`. Tasks from earlier rounds are re-checked after every later crash.
//! Quick: 10 kills per backend (+2 per failpoint); long tier: 50 (+10 per
//! failpoint).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasehold_client::HttpStore;
use leasehold_core::{Context, ErrorCode, Fence, NewCompensation, NewTask, Store, Task, Timestamp};
use leasehold_reliability::checker;
use leasehold_reliability::procs::ServerProc;
use leasehold_reliability::sizes;
use rand::{Rng, SeedableRng};

#[derive(Default)]
struct Ledger {
    acked: BTreeMap<String, Task>,
    inflight: BTreeSet<String>,
    acked_ops: usize,
    violations: Vec<String>,
    /// The last `unavailable` answer each load thread saw this round (for diagnostics).
    last_unavailable: BTreeMap<usize, String>,
}

/// A load thread gives up after this many `unavailable` answers in a row
/// (the server is gone); a single one (a slow answer) only abandons the task.
const UNAVAILABLE_IN_A_ROW: u32 = 3;

enum Step {
    /// Carry on with this task.
    Go,
    /// Abandon this task, start the next one.
    Next,
    /// The server is gone: stop.
    Stop,
}

/// One owner thread: tasks of its own, each through a full life.
fn load(url: &str, round: usize, thread: usize, ledger: &Mutex<Ledger>, seed: u64) {
    let store =
        HttpStore::with_timeouts(url, "", Duration::from_secs(5), Duration::from_secs(1)).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let owner = format!("k{thread}");
    let in_a_row = std::cell::Cell::new(0u32);
    let record = |id: &str, r: leasehold_core::Result<Task>| -> Step {
        let mut l = ledger.lock().unwrap();
        match r {
            Ok(t) => {
                l.acked.insert(id.to_string(), t);
                l.inflight.remove(id);
                l.acked_ops += 1;
                in_a_row.set(0);
                Step::Go
            }
            Err(e) if e.code() == ErrorCode::Unavailable => {
                // The call may or may not have been applied: the task stays
                // in flight until the next verification, and is abandoned.
                l.inflight.insert(id.to_string());
                l.last_unavailable.insert(thread, e.to_string());
                in_a_row.set(in_a_row.get() + 1);
                if in_a_row.get() >= UNAVAILABLE_IN_A_ROW {
                    Step::Stop
                } else {
                    Step::Next
                }
            }
            Err(e) => {
                l.violations.push(format!(
                    "task {id}: unexpected answer from a sole owner: {e}"
                ));
                Step::Stop
            }
        }
    };
    'tasks: for n in 0.. {
        let id = format!("kt-{round}-{thread}-{n}");
        let ctx = || Context::new(Timestamp::now(), owner.as_str());
        let mut nt = NewTask::new(&id, format!("saga-{id}"));
        nt.queue = Some(format!("q-{id}"));
        if rng.gen_bool(0.5) {
            nt.compensations
                .push(NewCompensation::new("delete_branch", &id, "cleanup"));
        }
        ledger.lock().unwrap().inflight.insert(id.clone());
        match record(&id, store.create(nt, &ctx())) {
            Step::Go => {}
            Step::Next => continue 'tasks,
            Step::Stop => return,
        }
        let at = Timestamp::now();
        let r = store.acquire_lease(
            &id,
            &owner,
            at.checked_add_micros(30_000_000).unwrap(),
            &ctx(),
        );
        let token = r.as_ref().map(|t| t.lease_token).unwrap_or(0);
        match record(&id, r) {
            Step::Go => {}
            Step::Next => continue 'tasks,
            Step::Stop => return,
        }
        let fence = Fence::new(owner.clone(), token);
        for _ in 0..rng.gen_range(0..3) {
            let at = Timestamp::now();
            let r = store.heartbeat(
                &id,
                &fence,
                at.checked_add_micros(60_000_000).unwrap(),
                &ctx(),
            );
            match record(&id, r) {
                Step::Go => {}
                Step::Next => continue 'tasks,
                Step::Stop => return,
            }
        }
        let r = match rng.gen_range(0..5) {
            0 => store.complete(&id, Some("ok"), Some(&fence), &ctx()),
            1 => store.fail(
                &id,
                "broke",
                Some(NewCompensation::new("revert", &id, "failed")),
                Some(&fence),
                &ctx(),
            ),
            2 => store.release(&id, &fence, &ctx()),
            3 => store.compensate(&id, None, Some(&fence), &ctx()),
            _ => store.quarantine(&id, "odd", Some(&fence), &ctx()),
        };
        match record(&id, r) {
            Step::Go => {}
            Step::Next => continue 'tasks,
            Step::Stop => return,
        }
    }
}

/// Check every task in the ledger against the store; returns how many
/// in-flight calls turned out to have been applied.
fn verify(store: &dyn Store, ledger: &mut Ledger, what: &str) -> usize {
    let mut applied_unacked = 0;
    let ids: BTreeSet<String> = ledger
        .acked
        .keys()
        .chain(ledger.inflight.iter())
        .cloned()
        .collect();
    for id in ids {
        let stored = store
            .get(&id)
            .unwrap_or_else(|e| panic!("{what}: read {id}: {e}"));
        let inflight = ledger.inflight.contains(&id);
        let acked = ledger.acked.get(&id).cloned();
        match (&acked, &stored) {
            (Some(a), None) => ledger.violations.push(format!(
                "{what}: acknowledged task {id} (version {}) is gone",
                a.version
            )),
            (None, None) => {}
            (acked, Some(s)) => {
                let base = acked.as_ref().map(|a| a.version).unwrap_or(0);
                if s.version == base {
                    if acked.as_ref() != Some(s) {
                        ledger.violations.push(format!(
                            "{what}: task {id} differs from its acknowledged state at the same version: {s:?} vs {acked:?}"
                        ));
                    }
                } else if s.version == base + 1 && inflight {
                    applied_unacked += 1;
                } else {
                    ledger.violations.push(format!(
                        "{what}: task {id} is at version {} but was acknowledged at {base} (in flight: {inflight}): acknowledged operation lost or unexplained change",
                        s.version
                    ));
                }
                if let Some(a) = acked {
                    if s.lease_token < a.lease_token {
                        ledger.violations.push(format!(
                            "{what}: task {id} token went back from {} to {}",
                            a.lease_token, s.lease_token
                        ));
                    }
                }
                let hist = store.history(&id).unwrap();
                for v in checker::check_stored(s, &hist) {
                    ledger.violations.push(format!("{what}: {v}"));
                }
            }
        }
        // What is stored now is the baseline for every later crash.
        match stored {
            Some(s) => {
                ledger.acked.insert(id.clone(), s);
            }
            None => {
                ledger.acked.remove(&id);
            }
        }
    }
    ledger.inflight.clear();
    applied_unacked
}

enum Crash {
    Random,
    Failpoint(&'static str),
}

/// The server's own failpoints, on every backend.
const SERVER_POINTS: [&str; 2] = ["before_store_call", "after_commit_before_response"];
/// SQLite's failpoints the server is aborted at.
const SQLITE_POINTS: [&str; 3] = [
    "sqlite::between_task_and_history",
    "sqlite::before_commit",
    "sqlite::after_commit",
];
/// PostgreSQL's (no point between task and history: one statement writes both).
const POSTGRES_POINTS: [&str; 2] = ["pg::before_commit", "pg::after_commit"];

/// Points after the commit: an abort there must leave committed, unanswered calls.
fn after_commit(point: &str) -> bool {
    point.contains("after_commit")
}

fn battery(
    db: &str,
    open: &dyn Fn() -> Box<dyn Store>,
    integrity: &dyn Fn() -> Option<String>,
    backend: &str,
    backend_points: &[&'static str],
) {
    let bin = Path::new(env!("CARGO_BIN_EXE_reliability-server"));
    let mut plan: Vec<Crash> = (0..sizes::kills()).map(|_| Crash::Random).collect();
    if cfg!(feature = "failpoints") {
        for _ in 0..sizes::pick(2, 10) {
            for point in SERVER_POINTS.iter().chain(backend_points) {
                plan.push(Crash::Failpoint(point));
            }
        }
    }
    let seed = sizes::seed(4242);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut after_commit_applied: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failpoint_rounds = 0;
    for (round, crash) in plan.iter().enumerate() {
        let mut env = HashMap::new();
        if let Crash::Failpoint(name) = crash {
            // fail-rs syntax: let K hits pass, abort at the next one.
            env.insert(
                "FAILPOINTS".to_string(),
                format!("{name}={}*off->return(abort)", rng.gen_range(4..59)),
            );
        }
        let mut srv = ServerProc::start(bin, db, 0, &env);
        if let Crash::Failpoint(name) = crash {
            assert!(
                srv.proc.seen.iter().any(|l| l == "FAILPOINTS on"),
                "round {round} ({name}): the reliability-server binary has no failpoints compiled in \
                 (build with --features failpoints; a concurrent build of the crate without it \
                 in the same target directory replaces the binary): {:?}",
                srv.proc.seen
            );
        }
        ledger.lock().unwrap().last_unavailable.clear();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let url = srv.url.clone();
                let ledger = ledger.clone();
                let s = seed.wrapping_mul(31).wrapping_add((round * 10 + t) as u64);
                std::thread::spawn(move || load(&url, round, t, &ledger, s))
            })
            .collect();
        match crash {
            Crash::Random => {
                std::thread::sleep(Duration::from_millis(rng.gen_range(30..300)));
                srv.proc.kill9();
            }
            Crash::Failpoint(name) => {
                // Wait up to 60 s for the abort; give up early (with what
                // the load saw) if every load thread stopped first.
                let mut st = None;
                for _ in 0..60 {
                    st = srv.proc.wait_exit(Duration::from_secs(1));
                    if st.is_some() || threads.iter().all(|t| t.is_finished()) {
                        break;
                    }
                }
                let st = st.or_else(|| srv.proc.wait_exit(Duration::from_secs(1)));
                let st = st.unwrap_or_else(|| {
                    let l = ledger.lock().unwrap();
                    panic!(
                        "seed {seed}: {backend} server never reached failpoint {name} (round {round}, {} acknowledged operations so far); violations: {:?}; last unavailable answers: {:?}",
                        l.acked_ops, l.violations, l.last_unavailable
                    )
                });
                // It aborted at the point (SIGABRT), not some other way.
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(st.signal(), Some(6), "{backend} at {name}: {st:?}");
                failpoint_rounds += 1;
            }
        }
        for t in threads {
            t.join().unwrap();
        }
        if let Some(ic) = integrity() {
            assert_eq!(ic, "ok", "{backend}: integrity_check after round {round}");
        }
        let store = open();
        let mut l = ledger.lock().unwrap();
        let applied = verify(&*store, &mut l, &format!("{backend} round {round}"));
        if let Crash::Failpoint(name) = crash {
            if after_commit(name) {
                *after_commit_applied.entry(*name).or_default() += applied;
            }
        }
        assert!(
            l.violations.is_empty(),
            "seed {seed}:\n{}",
            l.violations.join("\n")
        );
    }
    let l = ledger.lock().unwrap();
    eprintln!(
        "kill -9 on {backend}: {} crashes ({failpoint_rounds} at failpoints), {} acknowledged operations, {} tasks re-checked after every crash, 0 violations",
        plan.len(),
        l.acked_ops,
        l.acked.len()
    );
    assert!(
        l.acked_ops >= plan.len() * 5,
        "too little load: {}",
        l.acked_ops
    );
    if cfg!(feature = "failpoints") {
        eprintln!("committed but unacknowledged calls found after aborts at after-commit points: {after_commit_applied:?}");
        for point in SERVER_POINTS.iter().chain(backend_points) {
            if after_commit(point) {
                assert!(
                    after_commit_applied.get(point).copied().unwrap_or(0) >= 1,
                    "the failpoint {point} never left a committed, unacknowledged call"
                );
            }
        }
    }
}

#[test]
fn kill_9_of_the_server_process_on_sqlite_loses_no_acknowledged_operation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let p2 = path.clone();
    let p3 = path.clone();
    battery(
        path.to_str().unwrap(),
        &move || Box::new(leasehold_sqlite::SqliteStore::open(&p2).unwrap()),
        &move || {
            let s = leasehold_sqlite::SqliteStore::open(&p3).unwrap();
            Some(s.integrity_check().unwrap())
        },
        "sqlite",
        &SQLITE_POINTS,
    );
}

#[test]
fn kill_9_of_the_server_process_on_postgres_loses_no_acknowledged_operation() {
    let Some(cl) = leasehold_postgres::testing::shared() else {
        return;
    };
    let schema = leasehold_postgres::testing::unique_schema("kill");
    let url = cl.url_with_schema(&schema);
    battery(
        &url,
        &|| Box::new(cl.store(&schema)),
        &|| None,
        "postgres",
        &POSTGRES_POINTS,
    );
}

/// The verification is not vacuous: a store that lost an acknowledged write,
/// or answered with a torn task, is reported.
#[test]
fn verify_reports_a_lost_acknowledgement_and_a_torn_task() {
    let store = leasehold_core::memory::MemoryStore::new();
    let c = Context::new(Timestamp::parse("2026-06-03T10:00:00Z").unwrap(), "t");
    let t1 = store.create(NewTask::new("a", "sa"), &c).unwrap();
    let t2 = store.dispatch("a", &c).unwrap();
    // Acknowledged at version 3 while the store holds version 2: lost.
    let mut lost = t2.clone();
    lost.version = 3;
    let mut l = Ledger::default();
    l.acked.insert("a".into(), lost);
    verify(&store, &mut l, "probe");
    assert!(
        l.violations
            .iter()
            .any(|v| v.contains("acknowledged operation lost")),
        "{:?}",
        l.violations
    );
    // Same version but different content.
    let mut l = Ledger::default();
    let mut other = t2.clone();
    other.priority = 9;
    l.acked.insert("a".into(), other);
    verify(&store, &mut l, "probe");
    assert!(
        l.violations.iter().any(|v| v.contains("differs")),
        "{:?}",
        l.violations
    );
    // An acknowledged create that vanished.
    let mut l = Ledger::default();
    let mut ghost = t1.clone();
    ghost.task_id = "ghost".into();
    l.acked.insert("ghost".into(), ghost);
    verify(&store, &mut l, "probe");
    assert!(
        l.violations.iter().any(|v| v.contains("is gone")),
        "{:?}",
        l.violations
    );
}
