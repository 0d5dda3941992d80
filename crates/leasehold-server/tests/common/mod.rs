//! Shared helpers for the server's tests: an app on a memory store with a
//! manual clock and one token per role, and a `call` that drives the router
//! with `oneshot` (no socket).
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request};
use axum::Router;
use leasehold_core::memory::MemoryStore;
use leasehold_core::{Context, NewCompensation, NewTask, Store, Timestamp};
use leasehold_server::tokens::{Role, TokenStore};
use leasehold_server::{router, AppState, ManualClock};
use serde_json::Value;
use tower::ServiceExt;

/// The fixed start of every test.
pub const T0: &str = "2026-06-03T10:00:00Z";

pub fn t0() -> Timestamp {
    Timestamp::parse(T0).unwrap()
}

pub struct App {
    pub router: Router,
    pub clock: Arc<ManualClock>,
    pub store: Arc<MemoryStore>,
    pub state: AppState,
    pub op: String,
    pub reader: String,
    pub w1: String,
    pub w2: String,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    /// The problem's `code`, or "" for a success.
    pub fn code(&self) -> &str {
        self.json.get("code").and_then(Value::as_str).unwrap_or("")
    }
}

impl App {
    /// Auth on: tokens `op` (operator), `r1` (reader), `w1` and `w2` (workers).
    pub fn new() -> App {
        let tokens = Arc::new(TokenStore::in_memory(Default::default()));
        let op = tokens.add("op", Role::Operator).unwrap().secret;
        let reader = tokens.add("r1", Role::Reader).unwrap().secret;
        let w1 = tokens.add("w1", Role::Worker).unwrap().secret;
        let w2 = tokens.add("w2", Role::Worker).unwrap().secret;
        App::with_tokens(tokens, op, reader, w1, w2)
    }

    /// No tokens configured: everyone is an operator.
    pub fn open() -> App {
        App::with_tokens(
            Arc::new(TokenStore::open()),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        )
    }

    fn with_tokens(
        tokens: Arc<TokenStore>,
        op: String,
        reader: String,
        w1: String,
        w2: String,
    ) -> App {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(t0()));
        let state = AppState::new(store.clone(), clock.clone(), tokens);
        App {
            router: router(state.clone()),
            clock,
            store,
            state,
            op,
            reader,
            w1,
            w2,
        }
    }

    pub fn ctx(&self) -> Context {
        Context::new(self.clock.now_ts(), "test")
    }

    /// Create a task directly in the store, with one compensation.
    pub fn seed(&self, id: &str) {
        let mut new = NewTask::new(id, format!("saga-{id}"));
        new.compensations
            .push(NewCompensation::new("delete_branch", id, "cleanup"));
        self.store.create(new, &self.ctx()).unwrap();
    }

    /// Create and lease a task for `owner` for 60 s; returns the fencing token.
    pub fn seed_leased(&self, id: &str, owner: &str) -> u64 {
        self.seed(id);
        let at = self.clock.now_ts();
        let until = at.checked_add_micros(60_000_000).unwrap();
        self.store
            .acquire_lease(id, owner, until, &self.ctx())
            .unwrap()
            .lease_token
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&b).unwrap()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        self.raw(req).await
    }

    pub async fn raw(&self, req: Request<Body>) -> Resp {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            json,
        }
    }

    /// Everything the store holds: every task and its history, serialised.
    pub fn snapshot(&self) -> String {
        let page = self
            .store
            .list(&Default::default(), None, Some(1000))
            .unwrap();
        let mut out = serde_json::to_string(&page.tasks).unwrap();
        for t in &page.tasks {
            out.push_str(&serde_json::to_string(&self.store.history(&t.task_id).unwrap()).unwrap());
        }
        out
    }
}

pub trait NowTs {
    fn now_ts(&self) -> Timestamp;
}

impl NowTs for ManualClock {
    fn now_ts(&self) -> Timestamp {
        leasehold_server::Clock::now(self)
    }
}
