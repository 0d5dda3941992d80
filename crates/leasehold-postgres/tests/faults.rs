//! Faults: PostgreSQL restarted (`pg_ctl stop -m fast`, or `-m immediate`
//! like a crash, then start) while clients run operations. Calls during the outage fail with `unavailable`,
//! calls after it succeed on the same `PgStore`, and nothing acknowledged
//! before the restart is lost. Waiting is on events (a channel of outcomes),
//! never on the wall clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use leasehold_conformance::support::{at, ctx};
use leasehold_core::{ErrorCode, NewTask, Store};
use leasehold_postgres::testing;
use leasehold_postgres::PgOptions;

enum Event {
    Created(String),
    Leased(String, u64),
    Failed(ErrorCode, String),
}

/// Receive events until `enough` says so; panics if they stop coming.
fn pump(
    rx: &mpsc::Receiver<Event>,
    log: &mut Vec<Event>,
    mut enough: impl FnMut(&[Event]) -> bool,
) {
    while !enough(log) {
        let e = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("clients stopped reporting");
        log.push(e);
    }
}

#[test]
fn restart_under_concurrent_clients_is_unavailable_then_recovers_without_losing_acks() {
    restart_while_clients_run(false);
}

/// The same with a crash-like stop: no shutdown checkpoint, so what survives
/// is what the WAL held when each commit was acknowledged.
#[test]
fn crash_restart_under_concurrent_clients_keeps_every_acknowledged_operation() {
    restart_while_clients_run(true);
}

fn restart_while_clients_run(crash: bool) {
    let Some(cl) = testing::dedicated() else {
        return;
    };
    let store = cl.store_with(PgOptions {
        schema: testing::unique_schema("fault"),
        pool_size: 8,
        connect_timeout: Duration::from_secs(2),
        checkout_timeout: Duration::from_secs(2),
        ..PgOptions::default()
    });
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    let mut log: Vec<Event> = Vec::new();
    let (before, outage_calls, after) = thread::scope(|s| {
        for k in 0..4 {
            let (store, stop, tx) = (&store, &stop, tx.clone());
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let id = format!("c{k}-{i}");
                    match store.create(NewTask::new(id.clone(), format!("s-{id}")), &ctx(0)) {
                        Ok(_) => {
                            let _ = tx.send(Event::Created(id.clone()));
                            match store.acquire_lease(&id, "w", at(600), &ctx(1)) {
                                Ok(t) => {
                                    let _ = tx.send(Event::Leased(id, t.lease_token));
                                }
                                Err(e) => {
                                    let _ = tx.send(Event::Failed(e.code(), e.to_string()));
                                }
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Event::Failed(e.code(), e.to_string()));
                            // Back off like a real client instead of spinning
                            // on refused connections (correctness does not
                            // depend on it).
                            thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
            });
        }
        drop(tx);
        // Some acknowledged work before the restart.
        pump(&rx, &mut log, |l| {
            l.iter().filter(|e| matches!(e, Event::Leased(..))).count() >= 200
        });
        if crash {
            cl.stop_immediate();
        } else {
            cl.stop_fast();
        }
        let before = log.len();
        // During the outage: our own calls and the clients' fail with unavailable.
        let outage_calls: Vec<_> = (0..5)
            .map(|_| store.get("c0-1").map(|_| ()).unwrap_err())
            .collect();
        pump(&rx, &mut log, |l| {
            l[before..]
                .iter()
                .filter(|e| matches!(e, Event::Failed(..)))
                .count()
                >= 8
        });
        cl.restart();
        // The very first call after the restart succeeds on the same store.
        let first = store.counts();
        let after = log.len();
        pump(&rx, &mut log, |l| {
            l[after..]
                .iter()
                .filter(|e| matches!(e, Event::Leased(..)))
                .count()
                >= 200
        });
        stop.store(true, Ordering::Relaxed);
        (before, outage_calls, first.map(|_| after))
    });
    while let Ok(e) = rx.try_recv() {
        log.push(e);
    }
    for e in &outage_calls {
        assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    }
    after.expect("first call after the restart succeeds");
    let failures: Vec<_> = log
        .iter()
        .filter_map(|e| match e {
            Event::Failed(code, msg) => Some((*code, msg.clone())),
            _ => None,
        })
        .collect();
    let stats = store.stats();
    eprintln!(
        "restart test (crash: {crash}): {} events, {} before the stop, {} failures, {stats:?}",
        log.len(),
        before,
        failures.len()
    );
    assert!(!failures.is_empty());
    for (code, msg) in &failures {
        assert_eq!(
            *code,
            ErrorCode::Unavailable,
            "only unavailable during a restart: {msg}"
        );
    }
    // Everything acknowledged (before and after the restart) is there.
    let mut checked_before = 0;
    for (i, e) in log.iter().enumerate() {
        match e {
            Event::Created(id) => {
                assert!(
                    store.get(id).unwrap().is_some(),
                    "acknowledged create of {id} lost"
                );
            }
            Event::Leased(id, token) => {
                let t = store.require(id).unwrap();
                assert_eq!(
                    (t.lease_owner.as_deref(), t.lease_token),
                    (Some("w"), *token),
                    "{id}"
                );
                if i < before {
                    checked_before += 1;
                }
            }
            Event::Failed(..) => {}
        }
    }
    assert!(checked_before >= 200);
    assert!(stats.dropped_broken >= 1, "{stats:?}");
}
