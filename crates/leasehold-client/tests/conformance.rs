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
use leasehold_core::memory::MemoryStore;
use leasehold_core::{ClaimRequest, Context, Result, Store, Task};
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

// Every method, the batch calls included, goes through `HttpStore`'s own
// (the batch routes), not the trait's per-item defaults.
impl Store for ServedStore {
    leasehold_core::delegate_store! {
        to self.http;

        /// A claim without `max_attempts` means "no bound" in the library but
        /// "the server's reaper limit" over HTTP (the server never hands out
        /// a poison task: `crates/leasehold-server/tests`). The suite compares
        /// with the library's meaning, so it asks for no bound explicitly.
        fn claim(&self, req: &ClaimRequest, ctx: &Context) -> Result<Vec<Task>> {
            let mut req = req.clone();
            req.max_attempts.get_or_insert(u32::MAX);
            self.http.claim(&req, ctx)
        }
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
