//! [`delegate_store!`](crate::delegate_store): forwarding for `Store`
//! wrappers, so that a wrapper cannot silently drop a backend's override of
//! a provided method (`apply_many`, `heartbeat_many`, `queue_counts`, …).
//!
//! Written inside an `impl Store for Wrapper { … }` block, the macro emits
//! the methods the wrapper writes itself unchanged and a forwarding method
//! for **every other** `Store` method, required and provided alike, to the
//! inner store. Falling back to the trait's default body (which routes
//! through the wrapper's own `apply`, `get`, `list`…) has to be asked for by
//! name (`defaults [heartbeat, …];`) or for all provided methods at once
//! (`defaults all;`), the choice an intercepting wrapper (fault injection, a
//! deliberately broken store, a read counter) makes so that it sees every
//! call. Forgetting a method therefore means forwarding it, never losing the
//! inner store's fast path; a new `Store` method must be added to the
//! macro's list, which the tests below check against the trait's source.
//!
//! ```
//! use leasehold_core::memory::MemoryStore;
//! use leasehold_core::{Context, NewTask, Result, Store, Task};
//!
//! /// Counts creates; everything else goes to the inner store as it is.
//! struct CountingCreates {
//!     inner: MemoryStore,
//!     creates: std::sync::atomic::AtomicU64,
//! }
//!
//! impl Store for CountingCreates {
//!     leasehold_core::delegate_store! {
//!         to self.inner;
//!         fn create(&self, new: NewTask, ctx: &Context) -> Result<Task> {
//!             self.creates.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!             self.inner.create(new, ctx)
//!         }
//!     }
//! }
//! # let s = CountingCreates { inner: MemoryStore::new(), creates: Default::default() };
//! # let at = leasehold_core::Timestamp::parse("2026-06-03T10:00:00Z").unwrap();
//! # s.create(NewTask::new("a", "sa"), &Context::new(at, "op")).unwrap();
//! # assert!(s.get("a").unwrap().is_some());
//! ```

/// Implement the rest of [`Store`](crate::Store) for a wrapper by forwarding
/// to an inner store.
///
/// Use it as the whole body of an `impl Store for … { }` block:
///
/// ```text
/// impl<S: Store> Store for Wrapper<S> {
///     leasehold_core::delegate_store! {
///         to self.inner;                 // or self.0, self.method(), **self
///         defaults [heartbeat, dispatch]; // optional; or `defaults all;`
///         fn apply(&self, task_id: &str, cmd: Command, ctx: &Context) -> Result<Task> {
///             /* the wrapper's own body */
///         }
///     }
/// }
/// ```
///
/// - `to …;` names the inner store: a field (`self.inner`, `self.0`), a
///   method returning something that implements `Store` (`self.cur()`), or
///   `**self` for a smart pointer.
/// - The `fn` items are the wrapper's own methods, emitted as written.
/// - `defaults [names];` keeps the trait's default body for those provided
///   methods (it calls the wrapper's own required methods, so an intercepting
///   wrapper sees the call); `defaults all;` does so for every provided
///   method. Naming a method that is not a provided `Store` method is a
///   compile error.
/// - Every other `Store` method forwards to the inner store's same method,
///   so a backend's override (a one-transaction batch, a counter table, a
///   batch route) is kept.
///
/// Keeping the "default" of a required method does not compile:
///
/// ```compile_fail
/// use leasehold_core::memory::MemoryStore;
/// struct W(MemoryStore);
/// impl leasehold_core::Store for W {
///     leasehold_core::delegate_store! {
///         to self.0;
///         defaults [apply];
///     }
/// }
/// ```
///
/// nor does a name that is no `Store` method:
///
/// ```compile_fail
/// use leasehold_core::memory::MemoryStore;
/// struct W(MemoryStore);
/// impl leasehold_core::Store for W {
///     leasehold_core::delegate_store! {
///         to self.0;
///         defaults [hearbeat];
///     }
/// }
/// ```
#[macro_export]
macro_rules! delegate_store {
    (to $($rest:tt)*) => {
        $crate::__delegate_store!(@to [] $($rest)*);
    };
}

/// The steps of [`delegate_store!`]; not for direct use.
#[doc(hidden)]
#[macro_export]
macro_rules! __delegate_store {
    // Collect the inner-store tokens up to the first `;`.
    (@to [$($to:tt)*] ; $($rest:tt)*) => {
        $crate::__delegate_store!(@defaults [$($to)*] $($rest)*);
    };
    (@to [$($to:tt)*] $t:tt $($rest:tt)*) => {
        $crate::__delegate_store!(@to [$($to)* $t] $($rest)*);
    };
    (@defaults $to:tt defaults all ; $($fns:tt)*) => {
        $crate::__delegate_store!(@fns $to [
            queue_counts require dispatch acquire_lease heartbeat release complete
            compensate fail quarantine annotate apply_many heartbeat_many
            complete_many record_compensation
        ] $($fns)*);
    };
    (@defaults $to:tt defaults [$($d:ident),* $(,)?] ; $($fns:tt)*) => {
        $( $crate::__delegate_store_provided!($d); )*
        $crate::__delegate_store!(@fns $to [$($d)*] $($fns)*);
    };
    (@defaults $to:tt $($fns:tt)*) => {
        $crate::__delegate_store!(@fns $to [] $($fns)*);
    };
    (@fns $to:tt [$($d:ident)*]
        $( $(#[$attr:meta])* fn $own:ident $params:tt -> $ret:ty $body:block )*
    ) => {
        $( $(#[$attr])* fn $own $params -> $ret $body )*
        $crate::__delegate_store!(@each $to [$($d)* $($own)*]
            create put apply claim reclaim get list list_in_flight list_stale
            counts history queue_counts require dispatch acquire_lease heartbeat
            release complete compensate fail quarantine annotate apply_many
            heartbeat_many complete_many record_compensation
        );
    };
    (@each $to:tt $skip:tt $($m:ident)*) => {
        $( $crate::__delegate_store_one!($m $skip $to); )*
    };
}

/// Compile error unless the name is a provided `Store` method; not for
/// direct use.
#[doc(hidden)]
#[macro_export]
macro_rules! __delegate_store_provided {
    (queue_counts) => {};
    (require) => {};
    (dispatch) => {};
    (acquire_lease) => {};
    (heartbeat) => {};
    (release) => {};
    (complete) => {};
    (compensate) => {};
    (fail) => {};
    (quarantine) => {};
    (annotate) => {};
    (apply_many) => {};
    (heartbeat_many) => {};
    (complete_many) => {};
    (record_compensation) => {};
    ($other:ident) => {
        compile_error!(concat!(
            "delegate_store!: `",
            stringify!($other),
            "` is not a provided Store method, so it has no default to keep"
        ));
    };
}

/// The inner store as an expression; `$s` is the `self` of the generated
/// method (passed in so that it resolves to that method's receiver).
#[doc(hidden)]
#[macro_export]
macro_rules! __delegate_store_inner {
    ($s:tt, * * self) => {
        (**$s)
    };
    ($s:tt, self . $m:ident ( )) => {
        ($s.$m())
    };
    ($s:tt, self . $f:tt) => {
        ($s.$f)
    };
}

/// One forwarding method unless its name is in the skip list; not for
/// direct use.
#[doc(hidden)]
#[macro_export]
macro_rules! __delegate_store_one {
    // The method is the wrapper's own or keeps its default: emit nothing.
    (create [create $($r:ident)*] $to:tt) => {};
    (put [put $($r:ident)*] $to:tt) => {};
    (apply [apply $($r:ident)*] $to:tt) => {};
    (claim [claim $($r:ident)*] $to:tt) => {};
    (reclaim [reclaim $($r:ident)*] $to:tt) => {};
    (get [get $($r:ident)*] $to:tt) => {};
    (list [list $($r:ident)*] $to:tt) => {};
    (list_in_flight [list_in_flight $($r:ident)*] $to:tt) => {};
    (list_stale [list_stale $($r:ident)*] $to:tt) => {};
    (counts [counts $($r:ident)*] $to:tt) => {};
    (history [history $($r:ident)*] $to:tt) => {};
    (queue_counts [queue_counts $($r:ident)*] $to:tt) => {};
    (require [require $($r:ident)*] $to:tt) => {};
    (dispatch [dispatch $($r:ident)*] $to:tt) => {};
    (acquire_lease [acquire_lease $($r:ident)*] $to:tt) => {};
    (heartbeat [heartbeat $($r:ident)*] $to:tt) => {};
    (release [release $($r:ident)*] $to:tt) => {};
    (complete [complete $($r:ident)*] $to:tt) => {};
    (compensate [compensate $($r:ident)*] $to:tt) => {};
    (fail [fail $($r:ident)*] $to:tt) => {};
    (quarantine [quarantine $($r:ident)*] $to:tt) => {};
    (annotate [annotate $($r:ident)*] $to:tt) => {};
    (apply_many [apply_many $($r:ident)*] $to:tt) => {};
    (heartbeat_many [heartbeat_many $($r:ident)*] $to:tt) => {};
    (complete_many [complete_many $($r:ident)*] $to:tt) => {};
    (record_compensation [record_compensation $($r:ident)*] $to:tt) => {};
    // Another name heads the list: look further.
    ($m:ident [$h:ident $($r:ident)*] $to:tt) => {
        $crate::__delegate_store_one!($m [$($r)*] $to);
    };
    // Not skipped: forward.
    (create [] [$($to:tt)*]) => {
        fn create(
            &self,
            new: $crate::NewTask,
            ctx: &$crate::Context,
        ) -> $crate::Result<$crate::Task> {
            $crate::__delegate_store_inner!(self, $($to)*).create(new, ctx)
        }
    };
    (put [] [$($to:tt)*]) => {
        fn put(
            &self,
            task: $crate::Task,
            expected_version: ::core::option::Option<u64>,
            ctx: &$crate::Context,
        ) -> $crate::Result<$crate::Task> {
            $crate::__delegate_store_inner!(self, $($to)*).put(task, expected_version, ctx)
        }
    };
    (apply [] [$($to:tt)*]) => {
        fn apply(
            &self,
            task_id: &str,
            cmd: $crate::Command,
            ctx: &$crate::Context,
        ) -> $crate::Result<$crate::Task> {
            $crate::__delegate_store_inner!(self, $($to)*).apply(task_id, cmd, ctx)
        }
    };
    (claim [] [$($to:tt)*]) => {
        fn claim(
            &self,
            req: &$crate::ClaimRequest,
            ctx: &$crate::Context,
        ) -> $crate::Result<::std::vec::Vec<$crate::Task>> {
            $crate::__delegate_store_inner!(self, $($to)*).claim(req, ctx)
        }
    };
    (reclaim [] [$($to:tt)*]) => {
        fn reclaim(
            &self,
            max_attempts: u32,
            ctx: &$crate::Context,
        ) -> $crate::Result<::std::vec::Vec<$crate::Task>> {
            $crate::__delegate_store_inner!(self, $($to)*).reclaim(max_attempts, ctx)
        }
    };
    (get [] [$($to:tt)*]) => {
        fn get(&self, task_id: &str) -> $crate::Result<::core::option::Option<$crate::Task>> {
            $crate::__delegate_store_inner!(self, $($to)*).get(task_id)
        }
    };
    (list [] [$($to:tt)*]) => {
        fn list(
            &self,
            filter: &$crate::ListFilter,
            cursor: ::core::option::Option<&str>,
            limit: ::core::option::Option<u32>,
        ) -> $crate::Result<$crate::Page> {
            $crate::__delegate_store_inner!(self, $($to)*).list(filter, cursor, limit)
        }
    };
    (list_in_flight [] [$($to:tt)*]) => {
        fn list_in_flight(&self) -> $crate::Result<::std::vec::Vec<$crate::Task>> {
            $crate::__delegate_store_inner!(self, $($to)*).list_in_flight()
        }
    };
    (list_stale [] [$($to:tt)*]) => {
        fn list_stale(
            &self,
            now: $crate::Timestamp,
        ) -> $crate::Result<::std::vec::Vec<$crate::Task>> {
            $crate::__delegate_store_inner!(self, $($to)*).list_stale(now)
        }
    };
    (counts [] [$($to:tt)*]) => {
        fn counts(&self) -> $crate::Result<$crate::Counts> {
            $crate::__delegate_store_inner!(self, $($to)*).counts()
        }
    };
    (history [] [$($to:tt)*]) => {
        fn history(
            &self,
            task_id: &str,
        ) -> $crate::Result<::std::vec::Vec<$crate::HistoryEntry>> {
            $crate::__delegate_store_inner!(self, $($to)*).history(task_id)
        }
    };
    (queue_counts [] [$($to:tt)*]) => {
        fn queue_counts(&self) -> $crate::Result<$crate::QueueCounts> {
            $crate::__delegate_store_inner!(self, $($to)*).queue_counts()
        }
    };
    (require [] [$($to:tt)*]) => {
        fn require(&self, task_id: &str) -> $crate::Result<$crate::Task> {
            $crate::__delegate_store_inner!(self, $($to)*).require(task_id)
        }
    };
    (dispatch [] [$($to:tt)*]) => {
        fn dispatch(
            &self,
            task_id: &str,
            ctx: &$crate::Context,
        ) -> $crate::Result<$crate::Task> {
            $crate::__delegate_store_inner!(self, $($to)*).dispatch(task_id, ctx)
        }
    };
    (acquire_lease [] [$($to:tt)*]) => {
        fn acquire_lease(
            &self,
            task_id: &str,
            owner: &str,
            expires_at: $crate::Timestamp,
            ctx: &$crate::Context,
        ) -> $crate::Result<$crate::Task> {
            $crate::__delegate_store_inner!(self, $($to)*)
                .acquire_lease(task_id, owner, expires_at, ctx)
        }
    };
    (heartbeat [] [$($to:tt)*]) => {
        fn heartbeat(
            &self,
            task_id: &str,
            fence: &$crate::Fence,
            expires_at: $crate::Timestamp,
            ctx: &$crate::Context,
        ) -> $crate::Result<$crate::Task> {
            $crate::__delegate_store_inner!(self, $($to)*)
                .heartbeat(task_id, fence, expires_at, ctx)
        }
    };
    (release [] [$($to:tt)*]) => {
        fn release(
            &self,
            task_id: &str,
            fence: &$crate::Fence,
            ctx: &$crate::Context,
        ) -> $crate::Result<$crate::Task> {
            $crate::__delegate_store_inner!(self, $($to)*).release(task_id, fence, ctx)
        }
    };
    (complete [] [$($to:tt)*]) => {
        fn complete(
            &self,
            task_id: &str,
            reason: ::core::option::Option<&str>,
            fence: ::core::option::Option<&$crate::Fence>,
            ctx: &$crate::Context,
        ) -> $crate::Result<$crate::Task> {
            $crate::__delegate_store_inner!(self, $($to)*).complete(task_id, reason, fence, ctx)
        }
    };
    (compensate [] [$($to:tt)*]) => {
        fn compensate(
            &self,
            task_id: &str,
            reason: ::core::option::Option<&str>,
            fence: ::core::option::Option<&$crate::Fence>,
            ctx: &$crate::Context,
        ) -> $crate::Result<$crate::Task> {
            $crate::__delegate_store_inner!(self, $($to)*)
                .compensate(task_id, reason, fence, ctx)
        }
    };
    (fail [] [$($to:tt)*]) => {
        fn fail(
            &self,
            task_id: &str,
            reason: &str,
            compensation: ::core::option::Option<$crate::NewCompensation>,
            fence: ::core::option::Option<&$crate::Fence>,
            ctx: &$crate::Context,
        ) -> $crate::Result<$crate::Task> {
            $crate::__delegate_store_inner!(self, $($to)*)
                .fail(task_id, reason, compensation, fence, ctx)
        }
    };
    (quarantine [] [$($to:tt)*]) => {
        fn quarantine(
            &self,
            task_id: &str,
            reason: &str,
            fence: ::core::option::Option<&$crate::Fence>,
            ctx: &$crate::Context,
        ) -> $crate::Result<$crate::Task> {
            $crate::__delegate_store_inner!(self, $($to)*).quarantine(task_id, reason, fence, ctx)
        }
    };
    (annotate [] [$($to:tt)*]) => {
        fn annotate(
            &self,
            task_id: &str,
            author: &str,
            note: &str,
            ctx: &$crate::Context,
        ) -> $crate::Result<$crate::Task> {
            $crate::__delegate_store_inner!(self, $($to)*).annotate(task_id, author, note, ctx)
        }
    };
    (apply_many [] [$($to:tt)*]) => {
        fn apply_many(
            &self,
            items: ::std::vec::Vec<$crate::BatchItem>,
            ctx: &$crate::Context,
        ) -> $crate::Result<::std::vec::Vec<$crate::Result<$crate::Task>>> {
            $crate::__delegate_store_inner!(self, $($to)*).apply_many(items, ctx)
        }
    };
    (heartbeat_many [] [$($to:tt)*]) => {
        fn heartbeat_many(
            &self,
            leases: &[(::std::string::String, $crate::Fence)],
            expires_at: $crate::Timestamp,
            ctx: &$crate::Context,
        ) -> $crate::Result<::std::vec::Vec<$crate::Result<$crate::Task>>> {
            $crate::__delegate_store_inner!(self, $($to)*).heartbeat_many(leases, expires_at, ctx)
        }
    };
    (complete_many [] [$($to:tt)*]) => {
        fn complete_many(
            &self,
            leases: &[(::std::string::String, $crate::Fence)],
            reason: ::core::option::Option<&str>,
            ctx: &$crate::Context,
        ) -> $crate::Result<::std::vec::Vec<$crate::Result<$crate::Task>>> {
            $crate::__delegate_store_inner!(self, $($to)*).complete_many(leases, reason, ctx)
        }
    };
    (record_compensation [] [$($to:tt)*]) => {
        fn record_compensation(
            &self,
            task_id: &str,
            index: usize,
            status: $crate::CompensationStatus,
            detail: ::core::option::Option<&str>,
            ctx: &$crate::Context,
        ) -> $crate::Result<$crate::Task> {
            $crate::__delegate_store_inner!(self, $($to)*)
                .record_compensation(task_id, index, status, detail, ctx)
        }
    };
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};

    use crate::store::QueueCounts;
    use crate::*;

    /// A store that overrides every `Store` method and records which one
    /// was reached; every call answers `unavailable` (the answer does not
    /// matter here, only which method the call arrived at).
    #[derive(Default)]
    struct Probe {
        calls: Mutex<BTreeMap<&'static str, u32>>,
    }

    impl Probe {
        fn hit<T>(&self, name: &'static str) -> Result<T> {
            *self.calls.lock().unwrap().entry(name).or_default() += 1;
            Err(Error::Unavailable(format!("probe {name}")))
        }
        fn take(&self) -> BTreeMap<&'static str, u32> {
            std::mem::take(&mut *self.calls.lock().unwrap())
        }
    }

    impl Store for Probe {
        fn create(&self, _: NewTask, _: &Context) -> Result<Task> {
            self.hit("create")
        }
        fn put(&self, _: Task, _: Option<u64>, _: &Context) -> Result<Task> {
            self.hit("put")
        }
        fn apply(&self, _: &str, _: Command, _: &Context) -> Result<Task> {
            self.hit("apply")
        }
        fn claim(&self, _: &ClaimRequest, _: &Context) -> Result<Vec<Task>> {
            self.hit("claim")
        }
        fn reclaim(&self, _: u32, _: &Context) -> Result<Vec<Task>> {
            self.hit("reclaim")
        }
        fn get(&self, _: &str) -> Result<Option<Task>> {
            self.hit("get")
        }
        fn list(&self, _: &ListFilter, _: Option<&str>, _: Option<u32>) -> Result<Page> {
            self.hit("list")
        }
        fn list_in_flight(&self) -> Result<Vec<Task>> {
            self.hit("list_in_flight")
        }
        fn list_stale(&self, _: Timestamp) -> Result<Vec<Task>> {
            self.hit("list_stale")
        }
        fn counts(&self) -> Result<Counts> {
            self.hit("counts")
        }
        fn history(&self, _: &str) -> Result<Vec<HistoryEntry>> {
            self.hit("history")
        }
        fn queue_counts(&self) -> Result<QueueCounts> {
            self.hit("queue_counts")
        }
        fn require(&self, _: &str) -> Result<Task> {
            self.hit("require")
        }
        fn dispatch(&self, _: &str, _: &Context) -> Result<Task> {
            self.hit("dispatch")
        }
        fn acquire_lease(&self, _: &str, _: &str, _: Timestamp, _: &Context) -> Result<Task> {
            self.hit("acquire_lease")
        }
        fn heartbeat(&self, _: &str, _: &Fence, _: Timestamp, _: &Context) -> Result<Task> {
            self.hit("heartbeat")
        }
        fn release(&self, _: &str, _: &Fence, _: &Context) -> Result<Task> {
            self.hit("release")
        }
        fn complete(
            &self,
            _: &str,
            _: Option<&str>,
            _: Option<&Fence>,
            _: &Context,
        ) -> Result<Task> {
            self.hit("complete")
        }
        fn compensate(
            &self,
            _: &str,
            _: Option<&str>,
            _: Option<&Fence>,
            _: &Context,
        ) -> Result<Task> {
            self.hit("compensate")
        }
        fn fail(
            &self,
            _: &str,
            _: &str,
            _: Option<NewCompensation>,
            _: Option<&Fence>,
            _: &Context,
        ) -> Result<Task> {
            self.hit("fail")
        }
        fn quarantine(&self, _: &str, _: &str, _: Option<&Fence>, _: &Context) -> Result<Task> {
            self.hit("quarantine")
        }
        fn annotate(&self, _: &str, _: &str, _: &str, _: &Context) -> Result<Task> {
            self.hit("annotate")
        }
        fn apply_many(&self, _: Vec<BatchItem>, _: &Context) -> Result<Vec<Result<Task>>> {
            self.hit("apply_many")
        }
        fn heartbeat_many(
            &self,
            _: &[(String, Fence)],
            _: Timestamp,
            _: &Context,
        ) -> Result<Vec<Result<Task>>> {
            self.hit("heartbeat_many")
        }
        fn complete_many(
            &self,
            _: &[(String, Fence)],
            _: Option<&str>,
            _: &Context,
        ) -> Result<Vec<Result<Task>>> {
            self.hit("complete_many")
        }
        fn record_compensation(
            &self,
            _: &str,
            _: usize,
            _: CompensationStatus,
            _: Option<&str>,
            _: &Context,
        ) -> Result<Task> {
            self.hit("record_compensation")
        }
    }

    /// Call every `Store` method once through `s`; each answer is the
    /// probe's error.
    fn call_every_method(s: &dyn Store) {
        let at = Timestamp::parse("2026-06-03T10:00:00Z").unwrap();
        let ctx = Context::new(at, "op");
        let fence = Fence::new("w", 1);
        let leases = vec![("t".to_string(), fence.clone())];
        let task = crate::machine::create(NewTask::new("t", "s"), &ctx)
            .unwrap()
            .task;
        let req = ClaimRequest {
            owner: "w".into(),
            queues: vec![],
            ttl: std::time::Duration::from_secs(1),
            limit: 1,
            max_attempts: None,
        };
        let item = BatchItem {
            task_id: "t".into(),
            command: Command::Dispatch,
        };
        assert!(s.create(NewTask::new("t", "s"), &ctx).is_err());
        assert!(s.put(task, None, &ctx).is_err());
        assert!(s.apply("t", Command::Dispatch, &ctx).is_err());
        assert!(s.claim(&req, &ctx).is_err());
        assert!(s.reclaim(3, &ctx).is_err());
        assert!(s.get("t").is_err());
        assert!(s.list(&ListFilter::default(), None, None).is_err());
        assert!(s.list_in_flight().is_err());
        assert!(s.list_stale(at).is_err());
        assert!(s.counts().is_err());
        assert!(s.history("t").is_err());
        assert!(s.queue_counts().is_err());
        assert!(s.require("t").is_err());
        assert!(s.dispatch("t", &ctx).is_err());
        assert!(s.acquire_lease("t", "w", at, &ctx).is_err());
        assert!(s.heartbeat("t", &fence, at, &ctx).is_err());
        assert!(s.release("t", &fence, &ctx).is_err());
        assert!(s.complete("t", None, Some(&fence), &ctx).is_err());
        assert!(s.compensate("t", None, None, &ctx).is_err());
        assert!(s.fail("t", "r", None, None, &ctx).is_err());
        assert!(s.quarantine("t", "r", None, &ctx).is_err());
        assert!(s.annotate("t", "a", "n", &ctx).is_err());
        // A batch default answers per item: the probe's error is inside.
        let refused =
            |r: Result<Vec<Result<Task>>>| r.map_or(true, |v| v.iter().all(|i| i.is_err()));
        assert!(refused(s.apply_many(vec![item], &ctx)));
        assert!(refused(s.heartbeat_many(&leases, at, &ctx)));
        assert!(refused(s.complete_many(&leases, None, &ctx)));
        assert!(s
            .record_compensation("t", 0, CompensationStatus::Applied, None, &ctx)
            .is_err());
    }

    /// The names of the methods of `pub trait Store`, read from its source.
    fn trait_methods() -> BTreeSet<String> {
        let src = include_str!("store.rs");
        let start = src
            .find("pub trait Store: Send + Sync {")
            .expect("the Store trait in store.rs");
        let body = &src[start..];
        let end = body.find("\n}\n").expect("the end of the Store trait");
        let names: BTreeSet<String> = body[..end]
            .lines()
            .filter_map(|l| l.strip_prefix("    fn "))
            .map(|l| l.split(['(', '<']).next().unwrap().trim().to_string())
            .collect();
        assert!(names.len() >= 26, "too few Store methods parsed: {names:?}");
        names
    }

    /// Every method once, each exactly where it was called.
    fn once_each() -> BTreeMap<&'static str, u32> {
        let probe = Probe::default();
        call_every_method(&probe);
        probe.take()
    }

    /// A wrapper that writes nothing itself.
    struct Plain {
        inner: Probe,
    }

    impl Store for Plain {
        crate::delegate_store! {
            to self.inner;
        }
    }

    #[test]
    fn the_probe_and_the_calls_cover_every_store_method() {
        let reached: BTreeSet<String> = once_each().keys().map(|k| k.to_string()).collect();
        assert_eq!(
            reached,
            trait_methods(),
            "a Store method is missing from this test's Probe or call_every_method \
             (and so maybe from delegate_store!)"
        );
        assert!(once_each().values().all(|n| *n == 1));
    }

    #[test]
    fn a_plain_wrapper_forwards_every_method_to_the_inner_override() {
        let w = Plain {
            inner: Probe::default(),
        };
        call_every_method(&w);
        assert_eq!(w.inner.take(), once_each());
    }

    #[test]
    fn an_arc_forwards_every_method_to_the_shared_store() {
        let probe = Arc::new(Probe::default());
        call_every_method(&probe.clone());
        assert_eq!(probe.take(), once_each());
        let shared: Arc<dyn Store> = probe.clone();
        call_every_method(&shared);
        assert_eq!(probe.take(), once_each());
    }

    /// Owns `apply` and keeps the defaults of the listed provided methods.
    struct Intercepting {
        inner: Probe,
        own_applies: Mutex<u32>,
    }

    impl Store for Intercepting {
        crate::delegate_store! {
            to self.inner;
            defaults [heartbeat, dispatch];
            fn apply(&self, task_id: &str, cmd: Command, ctx: &Context) -> Result<Task> {
                *self.own_applies.lock().unwrap() += 1;
                self.inner.apply(task_id, cmd, ctx)
            }
        }
    }

    #[test]
    fn listed_defaults_route_through_the_wrappers_own_methods() {
        let w = Intercepting {
            inner: Probe::default(),
            own_applies: Mutex::new(0),
        };
        call_every_method(&w);
        // `apply`, `heartbeat` and `dispatch` all arrive as the wrapper's own
        // `apply`; everything else still reaches the inner override.
        assert_eq!(*w.own_applies.lock().unwrap(), 3);
        let mut want = once_each();
        want.remove("heartbeat");
        want.remove("dispatch");
        want.insert("apply", 3);
        assert_eq!(w.inner.take(), want);
    }

    /// Keeps every provided default: only required methods reach the inner.
    struct AllDefaults(Probe);

    impl Store for AllDefaults {
        crate::delegate_store! {
            to self.0;
            defaults all;
        }
    }

    #[test]
    fn defaults_all_keeps_every_provided_method_on_the_wrapper() {
        let w = AllDefaults(Probe::default());
        call_every_method(&w);
        let got = w.0.take();
        // Each provided default ends in one required call (the batch
        // defaults call `apply` per item: one item here; `heartbeat_many`
        // and `complete_many` go through the wrapper's `apply_many`).
        let required = [
            "create",
            "put",
            "apply",
            "claim",
            "reclaim",
            "get",
            "list",
            "list_in_flight",
            "list_stale",
            "counts",
            "history",
        ];
        assert!(
            got.keys().all(|k| required.contains(k)),
            "a provided method was forwarded: {got:?}"
        );
        // `apply` itself, the 10 single-command helpers and the 3 batches.
        assert_eq!(got["apply"], 14);
        assert_eq!(got["get"], 2, "get and require");
        assert_eq!(got["list"], 2, "list and queue_counts");
    }

    /// Through a method returning an owned handle, as a swappable store does.
    struct Swap(Mutex<Arc<Probe>>);

    impl Swap {
        fn cur(&self) -> Arc<Probe> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Store for Swap {
        crate::delegate_store! {
            to self.cur();
        }
    }

    #[test]
    fn a_method_target_forwards_every_method() {
        let w = Swap(Mutex::new(Arc::new(Probe::default())));
        call_every_method(&w);
        assert_eq!(w.cur().take(), once_each());
    }
}
