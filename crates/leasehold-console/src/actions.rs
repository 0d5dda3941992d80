//! Operator actions: each a POST with the session's CSRF token, refused for
//! readers (403), run as one `Store` call with `Context { at: clock(), actor:
//! <token name> }`, so the task's history names the operator. Reasons are
//! asked for where SPEC needs one, and checked here first so the message
//! names the task.
//!
//! "Release a lease" is the one action the core records under another name:
//! `release` is a fenced worker write whose history actor is the fence's
//! owner. The console presents the task's current fence (read just before,
//! so a lease re-acquired in between is refused with `lease_conflict`) and
//! then appends a note by the operator giving the reason.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use leasehold_core::{
    validate, Command, CompensationStatus, Context, Error, Fence, NewCompensation, Result,
};
use maud::html;

use crate::auth::Viewer;
use crate::html::{self, state_badge, task_link, Nav};
use crate::query::Fields;
use crate::{blocking, ConsoleState, BULK_TASKS_MAX};

fn required(fields: &Fields, name: &str, what: &str, task_id: &str) -> Result<String> {
    fields.text(name).ok_or_else(|| {
        Error::InvalidInput(format!(
            "{what} task {task_id:?} needs a {name}; none was given"
        ))
    })
}

fn task_url(task_id: &str, done: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("id", task_id)
        .append_pair("done", done)
        .finish();
    format!("/task?{q}")
}

/// Build the command for `action` from the form, validating what the core
/// would otherwise reject with a less specific message.
fn command(
    action: &str,
    f: &Fields,
    task_id: &str,
    actor: &str,
    max_attempts: u32,
) -> Result<Command> {
    Ok(match action {
        "quarantine" => Command::Quarantine {
            reason: required(f, "reason", "quarantining", task_id)?,
            fence: None,
        },
        "complete" => Command::Complete {
            reason: f.text("reason"),
            fence: None,
        },
        "compensate" => Command::Compensate {
            reason: f.text("reason"),
            fence: None,
        },
        "fail" => {
            let reason = required(f, "reason", "failing", task_id)?;
            let parts = [f.text("comp_kind"), f.text("comp_target"), f.text("comp_reason")];
            let compensation = match parts {
                [None, None, None] => None,
                [Some(kind), Some(target), Some(why)] => Some(NewCompensation::new(kind, target, why)),
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "failing task {task_id:?}: a compensation needs all of kind, target and reason"
                    )))
                }
            };
            Command::Fail {
                reason,
                compensation,
                fence: None,
            }
        }
        "reclaim" => Command::Reclaim { max_attempts },
        "annotate" => Command::Annotate {
            author: actor.to_string(),
            note: required(f, "note", "annotating", task_id)?,
        },
        "record-compensation" => {
            let index = f
                .text("index")
                .and_then(|i| i.parse::<usize>().ok())
                .ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "recording a compensation on task {task_id:?} needs its index (a number from 0)"
                    ))
                })?;
            let status: CompensationStatus = required(f, "status", "recording a compensation on", task_id)?.parse()?;
            Command::RecordCompensation {
                index,
                status,
                detail: f.text("detail"),
            }
        }
        other => {
            return Err(Error::NotFound(format!(
                "no console action {other:?}; expected quarantine, complete, fail, compensate, release, reclaim, annotate or record-compensation"
            )))
        }
    })
}

/// `POST /actions/{action}` for one task.
pub(crate) async fn task_action(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path(action): Path<String>,
    headers: HeaderMap,
    Form(raw): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields::from_pairs(raw);
    if let Err(resp) = viewer.authorize_write(&headers, &fields) {
        return *resp;
    }
    let Some(task_id) = fields.text("task_id") else {
        return html::store_error(&Error::InvalidInput(format!(
            "action {action:?} needs a task_id; none was given"
        )));
    };
    if let Err(e) = validate::id("task id", &task_id) {
        return html::store_error(&e);
    }
    let ctx = Context::new(state.now(), viewer.principal.name.clone());
    let result = if action == "release" {
        let reason = match required(&fields, "reason", "releasing the lease of", &task_id) {
            Ok(r) => r,
            Err(e) => return html::store_error(&e),
        };
        let expected_token = fields.text("token").and_then(|t| t.parse::<u64>().ok());
        let id = task_id.clone();
        let operator = viewer.principal.name.clone();
        blocking(&state, move |s| {
            release(s, &id, expected_token, &reason, &operator, &ctx)
        })
        .await
    } else {
        let cmd = match command(
            &action,
            &fields,
            &task_id,
            &viewer.principal.name,
            state.max_attempts,
        ) {
            Ok(c) => c,
            Err(e) => return html::store_error(&e),
        };
        let id = task_id.clone();
        blocking(&state, move |s| s.apply(&id, cmd, &ctx).map(|_| ())).await
    };
    match result {
        Ok(()) => {
            tracing::info!(action = %action, task_id = %task_id, actor = %viewer.principal.name, "console action");
            Redirect::to(&task_url(&task_id, &action)).into_response()
        }
        Err(e) => html::store_error(&e),
    }
}

/// Release the task's current lease on an operator's behalf, then note why.
fn release(
    s: &dyn leasehold_core::Store,
    task_id: &str,
    expected_token: Option<u64>,
    reason: &str,
    operator: &str,
    ctx: &Context,
) -> Result<()> {
    let t = s.require(task_id)?;
    let (Some(owner), true) = (t.lease_owner.clone(), t.has_active_lease(ctx.at)) else {
        return Err(Error::LeaseConflict(format!(
            "task {task_id:?} has no live lease to release (state {}); a stale one is reclaimed instead",
            t.state
        )));
    };
    if let Some(tok) = expected_token {
        if tok != t.lease_token {
            return Err(Error::LeaseConflict(format!(
                "task {task_id:?} was re-leased (token {} now, {tok} on your page); reload and decide again",
                t.lease_token
            )));
        }
    }
    s.release(task_id, &Fence::new(owner.clone(), t.lease_token), ctx)?;
    s.annotate(
        task_id,
        operator,
        &format!(
            "released the lease of {owner:?} (token {}) from the console: {reason}",
            t.lease_token
        ),
        ctx,
    )?;
    Ok(())
}

/// `POST /actions/reclaim-all`: reclaim every stale task now, like the reaper.
pub(crate) async fn reclaim_all(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    Form(raw): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields::from_pairs(raw);
    if let Err(resp) = viewer.authorize_write(&headers, &fields) {
        return *resp;
    }
    let ctx = Context::new(state.now(), viewer.principal.name.clone());
    let max = state.max_attempts;
    match blocking(&state, move |s| s.reclaim(max, &ctx)).await {
        Ok(tasks) => {
            Redirect::to(&format!("/stale?done=reclaim-all&n={}", tasks.len())).into_response()
        }
        Err(e) => html::store_error(&e),
    }
}

/// `POST /actions/bulk-quarantine`: quarantine the confirmed selection. Each
/// task is its own atomic operation; the result page lists every outcome.
pub(crate) async fn bulk_quarantine(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    Form(raw): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields::from_pairs(raw);
    if let Err(resp) = viewer.authorize_write(&headers, &fields) {
        return *resp;
    }
    let ids: Vec<String> = fields
        .all("task_id")
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let check = || -> Result<String> {
        if ids.is_empty() {
            return Err(Error::InvalidInput(
                "bulk quarantine: no task was selected".into(),
            ));
        }
        if ids.len() > BULK_TASKS_MAX {
            return Err(Error::InvalidInput(format!(
                "bulk quarantine of {} tasks; at most {BULK_TASKS_MAX} at once",
                ids.len()
            )));
        }
        for id in &ids {
            validate::id("task id", id)?;
        }
        let reason = fields.text("reason").ok_or_else(|| {
            Error::InvalidInput(format!(
                "bulk quarantine of {} tasks needs a reason",
                ids.len()
            ))
        })?;
        validate::text("reason", &reason)?;
        if fields.get("confirm") != Some("yes") {
            return Err(Error::InvalidInput(
                "bulk quarantine needs the confirmation box ticked (confirm=yes)".into(),
            ));
        }
        Ok(reason)
    };
    let reason = match check() {
        Ok(r) => r,
        Err(e) => return html::store_error(&e),
    };
    let now = state.now();
    let ctx = Context::new(now, viewer.principal.name.clone());
    let ids2 = ids.clone();
    let outcomes = blocking(&state, move |s| {
        Ok(ids2
            .iter()
            .map(|id| {
                let r = s.apply(
                    id,
                    Command::Quarantine {
                        reason: reason.clone(),
                        fence: None,
                    },
                    &ctx,
                );
                (id.clone(), r)
            })
            .collect::<Vec<_>>())
    })
    .await;
    let outcomes = match outcomes {
        Ok(o) => o,
        Err(e) => return html::store_error(&e),
    };
    let ok = outcomes.iter().filter(|(_, r)| r.is_ok()).count();
    let back = fields
        .get("back")
        .filter(|b| b.starts_with("/tasks"))
        .unwrap_or("/tasks")
        .to_string();
    let body = html! {
        h1 { "Bulk quarantine" }
        p.flash.good[ok == outcomes.len()].bad[ok != outcomes.len()] #bulk-result {
            (ok) " of " (outcomes.len()) " tasks quarantined."
        }
        table {
            thead { tr { th { "task" } th { "outcome" } } }
            tbody {
                @for (id, r) in &outcomes {
                    tr {
                        td { (task_link(id)) }
                        td {
                            @match r {
                                Ok(t) => { (state_badge(t.state)) }
                                Err(e) => { span.bad { (e.code().as_str()) ": " (e.message()) } }
                            }
                        }
                    }
                }
            }
        }
        p { a href=(back) { "Back to the tasks" } }
    };
    let status = if ok == outcomes.len() {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    let mut resp = html::page("Bulk quarantine", &viewer, now, Nav::Tasks, 0, body);
    *resp.status_mut() = status;
    resp
}
