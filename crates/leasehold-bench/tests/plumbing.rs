//! Every workload at tiny sizes, so the bench plumbing cannot rot. These
//! check counts and report fields, never speed.

use std::sync::Arc;

use leasehold_bench::{run, Options, Report, Target, Workload};
use leasehold_core::{ErrorCode, Store};
use leasehold_sqlite::Durability;

fn tiny(w: Workload, tasks: u64, workers: usize) -> Options {
    Options {
        tasks,
        workers,
        durability: Durability::Normal,
        calls: 7,
        ..Options::new(w)
    }
}

fn check(r: &Report, workload: &str, ops: u64) {
    assert_eq!(r.workload, workload);
    assert_eq!(r.ops, ops, "{r:?}");
    assert!(r.ops_per_sec > 0.0 && r.seconds > 0.0, "{r:?}");
    assert!(r.p50_us <= r.p99_us, "{r:?}");
    assert!(
        (r.writes_per_sec - r.ops_per_sec * r.writes_per_op as f64).abs() < 1e-6,
        "{r:?}"
    );
    // The JSON has the fields the docs and chart script read.
    let v = serde_json::to_value(r).unwrap();
    for k in [
        "ops_per_sec",
        "p50_us",
        "p99_us",
        "workers",
        "tasks",
        "durability",
        "backend",
    ] {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
}

#[test]
fn store_workloads_on_sqlite_do_exactly_their_work() {
    let r = run(&tiny(Workload::Create, 60, 4)).unwrap();
    check(&r, "create", 60);
    assert_eq!(
        (r.backend.as_str(), r.durability.as_str()),
        ("sqlite", "normal")
    );
    assert!(r.transactions.unwrap() >= 1);
    let r = run(&tiny(Workload::Cycle, 50, 4)).unwrap();
    check(&r, "cycle", 50);
    assert_eq!(r.writes_per_op, 3);
    if cfg!(target_os = "linux") {
        assert!(r.cpu_seconds.is_some_and(|c| c >= 0.0), "{r:?}");
    }
    let r = run(&tiny(Workload::Heartbeat, 45, 4)).unwrap();
    check(&r, "heartbeat", 45);
    let r = run(&tiny(Workload::Reclaim, 30, 2)).unwrap();
    check(&r, "reclaim", 30);
    let r = run(&tiny(Workload::StaleScan, 1_100, 2)).unwrap();
    check(&r, "stale-scan", 7);
    // The scans write nothing: the setup's transactions are not counted.
    assert_eq!(r.transactions, Some(0), "{r:?}");
}

#[test]
fn batched_cycle_and_heartbeat_count_every_item() {
    // 53 tasks in claims of up to 7: the last rounds are partial, and every
    // task is still cycled exactly once (the run checks the ids).
    let r = run(&Options {
        batch: 7,
        ..tiny(Workload::Cycle, 53, 3)
    })
    .unwrap();
    check(&r, "cycle", 53);
    assert_eq!((r.batch, r.writes_per_op), (7, 3));
    // 4 workers × 5 held leases; 47 heartbeats = shares 12, 12, 12, 11,
    // sent in calls of 5, 5, 2 (and 5, 5, 1).
    let r = run(&Options {
        batch: 5,
        ..tiny(Workload::Heartbeat, 47, 4)
    })
    .unwrap();
    check(&r, "heartbeat", 47);
    assert_eq!(r.batch, 5);
}

#[test]
fn baseline_sqlite_one_per_transaction_and_batched() {
    let r = run(&tiny(Workload::BaselineSqlite, 40, 8)).unwrap();
    check(&r, "baseline-sqlite", 40);
    assert_eq!(
        (r.workers, r.batch, r.backend.as_str()),
        (1, 1, "sqlite-raw")
    );
    let r = run(&Options {
        batch: 10,
        durability: Durability::Full,
        ..tiny(Workload::BaselineSqlite, 45, 1)
    })
    .unwrap();
    check(&r, "baseline-sqlite", 45);
    assert_eq!((r.batch, r.durability.as_str()), (10, "full"));
    let r = run(&Options {
        bare: true,
        batch: 7,
        ..tiny(Workload::BaselineSqlite, 30, 1)
    })
    .unwrap();
    check(&r, "baseline-sqlite", 30);
    assert!(r.bare);
}

#[test]
fn bad_options_are_invalid_input_naming_the_flag() {
    for (o, flag) in [
        (tiny(Workload::Cycle, 0, 1), "--tasks"),
        (tiny(Workload::Cycle, 10, 0), "--workers"),
        (
            Options {
                batch: 5,
                ..tiny(Workload::Create, 10, 1)
            },
            "--batch",
        ),
        (
            Options {
                batch: 1001,
                ..tiny(Workload::Cycle, 10, 1)
            },
            "--batch",
        ),
        (
            Options {
                bare: true,
                ..tiny(Workload::Heartbeat, 10, 1)
            },
            "--bare",
        ),
        (
            Options {
                blocking_client: true,
                ..tiny(Workload::Cycle, 10, 1)
            },
            "--blocking-client",
        ),
        (tiny(Workload::StaleScan, 10, 1), "stale-scan"),
    ] {
        let e = run(&o).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{e}");
        assert!(e.message().contains(flag), "{e}");
    }
    let e = Workload::parse("nope").unwrap_err();
    assert!(e.message().contains("stale-scan"), "{e}");
    assert_eq!(
        Workload::parse("baseline-postgres").unwrap(),
        Workload::BaselinePostgres
    );
    // An existing database is refused, not overwritten.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.db");
    std::fs::write(&p, b"keep me").unwrap();
    let o = Options {
        target: Target::Sqlite(Some(p.clone())),
        ..tiny(Workload::Create, 5, 1)
    };
    assert_eq!(run(&o).unwrap_err().code(), ErrorCode::InvalidInput);
    assert_eq!(std::fs::read(&p).unwrap(), b"keep me");
}

#[test]
fn target_from_flags() {
    assert_eq!(Target::from_flags(None, None, None), Target::Sqlite(None));
    assert_eq!(
        Target::from_flags(Some("postgres://u@h/db"), None, None).kind(),
        "postgres"
    );
    assert_eq!(
        Target::from_flags(Some("x.db"), Some("http://127.0.0.1:1"), Some("t")),
        Target::Server {
            url: "http://127.0.0.1:1".into(),
            token: "t".into()
        }
    );
}

/// A loopback server on a fresh SQLite file, and the options to reach it.
fn start_server() -> (
    tempfile::TempDir,
    Arc<dyn Store>,
    leasehold_server::testing::TestServer,
) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(leasehold_sqlite::SqliteStore::open(dir.path().join("s.db")).unwrap());
    let server = leasehold_server::testing::TestServer::start(store.clone(), false);
    (dir, store, server)
}

fn via(server: &leasehold_server::testing::TestServer, o: Options) -> Options {
    Options {
        target: Target::Server {
            url: server.url(),
            token: server.operator_token(),
        },
        ..o
    }
}

/// `leasehold_http_requests_total` for one POST route (all statuses).
fn requests(server: &leasehold_server::testing::TestServer, route: &str) -> u64 {
    let text = reqwest::blocking::Client::new()
        .get(format!("{}/metrics", server.url()))
        .bearer_auth(server.operator_token())
        .send()
        .unwrap()
        .text()
        .unwrap();
    let prefix = format!("leasehold_http_requests_total{{method=\"POST\",route=\"{route}\",");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

const CLAIM: &str = "/v1/claim";
const HEARTBEAT: &str = "/v1/tasks/{id}/heartbeat";
const COMPLETE: &str = "/v1/tasks/{id}/complete";
const HEARTBEATS: &str = "/v1/heartbeats";
const COMPLETIONS: &str = "/v1/completions";

/// The cycle through a real server over HTTP (loopback), with the async
/// driver and with the blocking one: the same three requests per task,
/// plus one empty claim per worker at the end, whichever drives them.
#[test]
fn cycle_through_the_server_sends_three_requests_per_task() {
    for blocking_client in [false, true] {
        let (_dir, store, server) = start_server();
        let o = via(
            &server,
            Options {
                blocking_client,
                ..tiny(Workload::Cycle, 20, 4)
            },
        );
        let r = run(&o).unwrap();
        check(&r, "cycle", 20);
        assert_eq!((r.backend.as_str(), r.durability.as_str()), ("http", "n/a"));
        let driver = if blocking_client { "blocking" } else { "async" };
        assert_eq!(r.client.as_deref(), Some(driver));
        let c = store.counts().unwrap();
        assert_eq!(c[&leasehold_core::TaskState::Completed], 20);
        let sent: Vec<u64> = [CLAIM, HEARTBEAT, COMPLETE, HEARTBEATS, COMPLETIONS]
            .iter()
            .map(|route| requests(&server, route))
            .collect();
        assert_eq!(
            sent,
            [24, 20, 20, 0, 0],
            "blocking_client {blocking_client}"
        );
    }
}

/// `--batch` through the server uses the batch routes: one heartbeats and
/// one completions request per claim that found tasks.
#[test]
fn batched_cycle_and_heartbeat_through_the_server_use_the_batch_routes() {
    let (_dir, store, server) = start_server();
    let r = run(&via(
        &server,
        Options {
            batch: 6,
            ..tiny(Workload::Cycle, 40, 3)
        },
    ))
    .unwrap();
    check(&r, "cycle", 40);
    assert_eq!(
        store.counts().unwrap()[&leasehold_core::TaskState::Completed],
        40
    );
    let claims = requests(&server, CLAIM);
    let rounds = requests(&server, HEARTBEATS);
    // At least ceil(40 / 6) rounds; each worker ends with one empty claim.
    assert!(rounds >= 7, "{rounds}");
    assert_eq!(claims, rounds + 3);
    assert_eq!(requests(&server, COMPLETIONS), rounds);
    assert_eq!(
        requests(&server, HEARTBEAT) + requests(&server, COMPLETE),
        0
    );

    let (_dir, _store, server) = start_server();
    let r = run(&via(
        &server,
        Options {
            batch: 5,
            ..tiny(Workload::Heartbeat, 47, 4)
        },
    ))
    .unwrap();
    check(&r, "heartbeat", 47);
    assert_eq!(r.client.as_deref(), Some("async"));
    // Shares 12, 12, 12, 11 in calls of 5: 3 calls each.
    assert_eq!(requests(&server, HEARTBEATS), 12);
    assert_eq!(requests(&server, HEARTBEAT), 0);
    // Other workloads drive a server through the blocking HttpStore.
    let r = run(&via(&server, tiny(Workload::Create, 5, 2))).unwrap();
    check(&r, "create", 5);
    assert_eq!(r.client.as_deref(), Some("blocking"));
}

/// Both PostgreSQL paths on a throwaway cluster, when the machine has
/// PostgreSQL (skipped otherwise, failing under CI like the backend's tests).
#[test]
fn postgres_cycle_and_baseline() {
    let Some(cluster) = leasehold_postgres::testing::shared() else {
        return;
    };
    let o = Options {
        target: Target::Postgres(cluster.url()),
        ..tiny(Workload::Cycle, 30, 4)
    };
    let r = run(&o).unwrap();
    check(&r, "cycle", 30);
    assert_eq!(r.backend, "postgres");
    let o = Options {
        target: Target::Postgres(cluster.url()),
        ..tiny(Workload::BaselinePostgres, 40, 4)
    };
    let r = run(&o).unwrap();
    check(&r, "baseline-postgres", 40);
    assert_eq!(r.backend, "postgres-raw");
}
