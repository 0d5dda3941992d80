//! Every screen does bounded work: a store wrapper counts the rows each page
//! reads, over a store much larger than any page, and no page may call
//! `list_in_flight` (a full scan of the in-flight tasks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use leasehold_console::{
    router, ConsoleState, Principal, Role, StaticAuth, QUEUE_SCAN_ROWS_MAX, SEARCH_SCAN_ROWS_MAX,
    WORKER_SCAN_ROWS_MAX,
};
use leasehold_core::memory::MemoryStore;
use leasehold_core::{Context, ListFilter, NewTask, Page, Result, Store, Task, Timestamp};
use tower::ServiceExt;

#[derive(Default)]
struct Reads {
    rows: AtomicU64,
    in_flight_calls: AtomicU64,
}

struct Counting {
    inner: MemoryStore,
    reads: Arc<Reads>,
}

/// Reads are counted; writes go to the inner store. Every provided method
/// keeps the trait's default, so `queue_counts` and `require` are counted
/// as the `list` pages and `get`s they make.
impl Store for Counting {
    leasehold_core::delegate_store! {
        to self.inner;
        defaults all;
        fn get(&self, id: &str) -> Result<Option<Task>> {
            self.reads.rows.fetch_add(1, Ordering::SeqCst);
            self.inner.get(id)
        }
        fn list(&self, f: &ListFilter, c: Option<&str>, l: Option<u32>) -> Result<Page> {
            let p = self.inner.list(f, c, l)?;
            self.reads
                .rows
                .fetch_add(p.tasks.len() as u64, Ordering::SeqCst);
            Ok(p)
        }
        fn list_in_flight(&self) -> Result<Vec<Task>> {
            self.reads.in_flight_calls.fetch_add(1, Ordering::SeqCst);
            self.inner.list_in_flight()
        }
        fn list_stale(&self, now: Timestamp) -> Result<Vec<Task>> {
            let v = self.inner.list_stale(now)?;
            self.reads.rows.fetch_add(v.len() as u64, Ordering::SeqCst);
            Ok(v)
        }
    }
}

const SECRET: &str = "lh_bounded_reader";
const TASKS: u64 = 12_000;
/// Stale tasks seeded: `list_stale` returns them all (the reaper keeps this
/// set small in practice), so pages that show stale leases read that many.
const STALE: u64 = TASKS / 30;

#[tokio::test]
async fn no_page_reads_more_than_its_bound() {
    let reads = Arc::new(Reads::default());
    let store = Counting {
        inner: MemoryStore::new(),
        reads: reads.clone(),
    };
    let at = Timestamp::parse("2026-06-03T09:00:00Z").unwrap();
    for i in 0..TASKS {
        let mut t = NewTask::new(format!("t-{i:05}"), format!("s-{i}"));
        t.queue = Some(if i % 2 == 0 { "a" } else { "b" }.into());
        store.create(t, &Context::new(at, "seed")).unwrap();
        let id = format!("t-{i:05}");
        if i % 3 == 0 {
            // Every 30th lease has expired by 10:00: stale.
            let exp = if i % 30 == 0 {
                "2026-06-03T09:30:00Z"
            } else {
                "2026-06-03T11:00:00Z"
            };
            store
                .acquire_lease(
                    &id,
                    "w",
                    Timestamp::parse(exp).unwrap(),
                    &Context::new(at, "w"),
                )
                .unwrap();
        } else if i % 7 == 0 {
            store
                .quarantine(&id, "bad input", None, &Context::new(at, "op"))
                .unwrap();
        }
    }
    let auth = StaticAuth::new().with(SECRET, Principal::new("r", Role::Reader));
    let now = Timestamp::parse("2026-06-03T10:00:00Z").unwrap();
    let app = router(ConsoleState::new(
        Arc::new(store),
        Some(Arc::new(auth)),
        Arc::new(move || now),
    ));
    let login = app
        .clone()
        .oneshot(
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("token={SECRET}")))
                .unwrap(),
        )
        .await
        .unwrap();
    let cookie = login.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    let bounds: [(&str, u64); 7] = [
        ("/tasks", 50),
        ("/tasks?state=running&queue=a&limit=100&cursor=s6000", 100),
        ("/tasks?q=no-such-text", u64::from(SEARCH_SCAN_ROWS_MAX)),
        (
            "/tasks?q=t-0&limit=20",
            20 + u64::from(leasehold_core::limits::LIST_LIMIT_MAX),
        ),
        ("/", u64::from(QUEUE_SCAN_ROWS_MAX) + STALE),
        ("/workers", u64::from(WORKER_SCAN_ROWS_MAX)),
        ("/stale?qcursor=s100", 50 + STALE),
    ];
    for (uri, bound) in bounds {
        reads.rows.store(0, Ordering::SeqCst);
        let resp = app
            .clone()
            .oneshot(
                Request::get(uri)
                    .header(header::COOKIE, &cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let read = reads.rows.load(Ordering::SeqCst);
        assert!(read > 0, "{uri} read nothing: the bound would be vacuous");
        assert!(read <= bound, "{uri} read {read} rows; bound {bound}");
        assert!(read < TASKS, "{uri} scanned the whole store");
        if uri == "/" {
            let text = String::from_utf8_lossy(&body);
            assert!(
                text.contains("first 5000 in-flight tasks only"),
                "the cap is said on the page"
            );
        }
    }
    assert_eq!(reads.in_flight_calls.load(Ordering::SeqCst), 0);
}
