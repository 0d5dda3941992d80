//! Request extractors whose rejections use the API's problem shape.
//!
//! [`ApiJson`] replaces axum's `Json`: malformed JSON, wrong types, missing or
//! unknown fields become `invalid_input` (422), a wrong content type 415 and a
//! body over [`BODY_BYTES_MAX`] 413, both still with code `invalid_input`. An
//! empty body reads as `{}`, so actions whose fields are all optional can be
//! posted bare. [`TaskId`] and [`TaskIdIndex`] validate path ids.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use leasehold_core::validate;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest request body, in bytes. A whole task with maximal metadata and
/// many compensations fits; anything larger is refused before parsing.
pub const BODY_BYTES_MAX: usize = 1024 * 1024;

/// A JSON body, rejected with the API's problem shape.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

fn is_json(req: &Request) -> bool {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(ct) = ct.to_str() else { return false };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Parse JSON bytes (empty means `{}`) into `T`, with a clear message.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(format!("request body is not valid for this route: {e}")))
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = is_json(&req);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::invalid_with_status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body is larger than {BODY_BYTES_MAX} bytes"),
                )
            } else {
                ApiError::invalid(format!("request body could not be read: {rejection}"))
            }
        })?;
        if bytes.len() > BODY_BYTES_MAX {
            return Err(ApiError::invalid_with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {BODY_BYTES_MAX} bytes"),
            ));
        }
        if !bytes.iter().all(u8::is_ascii_whitespace) && !json {
            return Err(ApiError::invalid_with_status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "request body must be JSON with `Content-Type: application/json`",
            ));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// A validated task id from the path (`/v1/tasks/{id}`; encode `/` as `%2F`).
///
/// An id that is text but not a valid task id (charset, length) names no
/// task, so it is `not_found` with a message saying why, exactly as the
/// library answers `get`/`apply` for it; an id that is not UTF-8 is
/// `invalid_input`. `PUT` uses [`RawTaskId`]: inserting validates like create.
#[derive(Debug, Clone)]
pub struct TaskId(pub String);

/// A task id from the path, checked only for being text (for `PUT`, where the
/// store validates it like `create` and answers `invalid_input`).
#[derive(Debug, Clone)]
pub struct RawTaskId(pub String);

fn check_id(id: String) -> Result<String, ApiError> {
    if let Err(e) = validate::id("task_id", &id) {
        return Err(ApiError::new(leasehold_core::Error::NotFound(format!(
            "no task has id {:?}: {}",
            id.chars().take(160).collect::<String>(),
            e.message()
        ))));
    }
    Ok(id)
}

impl<S: Send + Sync> FromRequestParts<S> for RawTaskId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("bad task id in path: {e}")))?;
        Ok(RawTaskId(id))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TaskId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("bad task id in path: {e}")))?;
        check_id(id).map(TaskId)
    }
}

/// A validated task id and compensation index (`/v1/tasks/{id}/compensations/{index}`).
#[derive(Debug, Clone)]
pub struct TaskIdIndex(pub String, pub usize);

impl<S: Send + Sync> FromRequestParts<S> for TaskIdIndex {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((id, index)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("bad path: {e}")))?;
        let id = check_id(id)?;
        let index = index.parse::<usize>().map_err(|_| {
            ApiError::invalid(format!(
                "compensation index {index:?} of task {id:?} is not a non-negative integer"
            ))
        })?;
        Ok(TaskIdIndex(id, index))
    }
}
