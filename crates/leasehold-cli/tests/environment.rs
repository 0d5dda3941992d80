//! Where the CLI takes its configuration from: `--db` / `LEASEHOLD_DB` /
//! `./leasehold.db`, and the history actor from `--actor` /
//! `LEASEHOLD_ACTOR` / `USER` / `cli`.

mod common;

use common::*;

#[test]
fn default_db_is_leasehold_db_in_the_working_directory() {
    let env = Env::new();
    let r = env.raw(&["--json", "--at", T0, "create", "t", "--saga", "s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(env.dir().join("leasehold.db").is_file());
    // The explicit path names the same file.
    assert_eq!(env.get("t")["task_id"], "t");
}

#[test]
fn leasehold_db_env_chooses_the_file_and_db_flag_wins() {
    let env = Env::new();
    let from_env = env.dir().join("from-env.db");
    let r = env
        .command()
        .env("LEASEHOLD_DB", &from_env)
        .args(["--json", "--at", T0, "create", "t", "--saga", "s"])
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(from_env.is_file());
    assert!(!env.dir().join("leasehold.db").exists());
    // --db overrides the environment: the task is not in env.db().
    let r = env
        .command()
        .env("LEASEHOLD_DB", &from_env)
        .arg("--db")
        .arg(env.db())
        .args(["--json", "get", "t"])
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
}

fn first_actor(env: &Env, cmd: &mut std::process::Command) -> String {
    let out = cmd
        .arg("--db")
        .arg(env.db())
        .args(["--json", "--at", T0, "create", "t", "--saga", "s"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = env.ok(T0, &["history", "t"]);
    h[0]["actor"].as_str().unwrap().to_string()
}

#[test]
fn actor_comes_from_flag_env_user_or_cli() {
    let env = Env::new();
    let mut c = env.command();
    c.env_remove("LEASEHOLD_ACTOR")
        .env("USER", "carol")
        .args(["--actor", "dave"]);
    assert_eq!(first_actor(&env, &mut c), "dave");

    let env = Env::new();
    let mut c = env.command();
    c.env("LEASEHOLD_ACTOR", "erin").env("USER", "carol");
    assert_eq!(first_actor(&env, &mut c), "erin");

    let env = Env::new();
    let mut c = env.command();
    c.env_remove("LEASEHOLD_ACTOR").env("USER", "carol");
    assert_eq!(first_actor(&env, &mut c), "carol");

    let env = Env::new();
    let mut c = env.command();
    c.env_remove("LEASEHOLD_ACTOR").env_remove("USER");
    assert_eq!(first_actor(&env, &mut c), "cli");
}

#[test]
fn worker_writes_are_recorded_under_the_lease_owner() {
    let env = Env::new();
    env.ok(T0, &["create", "t", "--saga", "s"]);
    env.ok(T0, &["lease", "t", "--owner", "agent-1", "--ttl", "5m"]);
    env.ok(T1, &["complete", "t", "--owner", "agent-1", "--token", "1"]);
    let h = env.ok(T1, &["history", "t"]);
    let actors: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["tester", "agent-1", "agent-1"]);
}

#[test]
fn help_and_version_exit_0() {
    let env = Env::new();
    let r = env.raw(&["--help"]);
    assert_eq!(r.code, 0);
    for cmd in [
        "create",
        "lease",
        "claim",
        "heartbeat",
        "complete",
        "fail",
        "stale",
        "reclaim",
        "import",
    ] {
        assert!(r.stdout.contains(cmd), "--help lacks {cmd}: {}", r.stdout);
    }
    let r = env.raw(&["--version"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("leasehold "), "{}", r.stdout);
    // Help never touches the database.
    assert!(!env.dir().join("leasehold.db").exists());
}
