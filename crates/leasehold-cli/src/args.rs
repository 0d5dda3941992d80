//! Raw command-line flags, as clap parses them.
//!
//! This layer only checks the *shape* of the command line (which flags exist,
//! which go together, which are numbers). A malformed command line is a usage
//! error (exit 2, printed by clap). Values that parse but are not acceptable
//! — a timestamp without an offset, an unknown state, invalid JSON, a bad
//! duration — are checked in [`crate::config`] and the commands, and answer
//! `invalid_input` (exit 3), like the same value sent to the library or API.
//!
//! No I/O happens here. To add a command group (e.g. `serve`, `token`,
//! `demo`, `bench`), add a variant to [`Command`] with its own `Args` struct
//! in its own module, and a match arm in [`crate::commands::run`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Leasehold: the durable record of which worker owns which task saga, until when.
///
/// Note for new global flags: a global flag's long name must not repeat a
/// subcommand flag (`--owner`, `--token`, `--queue`, ...); clap rejects the
/// duplicate. A server credential flag therefore needs a distinct long name
/// or must live on the subcommands that use it.
#[derive(Debug, Parser)]
#[command(name = "leasehold", version, about, long_about = None)]
pub struct Cli {
    /// The store: a SQLite file path (default `./leasehold.db`).
    #[arg(long, global = true, env = "LEASEHOLD_DB", value_name = "DB")]
    pub db: Option<String>,

    /// Print machine-readable JSON (SPEC field names) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// When the operation happens (RFC 3339 with an offset); default: now.
    /// `stale` and `reclaim` use it as "now".
    #[arg(long, global = true, value_name = "TIMESTAMP")]
    pub at: Option<String>,

    /// Who is recorded in history for operator commands (default: $USER, else `cli`).
    #[arg(long, global = true, env = "LEASEHOLD_ACTOR", value_name = "ACTOR")]
    pub actor: Option<String>,

    /// Run task commands against a Leasehold server at this URL (e.g.
    /// http://127.0.0.1:7878) instead of a local store; `--db` is then unused.
    #[arg(long, global = true, env = "LEASEHOLD_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// Bearer token for `--server`. (Not `--token`: that is a lease's fencing
    /// token on `heartbeat`, `release`, …)
    #[arg(
        long = "server-token",
        global = true,
        env = "LEASEHOLD_TOKEN",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub server_token: Option<String>,

    /// Bearer token for `--server`, given before the command:
    /// `leasehold --server URL --token T get ID`. After the command name,
    /// `--token` is a lease's fencing token instead, so this flag is not global.
    #[arg(long = "token", value_name = "SECRET")]
    pub server_token_before_command: Option<String>,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand. One variant per command; the arguments live in structs
/// grouped by module of [`crate::commands`].
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a task saga in state `planned`.
    Create(CreateArgs),
    /// Show one task.
    Get(TaskIdArg),
    /// List tasks in creation order, optionally filtered.
    List(ListArgs),
    /// Count tasks per state.
    Counts,
    /// Offer a planned task to workers: `planned` → `dispatched`.
    Dispatch(TaskIdArg),
    /// Take the lease on one task (→ `running`, new fencing token).
    Lease(LeaseArgs),
    /// Lease up to N claimable tasks from queues, highest priority first.
    Claim(ClaimArgs),
    /// Extend a lease you hold.
    Heartbeat(HeartbeatArgs),
    /// Give a lease back (→ `dispatched`).
    Release(FencedArgs),
    /// Mark a task `completed`.
    Complete(FinishArgs),
    /// Mark a task `compensated` (its cleanup ran).
    Compensate(FinishArgs),
    /// Mark a task `failed`; it needs a compensation record (existing or given).
    Fail(FailArgs),
    /// Set a task aside for a person (`quarantined`).
    Quarantine(QuarantineArgs),
    /// Add a note to a task (allowed on terminal tasks).
    Annotate(AnnotateArgs),
    /// Record the outcome of one compensation (allowed on terminal tasks).
    Compensation(CompensationArgs),
    /// Show every change to a task, oldest first.
    History(TaskIdArg),
    /// List stale tasks: not terminal, lease expired at or before --at.
    Stale,
    /// Reclaim stale tasks: back to `dispatched`, or `quarantined` past --max-attempts.
    Reclaim(ReclaimArgs),
    /// Import a database written by the seed's Python store (table `task_sagas`).
    Import(ImportArgs),
    /// Run the HTTP server (API, reaper, metrics) over the store.
    Serve(crate::serve::ServeArgs),
    /// Manage the server's bearer tokens (create, list, revoke).
    Token(crate::token::TokenArgs),
    /// Run a server with simulated workers (crashes, hangs, failures) and print the console URL.
    Demo(crate::demo::DemoArgs),
    /// Measure throughput and latency (workloads and raw baselines); see docs/benchmarks.md.
    Bench(crate::bench::BenchArgs),
}

/// Just a task id.
#[derive(Debug, Args)]
pub struct TaskIdArg {
    /// The task id.
    pub task_id: String,
}

/// `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The new task's id (1–128 chars of A-Z a-z 0-9 . _ : / -).
    pub task_id: String,
    /// The saga id, unique across tasks.
    #[arg(long)]
    pub saga: String,
    /// Queue that `claim` takes it from (default `default`).
    #[arg(long)]
    pub queue: Option<String>,
    /// Priority; higher is claimed first (default 0).
    #[arg(long, allow_hyphen_values = true)]
    pub priority: Option<i32>,
    /// External reference, e.g. a tracker issue number.
    #[arg(long)]
    pub issue: Option<i64>,
    /// The git branch the task works on.
    #[arg(long)]
    pub branch: Option<String>,
    /// The worktree path.
    #[arg(long)]
    pub worktree: Option<String>,
    /// Free metadata: a JSON object.
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,
    /// A compensation record (repeatable): what to clean up if the saga unwinds.
    #[arg(long, num_args = 3, value_names = ["KIND", "TARGET", "REASON"], action = clap::ArgAction::Append)]
    pub compensation: Vec<String>,
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only tasks in this state (repeatable: any of them).
    #[arg(long = "state", value_name = "S")]
    pub states: Vec<String>,
    /// Only this queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// Only tasks whose lease owner is this.
    #[arg(long)]
    pub owner: Option<String>,
    /// Only tasks stale at --at (lease expired, not terminal).
    #[arg(long)]
    pub stale: bool,
    /// Page size (default 100, at most 1000).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Continue after this cursor (the `next_cursor` of the previous page).
    #[arg(long)]
    pub cursor: Option<String>,
}

/// How long a lease lasts: a TTL from --at, or an absolute expiry.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ExpiryArgs {
    /// Lease time to live from --at, e.g. `30s`, `5m`.
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Absolute lease expiry (RFC 3339 with an offset).
    #[arg(long, value_name = "TIMESTAMP")]
    pub expires_at: Option<String>,
}

/// `lease`.
#[derive(Debug, Args)]
pub struct LeaseArgs {
    /// The task to lease.
    pub task_id: String,
    /// Who takes the lease.
    #[arg(long)]
    pub owner: String,
    /// The lease's expiry.
    #[command(flatten)]
    pub expiry: ExpiryArgs,
}

/// `claim`.
#[derive(Debug, Args)]
pub struct ClaimArgs {
    /// Who takes the leases.
    #[arg(long)]
    pub owner: String,
    /// Lease time to live, e.g. `30s`, `5m`.
    #[arg(long, value_name = "DURATION")]
    pub ttl: String,
    /// Queue to claim from (repeatable; default `default`).
    #[arg(long = "queue", value_name = "Q")]
    pub queues: Vec<String>,
    /// Most tasks to lease (default 1, at most 1000).
    #[arg(long, default_value_t = 1)]
    pub limit: u32,
    /// Skip stale tasks whose lease expired after at least this many
    /// attempts: they are left for `reclaim` to quarantine (default 5, as
    /// `reclaim`). Through `--server`, the server's own reaper limit applies.
    #[arg(long)]
    pub max_attempts: Option<u32>,
}

/// `heartbeat`.
#[derive(Debug, Args)]
pub struct HeartbeatArgs {
    /// The task.
    pub task_id: String,
    /// The lease owner.
    #[arg(long)]
    pub owner: String,
    /// The fencing token issued with the lease.
    #[arg(long)]
    pub token: u64,
    /// The new expiry; must be later than the current one.
    #[command(flatten)]
    pub expiry: ExpiryArgs,
}

/// A write that must present the worker's fence (`release`).
#[derive(Debug, Args)]
pub struct FencedArgs {
    /// The task.
    pub task_id: String,
    /// The lease owner.
    #[arg(long)]
    pub owner: String,
    /// The fencing token issued with the lease.
    #[arg(long)]
    pub token: u64,
}

/// An optional fence: operators omit it, workers give both halves.
#[derive(Debug, Args)]
pub struct OptionalFence {
    /// The lease owner (with --token): the write is fenced by this lease.
    #[arg(long, requires = "token")]
    pub owner: Option<String>,
    /// The fencing token (with --owner).
    #[arg(long, requires = "owner")]
    pub token: Option<u64>,
}

/// `complete` and `compensate`.
#[derive(Debug, Args)]
pub struct FinishArgs {
    /// The task.
    pub task_id: String,
    /// Why (stored as the terminal reason).
    #[arg(long)]
    pub reason: Option<String>,
    /// The worker's fence, if a worker makes the call.
    #[command(flatten)]
    pub fence: OptionalFence,
}

/// `fail`.
#[derive(Debug, Args)]
pub struct FailArgs {
    /// The task.
    pub task_id: String,
    /// Why it failed.
    #[arg(long)]
    pub reason: String,
    /// A compensation record to append (needed if the task has none).
    #[arg(long, num_args = 3, value_names = ["KIND", "TARGET", "REASON"], action = clap::ArgAction::Set)]
    pub compensation: Option<Vec<String>>,
    /// The worker's fence, if a worker makes the call.
    #[command(flatten)]
    pub fence: OptionalFence,
}

/// `quarantine`.
#[derive(Debug, Args)]
pub struct QuarantineArgs {
    /// The task.
    pub task_id: String,
    /// Why it is set aside.
    #[arg(long)]
    pub reason: String,
    /// The worker's fence, if a worker makes the call.
    #[command(flatten)]
    pub fence: OptionalFence,
}

/// `annotate`.
#[derive(Debug, Args)]
pub struct AnnotateArgs {
    /// The task.
    pub task_id: String,
    /// The note's text.
    #[arg(long)]
    pub note: String,
    /// Who writes it (default: the actor).
    #[arg(long)]
    pub author: Option<String>,
}

/// `compensation`.
#[derive(Debug, Args)]
pub struct CompensationArgs {
    /// The task.
    pub task_id: String,
    /// Position of the compensation in the task's list (from 0).
    pub index: usize,
    /// The outcome: `applied` or `failed`.
    #[arg(long)]
    pub status: String,
    /// Free text about the outcome.
    #[arg(long)]
    pub detail: Option<String>,
}

/// `reclaim`.
#[derive(Debug, Args)]
pub struct ReclaimArgs {
    /// A stale task with at least this many attempts is quarantined instead
    /// of dispatched again (default 5).
    #[arg(long)]
    pub max_attempts: Option<u32>,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The seed's SQLite database file (opened read-only).
    pub path: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn owner_without_token_is_a_usage_error() {
        let err =
            Cli::try_parse_from(["leasehold", "complete", "t1", "--owner", "w1"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(["leasehold", "complete", "t1", "--token", "3"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(Cli::try_parse_from([
            "leasehold",
            "complete",
            "t1",
            "--owner",
            "w",
            "--token",
            "3"
        ])
        .is_ok());
    }

    #[test]
    fn lease_needs_exactly_one_expiry() {
        assert!(Cli::try_parse_from(["leasehold", "lease", "t1", "--owner", "w"]).is_err());
        assert!(Cli::try_parse_from([
            "leasehold",
            "lease",
            "t1",
            "--owner",
            "w",
            "--ttl",
            "5m",
            "--expires-at",
            "2026-06-03T10:00:00Z"
        ])
        .is_err());
        assert!(
            Cli::try_parse_from(["leasehold", "lease", "t1", "--owner", "w", "--ttl", "5m"])
                .is_ok()
        );
    }

    #[test]
    fn compensations_come_in_threes_and_repeat() {
        let cli = Cli::try_parse_from([
            "leasehold",
            "create",
            "t1",
            "--saga",
            "s1",
            "--compensation",
            "delete_branch",
            "b1",
            "cleanup",
            "--compensation",
            "remove_worktree",
            "w1",
            "cleanup too",
        ])
        .unwrap();
        let Command::Create(c) = cli.command else {
            panic!("not create")
        };
        assert_eq!(c.compensation.len(), 6);
        assert!(Cli::try_parse_from([
            "leasehold",
            "create",
            "t1",
            "--saga",
            "s",
            "--compensation",
            "a",
            "b"
        ])
        .is_err());
    }

    #[test]
    fn token_before_the_command_is_the_server_token_and_after_it_the_fence() {
        let cli = Cli::try_parse_from([
            "leasehold",
            "--server",
            "http://127.0.0.1:7878",
            "--token",
            "lh_secret",
            "heartbeat",
            "t1",
            "--owner",
            "w1",
            "--token",
            "7",
            "--ttl",
            "30s",
        ])
        .unwrap();
        assert_eq!(
            cli.server_token_before_command.as_deref(),
            Some("lh_secret")
        );
        match cli.command {
            Command::Heartbeat(ref h) => assert_eq!(h.token, 7),
            ref other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn global_flags_work_after_the_command() {
        let cli = Cli::try_parse_from([
            "leasehold",
            "counts",
            "--json",
            "--at",
            "2026-06-03T10:00:00Z",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.at.as_deref(), Some("2026-06-03T10:00:00Z"));
    }
}
