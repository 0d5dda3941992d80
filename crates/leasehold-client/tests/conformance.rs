//! The shared conformance suite, run through the HTTP client: every scenario
//! talks to a real server on loopback (`TestServer`, `trust_client_clock` on
//! so the suite's fixed instants travel in `x-leasehold-at`) through an
//! [`HttpStore`], over two backends: the in-memory model and SQLite.
//!
//! `fresh` starts a server over a new store; `another` is a second
//! `HttpStore` (its own connection pool) on the same server; `reopen` is a
//! new `HttpStore` for the in-memory backend, and for SQLite a real restart:
//! the server stops, the database file is reopened, a new server starts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use leasehold_client::HttpStore;
use leasehold_conformance::Harness;
use leasehold_core::machine::{Command, Context};
use leasehold_core::memory::MemoryStore;
use leasehold_core::{
    BatchItem, ClaimRequest, Counts, Fence, HistoryEntry, ListFilter, NewTask, Page, Result, Store,
    Task, Timestamp,
};
use leasehold_server::testing::TestServer;
use leasehold_sqlite::SqliteStore;

/// An `HttpStore` that keeps its server (and the server's backing store)
/// alive for as long as it lives.
struct ServedStore {
    http: HttpStore,
    server: Arc<TestServer>,
    /// The SQLite file behind the server, for `reopen`.
    sqlite_path: Option<std::path::PathBuf>,
}

impl ServedStore {
    fn start(backing: Arc<dyn Store>, sqlite_path: Option<std::path::PathBuf>) -> ServedStore {
        let server = Arc::new(TestServer::start(backing, true));
        ServedStore::on(server, sqlite_path)
    }

    fn on(server: Arc<TestServer>, sqlite_path: Option<std::path::PathBuf>) -> ServedStore {
        let http = HttpStore::new(&server.url(), &server.operator_token())
            .expect("client for the test server")
            .with_exact_expiry();
        ServedStore {
            http,
            server,
            sqlite_path,
        }
    }
}

impl Store for ServedStore {
    fn create(&self, new: NewTask, ctx: &Context) -> Result<Task> {
        self.http.create(new, ctx)
    }
    fn put(&self, task: Task, expected_version: Option<u64>, ctx: &Context) -> Result<Task> {
        self.http.put(task, expected_version, ctx)
    }
    fn apply(&self, task_id: &str, cmd: Command, ctx: &Context) -> Result<Task> {
        self.http.apply(task_id, cmd, ctx)
    }
    // The batch calls go through `HttpStore`'s own (the batch routes), not
    // the trait's per-item defaults.
    fn apply_many(&self, items: Vec<BatchItem>, ctx: &Context) -> Result<Vec<Result<Task>>> {
        self.http.apply_many(items, ctx)
    }
    fn heartbeat_many(
        &self,
        leases: &[(String, Fence)],
        expires_at: Timestamp,
        ctx: &Context,
    ) -> Result<Vec<Result<Task>>> {
        self.http.heartbeat_many(leases, expires_at, ctx)
    }
    fn complete_many(
        &self,
        leases: &[(String, Fence)],
        reason: Option<&str>,
        ctx: &Context,
    ) -> Result<Vec<Result<Task>>> {
        self.http.complete_many(leases, reason, ctx)
    }
    fn claim(&self, req: &ClaimRequest, ctx: &Context) -> Result<Vec<Task>> {
        self.http.claim(req, ctx)
    }
    fn reclaim(&self, max_attempts: u32, ctx: &Context) -> Result<Vec<Task>> {
        self.http.reclaim(max_attempts, ctx)
    }
    fn get(&self, task_id: &str) -> Result<Option<Task>> {
        self.http.get(task_id)
    }
    fn list(&self, filter: &ListFilter, cursor: Option<&str>, limit: Option<u32>) -> Result<Page> {
        self.http.list(filter, cursor, limit)
    }
    fn list_in_flight(&self) -> Result<Vec<Task>> {
        self.http.list_in_flight()
    }
    fn list_stale(&self, now: Timestamp) -> Result<Vec<Task>> {
        self.http.list_stale(now)
    }
    fn counts(&self) -> Result<Counts> {
        self.http.counts()
    }
    fn history(&self, task_id: &str) -> Result<Vec<HistoryEntry>> {
        self.http.history(task_id)
    }
}

/// A server over a fresh in-memory model per store.
struct MemoryOverHttp;

impl Harness for MemoryOverHttp {
    type S = ServedStore;

    fn fresh(&self) -> ServedStore {
        ServedStore::start(Arc::new(MemoryStore::new()), None)
    }

    fn reopen(&self, store: ServedStore) -> ServedStore {
        // The model lives in the server's memory: a new client is the
        // closest thing to a restart that keeps the data.
        ServedStore::on(store.server.clone(), None)
    }

    fn another(&self, store: &ServedStore) -> ServedStore {
        ServedStore::on(store.server.clone(), None)
    }
}

/// A server over a fresh SQLite file per store, in a per-harness directory.
struct SqliteOverHttp {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

impl SqliteOverHttp {
    fn new() -> SqliteOverHttp {
        SqliteOverHttp {
            dir: tempfile::tempdir().expect("create a temporary directory"),
            next: AtomicUsize::new(0),
        }
    }

    fn serve(path: std::path::PathBuf) -> ServedStore {
        let backing = SqliteStore::open(&path).expect("open the sqlite store");
        ServedStore::start(Arc::new(backing), Some(path))
    }
}

impl Harness for SqliteOverHttp {
    type S = ServedStore;

    fn fresh(&self) -> ServedStore {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        SqliteOverHttp::serve(self.dir.path().join(format!("store-{n}.db")))
    }

    fn reopen(&self, store: ServedStore) -> ServedStore {
        // A real restart: stop the server (dropping the last handle on it
        // closes the database), then open the file again behind a new one.
        let path = store.sqlite_path.clone().expect("sqlite store has a path");
        // If another handle still uses the old server, SQLite lets both
        // servers open the file, so the reopen still reads from disk.
        drop(store);
        SqliteOverHttp::serve(path)
    }

    fn another(&self, store: &ServedStore) -> ServedStore {
        ServedStore::on(store.server.clone(), store.sqlite_path.clone())
    }
}

mod memory {
    use super::*;
    leasehold_conformance::conformance_tests!(super::MemoryOverHttp);
    leasehold_conformance::model_tests!(super::MemoryOverHttp);
}

mod sqlite {
    use super::*;
    leasehold_conformance::conformance_tests!(super::SqliteOverHttp::new());
    leasehold_conformance::model_tests!(super::SqliteOverHttp::new());
}
