//! Bearer tokens: the token file, creating, listing and revoking tokens, and
//! checking a presented secret.
//!
//! A secret is `lh_` followed by 32 random bytes in hex. Only its SHA-256 is
//! stored; a presented secret is hashed and compared against every stored
//! hash in constant time (`subtle`), so neither the file nor the timing of a
//! check reveals a secret. Secrets are returned once, by [`create_token`], and
//! never logged.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::RwLock;
use std::time::SystemTime;

use leasehold_core::Timestamp;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of every secret, so that a leaked one is recognisable in a scan.
pub const SECRET_PREFIX: &str = "lh_";
/// Random bytes in a secret.
pub const SECRET_RANDOM_BYTES: usize = 32;
/// Longest token name, in bytes (a worker's name is its owner id).
pub const TOKEN_NAME_BYTES_MAX: usize = 128;

/// What a token may do. Ordered: every role may do what the previous one may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads only.
    Reader,
    /// Reads, claim and lease as itself, and writes fenced by its own leases.
    Worker,
    /// Everything.
    Operator,
}

impl Role {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Worker => "worker",
            Role::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reader" => Ok(Role::Reader),
            "worker" => Ok(Role::Worker),
            "operator" => Ok(Role::Operator),
            _ => Err(TokenError::Invalid(format!(
                "unknown role {s:?}; expected reader, worker or operator"
            ))),
        }
    }
}

/// One stored token: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Unique name; for a worker, its owner id.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Lowercase hex SHA-256 of the secret.
    pub sha256: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// The token file: `{"tokens": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFile {
    /// Every live token.
    #[serde(default)]
    pub tokens: Vec<TokenRecord>,
}

/// A token as [`list_tokens`] shows it (no hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A freshly created token, with its secret: shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The bearer secret. Not stored anywhere; print it once.
    pub secret: String,
}

/// Errors of the token module.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading or writing the token file failed.
    #[error("token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The token file is not valid JSON of the expected shape.
    #[error("token file {path} is not a valid token file (expected {{\"tokens\": [{{name, role, sha256, created_at}}]}}): {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A bad name or role, a duplicate, or an unknown token.
    #[error("{0}")]
    Invalid(String),
}

/// Lowercase hex SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A new high-entropy secret: `lh_` + 32 random bytes in hex.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; SECRET_RANDOM_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut s = String::with_capacity(SECRET_PREFIX.len() + 2 * SECRET_RANDOM_BYTES);
    s.push_str(SECRET_PREFIX);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Check a token name: it becomes a worker's owner id and an actor in history.
pub fn check_name(name: &str) -> Result<(), TokenError> {
    if name.trim().is_empty() {
        return Err(TokenError::Invalid("token name must not be empty".into()));
    }
    if name.len() > TOKEN_NAME_BYTES_MAX {
        return Err(TokenError::Invalid(format!(
            "token name is {} bytes; at most {TOKEN_NAME_BYTES_MAX} allowed",
            name.len()
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-' | '@')))
    {
        return Err(TokenError::Invalid(format!(
            "token name {name:?} contains {bad:?}; allowed are A-Z a-z 0-9 . _ : / - @"
        )));
    }
    Ok(())
}

/// Read a token file; a missing file reads as empty.
pub fn read_file(path: &Path) -> Result<TokenFile, TokenError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TokenFile::default()),
        Err(source) => {
            return Err(TokenError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let file: TokenFile = serde_json::from_str(&text).map_err(|e| TokenError::Malformed {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    for t in &file.tokens {
        let valid_hash = t.sha256.len() == 64 && t.sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid_hash {
            return Err(TokenError::Malformed {
                path: path.to_path_buf(),
                message: format!("token {:?} has a sha256 that is not 64 hex digits", t.name),
            });
        }
    }
    Ok(file)
}

/// Write a token file atomically (temporary file, then rename), mode 0600 on Unix.
pub fn write_file(path: &Path, file: &TokenFile) -> Result<(), TokenError> {
    let io = |source| TokenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_string_pretty(file).expect("token file serialises");
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.write_all(b"\n").map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// Add a token to `file` in memory; returns the secret (once).
pub fn add_token(
    file: &mut TokenFile,
    name: &str,
    role: Role,
    now: Timestamp,
) -> Result<CreatedToken, TokenError> {
    check_name(name)?;
    if file.tokens.iter().any(|t| t.name == name) {
        return Err(TokenError::Invalid(format!(
            "a token named {name:?} exists already; revoke it first"
        )));
    }
    let secret = generate_secret();
    file.tokens.push(TokenRecord {
        name: name.to_string(),
        role,
        sha256: hash_secret(&secret),
        created_at: now,
    });
    Ok(CreatedToken {
        name: name.to_string(),
        role,
        secret,
    })
}

/// Create a token in the file at `path` (created if missing); returns the secret once.
pub fn create_token(path: &Path, name: &str, role: Role) -> Result<CreatedToken, TokenError> {
    let mut file = read_file(path)?;
    let created = add_token(&mut file, name, role, Timestamp::now())?;
    write_file(path, &file)?;
    Ok(created)
}

/// The tokens in the file at `path`, without hashes.
pub fn list_tokens(path: &Path) -> Result<Vec<TokenInfo>, TokenError> {
    Ok(read_file(path)?
        .tokens
        .into_iter()
        .map(|t| TokenInfo {
            name: t.name,
            role: t.role,
            created_at: t.created_at,
        })
        .collect())
}

/// Remove the token named `name` from the file at `path`.
pub fn revoke_token(path: &Path, name: &str) -> Result<(), TokenError> {
    let mut file = read_file(path)?;
    let before = file.tokens.len();
    file.tokens.retain(|t| t.name != name);
    if file.tokens.len() == before {
        return Err(TokenError::Invalid(format!(
            "no token named {name:?} in {}",
            path.display()
        )));
    }
    write_file(path, &file)
}

/// The identity behind a verified secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Token name.
    pub name: String,
    /// Token role.
    pub role: Role,
}

/// Find the token whose hash matches `secret`. Every stored hash is compared
/// in constant time, with no early exit, so timing does not depend on which
/// (if any) matched.
pub fn verify(file: &TokenFile, secret: &str) -> Option<Identity> {
    let presented = hash_secret(secret);
    let mut found = None;
    for t in &file.tokens {
        if bool::from(t.sha256.as_bytes().ct_eq(presented.as_bytes())) {
            found = Some(Identity {
                name: t.name.clone(),
                role: t.role,
            });
        }
    }
    found
}

/// The server's live token set: either open (no tokens configured: everyone
/// is an operator) or a set of hashed tokens, reloaded from its file when the
/// file changes, so `leasehold token revoke` takes effect without a restart.
#[derive(Debug)]
pub struct TokenStore {
    path: Option<PathBuf>,
    state: RwLock<Loaded>,
    open: bool,
}

#[derive(Debug, Default)]
struct Loaded {
    file: TokenFile,
    stamp: Option<(SystemTime, u64)>,
}

impl TokenStore {
    /// No tokens configured: every request is allowed as operator.
    pub fn open() -> TokenStore {
        TokenStore {
            path: None,
            state: RwLock::new(Loaded::default()),
            open: true,
        }
    }

    /// Tokens held in memory only (tests); deny by default.
    pub fn in_memory(file: TokenFile) -> TokenStore {
        TokenStore {
            path: None,
            state: RwLock::new(Loaded { file, stamp: None }),
            open: false,
        }
    }

    /// Tokens from a file; the file must exist and parse.
    pub fn from_file(path: &Path) -> Result<TokenStore, TokenError> {
        if !path.exists() {
            return Err(TokenError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file; create one with `leasehold token create --tokens FILE --name NAME --role ROLE`",
                ),
            });
        }
        let store = TokenStore {
            path: Some(path.to_path_buf()),
            state: RwLock::new(Loaded::default()),
            open: false,
        };
        store.reload()?;
        Ok(store)
    }

    /// Whether no tokens are configured (everyone is an operator).
    pub fn is_open(&self) -> bool {
        self.open
    }

    fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(path).ok()?;
        Some((m.modified().ok()?, m.len()))
    }

    /// Re-read the file if it changed since the last read.
    pub fn reload(&self) -> Result<(), TokenError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let stamp = Self::stamp(path);
        {
            let loaded = self.state.read().expect("token lock");
            if loaded.stamp.is_some() && loaded.stamp == stamp {
                return Ok(());
            }
        }
        let file = read_file(path)?;
        let mut loaded = self.state.write().expect("token lock");
        loaded.file = file;
        loaded.stamp = stamp;
        Ok(())
    }

    /// Verify a presented secret. A file that fails to reload keeps the last
    /// good set (and the failure is logged), so a half-written edit never opens the server.
    pub fn verify(&self, secret: &str) -> Option<Identity> {
        if let Err(e) = self.reload() {
            tracing::warn!(error = %e, "token file reload failed; keeping the previous tokens");
        }
        let loaded = self.state.read().expect("token lock");
        verify(&loaded.file, secret)
    }

    /// Add a token (in memory, and in the file if there is one); returns the secret.
    pub fn add(&self, name: &str, role: Role) -> Result<CreatedToken, TokenError> {
        if let Some(path) = &self.path {
            let created = create_token(path, name, role)?;
            self.reload()?;
            return Ok(created);
        }
        let mut loaded = self.state.write().expect("token lock");
        add_token(&mut loaded.file, name, role, Timestamp::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_high_entropy_and_distinct() {
        let a = generate_secret();
        let b = generate_secret();
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(a.len(), 3 + 64);
        assert_ne!(a, b);
    }

    #[test]
    fn verify_matches_only_the_right_secret() {
        let mut file = TokenFile::default();
        let w = add_token(&mut file, "w1", Role::Worker, Timestamp::EPOCH).unwrap();
        let o = add_token(&mut file, "op", Role::Operator, Timestamp::EPOCH).unwrap();
        assert_eq!(verify(&file, &w.secret).unwrap().name, "w1");
        assert_eq!(verify(&file, &o.secret).unwrap().role, Role::Operator);
        assert!(verify(&file, "lh_nope").is_none());
        assert!(verify(&file, "").is_none());
        // The file holds hashes, never secrets.
        let text = serde_json::to_string(&file).unwrap();
        assert!(!text.contains(&w.secret));
    }

    #[test]
    fn duplicate_and_bad_names_are_rejected() {
        let mut file = TokenFile::default();
        add_token(&mut file, "w1", Role::Worker, Timestamp::EPOCH).unwrap();
        assert!(add_token(&mut file, "w1", Role::Reader, Timestamp::EPOCH).is_err());
        assert!(add_token(&mut file, "", Role::Reader, Timestamp::EPOCH).is_err());
        assert!(add_token(&mut file, "a b", Role::Reader, Timestamp::EPOCH).is_err());
        assert_eq!(file.tokens.len(), 1);
    }

    #[test]
    fn create_list_revoke_round_trip_through_a_file() {
        let dir = std::env::temp_dir().join(format!("lh-tokens-{}", generate_secret()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.json");
        let created = create_token(&path, "w1", Role::Worker).unwrap();
        create_token(&path, "r1", Role::Reader).unwrap();
        let names: Vec<_> = list_tokens(&path)
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["w1", "r1"]);
        let store = TokenStore::from_file(&path).unwrap();
        assert_eq!(store.verify(&created.secret).unwrap().name, "w1");
        revoke_token(&path, "w1").unwrap();
        assert!(revoke_token(&path, "w1").is_err());
        // Force a visible change even on coarse mtime filesystems: length differs.
        assert!(
            store.verify(&created.secret).is_none(),
            "revocation takes effect without restart"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
