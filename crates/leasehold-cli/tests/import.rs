//! `leasehold import` on a fixture database with the seed's `task_sagas`
//! schema: terminal and leased rows keep their state, fields, compensations
//! and lease; bad rows are rejected with reasons; importing twice changes
//! nothing.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

/// One seed row: (task_id, saga_id, state, issue, branch, worktree,
/// compensations_json, lease_owner, lease_expires_at, last_heartbeat_at, terminal_reason).
type Row<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<i64>,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

const BRANCH_COMP: &str = r#"[{"kind":"delete_branch","target":"feat/a","reason":"unwind"}]"#;
const TWO_COMPS: &str = r#"[{"kind":"delete_branch","target":"feat/c","reason":"unwind"},{"kind":"remove_worktree","target":"wt/c","reason":"unwind"}]"#;

fn seed_rows() -> Vec<Row<'static>> {
    vec![
        (
            "planned-1",
            "saga-p",
            "planned",
            Some(168),
            Some("feat/p"),
            Some("wt/p"),
            "[]",
            None,
            None,
            None,
            None,
        ),
        (
            "running-1",
            "saga-r",
            "running",
            Some(169),
            Some("feat/a"),
            None,
            BRANCH_COMP,
            Some("worker-a"),
            Some("2026-06-03T10:05:00+00:00"),
            Some("2026-06-03T10:01:00+00:00"),
            None,
        ),
        // Naive timestamps (read as UTC), a space separator, no heartbeat.
        (
            "running-naive",
            "saga-n",
            "RUNNING",
            None,
            None,
            None,
            "[]",
            Some("worker-b"),
            Some("2026-06-03 10:07:00"),
            None,
            None,
        ),
        (
            "completed-1",
            "saga-c1",
            "completed",
            None,
            Some("feat/c1"),
            None,
            "[]",
            Some("worker-c"),
            Some("2026-06-03T12:00:00+02:00"),
            Some("2026-06-03T09:58:00Z"),
            Some("merged"),
        ),
        (
            "failed-1",
            "saga-f",
            "failed",
            None,
            None,
            None,
            BRANCH_COMP,
            None,
            None,
            None,
            Some("tests red"),
        ),
        (
            "compensated-1",
            "saga-x",
            "compensated",
            None,
            None,
            None,
            TWO_COMPS,
            None,
            None,
            None,
            Some("rolled back"),
        ),
        (
            "quarantined-1",
            "saga-q",
            "quarantined",
            None,
            None,
            None,
            "[]",
            None,
            None,
            None,
            Some("needs a human"),
        ),
        (
            "dispatched-1",
            "saga-d",
            "dispatched",
            None,
            None,
            None,
            "[]",
            None,
            None,
            None,
            None,
        ),
        // Bad rows.
        (
            "bad-failed",
            "saga-bf",
            "failed",
            None,
            None,
            None,
            "[]",
            None,
            None,
            None,
            Some("no cleanup"),
        ),
        (
            "bad-state",
            "saga-bs",
            "exploded",
            None,
            None,
            None,
            "[]",
            None,
            None,
            None,
            None,
        ),
        (
            "bad-time",
            "saga-bt",
            "running",
            None,
            None,
            None,
            "[]",
            Some("w"),
            Some("half past ten"),
            None,
            None,
        ),
        (
            "bad-json",
            "saga-bj",
            "planned",
            None,
            None,
            None,
            "{not json",
            None,
            None,
            None,
            None,
        ),
        (
            "bad-saga", "saga-p", "planned", None, None, None, "[]", None, None, None, None,
        ),
        (
            "bad id", "saga-bi", "planned", None, None, None, "[]", None, None, None, None,
        ),
        (
            "bad-lease",
            "saga-bl",
            "running",
            None,
            None,
            None,
            "[]",
            None,
            Some("2026-06-03T10:05:00Z"),
            None,
            None,
        ),
    ]
}

fn write_seed(path: &Path, rows: &[Row<'_>]) {
    let conn = new_seed_db(path);
    for r in rows {
        conn.execute(
            "INSERT INTO task_sagas VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            rusqlite::params![r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10],
        )
        .unwrap();
    }
}

fn seed(env: &Env) -> PathBuf {
    let path = env.dir().join("seed.db");
    write_seed(&path, &seed_rows());
    path
}

#[test]
fn import_keeps_state_fields_compensations_and_leases() {
    let env = Env::new();
    let path = seed(&env);
    let report = env.ok(T0, &["import", path.to_str().unwrap()]);
    assert_eq!(report["rows"], 15);
    assert_eq!(report["imported"], 8, "{report}");
    assert_eq!(report["already_present"], 0);
    assert_eq!(report["rejected"], 7, "{report}");
    let reasons: Vec<(String, String)> = report["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["task_id"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let reason = |id: &str| {
        reasons
            .iter()
            .find(|(t, _)| t == id)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{id} not rejected: {report}"))
    };
    assert!(
        reason("bad-failed").contains("compensation"),
        "{}",
        reason("bad-failed")
    );
    assert!(
        reason("bad-state").contains("exploded"),
        "{}",
        reason("bad-state")
    );
    assert!(
        reason("bad-time").contains("half past ten"),
        "{}",
        reason("bad-time")
    );
    assert!(
        reason("bad-json").contains("compensations_json"),
        "{}",
        reason("bad-json")
    );
    assert!(
        reason("bad-saga").contains("saga-p"),
        "{}",
        reason("bad-saga")
    );
    assert!(reason("bad id").contains("task_id"), "{}", reason("bad id"));
    assert!(
        reason("bad-lease").contains("lease_owner"),
        "{}",
        reason("bad-lease")
    );
    let notes = report["notes"].to_string();
    assert!(notes.contains("read as UTC"), "{notes}");

    let t = env.get("planned-1");
    assert_eq!(t["state"], "planned");
    assert_eq!(t["saga_id"], "saga-p");
    assert_eq!(t["issue"], 168);
    assert_eq!(t["branch"], "feat/p");
    assert_eq!(t["worktree"], "wt/p");
    assert_eq!(t["queue"], "default");
    assert_eq!(t["lease_token"], 0);
    assert!(t["lease_owner"].is_null());
    assert_eq!(t["created_at"], T0);
    assert_eq!(t["version"], 1);

    let t = env.get("running-1");
    assert_eq!(t["state"], "running");
    assert_eq!(t["lease_owner"], "worker-a");
    assert_eq!(t["lease_token"], 1);
    assert_eq!(t["attempts"], 1);
    assert_eq!(t["lease_expires_at"], T5);
    assert_eq!(t["last_heartbeat_at"], T1);
    assert_eq!(
        t["lease_acquired_at"], T1,
        "acquired_at is the last heartbeat"
    );
    assert_eq!(
        t["compensations"],
        json!([{"kind":"delete_branch","target":"feat/a","reason":"unwind","status":"pending","detail":null,"updated_at":T0}])
    );

    let t = env.get("running-naive");
    assert_eq!(t["state"], "running");
    assert_eq!(
        t["lease_expires_at"], "2026-06-03T10:07:00Z",
        "naive time read as UTC"
    );
    assert!(t["last_heartbeat_at"].is_null());
    assert_eq!(
        t["lease_acquired_at"], "2026-06-03T10:06:59.999999Z",
        "expiry-based guess"
    );

    let t = env.get("completed-1");
    assert_eq!(t["state"], "completed");
    assert_eq!(t["terminal_reason"], "merged");
    assert_eq!(
        t["lease_owner"], "worker-c",
        "terminal tasks keep their last lease"
    );
    assert_eq!(t["lease_expires_at"], T0);
    assert_eq!(t["lease_token"], 1);

    let t = env.get("failed-1");
    assert_eq!(t["state"], "failed");
    assert_eq!(t["terminal_reason"], "tests red");
    assert_eq!(t["compensations"][0]["status"], "pending");

    let t = env.get("compensated-1");
    assert_eq!(t["state"], "compensated");
    let statuses: Vec<&str> = t["compensations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["applied", "applied"]);

    assert_eq!(env.get("quarantined-1")["terminal_reason"], "needs a human");
    assert_eq!(env.get("dispatched-1")["state"], "dispatched");

    // Imported tasks come in seed order with one `imported` history entry each.
    let page = env.ok(T0, &["list"]);
    let ids: Vec<&str> = page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "planned-1",
            "running-1",
            "running-naive",
            "completed-1",
            "failed-1",
            "compensated-1",
            "quarantined-1",
            "dispatched-1"
        ]
    );
    for id in ids {
        let h = env.ok(T0, &["history", id]);
        let h = h.as_array().unwrap();
        assert_eq!(h.len(), 1, "{id}: {h:?}");
        assert_eq!(h[0]["kind"], "imported");
        assert!(h[0]["from_state"].is_null());
        assert_eq!(h[0]["to_state"], env.get(id)["state"]);
        assert_eq!(h[0]["actor"], "tester");
    }
    let counts = env.ok(T0, &["counts"]);
    assert_eq!(
        counts,
        json!({"planned":1,"dispatched":1,"running":2,"completed":1,"failed":1,"compensated":1,"quarantined":1})
    );
}

#[test]
fn imported_leases_are_live() {
    let env = Env::new();
    let path = seed(&env);
    env.ok(T0, &["import", path.to_str().unwrap()]);
    // The imported lease blocks others and accepts its owner's token 1.
    env.err(
        T2,
        &["lease", "running-1", "--owner", "thief", "--ttl", "5m"],
        6,
        "lease_conflict",
    );
    let t = env.ok(
        T2,
        &[
            "heartbeat",
            "running-1",
            "--owner",
            "worker-a",
            "--token",
            "1",
            "--ttl",
            "5m",
        ],
    );
    assert_eq!(t["last_heartbeat_at"], T2);
    // Terminal imports stay terminal.
    env.err(
        T2,
        &["lease", "completed-1", "--owner", "w", "--ttl", "5m"],
        7,
        "terminal",
    );
    // After expiry the next acquisition gets token 2.
    let t = env.ok(
        T10,
        &["lease", "running-naive", "--owner", "w", "--ttl", "5m"],
    );
    assert_eq!(t["lease_token"], 2);
    assert_eq!(t["attempts"], 2);
}

#[test]
fn importing_twice_changes_nothing() {
    let env = Env::new();
    let path = seed(&env);
    env.ok(T0, &["import", path.to_str().unwrap()]);
    let before = env.snapshot();
    let report = env.ok(T1, &["import", path.to_str().unwrap()]);
    assert_eq!(report["imported"], 0, "{report}");
    assert_eq!(report["already_present"], 8, "{report}");
    assert_eq!(report["rejected"], 7, "{report}");
    assert_eq!(env.snapshot(), before);

    // A task changed after import is not overwritten by a re-import.
    env.ok(T2, &["complete", "planned-1", "--reason", "done"]);
    let changed = env.snapshot();
    env.ok(T2, &["import", path.to_str().unwrap()]);
    assert_eq!(env.snapshot(), changed);
}

#[test]
fn unreadable_seeds_are_rejected_and_change_nothing() {
    let env = Env::new();
    env.ok(T0, &["create", "existing", "--saga", "s"]);
    let before = env.snapshot();

    let missing = env.dir().join("missing.db");
    env.err(T0, &["import", missing.to_str().unwrap()], 4, "not_found");

    let not_sqlite = env.dir().join("notes.txt");
    std::fs::write(
        &not_sqlite,
        "this is not a database, just some text that is long enough",
    )
    .unwrap();
    let msg = env.err(
        T0,
        &["import", not_sqlite.to_str().unwrap()],
        3,
        "invalid_input",
    );
    assert!(msg.contains("notes.txt"), "{msg}");

    let no_table = env.dir().join("empty.db");
    rusqlite::Connection::open(&no_table)
        .unwrap()
        .execute_batch("CREATE TABLE other (x)")
        .unwrap();
    let msg = env.err(
        T0,
        &["import", no_table.to_str().unwrap()],
        3,
        "invalid_input",
    );
    assert!(msg.contains("task_sagas"), "{msg}");

    let wrong_columns = env.dir().join("wrong.db");
    rusqlite::Connection::open(&wrong_columns)
        .unwrap()
        .execute_batch("CREATE TABLE task_sagas (task_id TEXT, saga_id TEXT)")
        .unwrap();
    let msg = env.err(
        T0,
        &["import", wrong_columns.to_str().unwrap()],
        3,
        "invalid_input",
    );
    assert!(
        msg.contains("state") && msg.contains("lease_owner"),
        "{msg}"
    );

    assert_eq!(env.snapshot(), before);
}

#[test]
fn table_report_says_what_happened() {
    let env = Env::new();
    let path = seed(&env);
    let r = env.run(T0, &["import", path.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("imported         8"), "{}", r.stdout);
    assert!(r.stdout.contains("rejected         7"), "{}", r.stdout);
    assert!(r.stdout.contains("bad-failed"), "{}", r.stdout);
    assert!(r.stdout.contains("read as UTC"), "{}", r.stdout);
    let _: Value = env.ok(T0, &["counts"]);
}
