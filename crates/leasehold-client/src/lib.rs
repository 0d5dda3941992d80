//! # leasehold-client
//!
//! A typed HTTP client for Leasehold (a Store over HTTP) and a worker runtime.
