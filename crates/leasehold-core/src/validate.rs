//! Input validation and task invariants.
//!
//! Every check returns `invalid_input` with a message naming the field, the
//! task and the limit. [`check_invariants`] is the assertion that a stored task
//! is well formed; backends call it on what they write and what they read back.

use crate::error::{Error, Result};
use crate::limits::*;
use crate::model::{NewCompensation, NewTask, Task, TaskState};

/// Check an id (task, saga or queue): 1–128 chars of `A-Z a-z 0-9 . _ : / -`.
pub fn id(field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::InvalidInput(format!("{field} must not be empty")));
    }
    if value.chars().count() > ID_LEN_MAX {
        return Err(Error::InvalidInput(format!(
            "{field} {:?}… is {} characters; at most {ID_LEN_MAX} allowed",
            value.chars().take(32).collect::<String>(),
            value.chars().count()
        )));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-')))
    {
        return Err(Error::InvalidInput(format!(
            "{field} {value:?} contains {bad:?}; allowed are A-Z a-z 0-9 . _ : / -"
        )));
    }
    Ok(())
}

/// Check an owner id: non-empty, at most [`OWNER_BYTES_MAX`] bytes, no control characters.
pub fn owner(value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::InvalidInput("owner must not be empty".into()));
    }
    if value.len() > OWNER_BYTES_MAX {
        return Err(Error::InvalidInput(format!(
            "owner is {} bytes; at most {OWNER_BYTES_MAX} allowed",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::InvalidInput(format!(
            "owner {value:?} contains control characters"
        )));
    }
    Ok(())
}

/// Check a free-text field: at most [`TEXT_BYTES_MAX`] bytes.
pub fn text(field: &str, value: &str) -> Result<()> {
    if value.len() > TEXT_BYTES_MAX {
        return Err(Error::InvalidInput(format!(
            "{field} is {} bytes; at most {TEXT_BYTES_MAX} allowed",
            value.len()
        )));
    }
    Ok(())
}

/// Check a required free-text field: non-blank and within [`TEXT_BYTES_MAX`].
pub fn required_text(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::InvalidInput(format!("{field} must not be empty")));
    }
    text(field, value)
}

/// Check metadata: a JSON object of at most [`METADATA_BYTES_MAX`] bytes serialised.
pub fn metadata(task_id: &str, value: &serde_json::Value) -> Result<()> {
    if !value.is_object() {
        return Err(Error::InvalidInput(format!(
            "metadata of task {task_id:?} must be a JSON object"
        )));
    }
    let size = serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > METADATA_BYTES_MAX {
        return Err(Error::InvalidInput(format!(
            "metadata of task {task_id:?} is {size} bytes serialised; at most {METADATA_BYTES_MAX} allowed"
        )));
    }
    Ok(())
}

/// Check a compensation as given by a caller.
pub fn new_compensation(c: &NewCompensation) -> Result<()> {
    required_text("compensation kind", &c.kind)?;
    required_text("compensation target", &c.target)?;
    text("compensation reason", &c.reason)
}

/// Check everything `create` accepts.
pub fn new_task(t: &NewTask) -> Result<()> {
    id("task_id", &t.task_id)?;
    id("saga_id", &t.saga_id)?;
    if let Some(q) = &t.queue {
        id("queue", q)?;
    }
    if let Some(b) = &t.branch {
        text("branch", b)?;
    }
    if let Some(w) = &t.worktree {
        text("worktree", w)?;
    }
    if let Some(m) = &t.metadata {
        metadata(&t.task_id, m)?;
    }
    if t.compensations.len() > COMPENSATIONS_MAX {
        return Err(Error::InvalidInput(format!(
            "task {:?} has {} compensations; at most {COMPENSATIONS_MAX} allowed",
            t.task_id,
            t.compensations.len()
        )));
    }
    t.compensations.iter().try_for_each(new_compensation)
}

/// The invariants of a stored task. A violation is `invalid_input` naming the
/// task and the broken rule; for a backend reading its own rows, a violation
/// means corruption.
pub fn check_invariants(t: &Task) -> Result<()> {
    let tid = &t.task_id;
    id("task_id", tid)?;
    id("saga_id", &t.saga_id)?;
    id("queue", &t.queue)?;
    metadata(tid, &t.metadata)?;
    if let Some(b) = &t.branch {
        text("branch", b)?;
    }
    if let Some(w) = &t.worktree {
        text("worktree", w)?;
    }
    if let Some(r) = &t.terminal_reason {
        text("terminal_reason", r)?;
    }
    if t.compensations.len() > COMPENSATIONS_MAX {
        return Err(Error::InvalidInput(format!(
            "task {tid:?} has {} compensations; at most {COMPENSATIONS_MAX} allowed",
            t.compensations.len()
        )));
    }
    for c in &t.compensations {
        required_text("compensation kind", &c.kind)?;
        required_text("compensation target", &c.target)?;
        text("compensation reason", &c.reason)?;
        if let Some(d) = &c.detail {
            text("compensation detail", d)?;
        }
    }
    if t.notes.len() > NOTES_MAX {
        return Err(Error::InvalidInput(format!(
            "task {tid:?} has {} notes; at most {NOTES_MAX} allowed",
            t.notes.len()
        )));
    }
    if t.state == TaskState::Failed && t.compensations.is_empty() {
        return Err(Error::LeaseConflict(format!(
            "task {tid:?} cannot be failed without a compensation record"
        )));
    }
    if let Some(o) = &t.lease_owner {
        owner(o)?;
    }
    let leased = t.lease_owner.is_some();
    let has_lease_fields = leased || t.lease_expires_at.is_some() || t.lease_acquired_at.is_some();
    let complete_lease = leased && t.lease_expires_at.is_some() && t.lease_acquired_at.is_some();
    if t.state == TaskState::Running && !complete_lease {
        return Err(Error::InvalidInput(format!(
            "task {tid:?} is running but has no complete lease (owner, acquired_at and expires_at are required)"
        )));
    }
    if matches!(t.state, TaskState::Planned | TaskState::Dispatched) && has_lease_fields {
        return Err(Error::InvalidInput(format!(
            "task {tid:?} is {} but carries lease fields; only a running (or terminal) task has a lease",
            t.state
        )));
    }
    if leased {
        if t.lease_token == 0 {
            return Err(Error::InvalidInput(format!(
                "task {tid:?} has a lease owner but lease_token 0; tokens start at 1"
            )));
        }
        if t.attempts == 0 {
            return Err(Error::InvalidInput(format!(
                "task {tid:?} has a lease owner but 0 attempts"
            )));
        }
    }
    if let (Some(a), Some(e)) = (t.lease_acquired_at, t.lease_expires_at) {
        if e <= a {
            return Err(Error::InvalidInput(format!(
                "task {tid:?} has lease_expires_at {e} not after lease_acquired_at {a}"
            )));
        }
    }
    if t.version == 0 {
        return Err(Error::InvalidInput(format!(
            "task {tid:?} has version 0; versions start at 1"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(id("task_id", "a.b_c:d/e-F9").is_ok());
        assert!(id("task_id", "").is_err());
        assert!(id("task_id", "has space").is_err());
        assert!(id("task_id", &"x".repeat(128)).is_ok());
        assert!(id("task_id", &"x".repeat(129)).is_err());
        assert!(id("task_id", "é").is_err());
    }

    #[test]
    fn metadata_must_be_small_object() {
        assert!(metadata("t", &serde_json::json!({})).is_ok());
        assert!(metadata("t", &serde_json::json!([1])).is_err());
        let big = "x".repeat(METADATA_BYTES_MAX);
        assert!(metadata("t", &serde_json::json!({ "k": big })).is_err());
    }
}
