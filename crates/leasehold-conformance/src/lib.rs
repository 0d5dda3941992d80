//! # leasehold-conformance
//!
//! One body of tests, run against every backend (in-memory, SQLite,
//! PostgreSQL, and the HTTP client against a running server). A backend's
//! test file provides a [`Harness`] and invokes [`conformance_tests!`] and
//! [`model_tests!`]; it never forks the tests.
//!
//! ```ignore
//! // crates/leasehold-foo/tests/conformance.rs
//! struct FooHarness;
//! impl leasehold_conformance::Harness for FooHarness { /* fresh, reopen, another */ }
//! leasehold_conformance::conformance_tests!(FooHarness);
//! leasehold_conformance::model_tests!(FooHarness);
//! ```
//!
//! Scenarios are plain functions `pub fn name<H: Harness>(h: &H)` grouped by
//! area ([`seed`] holds the 18 seed scenarios). Every scenario uses fixed
//! instants ([`support::at`]), and after every rejected operation asserts that
//! the stored task and its history are byte-for-byte unchanged
//! ([`support::assert_unchanged`]). The macros expand to one `#[test]` per
//! scenario, in a module per area, so `cargo nextest run` lists them by name.
//!
//! The harness expression is evaluated inside each generated test function,
//! so it may `return` early to skip a test when its backend is unavailable
//! (e.g. `{ let Some(h) = PgHarness::new() else { return }; h }`).
//!
//! Concurrency scenarios ([`concurrency`]) run modest sizes from the macro
//! (20 rounds of 32 threads); a backend runs the full-size versions from its
//! own tests, e.g. `concurrency::lease_race_sized(&harness, 200, 32)` and
//! `concurrency::claim_race_sized(&harness, 500, 16)`.
//!
//! The model-based test ([`model`]) drives random operation sequences through
//! a fresh [`leasehold_core::memory::MemoryStore`] and the backend under test
//! side by side; any disagreement panics with the seed and the step to replay.

use leasehold_core::Store;

pub mod support;

pub mod audit;
pub mod batch;
pub mod claim;
pub mod concurrency;
pub mod errors;
pub mod heartbeat;
pub mod lease;
pub mod model;
pub mod put;
pub mod reads;
pub mod reclaim;
pub mod seed;
pub mod terminal;

/// How the suite gets stores from a backend.
pub trait Harness: Send + Sync + 'static {
    /// The backend under test.
    type S: Store + 'static;

    /// A fresh, empty, isolated store (its own file, schema or database).
    fn fresh(&self) -> Self::S;

    /// Close `store` and open the same data again, as after a process restart.
    /// The in-memory backend returns the store it was given.
    fn reopen(&self, store: Self::S) -> Self::S;

    /// Another handle on the same data as `store` (own connection), for
    /// concurrency tests with real threads.
    fn another(&self, store: &Self::S) -> Self::S;
}

/// Expands to one `#[test]` per conformance scenario, each building its
/// harness from `$harness` (an expression evaluated once per test). Tests are
/// grouped in one module per area (`seed`, `lease`, …) so names read like
/// `seed::s04_lease_race_loser_gets_conflict`.
///
/// The harness expression is resolved inside those modules with
/// `use super::*`, so anything in scope where the macro is invoked works.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::__conformance_scenarios!($crate::__conformance_emit; $harness);
    };
}

/// The one list of scenarios. Calls `$emit!` with the harness and every
/// `module { function, … }` group. Hidden: use [`conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_scenarios {
    ($emit:path; $harness:expr) => {
        $emit! { $harness;
            seed {
                s01_round_trip_after_reopen,
                s02_missing_after_reopen_is_none,
                s03_in_flight_is_non_terminal_in_creation_order,
                s04_lease_race_loser_gets_conflict,
                s05_acquire_sets_owner_expiry_and_heartbeat,
                s06_duplicate_id_or_saga_leaves_first_unchanged,
                s07_heartbeat_extends_lease,
                s08_adversarial_heartbeats_rejected,
                s09_stale_copy_does_not_clear_lease,
                s10_late_heartbeat_after_reclaim_loses,
                s11_list_stale_exactly_expired_non_terminal,
                s12_completed_cannot_be_leased,
                s13_terminal_markers_store_state_and_reason,
                s14_terminal_only_audit_metadata_changes,
                s15_write_racing_terminal_loses,
                s16_fail_requires_compensation,
                s17_lease_and_compensations_survive_reopen,
                s18_timestamps_normalised_to_utc,
            }
            lease {
                acquire_expiry_must_follow_at,
                acquire_rejects_bad_owner,
                acquire_after_expiry_takes_next_token,
                tokens_strictly_increase,
                release_returns_task_to_dispatched,
                release_adversarial_rejected,
                dispatch_rules,
            }
            heartbeat {
                heartbeat_boundaries,
                heartbeat_touches_only_lease_clock,
                heartbeat_after_release_or_new_lease_rejected,
            }
            terminal {
                operator_marks_from_every_state,
                fenced_marker_checks_fence,
                fence_current_past_expiry_until_reclaimed,
                reasons_required_where_specified,
                terminal_refuses_every_change,
            }
            put {
                insert_records_imported,
                insert_validated_like_create,
                update_fields_and_noop,
                version_conflicts,
                lease_fields_are_not_put,
                active_lease_pins_state,
                update_saga_must_stay_unique,
            }
            claim {
                claim_order_and_limit,
                claim_respects_queues,
                claim_takes_expired_not_active_or_terminal,
                claim_leaves_exhausted_stale_leases_to_reclaim,
                claim_rejects_bad_requests,
            }
            reclaim {
                reclaim_dispatches_stale,
                reclaim_quarantines_at_max_attempts,
                reclaim_rejects_zero_max_attempts,
                reclaim_order_matches_list_stale,
            }
            reads {
                list_filters,
                list_cursor_pagination,
                list_rejects_bad_cursor_and_limit,
                counts_every_state,
                get_and_in_flight,
            }
            audit {
                history_records_every_change_in_order,
                annotate_appends_notes,
                record_compensation_rules,
            }
            errors {
                not_found_for_every_write,
                create_rejects_bad_ids,
                create_rejects_bad_metadata_and_compensations,
                check_order_is_fixed,
            }
            batch {
                apply_many_judges_each_item,
                apply_many_empty_and_oversize,
                heartbeat_many_and_complete_many,
            }
            concurrency {
                lease_race,
                claim_race,
                terminal_race,
                create_race,
                reclaim_race,
                mixed_acquire_claim_race,
                expired_takeover_race,
            }
        }
    };
}

/// Emits the `#[test]` functions. Hidden: use [`conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_emit {
    ($harness:expr; $($module:ident { $($name:ident),* $(,)? })*) => {
        $(
            mod $module {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[test]
                    fn $name() {
                        let harness = $harness;
                        $crate::$module::$name(&harness);
                    }
                )*
            }
        )*
    };
}

/// Expands to the seeded model-based property test (module `model_based`):
/// random operation sequences applied to a fresh in-memory model and to the
/// backend built from `$harness` must agree step for step. Quick tier by
/// default (64 seeds x 200 ops); `LEASEHOLD_MODEL_CASES`,
/// `LEASEHOLD_MODEL_STEPS` and `LEASEHOLD_MODEL_SEED` (replay one seed)
/// change that. A failure panics with the seed, the step and the operation.
#[macro_export]
macro_rules! model_tests {
    ($harness:expr) => {
        mod model_based {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn model_agrees_with_memory() {
                let harness = $harness;
                $crate::model::run(&harness, env!("CARGO_PKG_NAME"));
            }
        }
    };
}
