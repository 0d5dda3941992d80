//! The conformance suite and the model-based test against the in-memory
//! store. `reopen` returns the same store; `another` shares it through `Arc`.

use std::sync::Arc;

use leasehold_conformance::Harness;
use leasehold_core::memory::MemoryStore;

/// The in-memory backend's harness.
struct MemoryHarness;

impl Harness for MemoryHarness {
    type S = Arc<MemoryStore>;
    fn fresh(&self) -> Self::S {
        Arc::new(MemoryStore::new())
    }
    fn reopen(&self, store: Self::S) -> Self::S {
        store
    }
    fn another(&self, store: &Self::S) -> Self::S {
        Arc::clone(store)
    }
}

leasehold_conformance::conformance_tests!(MemoryHarness);
