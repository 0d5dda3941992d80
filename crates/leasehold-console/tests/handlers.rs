//! The console's handlers, driven with `oneshot` requests (no socket): login
//! and cookie flags, CSRF, roles, actions and their history, pagination and
//! filters in the URL. Time is a fixed instant injected through the clock.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use leasehold_console::{router, ConsoleState, Principal, Role, StaticAuth};
use leasehold_core::memory::MemoryStore;
use leasehold_core::{Context, HistoryKind, NewCompensation, NewTask, Store, TaskState, Timestamp};
use tower::ServiceExt;

const OPERATOR: &str = "lh_operator_secret";
const READER: &str = "lh_reader_secret";

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn t0() -> Timestamp {
    ts("2026-06-03T10:00:00Z")
}

struct Env {
    store: Arc<MemoryStore>,
    app: Router,
}

fn env_with(auth: bool) -> Env {
    let store = Arc::new(MemoryStore::new());
    let auth: Option<Arc<dyn leasehold_console::ConsoleAuth>> = auth.then(|| {
        Arc::new(
            StaticAuth::new()
                .with(OPERATOR, Principal::new("alice-ops", Role::Operator))
                .with(READER, Principal::new("bob-reader", Role::Reader)),
        ) as Arc<dyn leasehold_console::ConsoleAuth>
    });
    let state = ConsoleState::new(store.clone(), auth, Arc::new(t0)).with_max_attempts(3);
    Env {
        store,
        app: router(state),
    }
}

fn env() -> Env {
    env_with(true)
}

fn ctx(at: &str) -> Context {
    Context::new(ts(at), "seed")
}

/// A running task whose lease is live at t0 (expires 10:05).
fn seed_running(store: &MemoryStore, id: &str, queue: &str, owner: &str) {
    let mut n = NewTask::new(id, format!("saga-{id}"));
    n.queue = Some(queue.to_string());
    n.branch = Some(format!("feat/{id}"));
    store.create(n, &ctx("2026-06-03T09:00:00Z")).unwrap();
    store
        .acquire_lease(
            id,
            owner,
            ts("2026-06-03T10:05:00Z"),
            &ctx("2026-06-03T09:59:00Z"),
        )
        .unwrap();
}

/// A running task whose lease expired before t0 (at 09:58).
fn seed_stale(store: &MemoryStore, id: &str, owner: &str) {
    store
        .create(
            NewTask::new(id, format!("saga-{id}")),
            &ctx("2026-06-03T09:00:00Z"),
        )
        .unwrap();
    store
        .acquire_lease(
            id,
            owner,
            ts("2026-06-03T09:58:00Z"),
            &ctx("2026-06-03T09:57:00Z"),
        )
        .unwrap();
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(app: &Router, uri: &str, cookie: Option<&str>) -> Reply {
    let mut b = Request::get(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    send(app, b.body(Body::empty()).unwrap()).await
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

async fn post(app: &Router, uri: &str, cookie: Option<&str>, pairs: &[(&str, &str)]) -> Reply {
    let mut b =
        Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    send(app, b.body(Body::from(form(pairs))).unwrap()).await
}

/// Log in; returns the `name=value` cookie to send back.
async fn login(app: &Router, secret: &str) -> String {
    let r = post(app, "/login", None, &[("token", secret), ("next", "/")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

/// The CSRF token embedded in a page's forms.
fn csrf_of(body: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = body.find(marker).expect("page has a csrf field") + marker.len();
    body[start..].split('"').next().unwrap().to_string()
}

async fn session(app: &Router, secret: &str) -> (String, String) {
    let cookie = login(app, secret).await;
    let page = get(app, "/", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = csrf_of(&page.body);
    (cookie, csrf)
}

fn task_ids_in(body: &str) -> Vec<String> {
    body.split(r#"<tr data-task=""#)
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect()
}

fn next_link(body: &str) -> Option<String> {
    let marker = r#"id="next-page" href=""#;
    let start = body.find(marker)? + marker.len();
    Some(
        body[start..]
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&"),
    )
}

#[tokio::test]
async fn login_sets_an_httponly_strict_session_cookie() {
    let e = env();
    let r = post(
        &e.app,
        "/login",
        None,
        &[("token", OPERATOR), ("next", "/tasks?queue=a")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/tasks?queue=a");
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set.starts_with("lh_console="), "{set}");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    assert!(
        !set.contains(OPERATOR),
        "the token itself never goes into the cookie"
    );

    let bad = post(&e.app, "/login", None, &[("token", "lh_wrong")]).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.headers.get(header::SET_COOKIE).is_none());
    assert!(bad.body.contains("not recognised"));

    let empty = post(&e.app, "/login", None, &[("token", "  ")]).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);

    let open = post(
        &e.app,
        "/login",
        None,
        &[("token", OPERATOR), ("next", "//evil.example/")],
    )
    .await;
    assert_eq!(open.location(), "/", "no open redirect after login");
}

#[tokio::test]
async fn without_a_session_pages_redirect_to_login_and_writes_are_401() {
    let e = env();
    let r = get(&e.app, "/tasks?state=running", None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login?next=%2Ftasks%3Fstate%3Drunning");
    let w = post(
        &e.app,
        "/actions/quarantine",
        None,
        &[("task_id", "a"), ("reason", "x")],
    )
    .await;
    assert_eq!(w.status, StatusCode::UNAUTHORIZED);
    let forged = get(&e.app, "/", Some("lh_console=deadbeef")).await;
    assert_eq!(
        forged.status,
        StatusCode::SEE_OTHER,
        "an unknown session id is no session"
    );
    let page = get(&e.app, "/login", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"type="password""#));
    assert!(page.headers.get(header::CONTENT_SECURITY_POLICY).is_some());
}

#[tokio::test]
async fn csrf_token_is_required_on_every_write_and_nothing_changes() {
    let e = env();
    seed_running(&e.store, "t1", "default", "w1");
    let before = e.store.get("t1").unwrap().unwrap();
    let (cookie, csrf) = session(&e.app, OPERATOR).await;
    for pairs in [
        vec![("task_id", "t1"), ("reason", "no csrf")],
        vec![("task_id", "t1"), ("reason", "wrong"), ("csrf", "0000")],
    ] {
        let r = post(&e.app, "/actions/quarantine", Some(&cookie), &pairs).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert!(r.body.contains("CSRF"));
    }
    // A cross-site post is refused even with the right token.
    let mut req = Request::post("/actions/quarantine")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, &cookie)
        .header("sec-fetch-site", "cross-site")
        .body(Body::from(form(&[
            ("task_id", "t1"),
            ("reason", "x"),
            ("csrf", &csrf),
        ])))
        .unwrap();
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let r = send(&e.app, req).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Logout is CSRF-protected too.
    let r = post(&e.app, "/logout", Some(&cookie), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        e.store.get("t1").unwrap().unwrap(),
        before,
        "task byte-for-byte unchanged"
    );
    assert_eq!(e.store.history("t1").unwrap().len(), 2);
}

#[tokio::test]
async fn a_reader_sees_no_action_buttons_and_its_writes_are_403() {
    let e = env();
    seed_running(&e.store, "t1", "default", "w1");
    seed_stale(&e.store, "t2", "w2");
    let before = e.store.get("t1").unwrap().unwrap();
    let (cookie, csrf) = session(&e.app, READER).await;
    for uri in [
        "/task?id=t1",
        "/task?id=t2",
        "/tasks",
        "/stale",
        "/",
        "/workers",
    ] {
        let page = get(&e.app, uri, Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        assert!(
            !page.body.contains("/actions/"),
            "{uri} shows an action to a reader"
        );
        assert!(
            !page.body.contains("/bulk/"),
            "{uri} offers bulk to a reader"
        );
        assert!(page.body.contains("bob-reader"));
    }
    for (action, pairs) in [
        ("quarantine", vec![("reason", "r")]),
        ("complete", vec![]),
        ("annotate", vec![("note", "n")]),
        ("release", vec![("reason", "r")]),
    ] {
        let mut all = vec![("task_id", "t1"), ("csrf", csrf.as_str())];
        all.extend(pairs);
        let r = post(&e.app, &format!("/actions/{action}"), Some(&cookie), &all).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{action}: {}", r.body);
        assert!(r.body.contains("operator"), "{}", r.body);
    }
    let r = post(
        &e.app,
        "/actions/reclaim-all",
        Some(&cookie),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = get(&e.app, "/bulk/quarantine", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(e.store.get("t1").unwrap().unwrap(), before);
    assert_eq!(
        e.store.get("t2").unwrap().unwrap().state,
        TaskState::Running
    );
}

#[tokio::test]
async fn operator_quarantine_is_written_to_history_under_the_token_name() {
    let e = env();
    seed_running(&e.store, "t1", "default", "w1");
    let (cookie, csrf) = session(&e.app, OPERATOR).await;
    let page = get(&e.app, "/task?id=t1", Some(&cookie)).await;
    assert!(page.body.contains(r#"action="/actions/quarantine""#));

    // No reason: refused, naming the task, nothing changes.
    let before = e.store.get("t1").unwrap().unwrap();
    let r = post(
        &e.app,
        "/actions/quarantine",
        Some(&cookie),
        &[("task_id", "t1"), ("csrf", &csrf), ("reason", " ")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body.contains("t1") && r.body.contains("reason"),
        "{}",
        r.body
    );
    assert_eq!(e.store.get("t1").unwrap().unwrap(), before);

    let r = post(
        &e.app,
        "/actions/quarantine",
        Some(&cookie),
        &[
            ("task_id", "t1"),
            ("csrf", &csrf),
            ("reason", "worker w1 is looping"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/task?id=t1&done=quarantine");
    let t = e.store.get("t1").unwrap().unwrap();
    assert_eq!(t.state, TaskState::Quarantined);
    assert_eq!(t.terminal_reason.as_deref(), Some("worker w1 is looping"));
    let last = e.store.history("t1").unwrap().pop().unwrap();
    assert_eq!(last.kind, HistoryKind::Quarantined);
    assert_eq!(last.actor, "alice-ops");
    assert_eq!(last.at, t0());
    assert_eq!(last.detail.as_deref(), Some("worker w1 is looping"));

    // The page after the redirect shows it; a second quarantine is `terminal`.
    let page = get(&e.app, r.location(), Some(&cookie)).await;
    assert!(page.body.contains("Task quarantined."));
    assert!(page.body.contains("alice-ops"));
    let again = post(
        &e.app,
        "/actions/quarantine",
        Some(&cookie),
        &[("task_id", "t1"), ("csrf", &csrf), ("reason", "x")],
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("terminal"));
    // The overview lists it under recent quarantines.
    let ov = get(&e.app, "/", Some(&cookie)).await;
    let recent = ov.body.split(r#"id="recent""#).nth(1).unwrap();
    assert!(
        recent.contains("t1") && recent.contains("alice-ops"),
        "{recent}"
    );
}

#[tokio::test]
async fn every_operator_action_records_the_operator() {
    let e = env();
    seed_running(&e.store, "rel", "default", "w1");
    seed_stale(&e.store, "stale", "w2");
    seed_running(&e.store, "f", "default", "w3");
    seed_running(&e.store, "c", "default", "w4");
    let (cookie, csrf) = session(&e.app, OPERATOR).await;
    let act = |action: &'static str, pairs: Vec<(&'static str, &'static str)>| {
        let app = e.app.clone();
        let cookie = cookie.clone();
        let csrf = csrf.clone();
        async move {
            let mut all: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
            all.extend(pairs);
            post(&app, &format!("/actions/{action}"), Some(&cookie), &all).await
        }
    };
    // Release: the task is dispatched again and a note by the operator says why.
    let r = act(
        "release",
        vec![("task_id", "rel"), ("reason", "w1 is wedged")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let t = e.store.get("rel").unwrap().unwrap();
    assert_eq!(t.state, TaskState::Dispatched);
    assert_eq!(t.lease_owner, None);
    let h = e.store.history("rel").unwrap();
    let note = h.last().unwrap();
    assert_eq!(
        (note.kind, note.actor.as_str()),
        (HistoryKind::Annotated, "alice-ops")
    );
    assert!(note.detail.as_deref().unwrap().contains("w1 is wedged"));
    // Releasing again: no live lease.
    let r = act("release", vec![("task_id", "rel"), ("reason", "again")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // Reclaim now, on a stale task: the page says what it will do.
    let page = get(&e.app, "/task?id=stale", Some(&cookie)).await;
    assert!(page
        .body
        .contains("Attempt 1 of at most 3: it goes back to dispatched."));
    let r = act("reclaim", vec![("task_id", "stale")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let last = e.store.history("stale").unwrap().pop().unwrap();
    assert_eq!(
        (last.kind, last.actor.as_str()),
        (HistoryKind::Expired, "alice-ops")
    );
    // Reclaiming a task that is not stale is a clear conflict.
    let r = act("reclaim", vec![("task_id", "f")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("not stale"));

    // Fail without any compensation: refused, naming "compensation".
    let r = act("fail", vec![("task_id", "f"), ("reason", "broken")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("compensation"));
    let r = act(
        "fail",
        vec![
            ("task_id", "f"),
            ("reason", "broken"),
            ("comp_kind", "delete_branch"),
        ],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "half a compensation"
    );
    let r = act(
        "fail",
        vec![
            ("task_id", "f"),
            ("reason", "broken"),
            ("comp_kind", "delete_branch"),
            ("comp_target", "feat/f"),
            ("comp_reason", "branch was pushed"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let t = e.store.get("f").unwrap().unwrap();
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(
        e.store.history("f").unwrap().pop().unwrap().actor,
        "alice-ops"
    );

    // Record the compensation's result, on the terminal task.
    let r = act(
        "record-compensation",
        vec![
            ("task_id", "f"),
            ("index", "0"),
            ("status", "applied"),
            ("detail", "deleted"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let t = e.store.get("f").unwrap().unwrap();
    assert_eq!(
        t.compensations[0].status,
        leasehold_core::CompensationStatus::Applied
    );
    let r = act(
        "record-compensation",
        vec![("task_id", "f"), ("index", "7"), ("status", "applied")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = act(
        "record-compensation",
        vec![("task_id", "f"), ("index", "0"), ("status", "done")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Annotate, complete and compensate without a fence.
    let r = act(
        "annotate",
        vec![("task_id", "f"), ("note", "checked by hand")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        e.store.get("f").unwrap().unwrap().notes[0].author,
        "alice-ops"
    );
    let r = act(
        "compensate",
        vec![("task_id", "c"), ("reason", "rolled back")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let last = e.store.history("c").unwrap().pop().unwrap();
    assert_eq!(
        (last.kind, last.actor.as_str()),
        (HistoryKind::Compensated, "alice-ops")
    );
    let r = act("complete", vec![("task_id", "rel")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        e.store.get("rel").unwrap().unwrap().state,
        TaskState::Completed
    );

    // Unknown action and unknown task.
    let r = act("explode", vec![("task_id", "f")]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = act("complete", vec![("task_id", "nope")]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("nope"));
    let r = act("complete", vec![("task_id", "bad id!")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn keyset_pagination_walks_every_task_once_in_creation_order() {
    let e = env();
    for i in 0..120 {
        e.store
            .create(
                NewTask::new(format!("task-{i:03}"), format!("s-{i}")),
                &ctx("2026-06-03T09:00:00Z"),
            )
            .unwrap();
    }
    let cookie = login(&e.app, READER).await;
    let mut uri = "/tasks".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = get(&e.app, &uri, Some(&cookie)).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        let ids = task_ids_in(&r.body);
        assert!(ids.len() <= 50);
        seen.extend(ids);
        pages += 1;
        if pages == 1 {
            assert!(
                r.body.contains("of 120 in total"),
                "exact total from counts()"
            );
        }
        match next_link(&r.body) {
            Some(next) => uri = next,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..120).map(|i| format!("task-{i:03}")).collect();
    assert_eq!(seen, expected);
    let bad = get(&e.app, "/tasks?cursor=nonsense", Some(&cookie)).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad = get(&e.app, "/tasks?state=sleeping", Some(&cookie)).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("expected one of"));
}

#[tokio::test]
async fn filters_round_trip_through_the_url() {
    let e = env();
    for i in 0..30 {
        let q = if i % 3 == 0 { "payments" } else { "default" };
        seed_running(
            &e.store,
            &format!("r{i:02}"),
            q,
            if i % 2 == 0 { "w-even" } else { "w-odd" },
        );
    }
    let cookie = login(&e.app, READER).await;
    let r = get(
        &e.app,
        "/tasks?state=running&queue=payments&owner=w-even&limit=2",
        Some(&cookie),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(task_ids_in(&r.body), vec!["r00", "r06"]);
    assert!(
        r.body.contains(r#"value="running" checked"#),
        "state box stays ticked"
    );
    assert!(r.body.contains(r#"name="queue" value="payments""#));
    assert!(r.body.contains(r#"name="owner" value="w-even""#));
    let next = next_link(&r.body).unwrap();
    assert!(
        next.starts_with("/tasks?state=running&queue=payments&owner=w-even&limit=2&cursor="),
        "{next}"
    );
    let r2 = get(&e.app, &next, Some(&cookie)).await;
    assert_eq!(task_ids_in(&r2.body), vec!["r12", "r18"]);
    assert!(
        r2.body.contains("Totals are not counted"),
        "no fake total for unindexed filters"
    );

    // Text in id or branch (branches are feat/<id>), case-insensitive.
    let r = get(&e.app, "/tasks?q=FEAT%2FR1", Some(&cookie)).await;
    let ids = task_ids_in(&r.body);
    assert_eq!(ids.len(), 10, "{ids:?}");
    assert!(ids.iter().all(|i| i.starts_with("r1")));
    assert!(r.body.contains("scanned 30 rows"), "{}", r.body);
}

#[tokio::test]
async fn text_search_is_bounded_and_continues_from_where_it_stopped() {
    let e = env();
    let total = leasehold_console::SEARCH_SCAN_ROWS_MAX as usize + 700;
    for i in 0..total {
        let id = if i == total - 10 {
            "needle-1".to_string()
        } else {
            format!("hay-{i}")
        };
        e.store
            .create(
                NewTask::new(id, format!("s-{i}")),
                &ctx("2026-06-03T09:00:00Z"),
            )
            .unwrap();
    }
    let cookie = login(&e.app, READER).await;
    let r = get(&e.app, "/tasks?q=needle", Some(&cookie)).await;
    assert_eq!(task_ids_in(&r.body), Vec::<String>::new());
    assert!(
        r.body.contains(&format!(
            "scanned {} rows",
            leasehold_console::SEARCH_SCAN_ROWS_MAX
        )),
        "{}",
        r.body
    );
    assert!(r.body.contains("Continue searching"));
    let next = next_link(&r.body).unwrap();
    assert!(next.contains("q=needle"));
    let r2 = get(&e.app, &next, Some(&cookie)).await;
    assert_eq!(task_ids_in(&r2.body), vec!["needle-1"]);
    assert!(next_link(&r2.body).is_none());
}

#[tokio::test]
async fn text_search_pages_end_exactly_after_their_last_match() {
    let e = env();
    for i in 0..40 {
        e.store
            .create(
                NewTask::new(format!("m-{i:02}"), format!("s-{i}")),
                &ctx("2026-06-03T09:00:00Z"),
            )
            .unwrap();
    }
    let cookie = login(&e.app, READER).await;
    let mut uri = "/tasks?q=m-&limit=7".to_string();
    let mut seen = Vec::new();
    loop {
        let r = get(&e.app, &uri, Some(&cookie)).await;
        let ids = task_ids_in(&r.body);
        assert!(ids.len() <= 7);
        seen.extend(ids);
        match next_link(&r.body) {
            Some(n) => uri = n,
            None => break,
        }
    }
    let expected: Vec<String> = (0..40).map(|i| format!("m-{i:02}")).collect();
    assert_eq!(seen, expected, "no match skipped or repeated across pages");
}

#[tokio::test]
async fn bulk_quarantine_asks_for_confirmation_and_a_reason() {
    let e = env();
    for i in 0..4 {
        seed_running(&e.store, &format!("p{i}"), "payments", "w1");
    }
    seed_running(&e.store, "other", "default", "w1");
    let (cookie, csrf) = session(&e.app, OPERATOR).await;
    let list = get(&e.app, "/tasks?queue=payments", Some(&cookie)).await;
    assert!(list.body.contains("/bulk/quarantine?queue=payments"));
    let confirm = get(&e.app, "/bulk/quarantine?queue=payments", Some(&cookie)).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Quarantine 4 tasks?"));
    assert!(!confirm.body.contains(r#"value="other""#));

    let ids = [("task_id", "p0"), ("task_id", "p1"), ("task_id", "p2")];
    // Without the confirmation box: nothing changes.
    let mut pairs = vec![("csrf", csrf.as_str()), ("reason", "payments outage")];
    pairs.extend(ids);
    let r = post(&e.app, "/actions/bulk-quarantine", Some(&cookie), &pairs).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("confirm"));
    assert_eq!(
        e.store.get("p0").unwrap().unwrap().state,
        TaskState::Running
    );
    // Without a reason: nothing changes.
    let mut pairs = vec![("csrf", csrf.as_str()), ("confirm", "yes")];
    pairs.extend(ids);
    let r = post(&e.app, "/actions/bulk-quarantine", Some(&cookie), &pairs).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        e.store.get("p0").unwrap().unwrap().state,
        TaskState::Running
    );

    let mut pairs = vec![
        ("csrf", csrf.as_str()),
        ("confirm", "yes"),
        ("reason", "payments outage"),
    ];
    pairs.extend(ids);
    let r = post(&e.app, "/actions/bulk-quarantine", Some(&cookie), &pairs).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("3 of 3 tasks quarantined"));
    for id in ["p0", "p1", "p2"] {
        let last = e.store.history(id).unwrap().pop().unwrap();
        assert_eq!(
            (last.kind, last.actor.as_str()),
            (HistoryKind::Quarantined, "alice-ops")
        );
    }
    assert_eq!(
        e.store.get("p3").unwrap().unwrap().state,
        TaskState::Running,
        "unticked stays"
    );
    // Again: each is now terminal, reported per task.
    let r = post(&e.app, "/actions/bulk-quarantine", Some(&cookie), &pairs).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("0 of 3"));
}

#[tokio::test]
async fn screens_show_counts_stale_leases_and_workers() {
    let e = env();
    seed_running(&e.store, "live-1", "default", "w-alive");
    seed_running(&e.store, "live-2", "payments", "w-alive");
    seed_stale(&e.store, "dead-1", "w-crashed");
    let mut n = NewTask::new("comp-1", "saga-comp-1");
    n.compensations = vec![NewCompensation::new("delete_branch", "feat/x", "pushed")];
    e.store.create(n, &ctx("2026-06-03T09:00:00Z")).unwrap();
    let cookie = login(&e.app, READER).await;

    let ov = get(&e.app, "/", Some(&cookie)).await;
    assert!(ov.body.contains(r#"data-state="running""#));
    let stale_card = ov.body.split(r#"id="stale-count""#).nth(1).unwrap();
    assert!(
        stale_card.contains(r#"<div class="n">1</div>"#),
        "{stale_card}"
    );
    let oldest = ov.body.split(r#"id="oldest-stale""#).nth(1).unwrap();
    assert!(
        oldest.contains("dead-1") && oldest.contains("w-crashed") && oldest.contains("(2m 0s ago)")
    );
    assert!(ov.body.contains("<svg"), "ops chart is drawn on the server");
    assert!(ov.body.contains("operations in the last 30 minutes"));

    let st = get(&e.app, "/stale", Some(&cookie)).await;
    let table = st.body.split(r#"id="stale-table""#).nth(1).unwrap();
    assert!(
        table.contains("dead-1") && table.contains("w-crashed") && table.contains(">2m 0s<"),
        "{table}"
    );

    let wk = get(&e.app, "/workers", Some(&cookie)).await;
    let table = wk.body.split(r#"id="workers-table""#).nth(1).unwrap();
    let alive = table
        .split("<tr>")
        .find(|row| row.contains("w-alive"))
        .unwrap();
    assert!(alive.contains("live-1") && alive.contains("live-2"));
    assert!(table.contains("w-crashed"));

    let d = get(&e.app, "/task?id=comp-1", Some(&cookie)).await;
    assert!(d.body.contains("delete_branch") && d.body.contains("pending"));
    let d = get(&e.app, "/task?id=live-1", Some(&cookie)).await;
    assert!(d.body.contains(r#"id="lease-owner">w-alive"#));
    assert!(
        d.body.contains("in 5m 0s"),
        "countdown rendered from the server clock"
    );
    assert!(d.body.contains(r#"data-kind="leased""#));
    let missing = get(&e.app, "/task?id=ghost", Some(&cookie)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("ghost"));
}

#[tokio::test]
async fn without_tokens_everyone_is_the_console_operator() {
    let e = env_with(false);
    seed_running(&e.store, "t1", "default", "w1");
    let r = get(&e.app, "/task?id=t1", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
    let cookie = set.split(';').next().unwrap().to_string();
    let csrf = csrf_of(&r.body);
    let r = post(
        &e.app,
        "/actions/annotate",
        Some(&cookie),
        &[("task_id", "t1"), ("csrf", &csrf), ("note", "hi")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        e.store.get("t1").unwrap().unwrap().notes[0].author,
        "console"
    );
    // CSRF still applies.
    let r = post(
        &e.app,
        "/actions/annotate",
        Some(&cookie),
        &[("task_id", "t1"), ("note", "hi")],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&e.app, "/login", None).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn logout_ends_the_session() {
    let e = env();
    let (cookie, csrf) = session(&e.app, OPERATOR).await;
    let r = post(&e.app, "/logout", Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set.contains("Max-Age=0"));
    let again = get(&e.app, "/", Some(&cookie)).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert!(again.location().starts_with("/login"));
}
