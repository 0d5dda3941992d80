//! Who is looking: token login, server-side sessions behind an
//! `HttpOnly; SameSite=Strict` cookie, per-session CSRF tokens, and roles.
//!
//! The console never sees a token after login: the browser holds only a
//! random session id. Sessions live in memory (a restart logs everyone out),
//! are bounded ([`SESSIONS_MAX`]) and expire after [`SESSION_IDLE_SECS_MAX`]
//! idle. Every state-changing form carries the session's CSRF token, checked
//! in constant time; cross-site requests (`Sec-Fetch-Site: cross-site`) are
//! refused before that.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use leasehold_core::Timestamp;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::html;
use crate::query::Fields;
use crate::{ConsoleState, SESSIONS_MAX, SESSION_IDLE_SECS_MAX};

/// Name of the session cookie.
pub(crate) const COOKIE_NAME: &str = "lh_console";

/// What a token may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads only: sees every screen, no action.
    Reader,
    /// A worker's token: read-only in the console, like a reader.
    Worker,
    /// Everything, including the actions.
    Operator,
}

impl Role {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Worker => "worker",
            Role::Operator => "operator",
        }
    }
}

/// The holder of a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name: written as the actor of every action it takes.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Principal {
    /// Shorthand constructor.
    pub fn new(name: impl Into<String>, role: Role) -> Principal {
        Principal {
            name: name.into(),
            role,
        }
    }
}

/// Checks a presented secret. The server implements it over its token store.
pub trait ConsoleAuth: Send + Sync {
    /// The principal holding `secret`, or `None` if it is not a live token.
    fn verify(&self, secret: &str) -> Option<Principal>;
}

/// A fixed list of secrets, for tests, the demo and small setups.
#[derive(Debug, Clone, Default)]
pub struct StaticAuth {
    tokens: Vec<(String, Principal)>,
}

impl StaticAuth {
    /// No tokens.
    pub fn new() -> StaticAuth {
        StaticAuth::default()
    }

    /// Add a token.
    pub fn with(mut self, secret: impl Into<String>, principal: Principal) -> StaticAuth {
        self.tokens.push((secret.into(), principal));
        self
    }
}

impl ConsoleAuth for StaticAuth {
    fn verify(&self, secret: &str) -> Option<Principal> {
        // Compare against every token so that timing does not say which matched.
        let mut found = None;
        for (s, p) in &self.tokens {
            if bool::from(s.as_bytes().ct_eq(secret.as_bytes())) {
                found = Some(p.clone());
            }
        }
        found
    }
}

/// The signed-in visitor of one request.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub principal: Principal,
    pub csrf: String,
    pub session_id: String,
}

impl Viewer {
    /// Whether the viewer may take actions.
    pub fn can_act(&self) -> bool {
        self.principal.role == Role::Operator
    }

    /// Refuse a write that lacks this session's CSRF token or is not an operator's.
    pub fn authorize_write(
        &self,
        headers: &HeaderMap,
        fields: &Fields,
    ) -> Result<(), Box<Response>> {
        if headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
        {
            return Err(Box::new(html::error_page(
                StatusCode::FORBIDDEN,
                "forbidden",
                "cross-site form posts are refused",
            )));
        }
        let given = fields.get("csrf").unwrap_or("");
        if given.is_empty() || !bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes())) {
            return Err(Box::new(html::error_page(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the form's CSRF token is missing or not this session's; reload the page and try again",
            )));
        }
        if !self.can_act() {
            return Err(Box::new(html::error_page(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!(
                    "token {:?} has role {}; actions need an operator token",
                    self.principal.name,
                    self.principal.role.as_str()
                ),
            )));
        }
        Ok(())
    }
}

struct SessionData {
    principal: Principal,
    csrf: String,
    last_seen: Timestamp,
}

/// Live sessions, in memory.
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, SessionData>>,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    fn create(&self, principal: Principal, now: Timestamp) -> Viewer {
        let id = random_hex(32);
        let csrf = random_hex(32);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SESSIONS_MAX {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            SessionData {
                principal: principal.clone(),
                csrf: csrf.clone(),
                last_seen: now,
            },
        );
        Viewer {
            principal,
            csrf,
            session_id: id,
        }
    }

    fn lookup(&self, id: &str, now: Timestamp) -> Option<Viewer> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let idle_max_micros = SESSION_IDLE_SECS_MAX * 1_000_000;
        let expired = map
            .get(id)
            .map(|s| now.micros_since(s.last_seen) > idle_max_micros)?;
        if expired {
            map.remove(id);
            return None;
        }
        let s = map.get_mut(id)?;
        s.last_seen = now.max(s.last_seen);
        Some(Viewer {
            principal: s.principal.clone(),
            csrf: s.csrf.clone(),
            session_id: id.to_string(),
        })
    }

    fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(state: &ConsoleState, value: &str, clear: bool) -> HeaderValue {
    let mut c = format!("{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict");
    if clear {
        c.push_str("; Max-Age=0");
    }
    if state.secure_cookies {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("lh_console=; Max-Age=0"))
}

/// Only same-site paths are followed after login (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        // Browsers drop tabs and newlines from URLs ("/\t/evil" becomes
        // "//evil"), so any whitespace or control character is refused too.
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

/// Middleware for every screen and action: find the session or send the
/// visitor to log in. Without configured tokens everyone is the operator
/// `console` (the server then listens on loopback only).
pub(crate) async fn require_session(
    State(state): State<ConsoleState>,
    mut req: Request,
    next: Next,
) -> Response {
    let now = state.now();
    let existing = session_cookie(req.headers()).and_then(|id| state.sessions.lookup(&id, now));
    let (viewer, fresh) = match existing {
        Some(v) => (v, false),
        None if state.auth.is_none() => (
            state
                .sessions
                .create(Principal::new("console", Role::Operator), now),
            true,
        ),
        None => {
            if req.method() == Method::GET {
                let target = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                let q: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", &target)
                    .finish();
                return Redirect::to(&format!("/login?{q}")).into_response();
            }
            return html::error_page(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "no console session: log in with a reader or operator token first",
            );
        }
    };
    req.extensions_mut().insert(viewer.clone());
    let mut resp = next.run(req).await;
    if fresh {
        resp.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(&state, &viewer.session_id, false),
        );
    }
    resp
}

/// `GET /login`.
pub(crate) async fn login_page(
    State(state): State<ConsoleState>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let fields = Fields::parse(q.as_deref().unwrap_or(""));
    if state.auth.is_none() {
        return Redirect::to("/").into_response();
    }
    html::login(StatusCode::OK, &safe_next(fields.get("next")), None)
}

/// `POST /login`: check the token, start a session.
pub(crate) async fn login(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Form(raw): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields::from_pairs(raw);
    let next = safe_next(fields.get("next"));
    // Login CSRF: another site must not log a visitor in under its own token.
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
    {
        return html::error_page(
            StatusCode::FORBIDDEN,
            "forbidden",
            "cross-site login posts are refused",
        );
    }
    let Some(auth) = state.auth.clone() else {
        return Redirect::to(&next).into_response();
    };
    let secret = fields.get("token").unwrap_or("").trim().to_string();
    if secret.is_empty() {
        return html::login(
            StatusCode::UNPROCESSABLE_ENTITY,
            &next,
            Some("enter a reader or operator token"),
        );
    }
    let Some(principal) = auth.verify(&secret) else {
        return html::login(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("that token is not recognised (revoked, mistyped, or from another server)"),
        );
    };
    let viewer = state.sessions.create(principal, state.now());
    let mut resp = Redirect::to(&next).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, &viewer.session_id, false),
    );
    resp
}

/// `POST /logout` (CSRF-checked; any role may log out).
pub(crate) async fn logout(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Form(raw): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields::from_pairs(raw);
    let given = fields.get("csrf").unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(viewer.csrf.as_bytes())) {
        return html::error_page(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the form's CSRF token is missing or not this session's",
        );
    }
    state.sessions.remove(&viewer.session_id);
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&state, "", true));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_only_a_local_path() {
        assert_eq!(safe_next(Some("/tasks?q=a")), "/tasks?q=a");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/");
        assert_eq!(safe_next(Some("/\n/evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn static_auth_matches_exact_secret_only() {
        let a = StaticAuth::new().with("s3cret", Principal::new("ops", Role::Operator));
        assert_eq!(a.verify("s3cret").unwrap().name, "ops");
        assert!(a.verify("s3cre").is_none());
        assert!(a.verify("").is_none());
    }

    #[test]
    fn idle_sessions_expire() {
        let s = Sessions::default();
        let t0 = Timestamp::parse("2026-06-03T10:00:00Z").unwrap();
        let v = s.create(Principal::new("r", Role::Reader), t0);
        assert!(s.lookup(&v.session_id, t0).is_some());
        let late = t0
            .checked_add_micros((SESSION_IDLE_SECS_MAX + 1) * 1_000_000)
            .unwrap();
        assert!(s.lookup(&v.session_id, late).is_none());
        assert!(
            s.lookup(&v.session_id, t0).is_none(),
            "expired sessions are removed"
        );
    }
}
