//! The fuzz target bodies, compiled from the reliability crate's source so
//! that libFuzzer and the stable fallback loop run exactly the same code
//! without this crate depending on the whole reliability crate (SQLite,
//! PostgreSQL), which would have to be rebuilt with sanitizer flags.

#[path = "../crates/leasehold-reliability/src/fuzz.rs"]
pub mod bodies;
