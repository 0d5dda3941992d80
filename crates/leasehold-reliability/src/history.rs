//! Recording what clients did: every call with its invoke and return instants
//! and its result, in a thread-safe [`Recorder`].
//!
//! Real-time order comes from one monotonic clock per process (nanoseconds
//! since the recorder started); the operation's own time (`at`, the instant
//! the state machine decides with) is recorded separately. A call whose answer
//! never came (timeout, connection reset, server killed) is [`Outcome::Unknown`]:
//! it may or may not have taken effect, and the checker tries both.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use leasehold_core::{Command, ErrorCode, Task, Timestamp};
use serde::Serialize;

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Call {
    /// `Store::apply(task, command)`.
    Apply(Command),
    /// `Store::claim` on the task's own queue with limit 1, so the call
    /// concerns exactly one task.
    ClaimOne {
        /// Who takes the lease.
        owner: String,
        /// Lease time to live in microseconds.
        ttl_us: i64,
        /// The request's `max_attempts` (the server applies its own reaper
        /// limit when none is sent, so the race always sends one).
        max_attempts: u32,
    },
    /// `Store::get`.
    Get,
    /// `Store::reclaim` over every task (recorded with no task id).
    ReclaimAll {
        /// Attempts after which a stale task is quarantined.
        max_attempts: u32,
    },
}

/// What the client got back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// One task (apply).
    Task(Box<Task>),
    /// Several tasks (claim, reclaim).
    Tasks(Vec<Task>),
    /// A read.
    Found(Option<Box<Task>>),
    /// A definite error answer from the server.
    Error(ErrorCode, String),
    /// No answer: the call may or may not have taken effect.
    Unknown(String),
}

/// One recorded call.
#[derive(Debug, Clone, Serialize)]
pub struct Op {
    /// Position in the recording.
    pub id: usize,
    /// Which client made it.
    pub client: String,
    /// The task it concerns; `None` for calls over every task (reclaim).
    pub task_id: Option<String>,
    /// What was asked.
    pub call: Call,
    /// The operation time given to the state machine.
    pub at: Timestamp,
    /// Actor sent with the call.
    pub actor: String,
    /// Nanoseconds since the recorder's start when the call was sent.
    pub invoke_ns: u64,
    /// Nanoseconds since the recorder's start when the answer arrived;
    /// `None` when it never did.
    pub return_ns: Option<u64>,
    /// The answer.
    pub outcome: Outcome,
}

impl Op {
    /// Whether the answer is known to be a success.
    pub fn is_ok(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Task(_) | Outcome::Tasks(_) | Outcome::Found(_)
        )
    }

    /// One line for a printed history.
    pub fn describe(&self) -> String {
        let call = match &self.call {
            Call::Apply(c) => serde_json::to_string(c).unwrap_or_else(|_| c.name().into()),
            Call::ClaimOne {
                owner,
                ttl_us,
                max_attempts,
            } => format!("claim owner={owner} ttl_us={ttl_us} max_attempts={max_attempts}"),
            Call::Get => "get".into(),
            Call::ReclaimAll { max_attempts } => format!("reclaim_all max_attempts={max_attempts}"),
        };
        let out = match &self.outcome {
            Outcome::Task(t) => format!("ok {}", brief(t)),
            Outcome::Tasks(ts) => format!(
                "ok [{}]",
                ts.iter().map(brief).collect::<Vec<_>>().join(", ")
            ),
            Outcome::Found(Some(t)) => format!("found {}", brief(t)),
            Outcome::Found(None) => "found none".into(),
            Outcome::Error(c, m) => format!("error {}: {m}", c.as_str()),
            Outcome::Unknown(m) => format!("unknown: {m}"),
        };
        let ret = self
            .return_ns
            .map(|r| format!("{:.3}ms", r as f64 / 1e6))
            .unwrap_or_else(|| "never".into());
        format!(
            "#{} [{} .. {}] {} task={} at={} {} -> {}",
            self.id,
            format_args!("{:.3}ms", self.invoke_ns as f64 / 1e6),
            ret,
            self.client,
            self.task_id.as_deref().unwrap_or("*"),
            self.at,
            call,
            out
        )
    }
}

/// A short description of a task for printed histories.
pub fn brief(t: &Task) -> String {
    format!(
        "{}:{} v{} tok{} owner={} exp={}",
        t.task_id,
        t.state,
        t.version,
        t.lease_token,
        t.lease_owner.as_deref().unwrap_or("-"),
        t.lease_expires_at
            .map(|e| e.to_string())
            .unwrap_or_else(|| "-".into())
    )
}

/// Collects [`Op`]s from many threads.
pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// A call that has been sent but not yet answered.
#[derive(Debug)]
pub struct Pending {
    client: String,
    task_id: Option<String>,
    call: Call,
    at: Timestamp,
    actor: String,
    invoke_ns: u64,
}

impl Recorder {
    /// An empty recording whose clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the start.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Note that a call is about to be sent.
    pub fn invoke(
        &self,
        client: &str,
        task_id: Option<&str>,
        call: Call,
        at: Timestamp,
        actor: &str,
    ) -> Pending {
        Pending {
            client: client.to_string(),
            task_id: task_id.map(str::to_string),
            call,
            at,
            actor: actor.to_string(),
            invoke_ns: self.now_ns(),
        }
    }

    /// Record the answer (`Outcome::Unknown` records no return time).
    pub fn complete(&self, p: Pending, outcome: Outcome) -> Op {
        let return_ns = match outcome {
            Outcome::Unknown(_) => None,
            _ => Some(self.now_ns()),
        };
        let mut ops = self.ops.lock().expect("recorder lock");
        let op = Op {
            id: ops.len(),
            client: p.client,
            task_id: p.task_id,
            call: p.call,
            at: p.at,
            actor: p.actor,
            invoke_ns: p.invoke_ns,
            return_ns,
            outcome,
        };
        ops.push(op.clone());
        op
    }

    /// Every op recorded so far.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().expect("recorder lock").clone()
    }

    /// Number of ops recorded so far.
    pub fn len(&self) -> usize {
        self.ops.lock().expect("recorder lock").len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Turn a store result into an [`Outcome`]. `unavailable` answers are
/// [`Outcome::Unknown`]: from the client's side a timeout or a dropped
/// connection looks the same, and either may hide an applied write.
pub fn outcome_of<T>(r: &leasehold_core::Result<T>, ok: impl FnOnce(&T) -> Outcome) -> Outcome {
    match r {
        Ok(v) => ok(v),
        Err(e) if e.code() == ErrorCode::Unavailable => Outcome::Unknown(e.to_string()),
        Err(e) => Outcome::Error(e.code(), e.to_string()),
    }
}
