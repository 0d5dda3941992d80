//! # leasehold-core
//!
//! The pure heart of Leasehold: what a task saga is, which transitions it may
//! take, and the narrow seam through which backends persist those decisions.
//!
//! Nothing in this crate performs I/O. The state machine ([`machine`]) is a set
//! of functions from `(task, command, context)` to a new task plus the history
//! entry that records the change, or a domain [`Error`]. Every backend
//! (in-memory, SQLite, PostgreSQL) loads a task under its own lock, calls the
//! same function, and writes the result back conditionally. The rules therefore
//! live in exactly one place, and backends only differ in how they make the
//! read-decide-write step atomic.
//!
//! Main types:
//! - [`Task`], [`TaskState`], [`Compensation`], [`HistoryEntry`]: the model.
//! - [`Command`] and [`machine::apply`]: every change to an existing task.
//! - [`Store`]: the backend seam; [`memory::MemoryStore`] is the executable
//!   model the other backends are checked against.
//! - [`Error`] / [`ErrorCode`]: stable error codes shared by the library, the
//!   HTTP API and the CLI.
//! - [`Timestamp`]: UTC microseconds, parsed from RFC 3339 with an offset.

pub mod delegate;
pub mod error;
pub mod failpoint;
pub mod limits;
pub mod machine;
pub mod memory;
pub mod model;
pub mod store;
pub mod time;
pub mod validate;

pub use error::{Error, ErrorCode, Result};
pub use machine::{Command, Context, Transition};
pub use model::{
    Compensation, CompensationStatus, Fence, HistoryEntry, HistoryKind, NewCompensation, NewTask,
    Note, Task, TaskState,
};
pub use store::{BatchItem, ClaimRequest, Counts, ListFilter, Page, QueueCounts, Store};
pub use time::Timestamp;
