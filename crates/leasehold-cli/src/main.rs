//! The `leasehold` command line.
//!
//! Layers, as in ripgrep: [`args`] (raw flags, validated by clap, no I/O) →
//! [`config`] (resolved configuration: backend, time, actor) → [`commands`]
//! (the work, against `Arc<dyn Store>`) → [`output`] (tables or JSON).
//! `main` maps errors to the documented exit codes (`ErrorCode::exit_code`),
//! prints them on stderr, and treats a closed stdout (broken pipe) as success.

mod args;
mod backend;
mod bench;
mod commands;
mod config;
mod demo;
mod import;
mod output;
mod serve;
mod token;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use leasehold_core::Error;

use crate::args::Cli;
use crate::config::Config;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits 2 (0 for --help/--version).
    let cli = Cli::parse();
    init_tracing();
    if matches!(
        cli.command,
        args::Command::Serve(_) | args::Command::Token(_)
    ) {
        return serve::main(cli);
    }
    if matches!(cli.command, args::Command::Demo(_)) {
        return demo::main(cli);
    }
    if let args::Command::Bench(b) = &cli.command {
        return match bench::run(b, cli.db.as_deref(), cli.json) {
            Ok(text) => write_stdout(&text),
            Err(e) => report(&e, cli.json),
        };
    }
    let json = cli.json;
    let result = Config::resolve(&cli).and_then(|cfg| {
        let reply = commands::run(cli.command, &cfg)?;
        Ok(output::render(&reply, cfg.json))
    });
    match result {
        Ok(text) => write_stdout(&text),
        Err(e) => report(&e, json),
    }
}

/// Logs go to stderr only; `LEASEHOLD_LOG` (an `EnvFilter` directive, e.g.
/// `debug`) chooses how much, default `warn`.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEASEHOLD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .try_init();
}

/// Write the output; a reader that went away (`| head`) is not an error.
fn write_stdout(text: &str) -> ExitCode {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => report(&Error::Internal(format!("cannot write output: {e}")), false),
    }
}

/// Print the error on stderr (as JSON with `--json`) and pick the exit code.
fn report(e: &Error, json: bool) -> ExitCode {
    let code = e.code();
    let line = if json {
        output::error_json(code.as_str(), e.message())
    } else {
        format!("error: {}", e.message())
    };
    let _ = writeln!(io::stderr().lock(), "{line}");
    ExitCode::from(exit_status(e))
}

/// The documented exit status of an error (`ErrorCode::exit_code`), 1 if it
/// does not fit a process exit status.
fn exit_status(e: &Error) -> u8 {
    u8::try_from(e.code().exit_code()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::ErrorCode;

    #[test]
    fn every_error_code_has_its_documented_exit_status() {
        let documented = [
            (ErrorCode::InvalidInput, 3),
            (ErrorCode::NotFound, 4),
            (ErrorCode::AlreadyExists, 5),
            (ErrorCode::LeaseConflict, 6),
            (ErrorCode::Terminal, 7),
            (ErrorCode::VersionConflict, 8),
            (ErrorCode::Unauthorized, 9),
            (ErrorCode::Forbidden, 9),
            (ErrorCode::Unavailable, 10),
            (ErrorCode::Internal, 1),
        ];
        assert_eq!(documented.len(), ErrorCode::ALL.len());
        for (code, status) in documented {
            assert_eq!(exit_status(&Error::new(code, "m")), status, "{code}");
        }
    }
}
