//! Rescue timing through the server's own reaper (a separate server process):
//! a worker process killed with `SIGKILL` while holding a lease has its task
//! reclaimed (back to `dispatched` by actor `reaper`) within
//! TTL + 2 × reaper interval, in every trial; and workers that keep
//! heartbeating are never reclaimed during a soak. Quick: 20 trials, 10
//! workers for 5 s; long tier: 200 trials, 50 workers for 10 minutes.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use leasehold_client::HttpStore;
use leasehold_core::{Context, HistoryKind, NewTask, Store, TaskState, Timestamp};
use leasehold_reliability::procs::{self, ServerProc};
use leasehold_reliability::sizes;
use rand::{Rng, SeedableRng};

const TTL_MS: u64 = 300;

/// Whether an agent's `HB <sent> <verdict> <latency>` line is a success.
fn hb_ok(line: &str) -> bool {
    line.split_whitespace().nth(2) == Some("ok")
}
const REAPER_MS: u64 = 100;

fn server(db: &str) -> ServerProc {
    ServerProc::start(
        Path::new(env!("CARGO_BIN_EXE_reliability-server")),
        db,
        REAPER_MS,
        &HashMap::new(),
    )
}

fn killed_worker_is_rescued_in_time(db: &str, backend: &str) {
    let srv = server(db);
    let admin = HttpStore::new(&srv.url, "").unwrap();
    let agent_bin = Path::new(env!("CARGO_BIN_EXE_reliability-agent"));
    let bound = Duration::from_millis(TTL_MS + 2 * REAPER_MS);
    let mut rng = rand::rngs::StdRng::seed_from_u64(sizes::seed(11));
    let trials = sizes::rescue_trials();
    let mut times = Vec::new();
    for i in 0..trials {
        let id = format!("rescue-{i}");
        let now = Timestamp::now();
        admin
            .create(
                NewTask::new(&id, format!("saga-{id}")),
                &Context::new(now, "setup"),
            )
            .unwrap();
        let mut agent = procs::agent(agent_bin, &srv.url, "", &id, "doomed", TTL_MS, 100);
        agent
            .expect_line("HB ", Duration::from_secs(20))
            .unwrap_or_else(|| panic!("agent never heartbeated: {:?}", agent.seen));
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..100)));
        let killed = Instant::now();
        agent.kill9();
        let deadline = killed + Duration::from_secs(10);
        let t = loop {
            let t = admin.require(&id).unwrap();
            if t.state != TaskState::Running {
                break t;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} was never reclaimed: {t:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        let took = killed.elapsed();
        assert_eq!(t.state, TaskState::Dispatched, "{t:?}");
        let hist = admin.history(&id).unwrap();
        let last = hist.last().unwrap();
        assert_eq!(last.kind, HistoryKind::Expired, "{hist:?}");
        assert_eq!(last.actor, "reaper");
        times.push(took);
    }
    times.sort();
    let late = times.iter().filter(|t| **t > bound).count();
    eprintln!(
        "rescue on {backend}: {trials} trials, median {:?}, max {:?}, bound {:?}, {} within bound",
        times[times.len() / 2],
        times[times.len() - 1],
        bound,
        trials - late
    );
    assert_eq!(
        late, 0,
        "{late} of {trials} rescues took longer than {bound:?}: {times:?}"
    );
}

fn heartbeating_workers_are_never_reclaimed(db: &str, backend: &str) {
    let srv = server(db);
    let admin = HttpStore::new(&srv.url, "").unwrap();
    let agent_bin = Path::new(env!("CARGO_BIN_EXE_reliability-agent"));
    let (workers, soak) = sizes::heartbeat_soak();
    // TTL 1 s, heartbeat every 200 ms: four heartbeats of slack per TTL even
    // with a loaded debug server on 2 cores.
    let mut agents = Vec::new();
    for i in 0..workers {
        let id = format!("steady-{i}");
        let now = Timestamp::now();
        admin
            .create(
                NewTask::new(&id, format!("saga-{id}")),
                &Context::new(now, "setup"),
            )
            .unwrap();
        let mut a = procs::agent(
            agent_bin,
            &srv.url,
            "",
            &id,
            &format!("steady{i}"),
            1000,
            200,
        );
        a.expect_line("LEASED ", Duration::from_secs(20))
            .unwrap_or_else(|| panic!("agent {i} did not lease: {:?}", a.seen));
        agents.push((id, a));
    }
    let until = Instant::now() + soak;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        for (id, a) in agents.iter_mut() {
            a.drain(Duration::from_millis(0));
            assert!(
                !a.seen.iter().any(|l| l.starts_with("HB ") && !hb_ok(l)),
                "heartbeating worker on {id} was refused: {:?}",
                a.seen
            );
        }
    }
    let mut heartbeats = 0;
    let mut latencies: Vec<u64> = Vec::new();
    for (id, a) in agents.iter_mut() {
        a.kill9();
        a.drain(Duration::from_millis(50));
        heartbeats += a.seen.iter().filter(|l| l.starts_with("HB ")).count();
        for l in a.seen.iter().filter(|l| l.starts_with("HB ")) {
            let us: u64 = l
                .split_whitespace()
                .nth(3)
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            latencies.push(us);
        }
        assert!(
            a.seen.iter().all(|l| !l.starts_with("HB ") || hb_ok(l)),
            "{:?}",
            a.seen
        );
        let hist = admin.history(id).unwrap();
        assert!(
            !hist.iter().any(|h| h.kind == HistoryKind::Expired),
            "heartbeating worker's task {id} was reclaimed: {hist:?}"
        );
    }
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    eprintln!(
        "heartbeat soak on {backend}: {workers} workers for {soak:?}, {heartbeats} heartbeats (latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms), 0 reclaimed",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    assert!(
        heartbeats >= workers * (soak.as_millis() as usize / 400),
        "too few heartbeats: {heartbeats}"
    );
}

#[test]
fn killed_worker_process_on_sqlite_is_rescued_within_ttl_plus_two_reaper_intervals() {
    let dir = tempfile::tempdir().unwrap();
    killed_worker_is_rescued_in_time(dir.path().join("r.db").to_str().unwrap(), "sqlite");
}

#[test]
fn killed_worker_process_on_postgres_is_rescued_within_ttl_plus_two_reaper_intervals() {
    let Some(cl) = leasehold_postgres::testing::shared() else {
        return;
    };
    let url = cl.url_with_schema(&leasehold_postgres::testing::unique_schema("rescue"));
    killed_worker_is_rescued_in_time(&url, "postgres");
}

#[test]
fn heartbeating_worker_processes_on_sqlite_are_never_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    heartbeating_workers_are_never_reclaimed(dir.path().join("h.db").to_str().unwrap(), "sqlite");
}

#[test]
fn heartbeating_worker_processes_on_postgres_are_never_reclaimed() {
    let Some(cl) = leasehold_postgres::testing::shared() else {
        return;
    };
    let url = cl.url_with_schema(&leasehold_postgres::testing::unique_schema("steady"));
    heartbeating_workers_are_never_reclaimed(&url, "postgres");
}
