//! The HTTP contract, written once: how each operation becomes a request
//! (method, path, query, JSON body) and how a response becomes a value or a
//! [`leasehold_core::Error`]. The blocking [`crate::HttpStore`] and the async
//! [`crate::Client`] only differ in how they send a `Call` (crate-private).

use std::time::Duration;

use leasehold_core::{
    ClaimRequest, CompensationStatus, Error, ErrorCode, Fence, ListFilter, NewCompensation,
    NewTask, Result, Task, Timestamp,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

/// Shortest lease the server grants, in milliseconds.
pub const LEASE_TTL_MS_MIN: u64 = 100;
/// Longest lease the server grants, in milliseconds (24 hours).
pub const LEASE_TTL_MS_MAX: u64 = 86_400_000;

/// Header carrying the operation's time; honoured only by a server in its
/// test-only `trust_client_clock` mode, ignored otherwise.
pub const HEADER_AT: &str = "x-leasehold-at";
/// Header carrying the actor; honoured only in `trust_client_clock` mode.
pub const HEADER_ACTOR: &str = "x-leasehold-actor";

/// HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Put,
}

/// What a 404 means for this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum On404 {
    /// An error (`not_found`).
    Error,
    /// "No such task": the caller turns it into `None`.
    Absent,
}

/// One request, independent of the HTTP library that sends it.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub method: Method,
    /// Path segments after `/v1`, each percent-encoded on its own (task ids
    /// may contain `/`).
    pub segments: Vec<String>,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Value>,
    pub on_404: On404,
    /// An operation time this call itself implies (a list's `stale_at`); it
    /// wins over the caller's context time.
    pub at: Option<Timestamp>,
}

impl Call {
    fn new(method: Method, segments: &[&str]) -> Call {
        Call {
            method,
            segments: segments.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: None,
            on_404: On404::Error,
            at: None,
        }
    }

    fn body(mut self, body: Value) -> Call {
        self.body = Some(body);
        self
    }

    fn task(method: Method, task_id: &str, rest: &[&str]) -> Call {
        let mut segs = vec!["tasks", task_id];
        segs.extend_from_slice(rest);
        Call::new(method, &segs)
    }

    /// The full URL under `base` (which should end without `/v1`).
    pub fn url(&self, base: &reqwest::Url) -> Result<reqwest::Url> {
        let mut url = base.clone();
        {
            let mut segs = url.path_segments_mut().map_err(|_| {
                Error::InvalidInput(format!("server url {base} cannot be a base url"))
            })?;
            segs.pop_if_empty().push("v1");
            for s in &self.segments {
                segs.push(s);
            }
        }
        if !self.query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in &self.query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }
}

/// Parse a server URL such as `http://127.0.0.1:7878`.
pub(crate) fn parse_base(url: &str) -> Result<reqwest::Url> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| {
        Error::InvalidInput(format!(
            "server url {url:?} is not a URL (expected e.g. http://127.0.0.1:7878): {e}"
        ))
    })?;
    let mut parsed = parsed;
    // A base URL given with the API prefix (`…/v1`) would double it and make
    // every call a "no route" 404: accept it and drop the prefix.
    let path = parsed.path().trim_end_matches('/').to_string();
    if let Some(stripped) = path.strip_suffix("/v1") {
        parsed.set_path(if stripped.is_empty() { "/" } else { stripped });
    }
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(Error::InvalidInput(format!(
            "server url {url:?} has scheme {other:?}; expected http or https"
        ))),
    }
}

/// Convert a lease duration to whole milliseconds (rounded up, so a lease is
/// never shorter than asked) and check the server's range.
pub fn ttl_ms_of(ttl: Duration) -> Result<u64> {
    let ms = u64::try_from(ttl.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
    check_ttl_ms(ms)
}

/// Convert `expires_at` at `at` into a TTL in milliseconds for the wire.
///
/// The server computes `expires_at = its time + ttl_ms`; with a server that
/// trusts the client clock (tests) that is exact whenever the difference is a
/// whole number of milliseconds. Sub-millisecond remainders round up.
pub fn ttl_ms_between(at: Timestamp, expires_at: Timestamp) -> Result<u64> {
    let micros = expires_at.micros_since(at);
    if micros <= 0 {
        return Err(Error::InvalidInput(format!(
            "lease must expire after {at}, got {expires_at}"
        )));
    }
    let ms = (micros as u64).div_ceil(1000);
    check_ttl_ms(ms)
}

fn check_ttl_ms(ms: u64) -> Result<u64> {
    if !(LEASE_TTL_MS_MIN..=LEASE_TTL_MS_MAX).contains(&ms) {
        return Err(Error::InvalidInput(format!(
            "lease ttl of {ms} ms is out of range; the server accepts {LEASE_TTL_MS_MIN} to {LEASE_TTL_MS_MAX} ms"
        )));
    }
    Ok(ms)
}

fn fence_into(body: &mut Map<String, Value>, fence: Option<&Fence>) {
    if let Some(f) = fence {
        body.insert("owner".into(), json!(f.owner));
        body.insert("token".into(), json!(f.token));
    }
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

pub(crate) fn create(new: &NewTask) -> Call {
    Call::new(Method::Post, &["tasks"]).body(json!(new))
}

pub(crate) fn put(task: &Task, expected_version: Option<u64>) -> Result<Call> {
    let mut body = object(
        serde_json::to_value(task)
            .map_err(|e| Error::Internal(format!("cannot encode task {:?}: {e}", task.task_id)))?,
    );
    match expected_version {
        Some(v) => body.insert("version".into(), json!(v)),
        None => body.remove("version"),
    };
    Ok(Call::task(Method::Put, &task.task_id, &[]).body(Value::Object(body)))
}

pub(crate) fn get(task_id: &str) -> Call {
    let mut c = Call::task(Method::Get, task_id, &[]);
    c.on_404 = On404::Absent;
    c
}

pub(crate) fn history(task_id: &str) -> Call {
    Call::task(Method::Get, task_id, &["history"])
}

pub(crate) fn dispatch(task_id: &str) -> Call {
    Call::task(Method::Post, task_id, &["dispatch"]).body(json!({}))
}

pub(crate) fn lease(task_id: &str, owner: &str, ttl_ms: u64) -> Call {
    lease_until(task_id, owner, Until::TtlMs(ttl_ms))
}

/// How a lease's end travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// `ttl_ms` from the server's time (production).
    TtlMs(u64),
    /// `expires_at`, accepted only by a `trust_client_clock` server (tests).
    Instant(Timestamp),
}

impl Until {
    fn put_into(self, body: &mut Map<String, Value>) {
        match self {
            Until::TtlMs(ms) => body.insert("ttl_ms".into(), json!(ms)),
            Until::Instant(t) => body.insert("expires_at".into(), json!(t)),
        };
    }
}

pub(crate) fn lease_until(task_id: &str, owner: &str, until: Until) -> Call {
    let mut body = Map::new();
    body.insert("owner".into(), json!(owner));
    until.put_into(&mut body);
    Call::task(Method::Post, task_id, &["lease"]).body(Value::Object(body))
}

pub(crate) fn heartbeat_until(task_id: &str, fence: &Fence, until: Until) -> Call {
    let mut body = Map::new();
    fence_into(&mut body, Some(fence));
    until.put_into(&mut body);
    Call::task(Method::Post, task_id, &["heartbeat"]).body(Value::Object(body))
}

pub(crate) fn claim_until(req: &ClaimRequest, until: Until) -> Call {
    let mut body = Map::new();
    body.insert("owner".into(), json!(req.owner));
    body.insert("queues".into(), json!(req.queues));
    body.insert("limit".into(), json!(req.limit));
    if let Some(max) = req.max_attempts {
        body.insert("max_attempts".into(), json!(max));
    }
    until.put_into(&mut body);
    Call::new(Method::Post, &["claim"]).body(Value::Object(body))
}

pub(crate) fn heartbeat(task_id: &str, fence: &Fence, ttl_ms: u64) -> Call {
    heartbeat_until(task_id, fence, Until::TtlMs(ttl_ms))
}

pub(crate) fn release(task_id: &str, fence: &Fence) -> Call {
    Call::task(Method::Post, task_id, &["release"])
        .body(json!({"owner": fence.owner, "token": fence.token}))
}

/// `complete` (`compensated == false`) or `compensate`.
pub(crate) fn finish(
    task_id: &str,
    compensated: bool,
    reason: Option<&str>,
    fence: Option<&Fence>,
) -> Call {
    let mut body = Map::new();
    if let Some(r) = reason {
        body.insert("reason".into(), json!(r));
    }
    fence_into(&mut body, fence);
    let verb = if compensated {
        "compensate"
    } else {
        "complete"
    };
    Call::task(Method::Post, task_id, &[verb]).body(Value::Object(body))
}

pub(crate) fn fail(
    task_id: &str,
    reason: &str,
    compensation: Option<&NewCompensation>,
    fence: Option<&Fence>,
) -> Call {
    let mut body = Map::new();
    body.insert("reason".into(), json!(reason));
    if let Some(c) = compensation {
        body.insert("compensation".into(), json!(c));
    }
    fence_into(&mut body, fence);
    Call::task(Method::Post, task_id, &["fail"]).body(Value::Object(body))
}

pub(crate) fn quarantine(task_id: &str, reason: &str, fence: Option<&Fence>) -> Call {
    let mut body = Map::new();
    body.insert("reason".into(), json!(reason));
    fence_into(&mut body, fence);
    Call::task(Method::Post, task_id, &["quarantine"]).body(Value::Object(body))
}

pub(crate) fn annotate(task_id: &str, author: &str, note: &str) -> Call {
    Call::task(Method::Post, task_id, &["notes"]).body(json!({"note": note, "author": author}))
}

pub(crate) fn record_compensation(
    task_id: &str,
    index: usize,
    status: CompensationStatus,
    detail: Option<&str>,
) -> Call {
    let idx = index.to_string();
    let mut body = Map::new();
    body.insert("status".into(), json!(status));
    if let Some(d) = detail {
        body.insert("detail".into(), json!(d));
    }
    Call::task(Method::Post, task_id, &["compensations", &idx]).body(Value::Object(body))
}

pub(crate) fn claim(req: &ClaimRequest, ttl_ms: u64) -> Call {
    claim_until(req, Until::TtlMs(ttl_ms))
}

/// One lease of a batch call on the wire: `{"task_id", "owner", "token"}`.
fn batch_leases(leases: &[(String, Fence)]) -> Value {
    leases
        .iter()
        .map(|(id, f)| json!({"task_id": id, "owner": f.owner, "token": f.token}))
        .collect()
}

/// `POST /v1/heartbeats`: extend every lease to the same end.
pub(crate) fn heartbeats(leases: &[(String, Fence)], until: Until) -> Call {
    let mut body = Map::new();
    body.insert("leases".into(), batch_leases(leases));
    until.put_into(&mut body);
    Call::new(Method::Post, &["heartbeats"]).body(Value::Object(body))
}

/// `POST /v1/completions`: complete every leased task under its own fence.
pub(crate) fn completions(leases: &[(String, Fence)], reason: Option<&str>) -> Call {
    let mut body = Map::new();
    body.insert("leases".into(), batch_leases(leases));
    if let Some(r) = reason {
        body.insert("reason".into(), json!(r));
    }
    Call::new(Method::Post, &["completions"]).body(Value::Object(body))
}

/// A batch route's reply as sent: one `{"task"}` or `{"error"}` per item.
#[derive(serde::Deserialize)]
struct BatchReply {
    results: Vec<Value>,
}

/// Decode a batch reply into one answer per item, in order. An item's
/// error maps back to an [`Error`] by its `code`, like a whole problem; a
/// reply with a different number of items than `sent` is `internal`.
pub(crate) fn decode_batch(call: &Call, reply: Reply, sent: usize) -> Result<Vec<Result<Task>>> {
    let got: BatchReply = decode_some(call, reply)?;
    if got.results.len() != sent {
        return Err(Error::Internal(format!(
            "{} answered {} results for {sent} items",
            describe(call),
            got.results.len()
        )));
    }
    got.results
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let bad = |why: &str| {
                Error::Internal(format!(
                    "{} answered item {i} with {why}: {}",
                    describe(call),
                    item.to_string().chars().take(300).collect::<String>()
                ))
            };
            match (item.get("task"), item.get("error")) {
                (Some(t), None) => Ok(Ok(serde_json::from_value::<Task>(t.clone())
                    .map_err(|e| bad(&format!("a task that does not decode ({e})")))?)),
                (None, Some(e)) => {
                    let code = e
                        .get("code")
                        .and_then(Value::as_str)
                        .map(|c| ErrorCode::parse(c).unwrap_or(ErrorCode::Internal))
                        .ok_or_else(|| bad("an error without a code"))?;
                    let message = e
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    Ok(Err(Error::new(code, message)))
                }
                _ => Err(bad("neither a task nor an error")),
            }
        })
        .collect()
}

/// Reclaim one named stale task (`POST /v1/tasks/{id}/reclaim`, added after
/// the first route list: older servers answer a `no route` 404, see
/// `HttpStore::apply`).
pub(crate) fn reclaim_one(task_id: &str, max_attempts: u32) -> Call {
    Call::task(Method::Post, task_id, &["reclaim"]).body(json!({"max_attempts": max_attempts}))
}

pub(crate) fn reclaim(max_attempts: u32) -> Call {
    Call::new(Method::Post, &["reclaim"]).body(json!({"max_attempts": max_attempts}))
}

pub(crate) fn stale() -> Call {
    Call::new(Method::Get, &["stale"])
}

pub(crate) fn counts() -> Call {
    Call::new(Method::Get, &["counts"])
}

pub(crate) fn list(filter: &ListFilter, cursor: Option<&str>, limit: Option<u32>) -> Call {
    let mut c = Call::new(Method::Get, &["tasks"]);
    if !filter.states.is_empty() {
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        c.query.push(("state", states.join(",")));
    }
    if let Some(q) = &filter.queue {
        c.query.push(("queue", q.clone()));
    }
    if let Some(o) = &filter.owner {
        c.query.push(("owner", o.clone()));
    }
    if let Some(at) = filter.stale_at {
        // The API filters "stale now"; `now` travels as the operation time,
        // which a server honours only in `trust_client_clock` mode.
        c.query.push(("stale", "true".to_string()));
        c.at = Some(at);
    }
    if let Some(l) = limit {
        c.query.push(("limit", l.to_string()));
    }
    if let Some(cur) = cursor {
        c.query.push(("cursor", cur.to_string()));
    }
    c
}

/// A response as received: status, content type and body bytes.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Decode a reply into `T`, or into the error the server reported.
/// A 404 on an [`On404::Absent`] call decodes to `Ok(None)`.
pub(crate) fn decode<T: DeserializeOwned>(call: &Call, reply: Reply) -> Result<Option<T>> {
    if (200..300).contains(&reply.status) {
        return serde_json::from_slice(&reply.body).map(Some).map_err(|e| {
            Error::Internal(format!(
                "server answered {} to {} with a body that is not the expected JSON: {e}",
                reply.status,
                describe(call)
            ))
        });
    }
    let err = problem_to_error(call, &reply);
    if reply.status == 404 && call.on_404 == On404::Absent && err.code() == ErrorCode::NotFound {
        return Ok(None);
    }
    Err(err)
}

/// Like [`decode`], for calls that always answer a value.
pub(crate) fn decode_some<T: DeserializeOwned>(call: &Call, reply: Reply) -> Result<T> {
    decode(call, reply)?
        .ok_or_else(|| Error::Internal(format!("{} answered nothing", describe(call))))
}

fn describe(call: &Call) -> String {
    let m = match call.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
    };
    format!("{m} /v1/{}", call.segments.join("/"))
}

/// Map an RFC 9457 problem (or any error reply) back to an [`Error`]: by its
/// `code` member when present, else by the HTTP status.
fn problem_to_error(call: &Call, reply: &Reply) -> Error {
    let problem: Option<Value> = serde_json::from_slice(&reply.body).ok();
    let member = |k: &str| {
        problem
            .as_ref()
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let message = member("detail")
        .or_else(|| member("title"))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&reply.body);
            let text = text.trim();
            if text.is_empty() {
                format!("server answered {} to {}", reply.status, describe(call))
            } else {
                format!(
                    "server answered {} to {}: {}",
                    reply.status,
                    describe(call),
                    text.chars().take(500).collect::<String>()
                )
            }
        });
    let code = member("code")
        .and_then(|c| ErrorCode::parse(&c))
        .unwrap_or_else(|| status_code(reply.status));
    Error::new(code, message)
}

fn status_code(status: u16) -> ErrorCode {
    match status {
        400 | 413 | 415 | 422 => ErrorCode::InvalidInput,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 | 405 => ErrorCode::NotFound,
        429 | 502 | 503 | 504 => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    }
}

/// Map a transport failure (connect, timeout, reset) to `unavailable`.
pub(crate) fn transport_error(call: &Call, base: &reqwest::Url, e: &reqwest::Error) -> Error {
    if e.is_builder() {
        return Error::InvalidInput(format!("cannot build {}: {e}", describe(call)));
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    Error::Unavailable(format!("{} to server {base} {what}: {e}", describe(call)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn ttl_rounds_up_and_checks_range() {
        let at = Timestamp::parse("2026-06-03T10:00:00Z").unwrap();
        let plus = |us: i64| at.checked_add_micros(us).unwrap();
        assert_eq!(ttl_ms_between(at, plus(30_000_000)).unwrap(), 30_000);
        assert_eq!(ttl_ms_between(at, plus(100_001)).unwrap(), 101);
        assert_eq!(
            ttl_ms_between(at, plus(99_000)).unwrap_err().code(),
            ErrorCode::InvalidInput
        );
        assert_eq!(
            ttl_ms_between(at, at).unwrap_err().code(),
            ErrorCode::InvalidInput
        );
        assert_eq!(
            ttl_ms_between(at, plus(-1)).unwrap_err().code(),
            ErrorCode::InvalidInput
        );
        assert_eq!(
            ttl_ms_between(at, plus(86_400_000_000)).unwrap(),
            LEASE_TTL_MS_MAX
        );
        assert!(ttl_ms_between(at, plus(86_400_000_001)).is_err());
        assert_eq!(ttl_ms_of(Duration::from_millis(100)).unwrap(), 100);
        assert!(ttl_ms_of(Duration::from_millis(99)).is_err());
        assert!(ttl_ms_of(Duration::from_secs(u64::MAX)).is_err());
    }

    #[test]
    fn task_ids_with_slashes_stay_one_segment() {
        let base = parse_base("http://127.0.0.1:9/").unwrap();
        let url = history("a/b:c").url(&base).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/v1/tasks/a%2Fb:c/history");
        let base = parse_base("http://127.0.0.1:9/prefix").unwrap();
        assert_eq!(
            counts().url(&base).unwrap().as_str(),
            "http://127.0.0.1:9/prefix/v1/counts"
        );
        for given in [
            "http://127.0.0.1:9/v1",
            "http://127.0.0.1:9/v1/",
            "http://127.0.0.1:9/prefix/v1/",
        ] {
            let base = parse_base(given).unwrap();
            let url = counts().url(&base).unwrap();
            assert!(url.path().ends_with("/v1/counts"), "{given} -> {url}");
            assert!(!url.path().contains("/v1/v1"), "{given} -> {url}");
        }
    }

    #[test]
    fn bad_base_urls_are_invalid_input() {
        assert_eq!(
            parse_base("not a url").unwrap_err().code(),
            ErrorCode::InvalidInput
        );
        assert_eq!(
            parse_base("ftp://x").unwrap_err().code(),
            ErrorCode::InvalidInput
        );
    }

    #[test]
    fn problems_map_by_code_then_status() {
        let c = dispatch("t1");
        let e = decode::<Task>(
            &c,
            reply(409, r#"{"type":"about:blank","title":"Conflict","status":409,"code":"terminal","detail":"task \"t1\" is completed"}"#),
        )
        .unwrap_err();
        assert_eq!(e, Error::Terminal("task \"t1\" is completed".into()));
        let e = decode::<Task>(&c, reply(503, "")).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Unavailable);
        let e = decode::<Task>(&c, reply(418, "teapot")).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Internal);
        assert!(e.message().contains("teapot"), "{e}");
    }

    #[test]
    fn not_found_on_get_is_absent_but_other_errors_are_not() {
        let c = get("t1");
        let none = decode::<Task>(&c, reply(404, r#"{"code":"not_found","detail":"x"}"#)).unwrap();
        assert!(none.is_none());
        let e =
            decode::<Task>(&c, reply(401, r#"{"code":"unauthorized","detail":"no"}"#)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Unauthorized);
        let e = decode::<Task>(
            &history("t1"),
            reply(404, r#"{"code":"not_found","detail":"x"}"#),
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::NotFound);
    }

    #[test]
    fn put_sends_expected_version_or_none() {
        let ctx =
            leasehold_core::Context::new(Timestamp::parse("2026-06-03T10:00:00Z").unwrap(), "t");
        let task = leasehold_core::machine::create(NewTask::new("t1", "s1"), &ctx)
            .unwrap()
            .task;
        let with = put(&task, Some(7)).unwrap();
        assert_eq!(with.body.as_ref().unwrap()["version"], json!(7));
        let without = put(&task, None).unwrap();
        assert!(without.body.as_ref().unwrap().get("version").is_none());
    }
}
