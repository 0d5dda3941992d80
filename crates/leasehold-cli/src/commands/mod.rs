//! The work: one module per command group, each turning parsed arguments and
//! the resolved [`Config`] into store calls and a [`Reply`].
//!
//! | module | commands |
//! |---|---|
//! | [`tasks`] | `create`, `get`, `list`, `counts`, `history`, `annotate`, `compensation` |
//! | [`lease`] | `dispatch`, `lease`, `claim`, `heartbeat`, `release` |
//! | [`finish`] | `complete`, `compensate`, `fail`, `quarantine` |
//! | [`maintenance`] | `stale`, `reclaim` |
//! | [`crate::import`] | `import` |
//!
//! New command groups (`serve`, `token`, `demo`, `bench`) add a module here
//! and one arm to [`run`].

pub mod finish;
pub mod lease;
pub mod maintenance;
pub mod tasks;

use leasehold_core::{Context, Error, Fence, NewCompensation, Result};

use crate::args::{Command, OptionalFence};
use crate::backend::open_store;
use crate::config::Config;
use crate::output::Reply;

/// Run one command against the configured store.
pub fn run(command: Command, cfg: &Config) -> Result<Reply> {
    let store = open_store(cfg)?;
    let store = store.as_ref();
    match command {
        Command::Create(a) => tasks::create(store, cfg, a),
        Command::Get(a) => tasks::get(store, &a.task_id),
        Command::List(a) => tasks::list(store, cfg, a),
        Command::Counts => tasks::counts(store),
        Command::History(a) => tasks::history(store, &a.task_id),
        Command::Annotate(a) => tasks::annotate(store, cfg, a),
        Command::Compensation(a) => tasks::compensation(store, cfg, a),
        Command::Dispatch(a) => lease::dispatch(store, cfg, &a.task_id),
        Command::Lease(a) => lease::lease(store, cfg, a),
        Command::Claim(a) => lease::claim(store, cfg, a),
        Command::Heartbeat(a) => lease::heartbeat(store, cfg, a),
        Command::Release(a) => lease::release(store, cfg, a),
        Command::Complete(a) => finish::complete(store, cfg, a),
        Command::Compensate(a) => finish::compensate(store, cfg, a),
        Command::Fail(a) => finish::fail(store, cfg, a),
        Command::Quarantine(a) => finish::quarantine(store, cfg, a),
        Command::Stale => maintenance::stale(store, cfg),
        Command::Reclaim(a) => maintenance::reclaim(store, cfg, a),
        Command::Import(a) => crate::import::run(store, cfg, &a.path).map(Reply::Import),
        Command::Serve(_) | Command::Token(_) | Command::Demo(_) | Command::Bench(_) => {
            Err(Error::Internal(
                "serve, token, bench and demo are run by main, not against an open store".into(),
            ))
        }
    }
}

/// The operation's context: `--at` and the operator actor.
pub fn context(cfg: &Config) -> Context {
    Context::new(cfg.at, cfg.actor.clone())
}

/// The fence given with `--owner O --token N`, if any (clap requires both or neither).
pub fn fence(f: &OptionalFence) -> Option<Fence> {
    match (&f.owner, f.token) {
        (Some(o), Some(t)) => Some(Fence::new(o.clone(), t)),
        _ => None,
    }
}

/// Compensations from `--compensation KIND TARGET REASON` triples.
pub fn compensations(flat: &[String]) -> Result<Vec<NewCompensation>> {
    if flat.len() % 3 != 0 {
        return Err(Error::InvalidInput(format!(
            "--compensation takes KIND TARGET REASON; got {} values",
            flat.len()
        )));
    }
    Ok(flat
        .chunks_exact(3)
        .map(|c| NewCompensation::new(c[0].clone(), c[1].clone(), c[2].clone()))
        .collect())
}
