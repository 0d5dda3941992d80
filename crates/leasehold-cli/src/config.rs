//! Resolved configuration: the raw flags plus the environment, turned into
//! the values the commands use (which backend, what time it is, who acts).
//!
//! Values that parse but are unacceptable answer `invalid_input` (exit 3)
//! with a message naming the flag and what was expected.

use std::path::PathBuf;
use std::time::Duration;

use leasehold_core::{Error, Result, Timestamp};

use crate::args::Cli;

/// The database used when neither `--db` nor `LEASEHOLD_DB` is given.
pub const DB_DEFAULT: &str = "leasehold.db";

/// Which store the command talks to. New backends (PostgreSQL URLs, a
/// remote server) add a variant here and a branch in
/// [`crate::backend::open_store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite store in this file.
    Sqlite(PathBuf),
    /// A PostgreSQL database: a `postgres://` or `postgresql://` URL
    /// (optionally `?schema=NAME`). May hold a password: never log it.
    Postgres(String),
    /// A Leasehold server (`--server URL`, `--server-token`), through
    /// `leasehold_client::HttpStore`.
    Server {
        /// Base URL, e.g. `http://127.0.0.1:7878`.
        url: String,
        /// Bearer token (empty: none); redacted from `Debug`.
        token: Secret,
    },
}

/// A credential that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything a command needs besides its own arguments.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which store.
    pub backend: Backend,
    /// JSON output instead of tables.
    pub json: bool,
    /// When the operation happens (`--at`, or the wall clock once at start).
    pub at: Timestamp,
    /// Who operator commands are recorded as in history.
    pub actor: String,
}

impl Config {
    /// Resolve the flags. Reads the environment (`USER`) and, without `--at`,
    /// the wall clock; nothing else.
    pub fn resolve(cli: &Cli) -> Result<Config> {
        let backend = match &cli.server {
            Some(url) => Backend::Server {
                url: url.trim().to_string(),
                token: Secret(
                    cli.server_token_before_command
                        .clone()
                        .or_else(|| cli.server_token.clone())
                        .unwrap_or_default(),
                ),
            },
            None => backend_from(cli.db.as_deref())?,
        };
        let at = match &cli.at {
            Some(text) => parse_timestamp("--at", text)?,
            None => Timestamp::now(),
        };
        let actor = match &cli.actor {
            Some(a) => a.clone(),
            None => std::env::var("USER")
                .ok()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| "cli".to_string()),
        };
        if actor.trim().is_empty() {
            return Err(Error::InvalidInput(
                "--actor (or LEASEHOLD_ACTOR) must not be empty".into(),
            ));
        }
        Ok(Config {
            backend,
            json: cli.json,
            at,
            actor,
        })
    }
}

/// Pick the backend from `--db` / `LEASEHOLD_DB`: a path means SQLite.
pub fn backend_from(db: Option<&str>) -> Result<Backend> {
    match db {
        None => Ok(Backend::Sqlite(PathBuf::from(DB_DEFAULT))),
        Some(d) if d.trim().is_empty() => Err(Error::InvalidInput(
            "--db (or LEASEHOLD_DB) must not be empty; expected a SQLite file path".into(),
        )),
        Some(d) if leasehold_postgres::is_postgres_url(d.trim()) => {
            Ok(Backend::Postgres(d.trim().to_string()))
        }
        Some(d) => Ok(Backend::Sqlite(PathBuf::from(d))),
    }
}

/// Parse a timestamp flag: RFC 3339 with an offset, else `invalid_input`.
pub fn parse_timestamp(flag: &str, text: &str) -> Result<Timestamp> {
    Timestamp::parse(text).map_err(|e| Error::InvalidInput(format!("{flag}: {}", e.message())))
}

/// Parse a duration flag like `30s`, `5m`, `1h 30m`; zero is rejected.
pub fn parse_duration(flag: &str, text: &str) -> Result<Duration> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        Error::InvalidInput(format!(
            "{flag} {text:?} is not a duration like 30s, 5m or 1h: {e}"
        ))
    })?;
    if d.is_zero() {
        return Err(Error::InvalidInput(format!(
            "{flag} {text:?} must be longer than zero"
        )));
    }
    Ok(d)
}

/// The lease expiry from `--ttl` (added to `at`) or `--expires-at`.
pub fn expiry(at: Timestamp, ttl: Option<&str>, expires_at: Option<&str>) -> Result<Timestamp> {
    match (ttl, expires_at) {
        (Some(ttl), None) => {
            let d = parse_duration("--ttl", ttl)?;
            at.checked_add(d).ok_or_else(|| {
                Error::InvalidInput(format!("--ttl {ttl:?} from {at} passes year 9999"))
            })
        }
        (None, Some(e)) => parse_timestamp("--expires-at", e),
        // clap's argument group makes these unreachable; answer anyway.
        _ => Err(Error::InvalidInput(
            "give exactly one of --ttl or --expires-at".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::ErrorCode;

    #[test]
    fn timestamps_need_an_offset() {
        let err = parse_timestamp("--at", "2026-06-03T10:00:00").unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidInput);
        assert!(err.message().starts_with("--at:"), "{}", err.message());
        assert_eq!(
            parse_timestamp("--at", "2026-06-03T10:00:00+02:00").unwrap(),
            parse_timestamp("--at", "2026-06-03T08:00:00Z").unwrap()
        );
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("--ttl", "30s").unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(
            parse_duration("--ttl", "5m").unwrap(),
            Duration::from_secs(300)
        );
        for bad in ["", "0s", "five minutes", "-5m", "5"] {
            let err = parse_duration("--ttl", bad).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn expiry_from_ttl_or_absolute() {
        let at = Timestamp::parse("2026-06-03T10:00:00Z").unwrap();
        assert_eq!(
            expiry(at, Some("5m"), None).unwrap(),
            Timestamp::parse("2026-06-03T10:05:00Z").unwrap()
        );
        assert_eq!(
            expiry(at, None, Some("2026-06-03T12:00:00+02:00")).unwrap(),
            Timestamp::parse("2026-06-03T10:00:00Z").unwrap()
        );
        assert!(expiry(at, Some("1000000000y"), None).is_err());
    }

    #[test]
    fn postgres_urls_select_postgres() {
        for url in [
            "postgres://u@h/db",
            "postgresql://u@h:5432/db?schema=team_a",
        ] {
            assert_eq!(
                backend_from(Some(url)).unwrap(),
                Backend::Postgres(url.to_string())
            );
        }
    }

    #[test]
    fn db_path_or_default() {
        assert_eq!(
            backend_from(None).unwrap(),
            Backend::Sqlite(PathBuf::from("leasehold.db"))
        );
        assert_eq!(
            backend_from(Some("x/y.db")).unwrap(),
            Backend::Sqlite(PathBuf::from("x/y.db"))
        );
        assert_eq!(
            backend_from(Some(" ")).unwrap_err().code(),
            ErrorCode::InvalidInput
        );
    }
}
