//! `reliability-agent`: a worker process that tests can pause (`SIGSTOP`)
//! or kill (`SIGKILL`). It takes the lease on one task, then heartbeats it
//! until a heartbeat is rejected; then it tries its terminal writes (complete,
//! then fail) under the same fence and exits. Every line it prints carries the
//! wall-clock instant (microseconds) at which the call was sent, so a test can
//! tell calls sent after it resumed the process from calls sent before.
//!
//! Usage: `[LEASEHOLD_TOKEN=…] reliability-agent --url URL --task ID --owner NAME --ttl-ms N --heartbeat-ms N`
//!
//! Output: `LEASED <token>`, `HB <sent_us> ok|<code> <latency_us>`, `COMPLETE <sent_us> ok|<code>`,
//! `FAIL <sent_us> ok|<code>`, `DONE`; `ERROR <message>` if the lease cannot be taken.

use std::io::Write;
use std::time::Duration;

use leasehold_client::HttpStore;
use leasehold_core::{Context, Fence, NewCompensation, Store, Timestamp};

fn arg(args: &[String], name: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| {
            eprintln!("missing {name}");
            std::process::exit(2)
        })
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn verdict<T>(r: &leasehold_core::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.code().as_str().to_string(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, "--url");
    let task = arg(&args, "--task");
    let owner = arg(&args, "--owner");
    let ttl = Duration::from_millis(arg(&args, "--ttl-ms").parse().expect("--ttl-ms"));
    let every = Duration::from_millis(
        arg(&args, "--heartbeat-ms")
            .parse()
            .expect("--heartbeat-ms"),
    );
    // The bearer token (if the server wants one) comes from the environment,
    // never from argv, which other users of the machine can read.
    let token = std::env::var("LEASEHOLD_TOKEN").unwrap_or_default();
    let store = HttpStore::with_timeouts(
        &url,
        &token,
        Duration::from_secs(10),
        Duration::from_secs(2),
    )
    .expect("client");
    let at = Timestamp::now();
    let leased = store.acquire_lease(
        &task,
        &owner,
        at.checked_add(ttl).expect("ttl"),
        &Context::new(at, owner.as_str()),
    );
    let token = match leased {
        Ok(t) => t.lease_token,
        Err(e) => {
            say(format!("ERROR {e}"));
            std::process::exit(1);
        }
    };
    say(format!("LEASED {token}"));
    let fence = Fence::new(owner.clone(), token);
    loop {
        std::thread::sleep(every);
        let sent = Timestamp::now();
        let started = std::time::Instant::now();
        let r = store.heartbeat(
            &task,
            &fence,
            sent.checked_add(ttl).expect("ttl"),
            &Context::new(sent, owner.as_str()),
        );
        let took = started.elapsed().as_micros();
        say(format!("HB {} {} {took}", sent.as_micros(), verdict(&r)));
        if r.is_err() {
            break;
        }
    }
    let sent = Timestamp::now();
    let r = store.complete(
        &task,
        Some("agent done"),
        Some(&fence),
        &Context::new(sent, owner.as_str()),
    );
    say(format!("COMPLETE {} {}", sent.as_micros(), verdict(&r)));
    let sent = Timestamp::now();
    let r = store.fail(
        &task,
        "agent gave up",
        Some(NewCompensation::new(
            "cleanup",
            &task,
            "agent lost its lease",
        )),
        Some(&fence),
        &Context::new(sent, owner.as_str()),
    );
    say(format!("FAIL {} {}", sent.as_micros(), verdict(&r)));
    say("DONE".into());
}
