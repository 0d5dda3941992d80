//! The seed scenarios (SEED-SCENARIOS.md) through the real binary on the
//! embedded SQLite store: `--json` output, exit codes, fixed `--at` instants.
//! Every invocation is a new process, so every step also reopens the store.

mod common;

use common::*;
use serde_json::Value;

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|t| t["task_id"].as_str().expect("task_id").to_string())
        .collect()
}

/// Scenarios 1 and 17: a task read back after reopening is equal field for
/// field, compensations and lease included.
#[test]
fn s01_s17_round_trip_after_reopen() {
    let env = Env::new();
    let created = env.ok(
        T0,
        &[
            "create",
            "task-1",
            "--saga",
            "saga-1",
            "--queue",
            "q1",
            "--priority",
            "-3",
            "--issue",
            "168",
            "--branch",
            "feat/x",
            "--worktree",
            "wt/x",
            "--metadata",
            r#"{"k":[1,2],"s":"v"}"#,
            "--compensation",
            "delete_branch",
            "feat/x",
            "cleanup",
            "--compensation",
            "remove_worktree",
            "wt/x",
            "cleanup too",
        ],
    );
    assert_eq!(created["state"], "planned");
    assert_eq!(created["priority"], -3);
    assert_eq!(created["issue"], 168);
    assert_eq!(created["metadata"], serde_json::json!({"k":[1,2],"s":"v"}));
    assert_eq!(created["compensations"].as_array().unwrap().len(), 2);
    assert_eq!(env.get("task-1"), created);

    let leased = env.ok(T0, &["lease", "task-1", "--owner", "w1", "--ttl", "5m"]);
    let again = env.get("task-1");
    assert_eq!(again, leased);
    assert_eq!(again["lease_owner"], "w1");
    assert_eq!(again["lease_token"], 1);
    assert_eq!(again["lease_expires_at"], T5);
    assert_eq!(again["last_heartbeat_at"], T0);
    assert_eq!(again["compensations"], created["compensations"]);
}

/// Scenario 2: a missing id is `not_found` (exit 4), naming the id.
#[test]
fn s02_missing_task_is_not_found() {
    let env = Env::new();
    env.ok(T0, &["create", "present", "--saga", "s"]);
    let msg = env.err(T0, &["get", "absent"], 4, "not_found");
    assert!(msg.contains("absent"), "{msg}");
    let r = env.run(T0, &["get", "absent"]);
    assert_eq!(r.code, 4);
    assert_eq!(r.stderr.trim(), "error: task \"absent\" not found");
    assert!(r.stdout.is_empty());
}

/// Scenario 3: the non-terminal tasks, in creation order.
#[test]
fn s03_in_flight_in_creation_order() {
    let env = Env::new();
    for (id, saga) in [
        ("t-running", "s1"),
        ("t-planned", "s2"),
        ("t-done", "s3"),
        ("t-failed", "s4"),
    ] {
        env.ok(T0, &["create", id, "--saga", saga]);
    }
    env.ok(T0, &["lease", "t-running", "--owner", "w", "--ttl", "5m"]);
    env.ok(T0, &["complete", "t-done", "--reason", "merged"]);
    env.ok(
        T0,
        &[
            "fail",
            "t-failed",
            "--reason",
            "boom",
            "--compensation",
            "delete_branch",
            "b",
            "cleanup",
        ],
    );
    let page = env.ok(
        T0,
        &[
            "list",
            "--state",
            "planned",
            "--state",
            "dispatched",
            "--state",
            "running",
        ],
    );
    assert_eq!(ids(&page["tasks"]), ["t-running", "t-planned"]);
    assert!(page["next_cursor"].is_null());
    let all = env.ok(T0, &["list"]);
    assert_eq!(
        ids(&all["tasks"]),
        ["t-running", "t-planned", "t-done", "t-failed"]
    );
}

/// Scenario 4 (sequential form): A read the task, B leased it, A's lease
/// attempt is a `lease_conflict`; the stored owner is B with B's time.
#[test]
fn s04_lease_race_sequential() {
    let env = Env::new();
    env.ok(T0, &["create", "t", "--saga", "s"]);
    let seen_by_a = env.get("t");
    assert!(seen_by_a["lease_owner"].is_null());
    env.ok(T1, &["lease", "t", "--owner", "B", "--ttl", "5m"]);
    let msg = env.err(
        T2,
        &["lease", "t", "--owner", "A", "--ttl", "5m"],
        6,
        "lease_conflict",
    );
    assert!(msg.contains("\"t\"") && msg.contains("\"B\""), "{msg}");
    let t = env.get("t");
    assert_eq!(t["lease_owner"], "B");
    assert_eq!(t["last_heartbeat_at"], T1);
    assert_eq!(t["lease_token"], 1);
}

/// Scenario 5: created is planned with no owner and no expiry; leased is
/// running with owner, expiry, and heartbeat = acquisition time.
#[test]
fn s05_create_then_lease() {
    let env = Env::new();
    let t = env.ok(T0, &["create", "t", "--saga", "s"]);
    assert_eq!(t["state"], "planned");
    assert!(t["lease_owner"].is_null());
    assert!(t["lease_expires_at"].is_null());
    assert_eq!(t["lease_token"], 0);
    assert_eq!(t["version"], 1);
    let t = env.ok(T1, &["lease", "t", "--owner", "w1", "--expires-at", T10]);
    assert_eq!(t["state"], "running");
    assert_eq!(t["lease_owner"], "w1");
    assert_eq!(t["lease_expires_at"], T10);
    assert_eq!(t["lease_acquired_at"], T1);
    assert_eq!(t["last_heartbeat_at"], T1);
    assert_eq!(t["attempts"], 1);
}

/// Scenario 6: duplicates are `already_exists` (exit 5) and the first task is unchanged.
#[test]
fn s06_duplicates_rejected() {
    let env = Env::new();
    env.ok(T0, &["create", "t", "--saga", "s", "--branch", "first"]);
    let before = env.snapshot();
    env.err(
        T1,
        &["create", "t", "--saga", "other", "--branch", "second"],
        5,
        "already_exists",
    );
    let msg = env.err(T1, &["create", "t2", "--saga", "s"], 5, "already_exists");
    assert!(msg.contains("\"s\""), "{msg}");
    assert_eq!(env.snapshot(), before);
}

/// Scenario 7: a heartbeat before expiry extends the lease and sets the heartbeat time.
#[test]
fn s07_heartbeat_extends() {
    let env = Env::new();
    env.ok(T0, &["create", "t", "--saga", "s"]);
    env.ok(T0, &["lease", "t", "--owner", "w", "--ttl", "5m"]);
    let t = env.ok(
        T2,
        &[
            "heartbeat",
            "t",
            "--owner",
            "w",
            "--token",
            "1",
            "--ttl",
            "8m",
        ],
    );
    assert_eq!(t["lease_expires_at"], T10);
    assert_eq!(t["last_heartbeat_at"], T2);
    assert_eq!(t["lease_acquired_at"], T0);
    // Heartbeats are not history entries.
    let h = env.ok(T2, &["history", "t"]);
    assert_eq!(h.as_array().unwrap().len(), 2);
}

/// Scenario 8: adversarial heartbeats, each `lease_conflict` (exit 6), nothing changes.
#[test]
fn s08_adversarial_heartbeats() {
    let env = Env::new();
    env.ok(T0, &["create", "t", "--saga", "s"]);
    env.ok(T0, &["create", "idle", "--saga", "s-idle"]);
    env.ok(T0, &["lease", "t", "--owner", "w", "--ttl", "5m"]);
    env.ok(T0, &["release", "t", "--owner", "w", "--token", "1"]);
    env.ok(T0, &["lease", "t", "--owner", "w", "--ttl", "5m"]); // token 2
    let before = env.snapshot();
    let cases: [(&str, Vec<&str>, &str); 5] = [
        (
            "wrong owner",
            vec![
                "heartbeat",
                "t",
                "--owner",
                "intruder",
                "--token",
                "2",
                "--ttl",
                "9m",
            ],
            T1,
        ),
        (
            "stale token",
            vec![
                "heartbeat",
                "t",
                "--owner",
                "w",
                "--token",
                "1",
                "--ttl",
                "9m",
            ],
            T1,
        ),
        (
            "no active lease",
            vec![
                "heartbeat",
                "idle",
                "--owner",
                "w",
                "--token",
                "1",
                "--ttl",
                "9m",
            ],
            T1,
        ),
        (
            "expired",
            vec![
                "heartbeat",
                "t",
                "--owner",
                "w",
                "--token",
                "2",
                "--expires-at",
                T10,
            ],
            T5,
        ),
        (
            "does not extend",
            vec![
                "heartbeat",
                "t",
                "--owner",
                "w",
                "--token",
                "2",
                "--expires-at",
                T5,
            ],
            T1,
        ),
    ];
    for (what, args, at) in cases {
        let msg = env.err(at, &args, 6, "lease_conflict");
        assert!(
            msg.contains('"'),
            "{what}: message should name the task: {msg}"
        );
        assert_eq!(env.snapshot(), before, "{what} changed the store");
    }
}

/// Scenario 9 (the CLI has no `put`; its whole-task write is `import`):
/// writing back a stale copy of a task, read before the lease was taken,
/// does not clear the active lease.
#[test]
fn s09_stale_copy_does_not_clear_a_lease() {
    let env = Env::new();
    let seed = env.dir().join("seed.db");
    new_seed_db(&seed)
        .execute(
            "INSERT INTO task_sagas (task_id, saga_id, state) VALUES ('t', 's', 'planned')",
            [],
        )
        .unwrap();
    let seed = seed.to_str().unwrap();
    env.ok(T0, &["import", seed]);
    env.ok(T1, &["lease", "t", "--owner", "w", "--ttl", "5m"]);
    let leased = env.snapshot();
    let report = env.ok(T2, &["import", seed]);
    assert_eq!(report["already_present"], 1, "{report}");
    assert_eq!(report["imported"], 0, "{report}");
    assert_eq!(env.snapshot(), leased);
    assert_eq!(env.get("t")["lease_owner"], "w");
}

/// Scenario 10: A's lease expired and B took the task; A's late heartbeat loses.
#[test]
fn s10_late_heartbeat_after_takeover() {
    let env = Env::new();
    env.ok(T0, &["create", "t", "--saga", "s"]);
    env.ok(T0, &["lease", "t", "--owner", "A", "--ttl", "5m"]);
    let reclaimed = env.ok(T5, &["reclaim"]);
    assert_eq!(ids(&reclaimed), ["t"]);
    assert_eq!(reclaimed[0]["state"], "dispatched");
    env.ok(T5, &["lease", "t", "--owner", "B", "--ttl", "5m"]);
    env.err(
        T5,
        &[
            "heartbeat",
            "t",
            "--owner",
            "A",
            "--token",
            "1",
            "--ttl",
            "9m",
        ],
        6,
        "lease_conflict",
    );
    let t = env.get("t");
    assert_eq!(t["lease_owner"], "B");
    assert_eq!(t["lease_token"], 2, "tokens never reused across reclaims");
}

/// Scenario 11: `stale` is exactly the non-terminal tasks expired at or before --at.
#[test]
fn s11_stale_is_exact() {
    let env = Env::new();
    for (id, saga) in [
        ("expired", "s1"),
        ("fresh", "s2"),
        ("done", "s3"),
        ("boundary", "s4"),
        ("never", "s5"),
    ] {
        env.ok(T0, &["create", id, "--saga", saga]);
    }
    env.ok(T0, &["lease", "expired", "--owner", "w", "--ttl", "1m"]);
    env.ok(T0, &["lease", "fresh", "--owner", "w", "--ttl", "10m"]);
    env.ok(T0, &["lease", "done", "--owner", "w", "--ttl", "1m"]);
    env.ok(T0, &["complete", "done", "--owner", "w", "--token", "1"]);
    env.ok(T0, &["lease", "boundary", "--owner", "w", "--ttl", "2m"]);
    assert_eq!(ids(&env.ok(T2, &["stale"])), ["expired", "boundary"]);
    assert_eq!(ids(&env.ok(T1, &["stale"])), ["expired"]);
    assert_eq!(ids(&env.ok(T0, &["stale"])), Vec::<String>::new());
    let page = env.ok(T2, &["list", "--stale"]);
    assert_eq!(ids(&page["tasks"]), ["expired", "boundary"]);
}

/// Scenario 12: a completed task cannot be leased: `terminal` (exit 7) naming the task.
#[test]
fn s12_completed_cannot_be_leased() {
    let env = Env::new();
    env.ok(T0, &["create", "t-12", "--saga", "s"]);
    env.ok(T0, &["complete", "t-12"]);
    let msg = env.err(
        T1,
        &["lease", "t-12", "--owner", "w", "--ttl", "5m"],
        7,
        "terminal",
    );
    assert!(msg.contains("t-12"), "{msg}");
}

/// Scenarios 13 and 14: every terminal marker stores its state and reason,
/// then refuses every later change except audit metadata.
#[test]
fn s13_s14_terminal_markers_are_final() {
    let env = Env::new();
    let markers: [(&str, &str, Vec<&str>); 4] = [
        (
            "completed",
            "t-c",
            vec!["complete", "t-c", "--reason", "merged"],
        ),
        (
            "failed",
            "t-f",
            vec![
                "fail",
                "t-f",
                "--reason",
                "merged",
                "--compensation",
                "revert",
                "pr-1",
                "undo",
            ],
        ),
        (
            "compensated",
            "t-x",
            vec!["compensate", "t-x", "--reason", "merged"],
        ),
        (
            "quarantined",
            "t-q",
            vec!["quarantine", "t-q", "--reason", "merged"],
        ),
    ];
    for (i, (state, id, args)) in markers.iter().enumerate() {
        env.ok(T0, &["create", id, "--saga", &format!("saga-{i}")]);
        env.ok(T0, &["lease", id, "--owner", "w", "--ttl", "5m"]);
        let t = env.ok(T1, args);
        assert_eq!(t["state"], *state);
        assert_eq!(t["terminal_reason"], "merged");
        assert_eq!(
            t["lease_owner"], "w",
            "terminal keeps the last lease for the record"
        );
        let before = env.snapshot();
        let later: [Vec<&str>; 8] = [
            vec!["lease", id, "--owner", "w2", "--ttl", "5m"],
            vec![
                "heartbeat",
                id,
                "--owner",
                "w",
                "--token",
                "1",
                "--ttl",
                "9m",
            ],
            vec!["release", id, "--owner", "w", "--token", "1"],
            vec!["dispatch", id],
            vec!["complete", id],
            vec!["compensate", id],
            vec!["quarantine", id, "--reason", "again"],
            vec![
                "fail",
                id,
                "--reason",
                "again",
                "--compensation",
                "k",
                "t",
                "r",
            ],
        ];
        for args in later {
            let msg = env.err(T2, &args, 7, "terminal");
            assert!(msg.contains(id), "{msg}");
            assert_eq!(env.snapshot(), before, "{args:?} changed a {state} task");
        }
        // Audit metadata stays writable.
        let t = env.ok(
            T2,
            &[
                "annotate",
                id,
                "--note",
                "post-mortem done",
                "--author",
                "ops",
            ],
        );
        assert_eq!(t["notes"][0]["note"], "post-mortem done");
        assert_eq!(t["notes"][0]["author"], "ops");
        assert_eq!(t["state"], *state);
    }
    let t = env.ok(
        T2,
        &[
            "compensation",
            "t-f",
            "0",
            "--status",
            "applied",
            "--detail",
            "reverted",
        ],
    );
    assert_eq!(t["compensations"][0]["status"], "applied");
    assert_eq!(t["compensations"][0]["detail"], "reverted");
    assert_eq!(t["state"], "failed");
}

/// Scenario 15: a worker write after a terminal transition loses; the reason stays.
#[test]
fn s15_write_after_terminal_loses() {
    let env = Env::new();
    env.ok(T0, &["create", "t", "--saga", "s"]);
    env.ok(T0, &["lease", "t", "--owner", "w", "--ttl", "5m"]);
    env.ok(T1, &["quarantine", "t", "--reason", "operator stop"]);
    env.err(
        T1,
        &[
            "complete", "t", "--owner", "w", "--token", "1", "--reason", "done",
        ],
        7,
        "terminal",
    );
    env.err(
        T1,
        &[
            "heartbeat",
            "t",
            "--owner",
            "w",
            "--token",
            "1",
            "--ttl",
            "9m",
        ],
        7,
        "terminal",
    );
    let t = env.get("t");
    assert_eq!(t["state"], "quarantined");
    assert_eq!(t["terminal_reason"], "operator stop");
}

/// Scenario 16: failing keeps existing compensations, needs at least one.
#[test]
fn s16_fail_needs_a_compensation() {
    let env = Env::new();
    env.ok(T0, &["create", "bare", "--saga", "s1"]);
    env.ok(
        T0,
        &[
            "create",
            "with",
            "--saga",
            "s2",
            "--compensation",
            "delete_branch",
            "b",
            "cleanup",
        ],
    );
    let before = env.snapshot();
    let msg = env.err(
        T1,
        &["fail", "bare", "--reason", "boom"],
        6,
        "lease_conflict",
    );
    assert!(msg.contains("compensation"), "{msg}");
    assert_eq!(env.snapshot(), before);

    let t = env.ok(
        T1,
        &[
            "fail",
            "bare",
            "--reason",
            "boom",
            "--compensation",
            "revert",
            "pr-9",
            "undo",
        ],
    );
    assert_eq!(t["state"], "failed");
    assert_eq!(t["compensations"][0]["kind"], "revert");
    assert_eq!(t["compensations"][0]["status"], "pending");

    let t = env.ok(
        T1,
        &[
            "fail",
            "with",
            "--reason",
            "boom",
            "--compensation",
            "revert",
            "pr-10",
            "undo",
        ],
    );
    let kinds: Vec<&str> = t["compensations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["delete_branch", "revert"],
        "existing compensations kept, new one appended"
    );
}

/// Scenario 18: offsets normalise to UTC; a timestamp without one is `invalid_input`.
#[test]
fn s18_offsets_normalise_to_utc() {
    let env = Env::new();
    let t = env.ok("2026-06-03T10:00:00+02:00", &["create", "t", "--saga", "s"]);
    assert_eq!(t["created_at"], "2026-06-03T08:00:00Z");
    let t = env.ok(
        "2026-06-03T08:00:00Z",
        &[
            "lease",
            "t",
            "--owner",
            "w",
            "--expires-at",
            "2026-06-03T12:00:00+02:00",
        ],
    );
    assert_eq!(t["lease_expires_at"], "2026-06-03T10:00:00Z");
    // 10:00+02:00 is 08:00Z: the lease (expiring 10:00Z) is still active.
    env.err(
        "2026-06-03T10:00:00+02:00",
        &["lease", "t", "--owner", "x", "--ttl", "1m"],
        6,
        "lease_conflict",
    );
    let before = env.snapshot();
    env.err(
        "2026-06-03T10:00:00",
        &["lease", "t", "--owner", "x", "--ttl", "1m"],
        3,
        "invalid_input",
    );
    env.err(
        T0,
        &[
            "heartbeat",
            "t",
            "--owner",
            "w",
            "--token",
            "1",
            "--expires-at",
            "2026-06-03T11:00:00",
        ],
        3,
        "invalid_input",
    );
    assert_eq!(env.snapshot(), before);
}

/// The JSON shapes scripts rely on: arrays for claim/stale/reclaim/history,
/// an object for list and for counts (every state present).
#[test]
fn json_shapes() {
    let env = Env::new();
    let counts = env.ok(T0, &["counts"]);
    let states = [
        "planned",
        "dispatched",
        "running",
        "completed",
        "failed",
        "compensated",
        "quarantined",
    ];
    assert_eq!(counts.as_object().unwrap().len(), states.len());
    for s in states {
        assert_eq!(counts[s], 0, "{s} missing or non-zero");
    }
    env.ok(
        T0,
        &[
            "create",
            "low",
            "--saga",
            "s1",
            "--queue",
            "q",
            "--priority",
            "1",
        ],
    );
    env.ok(
        T0,
        &[
            "create",
            "high",
            "--saga",
            "s2",
            "--queue",
            "q",
            "--priority",
            "5",
        ],
    );
    env.ok(T0, &["create", "other", "--saga", "s3"]);
    env.ok(T0, &["dispatch", "low"]);
    let claimed = env.ok(
        T0,
        &[
            "claim", "--owner", "w", "--ttl", "1m", "--queue", "q", "--limit", "5",
        ],
    );
    assert_eq!(ids(&claimed), ["high", "low"], "priority first");
    assert!(env
        .ok(
            T0,
            &["claim", "--owner", "w", "--ttl", "1m", "--queue", "q"]
        )
        .as_array()
        .unwrap()
        .is_empty());
    let mut stale = ids(&env.ok(T5, &["stale"]));
    stale.sort();
    assert_eq!(stale, ["high", "low"], "both leases expired at 10:01");
    let reclaimed = env.ok(T5, &["reclaim", "--max-attempts", "1"]);
    assert_eq!(reclaimed.as_array().unwrap().len(), 2);
    for t in reclaimed.as_array().unwrap() {
        assert_eq!(t["state"], "quarantined");
        let reason = t["terminal_reason"].as_str().unwrap();
        assert!(
            reason.contains("1 attempts") && reason.contains("\"w\""),
            "{reason}"
        );
    }
    let counts = env.ok(T5, &["counts"]);
    assert_eq!(counts["quarantined"], 2);
    assert_eq!(counts["planned"], 1);

    let page = env.ok(T5, &["list", "--limit", "2"]);
    assert_eq!(ids(&page["tasks"]), ["low", "high"]);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let page = env.ok(T5, &["list", "--limit", "2", "--cursor", &cursor]);
    assert_eq!(ids(&page["tasks"]), ["other"]);
    assert!(page["next_cursor"].is_null());
    let page = env.ok(
        T5,
        &[
            "list",
            "--queue",
            "q",
            "--owner",
            "w",
            "--state",
            "quarantined",
        ],
    );
    assert_eq!(ids(&page["tasks"]), ["low", "high"]);

    let h = env.ok(T5, &["history", "low"]);
    let kinds: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "dispatched", "leased", "quarantined"]);
    for e in h.as_array().unwrap() {
        for field in [
            "kind",
            "at",
            "actor",
            "from_state",
            "to_state",
            "lease_token",
            "detail",
        ] {
            assert!(e.get(field).is_some(), "history entry lacks {field}: {e}");
        }
    }
    assert!(h[0]["from_state"].is_null());
    assert_eq!(h[0]["actor"], "tester");
    assert_eq!(h[1]["from_state"], "planned");
    assert_eq!(h[1]["to_state"], "dispatched");
    assert_eq!(h[2]["actor"], "w");
    assert_eq!(h[2]["lease_token"], 1);
    assert_eq!(h[3]["at"], T5);
}
