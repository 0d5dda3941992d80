//! The batch routes, `POST /v1/heartbeats` and `POST /v1/completions`,
//! driven through the router: one result per item in order, a rejected item
//! changes nothing and does not affect the others, per-item `forbidden` for
//! a worker token, a batch over the limit applies nothing, and every item is
//! counted in the metrics.

mod common;

use common::*;
use leasehold_core::{Store, Task};
use serde_json::{json, Value};

fn task(app: &App, id: &str) -> Task {
    app.store.require(id).unwrap()
}

/// Per item: `Ok(task_id)` for an applied item, `Err(code)` for a rejected one.
fn outcomes(r: &Resp) -> Vec<Result<String, String>> {
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {}", r.text))
        .iter()
        .map(|item| match (item.get("task"), item.get("error")) {
            (Some(t), None) => Ok(t["task_id"].as_str().unwrap().to_string()),
            (None, Some(e)) => {
                assert!(
                    !e["message"].as_str().unwrap().is_empty(),
                    "item error without a message: {item}"
                );
                Err(e["code"].as_str().unwrap().to_string())
            }
            _ => panic!("an item must carry exactly one of task, error: {item}"),
        })
        .collect()
}

fn ok(id: &str) -> Result<String, String> {
    Ok(id.to_string())
}

fn err(code: &str) -> Result<String, String> {
    Err(code.to_string())
}

#[tokio::test]
async fn heartbeats_judge_each_item_in_order() {
    let app = App::new();
    app.seed_leased("a", "w1");
    app.seed_leased("b", "w1");
    app.seed("c");
    app.seed_leased("d", "w2");
    let b_before = (task(&app, "b"), app.store.history("b").unwrap());
    let c_before = (task(&app, "c"), app.store.history("c").unwrap());
    let body = json!({"ttl_ms": 120000, "leases": [
        {"task_id": "a", "owner": "w1", "token": 1},
        {"task_id": "b", "owner": "w1", "token": 7},
        {"task_id": "missing", "owner": "w1", "token": 1},
        {"task_id": "c", "owner": "w1", "token": 1},
        {"task_id": "has space", "owner": "w1", "token": 1},
        {"task_id": "d", "owner": "w2", "token": 1},
    ]});
    let r = app
        .call("POST", "/v1/heartbeats", Some(&app.op), Some(body))
        .await;
    assert_eq!(
        outcomes(&r),
        [
            ok("a"),
            err("lease_conflict"),
            err("not_found"),
            err("lease_conflict"),
            err("not_found"),
            ok("d"),
        ]
    );
    let expected_expiry = t0().checked_add_micros(120_000_000).unwrap();
    for id in ["a", "d"] {
        let t = task(&app, id);
        assert_eq!(t.lease_expires_at, Some(expected_expiry), "{id}");
        // The reply carries the task exactly as stored.
        let i = if id == "a" { 0 } else { 5 };
        let replied: Task = serde_json::from_value(r.json["results"][i]["task"].clone()).unwrap();
        assert_eq!(replied, t);
    }
    assert_eq!((task(&app, "b"), app.store.history("b").unwrap()), b_before);
    assert_eq!((task(&app, "c"), app.store.history("c").unwrap()), c_before);
    assert!(app.store.get("missing").unwrap().is_none());
    // The message names the task and what was expected.
    let m = r.json["results"][1]["error"]["message"].as_str().unwrap();
    assert!(m.contains("\"b\""), "{m}");
}

#[tokio::test]
async fn completions_complete_each_fenced_item_and_leave_the_rest() {
    let app = App::new();
    app.seed_leased("x", "w1");
    app.seed_leased("y", "w1");
    app.seed_leased("z", "w1");
    let z_before = (task(&app, "z"), app.store.history("z").unwrap());
    let body = json!({"reason": "batch done", "leases": [
        {"task_id": "x", "owner": "w1", "token": 1},
        {"task_id": "z", "owner": "w1", "token": 9},
        {"task_id": "y", "owner": "w1", "token": 1},
        {"task_id": "x", "owner": "w1", "token": 1},
    ]});
    let r = app
        .call("POST", "/v1/completions", Some(&app.op), Some(body))
        .await;
    // The second `x` sees the first one's effect: the task is terminal now.
    assert_eq!(
        outcomes(&r),
        [ok("x"), err("lease_conflict"), ok("y"), err("terminal")]
    );
    for id in ["x", "y"] {
        let t = task(&app, id);
        assert_eq!(t.state.as_str(), "completed");
        assert_eq!(t.terminal_reason.as_deref(), Some("batch done"));
    }
    assert_eq!((task(&app, "z"), app.store.history("z").unwrap()), z_before);
}

#[tokio::test]
async fn a_worker_token_is_judged_per_item() {
    let app = App::new();
    app.seed_leased("own", "w1");
    app.seed_leased("other", "w2");
    app.seed("free");
    let other_before = (task(&app, "other"), app.store.history("other").unwrap());
    // Owner defaults to the token's name; naming another owner, or a task
    // another worker holds, is forbidden for that item only.
    let leases = json!([
        {"task_id": "own", "token": 1},
        {"task_id": "other", "token": 1},
        {"task_id": "other", "owner": "w2", "token": 1},
        {"task_id": "own", "owner": "w2", "token": 1},
        {"task_id": "nope", "token": 1},
        {"task_id": "free", "token": 1},
    ]);
    let r = app
        .call(
            "POST",
            "/v1/heartbeats",
            Some(&app.w1),
            Some(json!({"ttl_ms": 90000, "leases": leases.clone()})),
        )
        .await;
    let expected = [
        ok("own"),
        err("forbidden"),
        err("forbidden"),
        err("forbidden"),
        err("not_found"),
        // Not leased by anyone: the worker may try; the fence decides.
        err("lease_conflict"),
    ];
    assert_eq!(outcomes(&r), expected);
    let m = r.json["results"][1]["error"]["message"].as_str().unwrap();
    assert!(m.contains("\"other\"") && m.contains("w2"), "{m}");
    assert_eq!(
        task(&app, "own").lease_expires_at,
        Some(t0().checked_add_micros(90_000_000).unwrap())
    );
    let r = app
        .call(
            "POST",
            "/v1/completions",
            Some(&app.w1),
            Some(json!({"leases": leases})),
        )
        .await;
    assert_eq!(outcomes(&r), expected);
    assert_eq!(task(&app, "own").state.as_str(), "completed");
    assert_eq!(
        app.store.history("own").unwrap().last().unwrap().actor,
        "w1"
    );
    assert_eq!(
        (task(&app, "other"), app.store.history("other").unwrap()),
        other_before
    );
    // The operator may present any owner.
    let r = app
        .call(
            "POST",
            "/v1/completions",
            Some(&app.op),
            Some(json!({"leases": [{"task_id": "other", "owner": "w2", "token": 1}]})),
        )
        .await;
    assert_eq!(outcomes(&r), [ok("other")]);
}

#[tokio::test]
async fn a_batch_over_the_limit_or_from_a_reader_applies_nothing() {
    let app = App::new();
    app.seed_leased("own", "w1");
    let before = app.snapshot();
    let n = leasehold_core::limits::BATCH_ITEMS_MAX;
    let leases = |count: usize| -> Value {
        (0..count)
            .map(|_| json!({"task_id": "own", "owner": "w1", "token": 1}))
            .collect()
    };
    for (route, extra) in [
        ("/v1/heartbeats", json!({"ttl_ms": 120000})),
        ("/v1/completions", json!({"reason": "r"})),
    ] {
        let mut body = extra.clone();
        body["leases"] = leases(n + 1);
        let r = app.call("POST", route, Some(&app.op), Some(body)).await;
        assert_eq!((r.status, r.code()), (422, "invalid_input"), "{route}");
        let detail = r.json["detail"].as_str().unwrap();
        assert!(
            detail.contains(&n.to_string()) && detail.contains(&(n + 1).to_string()),
            "{detail}"
        );
        assert_eq!(
            app.snapshot(),
            before,
            "{route} over the limit changed the store"
        );
        let mut body = extra.clone();
        body["leases"] = leases(1);
        let r = app.call("POST", route, Some(&app.reader), Some(body)).await;
        assert_eq!((r.status, r.code()), (403, "forbidden"), "{route}");
        assert_eq!(
            app.snapshot(),
            before,
            "{route} as reader changed the store"
        );
    }
    // Exactly at the limit is accepted: every heartbeat of the same lease applies.
    let r = app
        .call(
            "POST",
            "/v1/heartbeats",
            Some(&app.op),
            Some(json!({"ttl_ms": 120000, "leases": leases(n)})),
        )
        .await;
    let got = outcomes(&r);
    assert_eq!(got.len(), n);
    // The first extends the lease; the others ask for the same expiry, which
    // does not extend it, so the state machine refuses them.
    assert_eq!(got[0], ok("own"));
    assert!(got[1..].iter().all(|g| *g == err("lease_conflict")));
}

#[tokio::test]
async fn an_empty_batch_answers_no_results() {
    let app = App::new();
    for (route, body) in [
        ("/v1/heartbeats", json!({"leases": [], "ttl_ms": 1000})),
        ("/v1/completions", json!({"leases": []})),
    ] {
        let r = app.call("POST", route, Some(&app.w1), Some(body)).await;
        assert_eq!(r.status, 200, "{route}: {}", r.text);
        assert_eq!(r.json, json!({"results": []}));
    }
}

#[tokio::test]
async fn every_item_is_counted_in_the_metrics() {
    let app = App::new();
    app.seed_leased("own", "w1");
    app.seed_leased("other", "w2");
    let r = app
        .call(
            "POST",
            "/v1/heartbeats",
            Some(&app.w1),
            Some(json!({"ttl_ms": 90000, "leases": [
                {"task_id": "own", "token": 1},
                {"task_id": "own", "token": 5},
                {"task_id": "other", "token": 1},
            ]})),
        )
        .await;
    assert_eq!(
        outcomes(&r),
        [ok("own"), err("lease_conflict"), err("forbidden")]
    );
    let r = app
        .call(
            "POST",
            "/v1/completions",
            Some(&app.w1),
            Some(json!({"leases": [{"task_id": "own", "token": 1}]})),
        )
        .await;
    assert_eq!(outcomes(&r), [ok("own")]);
    let m = app.call("GET", "/metrics", Some(&app.op), None).await.text;
    for line in [
        r#"leasehold_operations_total{op="heartbeat_many",outcome="ok"} 1"#,
        r#"leasehold_operations_total{op="heartbeat_many",outcome="lease_conflict"} 1"#,
        r#"leasehold_operations_total{op="heartbeat_many",outcome="forbidden"} 1"#,
        r#"leasehold_operations_total{op="complete_many",outcome="ok"} 1"#,
        r#"leasehold_http_requests_total{method="POST",route="/v1/heartbeats",status="200"} 1"#,
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line}:\n{m}");
    }
    assert!(m.contains("leasehold_lease_conflicts_total 1"), "{m}");
}

#[tokio::test]
async fn with_a_trusting_server_the_expiry_may_be_an_instant() {
    // Tests only (`trust_client_clock`), as on the single heartbeat route.
    let mut app = App::new();
    app.state.trust_client_clock = true;
    app.router = leasehold_server::router(app.state.clone());
    app.seed_leased("own", "w1");
    let until = "2026-06-03T10:05:00.000123Z";
    let r = app
        .call(
            "POST",
            "/v1/heartbeats",
            Some(&app.w1),
            Some(json!({"expires_at": until, "leases": [{"task_id": "own", "token": 1}]})),
        )
        .await;
    assert_eq!(outcomes(&r), [ok("own")]);
    assert_eq!(
        task(&app, "own").lease_expires_at,
        Some(leasehold_core::Timestamp::parse(until).unwrap())
    );
    let r = app
        .call(
            "POST",
            "/v1/heartbeats",
            Some(&app.w1),
            Some(json!({"expires_at": until, "ttl_ms": 1000, "leases": []})),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid_input"));
}

#[tokio::test]
async fn the_openapi_document_describes_both_routes_and_their_shapes() {
    let app = App::new();
    let doc = app.call("GET", "/openapi.json", None, None).await.json;
    for path in ["/v1/heartbeats", "/v1/completions"] {
        let op = &doc["paths"][path]["post"];
        assert!(op["requestBody"].is_object(), "{path}: {op}");
        assert!(op["responses"]["200"].is_object(), "{path}: {op}");
    }
    let schemas = &doc["components"]["schemas"];
    for name in [
        "HeartbeatsBody",
        "CompletionsBody",
        "BatchLease",
        "BatchReply",
        "BatchItemResult",
        "ItemError",
    ] {
        assert!(schemas[name].is_object(), "schema {name} missing");
    }
    let item = &schemas["BatchItemResult"]["properties"];
    assert!(
        item["task"].is_object() && item["error"].is_object(),
        "{item}"
    );
}
