//! `leasehold serve` and `leasehold token`: the commands that belong to the
//! HTTP server (crate `leasehold-server`). `serve` runs until SIGTERM or
//! SIGINT, then stops accepting, finishes in-flight requests and exits 0.
//! They print through `main`'s `write_stdout`/`report`, so exit codes and
//! `--json` behave like every other command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use leasehold_core::{Error, Result};
use leasehold_server::{ServeError, ServerConfig};

use crate::args::{Cli, Command};
use crate::config::{parse_duration, Config};

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, IP:PORT. Without --tokens only loopback is allowed.
    #[arg(long, env = "LEASEHOLD_LISTEN", default_value = leasehold_server::DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: String,
    /// Token file (hashed bearer tokens, see `leasehold token`). Without it
    /// every caller is an operator, so the server only listens on loopback.
    #[arg(long, env = "LEASEHOLD_TOKENS", value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Time between reaper passes (reclaiming stale leases), e.g. 5s, 500ms; `off` disables.
    #[arg(
        long,
        env = "LEASEHOLD_REAPER_INTERVAL",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub reaper_interval: String,
    /// Leases after which the reaper quarantines a stale task instead of re-dispatching it.
    #[arg(long, env = "LEASEHOLD_MAX_ATTEMPTS", default_value_t = leasehold_core::limits::RECLAIM_MAX_ATTEMPTS_DEFAULT, value_name = "N")]
    pub max_attempts: u32,
}

/// Run `serve` or `token` (main hands them over before the store commands).
pub fn main(cli: Cli) -> ExitCode {
    let json = cli.json;
    let result = match &cli.command {
        Command::Token(args) => crate::token::run(args, json),
        Command::Serve(args) => Config::resolve(&cli).and_then(|cfg| serve(&cfg, args)),
        _ => Err(Error::Internal("serve::main got another command".into())),
    };
    match result {
        Ok(text) => crate::write_stdout(&text),
        Err(e) => crate::report(&e, json),
    }
}

fn config(args: &ServeArgs) -> Result<ServerConfig> {
    let listen: SocketAddr = args.listen.trim().parse().map_err(|e| {
        Error::InvalidInput(format!(
            "--listen {:?} is not IP:PORT (e.g. 127.0.0.1:7878): {e}",
            args.listen
        ))
    })?;
    let reaper_interval = match args.reaper_interval.trim() {
        "off" | "0" => Duration::ZERO,
        text => parse_duration("--reaper-interval", text)?,
    };
    if args.max_attempts == 0 {
        return Err(Error::InvalidInput(
            "--max-attempts must be at least 1".into(),
        ));
    }
    Ok(ServerConfig {
        listen,
        tokens_file: args.tokens.clone(),
        reaper_interval,
        max_attempts: args.max_attempts,
        trust_client_clock: false,
    })
}

fn serve(cfg: &Config, args: &ServeArgs) -> Result<String> {
    let config = config(args)?;
    leasehold_server::check_listen(config.listen, config.tokens_file.is_none())
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    let store = crate::backend::open_store(cfg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    eprintln!(
        "leasehold: serving {:?} on http://{} ({}); SIGTERM or Ctrl-C stops",
        cfg.backend,
        config.listen,
        match &config.tokens_file {
            Some(p) => format!("tokens from {}", p.display()),
            None => "no tokens: loopback only, every caller is an operator".to_string(),
        }
    );
    runtime
        .block_on(leasehold_server::serve(store, config, shutdown_signal()))
        .map_err(|e| match e {
            ServeError::OpenNonLoopback(_) | ServeError::Config(_) | ServeError::Tokens(_) => {
                Error::InvalidInput(e.to_string())
            }
            ServeError::Bind { .. } => Error::Unavailable(e.to_string()),
            ServeError::Io(_) => Error::Internal(e.to_string()),
        })?;
    Ok(String::new())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("leasehold: shutting down: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: &str, interval: &str, max: u32) -> ServeArgs {
        ServeArgs {
            listen: listen.into(),
            tokens: None,
            reaper_interval: interval.into(),
            max_attempts: max,
        }
    }

    #[test]
    fn flags_resolve_to_a_server_config() {
        let c = config(&args("127.0.0.1:7878", "5s", 5)).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7878");
        assert_eq!(c.reaper_interval, Duration::from_secs(5));
        assert!(!c.trust_client_clock, "never from the command line");
        assert_eq!(
            config(&args("127.0.0.1:1", "off", 1))
                .unwrap()
                .reaper_interval,
            Duration::ZERO
        );
        let code = |a: ServeArgs| config(&a).unwrap_err().code().as_str();
        assert_eq!(code(args("localhost", "5s", 5)), "invalid_input");
        assert_eq!(code(args("127.0.0.1:1", "soon", 5)), "invalid_input");
        assert_eq!(code(args("127.0.0.1:1", "5s", 0)), "invalid_input");
    }
}
