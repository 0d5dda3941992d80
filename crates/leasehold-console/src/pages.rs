//! The screens: overview, tasks (filters in the URL, keyset pagination,
//! bounded text search), task detail, stale and quarantine, workers, and the
//! bulk-quarantine confirmation. Read-only: actions live in `actions`.
//!
//! Every screen does bounded work: exact totals come from `Store::counts()`,
//! lists from `Store::list` cursors, and the few things the store cannot
//! answer directly (text search, per-queue counts, workers) scan forward over
//! at most a named number of rows and say so on the page.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use leasehold_core::limits::LIST_LIMIT_MAX;
use leasehold_core::{
    Counts, Error, HistoryEntry, ListFilter, Result, Store, Task, TaskState, Timestamp,
};
use maud::{html, Markup};

use crate::auth::Viewer;
use crate::html::{
    self, countdown, json_block, ops_chart, state_badge, task_link, utc, when, when_opt, Nav,
};
use crate::query::{Fields, TaskQuery};
use crate::{
    blocking, ConsoleEvent, ConsoleState, BULK_TASKS_MAX, CHART_MINUTES, QUEUE_SCAN_ROWS_MAX,
    SEARCH_SCAN_ROWS_MAX, STALE_ROWS_SHOWN_MAX, WORKER_SCAN_ROWS_MAX,
};

const IN_FLIGHT: [TaskState; 3] = [
    TaskState::Planned,
    TaskState::Dispatched,
    TaskState::Running,
];

/// What one tasks page found.
pub(crate) struct Found {
    pub tasks: Vec<Task>,
    pub next_cursor: Option<String>,
    /// Rows read from the store for this page.
    pub scanned: u32,
    /// The text search stopped at [`SEARCH_SCAN_ROWS_MAX`] before filling the page.
    pub scan_capped: bool,
}

/// One page of tasks for `q`. Without text this is one `Store::list` call.
/// With text it scans forward in chunks, at most [`SEARCH_SCAN_ROWS_MAX`]
/// rows, and ends the page exactly after its last match (a second, shorter
/// read of the final chunk), so the next cursor never skips a match.
pub(crate) fn search(store: &dyn Store, q: &TaskQuery, now: Timestamp) -> Result<Found> {
    let filter = q.filter(now);
    if q.text.is_none() {
        let page = store.list(&filter, q.cursor.as_deref(), Some(q.limit))?;
        let scanned = u32::try_from(page.tasks.len()).unwrap_or(u32::MAX);
        return Ok(Found {
            tasks: page.tasks,
            next_cursor: page.next_cursor,
            scanned,
            scan_capped: false,
        });
    }
    let limit = q.limit as usize;
    let mut cursor = q.cursor.clone();
    let mut out: Vec<Task> = Vec::new();
    let mut scanned: u32 = 0;
    loop {
        let budget = SEARCH_SCAN_ROWS_MAX.saturating_sub(scanned);
        if budget == 0 {
            return Ok(Found {
                tasks: out,
                next_cursor: cursor,
                scanned,
                scan_capped: true,
            });
        }
        let need = limit - out.len();
        let chunk = budget.min(LIST_LIMIT_MAX);
        let page = store.list(&filter, cursor.as_deref(), Some(chunk))?;
        let hits: Vec<usize> = page
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| q.text_matches(t))
            .map(|(i, _)| i)
            .collect();
        if hits.len() > need {
            // End the page right after the need-th match.
            let upto = u32::try_from(hits[need - 1] + 1).unwrap_or(chunk);
            let exact = store.list(&filter, cursor.as_deref(), Some(upto))?;
            scanned += u32::try_from(exact.tasks.len()).unwrap_or(upto);
            out.extend(
                exact
                    .tasks
                    .into_iter()
                    .filter(|t| q.text_matches(t))
                    .take(need),
            );
            return Ok(Found {
                tasks: out,
                next_cursor: exact.next_cursor,
                scanned,
                scan_capped: false,
            });
        }
        scanned += u32::try_from(page.tasks.len()).unwrap_or(chunk);
        let matched: Vec<Task> = page
            .tasks
            .into_iter()
            .filter(|t| q.text_matches(t))
            .collect();
        out.extend(matched);
        cursor = page.next_cursor;
        if cursor.is_none() || out.len() == limit {
            return Ok(Found {
                tasks: out,
                next_cursor: cursor,
                scanned,
                scan_capped: false,
            });
        }
    }
}

/// Scan tasks matching `filter` in creation order, at most `max_rows` rows.
/// Returns the rows and whether the scan stopped at the cap.
fn scan(store: &dyn Store, filter: &ListFilter, max_rows: u32) -> Result<(Vec<Task>, bool)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let left = max_rows.saturating_sub(u32::try_from(out.len()).unwrap_or(u32::MAX));
        if left == 0 {
            return Ok((out, true));
        }
        let page = store.list(filter, cursor.as_deref(), Some(left.min(LIST_LIMIT_MAX)))?;
        out.extend(page.tasks);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok((out, false)),
        }
    }
}

fn done_message(code: Option<&str>) -> Option<String> {
    let text = match code? {
        "quarantine" => "Task quarantined.",
        "complete" => "Task completed.",
        "fail" => "Task failed; its compensation is recorded.",
        "compensate" => "Task compensated.",
        "release" => "Lease released; the task is dispatched again.",
        "reclaim" => "Task reclaimed.",
        "annotate" => "Note added.",
        "record-compensation" => "Compensation result recorded.",
        "reclaim-all" => "Stale tasks reclaimed.",
        _ => return None,
    };
    Some(text.to_string())
}

fn total(counts: &Counts) -> u64 {
    counts.values().sum()
}

/// `GET /`: counts by state and queue, stale, recent reclaims and
/// quarantines, operations per minute.
pub(crate) async fn overview(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
) -> Response {
    let now = state.now();
    let loaded = blocking(&state, move |s| {
        let counts = s.counts()?;
        let stale = s.list_stale(now)?;
        let filter = ListFilter {
            states: IN_FLIGHT.to_vec(),
            ..ListFilter::default()
        };
        let (in_flight, capped) = scan(s, &filter, QUEUE_SCAN_ROWS_MAX)?;
        let mut queues: BTreeMap<String, [u64; 4]> = BTreeMap::new();
        for t in &in_flight {
            let row = queues.entry(t.queue.clone()).or_default();
            match t.state {
                TaskState::Planned => row[0] += 1,
                TaskState::Dispatched => row[1] += 1,
                _ => row[2] += 1,
            }
            if t.is_stale(now) {
                row[3] += 1;
            }
        }
        Ok((counts, stale, queues, in_flight.len(), capped))
    })
    .await;
    let (counts, stale, queues, scanned, capped) = match loaded {
        Ok(v) => v,
        Err(e) => return html::store_error(&e),
    };
    let recent = state
        .events
        .recent(15, ConsoleEvent::is_reclaim_or_quarantine);
    let per_minute = state.events.per_minute(now, CHART_MINUTES);
    let oldest = stale.first();
    let body = html! {
        h1 { "Overview" }
        div.cards #state-counts {
            div.card { div.n { (total(&counts)) } div.l { "tasks" } }
            @for (st, n) in &counts {
                a.card href={ "/tasks?state=" (st.as_str()) } data-state=(st.as_str()) {
                    div.n { (n) } div.l { (st.as_str()) }
                }
            }
            a.card.alert[!stale.is_empty()] href="/stale" #stale-count {
                div.n { (stale.len()) } div.l { "stale now" }
            }
        }
        div.grid2 {
            section {
                h2 { "Oldest stale lease" }
                @if let Some(t) = oldest {
                    p #oldest-stale {
                        (task_link(&t.task_id)) " held by "
                        strong { (t.lease_owner.as_deref().unwrap_or("?")) }
                        " (token " (t.lease_token) "), expired "
                        @if let Some(e) = t.lease_expires_at { (when(e, now)) }
                        ", attempt " (t.attempts) " of " (state.max_attempts) "."
                    }
                } @else {
                    p.good { "No stale leases." }
                }
                h2 { "Operations per minute" }
                (ops_chart(&per_minute))
            }
            section {
                h2 { "In flight by queue" }
                table #queues {
                    thead { tr { th { "queue" } th { "planned" } th { "dispatched" } th { "running" } th { "stale" } } }
                    tbody {
                        @for (q, row) in &queues {
                            tr {
                                td { a href={ "/tasks?queue=" (q) } { (q) } }
                                td { (row[0]) } td { (row[1]) } td { (row[2]) }
                                td.bad[row[3] > 0] { (row[3]) }
                            }
                        }
                        @if queues.is_empty() { tr { td colspan="5" .none { "Nothing in flight." } } }
                    }
                }
                p.muted {
                    @if capped {
                        "Counted over the first " (scanned) " in-flight tasks only (the store has no per-queue count)."
                    } @else {
                        "Counted over all " (scanned) " in-flight tasks."
                    }
                }
                h2 { "Recent reclaims and quarantines" }
                table #recent {
                    thead { tr { th { "when" } th { "task" } th { "what" } th { "by" } th { "detail" } } }
                    tbody {
                        @for e in &recent {
                            tr {
                                td { (when(e.at, now)) }
                                td { (task_link(&e.task_id)) }
                                td { (e.op) " → " (state_badge(e.to_state)) }
                                td { (e.actor) }
                                td { (e.detail.as_deref().unwrap_or("")) }
                            }
                        }
                        @if recent.is_empty() { tr { td colspan="5" .none { "None since this server started." } } }
                    }
                }
            }
        }
    };
    html::page(
        "Overview",
        &viewer,
        now,
        Nav::Overview,
        state.refresh_secs,
        body,
    )
}

fn task_rows(tasks: &[Task], now: Timestamp) -> Markup {
    html! {
        table #task-table {
            thead {
                tr {
                    th { "task" } th { "state" } th { "queue" } th { "prio" } th { "owner" }
                    th { "token" } th { "lease" } th { "attempts" } th { "branch" } th { "updated" }
                }
            }
            tbody {
                @for t in tasks {
                    tr data-task=(t.task_id) {
                        td { (task_link(&t.task_id)) }
                        td { (state_badge(t.state)) @if t.is_stale(now) { " " span.bad { "stale" } } }
                        td { (t.queue) }
                        td { (t.priority) }
                        td { (t.lease_owner.as_deref().unwrap_or("")) }
                        td { (t.lease_token) }
                        td {
                            @if let (TaskState::Running, Some(e)) = (t.state, t.lease_expires_at) {
                                (countdown(e, now))
                            }
                        }
                        td { (t.attempts) }
                        td { (t.branch.as_deref().unwrap_or("")) }
                        td { (when(t.updated_at, now)) }
                    }
                }
                @if tasks.is_empty() { tr { td colspan="10" .none { "No tasks match." } } }
            }
        }
    }
}

fn filter_form(q: &TaskQuery) -> Markup {
    html! {
        form.filters #filters method="get" action="/tasks" {
            fieldset {
                legend { "state" }
                @for st in TaskState::ALL {
                    label.inline {
                        input type="checkbox" name="state" value=(st.as_str()) checked[q.states.contains(&st)];
                        (st.as_str())
                    }
                }
            }
            label { "queue" input #f-queue type="text" name="queue" value=[q.queue.as_deref()]; }
            label { "owner" input #f-owner type="text" name="owner" value=[q.owner.as_deref()]; }
            label { "id or branch contains" input #f-q type="text" name="q" value=[q.text.as_deref()]; }
            label.inline { input #f-stale type="checkbox" name="stale" value="1" checked[q.stale]; "stale only" }
            @if q.limit != crate::PAGE_ROWS_DEFAULT { input type="hidden" name="limit" value=(q.limit); }
            button #apply type="submit" { "Apply" }
            a href="/tasks" { "Clear" }
        }
    }
}

/// `GET /tasks`: filters in the URL, keyset pagination.
pub(crate) async fn tasks(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(raw): RawQuery,
) -> Response {
    let now = state.now();
    let q = match TaskQuery::from_fields(&Fields::parse(raw.as_deref().unwrap_or(""))) {
        Ok(q) => q,
        Err(e) => return html::store_error(&e),
    };
    let q2 = q.clone();
    let loaded = blocking(&state, move |s| {
        let found = search(s, &q2, now)?;
        let counts = s.counts()?;
        Ok((found, counts))
    })
    .await;
    let (found, counts) = match loaded {
        Ok(v) => v,
        Err(e) => return html::store_error(&e),
    };
    // Exact totals only where an index answers: counts per state.
    let exact_total = (q.queue.is_none() && q.owner.is_none() && !q.stale && q.text.is_none())
        .then(|| {
            if q.states.is_empty() {
                total(&counts)
            } else {
                q.states
                    .iter()
                    .map(|s| counts.get(s).copied().unwrap_or(0))
                    .sum()
            }
        });
    let body = html! {
        h1 { "Tasks" }
        (filter_form(&q))
        p #result-summary {
            "Showing " (found.tasks.len()) " task" @if found.tasks.len() != 1 { "s" }
            @if let Some(t) = exact_total { " of " (t) " in total" }
            @if q.cursor.is_some() { " (not the first page)" }
            "."
            @if q.text.is_some() {
                " Text search scanned " (found.scanned) " rows"
                @if found.scan_capped { ", the most one page may scan (" (SEARCH_SCAN_ROWS_MAX) "); use “continue” to search further" }
                "."
            } @else if exact_total.is_none() {
                " Totals are not counted for these filters (no index answers them)."
            }
        }
        (task_rows(&found.tasks, now))
        div.pager {
            @if q.cursor.is_some() { a #first-page href={ "/tasks?" (q.to_query(None)) } { "⇤ First page" } }
            @if let Some(c) = &found.next_cursor {
                a #next-page href={ "/tasks?" (q.to_query(Some(c))) } {
                    @if found.scan_capped { "Continue searching →" } @else { "Next page →" }
                }
            }
            @if viewer.can_act() && found.tasks.iter().any(|t| !t.state.is_terminal()) {
                a #bulk-quarantine href={ "/bulk/quarantine?" (q.to_query(q.cursor.as_deref())) } {
                    "Quarantine the tasks on this page…"
                }
            }
        }
    };
    html::page("Tasks", &viewer, now, Nav::Tasks, state.refresh_secs, body)
}

fn lease_box(t: &Task, now: Timestamp) -> Markup {
    html! {
        section #lease {
            h2 { "Lease" }
            @if t.state == TaskState::Running {
                table.kv {
                    tr { th { "owner" } td #lease-owner { (t.lease_owner.as_deref().unwrap_or("")) } }
                    tr { th { "fencing token" } td #lease-token { (t.lease_token) } }
                    tr { th { "time left" } td { @if let Some(e) = t.lease_expires_at { (countdown(e, now)) " (expires " (utc(e)) ")" } } }
                    tr { th { "acquired" } td { (when_opt(t.lease_acquired_at, now)) } }
                    tr { th { "last heartbeat" } td { (when_opt(t.last_heartbeat_at, now)) } }
                }
                @if t.is_stale(now) {
                    p.bad { "This lease has expired: the task is stale until the reaper (or an operator) reclaims it." }
                }
            } @else if t.state.is_terminal() && t.lease_owner.is_some() {
                p { "No live lease. Last lease: " strong { (t.lease_owner.as_deref().unwrap_or("")) } ", token " (t.lease_token) "." }
            } @else {
                p { "No lease. Token high-water mark: " (t.lease_token) "." }
            }
        }
    }
}

fn action_forms(t: &Task, viewer: &Viewer, now: Timestamp, max_attempts: u32) -> Markup {
    let csrf = viewer.csrf.as_str();
    let id = t.task_id.as_str();
    let live = !t.state.is_terminal();
    html! {
        section #actions {
            h2 { "Actions" }
            p.muted { "Recorded in the task's history as " strong { (viewer.principal.name) } "." }
            div.actions {
                @if live {
                    form.act #act-quarantine method="post" action="/actions/quarantine" {
                        h3 { "Quarantine" }
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="task_id" value=(id);
                        textarea #quarantine-reason name="reason" placeholder="reason (required)" required {}
                        button.danger #do-quarantine type="submit" { "Quarantine" }
                    }
                    form.act method="post" action="/actions/complete" {
                        h3 { "Complete (no fence)" }
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="task_id" value=(id);
                        input type="text" name="reason" placeholder="reason (optional)";
                        button type="submit" { "Complete" }
                    }
                    form.act method="post" action="/actions/fail" {
                        h3 { "Fail (no fence)" }
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="task_id" value=(id);
                        input type="text" name="reason" placeholder="reason (required)" required;
                        @if t.compensations.is_empty() {
                            span.muted { "A failed task needs a compensation:" }
                        } @else {
                            span.muted { "Optionally add a compensation:" }
                        }
                        input type="text" name="comp_kind" placeholder="compensation kind, e.g. delete_branch" required[t.compensations.is_empty()];
                        input type="text" name="comp_target" placeholder="target" required[t.compensations.is_empty()];
                        input type="text" name="comp_reason" placeholder="why it is needed" required[t.compensations.is_empty()];
                        button.danger type="submit" { "Fail" }
                    }
                    form.act method="post" action="/actions/compensate" {
                        h3 { "Compensate (no fence)" }
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="task_id" value=(id);
                        input type="text" name="reason" placeholder="reason (optional)";
                        button type="submit" { "Mark compensated" }
                    }
                }
                @if t.has_active_lease(now) {
                    form.act method="post" action="/actions/release" {
                        h3 { "Release the lease" }
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="task_id" value=(id);
                        input type="hidden" name="token" value=(t.lease_token);
                        input type="text" name="reason" placeholder="reason (required)" required;
                        button type="submit" { "Release lease of " (t.lease_owner.as_deref().unwrap_or("")) }
                    }
                }
                @if t.is_stale(now) {
                    form.act method="post" action="/actions/reclaim" {
                        h3 { "Reclaim now" }
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="task_id" value=(id);
                        p.muted {
                            @if t.attempts >= max_attempts {
                                "Attempt " (t.attempts) " of at most " (max_attempts) ": it will be quarantined."
                            } @else {
                                "Attempt " (t.attempts) " of at most " (max_attempts) ": it goes back to dispatched."
                            }
                        }
                        button type="submit" { "Reclaim" }
                    }
                }
                form.act #act-annotate method="post" action="/actions/annotate" {
                    h3 { "Add a note" }
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="task_id" value=(id);
                    textarea name="note" placeholder="note" required {}
                    button type="submit" { "Add note" }
                }
            }
        }
    }
}

fn history_timeline(history: &[HistoryEntry], now: Timestamp) -> Markup {
    html! {
        section #history {
            h2 { "History (" (history.len()) ")" }
            ol.timeline {
                @for h in history {
                    li data-kind=(h.kind.as_str()) {
                        span.kind { (h.kind.as_str()) } " "
                        (when(h.at, now)) " by " strong.actor { (h.actor) } " · "
                        @if let Some(f) = h.from_state { (state_badge(f)) " → " }
                        (state_badge(h.to_state)) " · token " (h.lease_token)
                        @if let Some(d) = &h.detail { div.detail { (d) } }
                    }
                }
            }
        }
    }
}

/// `GET /task?id=…`: every field, the lease, compensations, history, notes.
pub(crate) async fn task_detail(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(raw): RawQuery,
) -> Response {
    let now = state.now();
    let fields = Fields::parse(raw.as_deref().unwrap_or(""));
    let Some(id) = fields.text("id") else {
        return html::error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "which task? expected /task?id=<task id>",
        );
    };
    if let Err(e) = leasehold_core::validate::id("task id", &id) {
        return html::store_error(&e);
    }
    let id2 = id.clone();
    let loaded = blocking(&state, move |s| {
        let task = s.require(&id2)?;
        let history = s.history(&id2)?;
        Ok((task, history))
    })
    .await;
    let (t, history) = match loaded {
        Ok(v) => v,
        Err(e) => return html::store_error(&e),
    };
    let flash = done_message(fields.get("done"));
    let csrf = viewer.csrf.clone();
    let body = html! {
        h1 { "Task " code #task-id { (t.task_id) } " " span #task-state { (state_badge(t.state)) } @if t.is_stale(now) { " " span.bad { "stale" } } }
        (html::flash(flash.as_deref()))
        div.grid2 {
            div {
                (lease_box(&t, now))
                section #fields {
                    h2 { "Fields" }
                    table.kv {
                        tr { th { "task_id" } td { (t.task_id) } }
                        tr { th { "saga_id" } td { (t.saga_id) } }
                        tr { th { "state" } td { (state_badge(t.state)) } }
                        tr { th { "queue" } td { (t.queue) } }
                        tr { th { "priority" } td { (t.priority) } }
                        tr { th { "issue" } td { @if let Some(i) = t.issue { "#" (i) } } }
                        tr { th { "branch" } td { (t.branch.as_deref().unwrap_or("")) } }
                        tr { th { "worktree" } td { (t.worktree.as_deref().unwrap_or("")) } }
                        tr { th { "attempts" } td { (t.attempts) } }
                        tr { th { "terminal_reason" } td #terminal-reason { (t.terminal_reason.as_deref().unwrap_or("")) } }
                        tr { th { "lease_owner" } td { (t.lease_owner.as_deref().unwrap_or("")) } }
                        tr { th { "lease_token" } td { (t.lease_token) } }
                        tr { th { "lease_acquired_at" } td { (when_opt(t.lease_acquired_at, now)) } }
                        tr { th { "lease_expires_at" } td { (when_opt(t.lease_expires_at, now)) } }
                        tr { th { "last_heartbeat_at" } td { (when_opt(t.last_heartbeat_at, now)) } }
                        tr { th { "version" } td { (t.version) } }
                        tr { th { "created_at" } td { (when(t.created_at, now)) } }
                        tr { th { "updated_at" } td { (when(t.updated_at, now)) } }
                    }
                    h2 { "Metadata" }
                    (json_block(&t.metadata))
                }
            }
            div {
                section #compensations {
                    h2 { "Compensations (" (t.compensations.len()) ")" }
                    table {
                        thead { tr { th { "#" } th { "kind" } th { "target" } th { "reason" } th { "status" } th { "detail" } th { "updated" } } }
                        tbody {
                            @for (i, c) in t.compensations.iter().enumerate() {
                                tr {
                                    td { (i) } td { (c.kind) } td { (c.target) } td { (c.reason) }
                                    td class={ "comp-" (c.status.as_str()) } { (c.status.as_str()) }
                                    td { (c.detail.as_deref().unwrap_or("")) }
                                    td { (when(c.updated_at, now)) }
                                }
                                @if viewer.can_act() {
                                    tr {
                                        td colspan="7" {
                                            form.act.inline method="post" action="/actions/record-compensation" {
                                                input type="hidden" name="csrf" value=(csrf);
                                                input type="hidden" name="task_id" value=(t.task_id);
                                                input type="hidden" name="index" value=(i);
                                                "Record result: "
                                                select name="status" {
                                                    option value="applied" { "applied" }
                                                    option value="failed" { "failed" }
                                                    option value="pending" { "pending" }
                                                }
                                                " "
                                                input type="text" name="detail" placeholder="detail (optional)";
                                                " "
                                                button type="submit" { "Record" }
                                            }
                                        }
                                    }
                                }
                            }
                            @if t.compensations.is_empty() { tr { td colspan="7" .none { "No compensation records." } } }
                        }
                    }
                }
                @if viewer.can_act() { (action_forms(&t, &viewer, now, state.max_attempts)) }
                section #notes {
                    h2 { "Notes (" (t.notes.len()) ")" }
                    ul {
                        @for n in &t.notes { li { strong { (n.author) } " " (when(n.at, now)) ": " (n.note) } }
                        @if t.notes.is_empty() { li.none { "No notes." } }
                    }
                }
                (history_timeline(&history, now))
            }
        }
    };
    html::page(
        &format!("Task {id}"),
        &viewer,
        now,
        Nav::None,
        state.refresh_secs,
        body,
    )
}

/// `GET /stale`: stale tasks (how long overdue, last owner) and quarantined
/// tasks with their reasons (keyset-paginated).
pub(crate) async fn stale(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(raw): RawQuery,
) -> Response {
    let now = state.now();
    let fields = Fields::parse(raw.as_deref().unwrap_or(""));
    let qcursor = fields.text("qcursor");
    if let Some(c) = &qcursor {
        if let Err(e) = leasehold_core::store::decode_cursor(Some(c)) {
            return html::store_error(&e);
        }
    }
    let qc = qcursor.clone();
    let loaded = blocking(&state, move |s| {
        let stale = s.list_stale(now)?;
        let quarantined = s.list(
            &ListFilter {
                states: vec![TaskState::Quarantined],
                ..ListFilter::default()
            },
            qc.as_deref(),
            Some(50),
        )?;
        let counts = s.counts()?;
        Ok((stale, quarantined, counts))
    })
    .await;
    let (stale, quarantined, counts) = match loaded {
        Ok(v) => v,
        Err(e) => return html::store_error(&e),
    };
    let flash = done_message(fields.get("done"));
    let extra = fields.get("n").and_then(|n| n.parse::<u64>().ok());
    let body = html! {
        h1 { "Stale and quarantine" }
        (html::flash(flash.map(|f| match extra { Some(n) => format!("{f} ({n})"), None => f }).as_deref()))
        section {
            h2 { "Stale leases (" (stale.len()) ")" }
            p.muted { "Not terminal, lease expired. The reaper reclaims them; at " (state.max_attempts) " attempts a task is quarantined instead." }
            @if viewer.can_act() && !stale.is_empty() {
                form.inline #reclaim-all method="post" action="/actions/reclaim-all" {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    button type="submit" { "Reclaim all stale now" }
                }
            }
            table #stale-table {
                thead { tr { th { "task" } th { "overdue by" } th { "last owner" } th { "token" } th { "attempts" } th { "queue" } th { "last heartbeat" } } }
                tbody {
                    @for t in stale.iter().take(STALE_ROWS_SHOWN_MAX) {
                        tr {
                            td { (task_link(&t.task_id)) }
                            td.bad { @if let Some(e) = t.lease_expires_at { (html::span(now.micros_since(e))) } }
                            td { (t.lease_owner.as_deref().unwrap_or("")) }
                            td { (t.lease_token) }
                            td { (t.attempts) }
                            td { (t.queue) }
                            td { (when_opt(t.last_heartbeat_at, now)) }
                        }
                    }
                    @if stale.is_empty() { tr { td colspan="7" .none { "No stale leases." } } }
                }
            }
            @if stale.len() > STALE_ROWS_SHOWN_MAX { p.muted { "Showing the " (STALE_ROWS_SHOWN_MAX) " most overdue." } }
        }
        section {
            h2 { "Quarantined (" (counts.get(&TaskState::Quarantined).copied().unwrap_or(0)) ")" }
            table #quarantine-table {
                thead { tr { th { "task" } th { "reason" } th { "last owner" } th { "attempts" } th { "queue" } th { "since" } } }
                tbody {
                    @for t in &quarantined.tasks {
                        tr {
                            td { (task_link(&t.task_id)) }
                            td { (t.terminal_reason.as_deref().unwrap_or("")) }
                            td { (t.lease_owner.as_deref().unwrap_or("")) }
                            td { (t.attempts) }
                            td { (t.queue) }
                            td { (when(t.updated_at, now)) }
                        }
                    }
                    @if quarantined.tasks.is_empty() { tr { td colspan="6" .none { "Nothing quarantined." } } }
                }
            }
            div.pager {
                @if qcursor.is_some() { a href="/stale" { "⇤ First page" } }
                @if let Some(c) = &quarantined.next_cursor { a href={ "/stale?qcursor=" (c) } { "Next page →" } }
            }
        }
    };
    html::page(
        "Stale and quarantine",
        &viewer,
        now,
        Nav::Stale,
        state.refresh_secs,
        body,
    )
}

/// One row of the workers screen.
struct WorkerRow {
    held: Vec<String>,
    stale: usize,
    last_heartbeat: Option<Timestamp>,
    next_expiry: Option<Timestamp>,
}

/// `GET /workers`: owners with leases, their last heartbeat, tasks held.
pub(crate) async fn workers(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
) -> Response {
    let now = state.now();
    let loaded = blocking(&state, move |s| {
        let filter = ListFilter {
            states: vec![TaskState::Running],
            ..ListFilter::default()
        };
        scan(s, &filter, WORKER_SCAN_ROWS_MAX)
    })
    .await;
    let (running, capped) = match loaded {
        Ok(v) => v,
        Err(e) => return html::store_error(&e),
    };
    let mut by_owner: BTreeMap<String, WorkerRow> = BTreeMap::new();
    for t in &running {
        let Some(owner) = &t.lease_owner else {
            continue;
        };
        let row = by_owner.entry(owner.clone()).or_insert(WorkerRow {
            held: Vec::new(),
            stale: 0,
            last_heartbeat: None,
            next_expiry: None,
        });
        if t.has_active_lease(now) {
            row.held.push(t.task_id.clone());
            row.next_expiry = match (row.next_expiry, t.lease_expires_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        } else {
            row.stale += 1;
        }
        row.last_heartbeat = row.last_heartbeat.max(t.last_heartbeat_at);
    }
    let live = by_owner.values().filter(|r| !r.held.is_empty()).count();
    let body = html! {
        h1 { "Workers" }
        p { (live) " owner" @if live != 1 { "s" } " with live leases; "
            (by_owner.len() - live) " with only expired ones. "
            @if capped { "Built from the first " (running.len()) " running tasks only." } }
        table #workers-table {
            thead { tr { th { "owner" } th { "live leases" } th { "tasks held" } th { "stale held" } th { "last heartbeat" } th { "next expiry" } } }
            tbody {
                @for (owner, r) in &by_owner {
                    tr {
                        td { a href={ "/tasks?" (owner_query(owner)) } { (owner) } }
                        td { (r.held.len()) }
                        td {
                            @for (i, id) in r.held.iter().take(10).enumerate() { @if i > 0 { ", " } (task_link(id)) }
                            @if r.held.len() > 10 { " …" }
                        }
                        td.bad[r.stale > 0] { (r.stale) }
                        td { (when_opt(r.last_heartbeat, now)) }
                        td { @if let Some(e) = r.next_expiry { (countdown(e, now)) } }
                    }
                }
                @if by_owner.is_empty() { tr { td colspan="6" .none { "No worker holds a lease." } } }
            }
        }
    };
    html::page(
        "Workers",
        &viewer,
        now,
        Nav::Workers,
        state.refresh_secs,
        body,
    )
}

fn owner_query(owner: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("state", "running")
        .append_pair("owner", owner)
        .finish()
}

/// `GET /bulk/quarantine?<filters>`: the tasks on that page of the tasks
/// screen, listed for confirmation, with a required reason.
pub(crate) async fn bulk_confirm(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(raw): RawQuery,
) -> Response {
    let now = state.now();
    if !viewer.can_act() {
        return html::error_page(
            StatusCode::FORBIDDEN,
            "forbidden",
            "bulk quarantine needs an operator token",
        );
    }
    let q = match TaskQuery::from_fields(&Fields::parse(raw.as_deref().unwrap_or(""))) {
        Ok(q) => q,
        Err(e) => return html::store_error(&e),
    };
    let q2 = q.clone();
    let found = match blocking(&state, move |s| search(s, &q2, now)).await {
        Ok(f) => f,
        Err(e) => return html::store_error(&e),
    };
    let targets: Vec<Task> = found
        .tasks
        .into_iter()
        .filter(|t| !t.state.is_terminal())
        .take(BULK_TASKS_MAX)
        .collect();
    if targets.is_empty() {
        return html::store_error(&Error::InvalidInput(
            "the selection holds no task that can be quarantined (all terminal or none)".into(),
        ));
    }
    let body = html! {
        h1 { "Quarantine " (targets.len()) " tasks?" }
        p { "Quarantined is terminal: these tasks will never be leased again. Untick any you want to keep." }
        form.act #bulk-form method="post" action="/actions/bulk-quarantine" {
            input type="hidden" name="csrf" value=(viewer.csrf);
            input type="hidden" name="back" value={ "/tasks?" (q.to_query(q.cursor.as_deref())) };
            table {
                thead { tr { th { "" } th { "task" } th { "state" } th { "owner" } th { "queue" } } }
                tbody {
                    @for t in &targets {
                        tr {
                            td { input type="checkbox" name="task_id" value=(t.task_id) checked; }
                            td { (task_link(&t.task_id)) }
                            td { (state_badge(t.state)) }
                            td { (t.lease_owner.as_deref().unwrap_or("")) }
                            td { (t.queue) }
                        }
                    }
                }
            }
            p { label { "Reason (required) " textarea #bulk-reason name="reason" required {} } }
            p { label { input #bulk-confirm type="checkbox" name="confirm" value="yes" required; " I understand these tasks become quarantined." } }
            button.danger #bulk-submit type="submit" { "Quarantine selected tasks" }
            " " a href={ "/tasks?" (q.to_query(q.cursor.as_deref())) } { "Cancel" }
        }
    };
    html::page("Bulk quarantine", &viewer, now, Nav::Tasks, 0, body)
}
