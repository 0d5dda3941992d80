//! Paused workers and the reaper: a worker that stops past its TTL loses the
//! task, and every later write it makes is rejected without changing anything.

mod common;

use std::time::Duration;

use common::*;
use leasehold_core::Store;
use leasehold_server::reaper;
use serde_json::json;

/// Every write a worker can attempt on `id` with its fence `token`.
fn writes(token: u64) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("heartbeat", json!({"token": token, "ttl_ms": 30000})),
        ("release", json!({"token": token})),
        ("complete", json!({"token": token, "reason": "late"})),
        ("compensate", json!({"token": token})),
        ("fail", json!({"token": token, "reason": "late"})),
        ("quarantine", json!({"token": token, "reason": "late"})),
        ("notes", json!({"note": "late"})),
        ("compensations/0", json!({"status": "applied"})),
    ]
}

#[tokio::test]
async fn paused_worker_loses_the_task_and_every_late_write() {
    let app = App::new();
    app.seed("job");
    let r = app
        .call(
            "POST",
            "/v1/claim",
            Some(&app.w1),
            Some(json!({"ttl_ms": 30000})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json[0]["lease_token"], 1);

    // w1 pauses; the server's clock passes the TTL; w2 claims the task.
    app.clock.advance_ms(30_001);
    let r = app
        .call(
            "POST",
            "/v1/claim",
            Some(&app.w2),
            Some(json!({"ttl_ms": 30000})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json[0]["task_id"], "job");
    assert_eq!(r.json[0]["lease_owner"], "w2");
    assert_eq!(r.json[0]["lease_token"], 2);

    // w1 wakes up: everything it tries is rejected and nothing changes.
    let before = app.snapshot();
    for (route, body) in writes(1) {
        let r = app
            .call(
                "POST",
                &format!("/v1/tasks/job/{route}"),
                Some(&app.w1),
                Some(body),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (403, "forbidden"),
            "{route}: {}",
            r.text
        );
        assert!(
            r.json["detail"].as_str().unwrap().contains("w2"),
            "{route}: names the holder"
        );
    }
    let r = app
        .call(
            "POST",
            "/v1/tasks/job/lease",
            Some(&app.w1),
            Some(json!({"ttl_ms": 30000})),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "lease_conflict"));
    assert_eq!(app.snapshot(), before);

    // w2 finishes normally.
    let r = app
        .call(
            "POST",
            "/v1/tasks/job/complete",
            Some(&app.w2),
            Some(json!({"token": 2, "reason": "done"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let task = app.store.require("job").unwrap();
    assert_eq!(task.lease_owner.as_deref(), Some("w2"));
    assert_eq!(task.terminal_reason.as_deref(), Some("done"));
}

#[tokio::test]
async fn paused_worker_after_a_reclaim_gets_lease_conflict() {
    let app = App::new();
    app.seed("job");
    let r = app
        .call(
            "POST",
            "/v1/claim",
            Some(&app.w1),
            Some(json!({"ttl_ms": 1000})),
        )
        .await;
    assert_eq!(r.json[0]["lease_token"], 1);
    app.clock.advance_ms(1_000);
    let reclaimed = reaper::run_once(&app.state).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    let before = app.snapshot();
    // Nobody holds the task now: fenced writes are lease_conflict (the fence is not current).
    for (route, body) in writes(1).into_iter().take(6) {
        let r = app
            .call(
                "POST",
                &format!("/v1/tasks/job/{route}"),
                Some(&app.w1),
                Some(body),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (409, "lease_conflict"),
            "{route}: {}",
            r.text
        );
    }
    assert_eq!(app.snapshot(), before);
}

#[tokio::test]
async fn reaper_reclaims_with_actor_reaper_and_quarantines_after_max_attempts() {
    let mut app = App::new();
    app.state.max_attempts = 2;
    app.seed_leased("once", "w1");
    app.seed("twice");
    let until = app.clock.now_ts().checked_add_micros(10_000_000).unwrap();
    app.store
        .acquire_lease("twice", "w1", until, &app.ctx())
        .unwrap();
    // Not stale yet: nothing happens.
    assert!(reaper::run_once(&app.state).await.unwrap().is_empty());

    // `twice` expires, is reclaimed, leased again, expires again → quarantined.
    app.clock.advance_ms(10_000);
    let r = reaper::run_once(&app.state).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].state.as_str(), "dispatched");
    let until = app.clock.now_ts().checked_add_micros(1_000_000).unwrap();
    app.store
        .acquire_lease("twice", "w2", until, &app.ctx())
        .unwrap();
    app.clock.advance_ms(60_000);
    let mut r = reaper::run_once(&app.state).await.unwrap();
    r.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].task_id.as_str(), r[0].state.as_str()),
        ("once", "dispatched")
    );
    assert_eq!(
        (r[1].task_id.as_str(), r[1].state.as_str()),
        ("twice", "quarantined")
    );
    assert!(r[1].terminal_reason.as_deref().unwrap().contains("\"w2\""));

    for id in ["once", "twice"] {
        let last = app.store.history(id).unwrap().pop().unwrap();
        assert_eq!(last.actor, "reaper", "{id}");
    }
    let m = app.call("GET", "/metrics", Some(&app.op), None).await.text;
    assert!(
        m.contains("leasehold_reclaims_total{to=\"dispatched\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("leasehold_reclaims_total{to=\"quarantined\"} 1"),
        "{m}"
    );
    assert!(m.contains("leasehold_quarantines_total 1"), "{m}");
}

#[tokio::test(start_paused = true)]
async fn reaper_loop_runs_on_its_interval_and_stops() {
    let app = App::new();
    app.seed_leased("job", "w1");
    app.clock.advance_ms(60_000);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(reaper::run_loop(
        app.state.clone(),
        Duration::from_secs(5),
        stop_rx,
    ));
    // Wait (in paused tokio time, bounded) for the first pass to land.
    let mut reclaimed = false;
    for _ in 0..1000 {
        if app.store.require("job").unwrap().state.as_str() == "dispatched" {
            reclaimed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(reclaimed, "the reaper loop reclaimed the stale task");
    assert_eq!(
        app.store.history("job").unwrap().pop().unwrap().actor,
        "reaper"
    );
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(60), handle)
        .await
        .expect("the loop stops when told")
        .unwrap();
}

/// Seed `id` and let two workers lease it and crash (each lease expires).
fn crash_twice(app: &App, id: &str) {
    app.seed(id);
    for owner in ["w1", "w2"] {
        let until = app.clock.now_ts().checked_add_micros(1_000_000).unwrap();
        app.store
            .acquire_lease(id, owner, until, &app.ctx())
            .unwrap();
        app.clock.advance_ms(1_000);
    }
}

/// A stale lease that used up the reaper's `max_attempts` is never handed to
/// the next worker by `POST /v1/claim`: it waits for the reaper, which
/// quarantines it. A claim may name its own `max_attempts`; 0 is refused.
#[tokio::test]
async fn claim_leaves_a_poison_task_to_the_reaper() {
    let mut app = App::new();
    app.state.max_attempts = 2;
    app.router = leasehold_server::router(app.state.clone());
    crash_twice(&app, "poison");
    app.seed("fresh");
    let claim = |body: serde_json::Value| {
        let app = &app;
        async move {
            app.call("POST", "/v1/claim", Some(&app.w1), Some(body))
                .await
        }
    };
    let before = app.store.get("poison").unwrap().unwrap();
    let r = claim(json!({"ttl_ms": 30000, "limit": 10})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got: Vec<&str> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["fresh"], "the poison task (2 attempts) is left out");
    assert_eq!(app.store.get("poison").unwrap().unwrap(), before);

    let r = claim(json!({"ttl_ms": 30000, "max_attempts": 0})).await;
    assert_eq!((r.status, r.code()), (422, "invalid_input"), "{}", r.text);
    assert_eq!(app.store.get("poison").unwrap().unwrap(), before);

    let quarantined = reaper::run_once(&app.state).await.unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].state.as_str(), "quarantined");

    // Asking for a looser limit explicitly takes a stale lease again.
    crash_twice(&app, "flaky");
    let r = claim(json!({"ttl_ms": 30000, "max_attempts": 3})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json[0]["task_id"], "flaky");
    assert_eq!(r.json[0]["attempts"], 3);
}
