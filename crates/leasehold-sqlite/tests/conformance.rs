//! The shared conformance suite and model test, run against `SqliteStore`.
//!
//! Each harness owns a temporary directory; every `fresh()` store is a new
//! file in it, `reopen` drops the store and opens the same file again (as a
//! process restart would), and `another` opens a second handle (its own
//! connections) on the same file.

use std::sync::atomic::{AtomicUsize, Ordering};

use leasehold_conformance::Harness;
use leasehold_sqlite::SqliteStore;

/// Stores in a per-harness temporary directory, removed when the harness drops.
struct SqliteHarness {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

impl SqliteHarness {
    /// A harness with its own empty temporary directory.
    fn new() -> SqliteHarness {
        SqliteHarness {
            dir: tempfile::tempdir().expect("create a temporary directory"),
            next: AtomicUsize::new(0),
        }
    }
}

impl Harness for SqliteHarness {
    type S = SqliteStore;

    fn fresh(&self) -> SqliteStore {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.path().join(format!("store-{n}.db"));
        SqliteStore::open(&path).expect("open a fresh sqlite store")
    }

    fn reopen(&self, store: SqliteStore) -> SqliteStore {
        let path = store.path().to_path_buf();
        drop(store);
        SqliteStore::open(&path).expect("reopen the sqlite store")
    }

    fn another(&self, store: &SqliteStore) -> SqliteStore {
        SqliteStore::open(store.path()).expect("open another handle on the sqlite store")
    }
}

leasehold_conformance::conformance_tests!(super::SqliteHarness::new());
