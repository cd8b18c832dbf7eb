//! Roles, authenticated users and the configuration entry a user is built from.

use std::fmt;

use serde::Deserialize;

/// What a user may do. `Admin` implies every other role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Run queries.
    Read,
    /// Ingest samples.
    Write,
    /// Administrative operations (flush, compaction, deletion, cluster changes).
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        })
    }
}

/// A user whose password has been verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The login name.
    pub username: String,
    /// The roles granted by configuration.
    pub roles: Vec<Role>,
}

impl User {
    /// Whether the user holds `role`, directly or through `Admin`.
    pub fn can(&self, role: Role) -> bool {
        self.roles.iter().any(|&r| r == role || r == Role::Admin)
    }
}

/// The roles a configured user gets when the entry names none. Seed 000's configuration
/// lists users without roles and expects them to ingest, so the default is read and write
/// (but not admin).
fn default_roles() -> Vec<Role> {
    vec![Role::Read, Role::Write]
}

/// One user as written in configuration (`auth.users[]` or a users file).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// The login name; must not be empty.
    pub username: String,
    /// A bcrypt hash with prefix `$2a$`, `$2b$` or `$2y$`.
    pub password_hash: String,
    /// Granted roles; `[read, write]` when omitted.
    #[serde(default = "default_roles")]
    pub roles: Vec<Role>,
}

/// Hand-written so that the hash never reaches a log line through `{:?}`.
impl fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserEntry")
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .field("roles", &self.roles)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_implies_every_role() {
        let admin = User {
            username: "a".into(),
            roles: vec![Role::Admin],
        };
        assert!(admin.can(Role::Read) && admin.can(Role::Write) && admin.can(Role::Admin));
        let reader = User {
            username: "r".into(),
            roles: vec![Role::Read],
        };
        assert!(reader.can(Role::Read));
        assert!(!reader.can(Role::Write));
        assert!(!reader.can(Role::Admin));
    }

    #[test]
    fn debug_redacts_the_hash() {
        let e = UserEntry {
            username: "u".into(),
            password_hash: "$2b$04$secretsecretsecretsecre".into(),
            roles: default_roles(),
        };
        let s = format!("{e:?}");
        assert!(!s.contains("secret"), "{s}");
        assert!(s.contains("<redacted>"));
    }
}
