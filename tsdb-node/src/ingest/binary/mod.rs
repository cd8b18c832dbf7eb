//! The binary ZTSD protocol (seed 004) on port 9876: insert, batch insert, query and ping over
//! fixed-header little-endian frames.
//!
//! - [`frame`]: bytes ⇄ [`Frame`] (pure, typed errors, lengths capped before allocation);
//! - [`connection`]: whole frames on a stream, with timeouts;
//! - [`handler`]: what a request does (storage through the [`IngestSink`]);
//! - [`server`]: the accept loop, connection limit and graceful shutdown.
//!
//! On a frame whose header cannot be trusted (bad magic, version, or a length over the cap)
//! the server replies with an error frame and closes the connection: the stream is no longer
//! aligned on frame boundaries. A well-framed but invalid message (unknown type, wrong payload
//! length) gets an error reply and the connection stays usable.

use std::time::Duration;

use crate::ingest::IngestSink;

pub mod connection;
pub mod frame;
pub mod handler;
pub mod server;

pub use connection::{Connection, ConnectionError, ConnectionLimits};
pub use frame::{DataPoint, Frame, FrameError, MsgType, QueryRange};
pub use handler::{series_labels, Handler, SERIES_ID_LABEL, SERIES_METRIC};
pub use server::serve;

/// Settings of the binary server (config section `binary`).
#[derive(Clone, Debug)]
pub struct BinaryConfig {
    /// Open connections at most; further clients get an error frame and are closed.
    pub max_connections: usize,
    /// Largest request payload accepted, in bytes.
    pub max_payload: u32,
    /// Most points one query reply may carry.
    pub max_reply_points: usize,
    /// How long a client may stay silent between requests.
    pub idle_timeout: Duration,
    /// How long the rest of a frame may take once it started.
    pub read_timeout: Duration,
    /// How long a reply may take to be written (a client that does not read is dropped).
    pub write_timeout: Duration,
}

impl Default for BinaryConfig {
    fn default() -> Self {
        BinaryConfig {
            max_connections: 1024,
            max_payload: frame::DEFAULT_MAX_PAYLOAD,
            max_reply_points: frame::DEFAULT_MAX_PAYLOAD as usize / frame::POINT_LEN,
            idle_timeout: Duration::from_secs(300),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
        }
    }
}

impl BinaryConfig {
    /// The per-connection read limits.
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_payload: self.max_payload,
            idle_timeout: self.idle_timeout,
            read_timeout: self.read_timeout,
        }
    }
}

/// What the server needs: where samples go and its settings.
#[derive(Clone)]
pub struct BinaryContext {
    pub sink: IngestSink,
    pub config: BinaryConfig,
    /// When set, every connection is TLS (`tls.cert_file`/`tls.key_file`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}
