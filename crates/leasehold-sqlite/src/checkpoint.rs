//! WAL checkpoints off the commit path: a small background thread per store
//! handle copies the write-ahead log back into the database file, so that no
//! caller ever waits for a checkpoint.
//!
//! **Why.** SQLite's default (`wal_autocheckpoint = 1000` pages) runs a
//! checkpoint inside the `COMMIT` that pushes the log past 1000 pages. With
//! `synchronous=FULL` that checkpoint fsyncs the log, copies every page it
//! holds into the database file and fsyncs that file, all while the group
//! commit leader still holds the writer and has not answered its batch: the
//! whole batch, and everybody queued behind it, waits for it. On a disk that
//! other programs keep busy those fsyncs are the slowest thing SQLite does
//! (the heartbeat soak of `docs/reliability.md` measured them).
//!
//! **How.** The writer connection runs with `wal_autocheckpoint = 0`. After
//! every committed batch the group-commit leader tells the checkpointer (a
//! counter under a mutex, a condvar notify; it never waits for it). The
//! checkpointer sleeps until there has been a commit, lets commits accumulate
//! for whole [`CHECKPOINT_INTERVAL`]s until there are
//! [`CHECKPOINT_MIN_COMMITS`] of them or an interval passed without any, then
//! runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection. A PASSIVE
//! checkpoint takes no write lock: writers keep appending to the log while
//! it copies, and readers are never blocked. Once
//! everything is copied, the next write transaction starts the log over from
//! its beginning, and the writer's `journal_size_limit`
//! ([`WAL_SIZE_LIMIT_BYTES`]) truncates a log file that grew larger.
//!
//! **Bounded log under constant load.** The log only starts over if nothing
//! was appended after the checkpoint's start; under a steady stream of
//! commits a PASSIVE checkpoint always leaves the last few frames behind and
//! the log would grow forever (the test `checkpoint.rs` saw 185 MB without
//! the catch-up). So when a checkpoint finds the log longer than
//! [`WAL_RESTART_FRAMES`], the checkpointer *catches up*: it takes this handle's writer mutex (no commit of this handle can
//! append meanwhile) and checkpoints again, copying only the frames appended
//! during the first pass, and releases the writer. The next transaction
//! starts the log over. Writers wait only for that short second pass, and
//! only once per [`WAL_RESTART_FRAMES`] frames or so (SQLite's default did a
//! full checkpoint inside a commit every 1000).
//!
//! **Durability is unchanged.** A commit is durable once its log frames are
//! fsynced (`synchronous=FULL`), before it is acknowledged; a checkpoint only
//! moves already durable pages into the database file, syncing the log before
//! and the database after (its connection uses the store's `synchronous`),
//! and SQLite only reuses the log after that. A crash in the middle of a
//! checkpoint is recovered by SQLite like any other.
//!
//! If a checkpoint fails (the disk, a lock held by another process), it is
//! counted and tried again after the next interval; the log keeps every
//! commit meanwhile.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use leasehold_core::{Error, Result};
use rusqlite::Connection;

use crate::group::{trace_threshold, wall};
use crate::lock;

/// The store handle's writer connection, shared with the group commit.
pub(crate) type Writer = Arc<Mutex<Connection>>;

/// How long commits accumulate before the checkpointer copies them: at most
/// one checkpoint (two fsyncs) per interval, and none when nothing was written.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// Committed batches that make a checkpoint worth its two fsyncs: under a
/// light but steady trickle of writes the checkpointer waits for this many
/// (a few hundred pages of log, close to SQLite's own 1000-page cadence)
/// instead of syncing every interval; once the writes stop for a whole
/// interval it copies whatever is there.
pub const CHECKPOINT_MIN_COMMITS: u64 = 200;

/// `journal_size_limit` of the writer: a log file larger than this (after a
/// burst) is truncated to it when the log starts over. Well above the log's
/// steady size (restart threshold plus one interval of commits), because a
/// log that is cut back and regrows pays block allocation in every commit's
/// fsync: with an 8 MiB limit, `leasehold bench cycle --workers 1` went from
/// ≈ 600 µs to ≈ 1,150 µs per cycle (p50).
pub const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// A log longer than this many frames (pages; 8 MiB at 2 KiB pages) gets a
/// catch-up pass under the writer mutex after its checkpoint, so that the
/// log starts over (see the module docs).
pub const WAL_RESTART_FRAMES: u64 = 4096;

/// What the background checkpointer has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Checkpoints run (each a `PRAGMA wal_checkpoint(PASSIVE)`).
    pub checkpoints: u64,
    /// Log frames (pages) copied into the database file by them.
    pub frames: u64,
    /// Longest checkpoint, in microseconds.
    pub us_max: u64,
    /// Total time spent checkpointing, in microseconds.
    pub us_total: u64,
    /// Largest log seen at a checkpoint, in frames (pages).
    pub wal_frames_max: u64,
    /// Checkpoints that failed (retried after the next interval).
    pub errors: u64,
    /// Catch-up passes run under the writer mutex (the log had grown past
    /// [`WAL_RESTART_FRAMES`] under constant writes).
    pub catch_ups: u64,
    /// Longest time a catch-up pass held the writer, in microseconds.
    pub catch_up_us_max: u64,
}

#[derive(Default)]
struct State {
    /// Batches committed since the last checkpoint started.
    pending: u64,
    stop: bool,
    stats: CheckpointStats,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The background checkpointer of one store handle; stopped and joined on drop.
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Start checkpointing on `conn` (a connection of its own, on the
    /// store's file); `writer` is the handle's writer, held during catch-ups.
    pub(crate) fn start(conn: Connection, writer: Writer) -> Result<Checkpointer> {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("leasehold-sqlite-checkpoint".into())
            .spawn(move || run(&conn, &writer, &s))
            .map_err(|e| Error::Internal(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// A batch committed: the log grew. Never blocks on a checkpoint.
    pub(crate) fn committed(&self) {
        let mut st = lock(&self.shared.state);
        st.pending += 1;
        if st.pending == 1 {
            self.shared.wake.notify_one();
        }
    }

    /// What it has done so far.
    pub(crate) fn stats(&self) -> CheckpointStats {
        lock(&self.shared.state).stats
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            // The thread only waits on the condvar or runs one checkpoint.
            let _ = t.join();
        }
    }
}

fn run(conn: &Connection, writer: &Writer, shared: &Shared) {
    // The previous checkpoint's (log, copied): SQLite reports both for the
    // current log generation, so the frames a checkpoint copied are the
    // difference, unless the log started over in between.
    let mut last = (0u64, 0u64);
    loop {
        // Sleep until something was committed.
        let mut st = lock(&shared.state);
        while st.pending == 0 && !st.stop {
            st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.stop {
            return;
        }
        // Let commits accumulate, so one checkpoint covers many: wait whole
        // intervals until enough have come, or until one interval passed
        // without any (the writer went idle: copy what is there).
        let mut seen = st.pending;
        let mut until = Instant::now() + CHECKPOINT_INTERVAL;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if st.stop {
                break;
            }
            if left.is_zero() {
                if st.pending >= CHECKPOINT_MIN_COMMITS || st.pending == seen {
                    break;
                }
                seen = st.pending;
                until = Instant::now() + CHECKPOINT_INTERVAL;
                continue;
            }
            st = shared
                .wake
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if st.stop {
            return;
        }
        st.pending = 0;
        drop(st);
        let started = Instant::now();
        let mut outcome = checkpoint(conn);
        let mut held = None;
        if let Ok((log, _)) = outcome {
            // Even "everything copied" means only the frames that existed
            // when the pass began: under constant writes, newer ones are
            // always there and the log never starts over.
            if log >= WAL_RESTART_FRAMES {
                // Catch up with no commit of ours appending meanwhile.
                let w = lock(writer);
                let t = Instant::now();
                outcome = checkpoint(conn);
                held = Some(t.elapsed());
                drop(w);
            }
        }
        let took = started.elapsed();
        let mut st = lock(&shared.state);
        let s = &mut st.stats;
        if let Some(h) = held {
            s.catch_ups += 1;
            s.catch_up_us_max = s.catch_up_us_max.max(h.as_micros() as u64);
        }
        match outcome {
            Ok((log, copied)) => {
                s.checkpoints += 1;
                s.frames += if log >= last.0 && copied >= last.1 {
                    copied - last.1
                } else {
                    copied
                };
                last = (log, copied);
                s.wal_frames_max = s.wal_frames_max.max(log);
                s.us_max = s.us_max.max(took.as_micros() as u64);
                s.us_total += took.as_micros() as u64;
                if trace_threshold().is_some_and(|t| took >= t) {
                    eprintln!(
                        "leasehold-sqlite trace {:.6}: background checkpoint took {:.1} ms (log {log} frames, {copied} copied{})",
                        wall(),
                        took.as_secs_f64() * 1e3,
                        held.map_or(String::new(), |h| format!(
                            ", catch-up held the writer {:.1} ms",
                            h.as_secs_f64() * 1e3
                        ))
                    );
                }
            }
            Err(e) => {
                s.errors += 1;
                if trace_threshold().is_some() {
                    eprintln!(
                        "leasehold-sqlite trace {:.6}: background checkpoint failed: {e}",
                        wall()
                    );
                }
            }
        }
    }
}

/// One PASSIVE checkpoint: `(frames in the log, frames copied so far)`.
fn checkpoint(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    let (_busy, log, copied): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    Ok((log.max(0) as u64, copied.max(0) as u64))
}
