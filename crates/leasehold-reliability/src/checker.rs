//! The history checker: is each task's recorded history linearizable against
//! the in-memory model (`leasehold_core::machine`)?
//!
//! Per-task partitioning: every call in the workloads concerns one task
//! (claims go to a queue holding exactly that task), except `reclaim` over all
//! tasks, which is projected onto each task it returned. Tasks are independent
//! in the model, so a history is linearizable iff each task's is.
//!
//! The search is Wing & Gong's with Lowe's memoisation (the algorithm behind
//! porcupine and knossos): repeatedly pick a call that may go next (invoked
//! before every not-yet-linearized call returned), apply it to the model and
//! check the answer; remember every (set of linearized calls, model state)
//! already explored. Calls without an answer may take effect or not. A
//! violation is shrunk to a minimal failing history (shortest failing prefix,
//! then calls removed one at a time while it still fails) for the report.
//!
//! Besides linearizability, [`check_invariants`] checks properties that are
//! easy to state directly on the acknowledged answers: one unexpired lease per
//! task, tokens never reused or going back, no transition out of a terminal
//! state, and a stored history that agrees with the stored task.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};

use leasehold_core::machine::{self, Command, Context};
use leasehold_core::{ErrorCode, HistoryEntry, HistoryKind, Task, TaskState};

use crate::history::{brief, Call, Op, Outcome};

/// How strictly some answers are judged.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Accept an empty claim even when the model says the task was claimable.
    /// PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, which passes over a
    /// row another transaction holds at that instant (SPEC: any number of
    /// servers claim without blocking each other).
    pub empty_claim_may_skip: bool,
    /// Most (linearized set, state) pairs explored per task before the check
    /// gives up as inconclusive (which counts as a failure). 0 = 2 000 000.
    pub max_states: usize,
}

/// The verdict for one task.
#[derive(Debug, Clone)]
pub struct TaskVerdict {
    /// The task.
    pub task_id: String,
    /// Calls checked.
    pub ops: usize,
    /// States explored.
    pub states: usize,
    /// `None` when linearizable; otherwise a printable minimal failing history.
    pub violation: Option<String>,
}

/// The verdict for a whole recording.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Per task.
    pub tasks: Vec<TaskVerdict>,
}

impl Verdict {
    /// Calls checked in total.
    pub fn ops_checked(&self) -> usize {
        self.tasks.iter().map(|t| t.ops).sum()
    }

    /// Printable violations (empty when everything is linearizable).
    pub fn violations(&self) -> Vec<String> {
        self.tasks
            .iter()
            .filter_map(|t| t.violation.clone())
            .collect()
    }
}

/// One call projected onto one task.
#[derive(Debug, Clone)]
struct Event {
    op: Op,
    invoke: u64,
    ret: u64,
}

fn project(ops: &[Op], task_id: &str) -> Vec<Event> {
    let mut out = Vec::new();
    for op in ops {
        let mine = match (&op.task_id, &op.call) {
            (Some(t), _) => t == task_id,
            (None, Call::ReclaimAll { .. }) => true,
            _ => false,
        };
        if !mine {
            continue;
        }
        let mut op = op.clone();
        if let Call::ReclaimAll { max_attempts } = op.call {
            // Project: reclaimed this task -> a per-task reclaim with that
            // answer; did not -> no constraint (a batch limit or a lock may
            // leave a stale task for the next pass); unknown -> unknown.
            let outcome = match &op.outcome {
                Outcome::Tasks(ts) => match ts.iter().find(|t| t.task_id == task_id) {
                    Some(t) => Outcome::Task(Box::new(t.clone())),
                    None => continue,
                },
                Outcome::Unknown(m) => Outcome::Unknown(m.clone()),
                _ => continue,
            };
            op.call = Call::Apply(Command::Reclaim { max_attempts });
            op.outcome = outcome;
            op.task_id = Some(task_id.to_string());
        }
        out.push(Event {
            invoke: op.invoke_ns,
            ret: op.return_ns.unwrap_or(u64::MAX),
            op,
        });
    }
    out.sort_by_key(|e| (e.invoke, e.op.id));
    out
}

/// Every state the model may be in after `op` from `state` given its answer;
/// empty when the answer is impossible.
fn step(state: &Task, op: &Op, opts: &CheckOptions) -> Vec<Task> {
    let ctx = Context::new(op.at, op.actor.clone());
    let unknown = matches!(op.outcome, Outcome::Unknown(_));
    match &op.call {
        Call::Apply(cmd) => {
            let r = machine::apply(state, cmd, &ctx);
            match (&op.outcome, r) {
                (Outcome::Task(got), Ok(tr)) => {
                    if tr.task == **got {
                        vec![tr.task]
                    } else {
                        vec![]
                    }
                }
                (Outcome::Error(code, _), Err(e)) => {
                    if e.code() == *code {
                        vec![state.clone()]
                    } else {
                        vec![]
                    }
                }
                (Outcome::Unknown(_), Ok(tr)) => {
                    if tr.changed {
                        vec![state.clone(), tr.task]
                    } else {
                        vec![state.clone()]
                    }
                }
                (Outcome::Unknown(_), Err(_)) => vec![state.clone()],
                _ => vec![],
            }
        }
        Call::ClaimOne {
            owner,
            ttl_us,
            max_attempts,
        } => {
            let granted = if state.is_claimable_within(op.at, Some(*max_attempts)) {
                op.at.checked_add_micros(*ttl_us).and_then(|expires_at| {
                    machine::apply(
                        state,
                        &Command::Acquire {
                            owner: owner.clone(),
                            expires_at,
                        },
                        &ctx,
                    )
                    .ok()
                    .map(|tr| tr.task)
                })
            } else {
                None
            };
            if unknown {
                let mut v = vec![state.clone()];
                v.extend(granted);
                return v;
            }
            match (&op.outcome, granted) {
                (Outcome::Tasks(ts), Some(g)) if ts.len() == 1 && ts[0] == g => vec![g],
                (Outcome::Tasks(ts), None) if ts.is_empty() => vec![state.clone()],
                (Outcome::Tasks(ts), Some(_)) if ts.is_empty() && opts.empty_claim_may_skip => {
                    vec![state.clone()]
                }
                _ => vec![],
            }
        }
        Call::Get => match &op.outcome {
            Outcome::Found(Some(t)) if **t == *state => vec![state.clone()],
            Outcome::Unknown(_) => vec![state.clone()],
            _ => vec![],
        },
        Call::ReclaimAll { .. } => vec![state.clone()],
    }
}

fn state_key(t: &Task) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(t).unwrap_or_default().hash(&mut h);
    h.finish()
}

struct Search<'a> {
    events: &'a [Event],
    opts: &'a CheckOptions,
    lin: Vec<u64>,
    seen: HashSet<(Vec<u64>, u64)>,
    max_states: usize,
    gave_up: bool,
    deepest: usize,
}

impl Search<'_> {
    fn is_set(&self, i: usize) -> bool {
        self.lin[i / 64] & (1 << (i % 64)) != 0
    }
    fn flip(&mut self, i: usize) {
        self.lin[i / 64] ^= 1 << (i % 64);
    }

    fn run(&mut self, state: &Task, done: usize) -> bool {
        self.deepest = self.deepest.max(done);
        if done == self.events.len() {
            return true;
        }
        if self.seen.len() > self.max_states {
            self.gave_up = true;
            return false;
        }
        let mut min_ret = u64::MAX;
        for (i, e) in self.events.iter().enumerate() {
            if !self.is_set(i) {
                min_ret = min_ret.min(e.ret);
            }
        }
        for i in 0..self.events.len() {
            if self.is_set(i) {
                continue;
            }
            let e = &self.events[i];
            if e.invoke > min_ret {
                break; // sorted by invoke: no later call may go first
            }
            for next in step(state, &e.op, self.opts) {
                self.flip(i);
                let key = (self.lin.clone(), state_key(&next));
                let fresh = self.seen.insert(key);
                if fresh && self.run(&next, done + 1) {
                    self.flip(i);
                    return true;
                }
                self.flip(i);
                if self.gave_up {
                    return false;
                }
            }
        }
        false
    }
}

/// Outcome of one search.
enum Lin {
    Yes(usize),
    No(usize),
    GaveUp(usize),
}

fn linearizable(initial: &Task, events: &[Event], opts: &CheckOptions) -> Lin {
    let mut s = Search {
        events,
        opts,
        lin: vec![0; events.len().div_ceil(64).max(1)],
        seen: HashSet::new(),
        max_states: if opts.max_states == 0 {
            2_000_000
        } else {
            opts.max_states
        },
        gave_up: false,
        deepest: 0,
    };
    let ok = s.run(initial, 0);
    let n = s.seen.len();
    if ok {
        Lin::Yes(n)
    } else if s.gave_up {
        Lin::GaveUp(n)
    } else {
        Lin::No(n)
    }
}

fn fails(initial: &Task, events: &[Event], opts: &CheckOptions) -> bool {
    matches!(linearizable(initial, events, opts), Lin::No(_))
}

/// Shrink a failing history: shortest failing prefix (by invocation), then
/// drop single calls while it still fails, within a budget of checks.
fn shrink(initial: &Task, events: &[Event], opts: &CheckOptions) -> Vec<Event> {
    let (mut lo, mut hi) = (1usize, events.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fails(initial, &events[..mid], opts) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let mut cur: Vec<Event> = events[..hi].to_vec();
    if !fails(initial, &cur, opts) {
        cur = events.to_vec();
    }
    // Only calls that cannot have changed the task are dropped: removing a
    // write would make later answers impossible for a different reason.
    let mut budget = 300usize;
    let mut i = 0;
    while i < cur.len() && budget > 0 {
        if !read_only(&cur[i].op) {
            i += 1;
            continue;
        }
        let mut trial = cur.clone();
        trial.remove(i);
        budget -= 1;
        if !trial.is_empty() && fails(initial, &trial, opts) {
            cur = trial;
        } else {
            i += 1;
        }
    }
    cur
}

/// A call whose answer shows it changed nothing: a read, an error, an empty claim.
fn read_only(op: &Op) -> bool {
    match (&op.call, &op.outcome) {
        (Call::Get, _) => true,
        (_, Outcome::Error(..)) => true,
        (Call::ClaimOne { .. }, Outcome::Tasks(ts)) => ts.is_empty(),
        _ => false,
    }
}

/// Longest printed history; earlier calls are summarised.
const PRINTED_CALLS_MAX: usize = 60;

fn print_history(initial: &Task, events: &[Event], seed: u64) -> String {
    let mut s = format!(
        "linearizability violation on task {:?} (seed {seed}); minimal failing history of {} calls from initial state {}:\n",
        initial.task_id,
        events.len(),
        brief(initial)
    );
    let skip = events.len().saturating_sub(PRINTED_CALLS_MAX);
    if skip > 0 {
        s.push_str(&format!(
            "  ... {skip} earlier calls (writes the failure depends on) not shown\n"
        ));
    }
    for e in &events[skip..] {
        s.push_str("  ");
        s.push_str(&e.op.describe());
        s.push('\n');
    }
    s
}

/// Check every task's history. `initial` maps each task id to its state
/// before the first recorded call.
pub fn check(
    initial: &BTreeMap<String, Task>,
    ops: &[Op],
    opts: &CheckOptions,
    seed: u64,
) -> Verdict {
    let mut verdict = Verdict::default();
    for (id, init) in initial {
        let events = project(ops, id);
        let init = init.clone();
        let opts = *opts;
        // Deep histories recurse deeply: run on a thread with a big stack.
        let tv = std::thread::Builder::new()
            .stack_size(512 << 20)
            .spawn(move || {
                let n = events.len();
                match linearizable(&init, &events, &opts) {
                    Lin::Yes(states) => TaskVerdict {
                        task_id: init.task_id.clone(),
                        ops: n,
                        states,
                        violation: None,
                    },
                    Lin::GaveUp(states) => TaskVerdict {
                        task_id: init.task_id.clone(),
                        ops: n,
                        states,
                        violation: Some(format!(
                            "task {:?} (seed {seed}): inconclusive after {states} states over {n} calls; raise max_states or shorten the run",
                            init.task_id
                        )),
                    },
                    Lin::No(states) => {
                        let min = shrink(&init, &events, &opts);
                        TaskVerdict {
                            task_id: init.task_id.clone(),
                            ops: n,
                            states,
                            violation: Some(print_history(&init, &min, seed)),
                        }
                    }
                }
            })
            .expect("spawn checker thread")
            .join()
            .expect("checker thread panicked");
        verdict.tasks.push(tv);
    }
    verdict
}

/// The task as the answer of a successful call shows it, with that call.
fn acked_tasks(ops: &[Op]) -> Vec<(&Op, &Task)> {
    let mut out = Vec::new();
    for op in ops {
        match &op.outcome {
            Outcome::Task(t) => out.push((op, &**t)),
            Outcome::Tasks(ts) => out.extend(ts.iter().map(|t| (op, t))),
            Outcome::Found(Some(t)) => out.push((op, &**t)),
            _ => {}
        }
    }
    out
}

/// Check the direct invariants on acknowledged answers plus, per task, the
/// final stored task and its stored history. Returns violations (empty = ok).
pub fn check_invariants(
    ops: &[Op],
    finals: &BTreeMap<String, (Task, Vec<HistoryEntry>)>,
) -> Vec<String> {
    let mut v = Vec::new();
    let acked = acked_tasks(ops);
    for (id, (fin, hist)) in finals {
        let mine: Vec<&(&Op, &Task)> = acked.iter().filter(|(_, t)| t.task_id == *id).collect();
        // Grants: a successful acquire or claim answer.
        let mut grants: BTreeMap<u64, (&Op, &Task)> = BTreeMap::new();
        let mut max_expiry: BTreeMap<u64, leasehold_core::Timestamp> = BTreeMap::new();
        let mut ended: HashSet<u64> = HashSet::new();
        for (op, t) in &mine {
            let is_grant = matches!(
                op.call,
                Call::ClaimOne { .. } | Call::Apply(Command::Acquire { .. })
            );
            if is_grant {
                if let Some((prev_op, prev)) = grants.get(&t.lease_token) {
                    if prev.lease_owner != t.lease_owner
                        || prev.lease_acquired_at != t.lease_acquired_at
                    {
                        v.push(format!(
                            "task {id:?}: token {} granted twice: {} and {}",
                            t.lease_token,
                            prev_op.describe(),
                            op.describe()
                        ));
                    }
                }
                grants.insert(t.lease_token, (op, t));
            }
            if t.state == TaskState::Running {
                if let Some(e) = t.lease_expires_at {
                    let m = max_expiry.entry(t.lease_token).or_insert(e);
                    if e > *m {
                        *m = e;
                    }
                }
            } else {
                // Released, reclaimed or terminal: the lease with this token ended.
                ended.insert(t.lease_token);
            }
            if t.lease_token > fin.lease_token {
                v.push(format!(
                    "task {id:?}: token went back: an answer showed token {} but the stored task has {}: {}",
                    t.lease_token,
                    fin.lease_token,
                    op.describe()
                ));
            }
            if t.state.is_terminal() && fin.state != t.state {
                v.push(format!(
                    "task {id:?}: left terminal state {} (stored state is {}) after {}",
                    t.state,
                    fin.state,
                    op.describe()
                ));
            }
        }
        // Calls without an answer may have ended a lease.
        let maybe_ended = ops.iter().any(|op| {
            matches!(op.outcome, Outcome::Unknown(_))
                && (op.task_id.as_deref() == Some(id.as_str()) || op.task_id.is_none())
        });
        let toks: Vec<u64> = grants.keys().copied().collect();
        for w in toks.windows(2) {
            let (k, k2) = (w[0], w[1]);
            let next = grants[&k2].1;
            let acquired = next.lease_acquired_at.expect("granted lease has a time");
            if let Some(exp) = max_expiry.get(&k) {
                if acquired < *exp && !ended.contains(&k) && !maybe_ended {
                    v.push(format!(
                        "task {id:?}: two unexpired leases: token {k} held until {exp} with no release, and token {k2} acquired at {acquired} by {:?}",
                        next.lease_owner
                    ));
                }
            }
        }
        // Per client, the tokens it was granted on this task strictly increase.
        let mut per_client: BTreeMap<&str, u64> = BTreeMap::new();
        for (op, t) in grants.values() {
            let last = per_client.entry(op.client.as_str()).or_insert(0);
            if t.lease_token <= *last {
                v.push(format!(
                    "task {id:?}: client {} was granted token {} after {}",
                    op.client, t.lease_token, last
                ));
            }
            *last = t.lease_token;
        }
        v.extend(check_stored(fin, hist));
    }
    v
}

/// The stored task and its stored history agree (no torn task): the last
/// entry's state is the task's, leased entries count the attempts and carry
/// strictly increasing tokens ending at the task's token, nothing leaves a
/// terminal state, and a failed task has a compensation.
pub fn check_stored(t: &Task, hist: &[HistoryEntry]) -> Vec<String> {
    let id = &t.task_id;
    let mut v = Vec::new();
    match hist.last() {
        None => v.push(format!("task {id:?}: stored without any history entry")),
        Some(last) if last.to_state != t.state => v.push(format!(
            "task {id:?}: torn: state {} but the last history entry ({}) says {}",
            t.state, last.kind, last.to_state
        )),
        _ => {}
    }
    let mut prev_state: Option<TaskState> = None;
    let mut last_token = 0u64;
    let mut leased = 0u32;
    let mut terminal_seen: Option<TaskState> = None;
    for (i, h) in hist.iter().enumerate() {
        if i > 0 && h.from_state != prev_state {
            v.push(format!(
                "task {id:?}: history entry {i} ({}) starts from {:?} but the previous entry ended in {:?}",
                h.kind, h.from_state, prev_state
            ));
        }
        if let Some(term) = terminal_seen {
            let audit = matches!(
                h.kind,
                HistoryKind::Annotated | HistoryKind::CompensationRecorded | HistoryKind::Updated
            );
            if !audit || h.to_state != term {
                v.push(format!(
                    "task {id:?}: transition out of terminal state {term}: entry {i} is {} to {}",
                    h.kind, h.to_state
                ));
            }
        }
        if h.kind == HistoryKind::Leased {
            leased += 1;
            if h.lease_token <= last_token {
                v.push(format!(
                    "task {id:?}: leased entry {i} has token {} after token {last_token}",
                    h.lease_token
                ));
            }
        }
        if h.lease_token < last_token {
            v.push(format!(
                "task {id:?}: history entry {i} ({}) token {} went back from {last_token}",
                h.kind, h.lease_token
            ));
        }
        last_token = last_token.max(h.lease_token);
        if h.to_state.is_terminal() && terminal_seen.is_none() {
            terminal_seen = Some(h.to_state);
        }
        prev_state = Some(h.to_state);
    }
    let imported = hist
        .first()
        .is_some_and(|h| h.kind == HistoryKind::Imported);
    if !imported {
        if leased != t.attempts {
            v.push(format!(
                "task {id:?}: torn: attempts {} but {leased} leased history entries",
                t.attempts
            ));
        }
        if last_token != t.lease_token {
            v.push(format!(
                "task {id:?}: torn: token {} but history ends at token {last_token}",
                t.lease_token
            ));
        }
    }
    if t.state == TaskState::Failed && t.compensations.is_empty() {
        v.push(format!("task {id:?}: failed without a compensation record"));
    }
    if t.state == TaskState::Running && (t.lease_owner.is_none() || t.lease_expires_at.is_none()) {
        v.push(format!(
            "task {id:?}: torn: running without a lease owner and expiry"
        ));
    }
    v
}

/// Whether an error code is one the server may answer under faults without
/// the call being a bug (`unavailable` only).
pub fn is_retryable(code: ErrorCode) -> bool {
    code == ErrorCode::Unavailable
}
