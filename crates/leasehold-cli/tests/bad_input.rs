//! Bad input of every kind gets its documented exit code, a clear message on
//! stderr, nothing on stdout, and changes nothing: the whole store (every
//! task, every history, the counts) is compared before and after each call.

mod common;

use common::*;

/// A store with one task of each interesting kind, at T0:
/// `busy` leased by w1 (token 1, until T5) with a compensation,
/// `idle` planned without compensations, `done` completed.
fn fixture() -> Env {
    let env = Env::new();
    env.ok(
        T0,
        &[
            "create",
            "busy",
            "--saga",
            "s-busy",
            "--compensation",
            "delete_branch",
            "b",
            "cleanup",
        ],
    );
    env.ok(T0, &["create", "idle", "--saga", "s-idle"]);
    env.ok(T0, &["create", "done", "--saga", "s-done"]);
    env.ok(T0, &["lease", "busy", "--owner", "w1", "--ttl", "5m"]);
    env.ok(T0, &["complete", "done", "--reason", "merged"]);
    env
}

/// Run each case at T1 (while `busy`'s lease is active); check exit code,
/// error code and that the store is unchanged.
fn check(env: &Env, cases: &[(&[&str], i32, &str)]) {
    let before = env.snapshot();
    for (args, exit, code) in cases {
        let msg = env.err(T1, args, *exit, code);
        assert!(!msg.is_empty(), "{args:?}: empty message");
        assert_eq!(env.snapshot(), before, "{args:?} changed the store");
    }
}

#[test]
fn invalid_values_exit_3() {
    let env = fixture();
    let long_id = "x".repeat(129);
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["create", "has space", "--saga", "s-new"],
            3,
            "invalid_input",
        ),
        (
            &["create", "ok-id", "--saga", "bad saga"],
            3,
            "invalid_input",
        ),
        (
            &["create", &long_id, "--saga", "s-long"],
            3,
            "invalid_input",
        ),
        (&["create", "", "--saga", "s-empty"], 3, "invalid_input"),
        (
            &[
                "create",
                "new",
                "--saga",
                "s-new",
                "--queue",
                "no/space ok?",
            ],
            3,
            "invalid_input",
        ),
        (
            &["create", "new", "--saga", "s-new", "--metadata", "{"],
            3,
            "invalid_input",
        ),
        (
            &["create", "new", "--saga", "s-new", "--metadata", "[1, 2]"],
            3,
            "invalid_input",
        ),
        (
            &[
                "create",
                "new",
                "--saga",
                "s-new",
                "--compensation",
                "",
                "t",
                "r",
            ],
            3,
            "invalid_input",
        ),
        (
            &["lease", "idle", "--owner", "w2", "--ttl", "0s"],
            3,
            "invalid_input",
        ),
        (
            &["lease", "idle", "--owner", "w2", "--ttl", "five minutes"],
            3,
            "invalid_input",
        ),
        (
            &["lease", "idle", "--owner", "w2", "--ttl", "10000000y"],
            3,
            "invalid_input",
        ),
        (
            &["lease", "idle", "--owner", "w2", "--expires-at", T0],
            3,
            "invalid_input",
        ),
        (
            &[
                "lease",
                "idle",
                "--owner",
                "w2",
                "--expires-at",
                "2026-06-03T11:00:00",
            ],
            3,
            "invalid_input",
        ),
        (
            &["lease", "idle", "--owner", " ", "--ttl", "5m"],
            3,
            "invalid_input",
        ),
        (
            &[
                "heartbeat",
                "busy",
                "--owner",
                "w1",
                "--token",
                "1",
                "--expires-at",
                "tomorrow",
            ],
            3,
            "invalid_input",
        ),
        (&["list", "--state", "sleeping"], 3, "invalid_input"),
        (&["list", "--limit", "5000"], 3, "invalid_input"),
        (&["list", "--cursor", "not-a-cursor"], 3, "invalid_input"),
        (
            &["claim", "--owner", "w2", "--ttl", "5m", "--limit", "0"],
            3,
            "invalid_input",
        ),
        (
            &[
                "claim",
                "--owner",
                "w2",
                "--ttl",
                "5m",
                "--queue",
                "bad queue",
            ],
            3,
            "invalid_input",
        ),
        (
            &["claim", "--owner", "w2", "--ttl", "nope"],
            3,
            "invalid_input",
        ),
        (
            &["quarantine", "idle", "--reason", "  "],
            3,
            "invalid_input",
        ),
        (&["fail", "idle", "--reason", ""], 3, "invalid_input"),
        (&["annotate", "idle", "--note", ""], 3, "invalid_input"),
        (
            &["compensation", "busy", "7", "--status", "applied"],
            3,
            "invalid_input",
        ),
        (
            &["compensation", "busy", "0", "--status", "done"],
            3,
            "invalid_input",
        ),
        (
            &["compensation", "busy", "0", "--status", "pending"],
            3,
            "invalid_input",
        ),
        (&["reclaim", "--max-attempts", "0"], 3, "invalid_input"),
    ];
    check(&env, cases);
}

#[test]
fn bad_global_values_exit_3() {
    let env = fixture();
    let before = env.snapshot();
    for at in ["2026-06-03T10:01:00", "2026-06-03", "now", ""] {
        let r = env.run(
            at,
            &["--json", "lease", "idle", "--owner", "w2", "--ttl", "5m"],
        );
        assert_eq!(r.code, 3, "--at {at:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("invalid_input") && r.stderr.contains("--at"),
            "{}",
            r.stderr
        );
    }
    let r = env.raw(&["--db", "", "counts"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.starts_with("error: --db"), "{}", r.stderr);
    let r = env.raw(&[
        "--db",
        env.db().to_str().unwrap(),
        "--actor",
        " ",
        "--at",
        T1,
        "dispatch",
        "idle",
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(env.snapshot(), before);
}

#[test]
fn missing_things_exit_4() {
    let env = fixture();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["get", "ghost"], 4, "not_found"),
        (&["history", "ghost"], 4, "not_found"),
        (&["dispatch", "ghost"], 4, "not_found"),
        (
            &["lease", "ghost", "--owner", "w", "--ttl", "5m"],
            4,
            "not_found",
        ),
        (
            &[
                "heartbeat",
                "ghost",
                "--owner",
                "w",
                "--token",
                "1",
                "--ttl",
                "5m",
            ],
            4,
            "not_found",
        ),
        (
            &["release", "ghost", "--owner", "w", "--token", "1"],
            4,
            "not_found",
        ),
        (&["complete", "ghost"], 4, "not_found"),
        (
            &[
                "fail",
                "ghost",
                "--reason",
                "r",
                "--compensation",
                "k",
                "t",
                "r",
            ],
            4,
            "not_found",
        ),
        (&["annotate", "ghost", "--note", "n"], 4, "not_found"),
        (
            &["compensation", "ghost", "0", "--status", "applied"],
            4,
            "not_found",
        ),
        (&["import", "no-such-seed.db"], 4, "not_found"),
    ];
    check(&env, cases);
}

#[test]
fn duplicates_exit_5() {
    let env = fixture();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["create", "busy", "--saga", "s-other"],
            5,
            "already_exists",
        ),
        (&["create", "done", "--saga", "s-done"], 5, "already_exists"),
        (
            &["create", "fresh", "--saga", "s-busy"],
            5,
            "already_exists",
        ),
    ];
    check(&env, cases);
}

#[test]
fn lease_conflicts_exit_6() {
    let env = fixture();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["lease", "busy", "--owner", "w2", "--ttl", "5m"],
            6,
            "lease_conflict",
        ),
        (
            &["lease", "busy", "--owner", "w1", "--ttl", "5m"],
            6,
            "lease_conflict",
        ),
        (
            &[
                "heartbeat",
                "busy",
                "--owner",
                "w2",
                "--token",
                "1",
                "--ttl",
                "9m",
            ],
            6,
            "lease_conflict",
        ),
        (
            &[
                "heartbeat",
                "busy",
                "--owner",
                "w1",
                "--token",
                "2",
                "--ttl",
                "9m",
            ],
            6,
            "lease_conflict",
        ),
        (
            &["release", "busy", "--owner", "w2", "--token", "1"],
            6,
            "lease_conflict",
        ),
        (
            &["release", "idle", "--owner", "w1", "--token", "1"],
            6,
            "lease_conflict",
        ),
        (
            &["complete", "busy", "--owner", "w1", "--token", "9"],
            6,
            "lease_conflict",
        ),
        (
            &["compensate", "busy", "--owner", "w2", "--token", "1"],
            6,
            "lease_conflict",
        ),
        (
            &[
                "quarantine",
                "busy",
                "--reason",
                "r",
                "--owner",
                "w2",
                "--token",
                "1",
            ],
            6,
            "lease_conflict",
        ),
        (
            &[
                "fail", "busy", "--reason", "r", "--owner", "w1", "--token", "0",
            ],
            6,
            "lease_conflict",
        ),
        (
            &["fail", "idle", "--reason", "no cleanup recorded"],
            6,
            "lease_conflict",
        ),
        (&["dispatch", "busy"], 6, "lease_conflict"),
    ];
    check(&env, cases);
}

#[test]
fn terminal_tasks_exit_7() {
    let env = fixture();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["lease", "done", "--owner", "w", "--ttl", "5m"],
            7,
            "terminal",
        ),
        (&["dispatch", "done"], 7, "terminal"),
        (&["complete", "done"], 7, "terminal"),
        (&["compensate", "done", "--reason", "r"], 7, "terminal"),
        (&["quarantine", "done", "--reason", "r"], 7, "terminal"),
        (
            &[
                "fail",
                "done",
                "--reason",
                "r",
                "--compensation",
                "k",
                "t",
                "r",
            ],
            7,
            "terminal",
        ),
        (
            &[
                "heartbeat",
                "done",
                "--owner",
                "w",
                "--token",
                "1",
                "--ttl",
                "5m",
            ],
            7,
            "terminal",
        ),
        (
            &["release", "done", "--owner", "w", "--token", "1"],
            7,
            "terminal",
        ),
    ];
    check(&env, cases);
}

/// Command lines that do not parse are usage errors (exit 2, clap's message),
/// checked before the store is even opened.
#[test]
fn usage_errors_exit_2() {
    let env = fixture();
    let before = env.snapshot();
    let db = env.db().to_str().unwrap().to_string();
    let cases: &[&[&str]] = &[
        &["frobnicate"],
        &["create"],
        &["create", "t"],
        &["lease", "idle", "--owner", "w"],
        &["lease", "idle", "--ttl", "5m"],
        &[
            "lease",
            "idle",
            "--owner",
            "w",
            "--ttl",
            "5m",
            "--expires-at",
            T5,
        ],
        &["heartbeat", "busy", "--owner", "w1", "--ttl", "5m"],
        &[
            "heartbeat",
            "busy",
            "--owner",
            "w1",
            "--token",
            "one",
            "--ttl",
            "5m",
        ],
        &["release", "busy", "--owner", "w1"],
        &["complete", "busy", "--owner", "w1"],
        &["complete", "busy", "--token", "1"],
        &["fail", "busy", "--reason", "r", "--token", "1"],
        &["quarantine", "busy", "--reason", "r", "--owner", "w1"],
        &["compensate", "busy", "--owner", "w1"],
        &[
            "fail",
            "idle",
            "--reason",
            "r",
            "--compensation",
            "k",
            "t",
            "r",
            "--compensation",
            "k2",
            "t2",
            "r2",
        ],
        &["compensation", "busy", "first", "--status", "applied"],
        &["compensation", "busy", "0"],
        &["create", "t", "--saga", "s", "--priority", "high"],
        &["create", "t", "--saga", "s", "--compensation", "k", "t"],
        &["claim", "--owner", "w"],
        &["list", "--limit", "-1"],
        &["get"],
    ];
    for args in cases {
        let mut full = vec!["--db", db.as_str(), "--at", T1];
        full.extend_from_slice(args);
        let r = env.raw(&full);
        assert_eq!(
            r.code, 2,
            "{args:?}: expected usage error, got {}: {}",
            r.code, r.stderr
        );
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        assert!(
            r.stderr.starts_with("error:") && r.stderr.contains("--help"),
            "{args:?}: {}",
            r.stderr
        );
        assert_eq!(env.snapshot(), before, "{args:?} changed the store");
    }
}

/// Without `--json` an error is one `error: <message>` line on stderr.
#[test]
fn plain_errors_are_one_line() {
    let env = fixture();
    let r = env.run(T1, &["lease", "busy", "--owner", "w2", "--ttl", "5m"]);
    assert_eq!(r.code, 6);
    assert!(r.stdout.is_empty());
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("error: ")
            && r.stderr.contains("\"busy\"")
            && r.stderr.contains("\"w1\""),
        "{}",
        r.stderr
    );
}
