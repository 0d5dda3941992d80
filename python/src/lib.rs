//! `leasehold._native`: the thin PyO3 binding over Leasehold's Rust engine.
//!
//! The binding owns no rules. It exposes one class, `NativeStore`, wrapping an
//! `Arc<dyn Store>` (the in-memory model or the SQLite backend) and passes
//! every value across as JSON text in the SPEC's wire shape: tasks, commands
//! and history entries are `serde_json` of the core types, timestamps are RFC
//! 3339 strings. The pure-Python package (`leasehold`) turns those into typed
//! objects and maps the one exception raised here, `NativeError(code,
//! message)`, onto a class per SPEC error code.
//!
//! Every store call releases the GIL, so Python threads (the worker helper's
//! heartbeat thread, thread races in tests) really run concurrently.

use std::sync::Arc;
use std::time::Duration;

use leasehold_core::memory::MemoryStore;
use leasehold_core::{
    ClaimRequest, Command, Context, Error, ListFilter, NewTask, Store, Task, Timestamp,
};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    _native,
    NativeError,
    PyException,
    "A Leasehold error: `args == (code, message)` with a stable SPEC code."
);

/// Convert a core error into the Python `NativeError(code, message)`.
fn to_py(e: Error) -> PyErr {
    NativeError::new_err((e.code().as_str(), e.message().to_string()))
}

/// An `invalid_input` error raised for malformed JSON handed across.
fn bad_json(what: &str, e: serde_json::Error) -> PyErr {
    to_py(Error::InvalidInput(format!("{what} is not valid: {e}")))
}

fn ctx(at: &str, actor: &str) -> PyResult<Context> {
    let at = Timestamp::parse(at).map_err(to_py)?;
    Ok(Context::new(at, actor))
}

fn json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value)
        .map_err(|e| to_py(Error::Internal(format!("cannot serialise a result: {e}"))))
}

/// A Leasehold store: the in-memory model or an SQLite file.
#[pyclass(frozen, module = "leasehold._native")]
struct NativeStore {
    store: Arc<dyn Store>,
    kind: &'static str,
}

#[pymethods]
impl NativeStore {
    /// A fresh in-memory store (the executable model); lost when dropped.
    #[staticmethod]
    fn memory() -> NativeStore {
        NativeStore {
            store: Arc::new(MemoryStore::new()),
            kind: "memory",
        }
    }

    /// Open (creating if needed) the SQLite database at `path`.
    #[staticmethod]
    fn sqlite(py: Python<'_>, path: String) -> PyResult<NativeStore> {
        let store = py
            .allow_threads(|| leasehold_sqlite::SqliteStore::open(&path))
            .map_err(to_py)?;
        Ok(NativeStore {
            store: Arc::new(store),
            kind: "sqlite",
        })
    }

    /// `memory` or `sqlite`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind
    }

    /// Insert a new task (JSON of `NewTask`); returns the stored task as JSON.
    fn create(&self, py: Python<'_>, new_task: &str, at: &str, actor: &str) -> PyResult<String> {
        let new: NewTask = serde_json::from_str(new_task).map_err(|e| bad_json("new task", e))?;
        let ctx = ctx(at, actor)?;
        let task = py
            .allow_threads(|| self.store.create(new, &ctx))
            .map_err(to_py)?;
        json(&task)
    }

    /// Upsert a whole task (JSON of `Task`), compare-and-set on
    /// `expected_version` when given (0 means "must not exist yet").
    #[pyo3(signature = (task, expected_version, at, actor))]
    fn put(
        &self,
        py: Python<'_>,
        task: &str,
        expected_version: Option<u64>,
        at: &str,
        actor: &str,
    ) -> PyResult<String> {
        let task: Task = serde_json::from_str(task).map_err(|e| bad_json("task", e))?;
        let ctx = ctx(at, actor)?;
        let task = py
            .allow_threads(|| self.store.put(task, expected_version, &ctx))
            .map_err(to_py)?;
        json(&task)
    }

    /// Apply one command (JSON of `Command`, tagged by `op`) to a task.
    fn apply(
        &self,
        py: Python<'_>,
        task_id: &str,
        command: &str,
        at: &str,
        actor: &str,
    ) -> PyResult<String> {
        let cmd: Command = serde_json::from_str(command).map_err(|e| bad_json("command", e))?;
        let ctx = ctx(at, actor)?;
        let task = py
            .allow_threads(|| self.store.apply(task_id, cmd, &ctx))
            .map_err(to_py)?;
        json(&task)
    }

    /// Lease up to `limit` claimable tasks from `queues` for `ttl_micros`.
    #[allow(clippy::too_many_arguments)]
    fn claim(
        &self,
        py: Python<'_>,
        owner: String,
        queues: Vec<String>,
        ttl_micros: u64,
        limit: u32,
        at: &str,
        actor: &str,
    ) -> PyResult<String> {
        let req = ClaimRequest {
            owner,
            queues,
            ttl: Duration::from_micros(ttl_micros),
            limit,
            max_attempts: None,
        };
        let ctx = ctx(at, actor)?;
        let tasks = py
            .allow_threads(|| self.store.claim(&req, &ctx))
            .map_err(to_py)?;
        json(&tasks)
    }

    /// Reclaim every task stale at `at`; returns the changed tasks.
    fn reclaim(
        &self,
        py: Python<'_>,
        max_attempts: u32,
        at: &str,
        actor: &str,
    ) -> PyResult<String> {
        let ctx = ctx(at, actor)?;
        let tasks = py
            .allow_threads(|| self.store.reclaim(max_attempts, &ctx))
            .map_err(to_py)?;
        json(&tasks)
    }

    /// One task as JSON, or `None`.
    fn get(&self, py: Python<'_>, task_id: &str) -> PyResult<Option<String>> {
        let task = py
            .allow_threads(|| self.store.get(task_id))
            .map_err(to_py)?;
        task.as_ref().map(json).transpose()
    }

    /// One page of tasks matching `filter` (JSON of `ListFilter`).
    #[pyo3(signature = (filter, cursor, limit))]
    fn list(
        &self,
        py: Python<'_>,
        filter: &str,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> PyResult<String> {
        let filter: ListFilter = serde_json::from_str(filter).map_err(|e| bad_json("filter", e))?;
        let page = py
            .allow_threads(|| self.store.list(&filter, cursor.as_deref(), limit))
            .map_err(to_py)?;
        json(&page)
    }

    /// Every non-terminal task, in creation order.
    fn list_in_flight(&self, py: Python<'_>) -> PyResult<String> {
        let tasks = py
            .allow_threads(|| self.store.list_in_flight())
            .map_err(to_py)?;
        json(&tasks)
    }

    /// Non-terminal tasks whose lease expired at or before `now`.
    fn list_stale(&self, py: Python<'_>, now: &str) -> PyResult<String> {
        let now = Timestamp::parse(now).map_err(to_py)?;
        let tasks = py
            .allow_threads(|| self.store.list_stale(now))
            .map_err(to_py)?;
        json(&tasks)
    }

    /// Tasks per state, as a JSON object.
    fn counts(&self, py: Python<'_>) -> PyResult<String> {
        let counts = py.allow_threads(|| self.store.counts()).map_err(to_py)?;
        json(&counts)
    }

    /// Every change to a task, oldest first.
    fn history(&self, py: Python<'_>, task_id: &str) -> PyResult<String> {
        let entries = py
            .allow_threads(|| self.store.history(task_id))
            .map_err(to_py)?;
        json(&entries)
    }

    fn __repr__(&self) -> String {
        format!("NativeStore(kind={:?})", self.kind)
    }
}

/// The `leasehold._native` module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeStore>()?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    Ok(())
}
