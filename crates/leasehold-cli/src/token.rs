//! `leasehold token create|list|revoke`: manage the server's token file.
//! Secrets are printed once, at creation, and only their SHA-256 is stored.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use leasehold_core::{Error, Result};
use leasehold_server::tokens::{self, Role, TokenError};

/// `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its secret (shown once; only its hash is stored).
    Create {
        /// The token file (created if missing).
        #[arg(long, env = "LEASEHOLD_TOKENS", value_name = "FILE")]
        tokens: PathBuf,
        /// Unique name; a worker token's name is its owner id.
        #[arg(long)]
        name: String,
        /// reader, worker or operator.
        #[arg(long)]
        role: String,
    },
    /// List tokens (names, roles, creation times; never secrets).
    List {
        /// The token file.
        #[arg(long, env = "LEASEHOLD_TOKENS", value_name = "FILE")]
        tokens: PathBuf,
    },
    /// Revoke a token by name; a running server notices within one request.
    Revoke {
        /// The token file.
        #[arg(long, env = "LEASEHOLD_TOKENS", value_name = "FILE")]
        tokens: PathBuf,
        /// The token's name.
        #[arg(long)]
        name: String,
    },
}

fn map(e: TokenError) -> Error {
    match e {
        TokenError::Io { .. } => Error::Internal(e.to_string()),
        TokenError::Malformed { .. } | TokenError::Invalid(_) => Error::InvalidInput(e.to_string()),
    }
}

/// Run a `token` subcommand; returns what to print on stdout.
pub fn run(args: &TokenArgs, json: bool) -> Result<String> {
    match &args.command {
        TokenCommand::Create { tokens, name, role } => {
            let role: Role = role.parse().map_err(map)?;
            let created = tokens::create_token(tokens, name, role).map_err(map)?;
            if json {
                Ok(format!(
                    "{}\n",
                    serde_json::json!({"name": created.name, "role": created.role, "secret": created.secret})
                ))
            } else {
                eprintln!(
                    "created {} token {:?}; its secret is shown once, keep it safe:",
                    created.role, created.name
                );
                Ok(format!("{}\n", created.secret))
            }
        }
        TokenCommand::List { tokens } => {
            let list = tokens::list_tokens(tokens).map_err(map)?;
            if json {
                return Ok(format!(
                    "{}\n",
                    serde_json::to_string(&list).map_err(|e| Error::Internal(e.to_string()))?
                ));
            }
            let mut out = format!("{:<24} {:<9} {}\n", "NAME", "ROLE", "CREATED_AT");
            for t in list {
                out.push_str(&format!(
                    "{:<24} {:<9} {}\n",
                    t.name,
                    t.role.as_str(),
                    t.created_at
                ));
            }
            Ok(out)
        }
        TokenCommand::Revoke { tokens, name } => {
            tokens::revoke_token(tokens, name).map_err(map)?;
            if json {
                Ok(format!("{}\n", serde_json::json!({"revoked": name})))
            } else {
                Ok(format!("revoked token {name:?}\n"))
            }
        }
    }
}
