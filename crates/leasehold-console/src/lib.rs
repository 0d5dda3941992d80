//! # leasehold-console
//!
//! The operator console that `leasehold serve` mounts at `/`: server-rendered
//! HTML screens (overview, tasks, task detail, stale and quarantine, workers)
//! and the operator actions SPEC allows without a fence.
//!
//! Design, and why:
//! - **Server-rendered, compile-time templates** ([`maud`]): nothing to build
//!   with npm, nothing read from disk at run time, every value HTML-escaped by
//!   default. One small CSS file and one small script are compiled into the
//!   binary and served from `/assets/`, so a strict Content-Security-Policy
//!   (`script-src 'self'`) holds. The only chart is an SVG drawn on the server.
//! - **Only the [`Store`] seam.** The console never touches SQL: every read and
//!   write is a `Store` call run on tokio's blocking pool. Rules stay in
//!   `leasehold_core::machine`; the console only chooses commands, with
//!   `Context { at: clock(), actor: <operator's token name> }`.
//! - **Bounded work per page.** Lists use `Store::list` cursors (keyset
//!   pagination), totals come from `Store::counts()`, and anything the store
//!   cannot filter (text in id/branch, per-queue counts, workers) is a forward
//!   scan over at most a named number of rows that says how far it got.
//! - **Sessions, not bearer headers.** A browser logs in once with a reader or
//!   operator token; the console keeps a server-side session behind an
//!   `HttpOnly; SameSite=Strict` cookie, and every state-changing form carries
//!   a per-session CSRF token. Readers see no action buttons and their writes
//!   are refused with 403 anyway.
//! - **Events.** Operations per minute and recent reclaims/quarantines come
//!   from an in-memory ring buffer ([`EventLog`]) fed by a recording wrapper
//!   around the store ([`RecordingStore`]): [`ConsoleState::new`] wraps the
//!   store it is given, and a server that uses [`ConsoleState::store`] for its
//!   API and reaper gets every write counted. Anything else can call
//!   [`ConsoleState::record_event`]. The buffer is per process and starts empty
//!   on restart; history in the store remains the durable record.
//!
//! Main types: [`ConsoleState`], [`router`], [`ConsoleAuth`] / [`Principal`] /
//! [`Role`], [`EventLog`], [`RecordingStore`].

mod actions;
mod auth;
mod events;
mod html;
mod pages;
mod query;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use leasehold_core::{Store, Timestamp};

pub use auth::{ConsoleAuth, Principal, Role, StaticAuth};
pub use events::{ConsoleEvent, EventLog, RecordingStore};

/// Rows a text search (id/branch) scans per page request before it stops and
/// offers to continue: the store has no text index, so this bounds the work.
pub const SEARCH_SCAN_ROWS_MAX: u32 = 5_000;
/// Rows scanned to count in-flight tasks per queue on the overview.
pub const QUEUE_SCAN_ROWS_MAX: u32 = 5_000;
/// Running tasks scanned to build the workers screen.
pub const WORKER_SCAN_ROWS_MAX: u32 = 5_000;
/// Stale tasks shown on one screen (the count is exact, the list is cut).
pub const STALE_ROWS_SHOWN_MAX: usize = 200;
/// Tasks one bulk quarantine may change.
pub const BULK_TASKS_MAX: usize = 200;
/// Default and largest page size of the tasks screen.
pub const PAGE_ROWS_DEFAULT: u32 = 50;
/// Largest page size of the tasks screen.
pub const PAGE_ROWS_MAX: u32 = 500;
/// Live sessions kept; the least recently used is dropped past this.
pub const SESSIONS_MAX: usize = 10_000;
/// A session unused for this long is gone.
pub const SESSION_IDLE_SECS_MAX: i64 = 12 * 3600;
/// Events kept in the ring buffer.
pub const EVENTS_MAX: usize = 10_000;
/// Minutes shown on the operations-per-minute chart.
pub const CHART_MINUTES: i64 = 30;

/// The current time, as the server sees it. Injected so that tests are exact.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Everything the console's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ConsoleState {
    /// The store, wrapped in a [`RecordingStore`] feeding [`Self::events`].
    /// A server should use this handle for its API and reaper too, so that
    /// the console's operations-per-minute chart counts every write.
    pub store: Arc<dyn Store>,
    /// Token check; `None` means no tokens are configured: the server only
    /// listens on loopback and every visitor is an operator named `console`.
    pub auth: Option<Arc<dyn ConsoleAuth>>,
    /// The server's clock: the only one that decides expiry and countdowns.
    pub clock: Clock,
    /// `max_attempts` for "reclaim now" (as the reaper uses).
    pub max_attempts: u32,
    /// Recent operations (ring buffer).
    pub events: Arc<EventLog>,
    /// Seconds between live refreshes of a visible page; 0 turns it off.
    pub refresh_secs: u32,
    /// Add `Secure` to the session cookie (set it when served over HTTPS).
    pub secure_cookies: bool,
    sessions: Arc<auth::Sessions>,
}

impl ConsoleState {
    /// A console over `store` (wrapped to record events), checking tokens with
    /// `auth`, telling time with `clock`. Refresh every 5 s, `max_attempts` 5.
    pub fn new(
        store: Arc<dyn Store>,
        auth: Option<Arc<dyn ConsoleAuth>>,
        clock: Clock,
    ) -> ConsoleState {
        let events = Arc::new(EventLog::new());
        let store: Arc<dyn Store> = Arc::new(RecordingStore::new(store, events.clone()));
        ConsoleState::with_events(store, events, auth, clock)
    }

    /// A console over a store that already records into `events` (a
    /// [`RecordingStore`] the server built so that its API and reaper writes
    /// are counted too). The store is used as is, not wrapped again.
    pub fn with_events(
        recording_store: Arc<dyn Store>,
        events: Arc<EventLog>,
        auth: Option<Arc<dyn ConsoleAuth>>,
        clock: Clock,
    ) -> ConsoleState {
        ConsoleState {
            store: recording_store,
            auth,
            clock,
            max_attempts: leasehold_core::limits::RECLAIM_MAX_ATTEMPTS_DEFAULT,
            events,
            refresh_secs: 5,
            secure_cookies: false,
            sessions: Arc::new(auth::Sessions::default()),
        }
    }

    /// Set `max_attempts` for "reclaim now".
    pub fn with_max_attempts(mut self, max_attempts: u32) -> ConsoleState {
        self.max_attempts = max_attempts;
        self
    }

    /// Record an operation that did not go through [`Self::store`] (e.g. a
    /// reaper holding another store handle). Shown on the overview.
    pub fn record_event(&self, event: ConsoleEvent) {
        self.events.record(event);
    }

    fn now(&self) -> Timestamp {
        (self.clock)()
    }
}

/// The console's routes, to be mounted at `/` (it owns `/`, `/login`,
/// `/logout`, `/tasks`, `/task`, `/stale`, `/workers`, `/bulk/quarantine`,
/// `/actions/…` and `/assets/…`; it leaves `/v1`, `/healthz` and the rest alone).
pub fn router(state: ConsoleState) -> Router {
    let protected = Router::new()
        .route("/", get(pages::overview))
        .route("/tasks", get(pages::tasks))
        .route("/task", get(pages::task_detail))
        .route("/stale", get(pages::stale))
        .route("/workers", get(pages::workers))
        .route("/bulk/quarantine", get(pages::bulk_confirm))
        .route("/actions/bulk-quarantine", post(actions::bulk_quarantine))
        .route("/actions/reclaim-all", post(actions::reclaim_all))
        .route("/actions/{action}", post(actions::task_action))
        .route("/logout", post(auth::logout))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_session,
        ));
    Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/assets/console.css", get(html::css))
        .route("/assets/console.js", get(html::js))
        .merge(protected)
        .layer(axum::middleware::from_fn(html::security_headers))
        .with_state(state)
}

/// Run `f` against the store on the blocking pool (the `Store` seam is synchronous).
pub(crate) async fn blocking<T, F>(state: &ConsoleState, f: F) -> leasehold_core::Result<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> leasehold_core::Result<T> + Send + 'static,
{
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .unwrap_or_else(|e| {
            Err(leasehold_core::Error::Internal(format!(
                "console store call did not finish: {e}"
            )))
        })
}
