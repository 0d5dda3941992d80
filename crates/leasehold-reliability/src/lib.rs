//! # leasehold-reliability
//!
//! The reliability battery (issue #7): the kind of checks etcd's robustness
//! suite and Jepsen run, against a real Leasehold server on SQLite and on
//! PostgreSQL. Leasehold's value is that its record can be trusted after
//! anything goes wrong; this crate tries hard to catch it lying.
//!
//! - [`history`]: clients record every call with invoke and return instants
//!   and its answer (an unanswered call is "maybe applied").
//! - [`checker`]: a memoised linearizability checker (Wing & Gong with Lowe's
//!   cache, per-task partitioning) against the pure state machine of
//!   `leasehold-core`, plus direct invariants (one unexpired lease, tokens
//!   never reused or going back, terminal is final, stored history agrees with
//!   the stored task). A violation prints a minimal failing history and the seed.
//! - [`race`]: the race workload (workers + reaper loops on hot tasks).
//! - [`procs`]: the server and worker agents as child processes, for
//!   `SIGSTOP`, `SIGKILL` and `kill -9` of the server.
//! - [`faults`]: a [`leasehold_core::Store`] wrapper that injects store errors
//!   into the N-th store call of an operation.
//! - [`fuzz`]: the fuzz targets' bodies, shared by `fuzz/` (cargo-fuzz) and
//!   the stable-toolchain fallback loop in the quick tier.
//!
//! Sizes: every test runs a quick size by default (the `.ci/run` tier);
//! `LEASEHOLD_SOAK=1` switches to the full sizes (see [`sizes`]).
//! `docs/reliability.md` lists every test, what it proves, and the figures.

pub mod checker;
pub mod faults;
pub mod fuzz;
pub mod history;
pub mod procs;
pub mod race;
pub mod rawhttp;
pub mod sizes;
