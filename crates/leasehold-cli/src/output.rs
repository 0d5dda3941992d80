//! What a command prints: tables for people, JSON for scripts.
//!
//! Commands return a [`Reply`]; [`render`] turns it into the text written to
//! stdout in one piece (so a closed pipe is noticed in exactly one place).
//! JSON uses the SPEC's field names: a single task is one object; `claim`,
//! `stale`, `reclaim` and `history` are arrays; `list` is
//! `{"tasks": [...], "next_cursor": ...}`; `counts` is an object keyed by
//! state with every state present. Tables are hand-rolled aligned columns:
//! no dependency, and the output is stable for tests.

use leasehold_core::{Counts, HistoryEntry, Page, Task, Timestamp};
use serde::Serialize;

use crate::import::ImportReport;

/// The result of a command, before rendering.
#[derive(Debug)]
pub enum Reply {
    /// One task (`create`, `get`, `lease`, `complete`, ...).
    Task(Box<Task>),
    /// Several tasks as an array (`claim`, `stale`, `reclaim`).
    Tasks(Vec<Task>),
    /// One page of `list`.
    Page(Page),
    /// Tasks per state.
    Counts(Counts),
    /// A task's history, oldest first.
    History(Vec<HistoryEntry>),
    /// What `import` did.
    Import(ImportReport),
}

/// Render `reply` as JSON (one line) or as a table for people.
pub fn render(reply: &Reply, json: bool) -> String {
    if json {
        let value = match reply {
            Reply::Task(t) => to_json(t),
            Reply::Tasks(ts) => to_json(ts),
            Reply::Page(p) => to_json(p),
            Reply::Counts(c) => to_json(c),
            Reply::History(h) => to_json(&h.iter().map(HistoryJson::from).collect::<Vec<_>>()),
            Reply::Import(r) => to_json(r),
        };
        return format!("{value}\n");
    }
    match reply {
        Reply::Task(t) => task_view(t),
        Reply::Tasks(ts) => task_table(ts),
        Reply::Page(p) => {
            let mut s = task_table(&p.tasks);
            if let Some(c) = &p.next_cursor {
                s.push_str(&format!("more: --cursor {c}\n"));
            }
            s
        }
        Reply::Counts(c) => counts_table(c),
        Reply::History(h) => history_table(h),
        Reply::Import(r) => import_view(r),
    }
}

/// An error as printed on stderr with `--json`.
pub fn error_json(code: &str, message: &str) -> String {
    serde_json::json!({ "code": code, "message": message }).to_string()
}

fn to_json<T: Serialize + ?Sized>(v: &T) -> String {
    // Serialising plain data with string keys cannot fail; say so if it ever does.
    serde_json::to_string(v)
        .unwrap_or_else(|e| error_json("internal", &format!("cannot serialise output: {e}")))
}

/// A history entry with exactly the documented fields.
#[derive(Serialize)]
struct HistoryJson<'a> {
    task_id: &'a str,
    kind: &'static str,
    at: Timestamp,
    actor: &'a str,
    from_state: Option<&'static str>,
    to_state: &'static str,
    lease_token: u64,
    detail: Option<&'a str>,
}

impl<'a> From<&'a HistoryEntry> for HistoryJson<'a> {
    fn from(h: &'a HistoryEntry) -> Self {
        HistoryJson {
            task_id: &h.task_id,
            kind: h.kind.as_str(),
            at: h.at,
            actor: &h.actor,
            from_state: h.from_state.map(|s| s.as_str()),
            to_state: h.to_state.as_str(),
            lease_token: h.lease_token,
            detail: h.detail.as_deref(),
        }
    }
}

/// Aligned columns: every column as wide as its widest cell, two spaces apart,
/// no trailing spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(cell);
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.chars().count());
            s.extend(std::iter::repeat_n(' ', pad));
        }
        let trimmed = s.trim_end().len();
        s.truncate(trimmed);
        s.push('\n');
        s
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

fn dash<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".to_string())
}

/// One row per task: id, state, queue, priority, owner, token, expires, attempts.
pub fn task_table(tasks: &[Task]) -> String {
    if tasks.is_empty() {
        return "no tasks\n".to_string();
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.task_id.clone(),
                t.state.to_string(),
                t.queue.clone(),
                t.priority.to_string(),
                dash(t.lease_owner.as_deref()),
                t.lease_token.to_string(),
                dash(t.lease_expires_at),
                t.attempts.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "TASK", "STATE", "QUEUE", "PRIORITY", "OWNER", "TOKEN", "EXPIRES", "ATTEMPTS",
        ],
        &rows,
    )
}

/// Key/value view of one task, then its compensations and notes.
pub fn task_view(t: &Task) -> String {
    let metadata = serde_json::to_string(&t.metadata).unwrap_or_default();
    let pairs: Vec<(&str, String)> = vec![
        ("task_id", t.task_id.clone()),
        ("saga_id", t.saga_id.clone()),
        ("state", t.state.to_string()),
        ("queue", t.queue.clone()),
        ("priority", t.priority.to_string()),
        ("issue", dash(t.issue)),
        ("branch", dash(t.branch.as_deref())),
        ("worktree", dash(t.worktree.as_deref())),
        ("metadata", metadata),
        ("lease_owner", dash(t.lease_owner.as_deref())),
        ("lease_token", t.lease_token.to_string()),
        ("lease_acquired_at", dash(t.lease_acquired_at)),
        ("lease_expires_at", dash(t.lease_expires_at)),
        ("last_heartbeat_at", dash(t.last_heartbeat_at)),
        ("attempts", t.attempts.to_string()),
        ("terminal_reason", dash(t.terminal_reason.as_deref())),
        ("version", t.version.to_string()),
        ("created_at", t.created_at.to_string()),
        ("updated_at", t.updated_at.to_string()),
    ];
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut s = String::new();
    for (k, v) in &pairs {
        s.push_str(&format!("{k:<width$}  {v}\n"));
    }
    s.push_str(&format!("compensations ({}):\n", t.compensations.len()));
    for (i, c) in t.compensations.iter().enumerate() {
        s.push_str(&format!(
            "  [{i}] {}  {} {}: {}  (updated {}){}\n",
            c.status,
            c.kind,
            c.target,
            c.reason,
            c.updated_at,
            c.detail
                .as_deref()
                .map(|d| format!(" detail: {d}"))
                .unwrap_or_default()
        ));
    }
    s.push_str(&format!("notes ({}):\n", t.notes.len()));
    for n in &t.notes {
        s.push_str(&format!("  {} {}: {}\n", n.at, n.author, n.note));
    }
    s
}

/// One row per state with its count, then the total.
pub fn counts_table(c: &Counts) -> String {
    let mut rows: Vec<Vec<String>> = c
        .iter()
        .map(|(state, n)| vec![state.to_string(), n.to_string()])
        .collect();
    rows.push(vec![
        "total".to_string(),
        c.values().sum::<u64>().to_string(),
    ]);
    table(&["STATE", "COUNT"], &rows)
}

/// A timeline: one line per change, oldest first.
pub fn history_table(h: &[HistoryEntry]) -> String {
    let rows: Vec<Vec<String>> = h
        .iter()
        .map(|e| {
            let change = match e.from_state {
                Some(from) if from != e.to_state => format!("{from} -> {}", e.to_state),
                Some(_) => e.to_state.to_string(),
                None => format!("-> {}", e.to_state),
            };
            vec![
                e.at.to_string(),
                e.kind.to_string(),
                change,
                e.lease_token.to_string(),
                e.actor.clone(),
                dash(e.detail.as_deref()),
            ]
        })
        .collect();
    table(&["AT", "KIND", "STATE", "TOKEN", "ACTOR", "DETAIL"], &rows)
}

/// What `import` did, for people.
pub fn import_view(r: &ImportReport) -> String {
    let mut s = format!(
        "read {} rows from {}\nimported         {}\nalready present  {}\nrejected         {}\n",
        r.rows, r.source, r.imported, r.already_present, r.rejected
    );
    for rej in &r.rejections {
        s.push_str(&format!(
            "  row {} ({}): {}\n",
            rej.row, rej.task_id, rej.reason
        ));
    }
    for note in &r.notes {
        s.push_str(&format!("note: {note}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_trims() {
        let t = table(
            &["A", "LONGER"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "".into()]],
        );
        assert_eq!(t, "A    LONGER\nxxx  y\nz\n");
    }

    #[test]
    fn error_json_has_code_and_message() {
        let v: serde_json::Value =
            serde_json::from_str(&error_json("not_found", "task \"x\" not found")).unwrap();
        assert_eq!(v["code"], "not_found");
        assert_eq!(v["message"], "task \"x\" not found");
    }
}
