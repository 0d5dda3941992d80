//! What only the HTTP client can get wrong: the production TTL path, the
//! cases HTTP cannot carry exactly, auth, transport failures, path encoding
//! and paging. Each test runs a real server on loopback; where the model's
//! answer is the reference, the same operation also runs on a plain
//! `MemoryStore` and both answers are compared.

use std::sync::Arc;

use leasehold_client::HttpStore;
use leasehold_core::memory::MemoryStore;
use leasehold_core::{
    Context, ErrorCode, Fence, ListFilter, NewCompensation, NewTask, Store, TaskState, Timestamp,
};
use leasehold_server::testing::TestServer;
use leasehold_server::{ManualClock, Role};

fn at(secs: i64) -> Timestamp {
    Timestamp::parse("2026-06-03T10:00:00Z")
        .unwrap()
        .checked_add_micros(secs * 1_000_000)
        .unwrap()
}

fn ctx(secs: i64) -> Context {
    Context::new(at(secs), "operator")
}

/// A trusting server over its own model, an `HttpStore` on the production
/// TTL path, and a second, local model to compare answers with.
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
    /// Run `op` on both stores; the answers must agree (Ok values equal, or
    /// errors with the same code and message). Returns the HTTP answer.
    fn both<T: PartialEq + std::fmt::Debug>(
        &self,
        op: impl Fn(&dyn Store) -> leasehold_core::Result<T>,
    ) -> leasehold_core::Result<T> {
        let want = op(&self.model);
        let got = op(&self.http);
        assert_eq!(got, want, "HTTP and the model disagree");
        got
    }
}

#[test]
fn ttl_path_is_exact_for_whole_milliseconds() {
    let p = pair();
    p.both(|s| s.create(NewTask::new("t1", "s1"), &ctx(0)))
        .unwrap();
    let t = p
        .both(|s| s.acquire_lease("t1", "w1", at(60), &ctx(1)))
        .unwrap();
    assert_eq!(t.lease_expires_at, Some(at(60)));
    assert_eq!(t.lease_acquired_at, Some(at(1)));
    let hb = p
        .both(|s| s.heartbeat("t1", &Fence::new("w1", 1), at(90), &ctx(30)))
        .unwrap();
    assert_eq!(hb.lease_expires_at, Some(at(90)));
    assert_eq!(hb.last_heartbeat_at, Some(at(30)));
    // A sub-millisecond remainder rounds the lease up, never down.
    let odd = at(120).checked_add_micros(1).unwrap();
    let hb = p
        .http
        .heartbeat("t1", &Fence::new("w1", 1), odd, &ctx(31))
        .unwrap();
    assert_eq!(hb.lease_expires_at, at(120).checked_add_micros(1000));
}

#[test]
fn expiries_outside_the_ttl_range_are_judged_like_the_model() {
    let p = pair();
    let f = Fence::new("w1", 1);
    p.both(|s| s.create(NewTask::new("t1", "s1"), &ctx(0)))
        .unwrap();
    // Not after `at`: the model says invalid_input, same message.
    let e = p
        .both(|s| s.acquire_lease("t1", "w1", at(5), &ctx(5)))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    p.both(|s| s.acquire_lease("t1", "w1", at(60), &ctx(1)))
        .unwrap();
    // A heartbeat that moves the expiry back before `at`: lease_conflict.
    let e = p
        .both(|s| s.heartbeat("t1", &f, at(10), &ctx(20)))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::LeaseConflict);
    // A stale token is reported as such even when the expiry is unsendable.
    let e = p
        .both(|s| s.heartbeat("t1", &Fence::new("w1", 9), at(10), &ctx(20)))
        .unwrap_err();
    assert!(e.message().contains("stale"), "{e}");
    // Longer than 24 hours: the model would accept it, the server cannot
    // grant it: invalid_input naming the range, and nothing changes.
    let before = p.http.get("t1").unwrap();
    let e = p
        .http
        .heartbeat("t1", &f, at(2 * 86_400), &ctx(20))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert!(e.message().contains("86400000"), "{e}");
    assert_eq!(p.http.get("t1").unwrap(), before);
    // Terminal wins over the range, as in the model.
    p.both(|s| s.complete("t1", Some("done"), Some(&f), &ctx(21)))
        .unwrap();
    let e = p
        .both(|s| s.heartbeat("t1", &f, at(1), &ctx(22)))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Terminal);
    let e = p
        .both(|s| s.acquire_lease("t1", "w2", at(3 * 86_400), &ctx(22)))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Terminal);
    // A missing task is not_found whatever the expiry.
    let e = p
        .both(|s| s.heartbeat("nope", &f, at(1), &ctx(22)))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
}

#[test]
fn a_production_server_decides_time_and_refuses_exact_expiries() {
    let clock = Arc::new(ManualClock::new(at(1000)));
    let server = TestServer::start_with_clock(Arc::new(MemoryStore::new()), false, clock.clone());
    let http = HttpStore::new(&server.url(), &server.operator_token()).unwrap();
    http.create(NewTask::new("t1", "s1"), &ctx(0)).unwrap();
    // The client says it is T0+0 and wants 60 s; the server's clock says
    // T0+1000, so that is when the lease starts, and it lasts 60 s.
    let t = http.acquire_lease("t1", "w1", at(60), &ctx(0)).unwrap();
    assert_eq!(t.lease_acquired_at, Some(at(1000)));
    assert_eq!(t.lease_expires_at, Some(at(1060)));
    // The actor header is ignored too: history names the token.
    let h = http.history("t1").unwrap();
    assert_eq!(h[0].actor, "operator");
    assert_eq!(h[0].at, at(1000));
    let exact = HttpStore::new(&server.url(), &server.operator_token())
        .unwrap()
        .with_exact_expiry();
    let e = exact
        .heartbeat("t1", &Fence::new("w1", 1), at(2000), &ctx(1001))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert!(e.message().contains("trust_client_clock"), "{e}");
}

#[test]
fn credentials_map_to_unauthorized_and_forbidden() {
    let p = pair();
    let reader = p.server.add_token("viewer", Role::Reader);
    for token in ["", "not-a-token"] {
        let anon = HttpStore::new(&p.server.url(), token).unwrap();
        let e = anon.get("t1").unwrap_err();
        assert_eq!(e.code(), ErrorCode::Unauthorized, "token {token:?}: {e}");
    }
    let r = HttpStore::new(&p.server.url(), &reader).unwrap();
    assert_eq!(r.get("t1").unwrap(), None, "readers may read");
    let e = r.create(NewTask::new("t1", "s1"), &ctx(0)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Forbidden, "{e}");
    assert_eq!(
        p.http.get("t1").unwrap(),
        None,
        "the refused create wrote nothing"
    );
}

#[test]
fn unreachable_server_is_unavailable_and_retryable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = HttpStore::new(&format!("http://127.0.0.1:{port}"), "t").unwrap();
    for e in [
        http.get("t1").unwrap_err(),
        http.create(NewTask::new("t1", "s1"), &ctx(0)).unwrap_err(),
    ] {
        assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
        assert!(e.is_retryable());
        assert!(e.message().contains(&port.to_string()), "{e}");
    }
    let e = HttpStore::new("127.0.0.1:8080", "t").unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput, "{e}");
}

#[test]
fn ids_with_slashes_and_colons_travel_as_one_path_segment() {
    let p = pair();
    let id = "team/alpha:issue-7.v2";
    let mut new = NewTask::new(id, "saga/alpha:7");
    new.compensations = vec![NewCompensation::new("delete_branch", "b/7", "undo")];
    p.both(|s| s.create(new.clone(), &ctx(0))).unwrap();
    p.both(|s| s.acquire_lease(id, "w1", at(60), &ctx(1)))
        .unwrap();
    p.both(|s| s.annotate(id, "op", "looks fine", &ctx(2)))
        .unwrap();
    p.both(|s| {
        s.record_compensation(
            id,
            0,
            leasehold_core::CompensationStatus::Applied,
            Some("ok"),
            &ctx(3),
        )
    })
    .unwrap();
    p.both(|s| s.fail(id, "broke", None, Some(&Fence::new("w1", 1)), &ctx(4)))
        .unwrap();
    p.both(|s| s.history(id)).unwrap();
    assert_eq!(p.http.get("team").unwrap(), None);
    assert_eq!(p.http.get("").unwrap(), None);
    assert_eq!(p.http.history("").unwrap_err().code(), ErrorCode::NotFound);
}

#[test]
fn list_in_flight_pages_through_more_than_one_list_page() {
    let p = pair();
    // Written straight into the server's store (no HTTP) to stay fast.
    for i in 0..1005 {
        let id = format!("t{i:04}");
        p.backing
            .create(NewTask::new(&id, format!("s{i}")), &ctx(0))
            .unwrap();
        p.model
            .create(NewTask::new(&id, format!("s{i}")), &ctx(0))
            .unwrap();
        if i % 100 == 7 {
            for s in [&*p.backing as &dyn Store, &p.model] {
                s.complete(&id, None, None, &ctx(1)).unwrap();
            }
        }
    }
    let got = p.both(|s| s.list_in_flight()).unwrap();
    assert_eq!(got.len(), 1005 - 10, "ten were completed (7, 107, …, 907)");
    assert!(got.iter().all(|t| !t.state.is_terminal()));
    let page = p
        .both(|s| s.list(&ListFilter::default(), None, Some(1000)))
        .unwrap();
    assert!(page.next_cursor.is_some());
    let rest = p
        .both(|s| {
            s.list(
                &ListFilter::default(),
                page.next_cursor.as_deref(),
                Some(1000),
            )
        })
        .unwrap();
    assert_eq!(rest.tasks.len(), 5);
    assert_eq!(rest.next_cursor, None);
}

#[test]
fn list_filters_and_stale_now_agree_with_the_model() {
    let p = pair();
    for (id, queue) in [("a", "q1"), ("b", "q2"), ("c", "q1")] {
        let mut n = NewTask::new(id, format!("s-{id}"));
        n.queue = Some(queue.into());
        p.both(|s| s.create(n.clone(), &ctx(0))).unwrap();
    }
    p.both(|s| s.acquire_lease("a", "w1", at(10), &ctx(1)))
        .unwrap();
    p.both(|s| s.acquire_lease("c", "w2", at(100), &ctx(1)))
        .unwrap();
    let stale = ListFilter {
        stale_at: Some(at(50)),
        ..ListFilter::default()
    };
    let page = p.both(|s| s.list(&stale, None, None)).unwrap();
    assert_eq!(page.tasks.len(), 1);
    assert_eq!(page.tasks[0].task_id, "a");
    let q1_running = ListFilter {
        states: vec![TaskState::Running],
        queue: Some("q1".into()),
        owner: Some("w2".into()),
        ..ListFilter::default()
    };
    let page = p.both(|s| s.list(&q1_running, None, None)).unwrap();
    assert_eq!(page.tasks.len(), 1);
    assert_eq!(page.tasks[0].task_id, "c");
    assert_eq!(p.both(|s| s.list_stale(at(100))).unwrap().len(), 2);
    let counts = p.both(|s| s.counts()).unwrap();
    assert_eq!(counts.len(), TaskState::ALL.len());
    let e = p
        .both(|s| s.list(&ListFilter::default(), Some("bogus"), None))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    let e = p
        .both(|s| s.list(&ListFilter::default(), None, Some(5000)))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
}

#[test]
fn claim_and_reclaim_over_the_ttl_path_match_the_model() {
    let p = pair();
    for (id, prio) in [("low", 0), ("high", 5)] {
        let mut n = NewTask::new(id, format!("s-{id}"));
        n.priority = Some(prio);
        p.both(|s| s.create(n.clone(), &ctx(0))).unwrap();
    }
    let req = leasehold_core::ClaimRequest {
        owner: "w1".into(),
        queues: vec![],
        ttl: std::time::Duration::from_secs(30),
        limit: 1,
        max_attempts: None,
    };
    let got = p.both(|s| s.claim(&req, &ctx(1))).unwrap();
    assert_eq!(got[0].task_id, "high");
    assert_eq!(got[0].lease_expires_at, Some(at(31)));
    let bad = leasehold_core::ClaimRequest {
        limit: 0,
        ..req.clone()
    };
    assert_eq!(
        p.both(|s| s.claim(&bad, &ctx(1))).unwrap_err().code(),
        ErrorCode::InvalidInput
    );
    let short = leasehold_core::ClaimRequest {
        ttl: std::time::Duration::from_millis(10),
        ..req.clone()
    };
    let e = p.http.claim(&short, &ctx(1)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput, "{e}");
    let back = p.both(|s| s.reclaim(1, &ctx(40))).unwrap();
    assert_eq!(back[0].state, TaskState::Quarantined);
    assert_eq!(
        p.both(|s| s.reclaim(0, &ctx(40))).unwrap_err().code(),
        ErrorCode::InvalidInput
    );
}

#[test]
fn a_server_that_never_answers_times_out_as_unavailable() {
    // Accepts connections and never replies; the listener lives until the
    // end of the test. The request timeout is the one real wait (200 ms).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let http = HttpStore::with_timeouts(
        &url,
        "t",
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let e = http.get("t1").unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    assert!(e.message().contains("timed out"), "{e}");
    drop(silent);
}

#[test]
fn async_client_sends_its_clock_and_actor_to_a_trusting_server() {
    let server = TestServer::start(Arc::new(MemoryStore::new()), true);
    let now = Arc::new(std::sync::atomic::AtomicI64::new(at(0).as_micros()));
    let clock = {
        let now = now.clone();
        Arc::new(move || {
            Timestamp::from_micros(now.load(std::sync::atomic::Ordering::SeqCst)).unwrap()
        })
    };
    let client = leasehold_client::Client::new(&server.url(), &server.operator_token())
        .unwrap()
        .with_clock(clock)
        .with_actor("alice");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        client.create(&NewTask::new("t1", "s1")).await.unwrap();
        now.store(at(10).as_micros(), std::sync::atomic::Ordering::SeqCst);
        let t = client
            .lease("t1", "w1", std::time::Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(t.lease_acquired_at, Some(at(10)));
        assert_eq!(t.lease_expires_at, Some(at(40)));
        now.store(at(50).as_micros(), std::sync::atomic::Ordering::SeqCst);
        let stale = client.stale().await.unwrap();
        assert_eq!(stale.len(), 1, "stale at the client's clock");
        let h = client.history("t1").await.unwrap();
        assert_eq!((h[0].actor.as_str(), h[0].at), ("alice", at(0)));
        let e = client
            .lease("t1", "w1", std::time::Duration::from_millis(10))
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{e}");
        assert_eq!(client.get("nope").await.unwrap(), None);
        assert_eq!(
            client.history("nope").await.unwrap_err().code(),
            ErrorCode::NotFound
        );
    });
}
