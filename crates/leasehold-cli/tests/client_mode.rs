//! Client mode: the same command script run against a local SQLite file and
//! against a server (`--server`, `--server-token`) must print the same output
//! and exit with the same codes. The server is a real one on loopback with
//! `trust_client_clock`, so `--at` travels with each request and times match
//! to the microsecond.

use std::process::Command;
use std::sync::Arc;

use leasehold_core::memory::MemoryStore;
use leasehold_server::testing::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold");

/// (`--at`, arguments) of every step; run once locally, once remotely.
const SCRIPT: &[(&str, &[&str])] = &[
    (
        "2026-06-03T10:00:00Z",
        &[
            "create",
            "t1",
            "--saga",
            "s1",
            "--queue",
            "q",
            "--priority",
            "3",
        ],
    ),
    ("2026-06-03T10:00:00Z", &["create", "t1", "--saga", "s9"]),
    (
        "2026-06-03T10:00:01Z",
        &[
            "create",
            "t2",
            "--saga",
            "s2",
            "--queue",
            "q",
            "--compensation",
            "delete_branch",
            "b2",
            "undo",
        ],
    ),
    ("2026-06-03T10:00:02Z", &["dispatch", "t1"]),
    (
        "2026-06-03T10:00:03Z",
        &["lease", "t1", "--owner", "w1", "--ttl", "5m"],
    ),
    (
        "2026-06-03T10:00:04Z",
        &["lease", "t1", "--owner", "w2", "--ttl", "5m"],
    ),
    (
        "2026-06-03T10:01:00Z",
        &[
            "heartbeat",
            "t1",
            "--owner",
            "w1",
            "--token",
            "1",
            "--ttl",
            "10m",
        ],
    ),
    (
        "2026-06-03T10:01:00Z",
        &[
            "heartbeat",
            "t1",
            "--owner",
            "w1",
            "--token",
            "7",
            "--ttl",
            "10m",
        ],
    ),
    (
        "2026-06-03T10:01:01Z",
        &[
            "fail", "t1", "--reason", "broke", "--owner", "w1", "--token", "1",
        ],
    ),
    (
        "2026-06-03T10:01:02Z",
        &["claim", "--owner", "w3", "--ttl", "1m", "--queue", "q"],
    ),
    (
        "2026-06-03T10:01:03Z",
        &["annotate", "t1", "--note", "looked at it"],
    ),
    ("2026-06-03T10:30:00Z", &["stale"]),
    ("2026-06-03T10:30:00Z", &["reclaim", "--max-attempts", "1"]),
    (
        "2026-06-03T10:30:01Z",
        &[
            "complete", "t1", "--reason", "done", "--owner", "w1", "--token", "1",
        ],
    ),
    (
        "2026-06-03T10:30:02Z",
        &["lease", "t2", "--owner", "w1", "--ttl", "1m"],
    ),
    ("2026-06-03T10:30:03Z", &["get", "t1"]),
    ("2026-06-03T10:30:03Z", &["get", "nope"]),
    ("2026-06-03T10:30:03Z", &["history", "t1"]),
    ("2026-06-03T10:30:03Z", &["history", "t2"]),
    ("2026-06-03T10:30:03Z", &["list"]),
    ("2026-06-03T10:30:03Z", &["counts"]),
];

fn run(mode: &[&str], json: bool, at: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(mode)
        .args(["--at", at, "--actor", "tester"])
        .args(args)
        .env_remove("LEASEHOLD_DB")
        .env_remove("LEASEHOLD_SERVER")
        .env_remove("LEASEHOLD_TOKEN");
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("run leasehold");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn same_script(json: bool) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("local.db");
    let db = db.to_str().unwrap();
    let server = TestServer::start(Arc::new(MemoryStore::new()), true);
    let url = server.url();
    let token = server.operator_token();
    let local = ["--db", db];
    let remote = ["--server", url.as_str(), "--server-token", token.as_str()];
    let mut codes = Vec::new();
    for (at, args) in SCRIPT {
        let l = run(&local, json, at, args);
        let r = run(&remote, json, at, args);
        assert_eq!(
            r.0, l.0,
            "exit code of {args:?}: local stderr {:?}, remote stderr {:?}",
            l.2, r.2
        );
        assert_eq!(r.1, l.1, "stdout of {args:?}");
        assert_eq!(r.2, l.2, "stderr of {args:?}");
        codes.push(l.0);
    }
    // The script is only a test if it hit both successes and errors
    // (reclaim with --max-attempts 1 quarantines both tasks: hence the 7s).
    assert_eq!(
        codes,
        [0, 5, 0, 0, 0, 6, 0, 6, 6, 0, 0, 0, 0, 7, 7, 0, 4, 0, 0, 0, 0],
        "exit codes of the script"
    );
}

#[test]
fn client_mode_prints_the_same_tables_and_exit_codes_as_local() {
    same_script(false);
}

#[test]
fn client_mode_prints_the_same_json_as_local() {
    same_script(true);
}

#[test]
fn client_mode_errors_have_their_own_exit_codes() {
    // Unreachable server: unavailable (10). Bad token: unauthorized (9).
    // Malformed URL: invalid_input (3).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let (code, _, err) = run(
        &["--server", &dead],
        false,
        "2026-06-03T10:00:00Z",
        &["get", "t1"],
    );
    assert_eq!(code, 10, "{err}");
    let server = TestServer::start(Arc::new(MemoryStore::new()), false);
    let url = server.url();
    let (code, _, err) = run(
        &["--server", &url, "--server-token", "wrong"],
        false,
        "2026-06-03T10:00:00Z",
        &["get", "t1"],
    );
    assert_eq!(code, 9, "{err}");
    let (code, _, err) = run(
        &["--server", "not a url"],
        false,
        "2026-06-03T10:00:00Z",
        &["counts"],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not a URL"), "{err}");
}
