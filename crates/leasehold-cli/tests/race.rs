//! Many processes race for one lease through the CLI, on one SQLite file:
//! exactly one wins (exit 0), every other one gets `lease_conflict` (exit 6),
//! and the store agrees with the winner. Repeated over several rounds.

mod common;

use std::process::Stdio;

use common::*;

const PROCESSES: usize = 16;
const ROUNDS: usize = 5;

#[test]
fn sixteen_processes_race_for_one_lease() {
    let env = Env::new();
    for round in 0..ROUNDS {
        let task = format!("race-{round}");
        env.ok(T0, &["create", &task, "--saga", &format!("saga-{round}")]);
        // Spawn everyone first, then collect: the processes run concurrently.
        let children: Vec<_> = (0..PROCESSES)
            .map(|i| {
                env.command()
                    .args(["--db", env.db().to_str().unwrap(), "--at", T1, "--json"])
                    .args([
                        "lease",
                        &task,
                        "--owner",
                        &format!("worker-{i}"),
                        "--ttl",
                        "5m",
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn leasehold")
            })
            .collect();
        let mut winners = Vec::new();
        let mut conflicts = 0;
        for (i, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().expect("wait");
            let stderr = String::from_utf8_lossy(&out.stderr);
            match out.status.code() {
                Some(0) => {
                    let t: serde_json::Value =
                        serde_json::from_slice(&out.stdout).expect("winner prints the task");
                    assert_eq!(t["lease_owner"], format!("worker-{i}"));
                    winners.push(i);
                }
                Some(6) => {
                    assert!(
                        stderr.contains("lease_conflict"),
                        "round {round} worker {i}: {stderr}"
                    );
                    conflicts += 1;
                }
                other => panic!("round {round} worker {i}: unexpected exit {other:?}: {stderr}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        assert_eq!(conflicts, PROCESSES - 1, "round {round}");
        let t = env.get(&task);
        assert_eq!(
            t["lease_owner"],
            format!("worker-{}", winners[0]),
            "round {round}"
        );
        assert_eq!(
            t["lease_token"], 1,
            "round {round}: exactly one acquisition"
        );
        assert_eq!(t["attempts"], 1, "round {round}");
        let history = env.ok(T1, &["history", &task]);
        let leased = history
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "leased")
            .count();
        assert_eq!(leased, 1, "round {round}: {history}");
    }
}

/// `claim` races differently: the losers are not errors, they get an empty
/// array. Exactly one process leaves with the task.
#[test]
fn sixteen_processes_race_to_claim_one_task() {
    let env = Env::new();
    for round in 0..ROUNDS {
        let queue = format!("q{round}");
        env.ok(
            T0,
            &[
                "create",
                &format!("claim-{round}"),
                "--saga",
                &format!("claim-saga-{round}"),
                "--queue",
                &queue,
            ],
        );
        let children: Vec<_> = (0..PROCESSES)
            .map(|i| {
                env.command()
                    .args(["--db", env.db().to_str().unwrap(), "--at", T1, "--json"])
                    .args([
                        "claim",
                        "--owner",
                        &format!("worker-{i}"),
                        "--ttl",
                        "5m",
                        "--queue",
                        &queue,
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn leasehold")
            })
            .collect();
        let mut winners = Vec::new();
        for (i, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().expect("wait");
            assert_eq!(
                out.status.code(),
                Some(0),
                "round {round} worker {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let claimed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("an array");
            match claimed.as_array().expect("array").len() {
                0 => {}
                1 => winners.push(i),
                n => panic!("round {round} worker {i} claimed {n} tasks"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let t = env.get(&format!("claim-{round}"));
        assert_eq!(t["lease_owner"], format!("worker-{}", winners[0]));
        assert_eq!(t["lease_token"], 1);
    }
}
