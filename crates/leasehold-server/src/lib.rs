//! # leasehold-server
//!
//! leasehold serve: the HTTP API, auth, reaper, metrics and console.
