//! Store wrappers for fault injection and for proving the checkers bite.
//!
//! - [`FaultStore`] fails chosen store calls with `unavailable` *before* they
//!   reach the real backend, the way a busy database, an I/O error or a
//!   dropped connection surfaces through the `Store` seam: the N-th store
//!   call of an operation (the server makes one or two per request: an
//!   authorisation read, then the write) answers the error and nothing changes.
//! - [`MutantStore`] is deliberately wrong (lost writes, leases granted over
//!   live ones): the race workload run against it must report violations,
//!   which shows the checker is not vacuous.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use leasehold_core::machine::{self, Command, Context};
use leasehold_core::{
    ClaimRequest, Counts, Error, ErrorCode, HistoryEntry, ListFilter, NewTask, Page, Result, Store,
    Task, Timestamp,
};

/// A store that fails chosen calls with `unavailable`, else delegates.
pub struct FaultStore<S> {
    inner: S,
    calls: AtomicU64,
    fail_at: Mutex<Vec<u64>>,
    injected: AtomicU64,
}

impl<S: Store> FaultStore<S> {
    /// Wrap `inner`; nothing fails until [`FaultStore::fail_nth_from_now`].
    pub fn new(inner: S) -> FaultStore<S> {
        FaultStore {
            inner,
            calls: AtomicU64::new(0),
            fail_at: Mutex::new(Vec::new()),
            injected: AtomicU64::new(0),
        }
    }

    /// Fail the `n`-th store call from now (1 = the next one).
    pub fn fail_nth_from_now(&self, n: u64) {
        let at = self.calls.load(Ordering::SeqCst) + n;
        self.fail_at.lock().expect("fault lock").push(at);
    }

    /// Forget scheduled faults that have not fired.
    pub fn clear(&self) {
        self.fail_at.lock().expect("fault lock").clear();
    }

    /// Store calls seen so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn gate(&self, what: &str) -> Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let mut f = self.fail_at.lock().expect("fault lock");
        if let Some(pos) = f.iter().position(|x| *x == n) {
            f.remove(pos);
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(Error::Unavailable(format!(
                "injected store fault in {what} (store call {n}): database is locked"
            )));
        }
        Ok(())
    }
}

// Written out rather than with `delegate_store!`: every call must pass the
// gate, and the provided methods keep the trait's defaults so that a batch
// is gated per item, as the server's calls were counted. A new required
// `Store` method should fail to compile here, not be forwarded ungated.
impl<S: Store> Store for FaultStore<S> {
    fn create(&self, new: NewTask, ctx: &Context) -> Result<Task> {
        self.gate("create")?;
        self.inner.create(new, ctx)
    }
    fn put(&self, task: Task, expected_version: Option<u64>, ctx: &Context) -> Result<Task> {
        self.gate("put")?;
        self.inner.put(task, expected_version, ctx)
    }
    fn apply(&self, task_id: &str, cmd: Command, ctx: &Context) -> Result<Task> {
        self.gate(cmd.name())?;
        self.inner.apply(task_id, cmd, ctx)
    }
    fn claim(&self, req: &ClaimRequest, ctx: &Context) -> Result<Vec<Task>> {
        self.gate("claim")?;
        self.inner.claim(req, ctx)
    }
    fn reclaim(&self, max_attempts: u32, ctx: &Context) -> Result<Vec<Task>> {
        self.gate("reclaim")?;
        self.inner.reclaim(max_attempts, ctx)
    }
    fn get(&self, task_id: &str) -> Result<Option<Task>> {
        self.gate("get")?;
        self.inner.get(task_id)
    }
    fn list(&self, filter: &ListFilter, cursor: Option<&str>, limit: Option<u32>) -> Result<Page> {
        self.gate("list")?;
        self.inner.list(filter, cursor, limit)
    }
    fn list_in_flight(&self) -> Result<Vec<Task>> {
        self.gate("list_in_flight")?;
        self.inner.list_in_flight()
    }
    fn list_stale(&self, now: Timestamp) -> Result<Vec<Task>> {
        self.gate("list_stale")?;
        self.inner.list_stale(now)
    }
    fn counts(&self) -> Result<Counts> {
        self.gate("counts")?;
        self.inner.counts()
    }
    fn history(&self, task_id: &str) -> Result<Vec<HistoryEntry>> {
        self.gate("history")?;
        self.inner.history(task_id)
    }
}

/// What a [`MutantStore`] gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// Every N-th successful `apply` answers success without writing.
    LostWrite(u64),
    /// An acquisition refused for a live lease is granted anyway (the lease
    /// is taken as if at its expiry): two unexpired leases.
    GrantOverLiveLease,
}

/// A deliberately broken store (see [`Mutation`]) around a correct one.
pub struct MutantStore<S> {
    inner: S,
    mutation: Mutation,
    applies: AtomicU64,
}

impl<S: Store> MutantStore<S> {
    /// Wrap `inner` with `mutation`.
    pub fn new(inner: S, mutation: Mutation) -> MutantStore<S> {
        MutantStore {
            inner,
            mutation,
            applies: AtomicU64::new(0),
        }
    }

    /// `apply` with the mutation.
    fn mutated_apply(&self, task_id: &str, cmd: Command, ctx: &Context) -> Result<Task> {
        match self.mutation {
            Mutation::LostWrite(n) => {
                let k = self.applies.fetch_add(1, Ordering::SeqCst) + 1;
                if k % n.max(1) == 0 {
                    let t = self.inner.require(task_id)?;
                    return machine::apply(&t, &cmd, ctx).map(|tr| tr.task);
                }
                self.inner.apply(task_id, cmd, ctx)
            }
            Mutation::GrantOverLiveLease => match self.inner.apply(task_id, cmd.clone(), ctx) {
                Err(e) if e.code() == ErrorCode::LeaseConflict => {
                    if let Command::Acquire { owner, .. } = &cmd {
                        let t = self.inner.require(task_id)?;
                        if let Some(exp) = t.lease_expires_at.filter(|_| !t.state.is_terminal()) {
                            let late = Context::new(exp, ctx.actor.clone());
                            let until = exp.checked_add_micros(300_000).unwrap_or(exp);
                            return self.inner.apply(
                                task_id,
                                Command::Acquire {
                                    owner: owner.clone(),
                                    expires_at: until,
                                },
                                &late,
                            );
                        }
                    }
                    Err(e)
                }
                other => other,
            },
        }
    }
}

/// Only `apply` is wrong; the provided methods keep the trait's defaults so
/// that every single-command helper and batch item goes through it.
impl<S: Store> Store for MutantStore<S> {
    leasehold_core::delegate_store! {
        to self.inner;
        defaults all;
        fn apply(&self, task_id: &str, cmd: Command, ctx: &Context) -> Result<Task> {
            self.mutated_apply(task_id, cmd, ctx)
        }
    }
}
