//! Prometheus metrics in the text exposition format, written by hand (a few
//! counters and one histogram do not need a registry crate).
//!
//! Counters live in memory and count since start: operations by kind and
//! outcome (`ok` or the error code), lease conflicts, reclaims by outcome,
//! quarantines, and HTTP requests with a latency histogram per route. Gauges
//! are read from the store at scrape time: tasks by state (from `counts`),
//! in-flight tasks by queue and state, and the stale count.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use leasehold_core::{ErrorCode, Store, Task, TaskState, Timestamp};

/// Upper bounds of the latency histogram, in seconds.
pub const LATENCY_BUCKETS_SECONDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS_SECONDS.len()],
    count: u64,
    sum_seconds: f64,
}

#[derive(Debug, Default)]
struct Counters {
    ops: BTreeMap<(String, String), u64>,
    lease_conflicts: u64,
    reclaims: BTreeMap<String, u64>,
    quarantines: u64,
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<(String, String), Histogram>,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Count one operation and its outcome (`None` = success).
    pub fn operation(&self, op: &str, error: Option<ErrorCode>) {
        let mut c = self.counters.lock().expect("metrics lock");
        let outcome = error.map(|e| e.as_str()).unwrap_or("ok");
        *c.ops
            .entry((op.to_string(), outcome.to_string()))
            .or_default() += 1;
        if error == Some(ErrorCode::LeaseConflict) {
            c.lease_conflicts += 1;
        }
    }

    /// Count tasks a reclaim moved (by their new state) and quarantines.
    pub fn reclaimed(&self, tasks: &[Task]) {
        let mut c = self.counters.lock().expect("metrics lock");
        for t in tasks {
            *c.reclaims.entry(t.state.as_str().to_string()).or_default() += 1;
            if t.state == TaskState::Quarantined {
                c.quarantines += 1;
            }
        }
    }

    /// Count an explicit quarantine.
    pub fn quarantined(&self) {
        self.counters.lock().expect("metrics lock").quarantines += 1;
    }

    /// Count one HTTP request and its latency.
    pub fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut c = self.counters.lock().expect("metrics lock");
        *c.requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        let h = c
            .latency
            .entry((method.to_string(), route.to_string()))
            .or_default();
        let secs = elapsed.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS_SECONDS.iter().enumerate() {
            if secs <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum_seconds += secs;
    }

    /// The exposition text: counters, plus gauges read from `store` at `now`.
    pub fn render(&self, store: &dyn Store, now: Timestamp) -> leasehold_core::Result<String> {
        let counts = store.counts()?;
        // Per-queue counts come from the store's own (indexed) counts, never
        // from loading tasks: a scrape must stay cheap at millions of tasks.
        let by_queue: BTreeMap<(String, TaskState), u64> = store
            .queue_counts()?
            .into_iter()
            .filter(|((_, state), n)| !state.is_terminal() && *n > 0)
            .collect();
        let stale = store.list_stale(now)?.len();
        let mut out = String::new();
        let w = &mut out;
        header(
            w,
            "leasehold_tasks",
            "gauge",
            "Tasks by state (all queues).",
        );
        for (state, n) in &counts {
            let _ = writeln!(w, "leasehold_tasks{{state=\"{state}\"}} {n}");
        }
        header(
            w,
            "leasehold_tasks_in_flight",
            "gauge",
            "Non-terminal tasks by queue and state.",
        );
        for ((queue, state), n) in &by_queue {
            let _ = writeln!(
                w,
                "leasehold_tasks_in_flight{{queue=\"{}\",state=\"{state}\"}} {n}",
                escape(queue)
            );
        }
        header(
            w,
            "leasehold_tasks_stale",
            "gauge",
            "Non-terminal tasks whose lease has expired.",
        );
        let _ = writeln!(w, "leasehold_tasks_stale {stale}");

        let c = self.counters.lock().expect("metrics lock");
        header(
            w,
            "leasehold_operations_total",
            "counter",
            "Store operations by kind and outcome (ok or error code).",
        );
        for ((op, outcome), n) in &c.ops {
            let _ = writeln!(
                w,
                "leasehold_operations_total{{op=\"{op}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        header(
            w,
            "leasehold_lease_conflicts_total",
            "counter",
            "Operations rejected with lease_conflict.",
        );
        let _ = writeln!(w, "leasehold_lease_conflicts_total {}", c.lease_conflicts);
        header(
            w,
            "leasehold_reclaims_total",
            "counter",
            "Stale tasks reclaimed, by resulting state.",
        );
        for state in ["dispatched", "quarantined"] {
            let n = c.reclaims.get(state).copied().unwrap_or(0);
            let _ = writeln!(w, "leasehold_reclaims_total{{to=\"{state}\"}} {n}");
        }
        header(
            w,
            "leasehold_quarantines_total",
            "counter",
            "Tasks quarantined (explicitly or by reclaim).",
        );
        let _ = writeln!(w, "leasehold_quarantines_total {}", c.quarantines);
        header(
            w,
            "leasehold_http_requests_total",
            "counter",
            "HTTP requests by method, route and status.",
        );
        for ((method, route, status), n) in &c.requests {
            let _ = writeln!(
                w,
                "leasehold_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        header(
            w,
            "leasehold_http_request_duration_seconds",
            "histogram",
            "HTTP request latency by method and route.",
        );
        for ((method, route), h) in &c.latency {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            for (i, bound) in LATENCY_BUCKETS_SECONDS.iter().enumerate() {
                let _ = writeln!(
                    w,
                    "leasehold_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                w,
                "leasehold_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                w,
                "leasehold_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum_seconds
            );
            let _ = writeln!(
                w,
                "leasehold_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        Ok(out)
    }
}

fn header(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}");
    let _ = writeln!(w, "# TYPE {name} {kind}");
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
