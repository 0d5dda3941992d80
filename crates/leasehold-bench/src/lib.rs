//! # leasehold-bench
//!
//! The workloads behind `leasehold bench`, and the baselines they are judged
//! against. Every run prints one [`Report`] (JSON with `--json`): operations
//! per second, p50/p99 latency in microseconds, and every parameter that
//! produced them, so a figure can always be traced back to its command.
//!
//! ## Why baselines in the same run
//!
//! Absolute numbers say more about the disk than about Leasehold. Each
//! Leasehold workload is therefore compared with the physical limit measured
//! on the same machine, minutes apart: `baseline-sqlite` (a raw conditional
//! `UPDATE` on a bare table, one per transaction or `--batch N` per
//! transaction, same durability) and `baseline-postgres` (a raw `FOR UPDATE
//! SKIP LOCKED` claim + complete loop on a bare table). `docs/benchmarks.md`
//! reports Leasehold as ratios to these.
//!
//! ## Workloads ([`Workload`])
//!
//! - `create`: `--tasks` creates by `--workers` threads.
//! - `cycle`: `--tasks` tasks are created (not timed), then `--workers`
//!   threads loop claim (limit 1) → heartbeat → complete until none is left.
//!   One op = one cycle = three writes. With `--batch N` each worker claims
//!   up to N tasks at once and extends and completes them with one
//!   `heartbeat_many` and one `complete_many` call: still three writes per
//!   task, N cycles per round, one latency sample per round.
//! - `heartbeat`: each worker claims one task and heartbeats it; `--tasks`
//!   heartbeats in all. With `--batch N` each worker claims N tasks and
//!   extends all N with one `heartbeat_many` call per op round (N
//!   heartbeats counted per call, one latency sample per call).
//! - `stale-scan`: `--tasks` tasks (default 1,000,000), 100 of them stale and
//!   1,000 leased but not stale; `--calls` `list_stale` calls, each checked to
//!   return exactly the 100.
//! - `reclaim`: `--tasks` tasks claimed, then `reclaim` at an instant when
//!   every lease has expired, until all are back; one op = one reclaimed task.
//!   In-process only (a server decides expiry on its own clock).
//!
//! Workloads run against any [`leasehold_core::Store`]: the embedded SQLite
//! store (`--db PATH`, default a fresh temporary file), PostgreSQL (`--db
//! postgres://…`, a fresh schema per run) or a server over HTTP (`--server
//! URL`). Tasks of a run live in a queue of their own, so a run never claims
//! someone else's tasks.
//!
//! ## Through a server ([`http`])
//!
//! `--server` runs `cycle` and `heartbeat` with the async
//! [`leasehold_client::Client`]: `--workers` concurrent tasks on a
//! one-thread tokio runtime sharing one keep-alive connection pool (one
//! connection per concurrent task), each sending exactly the requests the
//! in-process workload makes calls (claim, heartbeat, complete; or the batch
//! routes with `--batch`). `--blocking-client` runs the older driver instead
//! — `--workers` threads on one blocking `HttpStore` — for comparisons.
//! Setup (creating the tasks) always goes through `HttpStore`.
//!
//! Time: workloads use the wall clock for `Context::at` (a benchmark measures
//! real time; a server ignores client time anyway). Unit tests of this crate
//! run every workload at tiny sizes so the plumbing cannot rot; they check
//! counts, never speed.

pub mod baseline;
pub mod http;
pub mod report;
pub mod workloads;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use leasehold_core::limits::BATCH_ITEMS_MAX;
use leasehold_core::{Error, Result, Store};
use leasehold_sqlite::{Durability, SqliteOptions, SqliteStore};

pub use report::Report;

/// Most worker threads a run may start.
pub const WORKERS_MAX: usize = 1024;
/// Most tasks a run may create.
pub const TASKS_MAX: u64 = 50_000_000;
/// Most `list_stale` calls a `stale-scan` run makes.
pub const CALLS_MAX: u64 = 10_000_000;
/// Tasks that are stale in `stale-scan`.
pub const STALE_SCAN_STALE: u64 = 100;
/// Tasks leased but not stale in `stale-scan`.
pub const STALE_SCAN_LEASED: u64 = 1_000;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Creates.
    Create,
    /// claim → heartbeat → complete.
    Cycle,
    /// Heartbeats on held leases.
    Heartbeat,
    /// `list_stale` over many tasks with few stale.
    StaleScan,
    /// `reclaim` of expired leases.
    Reclaim,
    /// Raw conditional UPDATE on SQLite.
    BaselineSqlite,
    /// Raw SKIP LOCKED claim + complete on PostgreSQL.
    BaselinePostgres,
}

impl Workload {
    /// Every workload, in the order `--help` lists them.
    pub const ALL: [Workload; 7] = [
        Workload::Create,
        Workload::Cycle,
        Workload::Heartbeat,
        Workload::StaleScan,
        Workload::Reclaim,
        Workload::BaselineSqlite,
        Workload::BaselinePostgres,
    ];

    /// The command-line name, e.g. `stale-scan`.
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::Cycle => "cycle",
            Workload::Heartbeat => "heartbeat",
            Workload::StaleScan => "stale-scan",
            Workload::Reclaim => "reclaim",
            Workload::BaselineSqlite => "baseline-sqlite",
            Workload::BaselinePostgres => "baseline-postgres",
        }
    }

    /// Parse a command-line name; `invalid_input` naming the choices.
    pub fn parse(s: &str) -> Result<Workload> {
        Workload::ALL
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Workload::ALL.iter().map(|w| w.as_str()).collect();
                Error::InvalidInput(format!(
                    "unknown workload {s:?}; expected one of {}",
                    names.join(", ")
                ))
            })
    }

    /// The default `--tasks` of this workload.
    pub fn default_tasks(self) -> u64 {
        match self {
            Workload::StaleScan => 1_000_000,
            _ => 20_000,
        }
    }

    /// Store writes one op of this workload makes (for "same number of
    /// writes" comparisons with the raw baselines).
    pub fn writes_per_op(self) -> u64 {
        match self {
            Workload::Cycle => 3,
            Workload::BaselinePostgres => 2,
            Workload::StaleScan => 0,
            _ => 1,
        }
    }
}

/// Where a run's store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The embedded SQLite store; `None`: a fresh temporary file.
    Sqlite(Option<PathBuf>),
    /// PostgreSQL at this URL (a fresh schema per run).
    Postgres(String),
    /// A Leasehold server at this URL, with this bearer token (may be empty).
    Server {
        /// Base URL, e.g. `http://127.0.0.1:8080`.
        url: String,
        /// Bearer token; empty for an open loopback server.
        token: String,
    },
}

impl Target {
    /// From `--db` and `--server`: a `postgres://` URL means PostgreSQL,
    /// another value a SQLite path; `--server` wins over `--db`.
    pub fn from_flags(db: Option<&str>, server: Option<&str>, token: Option<&str>) -> Target {
        if let Some(url) = server {
            return Target::Server {
                url: url.to_string(),
                token: token.unwrap_or_default().to_string(),
            };
        }
        match db {
            Some(u) if leasehold_postgres::is_postgres_url(u) => Target::Postgres(u.to_string()),
            Some(p) => Target::Sqlite(Some(PathBuf::from(p))),
            None => Target::Sqlite(None),
        }
    }

    /// `sqlite`, `postgres` or `http`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Sqlite(_) => "sqlite",
            Target::Postgres(_) => "postgres",
            Target::Server { .. } => "http",
        }
    }
}

/// Everything a run needs; built from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// What to measure.
    pub workload: Workload,
    /// Where.
    pub target: Target,
    /// Concurrent worker threads (1..=[`WORKERS_MAX`]).
    pub workers: usize,
    /// Tasks (or operations for `heartbeat` and the baselines).
    pub tasks: u64,
    /// SQLite commit durability (SQLite targets and `baseline-sqlite`).
    pub durability: Durability,
    /// Updates per transaction for `baseline-sqlite`; tasks per claim and
    /// per `heartbeat_many` / `complete_many` call for `cycle` and
    /// `heartbeat`; 1 otherwise.
    pub batch: u64,
    /// `list_stale` calls for `stale-scan`.
    pub calls: u64,
    /// `baseline-sqlite`: a bare four-column table instead of Leasehold's schema.
    pub bare: bool,
    /// Show a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// `--server`: drive it with `--workers` threads on one blocking
    /// `HttpStore` (the older driver) instead of async tasks.
    pub blocking_client: bool,
}

impl Options {
    /// Defaults for `workload` on a fresh temporary SQLite file.
    pub fn new(workload: Workload) -> Options {
        Options {
            workload,
            target: Target::Sqlite(None),
            workers: 32,
            tasks: workload.default_tasks(),
            durability: Durability::Full,
            batch: 1,
            calls: 2_000,
            bare: false,
            progress: false,
            blocking_client: false,
        }
    }

    /// Check the numbers; `invalid_input` naming the flag and its range.
    pub fn check(&self) -> Result<()> {
        let range = |name: &str, v: u64, max: u64| {
            if v == 0 || v > max {
                Err(Error::InvalidInput(format!(
                    "--{name} must be from 1 to {max}, got {v}"
                )))
            } else {
                Ok(())
            }
        };
        range("workers", self.workers as u64, WORKERS_MAX as u64)?;
        range("tasks", self.tasks, TASKS_MAX)?;
        range("batch", self.batch, 100_000)?;
        range("calls", self.calls, CALLS_MAX)?;
        match self.workload {
            Workload::BaselineSqlite => {}
            Workload::Cycle | Workload::Heartbeat => {
                range("batch", self.batch, BATCH_ITEMS_MAX as u64)?;
            }
            w if self.batch != 1 => {
                return Err(Error::InvalidInput(format!(
                    "--batch applies to cycle, heartbeat and baseline-sqlite, not {}",
                    w.as_str()
                )));
            }
            _ => {}
        }
        if self.bare && self.workload != Workload::BaselineSqlite {
            return Err(Error::InvalidInput(format!(
                "--bare only applies to baseline-sqlite, not {}",
                self.workload.as_str()
            )));
        }
        if self.blocking_client && !matches!(self.target, Target::Server { .. }) {
            return Err(Error::InvalidInput(
                "--blocking-client only applies with --server".into(),
            ));
        }
        if self.workload == Workload::Reclaim && matches!(self.target, Target::Server { .. }) {
            return Err(Error::InvalidInput(
                "reclaim cannot run through --server: the server decides expiry on its own clock \
                 (and its reaper would compete); run it in-process with --db"
                    .into(),
            ));
        }
        if self.workload == Workload::StaleScan && self.tasks < STALE_SCAN_STALE + STALE_SCAN_LEASED
        {
            return Err(Error::InvalidInput(format!(
                "stale-scan needs --tasks of at least {}, got {}",
                STALE_SCAN_STALE + STALE_SCAN_LEASED,
                self.tasks
            )));
        }
        Ok(())
    }
}

/// An opened store plus what must live as long as it (a temporary directory).
pub struct Opened {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The SQLite handle when the target is SQLite (for group-commit stats).
    pub sqlite: Option<Arc<SqliteStore>>,
    _dir: Option<tempfile::TempDir>,
}

/// Open the run's store: a fresh SQLite file, a fresh PostgreSQL schema, or
/// the server. An existing SQLite file is refused (a benchmark needs a known
/// starting point).
pub fn open(target: &Target, durability: Durability) -> Result<Opened> {
    match target {
        Target::Sqlite(path) => {
            let (dir, path) = match path {
                Some(p) => (None, p.clone()),
                None => {
                    let dir = tempfile::Builder::new()
                        .prefix("leasehold-bench-")
                        .tempdir()
                        .map_err(|e| {
                            Error::Internal(format!("cannot create a temporary directory: {e}"))
                        })?;
                    let p = dir.path().join("bench.db");
                    (Some(dir), p)
                }
            };
            if path.exists() {
                return Err(Error::InvalidInput(format!(
                    "{} exists; bench writes a fresh database, give a path that does not exist",
                    path.display()
                )));
            }
            let s = Arc::new(SqliteStore::open_with(
                &path,
                SqliteOptions {
                    durability,
                    ..SqliteOptions::default()
                },
            )?);
            Ok(Opened {
                store: s.clone(),
                sqlite: Some(s),
                _dir: dir,
            })
        }
        Target::Postgres(url) => {
            let (url, _) = leasehold_postgres::split_schema_param(url);
            let opts = leasehold_postgres::PgOptions {
                schema: leasehold_postgres::testing::unique_schema("bench"),
                pool_size: 64,
                ..Default::default()
            };
            let s = leasehold_postgres::PgStore::connect_with(&url, opts)?;
            Ok(Opened {
                store: Arc::new(s),
                sqlite: None,
                _dir: None,
            })
        }
        Target::Server { url, token } => {
            let s = leasehold_client::HttpStore::new(url, token)?;
            Ok(Opened {
                store: Arc::new(s),
                sqlite: None,
                _dir: None,
            })
        }
    }
}

/// Run one benchmark and return its report.
pub fn run(opts: &Options) -> Result<Report> {
    opts.check()?;
    match opts.workload {
        Workload::BaselineSqlite => baseline::sqlite(opts),
        Workload::BaselinePostgres => baseline::postgres(opts),
        _ => workloads::run(opts),
    }
}

/// A unique name for this run's queue, ids and schema: process id and time.
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("b{}-{}", std::process::id(), nanos % 1_000_000_000_000)
}

/// A progress bar on stderr when asked for and stderr is a terminal;
/// otherwise a hidden one (every call on it is then a no-op).
pub fn progress(opts: &Options, len: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !opts.progress || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})",
    ) {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Start a throwaway PostgreSQL cluster (the PostgreSQL backend's test
/// support: machine binaries, loopback only, removed when dropped).
pub fn throwaway_postgres() -> Result<leasehold_postgres::testing::Cluster> {
    leasehold_postgres::testing::Cluster::start()
        .map_err(|e| Error::Unavailable(format!("cannot start a throwaway PostgreSQL: {e}")))
}
