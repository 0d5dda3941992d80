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
leasehold_conformance::model_tests!(MemoryHarness);

/// Self-tests: the suite must be able to fail. A backend with one plausible
/// bug (re-acquiring an active lease by the same owner returns Ok without a
/// new token) must be caught by the conformance scenario and the model test.
mod self_test {
    use std::sync::Arc;

    use leasehold_conformance::Harness;
    use leasehold_core::memory::MemoryStore;
    use leasehold_core::*;

    /// The in-memory store with a re-entrant `acquire_lease` bug.
    struct Reentrant(Arc<MemoryStore>);

    /// Only `apply` is wrong; the provided methods keep the trait's
    /// defaults so that `acquire_lease` meets the bug.
    impl Store for Reentrant {
        leasehold_core::delegate_store! {
            to self.0;
            defaults all;
            fn apply(&self, task_id: &str, cmd: Command, ctx: &Context) -> Result<Task> {
                if let Command::Acquire { owner, .. } = &cmd {
                    if let Some(t) = self.0.get(task_id)? {
                        if t.has_active_lease(ctx.at) && t.lease_owner.as_ref() == Some(owner) {
                            return Ok(t);
                        }
                    }
                }
                self.0.apply(task_id, cmd, ctx)
            }
        }
    }

    struct BrokenHarness;

    impl Harness for BrokenHarness {
        type S = Arc<Reentrant>;
        fn fresh(&self) -> Self::S {
            Arc::new(Reentrant(Arc::new(MemoryStore::new())))
        }
        fn reopen(&self, store: Self::S) -> Self::S {
            store
        }
        fn another(&self, store: &Self::S) -> Self::S {
            Arc::clone(store)
        }
    }

    #[test]
    fn scenario_catches_reentrant_acquire() {
        let caught = std::panic::catch_unwind(|| {
            leasehold_conformance::seed::s04_lease_race_loser_gets_conflict(&BrokenHarness)
        });
        assert!(caught.is_err(), "s04 passed against a broken backend");
    }

    #[test]
    fn model_catches_reentrant_acquire() {
        let failure = leasehold_conformance::model::run_cases(&BrokenHarness, 0..64, 200)
            .expect_err("the model test passed against a broken backend");
        let text = failure.to_string();
        assert!(text.contains("acquire_lease disagrees"), "{text}");
        assert!(
            text.contains(&format!("LEASEHOLD_MODEL_SEED={}", failure.seed)),
            "{text}"
        );
        // The failure replays from its seed alone.
        let again = leasehold_conformance::model::run_seed(&BrokenHarness, failure.seed, 200)
            .expect_err("replaying the failing seed must fail again");
        assert_eq!(again.step, failure.step);
    }

    /// Loses everything on reopen (no durability) when `forget` is set, or
    /// hands out unshared stores from `another` when `split` is set.
    struct Amnesiac {
        forget: bool,
        split: bool,
    }

    impl Harness for Amnesiac {
        type S = Arc<MemoryStore>;
        fn fresh(&self) -> Self::S {
            Arc::new(MemoryStore::new())
        }
        fn reopen(&self, store: Self::S) -> Self::S {
            if self.forget {
                Arc::new(MemoryStore::new())
            } else {
                store
            }
        }
        fn another(&self, store: &Self::S) -> Self::S {
            if self.split {
                Arc::new(MemoryStore::new())
            } else {
                Arc::clone(store)
            }
        }
    }

    #[test]
    fn model_catches_data_lost_on_reopen() {
        let h = Amnesiac {
            forget: true,
            split: false,
        };
        leasehold_conformance::model::run_cases(&h, 0..64, 200)
            .expect_err("the model test passed although reopen loses data");
        let caught = std::panic::catch_unwind(|| {
            leasehold_conformance::seed::s01_round_trip_after_reopen(&h)
        });
        assert!(caught.is_err(), "s01 passed although reopen loses data");
    }

    #[test]
    fn model_and_races_catch_unshared_handles() {
        let h = Amnesiac {
            forget: false,
            split: true,
        };
        leasehold_conformance::model::run_cases(&h, 0..64, 200)
            .expect_err("the model test passed although handles share nothing");
        let caught = std::panic::catch_unwind(|| {
            leasehold_conformance::concurrency::lease_race_sized(&h, 2, 4)
        });
        assert!(
            caught.is_err(),
            "the lease race passed with unshared handles"
        );
    }

    #[test]
    fn model_coverage_is_broad() {
        struct Plain;
        impl Harness for Plain {
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
        let cov = leasehold_conformance::model::run_cases(&Plain, 0..64, 200).unwrap();
        eprintln!("{cov:#?}");
        cov.assert_meaningful();
    }
}
