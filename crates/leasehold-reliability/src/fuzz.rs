//! Fuzz target bodies, shared by the cargo-fuzz crate in `fuzz/` (libFuzzer,
//! `RUSTC_BOOTSTRAP=1` on the stable toolchain) and the stable fallback loop
//! in this crate's quick tier (`tests/fuzz_fallback.rs`), so both exercise
//! exactly the same code. Each function takes arbitrary bytes and panics only
//! when a property is broken: parsers never panic and round-trip, the API
//! never answers 500 to a bad body, and the state machine agrees with the
//! model and keeps its invariants on any command sequence.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use leasehold_core::machine::{self, Command, Context};
use leasehold_core::memory::MemoryStore;
use leasehold_core::{
    validate, ClaimRequest, CompensationStatus, Fence, NewCompensation, NewTask, Store, Task,
    TaskState, Timestamp,
};

/// Timestamps: `Timestamp::parse` never panics; whatever it accepts prints
/// back as RFC 3339 that parses to the same instant; whatever it rejects is
/// `invalid_input`.
pub fn timestamp(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Timestamp::parse(&text) {
        Ok(t) => {
            let printed = t.to_rfc3339();
            let again = Timestamp::parse(&printed)
                .unwrap_or_else(|e| panic!("{printed:?} (from {text:?}) does not parse back: {e}"));
            assert_eq!(again, t, "round trip of {text:?} via {printed:?}");
            assert_eq!(Timestamp::from_micros(t.as_micros()), Some(t));
        }
        Err(e) => assert_eq!(e.code(), leasehold_core::ErrorCode::InvalidInput, "{e}"),
    }
    if data.len() >= 8 {
        let micros = i64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        if let Some(t) = Timestamp::from_micros(micros) {
            let back = Timestamp::parse(&t.to_rfc3339()).expect("printed timestamps parse");
            assert_eq!(back, t);
        }
    }
}

/// Durations: the CLI's parser (`humantime`, zero rejected) and the
/// arithmetic every lease uses (`checked_add`, claim TTL checks, the client's
/// TTL-in-milliseconds conversion) never panic, and agree with each other.
pub fn duration(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let at = Timestamp::parse("2026-06-03T10:00:00Z").expect("fixed instant");
    if let Ok(d) = humantime::parse_duration(text.trim()) {
        if let Some(later) = at.checked_add(d) {
            assert!(later >= at);
            assert!(d.is_zero() || later > at || d < Duration::from_micros(1));
        }
        let req = ClaimRequest {
            owner: "w".into(),
            queues: vec![],
            ttl: d,
            limit: 1,
            max_attempts: None,
        };
        match req.check(at) {
            Ok((_, expires)) => assert!(expires > at, "claim expiry must follow its time"),
            Err(e) => assert_eq!(e.code(), leasehold_core::ErrorCode::InvalidInput),
        }
        if let Ok(ms) = leasehold_client::wire::ttl_ms_of(d) {
            assert!(
                u128::from(ms) * 1000 >= d.as_micros(),
                "ttl {d:?} rounded down to {ms} ms"
            );
        }
    }
    if data.len() >= 16 {
        let secs = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        let nanos = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes")) % 1_000_000_000;
        let d = Duration::new(secs, nanos);
        let _ = at.checked_add(d);
        let _ = leasehold_client::wire::ttl_ms_of(d);
    }
}

/// Ids: `validate::id` never panics, and accepts exactly 1–128 characters of
/// `A-Z a-z 0-9 . _ : / -`.
pub fn id(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let want = !text.is_empty()
        && text.chars().count() <= leasehold_core::limits::ID_LEN_MAX
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-'));
    let got = validate::id("task_id", &text);
    assert_eq!(got.is_ok(), want, "id {text:?}: {got:?}");
    let _ = validate::owner(&text);
    let _ = validate::text("reason", &text);
}

/// The routes a JSON request may go to, with the method.
const ROUTES: [(&str, &str); 16] = [
    ("POST", "/v1/tasks"),
    ("PUT", "/v1/tasks/t1"),
    ("POST", "/v1/tasks/t1/lease"),
    ("POST", "/v1/tasks/t1/heartbeat"),
    ("POST", "/v1/tasks/t1/release"),
    ("POST", "/v1/tasks/t1/complete"),
    ("POST", "/v1/tasks/t1/fail"),
    ("POST", "/v1/tasks/t1/compensate"),
    ("POST", "/v1/tasks/t1/quarantine"),
    ("POST", "/v1/tasks/t1/notes"),
    ("POST", "/v1/tasks/t1/compensations/0"),
    ("POST", "/v1/claim"),
    ("POST", "/v1/reclaim"),
    ("POST", "/v1/tasks/t1/dispatch"),
    ("POST", "/v1/heartbeats"),
    ("POST", "/v1/completions"),
];

/// A store whose backing `MemoryStore` is swapped for a fresh one per fuzz
/// input, so the router (whose OpenAPI document is costly to render) is
/// built once per thread while every input still starts from the same state.
#[derive(Default)]
struct SwapStore(std::sync::RwLock<Arc<MemoryStore>>);

impl SwapStore {
    fn cur(&self) -> Arc<MemoryStore> {
        self.0.read().expect("swap lock").clone()
    }
}

impl Store for SwapStore {
    leasehold_core::delegate_store! {
        to self.cur();
    }
}

/// Per fuzzing thread: a runtime, the swappable store and the router over it.
struct JsonRig {
    rt: tokio::runtime::Runtime,
    store: Arc<SwapStore>,
    app: axum::Router,
}

thread_local! {
    static RIG: RefCell<Option<JsonRig>> = const { RefCell::new(None) };
}

/// A store holding `t1`, leased by `w` with token 1, and a compensation.
fn seeded_store() -> MemoryStore {
    let s = MemoryStore::new();
    let now = Timestamp::now();
    let mut nt = NewTask::new("t1", "s1");
    nt.compensations
        .push(NewCompensation::new("delete_branch", "b", "cleanup"));
    s.create(nt, &Context::new(now, "setup"))
        .expect("seed task");
    s.acquire_lease(
        "t1",
        "w",
        now.checked_add(Duration::from_secs(600)).expect("expiry"),
        &Context::new(now, "w"),
    )
    .expect("seed lease");
    s
}

/// JSON requests: any body on any write route answers a 2xx or a 4xx
/// problem document with a `code` member, never a 5xx, never a panic; a
/// rejected request changes nothing.
pub fn json_request(data: &[u8]) {
    use tower::ServiceExt;
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let (method, path) = ROUTES[usize::from(sel) % ROUTES.len()];
    let seeded = Arc::new(seeded_store());
    let before = seeded.get("t1").expect("read").expect("seeded");
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_vec()))
        .expect("request");
    let (status, bytes) = RIG.with(|rig| {
        let mut rig = rig.borrow_mut();
        let rig = rig.get_or_insert_with(|| {
            let store = Arc::new(SwapStore::default());
            let state = leasehold_server::AppState::new(
                store.clone(),
                Arc::new(leasehold_server::SystemClock),
                Arc::new(leasehold_server::TokenStore::open()),
            );
            JsonRig {
                rt: tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime"),
                store,
                app: leasehold_server::router(state),
            }
        });
        *rig.store.0.write().expect("swap lock") = seeded.clone();
        let app = rig.app.clone();
        rig.rt.block_on(async move {
            let resp = app.oneshot(req).await.expect("infallible service");
            let status = resp.status().as_u16();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
                .await
                .expect("body");
            (status, bytes)
        })
    });
    let store = seeded;
    assert!(
        status < 500,
        "{method} {path} with {:?} answered {status}: {}",
        String::from_utf8_lossy(body),
        String::from_utf8_lossy(&bytes)
    );
    if status >= 400 {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{status} answer is not JSON ({e}): {bytes:?}"));
        assert!(v.get("code").is_some(), "problem without a code: {v}");
        assert_eq!(
            store.get("t1").expect("read").expect("still there"),
            before,
            "a rejected {method} {path} changed the task"
        );
    }
}

/// A little cursor over fuzz bytes.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
}

fn owner(b: u8) -> String {
    ["w1", "w2", "w3"][usize::from(b) % 3].to_string()
}

/// Decode one command for the task `t` from the bytes (None when they run out).
fn command(b: &mut Bytes<'_>, t: &Task, at: Timestamp) -> Option<Command> {
    let op = b.byte()?;
    let x = b.byte()?;
    let ms = |n: u8| at.checked_add_micros(i64::from(n) * 10_000).expect("small");
    let fence = |x: u8| {
        // Mostly plausible fences: the current one, an older token, another owner.
        let tok = match x % 4 {
            0 | 1 => t.lease_token,
            2 => t.lease_token.saturating_sub(1),
            _ => t.lease_token + 1,
        };
        let who = if x % 5 == 0 {
            owner(x / 5)
        } else {
            t.lease_owner.clone().unwrap_or_else(|| owner(x))
        };
        Fence::new(who, tok)
    };
    Some(match op % 13 {
        0 => Command::Dispatch,
        1 | 2 => Command::Acquire {
            owner: owner(x),
            expires_at: ms(x / 2),
        },
        3 | 4 => Command::Heartbeat {
            fence: fence(x),
            expires_at: t
                .lease_expires_at
                .unwrap_or(at)
                .checked_add_micros(i64::from(x) * 5_000 - 100_000)
                .expect("small"),
        },
        5 => Command::Release { fence: fence(x) },
        6 => Command::Complete {
            reason: (x % 2 == 0).then(|| "done".into()),
            fence: (x % 3 != 0).then(|| fence(x)),
        },
        7 => Command::Compensate {
            reason: None,
            fence: (x % 3 != 0).then(|| fence(x)),
        },
        8 => Command::Fail {
            reason: if x % 7 == 0 {
                String::new()
            } else {
                "broke".into()
            },
            compensation: (x % 2 == 0).then(|| NewCompensation::new("revert", "b", "failed")),
            fence: (x % 3 != 0).then(|| fence(x)),
        },
        9 => Command::Quarantine {
            reason: if x % 4 == 0 {
                String::new()
            } else {
                "odd".into()
            },
            fence: (x % 3 != 0).then(|| fence(x)),
        },
        10 => Command::Reclaim {
            max_attempts: u32::from(x % 4) + 1,
        },
        11 => Command::Annotate {
            author: owner(x),
            note: "note".into(),
        },
        _ => Command::RecordCompensation {
            index: usize::from(x % 3),
            status: [
                CompensationStatus::Pending,
                CompensationStatus::Applied,
                CompensationStatus::Failed,
            ][usize::from(x) % 3],
            detail: None,
        },
    })
}

/// The state machine against the model: a command sequence decoded from the
/// bytes is applied to the in-memory store (the executable model) and, step
/// by step, to a task kept by calling `machine::apply` directly. They must
/// agree on every answer; and after every step the invariants hold: the task
/// validates, the token never goes back and moves only on a lease, a
/// terminal task never changes state, at most one lease, the version moves
/// by exactly one on a change, and a rejected command changes nothing.
pub fn machine(data: &[u8]) {
    machine_counted(data);
}

/// [`machine`], returning (commands accepted, commands rejected, leases
/// granted) so tests can show the input reaches the interesting states.
pub fn machine_counted(data: &[u8]) -> (usize, usize, usize) {
    let (mut accepted, mut rejected, mut leases) = (0, 0, 0);
    let mut b = Bytes(data);
    let store = MemoryStore::new();
    let mut at = Timestamp::parse("2026-06-03T10:00:00Z").expect("fixed instant");
    let mut nt = NewTask::new("t1", "s1");
    if b.byte().is_some_and(|x| x % 2 == 0) {
        nt.compensations
            .push(NewCompensation::new("delete_branch", "b", "setup"));
    }
    let created = store
        .create(nt.clone(), &Context::new(at, "setup"))
        .expect("create");
    let mut mine = machine::create(nt, &Context::new(at, "setup"))
        .expect("create")
        .task;
    assert_eq!(created, mine);
    let mut history_len = 1usize;
    for _ in 0..256 {
        let Some(step) = b.byte() else { break };
        at = at
            .checked_add_micros(i64::from(step) * 4_000)
            .expect("small steps");
        let Some(cmd) = command(&mut b, &mine, at) else {
            break;
        };
        let ctx = Context::new(at, "fuzz");
        let before = mine.clone();
        let want = machine::apply(&mine, &cmd, &ctx);
        let got = store.apply("t1", cmd.clone(), &ctx);
        match (&want, &got) {
            (Ok(tr), Ok(t)) => assert_eq!(&tr.task, t, "{cmd:?}"),
            (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "{cmd:?}: {a} / {b}"),
            _ => panic!("machine and model disagree on {cmd:?}: {want:?} vs {got:?}"),
        }
        let stored = store.require("t1").expect("task");
        let hist = store.history("t1").expect("history");
        match want {
            Ok(tr) => {
                let after = tr.task;
                validate::check_invariants(&after)
                    .unwrap_or_else(|e| panic!("{cmd:?} broke an invariant: {e}"));
                assert!(after.lease_token >= before.lease_token, "token went back");
                if after.lease_token != before.lease_token {
                    assert!(
                        matches!(cmd, Command::Acquire { .. }),
                        "token moved on {cmd:?}"
                    );
                    assert_eq!(after.lease_token, before.lease_token + 1);
                }
                if before.state.is_terminal() {
                    assert_eq!(after.state, before.state, "left terminal on {cmd:?}");
                }
                if after.state == TaskState::Running {
                    assert!(after.lease_owner.is_some() && after.lease_expires_at.is_some());
                }
                if tr.changed {
                    assert_eq!(after.version, before.version + 1);
                    if tr.history.is_some() {
                        history_len += 1;
                    }
                } else {
                    assert_eq!(after, before);
                }
                assert_eq!(stored, after);
                accepted += 1;
                if after.lease_token != before.lease_token {
                    leases += 1;
                }
                mine = after;
            }
            Err(_) => {
                rejected += 1;
                assert_eq!(stored, before, "a rejected {cmd:?} changed the task");
            }
        }
        assert_eq!(hist.len(), history_len, "history length after {cmd:?}");
    }
    (accepted, rejected, leases)
}
