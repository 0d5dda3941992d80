//! Recent operations in memory: the ring buffer behind the overview's
//! operations-per-minute chart and its "recent reclaims and quarantines", and
//! the [`RecordingStore`] wrapper that feeds it from every successful write.
//!
//! Per process and lost on restart, by design: the store's history is the
//! durable record; this is a cheap live view that needs no scan.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use leasehold_core::store::BatchItem;
use leasehold_core::{
    ClaimRequest, Command, Context, Fence, NewTask, Result, Store, Task, TaskState, Timestamp,
};

use crate::EVENTS_MAX;

/// One successful write, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleEvent {
    /// When (the operation's time).
    pub at: Timestamp,
    /// The operation: a command name (`heartbeat`, `quarantine`…), `create`,
    /// `put`, `claim` or `reclaim`.
    pub op: String,
    /// The task changed.
    pub task_id: String,
    /// Who asked (the context's actor, or the fence's owner for worker writes).
    pub actor: String,
    /// The task's state after the operation.
    pub to_state: TaskState,
    /// The reason, when there is one.
    pub detail: Option<String>,
}

impl ConsoleEvent {
    /// Whether the overview lists it under "recent reclaims and quarantines".
    pub fn is_reclaim_or_quarantine(&self) -> bool {
        self.op == "reclaim" || self.to_state == TaskState::Quarantined && self.op != "put"
    }
}

/// A bounded ring buffer of [`ConsoleEvent`]s ([`EVENTS_MAX`] entries).
#[derive(Debug, Default)]
pub struct EventLog {
    events: Mutex<VecDeque<ConsoleEvent>>,
}

impl EventLog {
    /// An empty log.
    pub fn new() -> EventLog {
        EventLog::default()
    }

    /// Append an event, dropping the oldest past [`EVENTS_MAX`].
    pub fn record(&self, event: ConsoleEvent) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() >= EVENTS_MAX {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// The newest `n` events matching `keep`, newest first.
    pub fn recent(&self, n: usize, keep: impl Fn(&ConsoleEvent) -> bool) -> Vec<ConsoleEvent> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events
            .iter()
            .rev()
            .filter(|e| keep(e))
            .take(n)
            .cloned()
            .collect()
    }

    /// Operations per minute for the `minutes` minutes ending with the one
    /// containing `now`, oldest first.
    pub fn per_minute(&self, now: Timestamp, minutes: i64) -> Vec<u64> {
        const MINUTE_MICROS: i64 = 60_000_000;
        let minutes = minutes.max(1);
        let current = now.as_micros().div_euclid(MINUTE_MICROS);
        let first = current - (minutes - 1);
        let mut out = vec![0u64; usize::try_from(minutes).unwrap_or(1)];
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        for e in events.iter() {
            let m = e.at.as_micros().div_euclid(MINUTE_MICROS);
            if (first..=current).contains(&m) {
                if let Ok(i) = usize::try_from(m - first) {
                    out[i] += 1;
                }
            }
        }
        out
    }

    /// Number of events held.
    pub fn len(&self) -> usize {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A [`Store`] that forwards every call and records each successful write in
/// an [`EventLog`]. Reads pass through untouched.
pub struct RecordingStore {
    inner: Arc<dyn Store>,
    events: Arc<EventLog>,
}

impl RecordingStore {
    /// Wrap `inner`, recording into `events`.
    pub fn new(inner: Arc<dyn Store>, events: Arc<EventLog>) -> RecordingStore {
        RecordingStore { inner, events }
    }

    fn note(
        &self,
        op: &str,
        task: &Task,
        ctx: &Context,
        actor: Option<&str>,
        detail: Option<String>,
    ) {
        self.events.record(ConsoleEvent {
            at: ctx.at,
            op: op.to_string(),
            task_id: task.task_id.clone(),
            actor: actor.unwrap_or(&ctx.actor).to_string(),
            to_state: task.state,
            detail,
        });
    }
}

/// A command's name, its actor when it is not the context's (a worker's
/// fence owner, a lease owner, a note's author), and its reason.
fn describe(cmd: &Command) -> (&'static str, Option<String>, Option<String>) {
    let actor = match cmd {
        Command::Acquire { owner, .. } => Some(owner.clone()),
        Command::Annotate { author, .. } => Some(author.clone()),
        other => other.fence().map(|f| f.owner.clone()),
    };
    let detail = match cmd {
        Command::Quarantine { reason, .. } | Command::Fail { reason, .. } => Some(reason.clone()),
        Command::Complete { reason, .. } | Command::Compensate { reason, .. } => reason.clone(),
        _ => None,
    };
    (cmd.name(), actor, detail)
}

impl RecordingStore {
    fn note_command(
        &self,
        op: &str,
        t: &Task,
        ctx: &Context,
        actor: Option<String>,
        detail: Option<String>,
    ) {
        let detail = if op == "reclaim" {
            t.terminal_reason.clone()
        } else {
            detail
        };
        self.note(op, t, ctx, actor.as_deref(), detail);
    }
}

impl RecordingStore {
    /// Record each accepted item of a batch whose commands were `described`.
    fn note_batch(
        &self,
        described: Vec<(&'static str, Option<String>, Option<String>)>,
        results: &[Result<Task>],
        ctx: &Context,
    ) {
        for ((op, actor, detail), r) in described.into_iter().zip(results) {
            if let Ok(t) = r {
                self.note_command(op, t, ctx, actor, detail);
            }
        }
    }
}

/// Writes are recorded; every other method, and every batch, reaches the
/// inner store's own (`delegate_store!`), so a backend's fast paths (SQLite's
/// one-transaction batch and counter table, the HTTP client's batch routes)
/// are kept. The single-command helpers keep the trait's defaults: they
/// arrive here as `apply`, which records them.
impl Store for RecordingStore {
    leasehold_core::delegate_store! {
        to self.inner;
        defaults [
            dispatch, acquire_lease, heartbeat, release, complete, compensate, fail,
            quarantine, annotate, record_compensation,
        ];

        fn create(&self, new: NewTask, ctx: &Context) -> Result<Task> {
            let t = self.inner.create(new, ctx)?;
            self.note("create", &t, ctx, None, None);
            Ok(t)
        }

        fn put(&self, task: Task, expected_version: Option<u64>, ctx: &Context) -> Result<Task> {
            let t = self.inner.put(task, expected_version, ctx)?;
            self.note("put", &t, ctx, None, None);
            Ok(t)
        }

        fn apply(&self, task_id: &str, cmd: Command, ctx: &Context) -> Result<Task> {
            let (op, actor, detail) = describe(&cmd);
            let t = self.inner.apply(task_id, cmd, ctx)?;
            self.note_command(op, &t, ctx, actor, detail);
            Ok(t)
        }

        fn apply_many(&self, items: Vec<BatchItem>, ctx: &Context) -> Result<Vec<Result<Task>>> {
            let described = items.iter().map(|i| describe(&i.command)).collect();
            let results = self.inner.apply_many(items, ctx)?;
            self.note_batch(described, &results, ctx);
            Ok(results)
        }

        fn heartbeat_many(
            &self,
            leases: &[(String, Fence)],
            expires_at: Timestamp,
            ctx: &Context,
        ) -> Result<Vec<Result<Task>>> {
            let described = leases
                .iter()
                .map(|(_, fence)| {
                    describe(&Command::Heartbeat {
                        fence: fence.clone(),
                        expires_at,
                    })
                })
                .collect();
            let results = self.inner.heartbeat_many(leases, expires_at, ctx)?;
            self.note_batch(described, &results, ctx);
            Ok(results)
        }

        fn complete_many(
            &self,
            leases: &[(String, Fence)],
            reason: Option<&str>,
            ctx: &Context,
        ) -> Result<Vec<Result<Task>>> {
            let described = leases
                .iter()
                .map(|(_, fence)| {
                    describe(&Command::Complete {
                        reason: reason.map(str::to_string),
                        fence: Some(fence.clone()),
                    })
                })
                .collect();
            let results = self.inner.complete_many(leases, reason, ctx)?;
            self.note_batch(described, &results, ctx);
            Ok(results)
        }

        fn claim(&self, req: &ClaimRequest, ctx: &Context) -> Result<Vec<Task>> {
            let tasks = self.inner.claim(req, ctx)?;
            for t in &tasks {
                self.note("claim", t, ctx, Some(&req.owner), None);
            }
            Ok(tasks)
        }

        fn reclaim(&self, max_attempts: u32, ctx: &Context) -> Result<Vec<Task>> {
            let tasks = self.inner.reclaim(max_attempts, ctx)?;
            for t in &tasks {
                let detail = (t.state == TaskState::Quarantined)
                    .then(|| t.terminal_reason.clone())
                    .flatten();
                self.note("reclaim", t, ctx, None, detail);
            }
            Ok(tasks)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::memory::MemoryStore;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn ring_buffer_keeps_the_newest() {
        let log = EventLog::new();
        for i in 0..(EVENTS_MAX + 10) {
            log.record(ConsoleEvent {
                at: at("2026-06-03T10:00:00Z"),
                op: "heartbeat".into(),
                task_id: format!("t{i}"),
                actor: "w".into(),
                to_state: TaskState::Running,
                detail: None,
            });
        }
        assert_eq!(log.len(), EVENTS_MAX);
        let newest = log.recent(1, |_| true);
        assert_eq!(newest[0].task_id, format!("t{}", EVENTS_MAX + 9));
    }

    #[test]
    fn recording_store_counts_writes_per_minute_and_reclaims() {
        let events = Arc::new(EventLog::new());
        let store = RecordingStore::new(Arc::new(MemoryStore::new()), events.clone());
        let t0 = at("2026-06-03T10:00:00Z");
        let ctx = Context::new(t0, "op");
        store.create(NewTask::new("a", "sa"), &ctx).unwrap();
        store
            .acquire_lease("a", "w1", at("2026-06-03T10:00:30Z"), &ctx)
            .unwrap();
        // A rejected write records nothing.
        assert!(store.dispatch("missing", &ctx).is_err());
        let later = Context::new(at("2026-06-03T10:02:00Z"), "reaper");
        let reclaimed = store.reclaim(1, &later).unwrap();
        assert_eq!(reclaimed.len(), 1);
        assert_eq!(events.per_minute(later.at, 3), vec![2, 0, 1]);
        let recent = events.recent(10, ConsoleEvent::is_reclaim_or_quarantine);
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].to_state, TaskState::Quarantined);
        assert_eq!(recent[0].actor, "reaper");
        let leased = events.recent(10, |e| e.op == "acquire_lease");
        assert_eq!(leased[0].actor, "w1");
    }

    /// A backend with its own batch methods (as SQLite's `apply_many` and
    /// the HTTP client's `heartbeat_many`/`complete_many`): records which one
    /// each call reached.
    struct Batching {
        inner: MemoryStore,
        batches: Mutex<Vec<&'static str>>,
    }

    impl Batching {
        fn reached(&self, name: &'static str) {
            self.batches.lock().unwrap().push(name);
        }
    }

    impl Store for Batching {
        leasehold_core::delegate_store! {
            to self.inner;
            fn apply_many(
                &self,
                items: Vec<BatchItem>,
                ctx: &Context,
            ) -> Result<Vec<Result<Task>>> {
                self.reached("apply_many");
                self.inner.apply_many(items, ctx)
            }
            fn heartbeat_many(
                &self,
                leases: &[(String, Fence)],
                expires_at: Timestamp,
                ctx: &Context,
            ) -> Result<Vec<Result<Task>>> {
                self.reached("heartbeat_many");
                self.inner.heartbeat_many(leases, expires_at, ctx)
            }
            fn complete_many(
                &self,
                leases: &[(String, Fence)],
                reason: Option<&str>,
                ctx: &Context,
            ) -> Result<Vec<Result<Task>>> {
                self.reached("complete_many");
                self.inner.complete_many(leases, reason, ctx)
            }
        }
    }

    #[test]
    fn batches_reach_the_backend_whole_and_each_success_is_recorded() {
        let events = Arc::new(EventLog::new());
        let inner = Arc::new(Batching {
            inner: MemoryStore::new(),
            batches: Default::default(),
        });
        let store = RecordingStore::new(inner.clone(), events.clone());
        let ctx = Context::new(at("2026-06-03T10:00:00Z"), "op");
        for id in ["a", "b"] {
            store
                .create(NewTask::new(id, format!("s-{id}")), &ctx)
                .unwrap();
            store
                .acquire_lease(id, "w1", at("2026-06-03T10:01:00Z"), &ctx)
                .unwrap();
        }
        let leases = vec![
            ("a".to_string(), leasehold_core::Fence::new("w1", 1)),
            ("b".to_string(), leasehold_core::Fence::new("w1", 99)),
        ];
        let out = store
            .heartbeat_many(&leases, at("2026-06-03T10:02:00Z"), &ctx)
            .unwrap();
        assert!(out[0].is_ok() && out[1].is_err());
        // The backend's own heartbeat batch, not the trait's per-item default.
        assert_eq!(*inner.batches.lock().unwrap(), ["heartbeat_many"]);
        let beats = events.recent(10, |e| e.op == "heartbeat");
        assert_eq!(beats.len(), 1, "only the accepted heartbeat is recorded");
        assert_eq!(
            (beats[0].task_id.as_str(), beats[0].actor.as_str()),
            ("a", "w1")
        );

        let done = Context::new(at("2026-06-03T10:03:00Z"), "op");
        let out = store.complete_many(&leases, Some("ok"), &done).unwrap();
        assert!(out[0].is_ok() && out[1].is_err());
        let items = vec![BatchItem {
            task_id: "b".into(),
            command: Command::Quarantine {
                reason: "stuck".into(),
                fence: None,
            },
        }];
        assert!(store.apply_many(items, &done).unwrap()[0].is_ok());
        assert_eq!(
            *inner.batches.lock().unwrap(),
            ["heartbeat_many", "complete_many", "apply_many"]
        );
        let ops: Vec<_> = events
            .recent(10, |e| e.at == done.at)
            .into_iter()
            .map(|e| (e.op, e.task_id, e.actor, e.detail))
            .collect();
        assert_eq!(ops.len(), 2, "{ops:?}");
        assert!(ops.contains(&(
            "complete".into(),
            "a".into(),
            "w1".into(),
            Some("ok".into())
        )));
        assert!(ops.contains(&(
            "quarantine".into(),
            "b".into(),
            "op".into(),
            Some("stuck".into())
        )));
    }
}
