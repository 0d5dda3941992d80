//! The result of one run: throughput, latency percentiles and the
//! parameters that produced them, as one JSON object.

use serde::{Deserialize, Serialize};

/// One benchmark result. Field names are stable: `docs/benchmarks.md` and
/// `bench/chart.py` read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The workload, e.g. `cycle`.
    pub workload: String,
    /// `sqlite`, `postgres` or `http`.
    pub backend: String,
    /// `full` / `normal` for SQLite, `n/a` otherwise.
    pub durability: String,
    /// Concurrent worker threads.
    pub workers: usize,
    /// Tasks the run created (or operations, for `heartbeat` and baselines).
    pub tasks: u64,
    /// Updates per transaction (`baseline-sqlite`), tasks per claim and per
    /// batch call (`cycle`, `heartbeat`), else 1.
    pub batch: u64,
    /// `baseline-sqlite` on a bare table (`--bare`) rather than Leasehold's schema.
    #[serde(default)]
    pub bare: bool,
    /// Timed operations completed.
    pub ops: u64,
    /// Wall time of the timed part, seconds.
    pub seconds: f64,
    /// `ops / seconds`.
    pub ops_per_sec: f64,
    /// Median latency of one operation, microseconds.
    pub p50_us: u64,
    /// 99th percentile latency of one operation, microseconds.
    pub p99_us: u64,
    /// Store writes per operation (3 for a cycle).
    pub writes_per_op: u64,
    /// `ops_per_sec * writes_per_op`.
    pub writes_per_sec: f64,
    /// Untimed preparation (creating tasks, leasing), seconds.
    pub setup_seconds: f64,
    /// SQLite group commit: transactions committed during the timed part.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub transactions: Option<u64>,
    /// CPU time (user + system) this bench process used during the timed
    /// part, seconds (Linux; 10 ms resolution). In-process that is the whole
    /// cost of the workload (store, group commit, worker threads); with
    /// `--server` it is the client's share only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cpu_seconds: Option<f64>,
    /// `--server` runs: the driver, `async` (`cycle` and `heartbeat`: tasks
    /// on one async client) or `blocking` (threads on one blocking
    /// `HttpStore`: `--blocking-client`, and every other workload).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client: Option<String>,
    /// Logical CPUs of the machine.
    pub cpus: usize,
}

impl Report {
    /// One line for people, e.g. `cycle sqlite/full 32 workers: 9,001 ops/s …`.
    pub fn human(&self) -> String {
        let mut s = format!(
            "{} on {}/{} with {} workers, {} tasks{}: {} ops in {:.2} s = {:.0} ops/s ({:.0} writes/s), p50 {} µs, p99 {} µs (setup {:.1} s)",
            self.workload,
            self.backend,
            self.durability,
            self.workers,
            self.tasks,
            if self.batch > 1 { format!(", batch {}", self.batch) } else { String::new() }
                + if self.bare { ", bare table" } else { "" },
            self.ops,
            self.seconds,
            self.ops_per_sec,
            self.writes_per_sec,
            self.p50_us,
            self.p99_us,
            self.setup_seconds,
        );
        if let Some(t) = self.transactions {
            s.push_str(&format!(", {t} transactions"));
        }
        if let Some(c) = self.cpu_seconds {
            s.push_str(&format!(", {c:.2} s CPU"));
        }
        if let Some(c) = &self.client {
            s.push_str(&format!(", {c} client"));
        }
        s.push('\n');
        s
    }
}

/// Latency samples in microseconds → (p50, p99); (0, 0) when empty.
pub fn percentiles(mut samples: Vec<u64>) -> (u64, u64) {
    if samples.is_empty() {
        return (0, 0);
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i.min(samples.len() - 1)]
    };
    (at(0.50), at(0.99))
}

/// Logical CPUs, 1 if unknown.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_median_and_the_tail() {
        assert_eq!(percentiles(vec![]), (0, 0));
        assert_eq!(percentiles(vec![7]), (7, 7));
        let v: Vec<u64> = (1..=1000).rev().collect();
        assert_eq!(percentiles(v), (501, 990));
    }
}
