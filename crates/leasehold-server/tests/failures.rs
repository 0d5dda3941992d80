//! Store failures over HTTP: `unavailable` is 503 with `Retry-After`, a store
//! panic or an internal error is a 500 problem whose detail reveals nothing,
//! and `/readyz` reports an unreachable store.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use leasehold_core::{
    ClaimRequest, Command, Context, Counts, Error, HistoryEntry, ListFilter, NewTask, Page, Result,
    Store, Task, Timestamp,
};
use leasehold_server::{router, AppState, SystemClock, TokenStore};
use tower::ServiceExt;

/// A store that fails every call in one way.
struct Broken(fn() -> Error);

impl Store for Broken {
    fn create(&self, _: NewTask, _: &Context) -> Result<Task> {
        Err((self.0)())
    }
    fn put(&self, _: Task, _: Option<u64>, _: &Context) -> Result<Task> {
        Err((self.0)())
    }
    fn apply(&self, _: &str, _: Command, _: &Context) -> Result<Task> {
        panic!("store bug: secret-internal-detail")
    }
    fn claim(&self, _: &ClaimRequest, _: &Context) -> Result<Vec<Task>> {
        Err((self.0)())
    }
    fn reclaim(&self, _: u32, _: &Context) -> Result<Vec<Task>> {
        Err((self.0)())
    }
    fn get(&self, _: &str) -> Result<Option<Task>> {
        Err((self.0)())
    }
    fn list(&self, _: &ListFilter, _: Option<&str>, _: Option<u32>) -> Result<Page> {
        Err((self.0)())
    }
    fn list_in_flight(&self) -> Result<Vec<Task>> {
        Err((self.0)())
    }
    fn list_stale(&self, _: Timestamp) -> Result<Vec<Task>> {
        Err((self.0)())
    }
    fn counts(&self) -> Result<Counts> {
        Err((self.0)())
    }
    fn history(&self, _: &str) -> Result<Vec<HistoryEntry>> {
        Err((self.0)())
    }
}

async fn call(
    store: Broken,
    method: &str,
    uri: &str,
    body: &str,
) -> (u16, axum::http::HeaderMap, serde_json::Value) {
    let app = router(AppState::new(
        Arc::new(store),
        Arc::new(SystemClock),
        Arc::new(TokenStore::open()),
    ));
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn unavailable_is_503_with_retry_after() {
    let (status, headers, body) = call(
        Broken(|| Error::Unavailable("db down".into())),
        "GET",
        "/v1/counts",
        "",
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], "unavailable");
    assert_eq!(headers["retry-after"], "1");
    let (status, headers, body) = call(
        Broken(|| Error::Unavailable("db down".into())),
        "GET",
        "/readyz",
        "",
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")));
    assert!(headers.contains_key("retry-after"));
}

#[tokio::test]
async fn internal_errors_reveal_nothing() {
    let (status, _, body) = call(
        Broken(|| Error::Internal("password=hunter2 at /secret/path".into())),
        "GET",
        "/v1/tasks/x",
        "",
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (500, Some("internal")));
    let text = body.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("/secret/path"),
        "{text}"
    );
}

#[tokio::test]
async fn a_panicking_store_is_a_500_problem_not_a_crash() {
    let (status, headers, body) = call(
        Broken(|| Error::Internal("x".into())),
        "POST",
        "/v1/tasks/x/dispatch",
        "",
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (500, Some("internal")));
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(!body.to_string().contains("secret-internal-detail"));
}
