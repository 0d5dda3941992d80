//! The seeded model-based property test: random operation sequences applied
//! to a fresh [`MemoryStore`] (the executable model) and to the backend under
//! test, step for step. Every result must agree (equal `Ok` values, or errors
//! with equal codes), and at the end every task, history, list and count must
//! be equal.
//!
//! Operations are generated from the seed *and the model's current state*
//! (current tokens and owners, copies of tasks seen earlier), so a sequence
//! hits the interesting edges — stale and current tokens, expiry exactly at
//! `now`, duplicate ids and sagas, stale `put` copies, terminal tasks — much
//! more often than blind randomness would. Time only moves forward, in jumps
//! that land before, at and after lease expiries.
//!
//! Environment:
//! - `LEASEHOLD_MODEL_CASES`: number of seeds (default 64).
//! - `LEASEHOLD_MODEL_STEPS`: operations per seed (default 200).
//! - `LEASEHOLD_MODEL_SEED`: run this one seed only (replay a failure).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use leasehold_core::memory::MemoryStore;
use leasehold_core::{
    BatchItem, ClaimRequest, Command, CompensationStatus, Context, Fence, ListFilter,
    NewCompensation, NewTask, Page, Result, Store, Task, TaskState, Timestamp,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::support::at;
use crate::Harness;

/// Default number of seeds in the quick tier.
pub const MODEL_CASES_DEFAULT: u64 = 64;
/// Default operations per seed.
pub const MODEL_STEPS_DEFAULT: usize = 200;

const IDS: [&str; 12] = [
    "m-0", "m-1", "m-2", "m-3", "m-4", "m-5", "m-6", "m-7", "m-8", "m-9", "m-10", "m-11",
];
const SAGAS: [&str; 6] = ["s-0", "s-1", "s-2", "s-3", "s-4", "s-x"];
const OWNERS: [&str; 3] = ["w-a", "w-b", "w-c"];
const QUEUES: [&str; 2] = ["default", "q1"];
const ACTORS: [&str; 2] = ["op", "reaper"];

/// One generated operation, as applied to both stores.
#[derive(Debug, Clone)]
pub enum Op {
    /// Move time forward.
    Advance {
        /// By this many microseconds.
        micros: i64,
    },
    /// Close and reopen the backend (the model keeps its state).
    Reopen,
    /// Send the following operations through the other handle (opened with
    /// `Harness::another`), so per-handle caching cannot hide.
    SwitchHandle,
    /// `create`.
    Create(NewTask),
    /// `put`, with a description of where the copy came from.
    Put {
        /// The task written.
        task: Box<Task>,
        /// Compare-and-set version.
        expected_version: Option<u64>,
        /// `fresh`, `stale` or `insert`.
        origin: &'static str,
    },
    /// A command on one task (dispatch, acquire, heartbeat, …).
    Apply {
        /// The task.
        id: String,
        /// The command.
        cmd: Command,
    },
    /// `apply_many`: several commands, judged one by one, in one call.
    ApplyMany(Vec<BatchItem>),
    /// `heartbeat_many`: many fenced heartbeats to one expiry.
    HeartbeatMany {
        /// (task id, fence) pairs.
        leases: Vec<(String, Fence)>,
        /// The new expiry for all of them.
        expires_at: Timestamp,
    },
    /// `claim`.
    Claim(ClaimRequest),
    /// `reclaim`.
    Reclaim {
        /// Quarantine threshold.
        max_attempts: u32,
    },
    /// `get`.
    Get(String),
    /// `list`, following every cursor to the end.
    List {
        /// Filter.
        filter: ListFilter,
        /// Page size.
        limit: Option<u32>,
    },
    /// `list_stale` at an instant.
    ListStale(Timestamp),
    /// `list_in_flight`.
    ListInFlight,
    /// `counts`.
    Counts,
    /// `history`.
    History(String),
}

impl Op {
    /// A short name for coverage counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Advance { .. } => "advance",
            Op::Reopen => "reopen",
            Op::SwitchHandle => "switch_handle",
            Op::Create(_) => "create",
            Op::Put { .. } => "put",
            Op::Apply { cmd, .. } => cmd.name(),
            Op::ApplyMany(_) => "apply_many",
            Op::HeartbeatMany { .. } => "heartbeat_many",
            Op::Claim(_) => "claim",
            Op::Reclaim { .. } => "reclaim",
            Op::Get(_) => "get",
            Op::List { .. } => "list",
            Op::ListStale(_) => "list_stale",
            Op::ListInFlight => "list_in_flight",
            Op::Counts => "counts",
            Op::History(_) => "history",
        }
    }
}

/// Where the model and the backend disagreed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The seed that reproduces it.
    pub seed: u64,
    /// Index of the failing step (`steps` for the final comparison).
    pub step: usize,
    /// The operation, debug-printed.
    pub op: String,
    /// What differed.
    pub detail: String,
    /// The operations leading up to it (most recent last).
    pub recent: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "model test failed: seed {} step {}\nop: {}\n{}",
            self.seed, self.step, self.op, self.detail
        )?;
        writeln!(f, "recent ops (oldest first):")?;
        for r in &self.recent {
            writeln!(f, "  {r}")?;
        }
        write!(
            f,
            "replay with: LEASEHOLD_MODEL_SEED={} cargo nextest run -p <this crate> model",
            self.seed
        )
    }
}

/// Per operation kind: how many calls succeeded and how many were rejected,
/// summed over seeds. Used to prove the test is not vacuous.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    /// kind → (ok, err).
    pub by_kind: BTreeMap<&'static str, (u64, u64)>,
    /// `claim` calls that leased at least one task.
    pub claims_nonempty: u64,
    /// `reclaim` calls that touched at least one task.
    pub reclaims_nonempty: u64,
}

impl Coverage {
    fn merge(&mut self, other: Coverage) {
        for (k, (o, e)) in other.by_kind {
            let slot = self.by_kind.entry(k).or_default();
            slot.0 += o;
            slot.1 += e;
        }
        self.claims_nonempty += other.claims_nonempty;
        self.reclaims_nonempty += other.reclaims_nonempty;
    }

    fn ok(&self, kind: &str) -> u64 {
        self.by_kind.get(kind).map_or(0, |c| c.0)
    }

    fn err(&self, kind: &str) -> u64 {
        self.by_kind.get(kind).map_or(0, |c| c.1)
    }

    /// Panic unless every write kind both succeeded and (where it can) was
    /// rejected at least once: a model test that never reaches the rules
    /// would pass vacuously.
    pub fn assert_meaningful(&self) {
        let must_succeed = [
            "create",
            "put",
            "dispatch",
            "acquire_lease",
            "heartbeat",
            "release",
            "complete",
            "compensate",
            "fail",
            "quarantine",
            "annotate",
            "record_compensation",
            "claim",
            "reclaim",
            "list",
            "history",
            "apply_many",
            "heartbeat_many",
        ];
        let must_fail = [
            "create",
            "put",
            "acquire_lease",
            "heartbeat",
            "release",
            "complete",
            "fail",
            "quarantine",
            "record_compensation",
        ];
        for k in must_succeed {
            assert!(self.ok(k) > 0, "model test never succeeded a {k}: {self:?}");
        }
        for k in must_fail {
            assert!(
                self.err(k) > 0,
                "model test never got a rejected {k}: {self:?}"
            );
        }
        assert!(self.claims_nonempty > 0, "no claim ever leased a task");
        assert!(self.reclaims_nonempty > 0, "no reclaim ever touched a task");
    }
}

/// Run the model test as configured by the environment; panics with a
/// replayable [`Failure`]. `crate_name` goes into the replay hint.
pub fn run<H: Harness>(h: &H, crate_name: &str) {
    let steps = env_num("LEASEHOLD_MODEL_STEPS").unwrap_or(MODEL_STEPS_DEFAULT as u64) as usize;
    if let Some(seed) = env_num("LEASEHOLD_MODEL_SEED") {
        if let Err(f) = run_seed(h, seed, steps) {
            panic!("{}", f.to_string().replace("<this crate>", crate_name));
        }
        return;
    }
    let cases = env_num("LEASEHOLD_MODEL_CASES").unwrap_or(MODEL_CASES_DEFAULT);
    match run_cases(h, 0..cases, steps) {
        Ok(cov) => {
            if cases >= 16 && steps >= 100 {
                cov.assert_meaningful();
            }
        }
        Err(f) => panic!("{}", f.to_string().replace("<this crate>", crate_name)),
    }
}

fn env_num(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a non-negative integer")),
    )
}

/// Run every seed in `seeds`; the first failure stops the run.
pub fn run_cases<H: Harness>(
    h: &H,
    seeds: std::ops::Range<u64>,
    steps: usize,
) -> std::result::Result<Coverage, Failure> {
    let mut cov = Coverage::default();
    for seed in seeds {
        cov.merge(run_seed(h, seed, steps)?);
    }
    Ok(cov)
}

struct Run<H: Harness> {
    model: MemoryStore,
    backend: Option<H::S>,
    /// A second handle on the backend's data, opened on first use.
    other: Option<H::S>,
    /// Whether operations currently go through `other`.
    use_other: bool,
    now: Timestamp,
    /// Copies of tasks returned earlier, for stale `put`s.
    seen: Vec<Task>,
    cov: Coverage,
}

/// Run one seed for `steps` operations.
pub fn run_seed<H: Harness>(
    h: &H,
    seed: u64,
    steps: usize,
) -> std::result::Result<Coverage, Failure> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut run: Run<H> = Run {
        model: MemoryStore::new(),
        backend: Some(h.fresh()),
        other: None,
        use_other: false,
        now: at(0),
        seen: Vec::new(),
        cov: Coverage::default(),
    };
    let mut recent: Vec<String> = Vec::new();
    let fail = |step: usize, op: String, detail: String, recent: &[String]| Failure {
        seed,
        step,
        op,
        detail,
        recent: recent.to_vec(),
    };
    for step in 0..steps {
        let op = generate(&mut rng, &run);
        let op_text = format!("{op:?}");
        if let Err(detail) = step_once(h, &mut run, &op) {
            return Err(fail(step, op_text, detail, &recent));
        }
        recent.push(format!("#{step} {op_text}"));
        if recent.len() > 25 {
            recent.remove(0);
        }
    }
    if let Err(detail) = final_check(&run) {
        return Err(fail(steps, "final comparison".into(), detail, &recent));
    }
    Ok(run.cov)
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    items.choose(rng).expect("non-empty choice")
}

fn plus(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_add_micros(secs * 1_000_000).expect("in range")
}

fn owner_for(rng: &mut StdRng, t: Option<&Task>) -> String {
    match t.and_then(|t| t.lease_owner.clone()) {
        Some(o) if rng.gen_bool(0.85) => o,
        _ => pick(rng, &OWNERS).to_string(),
    }
}

fn token_for(rng: &mut StdRng, t: Option<&Task>) -> u64 {
    let cur = t.map_or(0, |t| t.lease_token);
    match rng.gen_range(0..10) {
        0 => cur.saturating_sub(1),
        1 => cur + 1,
        _ => cur,
    }
}

fn fence_for(rng: &mut StdRng, t: Option<&Task>) -> Fence {
    Fence::new(owner_for(rng, t), token_for(rng, t))
}

fn opt_fence(rng: &mut StdRng, t: Option<&Task>) -> Option<Fence> {
    rng.gen_bool(0.6).then(|| fence_for(rng, t))
}

fn new_comp(rng: &mut StdRng) -> NewCompensation {
    if rng.gen_bool(0.05) {
        return NewCompensation::new("", "x", "invalid: empty kind");
    }
    NewCompensation::new(
        *pick(rng, &["delete_branch", "remove_worktree"]),
        *pick(rng, &["b1", "b2", "wt"]),
        "cleanup",
    )
}

fn generate<H: Harness>(rng: &mut StdRng, run: &Run<H>) -> Op {
    // Mostly act on tasks still in flight, so that sequences reach the lease
    // rules instead of piling up terminal rejections.
    let in_flight = run.model.list_in_flight().expect("model list_in_flight");
    let id = match in_flight.choose(rng) {
        Some(t) if rng.gen_bool(0.6) => t.task_id.clone(),
        _ => pick(rng, &IDS).to_string(),
    };
    // Fenced writes mostly target a running task.
    let running: Vec<&Task> = in_flight
        .iter()
        .filter(|t| t.state == TaskState::Running)
        .collect();
    let id = match running.choose(rng) {
        Some(t) if rng.gen_bool(0.5) => t.task_id.clone(),
        _ => id,
    };
    let cur = run.model.get(&id).expect("model get");
    let t = cur.as_ref();
    let now = run.now;
    let reason = |rng: &mut StdRng| {
        if rng.gen_bool(0.08) {
            String::new()
        } else {
            format!("reason-{}", rng.gen_range(0..3))
        }
    };
    match rng.gen_range(0..100) {
        0..=7 => {
            let micros = match rng.gen_range(0..11) {
                0 => 1,
                1 | 2 => 1_000_000,
                3 | 4 => 5_000_000,
                5 => 10_000_000,
                6 => 29_000_000,
                7 => 31_000_000,
                8 => 120_000_000,
                _ => {
                    // Land exactly on the nearest future expiry.
                    let next = run
                        .model
                        .list_in_flight()
                        .expect("model")
                        .into_iter()
                        .filter_map(|t| t.lease_expires_at)
                        .filter(|e| *e > now)
                        .min();
                    next.map_or(1, |e| e.micros_since(now))
                }
            };
            Op::Advance { micros }
        }
        8 if rng.gen_bool(0.5) => Op::Reopen,
        8 => Op::SwitchHandle,
        9..=16 => {
            // Mostly a missing id with its own saga; sometimes a duplicate
            // id or a saga another task may hold.
            let missing: Vec<&str> = IDS
                .iter()
                .copied()
                .filter(|i| run.model.get(i).expect("model get").is_none())
                .collect();
            let id = match missing.choose(rng) {
                Some(m) if rng.gen_bool(0.7) => m.to_string(),
                _ => id,
            };
            let saga = if rng.gen_bool(0.75) {
                format!("s-{}", id.trim_start_matches("m-"))
            } else {
                pick(rng, &SAGAS).to_string()
            };
            let mut new = NewTask::new(id, saga);
            if rng.gen_bool(0.03) {
                new.task_id = "bad id".into();
            }
            if rng.gen_bool(0.5) {
                new.queue = Some(pick(rng, &QUEUES).to_string());
            }
            if rng.gen_bool(0.5) {
                new.priority = Some(*pick(rng, &[-1, 0, 1, 5]));
            }
            if rng.gen_bool(0.3) {
                new.branch = Some("feature/x".into());
            }
            if rng.gen_bool(0.2) {
                new.metadata = Some(serde_json::json!({"k": rng.gen_range(0..3)}));
            }
            if rng.gen_bool(0.4) {
                new.compensations.push(new_comp(rng));
            }
            Op::Create(new)
        }
        17..=24 => gen_put(rng, run, &id, t),
        25..=28 => Op::Apply {
            id,
            cmd: Command::Dispatch,
        },
        29..=36 => {
            let secs = *pick(rng, &[-1, 0, 30, 30, 60, 90]);
            Op::Apply {
                id,
                cmd: Command::Acquire {
                    owner: if rng.gen_bool(0.03) {
                        String::new()
                    } else {
                        pick(rng, &OWNERS).to_string()
                    },
                    expires_at: plus(now, secs),
                },
            }
        }
        37..=44 => {
            let base = t.and_then(|t| t.lease_expires_at).unwrap_or(now);
            let expires_at = match rng.gen_range(0..5) {
                0 => plus(base, -10),
                1 => base,
                2 => base.checked_add_micros(1).expect("in range"),
                3 => plus(base, 30),
                _ => plus(now, 60),
            };
            Op::Apply {
                id,
                cmd: Command::Heartbeat {
                    fence: fence_for(rng, t),
                    expires_at,
                },
            }
        }
        45..=49 => Op::Apply {
            id,
            cmd: Command::Release {
                fence: fence_for(rng, t),
            },
        },
        50..=53 => {
            let reason = rng.gen_bool(0.5).then(|| reason(rng));
            let fence = opt_fence(rng, t);
            Op::Apply {
                id,
                cmd: if rng.gen_bool(0.6) {
                    Command::Complete { reason, fence }
                } else {
                    Command::Compensate { reason, fence }
                },
            }
        }
        54..=57 => {
            let compensation = rng.gen_bool(0.5).then(|| new_comp(rng));
            Op::Apply {
                id,
                cmd: Command::Fail {
                    reason: reason(rng),
                    compensation,
                    fence: opt_fence(rng, t),
                },
            }
        }
        58..=60 => Op::Apply {
            id,
            cmd: Command::Quarantine {
                reason: reason(rng),
                fence: opt_fence(rng, t),
            },
        },
        61..=63 => Op::Apply {
            id,
            cmd: Command::Annotate {
                author: pick(rng, &["alice", "bob"]).to_string(),
                note: if rng.gen_bool(0.1) {
                    " ".into()
                } else {
                    "a note".into()
                },
            },
        },
        64..=66 => Op::Apply {
            id,
            cmd: Command::RecordCompensation {
                index: rng.gen_range(0..3),
                status: *pick(
                    rng,
                    &[
                        CompensationStatus::Pending,
                        CompensationStatus::Applied,
                        CompensationStatus::Failed,
                    ],
                ),
                detail: rng.gen_bool(0.5).then(|| "detail".to_string()),
            },
        },
        67 if rng.gen_bool(0.3) => Op::Apply {
            id,
            cmd: Command::Reclaim {
                max_attempts: rng.gen_range(1..4),
            },
        },
        67 if rng.gen_bool(0.5) => {
            let n = rng.gen_range(0..5);
            let mut items = Vec::new();
            while items.len() < n {
                if let Op::Apply { id, cmd } = generate(rng, run) {
                    items.push(BatchItem {
                        task_id: id,
                        command: cmd,
                    });
                }
            }
            Op::ApplyMany(items)
        }
        67 => {
            let running: Vec<Task> = run
                .model
                .list_in_flight()
                .expect("model")
                .into_iter()
                .filter(|t| t.state == TaskState::Running)
                .collect();
            let mut leases: Vec<(String, Fence)> = running
                .iter()
                .map(|t| (t.task_id.clone(), fence_for(rng, Some(t))))
                .collect();
            if rng.gen_bool(0.2) {
                // A task that may be missing, terminal or someone else's.
                leases.push((pick(rng, &IDS).to_string(), Fence::new("w-a", 1)));
            }
            let expires_at = plus(now, *pick(rng, &[30, 60, 90]));
            Op::HeartbeatMany { leases, expires_at }
        }
        68..=74 => {
            let queues = match rng.gen_range(0..5) {
                0 => vec![],
                4 if rng.gen_bool(0.2) => vec!["bad queue".to_string()],
                4 => vec!["nobody".to_string()],
                1 => vec!["default".to_string()],
                2 => vec!["q1".to_string()],
                _ => vec!["q1".to_string(), "default".to_string()],
            };
            Op::Claim(ClaimRequest {
                owner: pick(rng, &OWNERS).to_string(),
                queues,
                ttl: Duration::from_secs(*pick(rng, &[30, 60])),
                limit: *pick(rng, &[0, 1, 1, 2, 5]),
                max_attempts: *pick(rng, &[None, None, Some(0), Some(1), Some(2), Some(3)]),
            })
        }
        75..=79 => Op::Reclaim {
            max_attempts: *pick(rng, &[0, 1, 2, 2, 3]),
        },
        80..=82 => Op::Get(id),
        83..=87 => {
            let mut filter = ListFilter::default();
            if rng.gen_bool(0.4) {
                let n = rng.gen_range(1..3);
                filter.states = TaskState::ALL.choose_multiple(rng, n).copied().collect();
            }
            if rng.gen_bool(0.3) {
                filter.queue = Some(pick(rng, &QUEUES).to_string());
            }
            if rng.gen_bool(0.3) {
                filter.owner = Some(pick(rng, &OWNERS).to_string());
            }
            if rng.gen_bool(0.3) {
                filter.stale_at = Some(now);
            }
            Op::List {
                filter,
                limit: *pick(rng, &[None, Some(1), Some(2), Some(3)]),
            }
        }
        88..=90 => Op::ListStale(plus(now, *pick(rng, &[0, 0, 30, -30]))),
        91..=92 => Op::ListInFlight,
        93..=94 => Op::Counts,
        _ => Op::History(id),
    }
}

fn gen_put<H: Harness>(rng: &mut StdRng, run: &Run<H>, id: &str, t: Option<&Task>) -> Op {
    let stale: Vec<&Task> = run.seen.iter().filter(|s| s.task_id == id).collect();
    match t {
        None => {
            // Insert: from an earlier copy of any task, renamed, in a non-leased state.
            let mut task = match run.seen.choose(rng) {
                Some(s) => s.clone(),
                None => {
                    let ctx = Context::new(run.now, "gen");
                    leasehold_core::machine::create(NewTask::new(id, "s-x"), &ctx)
                        .expect("valid")
                        .task
                }
            };
            task.task_id = id.to_string();
            task.saga_id = pick(rng, &SAGAS).to_string();
            if task.lease_owner.is_none() || rng.gen_bool(0.5) {
                task.state = *pick(
                    rng,
                    &[
                        TaskState::Planned,
                        TaskState::Dispatched,
                        TaskState::Completed,
                        TaskState::Failed,
                    ],
                );
                if !task.state.is_terminal() {
                    task.lease_owner = None;
                    task.lease_acquired_at = None;
                    task.lease_expires_at = None;
                }
            }
            let expected_version = *pick(rng, &[None, Some(0), Some(3)]);
            Op::Put {
                task: Box::new(task),
                expected_version,
                origin: "insert",
            }
        }
        Some(cur) if stale.is_empty() || rng.gen_bool(0.6) => {
            let mut task = cur.clone();
            match rng.gen_range(0..9) {
                0 => task.branch = Some(format!("b-{}", rng.gen_range(0..3))),
                1 => task.priority = rng.gen_range(-2..3),
                2 => task.state = *pick(rng, &TaskState::ALL),
                3 => task.terminal_reason = Some(format!("put-reason-{}", rng.gen_range(0..2))),
                4 => task.metadata = serde_json::json!({"put": rng.gen_range(0..3)}),
                5 => {
                    let ctx = Context::new(run.now, "gen");
                    task.compensations.push(new_comp(rng).into_record(ctx.at));
                }
                6 => task.lease_owner = Some(pick(rng, &OWNERS).to_string()),
                7 => task.saga_id = pick(rng, &SAGAS).to_string(),
                _ => {
                    task.state = *pick(rng, &TaskState::ALL);
                    task.lease_owner = None;
                    task.lease_acquired_at = None;
                    task.lease_expires_at = None;
                }
            }
            let expected_version = match rng.gen_range(0..4) {
                0 => Some(cur.version),
                1 => Some(cur.version.saturating_sub(1)),
                _ => None,
            };
            Op::Put {
                task: Box::new(task),
                expected_version,
                origin: "fresh",
            }
        }
        Some(_) => {
            let copy = (*pick(rng, &stale)).clone();
            let expected_version = rng.gen_bool(0.3).then_some(copy.version);
            Op::Put {
                task: Box::new(copy),
                expected_version,
                origin: "stale",
            }
        }
    }
}

fn same<T: PartialEq + fmt::Debug>(
    what: &str,
    m: &Result<T>,
    b: &Result<T>,
) -> std::result::Result<(), String> {
    let ok = match (m, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(x), Err(y)) => x.code() == y.code(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} disagrees:\n  model:   {}\n  backend: {}",
            show(m),
            show(b)
        ))
    }
}

/// Batch results agree: the outer result, then item by item.
fn same_batch(
    what: &str,
    m: &Result<Vec<Result<Task>>>,
    b: &Result<Vec<Result<Task>>>,
) -> std::result::Result<(), String> {
    match (m, b) {
        (Ok(xs), Ok(ys)) if xs.len() == ys.len() => {
            for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
                same(&format!("{what} item {i}"), x, y)?;
            }
            Ok(())
        }
        (Err(x), Err(y)) if x.code() == y.code() => Ok(()),
        _ => Err(format!(
            "{what} disagrees:\n  model:   {}\n  backend: {}",
            show(m),
            show(b)
        )),
    }
}

fn show<T: fmt::Debug>(r: &Result<T>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({}: {})", e.code(), e.message()),
    }
}

fn record<T>(cov: &mut Coverage, kind: &'static str, r: &Result<T>) {
    let slot = cov.by_kind.entry(kind).or_default();
    if r.is_ok() {
        slot.0 += 1;
    } else {
        slot.1 += 1;
    }
}

/// Every page of a listing, following the store's own cursors.
fn all_pages<S: Store + ?Sized>(
    s: &S,
    filter: &ListFilter,
    limit: Option<u32>,
) -> Result<Vec<(Vec<Task>, bool)>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let Page { tasks, next_cursor } = s.list(filter, cursor.as_deref(), limit)?;
        pages.push((tasks, next_cursor.is_some()));
        match next_cursor {
            Some(c) if pages.len() <= IDS.len() + 2 => cursor = Some(c),
            Some(_) => {
                return Err(leasehold_core::Error::Internal(
                    "list cursors never end".into(),
                ))
            }
            None => return Ok(pages),
        }
    }
}

fn step_once<H: Harness>(h: &H, run: &mut Run<H>, op: &Op) -> std::result::Result<(), String> {
    let ctx = Context::new(
        run.now,
        ACTORS[(run.now.as_micros() / 1_000_000 % 2) as usize],
    );
    let kind = op.kind();
    if let Op::SwitchHandle = op {
        run.use_other = !run.use_other;
        if run.use_other && run.other.is_none() {
            run.other = Some(h.another(run.backend.as_ref().expect("backend present")));
        }
        return Ok(());
    }
    let b = if run.use_other {
        run.other.as_ref().expect("other handle present")
    } else {
        run.backend.as_ref().expect("backend present")
    };
    let m = &run.model;
    let mut seen: Vec<Task> = Vec::new();
    match op {
        Op::Advance { micros } => {
            run.now = run.now.checked_add_micros(*micros).expect("in range");
            return Ok(());
        }
        Op::Reopen => {
            run.other = None;
            run.use_other = false;
            let s = run.backend.take().expect("backend present");
            run.backend = Some(h.reopen(s));
            return Ok(());
        }
        Op::SwitchHandle => unreachable!("handled above"),
        Op::Create(new) => {
            let (x, y) = (m.create(new.clone(), &ctx), b.create(new.clone(), &ctx));
            record(&mut run.cov, kind, &x);
            same(kind, &x, &y)?;
            seen.extend(x.ok());
        }
        Op::Put {
            task,
            expected_version,
            ..
        } => {
            let x = m.put((**task).clone(), *expected_version, &ctx);
            let y = b.put((**task).clone(), *expected_version, &ctx);
            record(&mut run.cov, kind, &x);
            same(kind, &x, &y)?;
            seen.extend(x.ok());
        }
        Op::Apply { id, cmd } => {
            let (x, y) = (
                m.apply(id, cmd.clone(), &ctx),
                b.apply(id, cmd.clone(), &ctx),
            );
            record(&mut run.cov, kind, &x);
            same(kind, &x, &y)?;
            seen.extend(x.ok());
        }
        Op::ApplyMany(items) => {
            let (x, y) = (
                m.apply_many(items.clone(), &ctx),
                b.apply_many(items.clone(), &ctx),
            );
            record(&mut run.cov, kind, &x);
            same_batch(kind, &x, &y)?;
            seen.extend(x.into_iter().flatten().flatten());
        }
        Op::HeartbeatMany { leases, expires_at } => {
            let (x, y) = (
                m.heartbeat_many(leases, *expires_at, &ctx),
                b.heartbeat_many(leases, *expires_at, &ctx),
            );
            record(&mut run.cov, kind, &x);
            same_batch(kind, &x, &y)?;
        }
        Op::Claim(req) => {
            let (x, y) = (m.claim(req, &ctx), b.claim(req, &ctx));
            record(&mut run.cov, kind, &x);
            same(kind, &x, &y)?;
            if x.as_ref().is_ok_and(|v| !v.is_empty()) {
                run.cov.claims_nonempty += 1;
            }
            seen.extend(x.into_iter().flatten());
        }
        Op::Reclaim { max_attempts } => {
            let (x, y) = (
                m.reclaim(*max_attempts, &ctx),
                b.reclaim(*max_attempts, &ctx),
            );
            record(&mut run.cov, kind, &x);
            same(kind, &x, &y)?;
            if x.as_ref().is_ok_and(|v| !v.is_empty()) {
                run.cov.reclaims_nonempty += 1;
            }
            seen.extend(x.into_iter().flatten());
        }
        Op::Get(id) => {
            let (x, y) = (m.get(id), b.get(id));
            record(&mut run.cov, kind, &x);
            same(kind, &x, &y)?;
            seen.extend(x.ok().flatten());
        }
        Op::List { filter, limit } => {
            let (x, y) = (all_pages(m, filter, *limit), all_pages(b, filter, *limit));
            record(&mut run.cov, kind, &x);
            same(kind, &x, &y)?;
        }
        Op::ListStale(now) => {
            let (x, y) = (m.list_stale(*now), b.list_stale(*now));
            record(&mut run.cov, kind, &x);
            same(kind, &x, &y)?;
        }
        Op::ListInFlight => {
            let (x, y) = (m.list_in_flight(), b.list_in_flight());
            record(&mut run.cov, kind, &x);
            same(kind, &x, &y)?;
        }
        Op::Counts => {
            let (x, y) = (m.counts(), b.counts());
            record(&mut run.cov, kind, &x);
            same(kind, &x, &y)?;
        }
        Op::History(id) => {
            let (x, y) = (m.history(id), b.history(id));
            record(&mut run.cov, kind, &x);
            same(kind, &x, &y)?;
        }
    }
    run.seen.extend(seen);
    if run.seen.len() > 64 {
        let excess = run.seen.len() - 64;
        run.seen.drain(..excess);
    }
    Ok(())
}

fn final_check<H: Harness>(run: &Run<H>) -> std::result::Result<(), String> {
    let (m, b) = (&run.model, run.backend.as_ref().expect("backend present"));
    for id in IDS {
        same(&format!("final get {id}"), &m.get(id), &b.get(id))?;
        same(
            &format!("final history {id}"),
            &m.history(id),
            &b.history(id),
        )?;
    }
    let all = ListFilter::default();
    same(
        "final list",
        &all_pages(m, &all, None),
        &all_pages(b, &all, None),
    )?;
    same(
        "final list_in_flight",
        &m.list_in_flight(),
        &b.list_in_flight(),
    )?;
    same(
        "final list_stale",
        &m.list_stale(run.now),
        &b.list_stale(run.now),
    )?;
    same("final counts", &m.counts(), &b.counts())?;
    Ok(())
}
