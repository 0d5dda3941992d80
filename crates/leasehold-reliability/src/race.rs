//! The race workload: workers and reaper loops hammer a few hot tasks through
//! a real server, every call recorded, then the history is checked.
//!
//! Each hot "slot" is a chain of task generations created up front
//! (`hot-3-g0`, `hot-3-g1`, …), each in its own queue so that a claim with
//! limit 1 concerns exactly one task; when a generation ends (terminal), the
//! workers move to the next. Workers claim, acquire, heartbeat, release,
//! complete, fail, compensate, quarantine and read, sometimes with stale
//! fences, and sometimes stall past their TTL so that leases expire under
//! them. Reaper loops reclaim single tasks and everything stale.
//!
//! Operation times: the server runs in its test mode that takes `at` from
//! the client (`x-leasehold-at`, exact expiries), each client sending its own
//! wall clock at the moment it sends. The server's rules, store and locking
//! are the production ones; only the clock source moves to the client, which
//! makes every call's decision reproducible by the model. Clients' clocks are
//! the same machine clock, read at slightly different moments, so calls reach
//! the store with slightly out-of-order times, which the model must (and
//! does) accept.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leasehold_client::HttpStore;
use leasehold_core::{
    ClaimRequest, Command, Context, Fence, HistoryEntry, NewCompensation, NewTask, Store, Task,
    TaskState, Timestamp,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::checker::{self, CheckOptions};
use crate::history::{outcome_of, Call, Outcome, Recorder};

/// Sizes of one race run.
#[derive(Debug, Clone)]
pub struct RaceConfig {
    /// Worker threads.
    pub workers: usize,
    /// Reaper loops.
    pub reapers: usize,
    /// Hot task slots.
    pub slots: usize,
    /// Lease time to live, milliseconds.
    pub ttl_ms: u64,
    /// How long the workload runs.
    pub duration: Duration,
    /// Seed of every random choice (printed with any violation).
    pub seed: u64,
    /// Attempts after which a reclaim quarantines.
    pub max_attempts: u32,
    /// The run is invalid (fails) below this many calls per second.
    pub min_ops_per_sec: f64,
}

impl RaceConfig {
    /// The shape (8 workers, 2 reapers, 10 hot tasks, 300 ms TTL) for `duration`.
    pub fn standard(duration: Duration, seed: u64) -> RaceConfig {
        RaceConfig {
            workers: 8,
            reapers: 2,
            slots: 10,
            ttl_ms: 300,
            duration,
            seed,
            max_attempts: 40,
            min_ops_per_sec: 100.0,
        }
    }
}

/// What a race run found.
#[derive(Debug, Clone)]
pub struct RaceReport {
    /// The seed.
    pub seed: u64,
    /// Calls recorded.
    pub ops: usize,
    /// Calls per second achieved.
    pub ops_per_sec: f64,
    /// Calls checked for linearizability (per-task projections).
    pub ops_checked: usize,
    /// Calls answered with a success.
    pub ok_ops: usize,
    /// Calls without an answer.
    pub unknown_ops: usize,
    /// Leases granted (claims and acquisitions that succeeded).
    pub grants: usize,
    /// Tasks that ended terminal.
    pub terminal_tasks: usize,
    /// Tasks in the run.
    pub tasks: usize,
    /// Violations (linearizability, invariants, throughput); empty = pass.
    pub violations: Vec<String>,
}

impl std::fmt::Display for RaceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {}: {} calls ({:.0}/s, {} ok, {} unanswered), {} checked, {} leases granted, {}/{} tasks terminal, {} violations",
            self.seed,
            self.ops,
            self.ops_per_sec,
            self.ok_ops,
            self.unknown_ops,
            self.ops_checked,
            self.grants,
            self.terminal_tasks,
            self.tasks,
            self.violations.len()
        )
    }
}

fn task_name(slot: usize, gen: usize) -> String {
    format!("hot-{slot}-g{gen}")
}

struct Shared {
    rec: Recorder,
    gens: Vec<AtomicUsize>,
    max_gen: usize,
    stop: AtomicBool,
    ttl_us: i64,
    max_attempts: u32,
}

fn now() -> Timestamp {
    Timestamp::now()
}

/// Run one call through `store`, recording it.
fn record_apply(sh: &Shared, store: &HttpStore, who: &str, task: &str, cmd: Command) -> Outcome {
    let at = now();
    let p = sh
        .rec
        .invoke(who, Some(task), Call::Apply(cmd.clone()), at, who);
    let r = store.apply(task, cmd, &Context::new(at, who));
    let out = outcome_of(&r, |t| Outcome::Task(Box::new(t.clone())));
    sh.rec.complete(p, out.clone());
    out
}

fn record_claim(sh: &Shared, store: &HttpStore, who: &str, task: &str) -> Outcome {
    let at = now();
    let p = sh.rec.invoke(
        who,
        Some(task),
        Call::ClaimOne {
            owner: who.to_string(),
            ttl_us: sh.ttl_us,
            max_attempts: sh.max_attempts,
        },
        at,
        who,
    );
    let req = ClaimRequest {
        owner: who.to_string(),
        queues: vec![format!("q-{task}")],
        ttl: Duration::from_micros(sh.ttl_us as u64),
        limit: 1,
        max_attempts: Some(sh.max_attempts),
    };
    let r = store.claim(&req, &Context::new(at, who));
    let out = outcome_of(&r, |ts| Outcome::Tasks(ts.clone()));
    sh.rec.complete(p, out.clone());
    out
}

fn record_get(sh: &Shared, store: &HttpStore, who: &str, task: &str) -> Outcome {
    let p = sh.rec.invoke(who, Some(task), Call::Get, now(), who);
    let r = store.get(task);
    let out = outcome_of(&r, |t| Outcome::Found(t.clone().map(Box::new)));
    sh.rec.complete(p, out.clone());
    out
}

/// Note terminal answers so everyone moves to the next generation.
fn observe(sh: &Shared, slot: usize, gen: usize, out: &Outcome) {
    let terminal = match out {
        Outcome::Task(t) => t.state.is_terminal(),
        Outcome::Found(Some(t)) => t.state.is_terminal(),
        Outcome::Error(code, _) => *code == leasehold_core::ErrorCode::Terminal,
        _ => false,
    };
    if terminal && gen + 1 < sh.max_gen {
        sh.gens[slot].fetch_max(gen + 1, Ordering::SeqCst);
    }
}

fn worker(sh: &Shared, store: HttpStore, name: String, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    // Leases this worker believes it holds (or held): task -> token.
    let mut held: BTreeMap<String, u64> = BTreeMap::new();
    while !sh.stop.load(Ordering::Relaxed) {
        let slot = rng.gen_range(0..sh.gens.len());
        let gen = sh.gens[slot].load(Ordering::SeqCst);
        let task = task_name(slot, gen);
        let fence = held.get(&task).map(|tok| Fence::new(name.clone(), *tok));
        let ttl = Duration::from_micros(sh.ttl_us as u64);
        let roll: u32 = rng.gen_range(0..100);
        let out = match (&fence, roll) {
            (Some(f), 0..=44) => record_apply(
                sh,
                &store,
                &name,
                &task,
                Command::Heartbeat {
                    fence: f.clone(),
                    expires_at: now().checked_add(ttl).expect("ttl fits"),
                },
            ),
            (Some(f), 45..=59) => {
                let o = record_apply(
                    sh,
                    &store,
                    &name,
                    &task,
                    Command::Release { fence: f.clone() },
                );
                held.remove(&task);
                o
            }
            (Some(f), 60..=61) => record_apply(
                sh,
                &store,
                &name,
                &task,
                Command::Complete {
                    reason: Some("done".into()),
                    fence: Some(f.clone()),
                },
            ),
            (Some(f), 62) => record_apply(
                sh,
                &store,
                &name,
                &task,
                Command::Fail {
                    reason: "broke".into(),
                    compensation: Some(NewCompensation::new("delete_branch", &task, "failed")),
                    fence: Some(f.clone()),
                },
            ),
            (Some(f), 63) => record_apply(
                sh,
                &store,
                &name,
                &task,
                Command::Compensate {
                    reason: None,
                    fence: Some(f.clone()),
                },
            ),
            (Some(f), 64) => record_apply(
                sh,
                &store,
                &name,
                &task,
                Command::Quarantine {
                    reason: "suspicious".into(),
                    fence: Some(f.clone()),
                },
            ),
            (Some(_), 65..=79) => {
                // Stall past the TTL while "holding" the lease.
                std::thread::sleep(Duration::from_millis(
                    rng.gen_range(50..sh.ttl_us as u64 / 1000 + 150),
                ));
                continue;
            }
            (Some(_), _) => record_get(sh, &store, &name, &task),
            (None, 0..=39) => record_claim(sh, &store, &name, &task),
            (None, 40..=59) => record_apply(
                sh,
                &store,
                &name,
                &task,
                Command::Acquire {
                    owner: name.clone(),
                    expires_at: now().checked_add(ttl).expect("ttl fits"),
                },
            ),
            (None, 60..=64) => record_apply(sh, &store, &name, &task, Command::Dispatch),
            (None, 65..=74) => {
                // A stale fence: a token this worker never held now.
                let tok = rng.gen_range(1..6u64);
                record_apply(
                    sh,
                    &store,
                    &name,
                    &task,
                    Command::Heartbeat {
                        fence: Fence::new(name.clone(), tok),
                        expires_at: now().checked_add(ttl).expect("ttl fits"),
                    },
                )
            }
            (None, 75..=77) => record_apply(
                sh,
                &store,
                &name,
                &task,
                Command::Complete {
                    reason: None,
                    fence: Some(Fence::new(name.clone(), rng.gen_range(1..6u64))),
                },
            ),
            (None, _) => record_get(sh, &store, &name, &task),
        };
        // Track leases from answers.
        match &out {
            Outcome::Task(t) | Outcome::Found(Some(t)) => {
                if t.state == TaskState::Running && t.lease_owner.as_deref() == Some(&name) {
                    held.insert(task.clone(), t.lease_token);
                } else if t.lease_owner.as_deref() != Some(&name) || t.state.is_terminal() {
                    held.remove(&task);
                }
            }
            Outcome::Tasks(ts) => {
                for t in ts {
                    held.insert(t.task_id.clone(), t.lease_token);
                }
            }
            Outcome::Error(code, _)
                if *code == leasehold_core::ErrorCode::LeaseConflict
                    && fence.is_some()
                    && rng.gen_bool(0.5) =>
            {
                held.remove(&task);
            }
            _ => {}
        }
        observe(sh, slot, gen, &out);
    }
}

fn reaper(sh: &Shared, store: HttpStore, name: String, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !sh.stop.load(Ordering::Relaxed) {
        if rng.gen_bool(0.7) {
            let slot = rng.gen_range(0..sh.gens.len());
            let gen = sh.gens[slot].load(Ordering::SeqCst);
            let task = task_name(slot, gen);
            let out = record_apply(
                sh,
                &store,
                &name,
                &task,
                Command::Reclaim {
                    max_attempts: sh.max_attempts,
                },
            );
            observe(sh, slot, gen, &out);
        } else {
            let at = now();
            let p = sh.rec.invoke(
                &name,
                None,
                Call::ReclaimAll {
                    max_attempts: sh.max_attempts,
                },
                at,
                &name,
            );
            let r = store.reclaim(sh.max_attempts, &Context::new(at, name.as_str()));
            let out = outcome_of(&r, |ts| Outcome::Tasks(ts.clone()));
            sh.rec.complete(p, out);
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..40)));
    }
}

/// An `HttpStore` for the race: exact expiries (the server must trust the
/// client clock), short connect timeout, generous request timeout.
pub fn race_client(url: &str, token: &str) -> HttpStore {
    HttpStore::with_timeouts(url, token, Duration::from_secs(20), Duration::from_secs(5))
        .expect("client for the test server")
        .with_exact_expiry()
}

/// Run the race against the server at `url` (which must trust the client
/// clock) and check the result. `opts` says how the backend may answer.
pub fn run(url: &str, token: &str, cfg: &RaceConfig, opts: CheckOptions) -> RaceReport {
    let admin = race_client(url, token);
    let gens_per_slot = (cfg.duration.as_secs() as usize) * 3 + 6;
    let mut initial: BTreeMap<String, Task> = BTreeMap::new();
    let t0 = now();
    for slot in 0..cfg.slots {
        for gen in 0..gens_per_slot {
            let id = task_name(slot, gen);
            let mut nt = NewTask::new(&id, format!("saga-{id}"));
            nt.queue = Some(format!("q-{id}"));
            let t = admin
                .create(nt, &Context::new(t0, "setup"))
                .unwrap_or_else(|e| panic!("create {id}: {e}"));
            initial.insert(id, t);
        }
    }
    let sh = Arc::new(Shared {
        rec: Recorder::new(),
        gens: (0..cfg.slots).map(|_| AtomicUsize::new(0)).collect(),
        max_gen: gens_per_slot,
        stop: AtomicBool::new(false),
        ttl_us: (cfg.ttl_ms * 1000) as i64,
        max_attempts: cfg.max_attempts,
    });
    let started = std::time::Instant::now();
    let mut handles = Vec::new();
    for w in 0..cfg.workers {
        let sh = sh.clone();
        let store = race_client(url, token);
        let seed = cfg.seed.wrapping_mul(1000).wrapping_add(w as u64);
        handles.push(std::thread::spawn(move || {
            worker(&sh, store, format!("w{w}"), seed)
        }));
    }
    for r in 0..cfg.reapers {
        let sh = sh.clone();
        let store = race_client(url, token);
        let seed = cfg.seed.wrapping_mul(1000).wrapping_add(500 + r as u64);
        handles.push(std::thread::spawn(move || {
            reaper(&sh, store, format!("reaper{r}"), seed)
        }));
    }
    std::thread::sleep(cfg.duration);
    sh.stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().expect("race thread panicked");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let workload_ops = sh.rec.len();
    // Final reads (after every call returned) join the checked history.
    let mut finals: BTreeMap<String, (Task, Vec<HistoryEntry>)> = BTreeMap::new();
    for id in initial.keys() {
        let out = record_get(&sh, &admin, "final", id);
        let Outcome::Found(Some(t)) = out else {
            panic!("final read of {id} failed: {out:?}");
        };
        let hist = admin
            .history(id)
            .unwrap_or_else(|e| panic!("history of {id}: {e}"));
        finals.insert(id.clone(), (*t, hist));
    }
    let ops = sh.rec.ops();
    // Only generations the workload reached are worth checking (the rest were
    // only created and read once).
    let reached: BTreeMap<String, Task> = initial
        .iter()
        .filter(|(id, _)| {
            ops.iter()
                .any(|o| o.task_id.as_deref() == Some(id.as_str()) && o.client != "final")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let verdict = checker::check(&reached, &ops, &opts, cfg.seed);
    let mut violations = verdict.violations();
    violations.extend(checker::check_invariants(&ops, &finals));
    let ops_per_sec = workload_ops as f64 / elapsed;
    if ops_per_sec < cfg.min_ops_per_sec {
        violations.push(format!(
            "run invalid: {ops_per_sec:.1} calls/s is below the minimum {} (seed {})",
            cfg.min_ops_per_sec, cfg.seed
        ));
    }
    let grants = ops
        .iter()
        .filter(|o| match (&o.call, &o.outcome) {
            (Call::ClaimOne { .. }, Outcome::Tasks(ts)) => !ts.is_empty(),
            (Call::Apply(Command::Acquire { .. }), Outcome::Task(_)) => true,
            _ => false,
        })
        .count();
    RaceReport {
        seed: cfg.seed,
        ops: workload_ops,
        ops_per_sec,
        ops_checked: verdict.ops_checked(),
        ok_ops: ops.iter().filter(|o| o.is_ok()).count(),
        unknown_ops: ops
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Unknown(_)))
            .count(),
        grants,
        terminal_tasks: finals
            .values()
            .filter(|(t, _)| t.state.is_terminal())
            .count(),
        tasks: reached.len(),
        violations,
    }
}
