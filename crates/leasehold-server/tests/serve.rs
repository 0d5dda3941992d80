//! The real server on a loopback socket: graceful shutdown finishes an
//! in-flight request, the open mode refuses non-loopback addresses, and
//! `TestServer` works end to end.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasehold_core::memory::MemoryStore;
use leasehold_core::{Context, NewTask, Result, Store, Task};
use leasehold_server::testing::TestServer;
use leasehold_server::{
    check_listen, serve, AppState, Role, ServeError, ServerConfig, SystemClock, TokenStore,
};

/// A store whose `create` waits at a gate: it reports when it is entered and
/// proceeds only when released, so a request can be held in flight.
struct GatedStore {
    inner: MemoryStore,
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl Store for GatedStore {
    leasehold_core::delegate_store! {
        to self.inner;
        fn create(&self, new: NewTask, ctx: &Context) -> Result<Task> {
            self.entered.lock().unwrap().send(()).unwrap();
            self.release
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(30))
                .unwrap();
            self.inner.create(new, ctx)
        }
    }
}

/// One HTTP/1.1 request over a fresh connection; returns (status, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn graceful_shutdown_finishes_the_in_flight_request() {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let store = Arc::new(GatedStore {
        inner: MemoryStore::new(),
        entered: Mutex::new(entered_tx),
        release: Mutex::new(release_rx),
    });
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(
        store.clone(),
        Arc::new(SystemClock),
        Arc::new(TokenStore::open()),
    );
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            leasehold_server::serve_listener(listener, state, None, async move {
                let _ = stop_rx.await;
            })
            .await
        })
    });

    // A create request enters the store and is held there.
    let client = std::thread::spawn(move || {
        http(
            addr,
            "POST",
            "/v1/tasks",
            None,
            r#"{"task_id": "t", "saga_id": "s"}"#,
        )
    });
    entered_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("request reached the store");

    // Shutdown is requested while the request is in flight...
    stop_tx.send(()).unwrap();
    // ...the server stops accepting new connections (an event we wait for, bounded)...
    let mut refused = false;
    for _ in 0..10_000 {
        if TcpStream::connect(addr).is_err() {
            refused = true;
            break;
        }
        std::thread::yield_now();
    }
    assert!(
        refused,
        "after the shutdown signal the server stops accepting"
    );
    // ...but is still running: the held request keeps it alive.
    assert!(
        !server.is_finished(),
        "server must wait for the in-flight request"
    );
    release_tx.send(()).unwrap();

    let (status, body) = client.join().unwrap();
    assert_eq!(status, 201, "{body}");
    server.join().unwrap().expect("server stopped cleanly");
    // Nothing lost: the acknowledged task is in the store.
    assert!(store.inner.get("t").unwrap().is_some());
}

#[test]
fn open_mode_refuses_non_loopback_addresses() {
    assert!(check_listen("127.0.0.1:7878".parse().unwrap(), true).is_ok());
    assert!(check_listen("[::1]:7878".parse().unwrap(), true).is_ok());
    assert!(check_listen("0.0.0.0:7878".parse().unwrap(), false).is_ok());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(serve(
            Arc::new(MemoryStore::new()),
            ServerConfig {
                listen: "0.0.0.0:0".parse().unwrap(),
                ..ServerConfig::default()
            },
            async {},
        ))
        .unwrap_err();
    assert!(matches!(err, ServeError::OpenNonLoopback(_)), "{err}");
    assert!(err.to_string().contains("--tokens"), "{err}");
    // A tokens file that does not exist is a clear error too.
    let err = rt
        .block_on(serve(
            Arc::new(MemoryStore::new()),
            ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                tokens_file: Some("does-not-exist/tokens.json".into()),
                ..ServerConfig::default()
            },
            async {},
        ))
        .unwrap_err();
    assert!(err.to_string().contains("token create"), "{err}");
}

#[test]
fn test_server_serves_with_tokens_and_stops_on_drop() {
    let store = Arc::new(MemoryStore::new());
    let server = TestServer::start(store.clone(), false);
    let addr: SocketAddr = server.url().trim_start_matches("http://").parse().unwrap();
    let op = server.operator_token();
    let (status, _) = http(addr, "GET", "/v1/counts", None, "");
    assert_eq!(status, 401);
    let (status, body) = http(
        addr,
        "POST",
        "/v1/tasks",
        Some(&op),
        r#"{"task_id": "t1", "saga_id": "s1"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let reader = server.add_token("r", Role::Reader);
    let (status, _) = http(addr, "GET", "/v1/tasks/t1", Some(&reader), "");
    assert_eq!(status, 200);
    let (status, _) = http(addr, "POST", "/v1/tasks/t1/dispatch", Some(&reader), "");
    assert_eq!(status, 403);
    drop(server);
    assert!(
        TcpStream::connect(addr).is_err(),
        "the port is closed after drop"
    );
    assert!(store.get("t1").unwrap().is_some());
}

#[test]
fn workers_racing_over_http_for_one_task_have_exactly_one_winner() {
    const WORKERS: usize = 12;
    const ROUNDS: usize = 10;
    let store = Arc::new(MemoryStore::new());
    let server = TestServer::start(store.clone(), false);
    let addr: SocketAddr = server.url().trim_start_matches("http://").parse().unwrap();
    let tokens: Vec<String> = (0..WORKERS)
        .map(|i| server.add_token(&format!("w{i}"), Role::Worker))
        .collect();
    let op = server.operator_token();
    for round in 0..ROUNDS {
        let id = format!("race-{round}");
        let (status, body) = http(
            addr,
            "POST",
            "/v1/tasks",
            Some(&op),
            &format!(r#"{{"task_id": "{id}", "saga_id": "{id}"}}"#),
        );
        assert_eq!(status, 201, "{body}");
        let barrier = Arc::new(std::sync::Barrier::new(WORKERS));
        let handles: Vec<_> = tokens
            .iter()
            .cloned()
            .map(|token| {
                let barrier = barrier.clone();
                let path = format!("/v1/tasks/{id}/lease");
                std::thread::spawn(move || {
                    barrier.wait();
                    http(addr, "POST", &path, Some(&token), r#"{"ttl_ms": 60000}"#)
                })
            })
            .collect();
        let results: Vec<(u16, String)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners = results.iter().filter(|(s, _)| *s == 200).count();
        let conflicts = results
            .iter()
            .filter(|(s, b)| *s == 409 && b.contains("lease_conflict"))
            .count();
        assert_eq!(
            (winners, conflicts),
            (1, WORKERS - 1),
            "round {round}: {results:?}"
        );
        let task = store.get(&id).unwrap().unwrap();
        assert_eq!(task.lease_token, 1);
        assert_eq!(task.attempts, 1);
    }
}
