//! Opening the store a command talks to.
//!
//! The backend comes from `--db` / `LEASEHOLD_DB` (see
//! [`crate::config::backend_from`]): a path means the embedded SQLite store.
//! Other backends (a `postgres://` URL, a remote server via `--server` and
//! `--token`) add a [`Backend`] variant and one arm here; commands only ever
//! see `Arc<dyn Store>`.

use std::sync::Arc;

use leasehold_core::{Result, Store};

use crate::config::{Backend, Config};

/// Open the configured store.
pub fn open_store(cfg: &Config) -> Result<Arc<dyn Store>> {
    match &cfg.backend {
        Backend::Sqlite(path) => {
            tracing::debug!(path = %path.display(), "opening SQLite store");
            let store = leasehold_sqlite::SqliteStore::open(path)?;
            Ok(Arc::new(store))
        }
        Backend::Postgres(url) => {
            // The URL may carry a password: log only that PostgreSQL is used.
            tracing::debug!("opening PostgreSQL store");
            let store = leasehold_postgres::PgStore::connect(url)?;
            Ok(Arc::new(store))
        }
        Backend::Server { url, token } => {
            // The server's clock decides expiry: `--ttl` travels as a TTL
            // from `--at` (see leasehold_client's docs); never log the token.
            tracing::debug!(url = %url, "using a Leasehold server");
            let store = leasehold_client::HttpStore::new(url, &token.0)?;
            Ok(Arc::new(store))
        }
    }
}
