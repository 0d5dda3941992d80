//! A real server for other crates' tests: [`TestServer`] runs the full router
//! on `127.0.0.1:0` on its own thread and runtime, with an operator token
//! pre-created, and stops (gracefully) when dropped. The reaper is off, so a
//! test's fixed instants are never reclaimed behind its back.

use std::sync::Arc;
use std::thread::JoinHandle;

use leasehold_core::Store;
use tokio::sync::oneshot;

use crate::clock::{Clock, SystemClock};
use crate::tokens::{Role, TokenStore};
use crate::AppState;

/// A running server for tests.
pub struct TestServer {
    url: String,
    operator_token: String,
    tokens: Arc<TokenStore>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Start on the wall clock. With `trust_client_clock` the server takes the
    /// operation time from `x-leasehold-at` and the actor from `x-leasehold-actor`.
    pub fn start(store: Arc<dyn Store>, trust_client_clock: bool) -> TestServer {
        TestServer::start_with_clock(store, trust_client_clock, Arc::new(SystemClock))
    }

    /// Start with a given clock (e.g. a [`crate::ManualClock`]).
    pub fn start_with_clock(
        store: Arc<dyn Store>,
        trust_client_clock: bool,
        clock: Arc<dyn Clock>,
    ) -> TestServer {
        let tokens = Arc::new(TokenStore::in_memory(Default::default()));
        let operator_token = tokens
            .add("operator", Role::Operator)
            .expect("fresh token set accepts operator")
            .secret;
        // The last handle on the store is dropped on the server thread after
        // its runtime is gone: some backends (PostgreSQL's blocking client)
        // panic when dropped inside a runtime.
        let keep_store = store.clone();
        let mut state = AppState::new(store, clock, tokens.clone());
        state.trust_client_clock = trust_client_clock;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind 127.0.0.1:0 for the test server");
        std_listener
            .set_nonblocking(true)
            .expect("non-blocking test listener");
        let addr = std_listener.local_addr().expect("test listener address");
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("leasehold-test-server-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("test server runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener)
                        .expect("adopt test listener");
                    let shutdown = async move {
                        let _ = rx.await;
                    };
                    if let Err(e) = crate::serve_listener(listener, state, None, shutdown).await {
                        tracing::error!(error = %e, "test server stopped with an error");
                    }
                });
                drop(rt);
                drop(keep_store);
            })
            .expect("spawn test server thread");
        TestServer {
            url: format!("http://{addr}"),
            operator_token,
            tokens,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The pre-created operator token's secret (name `operator`).
    pub fn operator_token(&self) -> String {
        self.operator_token.clone()
    }

    /// Create another token; returns its secret.
    pub fn add_token(&self, name: &str, role: Role) -> String {
        self.tokens
            .add(name, role)
            .unwrap_or_else(|e| panic!("add test token {name:?}: {e}"))
            .secret
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
