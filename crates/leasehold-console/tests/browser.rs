//! The console in a real headless Chromium (Debian's `chromium`, driven over
//! WebDriver by `chromedriver`): log in, filter, open a task, quarantine it
//! through the form and check the change in the store; a reader sees no
//! action and its forged write is refused. Screenshots of every screen go to
//! `<target>/console-screenshots/`; with `LEASEHOLD_DOCS_SCREENSHOTS=1` the
//! main ones are also copied to `docs/img/`.
//!
//! Without chromium/chromedriver the test prints a loud SKIPPED and passes,
//! unless `CI` is set: then it fails (`.ci/browser.sh` installs them). The
//! name has "process" in it so nextest gives it two threads (chromium is heavy).
//! `CHROMIUM` and `CHROMEDRIVER` override the binaries' paths.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::webdriver::{Browser, Driver};
use leasehold_console::{router, ConsoleState, Principal, Role, StaticAuth};
use leasehold_core::memory::MemoryStore;
use leasehold_core::{
    Context, Fence, HistoryKind, NewCompensation, NewTask, Store, TaskState, Timestamp,
};

const OPERATOR: &str = "lh_browser_operator_secret";
/// A reader's page posting a quarantine with its own session's CSRF token.
const FORGED_POST: &str = r#"const done = arguments[arguments.length - 1];
   const csrf = document.querySelector('input[name=csrf]').value;
   fetch('/actions/quarantine', { method: 'POST',
     headers: { 'content-type': 'application/x-www-form-urlencoded' },
     body: 'task_id=pay-011&reason=forged&csrf=' + encodeURIComponent(csrf) })
   .then(r => done(r.status), e => done(String(e)));"#;
const READER: &str = "lh_browser_reader_secret";

fn binary(env: &str, default: &str) -> Option<PathBuf> {
    let p = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    p.is_file().then_some(p)
}

/// `target/` of this build (integration tests get `target/tmp` at compile time).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
}

fn t(hm: &str) -> Timestamp {
    Timestamp::parse(&format!("2026-06-03T{hm}Z")).unwrap()
}

fn c(hm: &str, actor: &str) -> Context {
    Context::new(t(hm), actor)
}

/// A small but complete fleet history ending at 10:00:00, written through
/// the console's recording store so the overview's chart has data.
fn seed(s: &dyn Store) {
    let mut n = 0;
    let mut task = |id: &str, queue: &str, branch: &str, comp: bool| {
        let mut nt = NewTask::new(id, format!("saga-{id}"));
        nt.queue = Some(queue.into());
        nt.branch = Some(branch.into());
        nt.issue = Some(100 + n);
        nt.metadata = Some(serde_json::json!({ "repo": "acme/shop", "agent": "coder" }));
        if comp {
            nt.compensations = vec![NewCompensation::new(
                "delete_branch",
                branch,
                "branch pushed to origin",
            )];
        }
        n += 1;
        s.create(nt, &c("09:31:00", "planner")).unwrap();
    };
    for i in 1..=12 {
        task(
            &format!("pay-{i:03}"),
            "payments",
            &format!("feat/pay-{i}"),
            i % 4 == 3,
        );
    }
    for i in 1..=8 {
        task(
            &format!("build-{i:03}"),
            "default",
            &format!("ci/build-{i}"),
            false,
        );
    }
    for i in 1..=4 {
        task(
            &format!("docs-{i:03}"),
            "docs",
            &format!("docs/page-{i}"),
            false,
        );
    }
    for id in ["pay-001", "pay-002", "pay-008", "build-004", "docs-002"] {
        s.dispatch(id, &c("09:32:00", "planner")).unwrap();
    }
    // A task that keeps crashing: quarantined by the reaper at 3 attempts.
    for (lease, exp, reap) in [
        ("09:35:00", "09:36:00", "09:37:00"),
        ("09:40:00", "09:41:00", "09:42:00"),
        ("09:45:00", "09:46:00", "09:50:00"),
    ] {
        s.acquire_lease("build-001", "worker-c", t(exp), &c(lease, "worker-c"))
            .unwrap();
        s.reclaim(3, &c(reap, "reaper")).unwrap();
    }
    // Finished work.
    for (id, owner, at) in [
        ("pay-006", "worker-a", "09:38:00"),
        ("build-002", "worker-b", "09:44:00"),
        ("docs-001", "worker-a", "09:52:00"),
    ] {
        let tk = s
            .acquire_lease(id, owner, t("09:59:00"), &c(at, owner))
            .unwrap();
        s.complete(
            id,
            Some("merged"),
            Some(&Fence::new(owner, tk.lease_token)),
            &c(at, owner),
        )
        .unwrap();
    }
    let tk = s
        .acquire_lease(
            "pay-007",
            "worker-b",
            t("09:59:00"),
            &c("09:47:00", "worker-b"),
        )
        .unwrap();
    s.fail(
        "pay-007",
        "tests failed",
        None,
        Some(&Fence::new("worker-b", tk.lease_token)),
        &c("09:48:00", "worker-b"),
    )
    .unwrap();
    // Live leases with heartbeats, and one stale lease (worker-c went quiet).
    for (id, owner) in [
        ("pay-003", "worker-a"),
        ("pay-004", "worker-b"),
        ("build-003", "worker-a"),
        ("docs-003", "worker-d"),
    ] {
        let tk = s
            .acquire_lease(id, owner, t("09:55:30"), &c("09:54:00", owner))
            .unwrap();
        let f = Fence::new(owner, tk.lease_token);
        s.heartbeat(id, &f, t("09:59:45"), &c("09:55:00", owner))
            .unwrap();
        s.heartbeat(id, &f, t("10:04:00"), &c("09:59:30", owner))
            .unwrap();
    }
    s.acquire_lease(
        "pay-005",
        "worker-c",
        t("09:57:00"),
        &c("09:56:00", "worker-c"),
    )
    .unwrap();
    s.annotate(
        "pay-005",
        "alice-ops",
        "worker-c restarted twice tonight",
        &c("09:58:00", "alice-ops"),
    )
    .unwrap();
}

struct Server {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(th) = self.thread.take() {
            let _ = th.join();
        }
    }
}

fn start_server(state: ConsoleState) -> Server {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, router(state))
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
    });
    Server {
        url,
        stop: Some(tx),
        thread: Some(thread),
    }
}

fn login(b: &Browser, base: &str, secret: &str) {
    b.goto(&format!("{base}/"));
    assert!(
        b.current_url().contains("/login?next=%2F"),
        "{}",
        b.current_url()
    );
    b.type_text(&b.find("#token"), secret);
    b.click(&b.find("#login"));
    b.wait_until("the login to finish", |b| {
        !b.current_url().contains("/login")
    });
}

#[test]
fn browser_process_operator_quarantines_through_the_form_and_reader_cannot_act() {
    let (Some(chromium), Some(chromedriver)) = (
        binary("CHROMIUM", "/usr/bin/chromium"),
        binary("CHROMEDRIVER", "/usr/bin/chromedriver"),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but chromium/chromedriver are missing: run `bash .ci/browser.sh`"
        );
        eprintln!("\n\n######## SKIPPED: browser test: chromium or chromedriver not installed (apt-get install chromium chromium-driver) ########\n\n");
        return;
    };
    let shots = target_dir().join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let store = Arc::new(MemoryStore::new());
    let auth = StaticAuth::new()
        .with(OPERATOR, Principal::new("alice-ops", Role::Operator))
        .with(READER, Principal::new("bob-reader", Role::Reader));
    let state = ConsoleState::new(
        store.clone(),
        Some(Arc::new(auth)),
        Arc::new(|| t("10:00:00")),
    )
    .with_max_attempts(3);
    seed(state.store.as_ref());
    // The scripted flow runs without live refresh, so the page never changes
    // under a click; a second server on the same state checks the refresh.
    let mut live_state = state.clone();
    live_state.refresh_secs = 1;
    let mut static_state = state;
    static_state.refresh_secs = 0;
    let server = start_server(static_state);
    let live = start_server(live_state);
    let base = server.url.clone();

    let driver = Driver::start(&chromedriver);
    let profile = tempfile::Builder::new()
        .prefix("lh-console-chrome-")
        .tempdir()
        .unwrap()
        .keep();
    let b = Browser::new(&driver, &chromium, profile);

    // Log in as the operator.
    b.goto(&format!("{base}/"));
    b.screenshot(&shots.join("login.png"));
    login(&b, &base, OPERATOR);
    assert_eq!(b.current_url(), format!("{base}/"));
    let stale_card = b.text(&b.find("#stale-count"));
    assert!(
        stale_card.starts_with('1'),
        "one stale lease (pay-005): {stale_card:?}"
    );
    assert!(
        b.text(&b.find("#recent")).contains("build-001"),
        "the reaper's quarantine is listed"
    );
    let bars = b.find_all("#ops-chart rect.bar");
    assert_eq!(bars.len(), 30, "one bar per minute");
    let session_cookie_visible = b.execute("return document.cookie;");
    assert_eq!(
        session_cookie_visible,
        serde_json::json!(""),
        "the session cookie is HttpOnly"
    );
    b.screenshot(&shots.join("overview.png"));

    // Filter the tasks by queue; the filter lives in the URL.
    b.goto(&format!("{base}/tasks"));
    b.type_text(&b.find("#f-queue"), "payments");
    b.click(&b.find("#apply"));
    b.wait_for_url("queue=payments");
    let rows = b.find_all("#task-table tbody tr[data-task]");
    assert_eq!(rows.len(), 12);
    for r in &rows {
        assert!(b.text(r).contains("payments"));
    }
    b.screenshot(&shots.join("tasks.png"));

    // Open a running task and quarantine it through the form.
    b.click(&b.find(r#"tr[data-task="pay-004"] a.task"#));
    b.wait_for_url("/task?id=pay-004");
    assert_eq!(b.text(&b.find("#lease-owner")), "worker-b");
    assert!(b.text(&b.find("#lease .countdown")).starts_with("in "));
    b.screenshot(&shots.join("task-detail.png"));
    b.type_text(
        &b.find("#quarantine-reason"),
        "worker-b loops on the payments migration",
    );
    b.click(&b.find("#do-quarantine"));
    b.wait_for_url("done=quarantine");
    assert_eq!(b.text(&b.find("#task-state")), "quarantined");
    assert!(b.text(&b.find("#history")).contains("alice-ops"));

    // The change as the store (what the API reads) has it.
    let q = store.get("pay-004").unwrap().unwrap();
    assert_eq!(q.state, TaskState::Quarantined);
    assert_eq!(
        q.terminal_reason.as_deref(),
        Some("worker-b loops on the payments migration")
    );
    let last = store.history("pay-004").unwrap().pop().unwrap();
    assert_eq!(
        (last.kind, last.actor.as_str()),
        (HistoryKind::Quarantined, "alice-ops")
    );

    b.goto(&format!("{base}/task?id=pay-003"));
    b.screenshot(&shots.join("task-detail-running.png"));
    b.goto(&format!("{base}/stale"));
    assert!(b.text(&b.find("#stale-table")).contains("pay-005"));
    assert!(b.text(&b.find("#quarantine-table")).contains("build-001"));
    b.screenshot(&shots.join("stale.png"));
    b.goto(&format!("{base}/workers"));
    assert!(b.text(&b.find("#workers-table")).contains("worker-a"));
    b.screenshot(&shots.join("workers.png"));

    // Log out, log in as a reader: no action anywhere, and a forged post is 403.
    b.click(&b.find("header form button"));
    b.wait_until("the logout", |b| b.current_url().ends_with("/login"));
    login(&b, &base, READER);
    b.goto(&format!("{base}/task?id=pay-003"));
    assert!(
        b.find_all("form.act").is_empty(),
        "a reader sees no action form"
    );
    assert!(b.find_all(r#"form[action^="/actions/"]"#).is_empty());
    b.screenshot(&shots.join("task-detail-reader.png"));
    let status = b.execute_async(&FORGED_POST.replace("pay-011", "pay-003"));
    assert_eq!(status, serde_json::json!(403));
    assert_eq!(
        store.get("pay-003").unwrap().unwrap().state,
        TaskState::Running
    );

    // Live refresh: a change in the store shows up without a reload.
    b.goto(&format!("{}/task?id=pay-003", live.url));
    assert!(!b.text(&b.find("#notes")).contains("paged the on-call"));
    b.execute("window.__marker = 'same page';");
    // Hide the tab: ticks keep coming but do not refresh.
    b.execute(
        "Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
         document.dispatchEvent(new Event('visibilitychange'));",
    );
    store
        .annotate(
            "pay-003",
            "carol-ops",
            "paged the on-call",
            &c("10:00:00", "carol-ops"),
        )
        .unwrap();
    b.wait_until("two refresh ticks while hidden", |b| {
        b.execute("return Number(document.getElementById('live').dataset.skipped || 0);")
            .as_u64()
            .is_some_and(|n| n >= 2)
    });
    let notes = b.execute("return document.querySelector('#notes').textContent;");
    assert!(
        !notes.as_str().unwrap_or("").contains("paged the on-call"),
        "no refresh while the tab is hidden"
    );
    assert_eq!(
        b.execute("return document.getElementById('live').textContent;"),
        serde_json::json!("paused (tab hidden)")
    );
    // Visible again: it refreshes at once.
    b.execute(
        "Object.defineProperty(document, 'hidden', { configurable: true, get: () => false });
         document.dispatchEvent(new Event('visibilitychange'));",
    );
    b.wait_until("the live refresh to show the new note", |b| {
        // One script call reads the swapped-in DOM atomically.
        b.execute("return document.querySelector('#notes').textContent;")
            .as_str()
            .is_some_and(|t| t.contains("paged the on-call"))
    });
    assert_eq!(
        b.execute("return window.__marker;"),
        serde_json::json!("same page"),
        "refreshed in place, not reloaded"
    );

    // Last (its session cookie replaces the one above: cookies ignore ports):
    // the same flow on the real server (`leasehold serve` mounts the console
    // at `/`, tokens from its token store), checked through the HTTP API.
    let api = leasehold_server::testing::TestServer::start_with_clock(
        store.clone(),
        false,
        Arc::new(leasehold_server::ManualClock::new(t("10:00:00"))),
    );
    b.goto(&format!("{}/", api.url()));
    b.wait_for_url("/login");
    b.type_text(&b.find("#token"), &api.operator_token());
    b.click(&b.find("#login"));
    b.wait_until("the login on the server", |b| {
        !b.current_url().contains("/login")
    });
    b.goto(&format!("{}/task?id=pay-012", api.url()));
    b.type_text(&b.find("#quarantine-reason"), "duplicate of pay-011");
    b.click(&b.find("#do-quarantine"));
    b.wait_for_url("done=quarantine");
    let http = reqwest::blocking::Client::new();
    let bearer = format!("Bearer {}", api.operator_token());
    let task: serde_json::Value = http
        .get(format!("{}/v1/tasks/pay-012", api.url()))
        .header("authorization", &bearer)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(task["state"], "quarantined", "{task}");
    assert_eq!(task["terminal_reason"], "duplicate of pay-011");
    let history: serde_json::Value = http
        .get(format!("{}/v1/tasks/pay-012/history", api.url()))
        .header("authorization", &bearer)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "quarantined", "{last}");
    assert_eq!(last["actor"], "operator", "the server token's name: {last}");
    // A reader token of the server: no action, and a forged post is 403.
    let reader = api.add_token("dana-reader", leasehold_server::Role::Reader);
    b.click(&b.find("header form button"));
    b.wait_until("the logout on the server", |b| {
        b.current_url().ends_with("/login")
    });
    b.type_text(&b.find("#token"), &reader);
    b.click(&b.find("#login"));
    b.wait_until("the reader login on the server", |b| {
        !b.current_url().contains("/login")
    });
    b.goto(&format!("{}/task?id=pay-011", api.url()));
    assert!(b.find_all("form.act").is_empty());
    assert_eq!(b.execute_async(FORGED_POST), serde_json::json!(403));
    assert_eq!(
        store.get("pay-011").unwrap().unwrap().state,
        TaskState::Planned
    );
    drop(api);

    if std::env::var_os("LEASEHOLD_DOCS_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/img");
        std::fs::create_dir_all(&docs).unwrap();
        for name in [
            "overview",
            "tasks",
            "task-detail-running",
            "stale",
            "workers",
        ] {
            std::fs::copy(
                shots.join(format!("{name}.png")),
                docs.join(format!("console-{name}.png")),
            )
            .unwrap();
        }
    }
    drop(b);
    drop(driver);
    drop(live);
    drop(server);
}
