//! # leasehold-client
//!
//! Talk to a Leasehold server from Rust, and run workers against it.
//!
//! - [`HttpStore`]: a blocking [`leasehold_core::Store`] over HTTP. Anything
//!   written against the `Store` seam (the CLI, tests, scripts) works against
//!   a server by swapping the store; the conformance suite runs through it.
//! - [`Client`]: the same operations, async, in the server's own terms (lease
//!   TTLs instead of expiry instants: the server's clock decides expiry).
//! - [`Worker`]: claims tasks, runs an async [`Handler`], heartbeats in the
//!   background (one batch request per period for all its leases), cancels
//!   the handler when its lease is lost, and completes or fails the task
//!   with its fence.
//!
//! ## Design
//!
//! The client holds no rules. The server loads, decides with the same pure
//! state machine as every backend, and writes atomically; this crate only
//! translates calls to requests ([`wire`], written once for both the blocking
//! and the async client) and maps RFC 9457 problems back to
//! [`leasehold_core::Error`] by their `code` member. Transport failures
//! (refused connection, timeout, reset) become `unavailable`, the one
//! retryable code.
//!
//! ## What HTTP cannot express, and what this crate does about it
//!
//! - **Expiry instants.** `Store` takes `expires_at`; the API takes `ttl_ms`
//!   and adds it to the *server's* time. `HttpStore` sends
//!   `ceil((expires_at - ctx.at) / 1 ms)`. Against a server in its test-only
//!   `trust_client_clock` mode (which takes `at` from `x-leasehold-at`) this is
//!   exact for whole milliseconds; against a production server the expiry is
//!   the server's now plus the TTL, which is the point. Sub-millisecond
//!   remainders round up (a lease is never shorter than asked). For exact
//!   tests, [`HttpStore::with_exact_expiry`] sends the instant itself
//!   (`expires_at`), which only a `trust_client_clock` server accepts; the
//!   conformance suite, whose expiries have microseconds, runs that way.
//! - **TTL range.** The server grants 100 ms to 24 h. When a lease or
//!   heartbeat asks for an expiry outside that range (including one at or
//!   before `ctx.at`), `HttpStore` does not send it: it reads the task and
//!   lets the state machine judge the command locally. If the model would
//!   reject it (`terminal`, `lease_conflict`, `invalid_input`, `not_found`),
//!   that exact error is returned; if the model would accept it, the answer
//!   is `invalid_input` naming the range. Nothing is written either way, so
//!   this is linearizable at the read.
//! - **Time and actor.** `ctx.at` and `ctx.actor` travel as `x-leasehold-at`
//!   and `x-leasehold-actor`; a production server ignores both (its clock, its
//!   token's name). `list_stale(now)` sends `now` the same way.
//! - **`list_in_flight`** has no route: it pages through `list` filtered to
//!   the non-terminal states. Each page is consistent, the whole is not a
//!   snapshot: a task changing state between pages may be missed or included.
//! - **`apply(Command::Reclaim)`** (reclaiming one named task) goes to
//!   `POST /v1/tasks/{id}/reclaim`; a server without that route answers
//!   `invalid_input` through the client. `reclaim` (every stale task) works
//!   everywhere.
//! - **`get` of a missing task** is a 404 problem on the wire and `Ok(None)`
//!   here, as in the library.
//! - **Batches.** `heartbeat_many` and `complete_many` are one request each
//!   (`POST /v1/heartbeats`, `POST /v1/completions`; one answer per item).
//!   `apply_many` uses them when every item is a heartbeat to the same
//!   expiry, or a fenced complete with the same reason; any other batch is
//!   sent item by item, in order. A `heartbeat_many` expiry outside the TTL
//!   range is judged per item locally, like a single heartbeat's.
//!
//! TLS: enable the `tls` feature for `https://` servers (rustls).

pub mod client;
pub mod store;
pub mod wire;
pub mod worker;

pub use client::{Client, ClockFn};
pub use store::HttpStore;
pub use worker::{
    Done, Failure, Handler, HandlerResult, Job, Outcome, Worker, WorkerConfig, WorkerHandle,
    WorkerStats,
};
