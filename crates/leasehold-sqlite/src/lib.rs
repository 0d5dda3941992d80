//! # leasehold-sqlite
//!
//! The embedded default backend. See the crate's README section in the
//! project README and `docs/` for the design.
