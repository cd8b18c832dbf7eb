//! Users, roles and password verification shared by every protocol that authenticates clients.
//!
//! Users come from configuration (`auth.users` in `config.yaml`, or a separate users file): a
//! username, a bcrypt hash (`$2a$`, `$2b$` or `$2y$`) and a list of roles. Plain-text passwords
//! never appear in configuration, and neither passwords nor hashes are ever logged or printed
//! by `Debug`.
//!
//! bcrypt is deliberately slow (cost 10 takes 50–100 ms), so [`UserDb::verify`] blocks; async
//! callers use [`UserDb::verify_async`], which runs it on tokio's blocking pool. Guessing is
//! further slowed by [`FailureThrottle`], which locks out an address after repeated failures.

mod db;
mod throttle;
mod user;

pub use db::{AuthError, UserDb};
pub use throttle::{FailureThrottle, ThrottleOptions};
pub use user::{Role, User, UserEntry};
