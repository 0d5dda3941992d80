//! `reliability-server`: the production server (`leasehold_server::serve_listener`
//! with the system clock, the reaper and open loopback auth) over SQLite or
//! PostgreSQL, as its own process so that tests can `kill -9` it. It opens the
//! store exactly as `leasehold serve` does and prints `LISTENING <addr>` once
//! it accepts connections. Built with `--features failpoints`, it honours
//! `FAILPOINTS` (the server's and the backends' failpoints, see
//! `leasehold_core::failpoint`).
//!
//! Usage: `reliability-server --db PATH|postgres://… [--listen 127.0.0.1:0]
//! [--reaper-interval-ms N] [--max-attempts N]`
//!
//! With `RELIABILITY_SERVER_STATS_MS=N` in its environment, a SQLite server
//! prints `SQLITE_STATS key=value …` every N ms: the store's group-commit and
//! background-checkpoint counters (the heartbeat soak reports the last line).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use leasehold_core::Store;
use leasehold_server::{AppState, SystemClock, TokenStore};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(db) = arg(&args, "--db") else {
        eprintln!("usage: reliability-server --db PATH|postgres://… [--listen ADDR] [--reaper-interval-ms N] [--max-attempts N]");
        std::process::exit(2);
    };
    let listen = arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let reaper_ms: u64 = arg(&args, "--reaper-interval-ms")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let max_attempts: u32 = arg(&args, "--max-attempts")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let stats_every = std::env::var("RELIABILITY_SERVER_STATS_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis);
    let store: Arc<dyn Store> = if leasehold_postgres::is_postgres_url(&db) {
        Arc::new(
            leasehold_postgres::PgStore::connect(&db).unwrap_or_else(|e| {
                eprintln!("cannot open {db}: {e}");
                std::process::exit(1)
            }),
        )
    } else {
        let sqlite = Arc::new(
            leasehold_sqlite::SqliteStore::open(&db).unwrap_or_else(|e| {
                eprintln!("cannot open {db}: {e}");
                std::process::exit(1)
            }),
        );
        if let Some(every) = stats_every {
            let s = sqlite.clone();
            std::thread::spawn(move || loop {
                std::thread::sleep(every);
                let (g, c) = (s.group_stats(), s.checkpoint_stats());
                println!(
                    "SQLITE_STATS batches={} ops={} largest={} batch_ms_max={:.1} slow_batches={} checkpoints={} checkpoint_frames={} checkpoint_ms_max={:.1} checkpoint_ms_total={:.1} wal_frames_max={} checkpoint_errors={} catch_ups={} catch_up_ms_max={:.1}",
                    g.batches,
                    g.ops,
                    g.largest,
                    g.batch_us_max as f64 / 1e3,
                    g.slow_batches,
                    c.checkpoints,
                    c.frames,
                    c.us_max as f64 / 1e3,
                    c.us_total as f64 / 1e3,
                    c.wal_frames_max,
                    c.errors,
                    c.catch_ups,
                    c.catch_up_us_max as f64 / 1e3
                );
                let _ = std::io::stdout().flush();
            });
        }
        sqlite
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let keep = store.clone();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .unwrap_or_else(|e| {
                eprintln!("cannot listen on {listen}: {e}");
                std::process::exit(1)
            });
        let addr = listener.local_addr().expect("local address");
        let mut state = AppState::new(store, Arc::new(SystemClock), Arc::new(TokenStore::open()));
        state.max_attempts = max_attempts;
        // Tests that need failpoints check this line (see tests/kill.rs).
        let fp = leasehold_core::failpoint::ENABLED;
        println!("FAILPOINTS {}", if fp { "on" } else { "off" });
        println!("LISTENING {addr}");
        let _ = std::io::stdout().flush();
        let reaper = (reaper_ms > 0).then(|| Duration::from_millis(reaper_ms));
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        if let Err(e) = leasehold_server::serve_listener(listener, state, reaper, shutdown).await {
            eprintln!("server error: {e}");
            std::process::exit(1);
        }
    });
    drop(rt);
    drop(keep);
}
