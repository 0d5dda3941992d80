//! Every route's happy path, driven through the router with `oneshot`.

mod common;

use common::*;
use leasehold_core::Store;
use serde_json::json;

#[tokio::test]
async fn task_lifecycle_over_every_write_route() {
    let app = App::new();
    let op = Some(app.op.as_str());

    // create
    let r = app
        .call(
            "POST",
            "/v1/tasks",
            op,
            Some(json!({"task_id": "a/1", "saga_id": "s1", "queue": "q", "priority": 3,
                        "issue": 184, "branch": "feat", "metadata": {"k": 1},
                        "compensations": [{"kind": "delete_branch", "target": "feat", "reason": "r"}]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["state"], "planned");
    assert_eq!(r.json["version"], 1);
    assert_eq!(r.json["created_at"], T0);

    // get (a slash in the id travels as %2F)
    let r = app.call("GET", "/v1/tasks/a%2F1", op, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["task_id"], "a/1");
    assert_eq!(r.json["priority"], 3);

    // dispatch
    let r = app.call("POST", "/v1/tasks/a%2F1/dispatch", op, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["state"], "dispatched");

    // lease: the server's clock decides the expiry
    let r = app
        .call(
            "POST",
            "/v1/tasks/a%2F1/lease",
            op,
            Some(json!({"owner": "w9", "ttl_ms": 30000})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["state"], "running");
    assert_eq!(r.json["lease_owner"], "w9");
    assert_eq!(r.json["lease_token"], 1);
    assert_eq!(r.json["lease_expires_at"], "2026-06-03T10:00:30Z");
    assert_eq!(r.json["last_heartbeat_at"], T0);

    // heartbeat 10 s later: expires_at = now + ttl
    app.clock.advance_ms(10_000);
    let r = app
        .call(
            "POST",
            "/v1/tasks/a%2F1/heartbeat",
            op,
            Some(json!({"owner": "w9", "token": 1, "ttl_ms": 60000})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["lease_expires_at"], "2026-06-03T10:01:10Z");
    assert_eq!(r.json["last_heartbeat_at"], "2026-06-03T10:00:10Z");

    // release
    let r = app
        .call(
            "POST",
            "/v1/tasks/a%2F1/release",
            op,
            Some(json!({"owner": "w9", "token": 1})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["state"], "dispatched");
    assert_eq!(r.json["lease_owner"], serde_json::Value::Null);

    // claim from queue q
    let r = app
        .call(
            "POST",
            "/v1/claim",
            op,
            Some(json!({"owner": "w9", "queues": ["q"], "ttl_ms": 1000, "limit": 5})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let claimed = r.json.as_array().unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0]["lease_token"], 2);

    // notes and compensation outcome
    let r = app
        .call(
            "POST",
            "/v1/tasks/a%2F1/notes",
            op,
            Some(json!({"note": "looked at it"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["notes"][0]["author"], "op");
    let r = app
        .call(
            "POST",
            "/v1/tasks/a%2F1/compensations/0",
            op,
            Some(json!({"status": "applied", "detail": "branch deleted"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["compensations"][0]["status"], "applied");

    // complete with the fence
    let r = app
        .call(
            "POST",
            "/v1/tasks/a%2F1/complete",
            op,
            Some(json!({"reason": "done", "owner": "w9", "token": 2})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["state"], "completed");
    assert_eq!(r.json["terminal_reason"], "done");

    // history records every change with its actor
    let r = app.call("GET", "/v1/tasks/a%2F1/history", op, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let kinds: Vec<_> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "dispatched",
            "leased",
            "released",
            "leased",
            "annotated",
            "compensation_recorded",
            "completed"
        ]
    );
    assert_eq!(r.json[0]["actor"], "op");
    assert_eq!(r.json[2]["actor"], "w9");
}

#[tokio::test]
async fn fail_compensate_quarantine_and_put() {
    let app = App::new();
    let op = Some(app.op.as_str());
    for id in ["f", "c", "q", "p"] {
        let r = app
            .call(
                "POST",
                "/v1/tasks",
                op,
                Some(json!({"task_id": id, "saga_id": format!("s-{id}")})),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    // fail needs a compensation: without one it is lease_conflict naming it
    let r = app
        .call(
            "POST",
            "/v1/tasks/f/fail",
            op,
            Some(json!({"reason": "boom"})),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "lease_conflict"));
    assert!(r.json["detail"].as_str().unwrap().contains("compensation"));
    let r = app
        .call(
            "POST",
            "/v1/tasks/f/fail",
            op,
            Some(json!({"reason": "boom", "compensation": {"kind": "revert", "target": "f", "reason": "undo"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["state"], "failed");
    assert_eq!(r.json["compensations"].as_array().unwrap().len(), 1);

    let r = app
        .call(
            "POST",
            "/v1/tasks/c/compensate",
            op,
            Some(json!({"reason": "unwound"})),
        )
        .await;
    assert_eq!(
        (r.status, r.json["state"].as_str()),
        (200, Some("compensated"))
    );
    let r = app
        .call(
            "POST",
            "/v1/tasks/q/quarantine",
            op,
            Some(json!({"reason": "weird"})),
        )
        .await;
    assert_eq!(
        (r.status, r.json["state"].as_str()),
        (200, Some("quarantined"))
    );
    let r = app
        .call(
            "POST",
            "/v1/tasks/q/quarantine",
            op,
            Some(json!({"reason": "again"})),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "terminal"));

    // put: update with the right version → 200, stale version → version_conflict
    let mut task = app.call("GET", "/v1/tasks/p", op, None).await.json;
    task["branch"] = json!("new-branch");
    let r = app.call("PUT", "/v1/tasks/p", op, Some(task.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["version"], 2);
    assert_eq!(r.json["branch"], "new-branch");
    let r = app.call("PUT", "/v1/tasks/p", op, Some(task.clone())).await;
    assert_eq!(
        (r.status, r.code()),
        (409, "version_conflict"),
        "{}",
        r.text
    );
    // without version: unconditional
    task.as_object_mut().unwrap().remove("version");
    task["branch"] = json!("third");
    let r = app.call("PUT", "/v1/tasks/p", op, Some(task)).await;
    assert_eq!(
        (r.status, r.json["version"].as_u64()),
        (200, Some(3)),
        "{}",
        r.text
    );
    // put of a new task inserts it → 201
    let r = app
        .call(
            "PUT",
            "/v1/tasks/new",
            op,
            Some(json!({"saga_id": "s-new", "state": "dispatched"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["state"], "dispatched");
    // body id must match the path
    let r = app
        .call(
            "PUT",
            "/v1/tasks/new",
            op,
            Some(json!({"task_id": "other", "saga_id": "s-x", "state": "planned"})),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid_input"));
}

#[tokio::test]
async fn reads_list_stale_reclaim_counts() {
    let app = App::new();
    let op = Some(app.op.as_str());
    app.seed("t1");
    app.seed_leased("t2", "w1");
    app.seed("t3");
    app.store.complete("t3", None, None, &app.ctx()).unwrap();

    let r = app.call("GET", "/v1/tasks?limit=2", op, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["tasks"].as_array().unwrap().len(), 2);
    let cursor = r.json["next_cursor"].as_str().unwrap().to_string();
    let r = app
        .call(
            "GET",
            &format!("/v1/tasks?limit=2&cursor={cursor}"),
            op,
            None,
        )
        .await;
    assert_eq!(r.json["tasks"][0]["task_id"], "t3");
    assert!(r.json["next_cursor"].is_null());

    let r = app
        .call("GET", "/v1/tasks?state=planned,running", op, None)
        .await;
    assert_eq!(r.json["tasks"].as_array().unwrap().len(), 2);
    let r = app
        .call("GET", "/v1/tasks?state=planned&state=completed", op, None)
        .await;
    assert_eq!(r.json["tasks"].as_array().unwrap().len(), 2);
    let r = app.call("GET", "/v1/tasks?owner=w1", op, None).await;
    assert_eq!(r.json["tasks"][0]["task_id"], "t2");
    let r = app
        .call("GET", "/v1/tasks?queue=default&stale=true", op, None)
        .await;
    assert_eq!(r.json["tasks"].as_array().unwrap().len(), 0);

    let r = app.call("GET", "/v1/counts", op, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json,
        json!({"planned": 1, "dispatched": 0, "running": 1, "completed": 1, "failed": 0, "compensated": 0, "quarantined": 0})
    );

    // 61 s later the lease is stale
    app.clock.advance_ms(61_000);
    let r = app.call("GET", "/v1/stale", op, None).await;
    assert_eq!(r.json.as_array().unwrap().len(), 1);
    let r = app.call("GET", "/v1/tasks?stale=true", op, None).await;
    assert_eq!(r.json["tasks"][0]["task_id"], "t2");
    let r = app
        .call("POST", "/v1/reclaim", op, Some(json!({"max_attempts": 3})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json[0]["state"], "dispatched");
    let h = app.call("GET", "/v1/tasks/t2/history", op, None).await;
    assert_eq!(
        h.json.as_array().unwrap().last().unwrap()["kind"],
        "expired"
    );
    assert_eq!(h.json.as_array().unwrap().last().unwrap()["actor"], "op");
    let r = app.call("GET", "/v1/stale", op, None).await;
    assert_eq!(r.json, json!([]));

    // One task at a time: not stale → lease_conflict; stale → reclaimed, quarantined past max.
    app.seed_leased("t4", "w1");
    let r = app.call("POST", "/v1/tasks/t4/reclaim", op, None).await;
    assert_eq!((r.status, r.code()), (409, "lease_conflict"), "{}", r.text);
    app.clock.advance_ms(60_000);
    let r = app
        .call(
            "POST",
            "/v1/tasks/t4/reclaim",
            op,
            Some(json!({"max_attempts": 1})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["state"], "quarantined");
}

#[tokio::test]
async fn operational_endpoints() {
    let app = App::new();
    app.seed_leased("m1", "w1");
    let r = app.call("GET", "/healthz", None, None).await;
    assert_eq!((r.status, r.json["status"].as_str()), (200, Some("ok")));
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!((r.status, r.json["status"].as_str()), (200, Some("ready")));
    let r = app.call("GET", "/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    assert!(r.json["paths"]["/v1/claim"]["post"].is_object());
    // The console owns `/`: without a console session it sends you to log in.
    let r = app.call("GET", "/", None, None).await;
    assert_eq!(r.status, 303);
    let r = app.call("GET", "/login", None, None).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("Leasehold"));

    // A conflict, then the metrics show it, the gauges and a latency histogram.
    let r = app
        .call(
            "POST",
            "/v1/tasks/m1/lease",
            Some(&app.w2),
            Some(json!({"ttl_ms": 1000})),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "lease_conflict"));
    let r = app.call("GET", "/metrics", Some(&app.reader), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    for needle in [
        "leasehold_tasks{state=\"running\"} 1",
        "leasehold_tasks_in_flight{queue=\"default\",state=\"running\"} 1",
        "leasehold_tasks_stale 0",
        "leasehold_operations_total{op=\"acquire_lease\",outcome=\"lease_conflict\"} 1",
        "leasehold_lease_conflicts_total 1",
        "leasehold_reclaims_total{to=\"dispatched\"} 0",
        "leasehold_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/tasks/{id}/lease\"} 1",
    ] {
        assert!(r.text.contains(needle), "metrics lack {needle}:\n{}", r.text);
    }
    // Every response carries a request id.
    assert!(r.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn no_tokens_means_everyone_is_an_operator_named_operator() {
    let app = App::open();
    let r = app
        .call(
            "POST",
            "/v1/tasks",
            None,
            Some(json!({"task_id": "o", "saga_id": "so"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let h = app.call("GET", "/v1/tasks/o/history", None, None).await;
    assert_eq!(h.json[0]["actor"], "operator");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_problems() {
    let app = App::new();
    let r = app.call("GET", "/v2/nothing", None, None).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let r = app.call("DELETE", "/v1/tasks/x", Some(&app.op), None).await;
    assert_eq!((r.status, r.code()), (405, "invalid_input"));
}

#[tokio::test]
async fn client_clock_is_ignored_unless_trusted() {
    let app = App::new();
    app.seed("c1");
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/v1/tasks/c1/lease")
        .header("authorization", format!("Bearer {}", app.w1))
        .header("content-type", "application/json")
        .header("x-leasehold-at", "2030-01-01T00:00:00Z")
        .header("x-leasehold-actor", "mallory")
        .body(axum::body::Body::from(r#"{"ttl_ms": 1000}"#))
        .unwrap();
    let r = app.raw(req).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["lease_acquired_at"], T0, "server clock decides");
    // expires_at is refused from an untrusting server.
    app.seed("c2");
    let r = app
        .call(
            "POST",
            "/v1/tasks/c2/lease",
            Some(&app.w1),
            Some(json!({"expires_at": "2030-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid_input"));
}

#[tokio::test]
async fn trusted_client_clock_sets_time_and_actor() {
    let mut app = App::new();
    let mut state = app.state.clone();
    state.trust_client_clock = true;
    app.router = leasehold_server::router(state);
    app.seed("c1");
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/v1/tasks/c1/lease")
        .header("authorization", format!("Bearer {}", app.op))
        .header("content-type", "application/json")
        .header("x-leasehold-at", "2026-06-03T12:00:00+02:00")
        .header("x-leasehold-actor", "harness")
        .body(axum::body::Body::from(
            r#"{"owner": "A", "expires_at": "2026-06-03T10:00:00.5Z"}"#,
        ))
        .unwrap();
    let r = app.raw(req).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["lease_acquired_at"], "2026-06-03T10:00:00Z");
    assert_eq!(r.json["lease_expires_at"], "2026-06-03T10:00:00.500Z");
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/v1/tasks/c1/notes")
        .header("authorization", format!("Bearer {}", app.op))
        .header("content-type", "application/json")
        .header("x-leasehold-actor", "harness")
        .body(axum::body::Body::from(r#"{"note": "n"}"#))
        .unwrap();
    let r = app.raw(req).await;
    assert_eq!(r.json["notes"][0]["author"], "harness", "{}", r.text);
    // A bad x-leasehold-at is invalid_input.
    let req = axum::http::Request::builder()
        .method("GET")
        .uri("/v1/stale")
        .header("authorization", format!("Bearer {}", app.op))
        .header("x-leasehold-at", "2026-06-03T10:00:00")
        .body(axum::body::Body::empty())
        .unwrap();
    let r = app.raw(req).await;
    assert_eq!((r.status, r.code()), (422, "invalid_input"));
}
