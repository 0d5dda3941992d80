//! Race workload through a real server (loopback socket, production rules and
//! store) on SQLite and on PostgreSQL: 8 workers and 2 reaper loops on 10 hot
//! tasks with 300 ms TTLs. Checked: linearizable against the model, one
//! unexpired lease, tokens strictly increasing, terminal is final, final state
//! equals the model's, minimum throughput. Quick: 5 s per backend; long tier
//! (`LEASEHOLD_SOAK=1`): 30 s. Replay a failure with `LEASEHOLD_SEED`.

use std::sync::Arc;

use leasehold_core::Store;
use leasehold_reliability::checker::CheckOptions;
use leasehold_reliability::race::{self, RaceConfig};
use leasehold_reliability::sizes;
use leasehold_server::testing::TestServer;

fn run_on(store: Arc<dyn Store>, opts: CheckOptions, backend: &str, seed: u64) {
    let server = TestServer::start(store, true);
    let cfg = RaceConfig::standard(sizes::race_duration(), sizes::seed(seed));
    let report = race::run(&server.url(), &server.operator_token(), &cfg, opts);
    eprintln!("race on {backend}: {report}");
    // Not vacuous: the workload must have raced for real.
    assert!(report.grants >= 50, "too few leases granted: {report}");
    assert!(report.ops_checked >= 500, "too few calls checked: {report}");
    assert!(
        report.violations.is_empty(),
        "race on {backend}: {report}\n{}",
        report.violations.join("\n")
    );
}

#[test]
fn race_on_sqlite_is_linearizable_and_keeps_every_invariant() {
    let dir = tempfile::tempdir().unwrap();
    let store = leasehold_sqlite::SqliteStore::open(dir.path().join("race.db")).unwrap();
    run_on(Arc::new(store), CheckOptions::default(), "sqlite", 7001);
}

#[test]
fn race_on_postgres_is_linearizable_and_keeps_every_invariant() {
    let Some(cluster) = leasehold_postgres::testing::shared() else {
        return;
    };
    let store = cluster.fresh_store();
    let opts = CheckOptions {
        empty_claim_may_skip: true,
        ..CheckOptions::default()
    };
    run_on(Arc::new(store), opts, "postgres", 7002);
}
