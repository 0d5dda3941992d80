//! Named limits. Every input that can grow has a ceiling, named with its unit
//! last, so that a bad or hostile caller gets a clear `invalid_input` instead
//! of an unbounded allocation.

/// Longest task, saga or queue id, in characters.
pub const ID_LEN_MAX: usize = 128;
/// Largest serialised `metadata` object, in bytes.
pub const METADATA_BYTES_MAX: usize = 64 * 1024;
/// Longest owner id, in bytes.
pub const OWNER_BYTES_MAX: usize = 256;
/// Longest free-text field (reason, note, detail, kind, target, branch, worktree), in bytes.
pub const TEXT_BYTES_MAX: usize = 16 * 1024;
/// Most compensation records a task may carry.
pub const COMPENSATIONS_MAX: usize = 256;
/// Most notes a task may carry.
pub const NOTES_MAX: usize = 1024;
/// Most tasks one `claim` call may lease.
pub const CLAIM_LIMIT_MAX: u32 = 1000;
/// Largest page a `list` call returns.
pub const LIST_LIMIT_MAX: u32 = 1000;
/// Page size used by `list` when the caller gives none.
pub const LIST_LIMIT_DEFAULT: u32 = 100;
/// Most queues one `claim` call may name.
pub const CLAIM_QUEUES_MAX: usize = 64;
/// Default `max_attempts` for `reclaim`: after this many leases a stale task is quarantined.
pub const RECLAIM_MAX_ATTEMPTS_DEFAULT: u32 = 5;
/// Most stale tasks one `reclaim` call handles; callers loop for more.
pub const RECLAIM_BATCH_MAX: u32 = 10_000;
/// Most items one batch call (`apply_many`, `heartbeat_many`, `complete_many`) may carry.
pub const BATCH_ITEMS_MAX: usize = 1000;
