//! Seed 000's TCP ingest protocol (default port 5433): newline-delimited JSON frames,
//! authenticated with bcrypt, optionally over TLS.
//!
//! # Protocol
//!
//! Every client frame and every server reply is one JSON object followed by `\n` (a `\r`
//! before it is tolerated; blank lines are ignored; unknown fields are ignored).
//!
//! | client frame | meaning |
//! |---|---|
//! | `{"type":"auth","username":"u","password":"p"}` | log in; must come first |
//! | `{"type":"data","metric":"temperature","timestamp":"2025-06-25T14:12:03Z","value":23.7,"tags":{"location":"room-1"}}` | one sample |
//! | `{"type":"close"}` | end the session |
//!
//! A data frame is stored as series `metric{tags...}` (`temperature{location="room-1"}`).
//! Tag values must be strings; an empty tag value means "no such tag" (as in Prometheus);
//! a tag named `__name__` is refused. Metric and tag names must satisfy the engine's naming
//! rules and limits, whose message is sent back on violation.
//!
//! **Timestamps** are accepted as an RFC 3339 string with any UTC offset and any fraction
//! (truncated to milliseconds), or as a JSON integer of **milliseconds** since the epoch.
//! Integers are never guessed to be seconds: send seconds as RFC 3339 or multiply them.
//! Accepted range: years 0001 to 9999.
//!
//! **Values** are JSON numbers, or the strings `"NaN"`, `"+Inf"` (or `"Inf"`) and `"-Inf"`,
//! which JSON cannot express as numbers.
//!
//! # Replies and acknowledgements
//!
//! **Every client frame gets exactly one reply line, in the order the frames were sent**:
//! `{"status":"ok"}` or `{"status":"error","message":"..."}`. A pipelining client therefore
//! matches replies to frames by counting, and a client that sends one frame and waits for
//! its reply (seed 000's) works unchanged. Nothing is acknowledged before it is durable:
//!
//! - `auth` → `ok`, or `error` with message `Invalid credentials` (unknown user and wrong
//!   password are indistinguishable, in message and in timing). A user without the `write`
//!   role gets `Permission denied: ...` (counted as a failed login for the connection, not
//!   for the address throttle).
//! - `data` → `ok` only after the sample is durable in the WAL. Internally the server
//!   batches: every complete frame already received (up to `max_batch`) is parsed, the
//!   samples are written as one batch with one WAL sync, and then the replies of the whole
//!   batch are sent together. A refused sample (invalid name, older than the out-of-order
//!   window, series limit) gets an `error` with the engine's reason while the other frames
//!   of its batch are stored; if storage itself fails, every data frame of the batch gets
//!   an `error` starting with `storage error` and nothing of it was stored.
//! - `close` → `ok` after the replies of every earlier frame, then the server closes.
//!
//! # Errors, limits and timeouts
//!
//! - A malformed frame (bad JSON, missing field, bad timestamp or value) gets an `error`
//!   naming the problem; the connection stays usable.
//! - A line longer than `max_frame_bytes` (default 1 MiB) gets `frame too large: ...`. It
//!   is never buffered: the server drops input up to the next newline and then continues.
//! - Before authentication, any frame but `auth` or `close` gets an `error`
//!   (`Not authenticated: ...`) and the connection stays open; after 10 such frames, or 3
//!   failed logins, the server replies with a final `error` and closes.
//! - Failed logins are also counted per client address ([`crate::auth::FailureThrottle`]):
//!   when locked out, an `auth` gets `Too many failed login attempts ...; retry in N s` and
//!   the connection is closed without checking the password.
//! - A second `auth` after a successful one gets `error` (`already authenticated`).
//! - A connection that sends nothing for `idle_timeout` (default 5 min), or does not
//!   authenticate within `auth_timeout` (default 30 s), gets a final `error` and is closed.
//!   A client that does not read its replies for `idle_timeout` is disconnected.
//! - At most `max_connections` (default 1024) connections are served at once; further
//!   ones get `{"status":"error","message":"too many connections"}` and are closed.
//! - On shutdown the listener stops accepting; every connection finishes the batch it is
//!   writing, sends those replies and is closed. Frames received but not yet part of a batch
//!   get no reply and were not stored: a client resends whatever was not acknowledged.
//!
//! # Structure
//!
//! [`frame`] parses one line (pure), [`connection`] splits the byte stream into capped lines
//! and writes replies, `handler` runs one connection's state machine, [`server`] accepts
//! connections and shuts down gracefully, [`tls`] loads certificates.

pub mod connection;
pub mod frame;
mod handler;
pub mod reply;
pub mod server;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;

use crate::auth::{FailureThrottle, UserDb};
use crate::ingest::IngestSink;

pub use frame::{DataPoint, Frame, FrameError};
pub use handler::HandlerError;
pub use server::serve;

/// Default TCP port of this protocol (seed 000).
pub const DEFAULT_PORT: u16 = 5433;

/// Limits and timeouts of the TCP JSON listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpJsonOptions {
    /// Longest accepted line in bytes, newline excluded. Longer lines are discarded unread.
    pub max_frame_bytes: usize,
    /// An authenticated connection that sends nothing (or reads no replies) for this long
    /// is closed.
    pub idle_timeout: Duration,
    /// A connection must authenticate within this long (also bounds the TLS handshake).
    pub auth_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Most frames written to storage as one batch.
    pub max_batch: usize,
}

impl Default for TcpJsonOptions {
    fn default() -> Self {
        TcpJsonOptions {
            max_frame_bytes: 1024 * 1024,
            idle_timeout: Duration::from_secs(300),
            auth_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_batch: 4096,
        }
    }
}

/// Everything the listener's connections share.
pub struct TcpJsonContext {
    /// Where samples go.
    pub sink: IngestSink,
    /// Who may log in.
    pub users: Arc<UserDb>,
    /// Failed-login throttle; share it with other listeners so that an address is locked
    /// out everywhere.
    pub throttle: Arc<FailureThrottle>,
    /// Limits and timeouts.
    pub options: TcpJsonOptions,
    /// When set, every connection starts with a TLS handshake.
    pub tls: Option<TlsAcceptor>,
}

impl TcpJsonContext {
    /// A plain-TCP context.
    pub fn new(
        sink: IngestSink,
        users: Arc<UserDb>,
        throttle: Arc<FailureThrottle>,
        options: TcpJsonOptions,
    ) -> Self {
        TcpJsonContext {
            sink,
            users,
            throttle,
            options,
            tls: None,
        }
    }

    /// Requires TLS on every connection.
    pub fn with_tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }
}
