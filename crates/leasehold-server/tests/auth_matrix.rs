//! The auth matrix: every route × every kind of caller, with the expected
//! status in one table. Every cell runs on a fresh app, so no cell depends on
//! another. Setup for every cell: `own` leased by w1 (token 1), `other` leased
//! by w2 (token 1), `free` planned; each has one compensation.

mod common;

use common::*;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    NoToken,
    BadToken,
    Reader,
    /// w1 acting on its own lease (or as itself).
    WorkerOwn,
    /// w1 acting on w2's lease (or as w2).
    WorkerOther,
    Operator,
}

const WHO: [Who; 6] = [
    Who::NoToken,
    Who::BadToken,
    Who::Reader,
    Who::WorkerOwn,
    Who::WorkerOther,
    Who::Operator,
];

/// (method, route template, expected status for NoToken, BadToken, Reader, WorkerOwn, WorkerOther, Operator).
const MATRIX: &[(&str, &str, [u16; 6])] = &[
    ("GET", "/healthz", [200, 200, 200, 200, 200, 200]),
    ("GET", "/readyz", [200, 200, 200, 200, 200, 200]),
    ("GET", "/openapi.json", [200, 200, 200, 200, 200, 200]),
    ("GET", "/metrics", [401, 401, 200, 200, 200, 200]),
    ("POST", "/v1/tasks", [401, 401, 403, 403, 403, 201]),
    ("GET", "/v1/tasks", [401, 401, 200, 200, 200, 200]),
    ("GET", "/v1/tasks/{id}", [401, 401, 200, 200, 200, 200]),
    ("PUT", "/v1/tasks/{id}", [401, 401, 403, 403, 403, 200]),
    (
        "POST",
        "/v1/tasks/{id}/dispatch",
        [401, 401, 403, 403, 403, 200],
    ),
    // A worker leases as itself; a task another worker holds is a lease_conflict, not a permission problem.
    (
        "POST",
        "/v1/tasks/{id}/lease",
        [401, 401, 403, 200, 409, 200],
    ),
    ("POST", "/v1/claim", [401, 401, 403, 200, 403, 200]),
    (
        "POST",
        "/v1/tasks/{id}/heartbeat",
        [401, 401, 403, 200, 403, 200],
    ),
    (
        "POST",
        "/v1/tasks/{id}/release",
        [401, 401, 403, 200, 403, 200],
    ),
    (
        "POST",
        "/v1/tasks/{id}/complete",
        [401, 401, 403, 200, 403, 200],
    ),
    (
        "POST",
        "/v1/tasks/{id}/compensate",
        [401, 401, 403, 200, 403, 200],
    ),
    (
        "POST",
        "/v1/tasks/{id}/fail",
        [401, 401, 403, 200, 403, 200],
    ),
    (
        "POST",
        "/v1/tasks/{id}/quarantine",
        [401, 401, 403, 200, 403, 200],
    ),
    (
        "POST",
        "/v1/tasks/{id}/notes",
        [401, 401, 403, 200, 403, 200],
    ),
    (
        "POST",
        "/v1/tasks/{id}/compensations/{index}",
        [401, 401, 403, 200, 403, 200],
    ),
    (
        "GET",
        "/v1/tasks/{id}/history",
        [401, 401, 200, 200, 200, 200],
    ),
    ("GET", "/v1/stale", [401, 401, 200, 200, 200, 200]),
    ("POST", "/v1/reclaim", [401, 401, 403, 403, 403, 200]),
    // Operators only; `own` is not stale, so even the operator gets lease_conflict (the rule, not auth).
    (
        "POST",
        "/v1/tasks/{id}/reclaim",
        [401, 401, 403, 403, 403, 409],
    ),
    ("GET", "/v1/counts", [401, 401, 200, 200, 200, 200]),
    // Batch routes: a worker's items are judged one by one, so w1 naming
    // w2's lease gets 200 with a `forbidden` item (checked below), not a 403.
    ("POST", "/v1/heartbeats", [401, 401, 403, 200, 200, 200]),
    ("POST", "/v1/completions", [401, 401, 403, 200, 200, 200]),
];

fn token(app: &App, who: Who) -> Option<String> {
    match who {
        Who::NoToken => None,
        Who::BadToken => {
            Some("lh_0000000000000000000000000000000000000000000000000000000000000000".into())
        }
        Who::Reader => Some(app.reader.clone()),
        Who::WorkerOwn | Who::WorkerOther => Some(app.w1.clone()),
        Who::Operator => Some(app.op.clone()),
    }
}

/// The request a caller makes on a route: the task it targets and the body.
fn request(method: &str, route: &str, who: Who) -> (String, Option<Value>) {
    // Workers on their own lease and operators target `own` (w1, token 1);
    // WorkerOther targets `other` (w2's lease) with w2's token value.
    let id = match who {
        Who::WorkerOther => "other",
        _ => "own",
    };
    let fence = json!({"token": 1});
    let op_fence = json!({"owner": "w1", "token": 1});
    let fence_body = |extra: Value| {
        let mut b = if who == Who::Operator {
            op_fence.clone()
        } else {
            fence.clone()
        };
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        Some(b)
    };
    let path = route.replace("{id}", id).replace("{index}", "0");
    let body = match (method, route) {
        ("POST", "/v1/tasks") => Some(json!({"task_id": "new", "saga_id": "s-new"})),
        ("PUT", _) => {
            // Operators change `free`'s branch; the body is a whole task.
            return (
                "/v1/tasks/free".into(),
                Some(
                    json!({"task_id": "free", "saga_id": "saga-free", "state": "planned", "branch": "b",
                            "compensations": [{"kind": "delete_branch", "target": "free", "reason": "cleanup",
                                               "status": "pending", "updated_at": T0}]}),
                ),
            );
        }
        ("POST", "/v1/tasks/{id}/dispatch") => return ("/v1/tasks/free/dispatch".into(), None),
        ("POST", "/v1/tasks/{id}/lease") => {
            let target = match who {
                Who::WorkerOther => "other",
                _ => "free",
            };
            return (
                format!("/v1/tasks/{target}/lease"),
                Some(json!({"ttl_ms": 1000})),
            );
        }
        ("POST", "/v1/claim") => match who {
            Who::WorkerOther => Some(json!({"owner": "w2", "ttl_ms": 1000})),
            _ => Some(json!({"ttl_ms": 1000})),
        },
        ("POST", "/v1/tasks/{id}/heartbeat") => fence_body(json!({"ttl_ms": 120000})),
        ("POST", "/v1/tasks/{id}/release") => fence_body(json!({})),
        ("POST", "/v1/tasks/{id}/complete") => fence_body(json!({"reason": "ok"})),
        ("POST", "/v1/tasks/{id}/compensate") => fence_body(json!({"reason": "undo"})),
        ("POST", "/v1/tasks/{id}/fail") => fence_body(json!({"reason": "boom"})),
        ("POST", "/v1/tasks/{id}/quarantine") => fence_body(json!({"reason": "odd"})),
        ("POST", "/v1/tasks/{id}/notes") => Some(json!({"note": "hello"})),
        ("POST", "/v1/tasks/{id}/compensations/{index}") => Some(json!({"status": "applied"})),
        ("POST", "/v1/reclaim") | ("POST", "/v1/tasks/{id}/reclaim") => Some(json!({})),
        ("POST", "/v1/heartbeats") => {
            let item = fence_body(json!({"task_id": id})).unwrap();
            Some(json!({"leases": [item], "ttl_ms": 120000}))
        }
        ("POST", "/v1/completions") => {
            let item = fence_body(json!({"task_id": id})).unwrap();
            Some(json!({"leases": [item], "reason": "ok"}))
        }
        _ => None,
    };
    (path, body)
}

#[tokio::test]
async fn every_route_times_every_caller() {
    let mut checked = 0;
    let mut checked_items = 0;
    let mut failures = Vec::new();
    for (method, route, expected) in MATRIX {
        for (i, who) in WHO.iter().enumerate() {
            let app = App::new();
            app.seed_leased("own", "w1");
            app.seed_leased("other", "w2");
            app.seed("free");
            let before = app.snapshot();
            let (path, body) = request(method, route, *who);
            let tok = token(&app, *who);
            let r = app.call(method, &path, tok.as_deref(), body).await;
            checked += 1;
            if r.status != expected[i] {
                failures.push(format!(
                    "{method} {route} as {who:?}: expected {}, got {} {}",
                    expected[i], r.status, r.text
                ));
                continue;
            }
            if r.status >= 400 {
                // Every rejection is a problem with the right code and changes nothing.
                assert_eq!(
                    r.headers["content-type"], "application/problem+json",
                    "{method} {route} {who:?}"
                );
                let code = match r.status {
                    401 => "unauthorized",
                    403 => "forbidden",
                    409 => "lease_conflict",
                    s => panic!("unexpected status {s}"),
                };
                assert_eq!(r.code(), code, "{method} {route} {who:?}: {}", r.text);
                assert_eq!(
                    app.snapshot(),
                    before,
                    "{method} {route} {who:?} changed the store"
                );
            }
            if r.status == 401 {
                assert!(r.headers.contains_key("www-authenticate"));
            }
            if r.status == 200
                && route.starts_with("/v1/")
                && !route.contains("{id}")
                && r.json.get("results").is_some()
            {
                // A batch route's one item: applied to `own`, or forbidden on w2's lease.
                let item = &r.json["results"][0];
                if *who == Who::WorkerOther {
                    assert_eq!(
                        item["error"]["code"], "forbidden",
                        "{method} {route}: {}",
                        r.text
                    );
                    assert_eq!(
                        app.snapshot(),
                        before,
                        "{method} {route} {who:?} changed the store"
                    );
                } else {
                    assert_eq!(
                        item["task"]["task_id"], "own",
                        "{method} {route} {who:?}: {}",
                        r.text
                    );
                }
                checked_items += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, MATRIX.len() * WHO.len());
    // Two batch routes × (WorkerOwn, WorkerOther, Operator).
    assert_eq!(checked_items, 6, "batch items checked");
}

#[tokio::test]
async fn the_matrix_covers_every_route_in_the_openapi_document() {
    let app = App::new();
    let doc = app.call("GET", "/openapi.json", None, None).await.json;
    let mut in_doc: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            in_doc.push((method.to_uppercase(), path.clone()));
        }
    }
    in_doc.sort();
    let mut in_matrix: Vec<(String, String)> = MATRIX
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    in_matrix.sort();
    assert_eq!(in_doc, in_matrix);
}

#[tokio::test]
async fn worker_writes_without_a_fence_are_forbidden() {
    for route in ["complete", "compensate", "fail", "quarantine"] {
        let app = App::new();
        app.seed_leased("own", "w1");
        let before = app.snapshot();
        let r = app
            .call(
                "POST",
                &format!("/v1/tasks/own/{route}"),
                Some(&app.w1),
                Some(json!({"reason": "r"})),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (403, "forbidden"),
            "{route}: {}",
            r.text
        );
        assert!(r.json["detail"].as_str().unwrap().contains("fencing token"));
        assert_eq!(app.snapshot(), before);
    }
}

#[tokio::test]
async fn worker_cannot_act_as_another_owner_or_author() {
    let app = App::new();
    app.seed("free");
    app.seed_leased("own", "w1");
    let r = app
        .call(
            "POST",
            "/v1/tasks/free/lease",
            Some(&app.w1),
            Some(json!({"owner": "w2", "ttl_ms": 1000})),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = app
        .call(
            "POST",
            "/v1/tasks/own/heartbeat",
            Some(&app.w1),
            Some(json!({"owner": "w2", "token": 1, "ttl_ms": 1000})),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = app
        .call(
            "POST",
            "/v1/tasks/own/notes",
            Some(&app.w1),
            Some(json!({"note": "n", "author": "boss"})),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    // Its own name as author is fine.
    let r = app
        .call(
            "POST",
            "/v1/tasks/own/notes",
            Some(&app.w1),
            Some(json!({"note": "n", "author": "w1"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A worker's writes are recorded under its name.
    let h = app
        .call("GET", "/v1/tasks/own/history", Some(&app.reader), None)
        .await;
    assert_eq!(h.json.as_array().unwrap().last().unwrap()["actor"], "w1");
}

#[tokio::test]
async fn worker_on_its_own_task_with_a_stale_token_gets_lease_conflict() {
    let app = App::new();
    app.seed_leased("own", "w1");
    let before = app.snapshot();
    for (route, body) in [
        ("heartbeat", json!({"token": 7, "ttl_ms": 120000})),
        ("release", json!({"token": 7})),
        ("complete", json!({"token": 7})),
        ("fail", json!({"token": 7, "reason": "x"})),
    ] {
        let r = app
            .call(
                "POST",
                &format!("/v1/tasks/own/{route}"),
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
async fn revoked_tokens_stop_working() {
    let app = App::new();
    // An unknown (e.g. revoked) secret with the right shape is 401, and so is a non-bearer scheme.
    let req = axum::http::Request::builder()
        .uri("/v1/counts")
        .header("authorization", format!("Basic {}", app.op))
        .body(axum::body::Body::empty())
        .unwrap();
    let r = app.raw(req).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    let r = app
        .call("GET", "/v1/counts", Some("lh_revoked"), None)
        .await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    // The secret never appears in an answer.
    assert!(!r.text.contains("lh_revoked"));
}

#[tokio::test]
async fn a_token_revoked_in_the_file_is_refused_by_the_running_server() {
    use leasehold_server::tokens;
    let dir = std::env::temp_dir().join(format!("lh-server-tokens-{}", tokens::generate_secret()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokens.json");
    let w = tokens::create_token(&path, "w1", leasehold_server::Role::Worker).unwrap();
    let r = tokens::create_token(&path, "r1", leasehold_server::Role::Reader).unwrap();
    let store = std::sync::Arc::new(leasehold_core::memory::MemoryStore::new());
    let state = leasehold_server::AppState::new(
        store,
        std::sync::Arc::new(leasehold_server::SystemClock),
        std::sync::Arc::new(leasehold_server::TokenStore::from_file(&path).unwrap()),
    );
    let app = leasehold_server::router(state);
    let call = |secret: String| {
        let app = app.clone();
        async move {
            use tower::ServiceExt;
            let req = axum::http::Request::builder()
                .uri("/v1/counts")
                .header("authorization", format!("Bearer {secret}"))
                .body(axum::body::Body::empty())
                .unwrap();
            app.oneshot(req).await.unwrap().status().as_u16()
        }
    };
    assert_eq!(call(w.secret.clone()).await, 200);
    assert_eq!(call(r.secret.clone()).await, 200);
    tokens::revoke_token(&path, "w1").unwrap();
    assert_eq!(call(w.secret.clone()).await, 401, "revoked without restart");
    assert_eq!(call(r.secret.clone()).await, 200, "others unaffected");
    // A corrupted file keeps the last good set instead of opening or closing the server.
    std::fs::write(&path, "{ not json").unwrap();
    assert_eq!(call(r.secret.clone()).await, 200);
    assert_eq!(call(w.secret).await, 401);
    std::fs::remove_dir_all(&dir).unwrap();
}
