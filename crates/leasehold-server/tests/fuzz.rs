//! Hostile input to every route: malformed JSON, wrong types, huge and deep
//! bodies, wrong content types, bad ids, indexes, queries, timestamps and
//! headers. The server must answer a 4xx problem every time — never a 5xx,
//! never a panic — and the store must not change.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::*;

/// (method, path with `{id}` / `{index}`), every route that takes input.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/tasks"),
    ("PUT", "/v1/tasks/{id}"),
    ("POST", "/v1/tasks/{id}/lease"),
    ("POST", "/v1/claim"),
    ("POST", "/v1/tasks/{id}/heartbeat"),
    ("POST", "/v1/tasks/{id}/release"),
    ("POST", "/v1/tasks/{id}/complete"),
    ("POST", "/v1/tasks/{id}/compensate"),
    ("POST", "/v1/tasks/{id}/fail"),
    ("POST", "/v1/tasks/{id}/quarantine"),
    ("POST", "/v1/tasks/{id}/notes"),
    ("POST", "/v1/tasks/{id}/compensations/{index}"),
    ("POST", "/v1/reclaim"),
    ("POST", "/v1/tasks/{id}/reclaim"),
    ("POST", "/v1/heartbeats"),
    ("POST", "/v1/completions"),
];

/// Read-only or body-less routes: fuzzed through ids and queries.
const ID_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/tasks/{id}"),
    ("GET", "/v1/tasks/{id}/history"),
    ("POST", "/v1/tasks/{id}/dispatch"),
];

fn bad_bodies() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = vec![
        ("truncated".into(), br#"{"task_id": "#.to_vec()),
        ("not json".into(), b"hello".to_vec()),
        ("array".into(), b"[1,2,3]".to_vec()),
        ("null".into(), b"null".to_vec()),
        ("string".into(), br#""str""#.to_vec()),
        ("number".into(), b"12".to_vec()),
        ("bad utf8".into(), vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}']),
        (
            "wrong types".into(),
            br#"{"task_id": 5, "saga_id": [], "ttl_ms": "x", "token": "y", "reason": 5, "note": {}, "status": 1, "owner": 7, "max_attempts": -1, "limit": "all", "queues": "q"}"#.to_vec(),
        ),
        (
            "negative and huge numbers".into(),
            br#"{"task_id": "n1", "saga_id": "n1", "ttl_ms": -5, "token": -1, "priority": 99999999999, "limit": 0, "max_attempts": 0, "reason": "r", "note": "n", "status": "applied"}"#.to_vec(),
        ),
        (
            "ttl out of range".into(),
            br#"{"task_id": "n2", "saga_id": "n2", "ttl_ms": 99, "token": 1, "reason": "r", "note": "", "status": "exploded", "limit": 1001}"#.to_vec(),
        ),
        (
            "ttl too long".into(),
            br#"{"task_id": "n3", "saga_id": "n3", "state": "sleeping", "ttl_ms": 86400001, "token": 1, "reason": "", "status": "bogus", "max_attempts": 0}"#.to_vec(),
        ),
        (
            "timestamp without offset".into(),
            br#"{"task_id": "n4", "saga_id": "n4", "state": "planned", "created_at": "2026-06-03T10:00:00", "expires_at": "2026-06-03T10:00:00", "ttl_ms": 1000, "token": 1, "status": "pending "}"#.to_vec(),
        ),
        (
            "unknown fields".into(),
            br#"{"task_id": "n5", "saga_id": "n5", "owner": "", "bogus": true, "ttl_ms": 1000, "token": 1, "reason": "r", "note": "n", "status": "applied", "state": "planned", "metadata": [1]}"#.to_vec(),
        ),
        (
            "bad ids in body".into(),
            br#"{"task_id": "has space", "saga_id": "\u0000", "queue": "x y", "queues": ["a b"], "ttl_ms": 1000, "token": 1, "owner": "\n", "reason": "\u0000", "note": " ", "status": "applied", "state": "planned"}"#.to_vec(),
        ),
    ];
    // Deep nesting must be refused by the parser's recursion limit, not blow the stack.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    v.push(("deeply nested".into(), deep.into_bytes()));
    // Huge: over the body limit.
    let huge = format!(
        r#"{{"task_id": "h", "saga_id": "h", "metadata": {{"k": "{}"}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    v.push(("huge".into(), huge.into_bytes()));
    // Large but under the limit: metadata over 64 KiB (core rejects).
    let big_meta = format!(
        r#"{{"task_id": "b", "saga_id": "b", "state": "planned", "metadata": {{"k": "{}"}}, "ttl_ms": 1000, "token": 1, "reason": "{}", "note": "{}", "status": "applied", "detail": "{}"}}"#,
        "x".repeat(70 * 1024),
        "r".repeat(17 * 1024),
        "n".repeat(17 * 1024),
        "d".repeat(17 * 1024)
    );
    v.push(("over field limits".into(), big_meta.into_bytes()));
    v
}

const BAD_IDS: &[&str] = &[
    "has%20space",
    "%FF%FE",
    "%C3%A9",
    "%00",
    "a%3Fb",
    "%E2%80%8B",
    "a%0Ab",
];

fn long_id() -> String {
    "x".repeat(129)
}

async fn expect_rejected(app: &App, req: Request<Body>, what: &str) -> Resp {
    let r = app.raw(req).await;
    assert!(
        (400..500).contains(&r.status),
        "{what}: expected a 4xx, got {} {}",
        r.status,
        r.text.chars().take(300).collect::<String>()
    );
    assert_eq!(
        r.headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/problem+json"),
        "{what}"
    );
    assert!(!r.code().is_empty(), "{what}: problem has a code");
    r
}

fn setup() -> App {
    let app = App::new();
    app.seed_leased("own", "w1");
    app.seed("free");
    app
}

#[tokio::test]
async fn malformed_bodies_to_every_route() {
    let app = setup();
    let before = app.snapshot();
    let bodies = bad_bodies();
    let mut sent = 0;
    for (method, route) in ROUTES {
        let path = route.replace("{id}", "own").replace("{index}", "0");
        for (name, body) in &bodies {
            for token in [app.op.as_str(), app.w1.as_str()] {
                let req = Request::builder()
                    .method(*method)
                    .uri(&path)
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(Body::from(body.clone()))
                    .unwrap();
                let r = expect_rejected(&app, req, &format!("{method} {route} {name}")).await;
                if name == "huge" && token == app.op {
                    assert_eq!(r.status, 413, "{method} {route}: {}", r.text);
                    assert_eq!(r.code(), "invalid_input");
                }
                sent += 1;
            }
        }
        assert_eq!(app.snapshot(), before, "{method} {route} changed the store");
    }
    assert_eq!(sent, ROUTES.len() * bodies.len() * 2);
}

#[tokio::test]
async fn wrong_content_type_is_415_invalid_input() {
    let app = setup();
    let before = app.snapshot();
    for (method, route) in ROUTES {
        let path = route.replace("{id}", "own").replace("{index}", "0");
        for ct in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let mut req = Request::builder()
                .method(*method)
                .uri(&path)
                .header("authorization", format!("Bearer {}", app.op));
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            let req = req
                .body(Body::from(r#"{"reason": "r", "token": 1, "ttl_ms": 1000}"#))
                .unwrap();
            let r = expect_rejected(&app, req, &format!("{method} {route} {ct:?}")).await;
            assert_eq!(
                (r.status, r.code()),
                (415, "invalid_input"),
                "{method} {route}"
            );
        }
    }
    assert_eq!(app.snapshot(), before);
}

#[tokio::test]
async fn bad_ids_and_indexes_in_paths() {
    let app = setup();
    let before = app.snapshot();
    let long = long_id();
    let mut ids: Vec<&str> = BAD_IDS.to_vec();
    ids.push(&long);
    for (method, route) in ROUTES.iter().chain(ID_ROUTES) {
        if !route.contains("{id}") {
            continue;
        }
        for id in &ids {
            let path = route.replace("{id}", id).replace("{index}", "0");
            let req = Request::builder()
                .method(*method)
                .uri(&path)
                .header("authorization", format!("Bearer {}", app.op))
                .header("content-type", "application/json")
                .body(Body::from(r#"{"reason": "r", "token": 1, "ttl_ms": 1000, "note": "n", "status": "applied"}"#))
                .unwrap();
            let r = expect_rejected(&app, req, &format!("{method} {path}")).await;
            // Text that is not a valid id names no task: not_found, as the library
            // answers get/apply; not UTF-8 is invalid_input; PUT validates like create.
            let expected = if *method == "PUT" || id.starts_with("%FF") {
                "invalid_input"
            } else {
                "not_found"
            };
            assert_eq!(r.code(), expected, "{method} {path}: {}", r.text);
        }
    }
    for index in ["abc", "-1", "99999999999999999999999999", "1.5", "5"] {
        let path = format!("/v1/tasks/own/compensations/{index}");
        let req = Request::builder()
            .method("POST")
            .uri(&path)
            .header("authorization", format!("Bearer {}", app.op))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"status": "applied"}"#))
            .unwrap();
        let r = expect_rejected(&app, req, &path).await;
        assert_eq!((r.status, r.code()), (422, "invalid_input"), "{path}");
    }
    // Missing tasks are not_found, still without change.
    let r = app.call("GET", "/v1/tasks/nope", Some(&app.op), None).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    assert!(r.json["detail"].as_str().unwrap().contains("nope"));
    assert_eq!(app.snapshot(), before);
}

#[tokio::test]
async fn bad_queries_and_headers() {
    let app = setup();
    let before = app.snapshot();
    for q in [
        "limit=abc",
        "limit=100000",
        "limit=-1",
        "state=nope",
        "state=planned,,bogus",
        "cursor=zzz",
        "stale=maybe",
        "unknown=1",
        "queue=has%20space",
        "owner=%0A",
    ] {
        let r = app
            .call("GET", &format!("/v1/tasks?{q}"), Some(&app.op), None)
            .await;
        assert_eq!(
            (r.status, r.code()),
            (422, "invalid_input"),
            "?{q}: {}",
            r.text
        );
    }
    // Broken Authorization headers are 401s, not crashes.
    for auth in ["Bearer", "Bearer ", "bearer lh_x y", "Token abc", "\u{7f}"] {
        let req = Request::builder()
            .uri("/v1/counts")
            .header("authorization", auth.as_bytes())
            .body(Body::empty());
        if let Ok(req) = req {
            let r = app.raw(req).await;
            assert_eq!(r.status, 401, "{auth:?}");
        }
    }
    assert_eq!(app.snapshot(), before);
}

/// Bodies that are JSON objects of roughly the right shape but wrong in one
/// place: every one is refused as a whole (422 `invalid_input`) and nothing
/// changes — a batch is never partly applied because its body was bad.
#[tokio::test]
async fn malformed_batch_bodies() {
    let app = setup();
    let before = app.snapshot();
    let lease = r#"{"task_id": "own", "token": 1}"#;
    let over = format!(
        r#"{{"leases": [{}], EXTRA}}"#,
        vec![lease; leasehold_core::limits::BATCH_ITEMS_MAX + 1].join(",")
    );
    // `EXTRA` is the route's own valid field: `ttl_ms` or `reason`.
    let cases: Vec<(&str, String)> = vec![
        ("no leases", r#"{EXTRA}"#.into()),
        (
            "leases not a list",
            r#"{"leases": {"task_id": "own"}, EXTRA}"#.into(),
        ),
        ("leases null", r#"{"leases": null, EXTRA}"#.into()),
        ("item not an object", r#"{"leases": ["own"], EXTRA}"#.into()),
        (
            "item without token",
            r#"{"leases": [{"task_id": "own"}], EXTRA}"#.into(),
        ),
        (
            "item without id",
            r#"{"leases": [{"token": 1}], EXTRA}"#.into(),
        ),
        (
            "negative token",
            r#"{"leases": [{"task_id": "own", "token": -1}], EXTRA}"#.into(),
        ),
        (
            "token as text",
            r#"{"leases": [{"task_id": "own", "token": "1"}], EXTRA}"#.into(),
        ),
        (
            "id as number",
            r#"{"leases": [{"task_id": 7, "token": 1}], EXTRA}"#.into(),
        ),
        (
            "owner as number",
            r#"{"leases": [{"task_id": "own", "owner": 1, "token": 1}], EXTRA}"#.into(),
        ),
        (
            "unknown item field",
            r#"{"leases": [{"task_id": "own", "token": 1, "ttl_ms": 5}], EXTRA}"#.into(),
        ),
        (
            "one good item then junk",
            format!(r#"{{"leases": [{lease}, 5], EXTRA}}"#),
        ),
        ("over the item limit", over),
    ];
    let heartbeat_only: Vec<(&str, String)> = vec![
        ("no ttl", format!(r#"{{"leases": [{lease}]}}"#)),
        (
            "ttl too short",
            format!(r#"{{"leases": [{lease}], "ttl_ms": 99}}"#),
        ),
        (
            "ttl too long",
            format!(r#"{{"leases": [{lease}], "ttl_ms": 86400001}}"#),
        ),
        (
            "ttl negative",
            format!(r#"{{"leases": [{lease}], "ttl_ms": -1}}"#),
        ),
        (
            "expires_at without a trusting server",
            format!(r#"{{"leases": [{lease}], "expires_at": "2026-06-03T10:05:00Z"}}"#),
        ),
        (
            "reason on heartbeats",
            format!(r#"{{"leases": [{lease}], "ttl_ms": 1000, "reason": "r"}}"#),
        ),
    ];
    let completion_only: Vec<(&str, String)> = vec![
        (
            "ttl on completions",
            format!(r#"{{"leases": [{lease}], "ttl_ms": 1000}}"#),
        ),
        (
            "reason as number",
            format!(r#"{{"leases": [{lease}], "reason": 5}}"#),
        ),
    ];
    let mut sent = 0;
    for (route, extra_field, extra_cases) in [
        ("/v1/heartbeats", r#""ttl_ms": 1000"#, &heartbeat_only),
        ("/v1/completions", r#""reason": "r""#, &completion_only),
    ] {
        for (name, body) in cases.iter().chain(extra_cases.iter()) {
            let body = body.replace("EXTRA", extra_field);
            for token in [app.op.as_str(), app.w1.as_str()] {
                let req = Request::builder()
                    .method("POST")
                    .uri(route)
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(Body::from(body.clone()))
                    .unwrap();
                let r = expect_rejected(&app, req, &format!("POST {route} {name}")).await;
                assert_eq!(
                    (r.status, r.code()),
                    (422, "invalid_input"),
                    "POST {route} {name}: {}",
                    r.text
                );
                sent += 1;
            }
        }
        assert_eq!(app.snapshot(), before, "POST {route} changed the store");
    }
    assert_eq!(
        sent,
        2 * (2 * cases.len() + heartbeat_only.len() + completion_only.len())
    );
}
