//! The batch calls through a real loopback server: `HttpStore`'s
//! `heartbeat_many` / `complete_many` / `apply_many` and the async
//! `Client`'s `heartbeat_many` / `complete_many`. Each answer is compared
//! with the in-memory model given the same calls; the server's own
//! `/metrics` proves how many HTTP requests a batch took.

use std::sync::Arc;
use std::time::Duration;

use leasehold_client::{Client, HttpStore};
use leasehold_core::memory::MemoryStore;
use leasehold_core::{
    BatchItem, Command, Context, ErrorCode, Fence, HistoryEntry, NewTask, Result, Store, Task,
    TaskState, Timestamp,
};
use leasehold_server::testing::TestServer;
use leasehold_server::Role;

fn at(secs: i64) -> Timestamp {
    Timestamp::parse("2026-06-03T10:00:00Z")
        .unwrap()
        .checked_add_micros(secs * 1_000_000)
        .unwrap()
}

fn ctx(secs: i64) -> Context {
    Context::new(at(secs), "operator")
}

/// A trusting server (the tests' instants travel as `x-leasehold-at`) over
/// its own model, an operator `HttpStore` on the production TTL path, and a
/// local model given the same calls.
struct Pair {
    http: HttpStore,
    model: MemoryStore,
    backing: Arc<MemoryStore>,
    server: TestServer,
}

fn pair() -> Pair {
    let backing = Arc::new(MemoryStore::new());
    let server = TestServer::start(backing.clone(), true);
    let http = HttpStore::new(&server.url(), &server.operator_token()).unwrap();
    Pair {
        http,
        model: MemoryStore::new(),
        backing,
        server,
    }
}

impl Pair {
    /// Seed both stores directly: `leased` tasks held by their owner from
    /// t=0 to t=60 s (token 1), the others planned.
    fn seed(&self, leased: &[(&str, &str)], planned: &[&str]) {
        for s in [&self.model as &dyn Store, &*self.backing] {
            for (id, owner) in leased {
                s.create(NewTask::new(*id, format!("saga-{id}")), &ctx(0))
                    .unwrap();
                s.acquire_lease(id, owner, at(60), &ctx(0)).unwrap();
            }
            for id in planned {
                s.create(NewTask::new(*id, format!("saga-{id}")), &ctx(0))
                    .unwrap();
            }
        }
    }

    /// Run a batch on both; every item must agree (same task, or same code
    /// and message). Returns the HTTP answers.
    fn both(
        &self,
        op: impl Fn(&dyn Store) -> Result<Vec<Result<Task>>>,
    ) -> Result<Vec<Result<Task>>> {
        let want = op(&self.model);
        let got = op(&self.http);
        assert_eq!(got, want, "HTTP and the model disagree");
        got
    }

    fn state_of(&self, id: &str) -> (Option<Task>, Vec<HistoryEntry>) {
        (
            self.backing.get(id).unwrap(),
            self.backing.history(id).unwrap_or_default(),
        )
    }

    /// `leasehold_http_requests_total` for one route (all statuses).
    fn requests(&self, route: &str) -> u64 {
        let text = reqwest::blocking::Client::new()
            .get(format!("{}/metrics", self.server.url()))
            .bearer_auth(self.server.operator_token())
            .send()
            .unwrap()
            .text()
            .unwrap();
        let prefix = format!("leasehold_http_requests_total{{method=\"POST\",route=\"{route}\",");
        text.lines()
            .filter(|l| l.starts_with(&prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    }
}

fn codes(results: &[Result<Task>]) -> Vec<Option<ErrorCode>> {
    results
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.code()))
        .collect()
}

fn fence(owner: &str, token: u64) -> Fence {
    Fence::new(owner, token)
}

#[test]
fn a_rejected_item_changes_nothing_and_the_others_apply_in_order() {
    let p = pair();
    p.seed(&[("a", "w1"), ("b", "w1"), ("d", "w2")], &["c"]);
    let b_before = p.state_of("b");
    let c_before = p.state_of("c");
    let leases = vec![
        ("a".to_string(), fence("w1", 1)),
        ("b".to_string(), fence("w1", 7)),
        ("missing".to_string(), fence("w1", 1)),
        ("c".to_string(), fence("w1", 1)),
        ("d".to_string(), fence("w2", 1)),
    ];
    let hb = p
        .both(|s| s.heartbeat_many(&leases, at(120), &ctx(30)))
        .unwrap();
    assert_eq!(
        codes(&hb),
        [
            None,
            Some(ErrorCode::LeaseConflict),
            Some(ErrorCode::NotFound),
            Some(ErrorCode::LeaseConflict),
            None
        ]
    );
    for (i, id) in [(0, "a"), (4, "d")] {
        let t = hb[i].as_ref().unwrap();
        assert_eq!(t.lease_expires_at, Some(at(120)));
        assert_eq!(t.last_heartbeat_at, Some(at(30)));
        assert_eq!(Some(t.clone()), p.backing.get(id).unwrap());
    }
    assert_eq!(p.state_of("b"), b_before);
    assert_eq!(p.state_of("c"), c_before);
    assert_eq!(p.requests("/v1/heartbeats"), 1, "one request for the batch");
    assert_eq!(p.requests("/v1/tasks/{id}/heartbeat"), 0);

    let done = p
        .both(|s| s.complete_many(&leases, Some("batch done"), &ctx(40)))
        .unwrap();
    assert_eq!(codes(&done), codes(&hb));
    for id in ["a", "d"] {
        let t = p.backing.get(id).unwrap().unwrap();
        assert_eq!(t.state, TaskState::Completed);
        assert_eq!(t.terminal_reason.as_deref(), Some("batch done"));
    }
    assert_eq!(p.state_of("b"), b_before);
    assert_eq!(p.state_of("c"), c_before);
    assert_eq!(p.requests("/v1/completions"), 1);
    assert_eq!(p.requests("/v1/tasks/{id}/complete"), 0);
}

#[test]
fn apply_many_uses_the_batch_routes_only_for_uniform_batches() {
    let p = pair();
    p.seed(&[("a", "w1"), ("b", "w1")], &["c"]);
    let hb = |id: &str, secs| BatchItem {
        task_id: id.to_string(),
        command: Command::Heartbeat {
            fence: fence("w1", 1),
            expires_at: at(secs),
        },
    };
    // Same expiry: one request to /v1/heartbeats.
    let r = p
        .both(|s| s.apply_many(vec![hb("a", 90), hb("b", 90)], &ctx(10)))
        .unwrap();
    assert_eq!(codes(&r), [None, None]);
    assert_eq!(p.requests("/v1/heartbeats"), 1);
    // Different expiries: item by item, in order.
    let r = p
        .both(|s| s.apply_many(vec![hb("a", 100), hb("b", 110)], &ctx(11)))
        .unwrap();
    assert_eq!(codes(&r), [None, None]);
    assert_eq!(p.requests("/v1/heartbeats"), 1);
    assert_eq!(p.requests("/v1/tasks/{id}/heartbeat"), 2);
    // Mixed commands, later items seeing earlier ones: item by item.
    let items = vec![
        BatchItem {
            task_id: "c".into(),
            command: Command::Dispatch,
        },
        BatchItem {
            task_id: "a".into(),
            command: Command::Release {
                fence: fence("w1", 1),
            },
        },
        hb("a", 200),
    ];
    let r = p.both(|s| s.apply_many(items.clone(), &ctx(12))).unwrap();
    assert_eq!(codes(&r), [None, None, Some(ErrorCode::LeaseConflict)]);
    // Fenced completes with one reason: one request to /v1/completions.
    let done = |id: &str| BatchItem {
        task_id: id.to_string(),
        command: Command::Complete {
            reason: Some("ok".into()),
            fence: Some(fence("w1", 1)),
        },
    };
    let r = p
        .both(|s| s.apply_many(vec![done("b"), done("a")], &ctx(13)))
        .unwrap();
    assert_eq!(codes(&r), [None, Some(ErrorCode::LeaseConflict)]);
    assert_eq!(p.requests("/v1/completions"), 1);
    // Empty and oversize batches are answered without a request.
    assert!(p
        .both(|s| s.apply_many(Vec::new(), &ctx(14)))
        .unwrap()
        .is_empty());
    let too_many = vec![hb("a", 300); leasehold_core::limits::BATCH_ITEMS_MAX + 1];
    let e = p
        .both(|s| s.apply_many(too_many.clone(), &ctx(14)))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert_eq!(p.requests("/v1/heartbeats"), 1);
}

#[test]
fn an_expiry_outside_the_ttl_range_is_judged_per_item_and_sends_nothing() {
    let p = pair();
    p.seed(&[("a", "w1")], &["c"]);
    let before = (p.state_of("a"), p.state_of("c"));
    let leases = vec![
        ("a".to_string(), fence("w1", 1)),
        ("a".to_string(), fence("w1", 9)),
        ("c".to_string(), fence("w1", 1)),
        ("missing".to_string(), fence("w1", 1)),
    ];
    // 50 ms: the model would accept the first item; the server grants no
    // lease under 100 ms, so that item is invalid_input naming the range,
    // and the others keep the model's own verdicts.
    let when = at(60).checked_add_micros(-10_000).unwrap();
    let soon = when.checked_add_micros(50_000).unwrap();
    let c = Context::new(when, "operator");
    assert!(
        p.model.heartbeat_many(&leases, soon, &c).unwrap()[0].is_ok(),
        "the model accepts the first item"
    );
    let r = p.http.heartbeat_many(&leases, soon, &c).unwrap();
    assert_eq!(
        codes(&r),
        [
            Some(ErrorCode::InvalidInput),
            Some(ErrorCode::LeaseConflict),
            Some(ErrorCode::LeaseConflict),
            Some(ErrorCode::NotFound)
        ]
    );
    assert!(r[0].as_ref().unwrap_err().message().contains("100"));
    assert_eq!((p.state_of("a"), p.state_of("c")), before);
    assert_eq!(p.requests("/v1/heartbeats"), 0);
}

#[test]
fn a_worker_token_gets_forbidden_for_the_items_it_may_not_write() {
    let p = pair();
    p.seed(&[("own", "w1"), ("other", "w2")], &[]);
    let worker = HttpStore::new(&p.server.url(), &p.server.add_token("w1", Role::Worker)).unwrap();
    let other_before = p.state_of("other");
    let leases = vec![
        ("own".to_string(), fence("w1", 1)),
        ("other".to_string(), fence("w2", 1)),
        ("other".to_string(), fence("w1", 1)),
    ];
    let hb = worker.heartbeat_many(&leases, at(120), &ctx(30)).unwrap();
    assert_eq!(
        codes(&hb),
        [None, Some(ErrorCode::Forbidden), Some(ErrorCode::Forbidden)]
    );
    assert_eq!(hb[0].as_ref().unwrap().lease_expires_at, Some(at(120)));
    let done = worker.complete_many(&leases, None, &ctx(40)).unwrap();
    assert_eq!(codes(&done), codes(&hb));
    assert_eq!(done[0].as_ref().unwrap().state, TaskState::Completed);
    assert_eq!(p.state_of("other"), other_before);
    // A reader may not call the batch routes at all.
    let reader = HttpStore::new(&p.server.url(), &p.server.add_token("r1", Role::Reader)).unwrap();
    let e = reader
        .heartbeat_many(&leases, at(150), &ctx(41))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Forbidden);
    assert_eq!(p.state_of("other"), other_before);
}

#[test]
fn the_server_refuses_an_oversize_batch_as_a_whole() {
    // `HttpStore` refuses it before sending; a hand-made request must be
    // refused by the server too, with nothing applied.
    let p = pair();
    p.seed(&[("own", "w1")], &[]);
    let before = p.state_of("own");
    let item = serde_json::json!({"task_id": "own", "owner": "w1", "token": 1});
    let n = leasehold_core::limits::BATCH_ITEMS_MAX;
    for (route, mut body) in [
        ("heartbeats", serde_json::json!({"ttl_ms": 90000})),
        ("completions", serde_json::json!({"reason": "r"})),
    ] {
        body["leases"] = serde_json::Value::Array(vec![item.clone(); n + 1]);
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/v1/{route}", p.server.url()))
            .bearer_auth(p.server.operator_token())
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 422, "{route}");
        let problem: serde_json::Value = resp.json().unwrap();
        assert_eq!(problem["code"], "invalid_input");
        assert_eq!(p.state_of("own"), before, "{route} applied something");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_client_batches_heartbeats_and_completions() {
    let backing = Arc::new(MemoryStore::new());
    // Not trusting: the server's clock decides the expiry, as in production.
    let server = TestServer::start(backing.clone(), false);
    let client = Client::new(&server.url(), &server.add_token("w1", Role::Worker)).unwrap();
    let now = Timestamp::now();
    let c = Context::new(now, "seed");
    for (id, owner) in [("x", "w1"), ("y", "w1"), ("z", "w2")] {
        backing
            .create(NewTask::new(id, format!("saga-{id}")), &c)
            .unwrap();
        backing
            .acquire_lease(id, owner, now.checked_add_micros(60_000_000).unwrap(), &c)
            .unwrap();
    }
    let leases = vec![
        ("x".to_string(), fence("w1", 1)),
        ("y".to_string(), fence("w1", 4)),
        ("z".to_string(), fence("w1", 1)),
    ];
    let hb = client
        .heartbeat_many(&leases, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(
        codes(&hb),
        [
            None,
            Some(ErrorCode::LeaseConflict),
            Some(ErrorCode::Forbidden)
        ]
    );
    let x = hb[0].as_ref().unwrap();
    let granted = x
        .lease_expires_at
        .unwrap()
        .micros_since(x.last_heartbeat_at.unwrap());
    assert_eq!(granted, 600_000_000, "expiry = server now + ttl");
    let e = client
        .heartbeat_many(&leases, Duration::from_millis(10))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    let done = client.complete_many(&leases, Some("ok")).await.unwrap();
    assert_eq!(codes(&done), codes(&hb));
    assert_eq!(
        backing.get("x").unwrap().unwrap().state,
        TaskState::Completed
    );
    assert_eq!(backing.get("y").unwrap().unwrap().state, TaskState::Running);
    assert_eq!(
        backing.get("z").unwrap().unwrap().lease_owner.as_deref(),
        Some("w2")
    );
    assert!(client.complete_many(&[], None).await.unwrap().is_empty());
}
