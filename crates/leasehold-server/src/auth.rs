//! Authentication and the coarse half of authorisation.
//!
//! Every route has an [`Access`] level in one table, [`route_access`]: the
//! middleware [`authenticate`] resolves the bearer token to a [`Principal`],
//! rejects callers whose role is below the route's level (`unauthorized`
//! without a valid token, `forbidden` with too weak a role) before any body is
//! read, and hands the principal to the handler. The fine half — a worker may
//! act only as itself and only on tasks it leases — lives in the handlers,
//! which know the task (see `api.rs`).
//!
//! With no tokens configured every caller is an operator; [`crate::serve`]
//! then refuses to listen on anything but loopback.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use leasehold_core::{validate, Context, Timestamp};

use crate::error::ApiError;
use crate::tokens::Role;
use crate::AppState;

/// Header carrying the operation time when `trust_client_clock` is on (tests only).
pub const AT_HEADER: &str = "x-leasehold-at";
/// Header carrying the actor when `trust_client_clock` is on (tests only).
pub const ACTOR_HEADER: &str = "x-leasehold-actor";
/// Name of the principal when no tokens are configured.
pub const OPEN_PRINCIPAL: &str = "operator";

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no token: health, readiness, the API description, the console page.
    Public,
    /// At least this role.
    Role(Role),
}

/// The access level of a route, by method and route template. Routes not in
/// the table need an operator (deny by default).
pub fn route_access(method: &Method, path: &str) -> Access {
    use Access::*;
    let m = method.as_str();
    match (m, path) {
        ("GET", "/" | "/healthz" | "/readyz" | "/openapi.json") => Public,
        ("GET", "/metrics") => Role(crate::Role::Reader),
        (
            "GET",
            "/v1/tasks" | "/v1/tasks/{id}" | "/v1/tasks/{id}/history" | "/v1/stale" | "/v1/counts",
        ) => Role(crate::Role::Reader),
        (
            "POST",
            "/v1/claim"
            | "/v1/tasks/{id}/lease"
            | "/v1/tasks/{id}/heartbeat"
            | "/v1/tasks/{id}/release"
            | "/v1/tasks/{id}/complete"
            | "/v1/tasks/{id}/compensate"
            | "/v1/tasks/{id}/fail"
            | "/v1/tasks/{id}/quarantine"
            | "/v1/tasks/{id}/notes"
            | "/v1/tasks/{id}/compensations/{index}"
            // Batch routes: each item is judged by the worker rules (batch.rs).
            | "/v1/heartbeats"
            | "/v1/completions",
        ) => Role(crate::Role::Worker),
        _ => Role(crate::Role::Operator),
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Token name (a worker's owner id), or `operator` with no tokens configured.
    pub name: String,
    /// Its role.
    pub role: Role,
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, secret) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| secret.trim())
        .filter(|s| !s.is_empty())
}

/// Middleware: resolve the token, enforce the route's access level.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
    else {
        // Unmatched: the fallback answers 404/405 without revealing anything.
        return next.run(req).await;
    };
    let access = route_access(req.method(), &path);
    let principal = if state.tokens.is_open() {
        Principal {
            name: OPEN_PRINCIPAL.to_string(),
            role: Role::Operator,
        }
    } else {
        match bearer(&req).map(|s| state.tokens.verify(s)) {
            Some(Some(id)) => Principal {
                name: id.name,
                role: id.role,
            },
            Some(None) if access != Access::Public => {
                return ApiError::unauthorized(
                    "the bearer token is not recognised (revoked or mistyped)",
                )
                .into_response()
            }
            None if access != Access::Public => {
                return ApiError::unauthorized(
                    "missing bearer token; send `Authorization: Bearer lh_…`",
                )
                .into_response()
            }
            _ => {
                return next.run(req).await;
            }
        }
    };
    if let Access::Role(min) = access {
        if principal.role < min {
            return ApiError::forbidden(format!(
                "token {:?} has role {}; {} {path} needs {min}",
                principal.name,
                principal.role,
                req.method()
            ))
            .into_response();
        }
    }
    tracing::Span::current().record("principal", principal.name.as_str());
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// A handler's view of the caller: who, and the operation's context (time and actor).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated principal.
    pub principal: Principal,
    /// Time and actor for the store call.
    pub ctx: Context,
}

impl Caller {
    /// Whether the caller acts as a worker (fine-grained checks apply).
    pub fn is_worker(&self) -> bool {
        self.principal.role == Role::Worker
    }

    /// Whether the caller is an operator.
    pub fn is_operator(&self) -> bool {
        self.principal.role == Role::Operator
    }

    /// The owner a lease/claim/fence is taken under: the given one, or the
    /// caller's name. A worker can only be itself.
    pub fn owner(&self, given: Option<String>) -> Result<String, ApiError> {
        let owner = given.unwrap_or_else(|| self.principal.name.clone());
        if self.is_worker() && owner != self.principal.name {
            return Err(ApiError::forbidden(format!(
                "worker token {:?} can act only as owner {:?}, not {owner:?}",
                self.principal.name, self.principal.name
            )));
        }
        // The owner's shape is the store's to check, in its fixed order
        // (a missing task is `not_found` before a bad owner is `invalid_input`).
        Ok(owner)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::internal("route reached without the auth middleware"))?;
        let mut at = state.clock.now();
        let mut actor = principal.name.clone();
        if state.trust_client_clock {
            if let Some(v) = parts.headers.get(AT_HEADER) {
                let text = v
                    .to_str()
                    .map_err(|_| ApiError::invalid(format!("header {AT_HEADER} is not text")))?;
                at = Timestamp::parse(text)?;
            }
            if let Some(v) = parts.headers.get(ACTOR_HEADER) {
                let text = v
                    .to_str()
                    .map_err(|_| ApiError::invalid(format!("header {ACTOR_HEADER} is not text")))?;
                validate::owner(text)?;
                actor = text.to_string();
            }
        }
        Ok(Caller {
            principal,
            ctx: Context::new(at, actor),
        })
    }
}
