//! The shared conformance suite and model test, run against `SqliteStore`.
//!
//! Each harness owns a temporary directory; every `fresh()` store is a new
//! file in it, `reopen` drops the store and opens the same file again (as a
//! process restart would), and `another` opens a second handle (its own
//! connections) on the same file.

use std::sync::atomic::{AtomicUsize, Ordering};

use leasehold_conformance::Harness;
use leasehold_sqlite::{Durability, SqliteOptions, SqliteStore};

/// Stores in a per-harness temporary directory, removed when the harness drops.
struct SqliteHarness {
    dir: tempfile::TempDir,
    next: AtomicUsize,
    opts: SqliteOptions,
}

impl SqliteHarness {
    /// A harness with its own empty temporary directory.
    fn new() -> SqliteHarness {
        SqliteHarness::with(SqliteOptions::default())
    }

    /// With explicit options (the model test uses `Durability::Normal`: it
    /// checks logic over thousands of operations, not fsync; the crash test
    /// covers durability).
    fn with(opts: SqliteOptions) -> SqliteHarness {
        SqliteHarness {
            dir: tempfile::tempdir().expect("create a temporary directory"),
            next: AtomicUsize::new(0),
            opts,
        }
    }

    fn open(&self, path: &std::path::Path) -> SqliteStore {
        SqliteStore::open_with(path, self.opts.clone()).expect("open the sqlite store")
    }
}

impl Harness for SqliteHarness {
    type S = SqliteStore;

    fn fresh(&self) -> SqliteStore {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.path().join(format!("store-{n}.db"));
        self.open(&path)
    }

    fn reopen(&self, store: SqliteStore) -> SqliteStore {
        let path = store.path().to_path_buf();
        drop(store);
        self.open(&path)
    }

    fn another(&self, store: &SqliteStore) -> SqliteStore {
        self.open(store.path())
    }
}

leasehold_conformance::conformance_tests!(super::SqliteHarness::new());

leasehold_conformance::model_tests!(super::SqliteHarness::with(super::SqliteOptions {
    durability: super::Durability::Normal,
    ..Default::default()
}));
