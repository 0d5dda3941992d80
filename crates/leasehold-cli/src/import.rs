//! `leasehold import PATH`: bring a database written by the seed's Python
//! store (table `task_sagas`) into the configured store.
//!
//! The seed database is opened read-only and read in `rowid` order (its
//! insertion order, which becomes the imported tasks' creation order). Each
//! row becomes one whole [`Task`] inserted with `Store::put(task, Some(0))`,
//! which validates it like any other insert and records an `imported` history
//! entry in the same transaction. A task id that is already in the store is
//! left untouched and counted as "already present", so importing twice changes
//! nothing. A row that cannot be represented is rejected with its reason;
//! the other rows are still imported.
//!
//! How seed columns map (the seed has no queue, priority, metadata, token,
//! attempts or acquisition time):
//!
//! | seed | Leasehold |
//! |---|---|
//! | `state` | the same state (case-insensitive) |
//! | `compensations_json` (`[{kind, target, reason}]`) | compensations, status `applied` for a `compensated` task, else `pending`; `updated_at` = import time |
//! | `lease_owner`, `lease_expires_at`, `last_heartbeat_at` | the same; `lease_token` 1 and `attempts` 1 when there is an owner, else 0 |
//! | (none) | `lease_acquired_at` = `last_heartbeat_at` (the seed sets it at acquisition and every heartbeat, so it is the latest possible acquisition time); without a heartbeat before the expiry, `lease_expires_at` minus 1 µs |
//! | (none) | queue `default`, priority 0, metadata `{}`, created_at = import time |
//!
//! Timestamps are ISO-8601 text. With an offset they are normalised to UTC;
//! **without an offset they are read as UTC** (the seed wrote naive UTC
//! times) and the report says how many were.

use std::path::Path;

use leasehold_core::{
    Compensation, CompensationStatus, Context, Error, ErrorCode, Result, Store, Task, TaskState,
    Timestamp,
};
use rusqlite::types::Value;
use rusqlite::OpenFlags;
use serde::Serialize;

use crate::commands::context;
use crate::config::Config;

/// The seed table and the columns read from it.
pub const SEED_TABLE: &str = "task_sagas";
const SEED_COLUMNS: [&str; 11] = [
    "task_id",
    "saga_id",
    "state",
    "issue",
    "branch",
    "worktree",
    "compensations_json",
    "lease_owner",
    "lease_expires_at",
    "last_heartbeat_at",
    "terminal_reason",
];

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// The seed database as given.
    pub source: String,
    /// Rows read from `task_sagas`.
    pub rows: u64,
    /// Rows inserted as new tasks.
    pub imported: u64,
    /// Rows whose task id was already in the store (left unchanged).
    pub already_present: u64,
    /// Rows that could not be imported.
    pub rejected: u64,
    /// Why each rejected row was rejected.
    pub rejections: Vec<Rejection>,
    /// Assumptions made while reading (e.g. timestamps read as UTC).
    pub notes: Vec<String>,
}

/// One rejected seed row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The row's `rowid` in the seed table.
    pub row: i64,
    /// Its task id (empty when missing).
    pub task_id: String,
    /// Why it was not imported.
    pub reason: String,
}

/// One seed row, as read.
#[derive(Debug, Clone)]
struct SeedRow {
    rowid: i64,
    values: Vec<Value>,
}

/// Assumptions counted while converting rows.
#[derive(Debug, Default)]
struct Assumed {
    naive_timestamps: u64,
    acquired_from_heartbeat: u64,
    acquired_from_expiry: u64,
}

/// Import the seed database at `path` into `store`.
pub fn run(store: &dyn Store, cfg: &Config, path: &Path) -> Result<ImportReport> {
    let rows = read_seed(path)?;
    let ctx = context(cfg);
    let mut report = ImportReport {
        source: path.display().to_string(),
        rows: rows.len() as u64,
        ..ImportReport::default()
    };
    let mut assumed = Assumed::default();
    for row in rows {
        let task_id = text(&row.values[0]).ok().flatten().unwrap_or_default();
        let reject = |report: &mut ImportReport, reason: String| {
            report.rejected += 1;
            report.rejections.push(Rejection {
                row: row.rowid,
                task_id: task_id.clone(),
                reason,
            });
        };
        let mut row_assumed = Assumed::default();
        let task = match to_task(&row, &ctx, &mut row_assumed) {
            Ok(t) => t,
            Err(reason) => {
                reject(&mut report, reason);
                continue;
            }
        };
        if store.get(&task.task_id)?.is_some() {
            report.already_present += 1;
            continue;
        }
        match store.put(task, Some(0), &ctx) {
            Ok(_) => {
                report.imported += 1;
                assumed.naive_timestamps += row_assumed.naive_timestamps;
                assumed.acquired_from_heartbeat += row_assumed.acquired_from_heartbeat;
                assumed.acquired_from_expiry += row_assumed.acquired_from_expiry;
                tracing::debug!(task_id = %task_id, "imported");
            }
            // Someone inserted the same id between our read and our write.
            Err(e) if e.code() == ErrorCode::VersionConflict => report.already_present += 1,
            Err(e) if is_row_problem(&e) => reject(&mut report, e.message().to_string()),
            Err(e) => return Err(e),
        }
    }
    if assumed.naive_timestamps > 0 {
        report.notes.push(format!(
            "{} timestamps had no UTC offset and were read as UTC",
            assumed.naive_timestamps
        ));
    }
    if assumed.acquired_from_heartbeat > 0 {
        report.notes.push(format!(
            "{} leases: lease_acquired_at set to last_heartbeat_at (the seed does not store the acquisition time)",
            assumed.acquired_from_heartbeat
        ));
    }
    if assumed.acquired_from_expiry > 0 {
        report.notes.push(format!(
            "{} leases had no heartbeat before their expiry: lease_acquired_at set to lease_expires_at minus 1 microsecond",
            assumed.acquired_from_expiry
        ));
    }
    Ok(report)
}

/// Errors that condemn one row but not the import.
fn is_row_problem(e: &Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::InvalidInput
            | ErrorCode::LeaseConflict
            | ErrorCode::AlreadyExists
            | ErrorCode::Terminal
    )
}

/// Read every row of the seed table, in rowid order.
fn read_seed(path: &Path) -> Result<Vec<SeedRow>> {
    let shown = path.display();
    if !path.is_file() {
        return Err(Error::NotFound(format!(
            "seed database {shown:?} not found (expected a SQLite file with table {SEED_TABLE})"
        )));
    }
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::InvalidInput(format!("cannot open seed database {shown:?}: {e}")))?;
    let bad = |e: rusqlite::Error| {
        Error::InvalidInput(format!(
            "seed database {shown:?} is not readable as a SQLite database with table {SEED_TABLE}: {e}"
        ))
    };
    let present: Vec<String> = {
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .map_err(bad)?;
        let names = stmt
            .query_map([SEED_TABLE], |r| r.get::<_, String>(0))
            .map_err(bad)?;
        names.collect::<std::result::Result<_, _>>().map_err(bad)?
    };
    if present.is_empty() {
        return Err(Error::InvalidInput(format!(
            "seed database {shown:?} has no table {SEED_TABLE}"
        )));
    }
    let missing: Vec<&str> = SEED_COLUMNS
        .iter()
        .copied()
        .filter(|c| !present.iter().any(|p| p.eq_ignore_ascii_case(c)))
        .collect();
    if !missing.is_empty() {
        return Err(Error::InvalidInput(format!(
            "table {SEED_TABLE} in {shown:?} lacks columns {}; expected {}",
            missing.join(", "),
            SEED_COLUMNS.join(", ")
        )));
    }
    let sql = format!(
        "SELECT rowid, {} FROM {SEED_TABLE} ORDER BY rowid",
        SEED_COLUMNS.join(", ")
    );
    let mut stmt = conn.prepare(&sql).map_err(bad)?;
    let rows = stmt
        .query_map([], |r| {
            let rowid: i64 = r.get(0)?;
            let values = (1..=SEED_COLUMNS.len())
                .map(|i| r.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(SeedRow { rowid, values })
        })
        .map_err(bad)?;
    rows.collect::<std::result::Result<Vec<_>, _>>()
        .map_err(bad)
}

/// A text column: NULL is `None`, numbers are shown as text, blobs are refused.
fn text(v: &Value) -> std::result::Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Text(s) => Ok(Some(s.clone())),
        Value::Integer(i) => Ok(Some(i.to_string())),
        Value::Real(f) => Ok(Some(f.to_string())),
        Value::Blob(_) => Err("is a blob, expected text".to_string()),
    }
}

/// A text column where the empty string also means "absent".
fn optional_text(name: &str, v: &Value) -> std::result::Result<Option<String>, String> {
    text(v)
        .map(|o| o.filter(|s| !s.trim().is_empty()))
        .map_err(|e| format!("{name} {e}"))
}

/// Parse a seed timestamp: RFC 3339 / ISO-8601 with an offset, or without one
/// (read as UTC, counted in `naive`). A space instead of `T` is accepted.
pub fn parse_seed_timestamp(raw: &str, naive: &mut u64) -> std::result::Result<Timestamp, String> {
    let mut s = raw.trim().to_string();
    if s.len() > 10 && s.as_bytes()[10] == b' ' {
        s.replace_range(10..11, "T");
    }
    if let Ok(t) = Timestamp::parse(&s) {
        return Ok(t);
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(&s, fmt) {
            let micros = dt.and_utc().timestamp_micros();
            let t = Timestamp::from_micros(micros)
                .ok_or_else(|| format!("timestamp {raw:?} is outside years 1 to 9999"))?;
            *naive += 1;
            return Ok(t);
        }
    }
    Err(format!(
        "timestamp {raw:?} is not ISO-8601 (expected e.g. 2026-06-03T10:00:00+00:00 or 2026-06-03T10:00:00)"
    ))
}

fn timestamp_column(
    name: &str,
    v: &Value,
    naive: &mut u64,
) -> std::result::Result<Option<Timestamp>, String> {
    match optional_text(name, v)? {
        None => Ok(None),
        Some(s) => parse_seed_timestamp(&s, naive)
            .map(Some)
            .map_err(|e| format!("{name}: {e}")),
    }
}

fn issue_column(v: &Value) -> std::result::Result<Option<i64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Integer(i) => Ok(Some(*i)),
        Value::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(*f as i64)),
        Value::Text(s) if s.trim().is_empty() => Ok(None),
        Value::Text(s) => s
            .trim()
            .trim_start_matches('#')
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("issue {s:?} is not an integer")),
        other => Err(format!("issue {other:?} is not an integer")),
    }
}

fn compensations_column(
    v: &Value,
    state: TaskState,
    at: Timestamp,
) -> std::result::Result<Vec<Compensation>, String> {
    let Some(raw) = optional_text("compensations_json", v)? else {
        return Ok(Vec::new());
    };
    let parsed: serde_json::Value = serde_json::from_str(&raw)
        .map_err(|e| format!("compensations_json is not valid JSON: {e}"))?;
    let items = match parsed {
        serde_json::Value::Null => return Ok(Vec::new()),
        serde_json::Value::Array(items) => items,
        _ => return Err("compensations_json is not a JSON array".to_string()),
    };
    let status = if state == TaskState::Compensated {
        CompensationStatus::Applied
    } else {
        CompensationStatus::Pending
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |name: &str, required: bool| -> std::result::Result<String, String> {
                match item.get(name) {
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    None | Some(serde_json::Value::Null) if !required => Ok(String::new()),
                    _ => Err(format!(
                        "compensations_json[{i}] needs a string {name:?} (items are {{kind, target, reason}})"
                    )),
                }
            };
            Ok(Compensation {
                kind: field("kind", true)?,
                target: field("target", true)?,
                reason: field("reason", false)?,
                status,
                detail: None,
                updated_at: at,
            })
        })
        .collect()
}

/// Convert one seed row; the error is the rejection reason.
fn to_task(
    row: &SeedRow,
    ctx: &Context,
    assumed: &mut Assumed,
) -> std::result::Result<Task, String> {
    let v = &row.values;
    let task_id = optional_text("task_id", &v[0])?.ok_or("task_id is missing")?;
    let saga_id = optional_text("saga_id", &v[1])?.ok_or("saga_id is missing")?;
    let state_text = optional_text("state", &v[2])?.ok_or("state is missing")?;
    let state: TaskState = state_text
        .trim()
        .to_ascii_lowercase()
        .parse()
        .map_err(|e: Error| e.message().to_string())?;
    let issue = issue_column(&v[3])?;
    let branch = optional_text("branch", &v[4])?;
    let worktree = optional_text("worktree", &v[5])?;
    let compensations = compensations_column(&v[6], state, ctx.at)?;
    let lease_owner = optional_text("lease_owner", &v[7])?;
    let mut naive = 0;
    let lease_expires_at = timestamp_column("lease_expires_at", &v[8], &mut naive)?;
    let last_heartbeat_at = timestamp_column("last_heartbeat_at", &v[9], &mut naive)?;
    let terminal_reason = optional_text("terminal_reason", &v[10])?;

    let (lease_token, attempts, lease_acquired_at) = match (&lease_owner, lease_expires_at) {
        (None, _) if state == TaskState::Running => {
            return Err(format!(
                "task {task_id:?} is running but has no lease_owner"
            ));
        }
        (None, _) => (0, 0, None),
        (Some(o), None) => {
            return Err(format!(
                "task {task_id:?} is leased by {o:?} but has no lease_expires_at"
            ));
        }
        (Some(o), Some(_)) if matches!(state, TaskState::Planned | TaskState::Dispatched) => {
            return Err(format!(
                "task {task_id:?} is {state} but has a lease owner {o:?}; only running or terminal tasks hold a lease"
            ));
        }
        (Some(_), Some(expires)) => {
            let acquired = match last_heartbeat_at {
                Some(hb) if hb < expires => {
                    assumed.acquired_from_heartbeat += 1;
                    hb
                }
                _ => {
                    assumed.acquired_from_expiry += 1;
                    expires
                        .checked_add_micros(-1)
                        .ok_or_else(|| format!("lease_expires_at {expires} is out of range"))?
                }
            };
            (1, 1, Some(acquired))
        }
    };
    assumed.naive_timestamps += naive;
    Ok(Task {
        task_id,
        saga_id,
        state,
        queue: "default".to_string(),
        priority: 0,
        issue,
        branch,
        worktree,
        metadata: serde_json::Value::Object(Default::default()),
        compensations,
        notes: Vec::new(),
        lease_owner,
        lease_token,
        lease_acquired_at,
        lease_expires_at,
        last_heartbeat_at,
        attempts,
        terminal_reason,
        version: 1,
        created_at: ctx.at,
        updated_at: ctx.at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_timestamps_with_and_without_offset() {
        let mut naive = 0;
        let z = Timestamp::parse("2026-06-03T08:00:00Z").unwrap();
        assert_eq!(
            parse_seed_timestamp("2026-06-03T10:00:00+02:00", &mut naive).unwrap(),
            z
        );
        assert_eq!(
            parse_seed_timestamp("2026-06-03T08:00:00+00:00", &mut naive).unwrap(),
            z
        );
        assert_eq!(naive, 0);
        assert_eq!(
            parse_seed_timestamp("2026-06-03T08:00:00", &mut naive).unwrap(),
            z
        );
        assert_eq!(
            parse_seed_timestamp("2026-06-03 08:00:00.000000", &mut naive).unwrap(),
            z
        );
        assert_eq!(naive, 2);
        assert!(parse_seed_timestamp("yesterday", &mut naive).is_err());
        assert!(parse_seed_timestamp("2026-13-03T08:00:00", &mut naive).is_err());
        assert_eq!(naive, 2);
    }

    #[test]
    fn issues_accept_integers_and_numeric_text() {
        assert_eq!(issue_column(&Value::Integer(168)).unwrap(), Some(168));
        assert_eq!(
            issue_column(&Value::Text("#168".into())).unwrap(),
            Some(168)
        );
        assert_eq!(issue_column(&Value::Null).unwrap(), None);
        assert!(issue_column(&Value::Text("abc".into())).is_err());
    }

    #[test]
    fn compensations_status_follows_state() {
        let at = Timestamp::parse("2026-06-03T10:00:00Z").unwrap();
        let json =
            Value::Text(r#"[{"kind":"delete_branch","target":"b1","reason":"cleanup"}]"#.into());
        let c = compensations_column(&json, TaskState::Compensated, at).unwrap();
        assert_eq!(c[0].status, CompensationStatus::Applied);
        let c = compensations_column(&json, TaskState::Failed, at).unwrap();
        assert_eq!(c[0].status, CompensationStatus::Pending);
        assert_eq!(c[0].kind, "delete_branch");
        assert!(compensations_column(&Value::Text("{".into()), TaskState::Failed, at).is_err());
        assert!(compensations_column(
            &Value::Text(r#"[{"kind":1}]"#.into()),
            TaskState::Failed,
            at
        )
        .is_err());
        assert!(compensations_column(&Value::Null, TaskState::Failed, at)
            .unwrap()
            .is_empty());
    }
}
