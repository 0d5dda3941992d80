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

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        (dir, path)
    }

    #[test]
    fn create_prints_the_secret_once_and_stores_only_its_hash() {
        let (_dir, path) = file();
        let args = TokenArgs {
            command: TokenCommand::Create {
                tokens: path.clone(),
                name: "w1".into(),
                role: "worker".into(),
            },
        };
        let out: serde_json::Value = serde_json::from_str(&run(&args, true).unwrap()).unwrap();
        assert_eq!(out["name"], "w1");
        assert_eq!(out["role"], "worker");
        let secret = out["secret"].as_str().unwrap();
        assert!(secret.starts_with("lh_"));
        let stored = std::fs::read_to_string(&path).unwrap();
        assert!(!stored.contains(secret));
        assert!(stored.contains(&tokens::hash_secret(secret)));
        // The list shows names and roles, never secrets or hashes.
        let list = run(
            &TokenArgs {
                command: TokenCommand::List {
                    tokens: path.clone(),
                },
            },
            false,
        )
        .unwrap();
        assert!(list.contains("w1") && list.contains("worker"));
        assert!(!list.contains(secret) && !list.contains(&tokens::hash_secret(secret)));
    }

    #[test]
    fn bad_role_duplicate_and_unknown_revoke_are_invalid_input() {
        let (_dir, path) = file();
        let create = |name: &str, role: &str| TokenArgs {
            command: TokenCommand::Create {
                tokens: path.clone(),
                name: name.into(),
                role: role.into(),
            },
        };
        let code = |r: Result<String>| r.unwrap_err().code().as_str();
        assert_eq!(code(run(&create("x", "boss"), false)), "invalid_input");
        run(&create("x", "reader"), false).unwrap();
        assert_eq!(code(run(&create("x", "reader"), false)), "invalid_input");
        let revoke = |name: &str| TokenArgs {
            command: TokenCommand::Revoke {
                tokens: path.clone(),
                name: name.into(),
            },
        };
        run(&revoke("x"), false).unwrap();
        assert_eq!(code(run(&revoke("x"), false)), "invalid_input");
    }
}
