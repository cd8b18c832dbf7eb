//! The user database: configured users and bcrypt password verification.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::user::{Role, User, UserEntry};

/// Highest bcrypt cost accepted in configuration. Every step doubles the work: cost 16 already
/// takes seconds per attempt, and a higher cost would let a handful of login attempts occupy
/// the blocking thread pool for minutes.
const MAX_COST: u32 = 16;

/// Cost of the dummy hash when no user is configured.
const DEFAULT_DUMMY_COST: u32 = 10;

/// Why a user could not be authenticated or the user database could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown user or wrong password. Deliberately one variant, so that replies and logs
    /// cannot reveal which usernames exist.
    #[error("Invalid credentials")]
    InvalidCredentials,
    /// A configured entry is unusable.
    #[error("user {username:?}: {reason}")]
    InvalidEntry {
        /// The offending user.
        username: String,
        /// What is wrong with the entry (never contains the hash).
        reason: String,
    },
    /// The same username is configured twice.
    #[error("user {0:?} is configured more than once")]
    DuplicateUser(String),
    /// The users file could not be read.
    #[error("cannot read users file {path}: {source}")]
    Io {
        /// The users file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The users file is not a YAML list of user entries.
    #[error("users file {path} is not a valid YAML list of users: {source}")]
    Yaml {
        /// The users file (`<inline>` for a string).
        path: PathBuf,
        /// The parser's error.
        source: serde_yaml::Error,
    },
    /// bcrypt itself failed, or the verification task was lost.
    #[error("password verification failed: {0}")]
    Internal(String),
}

struct StoredUser {
    hash: String,
    roles: Vec<Role>,
}

/// Configured users, keyed by username. Cheap to share behind an `Arc`.
pub struct UserDb {
    users: HashMap<String, StoredUser>,
    /// Verified against for unknown usernames, so that a miss costs as much time as a wrong
    /// password and response timing does not reveal which usernames exist.
    dummy_hash: String,
}

impl std::fmt::Debug for UserDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.users.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("UserDb").field("users", &names).finish()
    }
}

/// A users file is either a bare list of entries or `users: [...]`, so that the `auth`
/// section of `config.yaml` can also be used as a users file.
#[derive(Deserialize)]
#[serde(untagged)]
enum UsersFile {
    List(Vec<UserEntry>),
    Section { users: Vec<UserEntry> },
}

impl UserDb {
    /// Builds the database, checking every hash's format and cost. Computes one bcrypt hash
    /// (the dummy for unknown users) at the highest configured cost, so this blocks briefly.
    pub fn new(entries: Vec<UserEntry>) -> Result<UserDb, AuthError> {
        let mut users = HashMap::with_capacity(entries.len());
        let mut max_cost = None;
        for e in entries {
            let cost = check_entry(&e)?;
            max_cost = Some(max_cost.map_or(cost, |c: u32| c.max(cost)));
            if users.contains_key(&e.username) {
                return Err(AuthError::DuplicateUser(e.username));
            }
            users.insert(
                e.username,
                StoredUser {
                    hash: e.password_hash,
                    roles: e.roles,
                },
            );
        }
        let dummy_hash = bcrypt::hash(dummy_password(), max_cost.unwrap_or(DEFAULT_DUMMY_COST))
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        Ok(UserDb { users, dummy_hash })
    }

    /// Parses a YAML users file's contents: a list of entries, or `users:` with a list.
    pub fn from_yaml_str(yaml: &str) -> Result<UserDb, AuthError> {
        Self::from_yaml(yaml, Path::new("<inline>"))
    }

    /// Reads a YAML users file (see [`UserDb::from_yaml_str`]).
    pub fn load_file(path: &Path) -> Result<UserDb, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    fn from_yaml(yaml: &str, path: &Path) -> Result<UserDb, AuthError> {
        let file: UsersFile = serde_yaml::from_str(yaml).map_err(|source| AuthError::Yaml {
            path: path.to_path_buf(),
            source,
        })?;
        Self::new(match file {
            UsersFile::List(v) | UsersFile::Section { users: v } => v,
        })
    }

    /// Number of configured users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user is configured (then nobody can authenticate).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks a password. Blocks for one bcrypt computation whether or not the user exists
    /// (the comparison inside `bcrypt::verify` is constant-time). Passwords longer than 72
    /// bytes are truncated, as every bcrypt implementation that produced the hash did.
    pub fn verify(&self, username: &str, password: &[u8]) -> Result<User, AuthError> {
        match self.users.get(username) {
            Some(stored) => match bcrypt::verify(password, &stored.hash) {
                Ok(true) => Ok(User {
                    username: username.to_string(),
                    roles: stored.roles.clone(),
                }),
                Ok(false) => Err(AuthError::InvalidCredentials),
                Err(e) => Err(AuthError::Internal(e.to_string())),
            },
            None => {
                // black_box keeps the optimiser from discarding the work whose only purpose
                // is to take time.
                std::hint::black_box(bcrypt::verify(password, &self.dummy_hash).ok());
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    /// [`UserDb::verify`] on tokio's blocking pool, so that bcrypt does not stall the
    /// runtime's worker threads.
    pub async fn verify_async(
        self: &Arc<Self>,
        username: String,
        password: String,
    ) -> Result<User, AuthError> {
        let db = Arc::clone(self);
        tokio::task::spawn_blocking(move || db.verify(&username, password.as_bytes()))
            .await
            .map_err(|e| AuthError::Internal(format!("verification task failed: {e}")))?
    }
}

/// Validates one entry and returns its bcrypt cost.
fn check_entry(e: &UserEntry) -> Result<u32, AuthError> {
    let invalid = |reason: &str| AuthError::InvalidEntry {
        username: e.username.clone(),
        reason: reason.to_string(),
    };
    if e.username.is_empty() {
        return Err(invalid("username must not be empty"));
    }
    let h = e.password_hash.as_str();
    if !(h.starts_with("$2a$") || h.starts_with("$2b$") || h.starts_with("$2y$")) {
        return Err(invalid(
            "password_hash must be a bcrypt hash starting with $2a$, $2b$ or $2y$",
        ));
    }
    let parts: bcrypt::HashParts = h
        .parse()
        .map_err(|_| invalid("password_hash is not a well-formed bcrypt hash"))?;
    let cost = parts.get_cost();
    if cost > MAX_COST {
        return Err(invalid(&format!(
            "bcrypt cost {cost} is above the supported maximum of {MAX_COST}"
        )));
    }
    Ok(cost)
}

/// A fresh random password for the dummy hash: nobody can know it, so the dummy never
/// matches.
fn dummy_password() -> [u8; 32] {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, password: &str, roles: Vec<Role>) -> UserEntry {
        UserEntry {
            username: name.into(),
            password_hash: bcrypt::hash(password, 4).unwrap(),
            roles,
        }
    }

    #[test]
    fn verifies_known_users_only() {
        let db = UserDb::new(vec![entry("alice", "pw", vec![Role::Write])]).unwrap();
        let u = db.verify("alice", b"pw").unwrap();
        assert_eq!(u.username, "alice");
        assert!(u.can(Role::Write));
        assert!(matches!(
            db.verify("alice", b"nope"),
            Err(AuthError::InvalidCredentials)
        ));
        assert!(matches!(
            db.verify("bob", b"pw"),
            Err(AuthError::InvalidCredentials)
        ));
    }

    #[test]
    fn accepts_2a_and_2y_prefixes() {
        let h = bcrypt::hash("pw", 4).unwrap();
        for prefix in ["$2a$", "$2y$"] {
            let e = UserEntry {
                username: "u".into(),
                password_hash: format!("{prefix}{}", &h[4..]),
                roles: vec![Role::Read],
            };
            let db = UserDb::new(vec![e]).unwrap();
            assert!(db.verify("u", b"pw").is_ok(), "{prefix}");
        }
    }

    #[test]
    fn rejects_bad_entries() {
        let bad = UserEntry {
            username: "u".into(),
            password_hash: "plaintext".into(),
            roles: vec![],
        };
        let err = UserDb::new(vec![bad]).unwrap_err().to_string();
        assert!(err.contains("bcrypt"), "{err}");
        assert!(
            !err.contains("plaintext"),
            "the hash must not be echoed: {err}"
        );
        let dup = vec![entry("u", "a", vec![]), entry("u", "b", vec![])];
        assert!(matches!(UserDb::new(dup), Err(AuthError::DuplicateUser(_))));
        let empty = entry("", "a", vec![]);
        assert!(UserDb::new(vec![empty]).is_err());
        let costly = UserEntry {
            username: "u".into(),
            password_hash: format!("$2b$17${}", &bcrypt::hash("pw", 4).unwrap()[7..]),
            roles: vec![],
        };
        assert!(UserDb::new(vec![costly]).is_err());
    }

    #[test]
    fn parses_yaml_list_and_section() {
        let h = bcrypt::hash("pw", 4).unwrap();
        let list = format!("- username: a\n  password_hash: \"{h}\"\n  roles: [read]\n");
        let db = UserDb::from_yaml_str(&list).unwrap();
        assert_eq!(db.len(), 1);
        assert!(!db.verify("a", b"pw").unwrap().can(Role::Write));
        let section = format!("users:\n  - username: b\n    password_hash: '{h}'\n");
        let db = UserDb::from_yaml_str(&section).unwrap();
        let u = db.verify("b", b"pw").unwrap();
        assert!(u.can(Role::Read) && u.can(Role::Write) && !u.can(Role::Admin));
        assert!(UserDb::from_yaml_str("- username: x\n  roles: [root]\n").is_err());
    }

    #[test]
    fn load_file_reports_the_path() {
        let err = UserDb::load_file(Path::new("/nonexistent/users.yaml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/users.yaml"));
    }

    #[tokio::test]
    async fn verify_async_runs_off_the_runtime() {
        let db = Arc::new(UserDb::new(vec![entry("a", "pw", vec![Role::Write])]).unwrap());
        assert!(db.verify_async("a".into(), "pw".into()).await.is_ok());
        assert!(db.verify_async("a".into(), "x".into()).await.is_err());
    }
}
