//! The shared conformance scenarios and the model-based test, run against
//! PostgreSQL: each test gets its own schema in the process's throwaway
//! cluster (see `leasehold_postgres::testing`).

use leasehold_conformance::Harness;
use leasehold_postgres::testing::{self, Cluster};
use leasehold_postgres::{PgOptions, PgStore};

/// Stores on the shared cluster: `fresh` is a new schema, `reopen` and
/// `another` are new `PgStore`s (own pools, own connections) on the same schema.
pub struct PgHarness {
    cluster: &'static Cluster,
}

impl PgHarness {
    /// The harness, or `None` when the tests are skipped (no binaries, no `CI`).
    pub fn new() -> Option<PgHarness> {
        testing::shared().map(|cluster| PgHarness { cluster })
    }
}

impl Harness for PgHarness {
    type S = PgStore;

    fn fresh(&self) -> PgStore {
        self.cluster.store_with(PgOptions {
            schema: testing::unique_schema("c"),
            pool_size: 8,
            ..PgOptions::default()
        })
    }

    fn reopen(&self, store: PgStore) -> PgStore {
        let schema = store.schema().to_string();
        drop(store);
        self.cluster.store(&schema)
    }

    fn another(&self, store: &PgStore) -> PgStore {
        self.cluster.store(store.schema())
    }
}

leasehold_conformance::conformance_tests!({
    let Some(h) = PgHarness::new() else { return };
    h
});

leasehold_conformance::model_tests!({
    let Some(h) = PgHarness::new() else { return };
    h
});
