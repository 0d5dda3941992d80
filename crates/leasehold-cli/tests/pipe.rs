//! A reader that goes away (`leasehold list | head -1`) is not an error:
//! the command exits 0 without complaining.

mod common;

use std::process::Stdio;

use common::*;

/// A seed database with `rows` planned tasks, imported to fill the store fast.
fn fill(env: &Env, rows: usize) {
    let seed = env.dir().join("seed.db");
    let conn = new_seed_db(&seed);
    let mut stmt = conn
        .prepare("INSERT INTO task_sagas (task_id, saga_id, state, branch) VALUES (?1, ?2, 'planned', ?3)")
        .unwrap();
    for i in 0..rows {
        stmt.execute([
            format!("task-with-a-long-identifier-to-fill-the-pipe-{i:05}"),
            format!("saga-{i:05}"),
            format!("feature/a-rather-long-branch-name-{i}"),
        ])
        .unwrap();
    }
    let report = env.ok(T0, &["import", seed.to_str().unwrap()]);
    assert_eq!(report["imported"], rows);
}

#[test]
fn broken_pipe_is_success() {
    let env = Env::new();
    fill(&env, 1000);
    for json in [false, true] {
        let mut cmd = env.command();
        cmd.args(["--db", env.db().to_str().unwrap(), "--at", T0]);
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .args(["list", "--limit", "1000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close our end before reading anything: the output (well over a pipe
        // buffer) cannot all be written, so the child must hit EPIPE.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "json={json}: {stderr}");
        assert!(stderr.is_empty(), "json={json}: {stderr}");
    }
    // The same output really is larger than a pipe buffer (64 KiB on Linux).
    let full = env.run(T0, &["list", "--limit", "1000"]);
    assert!(full.stdout.len() > 100 * 1024, "{}", full.stdout.len());
}
