//! Concurrency for real: several OS processes (this test binary re-executed
//! as a child, driven by environment variables) and many connections working
//! on one PostgreSQL schema at once. Outcomes are counted, never timed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use leasehold_conformance::support::{at, ctx, ctx_as};
use leasehold_core::{ClaimRequest, Context, ErrorCode, Fence, NewTask, Store, Timestamp};
use leasehold_postgres::testing;
use leasehold_postgres::{PgOptions, PgStore};

/// Marker that starts every protocol line a child prints.
const MARK: &str = "@@LH ";

fn ms(n: i64) -> i64 {
    n * 1000
}

/// Create `n` tasks `p-00000…` through the store, in parallel.
fn create_tasks(url: &str, prefix: &str, n: usize, threads: usize) {
    thread::scope(|s| {
        for k in 0..threads {
            s.spawn(move || {
                let store = PgStore::connect_with(
                    url,
                    PgOptions {
                        pool_size: 1,
                        ..PgOptions::default()
                    },
                )
                .unwrap();
                for i in (k..n).step_by(threads) {
                    let id = format!("{prefix}-{i:05}");
                    store
                        .create(NewTask::new(id.clone(), format!("saga-{id}")), &ctx(0))
                        .unwrap();
                }
            });
        }
    });
}

/// A child process: this binary, running only [`child_process_worker`].
struct ChildProc {
    child: Child,
    lines: thread::JoinHandle<Vec<String>>,
}

fn spawn_child(role: &str, url: &str, env: &[(&str, String)]) -> ChildProc {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_process_worker",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("LH_PG_CHILD_ROLE", role)
    .env("LH_PG_CHILD_URL", url)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn the child test process");
    let stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let lines = thread::spawn(move || {
        let mut out = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(pos) = line.find(MARK) {
                let msg = line[pos + MARK.len()..].to_string();
                if msg == "READY" {
                    let _ = ready_tx.send(());
                } else {
                    out.push(msg);
                }
            }
        }
        out
    });
    ready_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("child reported READY");
    ChildProc { child, lines }
}

/// Release every child at once, then collect their protocol lines.
fn go_and_collect(mut children: Vec<ChildProc>) -> Vec<Vec<String>> {
    for c in &mut children {
        let stdin = c.child.stdin.as_mut().unwrap();
        stdin.write_all(b"GO\n").unwrap();
        stdin.flush().unwrap();
    }
    children
        .into_iter()
        .map(|mut c| {
            drop(c.child.stdin.take());
            let status = c.child.wait().unwrap();
            assert!(status.success(), "child failed: {status}");
            c.lines.join().unwrap()
        })
        .collect()
}

fn env_i64(name: &str) -> i64 {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} not set"))
        .parse()
        .unwrap()
}

/// The child side of the multi-process tests. Ignored in normal runs: the
/// parent tests start it with `--ignored --exact` and the role in the environment.
#[test]
#[ignore = "helper: runs only as a child process of the multi-process tests"]
fn child_process_worker() {
    let role = std::env::var("LH_PG_CHILD_ROLE").expect("run only as a child process");
    let url = std::env::var("LH_PG_CHILD_URL").unwrap();
    if role == "migrate" {
        // Connecting is the work: it creates or migrates the schema.
        println!("{MARK}READY");
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).unwrap();
        let store = PgStore::connect(&url).unwrap();
        println!("{MARK}MIGRATED {}", store.schema());
        return;
    }
    let threads = env_i64("LH_PG_CHILD_THREADS") as usize;
    let store = PgStore::connect_with(
        &url,
        PgOptions {
            pool_size: threads as u32,
            ..PgOptions::default()
        },
    )
    .unwrap();
    println!("{MARK}READY");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    assert_eq!(go.trim(), "GO");
    let me = std::process::id();
    let out = std::sync::Mutex::new(std::io::stdout());
    thread::scope(|s| {
        for k in 0..threads {
            let store = &store;
            let role = role.as_str();
            let out = &out;
            s.spawn(move || match role {
                "claim" => {
                    let at = Timestamp::from_micros(env_i64("LH_PG_CHILD_AT")).unwrap();
                    let req = ClaimRequest {
                        owner: format!("proc-{me}-{k}"),
                        queues: vec![],
                        ttl: Duration::from_secs(3600),
                        limit: 25,
                        max_attempts: None,
                    };
                    loop {
                        let got = store.claim(&req, &Context::new(at, "worker")).unwrap();
                        if got.is_empty() {
                            break;
                        }
                        let mut o = out.lock().unwrap();
                        for t in got {
                            writeln!(o, "{MARK}CLAIMED {} {}", t.task_id, t.lease_token).unwrap();
                        }
                    }
                }
                "reclaim" => {
                    let start = env_i64("LH_PG_CHILD_SWEEP_START");
                    let step = env_i64("LH_PG_CHILD_SWEEP_STEP");
                    let steps = env_i64("LH_PG_CHILD_SWEEP_STEPS");
                    let max = env_i64("LH_PG_CHILD_MAX_ATTEMPTS") as u32;
                    for i in 1..=steps {
                        let now = Timestamp::from_micros(start + i * step).unwrap();
                        let done = store.reclaim(max, &Context::new(now, "reaper")).unwrap();
                        let mut o = out.lock().unwrap();
                        for t in done {
                            writeln!(o, "{MARK}RECLAIMED {} {}", t.task_id, t.state).unwrap();
                        }
                    }
                }
                other => panic!("unknown role {other}"),
            });
        }
    });
}

#[test]
fn claim_20000_tasks_from_two_processes_with_16_connections_each() {
    let Some(cl) = testing::shared() else { return };
    let n = 20_000;
    let schema = testing::unique_schema("claim");
    let url = cl.url_with_schema(&schema);
    PgStore::connect(&url).unwrap();
    let started = std::time::Instant::now();
    create_tasks(&url, "c", n, 16);
    eprintln!("created {n} tasks in {:?}", started.elapsed());
    let env = [
        ("LH_PG_CHILD_THREADS", "16".to_string()),
        ("LH_PG_CHILD_AT", at(10).as_micros().to_string()),
    ];
    let children = vec![
        spawn_child("claim", &url, &env),
        spawn_child("claim", &url, &env),
    ];
    let started = std::time::Instant::now();
    let outputs = go_and_collect(children);
    eprintln!(
        "claimed {n} tasks from 2 processes in {:?}",
        started.elapsed()
    );
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for (i, lines) in outputs.iter().enumerate() {
        assert!(
            !lines.is_empty(),
            "child {i} claimed nothing: no real concurrency"
        );
        for l in lines {
            let mut parts = l.split(' ');
            assert_eq!(parts.next(), Some("CLAIMED"), "{l}");
            let id = parts.next().unwrap().to_string();
            assert_eq!(
                parts.next(),
                Some("1"),
                "first lease of {id} must carry token 1"
            );
            *seen.entry(id).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        twice.is_empty(),
        "leased more than once: {:?}",
        &twice[..twice.len().min(10)]
    );
    assert_eq!(seen.len(), n, "every task leased exactly once");
    let expected: BTreeSet<String> = (0..n).map(|i| format!("c-{i:05}")).collect();
    assert!(seen.keys().eq(expected.iter()));
    let mut c = cl.client();
    let row = c
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE state = 'running' AND lease_token = 1 AND attempts = 1), \
                 (SELECT count(*) FROM \"{schema}\".task_history WHERE kind = 'leased') \
                 FROM \"{schema}\".tasks"
            ),
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), n as i64);
    assert_eq!(
        row.get::<_, i64>(1),
        n as i64,
        "exactly one leased entry per task"
    );
}

#[test]
fn acquire_race_32_connections_200_rounds_on_one_task_exactly_one_winner() {
    let Some(cl) = testing::shared() else { return };
    let schema = testing::unique_schema("race");
    let url = cl.url_with_schema(&schema);
    let setup = PgStore::connect(&url).unwrap();
    setup
        .create(NewTask::new("hot", "saga-hot"), &ctx(0))
        .unwrap();
    let n = 32;
    let rounds = 200u64;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|k| {
            let barrier = barrier.clone();
            let url = url.clone();
            thread::spawn(move || {
                // One store per thread, one connection each: 32 connections.
                let store = PgStore::connect_with(
                    &url,
                    PgOptions {
                        pool_size: 1,
                        ..PgOptions::default()
                    },
                )
                .unwrap();
                let mut wins = Vec::new();
                for r in 0..rounds {
                    barrier.wait();
                    // Round r at T0+2r s; each lease lasts one second, so the
                    // next round races for an expired lease.
                    let secs = 2 * r as i64 + 1;
                    let owner = format!("w{k}");
                    match store.acquire_lease("hot", &owner, at(secs + 1), &ctx_as(secs, &owner)) {
                        Ok(t) => wins.push((r, t.lease_token)),
                        Err(e) => assert_eq!(e.code(), ErrorCode::LeaseConflict, "{e}"),
                    }
                }
                wins
            })
        })
        .collect();
    let mut per_round: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for h in handles {
        for (r, token) in h.join().unwrap() {
            per_round.entry(r).or_default().push(token);
        }
    }
    assert_eq!(per_round.len() as u64, rounds, "every round has a winner");
    for (r, tokens) in &per_round {
        assert_eq!(
            tokens,
            &vec![r + 1],
            "round {r}: exactly one winner, token r+1"
        );
    }
    let t = setup.require("hot").unwrap();
    assert_eq!((t.lease_token, t.attempts), (rounds, rounds as u32));
    let leased: Vec<u64> = setup
        .history("hot")
        .unwrap()
        .iter()
        .filter(|h| h.kind.as_str() == "leased")
        .map(|h| h.lease_token)
        .collect();
    assert_eq!(
        leased,
        (1..=rounds).collect::<Vec<_>>(),
        "tokens strictly increase, none reused"
    );
}

#[test]
fn reclaim_in_two_processes_at_once_never_doubles_or_skips() {
    let Some(cl) = testing::shared() else { return };
    let n = 3000usize;
    let schema = testing::unique_schema("reclaim");
    let url = cl.url_with_schema(&schema);
    PgStore::connect(&url).unwrap();
    create_tasks(&url, "r", n, 8);
    // Leases expire one millisecond apart; every third task has used up its
    // attempts (acquired, released, acquired again) and must be quarantined.
    let base = at(100).as_micros();
    thread::scope(|s| {
        for k in 0..8 {
            let url = &url;
            s.spawn(move || {
                let store = PgStore::connect_with(
                    url,
                    PgOptions {
                        pool_size: 1,
                        ..PgOptions::default()
                    },
                )
                .unwrap();
                for i in (k..n).step_by(8) {
                    let id = format!("r-{i:05}");
                    let expires = Timestamp::from_micros(base + ms(i as i64 + 1)).unwrap();
                    if i % 3 == 0 {
                        store.acquire_lease(&id, "first", expires, &ctx(1)).unwrap();
                        store
                            .release(&id, &Fence::new("first", 1), &ctx(2))
                            .unwrap();
                    }
                    store.acquire_lease(&id, "w", expires, &ctx(3)).unwrap();
                }
            });
        }
    });
    let steps = 40i64;
    let env = [
        ("LH_PG_CHILD_THREADS", "4".to_string()),
        ("LH_PG_CHILD_SWEEP_START", base.to_string()),
        (
            "LH_PG_CHILD_SWEEP_STEP",
            (ms(n as i64 + 1) / steps + 1).to_string(),
        ),
        ("LH_PG_CHILD_SWEEP_STEPS", steps.to_string()),
        ("LH_PG_CHILD_MAX_ATTEMPTS", "2".to_string()),
    ];
    let children = vec![
        spawn_child("reclaim", &url, &env),
        spawn_child("reclaim", &url, &env),
    ];
    let outputs = go_and_collect(children);
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for lines in &outputs {
        for l in lines {
            let mut parts = l.split(' ');
            assert_eq!(parts.next(), Some("RECLAIMED"), "{l}");
            let id = parts.next().unwrap().to_string();
            seen.entry(id)
                .or_default()
                .push(parts.next().unwrap().to_string());
        }
    }
    assert!(
        outputs.iter().all(|o| !o.is_empty()),
        "both processes must have reclaimed something: {:?}",
        outputs.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(seen.len(), n, "no stale task skipped");
    for (id, states) in &seen {
        let i: usize = id[2..].parse().unwrap();
        let want = if i % 3 == 0 {
            "quarantined"
        } else {
            "dispatched"
        };
        assert_eq!(
            states,
            &vec![want.to_string()],
            "task {id} reclaimed once, as {want}"
        );
    }
    let store = PgStore::connect(&url).unwrap();
    assert!(store
        .list_stale(Timestamp::from_micros(base + ms(n as i64 + 10)).unwrap())
        .unwrap()
        .is_empty());
    let mut c = cl.client();
    let bad = c
        .query(
            &format!(
                "SELECT t.task_id, count(h.id) FROM \"{schema}\".tasks t \
                 LEFT JOIN \"{schema}\".task_history h \
                   ON h.task_id = t.task_id AND h.kind IN ('expired', 'quarantined') \
                 GROUP BY t.task_id HAVING count(h.id) <> 1"
            ),
            &[],
        )
        .unwrap();
    assert!(
        bad.is_empty(),
        "{} tasks without exactly one expired/quarantined entry",
        bad.len()
    );
}

#[test]
fn migrations_from_four_processes_starting_at_once_apply_once() {
    let Some(cl) = testing::shared() else { return };
    let schema = testing::unique_schema("migproc");
    let url = cl.url_with_schema(&schema);
    let children = (0..4).map(|_| spawn_child("migrate", &url, &[])).collect();
    let outputs = go_and_collect(children);
    for lines in &outputs {
        assert_eq!(lines, &vec![format!("MIGRATED {schema}")]);
    }
    let mut c = cl.client();
    let versions: Vec<i32> = c
        .query(
            &format!("SELECT version FROM \"{schema}\".schema_migrations ORDER BY version"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        versions,
        (1..=leasehold_postgres::schema::SCHEMA_VERSION).collect::<Vec<_>>()
    );
}
