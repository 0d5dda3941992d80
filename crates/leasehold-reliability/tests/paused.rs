//! Paused worker: a lease holder (a real process) is stopped with `SIGSTOP`
//! past its TTL, a rival takes the lease, the first resumes: every heartbeat
//! and terminal write it sends after resuming is rejected (`forbidden` by the
//! server's worker rule, or `lease_conflict` by the fence check),
//! and the stored task still belongs to the rival. Quick: 20 episodes per
//! backend; long tier: 200.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leasehold_client::HttpStore;
use leasehold_core::{Context, HistoryKind, NewTask, Store, TaskState, Timestamp};
use leasehold_reliability::{procs, sizes};
use leasehold_server::testing::TestServer;

const TTL_MS: u64 = 300;

struct Tally {
    episodes: usize,
    post_resume_writes: usize,
    rejected: usize,
    fence_rejected: usize,
}

/// One episode; `false` when it is void: the holder lost its lease before it
/// was paused (a heartbeat delayed past the TTL on a starved machine, after
/// which it legitimately ends the task with its still-current fence).
fn episode(admin: &HttpStore, url: &str, worker_token: &str, n: usize, tally: &mut Tally) -> bool {
    let bin = Path::new(env!("CARGO_BIN_EXE_reliability-agent"));
    let id = format!("paused-{n}");
    let now = Timestamp::now();
    admin
        .create(
            NewTask::new(&id, format!("saga-{id}")),
            &Context::new(now, "setup"),
        )
        .unwrap();
    let mut agent = procs::agent(bin, url, worker_token, &id, "sleeper", TTL_MS, 100);
    let leased = agent
        .expect_line("LEASED ", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("agent did not lease {id}: {:?}", agent.seen));
    let token: u64 = leased.trim_start_matches("LEASED ").parse().unwrap();
    agent
        .expect_line("HB ", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("agent never heartbeated: {:?}", agent.seen));
    procs::signal(agent.pid(), "STOP");
    // Wait (bounded) until the lease has expired by the server's clock.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = admin.require(&id).unwrap();
        if t.lease_expires_at.is_some_and(|e| e <= Timestamp::now()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lease of {id} never expired: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let rival = loop {
        let at = Timestamp::now();
        match admin.acquire_lease(
            &id,
            "rival",
            at.checked_add_micros(60_000_000).unwrap(),
            &Context::new(at, "rival"),
        ) {
            Ok(t) => break t,
            Err(e) if e.code() == leasehold_core::ErrorCode::Terminal => {
                eprintln!(
                    "episode {n} void: the holder ended {id} before it was paused: {:?}",
                    agent.seen
                );
                return false;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "rival could not take {id}: {e}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    assert_eq!(
        rival.lease_token,
        token + 1,
        "rival's token must follow the sleeper's"
    );
    let resumed_at = Timestamp::now().as_micros();
    procs::signal(agent.pid(), "CONT");
    agent
        .expect_line("DONE", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("agent did not finish: {:?}", agent.seen));
    let lost_before_pause = agent.seen.iter().any(|l| {
        let p: Vec<&str> = l.split_whitespace().collect();
        p.first() == Some(&"HB")
            && p[1].parse::<i64>().is_ok_and(|sent| sent < resumed_at)
            && p[2] != "ok"
    });
    if lost_before_pause {
        eprintln!(
            "episode {n} void: the holder lost its lease before it was paused: {:?}",
            agent.seen
        );
        return false;
    }
    let mut hb_after = 0;
    for line in &agent.seen {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if !matches!(
            parts.first(),
            Some(&"HB") | Some(&"COMPLETE") | Some(&"FAIL")
        ) {
            continue;
        }
        let sent: i64 = parts[1].parse().unwrap();
        if sent < resumed_at {
            continue; // sent before the pause: may legitimately have succeeded
        }
        tally.post_resume_writes += 1;
        if parts[0] == "HB" {
            hb_after += 1;
        }
        // A worker token writing to a task leased by someone else is refused
        // by the server's worker rule (`forbidden`) before the store's fence
        // check (`lease_conflict`); either is a rejection that changed nothing
        // (checked on the stored task below).
        if parts[2] == "lease_conflict" || parts[2] == "forbidden" {
            tally.rejected += 1;
            if parts[2] == "lease_conflict" {
                tally.fence_rejected += 1;
            }
        } else {
            panic!(
                "episode {n}: a write after resuming was not rejected: {line} (all: {:?})",
                agent.seen
            );
        }
    }
    assert!(
        hb_after >= 1,
        "no heartbeat after resuming: {:?}",
        agent.seen
    );
    let t = admin.require(&id).unwrap();
    assert_eq!(t.state, TaskState::Running, "{t:?}");
    assert_eq!(t.lease_owner.as_deref(), Some("rival"));
    assert_eq!(t.lease_token, token + 1);
    let hist = admin.history(&id).unwrap();
    assert!(
        !hist
            .iter()
            .any(|h| matches!(h.kind, HistoryKind::Completed | HistoryKind::Failed)),
        "{hist:?}"
    );
    tally.episodes += 1;
    true
}

fn run(store: Arc<dyn Store>, backend: &str) {
    let server = TestServer::start(store, false);
    let admin = HttpStore::new(&server.url(), &server.operator_token()).unwrap();
    // The sleeper is a real worker: a worker-role token named like its owner.
    let worker_token = server.add_token("sleeper", leasehold_server::Role::Worker);
    let mut tally = Tally {
        episodes: 0,
        post_resume_writes: 0,
        rejected: 0,
        fence_rejected: 0,
    };
    let n = sizes::paused_episodes();
    let mut voids = 0;
    let mut i = 0;
    while tally.episodes < n {
        // Alternate: a worker token (refused by the server's worker rule) and
        // an operator token (so the store's own fence check must refuse).
        let token = if i % 2 == 0 {
            worker_token.clone()
        } else {
            server.operator_token()
        };
        if !episode(&admin, &server.url(), &token, i, &mut tally) {
            voids += 1;
            assert!(
                voids <= n / 10 + 1,
                "{voids} void episodes: the machine is too starved for this test"
            );
        }
        i += 1;
    }
    eprintln!(
        "paused worker on {backend}: {} episodes ({voids} void), {} writes after resuming, {} rejected ({} by the fence check)",
        tally.episodes, tally.post_resume_writes, tally.rejected, tally.fence_rejected
    );
    assert!(
        tally.fence_rejected >= n,
        "the store's fence check was not exercised"
    );
    assert_eq!(tally.episodes, n);
    assert!(tally.post_resume_writes >= 3 * n);
    assert_eq!(tally.rejected, tally.post_resume_writes);
}

#[test]
fn paused_worker_process_on_sqlite_has_every_late_write_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = leasehold_sqlite::SqliteStore::open(dir.path().join("p.db")).unwrap();
    run(Arc::new(store), "sqlite");
}

#[test]
fn paused_worker_process_on_postgres_has_every_late_write_rejected() {
    let Some(cl) = leasehold_postgres::testing::shared() else {
        return;
    };
    run(Arc::new(cl.fresh_store()), "postgres");
}
