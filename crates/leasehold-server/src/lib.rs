//! # leasehold-server
//!
//! `leasehold serve`: the HTTP API over any [`Store`], with bearer-token auth,
//! a background reaper, Prometheus metrics and an OpenAPI description.
//!
//! The server adds no rules of its own. Each handler turns a JSON request into
//! one store call with a [`leasehold_core::Context`] whose time comes from the
//! server's [`Clock`] (never the worker's), runs it on the blocking pool, and
//! maps the result; the state machine in `leasehold-core` decides. What the
//! server does own is *who may ask*: the role matrix in [`auth`] and the worker
//! rules in [`api`] (a worker acts only as itself, and writes only under its
//! own lease's fence).
//!
//! Main items:
//! - [`router`] builds the axum router from an [`AppState`] (tests drive it
//!   with `oneshot`, no socket); [`serve`] binds and runs it with the reaper
//!   until a shutdown future resolves, finishing in-flight requests.
//! - [`tokens`]: the hashed token file and `create`/`list`/`revoke`.
//! - [`testing::TestServer`]: a real server on a loopback port for other
//!   crates' tests.

pub mod api;
pub mod auth;
pub mod batch;
pub mod clock;
pub mod console;
pub mod error;
pub mod extract;
pub mod failpoint;
pub mod metrics;
pub mod reaper;
pub mod schema;
pub mod testing;
pub mod tokens;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use leasehold_core::limits::RECLAIM_MAX_ATTEMPTS_DEFAULT;
use leasehold_core::{Error, Store};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ApiError, Problem};
pub use tokens::{Role, TokenStore};

/// Default listen address of `leasehold serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
/// Default interval between reaper passes.
pub const DEFAULT_REAPER_INTERVAL: Duration = Duration::from_secs(5);

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The backend.
    pub store: Arc<dyn Store>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// The live token set (or open mode).
    pub tokens: Arc<TokenStore>,
    /// Counters and the latency histogram.
    pub metrics: Arc<metrics::Metrics>,
    /// TEST ONLY: take `at` from `x-leasehold-at` and the actor from
    /// `x-leasehold-actor`, and accept `expires_at` in lease bodies.
    pub trust_client_clock: bool,
    /// `max_attempts` for the reaper and for `/v1/reclaim` without one.
    pub max_attempts: u32,
    /// The rendered OpenAPI document (filled by [`router`]).
    pub openapi: Arc<String>,
    /// Recent writes for the console's overview, fed by `store` (which
    /// [`AppState::new`] wraps in a `leasehold_console::RecordingStore`).
    pub console_events: Arc<leasehold_console::EventLog>,
}

impl AppState {
    /// State with default settings: wall-clock trust off, max attempts 5.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, tokens: Arc<TokenStore>) -> AppState {
        let console_events = Arc::new(leasehold_console::EventLog::new());
        let store: Arc<dyn Store> = Arc::new(leasehold_console::RecordingStore::new(
            store,
            console_events.clone(),
        ));
        AppState {
            store,
            console_events,
            clock,
            tokens,
            metrics: Arc::new(metrics::Metrics::new()),
            trust_client_clock: false,
            max_attempts: RECLAIM_MAX_ATTEMPTS_DEFAULT,
            openapi: Arc::new(String::new()),
        }
    }
}

/// How `leasehold serve` runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (default `127.0.0.1:7878`).
    pub listen: SocketAddr,
    /// Token file; `None` = no auth (every caller is an operator; loopback only).
    pub tokens_file: Option<PathBuf>,
    /// Interval between reaper passes; zero disables the reaper.
    pub reaper_interval: Duration,
    /// Attempts after which the reaper quarantines a stale task.
    pub max_attempts: u32,
    /// TEST ONLY: trust `x-leasehold-at` / `x-leasehold-actor` (never a CLI flag).
    pub trust_client_clock: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN.parse().expect("default listen address"),
            tokens_file: None,
            reaper_interval: DEFAULT_REAPER_INTERVAL,
            max_attempts: RECLAIM_MAX_ATTEMPTS_DEFAULT,
            trust_client_clock: false,
        }
    }
}

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No tokens are configured and the address is not loopback.
    #[error("refusing to listen on {0} without tokens: anyone who can reach it would be an operator; listen on 127.0.0.1 or pass --tokens FILE (create one with `leasehold token create`)")]
    OpenNonLoopback(SocketAddr),
    /// Bad configuration.
    #[error("invalid server configuration: {0}")]
    Config(String),
    /// The token file could not be read.
    #[error(transparent)]
    Tokens(#[from] tokens::TokenError),
    /// Binding the address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone)]
struct MakeId {
    prefix: Arc<String>,
    next: Arc<AtomicU64>,
}

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _req: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().clone();
    let started = Instant::now();
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    state
        .metrics
        .request(method.as_str(), &route, status, elapsed);
    tracing::info!(
        method = %method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    resp
}

async fn no_route(req: Request) -> ApiError {
    ApiError::new(Error::NotFound(format!(
        "no route {} {}; the API is under /v1 (see /openapi.json)",
        req.method(),
        req.uri().path()
    )))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::invalid_with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} is not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    )
}

/// The whole HTTP API over `state`: routes, auth, metrics, body limit,
/// catch-panic, request ids and request logs.
pub fn router(mut state: AppState) -> axum::Router {
    let console = console::console_state(&state);
    let (routes, api) = api::build();
    state.openapi = Arc::new(api.to_pretty_json().unwrap_or_else(|_| "{}".to_string()));
    let prefix = {
        use rand::Rng;
        format!("{:08x}", rand::thread_rng().gen::<u32>())
    };
    let make_id = MakeId {
        prefix: Arc::new(prefix),
        next: Arc::new(AtomicU64::new(1)),
    };
    routes
        .layer(from_fn_with_state(state.clone(), auth::authenticate))
        .layer(from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(extract::BODY_BYTES_MAX))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        // The operator console owns `/` and its pages; its own sessions and
        // CSRF tokens replace bearer auth there.
        .merge(leasehold_console::router(console))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .filter(|id| {
                        // A client-chosen id is logged only if short and plain.
                        id.len() <= 64
                            && id
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
                    })
                    .unwrap_or("-");
                tracing::info_span!(
                    "request",
                    request_id = %id,
                    method = %req.method(),
                    path = %req.uri().path(),
                    principal = tracing::field::Empty,
                )
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(make_id))
}

/// Check the listen address against the auth mode.
pub fn check_listen(addr: SocketAddr, open: bool) -> Result<(), ServeError> {
    if open && !addr.ip().is_loopback() {
        return Err(ServeError::OpenNonLoopback(addr));
    }
    Ok(())
}

/// Run the server until `shutdown` resolves: bind `config.listen`, start the
/// reaper, answer requests; on shutdown stop accepting, finish in-flight
/// requests, stop the reaper, return.
pub async fn serve(
    store: Arc<dyn Store>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if config.max_attempts == 0 {
        return Err(ServeError::Config("max_attempts must be at least 1".into()));
    }
    let tokens = match &config.tokens_file {
        Some(path) => TokenStore::from_file(path)?,
        None => TokenStore::open(),
    };
    check_listen(config.listen, tokens.is_open())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let mut state = AppState::new(store, Arc::new(SystemClock), Arc::new(tokens));
    state.trust_client_clock = config.trust_client_clock;
    state.max_attempts = config.max_attempts;
    let reaper = (!config.reaper_interval.is_zero()).then_some(config.reaper_interval);
    serve_listener(listener, state, reaper, shutdown).await
}

/// Run the server on an already bound listener with a prepared state (tests,
/// embedding). `reaper_interval` `None` disables the reaper.
pub async fn serve_listener(
    listener: tokio::net::TcpListener,
    state: AppState,
    reaper_interval: Option<Duration>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reaper = reaper_interval
        .map(|interval| tokio::spawn(reaper::run_loop(state.clone(), interval, stop_rx)));
    if state.trust_client_clock {
        tracing::warn!("trust_client_clock is on: clients choose the operation time (tests only)");
    }
    tracing::info!(%addr, auth = if state.tokens.is_open() { "none (loopback only)" } else { "tokens" }, "leasehold listening");
    let app = router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    if let Some(handle) = reaper {
        let _ = handle.await;
    }
    tracing::info!(%addr, "leasehold stopped");
    result.map_err(ServeError::Io)
}
