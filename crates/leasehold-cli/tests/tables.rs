//! The tables people read: aligned columns with the documented fields.

mod common;

use common::*;

#[test]
fn list_claim_stale_rows_have_the_documented_columns() {
    let env = Env::new();
    env.ok(
        T0,
        &[
            "create",
            "t-1",
            "--saga",
            "s1",
            "--queue",
            "q",
            "--priority",
            "7",
        ],
    );
    let r = env.run(
        T0,
        &["claim", "--owner", "agent-7", "--ttl", "5m", "--queue", "q"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "TASK  STATE    QUEUE  PRIORITY  OWNER    TOKEN  EXPIRES               ATTEMPTS"
    );
    assert_eq!(
        lines[1],
        "t-1   running  q      7         agent-7  1      2026-06-03T10:05:00Z  1"
    );
    assert_eq!(env.run(T5, &["stale"]).stdout, r.stdout);
    assert_eq!(env.run(T0, &["list"]).stdout, r.stdout);
    assert_eq!(
        env.run(T0, &["list", "--state", "failed"]).stdout,
        "no tasks\n"
    );
    env.ok(T0, &["create", "t-2", "--saga", "s2"]);
    let page = env.run(T0, &["list", "--limit", "1"]).stdout;
    assert!(
        page.lines()
            .last()
            .is_some_and(|l| l.starts_with("more: --cursor ")),
        "{page}"
    );
}

#[test]
fn get_shows_fields_compensations_and_notes() {
    let env = Env::new();
    env.ok(
        T0,
        &[
            "create",
            "t-1",
            "--saga",
            "s1",
            "--branch",
            "fix/x",
            "--compensation",
            "delete_branch",
            "fix/x",
            "unwind",
        ],
    );
    env.ok(
        T0,
        &[
            "compensation",
            "t-1",
            "0",
            "--status",
            "failed",
            "--detail",
            "branch protected",
        ],
    );
    env.ok(
        T1,
        &[
            "annotate",
            "t-1",
            "--note",
            "looked at it",
            "--author",
            "bob",
        ],
    );
    let r = env.run(T1, &["get", "t-1"]);
    assert_eq!(r.code, 0);
    let out = r.stdout;
    assert!(
        out.starts_with(
            "task_id            t-1\nsaga_id            s1\nstate              planned\n"
        ),
        "{out}"
    );
    assert!(out.contains("branch             fix/x\n"), "{out}");
    assert!(out.contains("compensations (1):\n  [0] failed  delete_branch fix/x: unwind  (updated 2026-06-03T10:00:00Z) detail: branch protected\n"), "{out}");
    assert!(
        out.contains("notes (1):\n  2026-06-03T10:01:00Z bob: looked at it\n"),
        "{out}"
    );
}

#[test]
fn history_is_a_timeline() {
    let env = Env::new();
    env.ok(T0, &["create", "t-1", "--saga", "s1"]);
    env.ok(T1, &["lease", "t-1", "--owner", "w", "--ttl", "1m"]);
    env.ok(T2, &["reclaim", "--max-attempts", "1"]);
    let out = env.run(T2, &["history", "t-1"]).stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("AT                    KIND         STATE"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("2026-06-03T10:00:00Z  created      -> planned"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("2026-06-03T10:01:00Z  leased       planned -> running"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("2026-06-03T10:02:00Z  quarantined  running -> quarantined"),
        "{out}"
    );
    assert!(
        lines[3].contains("tester") && lines[3].contains("after 1 attempts"),
        "{out}"
    );
}

#[test]
fn counts_table_has_every_state_and_a_total() {
    let env = Env::new();
    env.ok(T0, &["create", "t-1", "--saga", "s1"]);
    let out = env.run(T0, &["counts"]).stdout;
    assert_eq!(
        out,
        "STATE        COUNT\nplanned      1\ndispatched   0\nrunning      0\ncompleted    0\nfailed       0\ncompensated  0\nquarantined  0\ntotal        1\n"
    );
}
