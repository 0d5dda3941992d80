//! 4 processes × 8 threads `claim` from 10,000 tasks until none is left:
//! every task is leased exactly once, none is lost, nobody sees `busy`.
//!
//! Processes are this test binary re-executed (`claim_child`, ignored unless
//! the role env var says otherwise); each child prints one `CLAIMED` line per
//! leased task on stdout and the parent aggregates them.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Barrier};

use std::thread;
use std::time::Duration;

use common::{child, child_role, ctx};
use leasehold_core::{ClaimRequest, NewTask, Store, TaskState};
use leasehold_sqlite::{Durability, SqliteOptions, SqliteStore};
use rand::{Rng, SeedableRng};

const TASKS: usize = 10_000;
const PROCESSES: usize = 4;
const THREADS: usize = 8;
const ROLE: &str = "claim";

#[test]
fn claim_4_processes_8_threads_each_task_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claim.db");
    let started = std::time::Instant::now();
    {
        // Bulk setup with NORMAL durability: only the claims are under test.
        let opts = SqliteOptions {
            durability: Durability::Normal,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open_with(&path, opts).unwrap();
        for i in 0..TASKS {
            let mut t = NewTask::new(format!("t-{i:05}"), format!("s-{i:05}"));
            t.priority = Some((i % 7) as i32);
            store.create(t, &ctx(0)).unwrap();
        }
    }
    eprintln!("setup done in {:?}", started.elapsed());
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            child("claim_child", ROLE, &path, &p.to_string())
                .stdin(Stdio::piped())
                .spawn()
                .expect("spawn a claim child")
        })
        .collect();
    // Start gate: every child opens its 8 handles and says READY, then all are
    // released at once, so the processes really overlap.
    let mut readers: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().unwrap()))
        .collect();
    for (p, r) in readers.iter_mut().enumerate() {
        let mut line = String::new();
        while !line.contains("READY") {
            line.clear();
            assert!(
                r.read_line(&mut line).unwrap() > 0,
                "child {p} exited before READY"
            );
        }
    }
    for c in &mut children {
        c.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    let mut claimed: HashMap<String, String> = HashMap::new();
    let mut per_process = Vec::new();
    for (p, (c, mut r)) in children.into_iter().zip(readers).enumerate() {
        let mut stdout = String::new();
        r.read_to_string(&mut stdout).unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child {p} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let mut n = 0;
        // libtest prints `test claim_child ... ` without a newline before the
        // test body runs, so a marker may start mid-line.
        for line in stdout
            .lines()
            .filter_map(|l| l.find("CLAIMED ").map(|i| &l[i + "CLAIMED ".len()..]))
        {
            let (id, owner) = line.split_once(' ').expect("CLAIMED <id> <owner>");
            n += 1;
            if let Some(first) = claimed.insert(id.to_string(), owner.to_string()) {
                panic!("task {id} claimed twice: by {first} and by {owner}");
            }
        }
        per_process.push(n);
    }
    eprintln!(
        "claims per process {per_process:?}, {:?} in total",
        started.elapsed()
    );
    if claimed.len() != TASKS {
        let store = SqliteStore::open(&path).unwrap();
        let missing: Vec<_> = (0..TASKS)
            .map(|i| format!("t-{i:05}"))
            .filter(|id| !claimed.contains_key(id))
            .map(|id| store.require(&id).unwrap())
            .collect();
        panic!(
            "{} tasks claimed, expected {TASKS} (per process {per_process:?}); missing: {missing:#?}",
            claimed.len()
        );
    }
    // Every process took part: the race really was multi-process, and no
    // process starved behind the others' write locks (see `busy.rs`).
    assert!(
        per_process.iter().all(|n| *n > 0),
        "some process claimed nothing: {per_process:?}"
    );

    let store = SqliteStore::open(&path).unwrap();
    let counts = store.counts().unwrap();
    assert_eq!(counts[&TaskState::Running], TASKS as u64, "{counts:?}");
    for (id, owner) in &claimed {
        let t = store.require(id).unwrap();
        assert_eq!(t.lease_owner.as_ref(), Some(owner), "task {id}");
        assert_eq!(
            (t.lease_token, t.attempts),
            (1, 1),
            "task {id} leased more than once"
        );
    }
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

/// The child side of the test above; does nothing unless started by it.
#[test]
#[ignore = "child process of claim_4_processes_8_threads_each_task_exactly_once"]
fn claim_child() {
    let Some((path, arg)) = child_role(ROLE) else {
        return;
    };
    let p: u64 = arg.parse().unwrap();
    let gate = Arc::new(Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = SqliteStore::open(&path).unwrap();
            let gate = Arc::clone(&gate);
            thread::spawn(move || {
                let owner = format!("p{p}-t{t}");
                let mut rng = rand::rngs::StdRng::seed_from_u64(p * 100 + t as u64);
                let mut lines = Vec::new();
                gate.wait();
                loop {
                    let req = ClaimRequest {
                        owner: owner.clone(),
                        queues: vec![],
                        ttl: Duration::from_secs(3600),
                        limit: rng.gen_range(1..=10),
                        max_attempts: None,
                    };
                    let got = store
                        .claim(&req, &ctx(1))
                        .unwrap_or_else(|e| panic!("{owner}: claim failed: {e:?}"));
                    if got.is_empty() {
                        return lines;
                    }
                    for task in got {
                        assert_eq!(task.lease_owner.as_deref(), Some(owner.as_str()));
                        lines.push(format!("CLAIMED {} {owner}\n", task.task_id));
                    }
                }
            })
        })
        .collect();
    {
        let mut out = std::io::stdout().lock();
        out.write_all(b"\nREADY\n").unwrap();
        out.flush().unwrap();
    }
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    gate.wait();
    let lines: Vec<String> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let mut out = std::io::stdout().lock();
    for l in lines {
        out.write_all(l.as_bytes()).unwrap();
    }
    out.flush().unwrap();
}
