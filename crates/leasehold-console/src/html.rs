//! Presentation: the page layout, error and login pages, time formatting in
//! UTC with relative hints, the server-side SVG chart, the compiled-in CSS and
//! script, and the security headers every console response carries.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use leasehold_core::{Error, TaskState, Timestamp};
use maud::{html, Markup, DOCTYPE};

use crate::auth::Viewer;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// `GET /assets/console.css`.
pub(crate) async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

/// `GET /assets/console.js`.
pub(crate) async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        JS,
    )
        .into_response()
}

/// Headers on every console response: a strict CSP (own script and style
/// only), no framing, no referrer, and no caching of pages with task data.
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Which tab of the navigation is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Tasks,
    Stale,
    Workers,
    None,
}

/// A full page: navigation, who is signed in, the content in `<main id=main>`
/// (what the live refresh swaps), and the footer.
pub(crate) fn page(
    title: &str,
    viewer: &Viewer,
    now: Timestamp,
    nav: Nav,
    refresh_secs: u32,
    body: Markup,
) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Leasehold" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body data-now=(now.as_micros() / 1000) data-refresh=(refresh_secs) {
                header.top {
                    a.brand href="/" { "Leasehold" }
                    nav {
                        a href="/" class=[(nav == Nav::Overview).then_some("on")] { "Overview" }
                        a href="/tasks" class=[(nav == Nav::Tasks).then_some("on")] { "Tasks" }
                        a href="/stale" class=[(nav == Nav::Stale).then_some("on")] { "Stale & quarantine" }
                        a href="/workers" class=[(nav == Nav::Workers).then_some("on")] { "Workers" }
                    }
                    div.who {
                        @if refresh_secs > 0 { span #live.live { "live" } " " }
                        span.principal data-role=(viewer.principal.role.as_str()) {
                            (viewer.principal.name) " · " (viewer.principal.role.as_str())
                        }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                main #main {
                    (body)
                }
                footer {
                    "Times in UTC. Server time " (utc(now)) ". "
                    @if refresh_secs > 0 {
                        "Refreshes every " (refresh_secs) " s while this tab is visible."
                    }
                }
            }
        }
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A bare page (no session): login and errors before login.
fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Leasehold" }
                link rel="stylesheet" href="/assets/console.css";
            }
            body data-refresh="0" {
                header.top { a.brand href="/" { "Leasehold" } }
                main #main { (body) }
            }
        }
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// An error page with the stable code and a message naming what was expected.
pub(crate) fn error_page(status: StatusCode, code: &str, message: &str) -> Response {
    bare(
        status,
        "Error",
        html! {
            section.error {
                h1 { "Error: " code.code { (code) } }
                p.message { (message) }
                p { a href="/" { "Back to the overview" } }
            }
        },
    )
}

/// The error page for a store error, with its HTTP status.
pub(crate) fn store_error(e: &Error) -> Response {
    let status =
        StatusCode::from_u16(e.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if e.code() == leasehold_core::ErrorCode::Internal {
        tracing::error!(error = %e, "console store call failed");
        return error_page(status, "internal", "the store failed; see the server log");
    }
    error_page(status, e.code().as_str(), e.message())
}

/// The login form.
pub(crate) fn login(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    bare(
        status,
        "Log in",
        html! {
            section.login {
                h1 { "Operator console" }
                p { "Paste a reader or operator token. Readers can look; operators can also act." }
                @if let Some(e) = error { p.flash.bad role="alert" { (e) } }
                form method="post" action="/login" {
                    input type="hidden" name="next" value=(next);
                    label for="token" { "Token" }
                    input #token type="password" name="token" autocomplete="off" required autofocus;
                    button #login type="submit" { "Log in" }
                }
            }
        },
    )
}

/// `2026-06-03 10:00:00Z` inside a `<time>` element.
pub(crate) fn utc(t: Timestamp) -> Markup {
    let full = t.to_rfc3339();
    let short = full
        .get(..19)
        .map(|s| format!("{}Z", s.replacen('T', " ", 1)))
        .unwrap_or_else(|| full.clone());
    html! { time datetime=(full) title=(full) { (short) } }
}

/// UTC time plus a relative hint such as `(3m 12s ago)`.
pub(crate) fn when(t: Timestamp, now: Timestamp) -> Markup {
    html! { (utc(t)) " " span.rel { "(" (relative(t, now)) ")" } }
}

/// `optional` version of [`when`].
pub(crate) fn when_opt(t: Option<Timestamp>, now: Timestamp) -> Markup {
    match t {
        Some(t) => when(t, now),
        None => html! { span.none { "—" } },
    }
}

/// `in 4m 2s` or `3s ago`.
pub(crate) fn relative(t: Timestamp, now: Timestamp) -> String {
    let d = t.micros_since(now);
    if d.abs() < 1_000_000 {
        "just now".into()
    } else if d >= 0 {
        format!("in {}", span(d))
    } else {
        format!("{} ago", span(-d))
    }
}

/// A duration in microseconds as `2h 5m`, `3m 12s`, `45s`, `<1s`.
pub(crate) fn span(micros: i64) -> String {
    let s = micros / 1_000_000;
    if s < 1 {
        "<1s".into()
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m {}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h {}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d {}h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// A lease countdown that the script keeps live (server time as reference).
pub(crate) fn countdown(expires: Timestamp, now: Timestamp) -> Markup {
    let left = expires.micros_since(now);
    let text = if left > 0 {
        format!("in {}", span(left))
    } else {
        format!("expired {} ago", span(-left))
    };
    html! {
        span.countdown.bad[left <= 0] data-expires=(expires.as_micros() / 1000) { (text) }
    }
}

/// A state badge.
pub(crate) fn state_badge(s: TaskState) -> Markup {
    html! { span class={ "state s-" (s.as_str()) } { (s.as_str()) } }
}

/// A link to a task's detail page.
pub(crate) fn task_link(task_id: &str) -> Markup {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("id", task_id)
        .finish();
    html! { a.task href={ "/task?" (q) } { (task_id) } }
}

/// A bar chart of operations per minute, oldest to newest, drawn on the server.
pub(crate) fn ops_chart(per_minute: &[u64]) -> Markup {
    const W: u64 = 600;
    const H: u64 = 120;
    const PAD: u64 = 18;
    let n = per_minute.len().max(1) as u64;
    let max = per_minute.iter().copied().max().unwrap_or(0).max(1);
    let slot = W / n;
    let bar = slot.saturating_sub(2).max(1);
    let total: u64 = per_minute.iter().sum();
    html! {
        figure.chart {
            svg #ops-chart viewBox={ "0 0 " (W) " " (H + PAD) } width="100%" role="img"
                aria-label={ (total) " operations in the last " (n) " minutes" } {
                line x1="0" y1=(H) x2=(W) y2=(H) class="axis" {}
                @for (i, v) in per_minute.iter().enumerate() {
                    @let h = v * (H - 14) / max;
                    @let x = i as u64 * slot + 1;
                    rect class="bar" x=(x) y=(H - h) width=(bar) height=(h) {
                        title { (v) " ops, " (n - 1 - i as u64) " min ago" }
                    }
                }
                text x="0" y="10" class="label" { "max " (max) "/min" }
                text x="0" y=(H + PAD - 4) class="label" { "-" (n) " min" }
                text x=(W) y=(H + PAD - 4) class="label end" { "now" }
            }
            figcaption { (total) " operations in the last " (n) " minutes (this server, since it started)" }
        }
    }
}

/// Pretty JSON for metadata.
pub(crate) fn json_block(v: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    html! { pre.json { (text) } }
}

/// A flash message after an action (`done=` in the URL).
pub(crate) fn flash(done: Option<&str>) -> Markup {
    match done {
        Some(d) => html! { p.flash.good role="status" { (d) } },
        None => html! {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_like_a_person_would_say_them() {
        assert_eq!(span(0), "<1s");
        assert_eq!(span(45_000_000), "45s");
        assert_eq!(span(192_000_000), "3m 12s");
        assert_eq!(span(7_500_000_000), "2h 5m");
        assert_eq!(span(90_000_000_000), "1d 1h");
        let now = Timestamp::parse("2026-06-03T10:00:00Z").unwrap();
        let later = Timestamp::parse("2026-06-03T10:00:30Z").unwrap();
        assert_eq!(relative(later, now), "in 30s");
        assert_eq!(relative(now, later), "30s ago");
        assert_eq!(relative(now, now), "just now");
    }

    #[test]
    fn chart_scales_bars_to_the_busiest_minute() {
        let svg = ops_chart(&[0, 5, 10]).into_string();
        assert!(svg.contains("max 10/min"), "{svg}");
        assert!(svg.contains("15 operations in the last 3 minutes"));
        assert!(
            svg.contains(r#"height="106""#),
            "tallest bar fills the plot: {svg}"
        );
    }
}
