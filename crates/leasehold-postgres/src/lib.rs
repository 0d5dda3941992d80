//! # leasehold-postgres
//!
//! Leasehold's PostgreSQL backend: all atomicity in the database, for fleets that outgrow one machine.
