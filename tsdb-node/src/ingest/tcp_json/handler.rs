//! One connection's state machine: unauthenticated → authenticated (data) → closed.
//!
//! Before authentication frames are handled one at a time (each auth attempt costs a bcrypt
//! computation, so there is nothing to batch). After it, every complete frame already
//! buffered (up to `max_batch`) is parsed, the data frames among them are written to the
//! sink as one batch, and only when that write returned — the samples are durable — is one
//! reply per frame sent, in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::connection::{Connection, Fill, Line};
use super::frame::{Frame, FrameError};
use super::reply::Reply;
use super::TcpJsonContext;
use crate::auth::{AuthError, Role, User};
use crate::storage::{LabelSets, Labels, Rejection, Sample};

/// Failed logins on one connection before it is closed, independent of the per-address
/// throttle: a client that got its password wrong three times is not going to recover.
const MAX_AUTH_FAILURES_PER_CONNECTION: u32 = 3;

/// Frames other than `auth` accepted (and refused) before authentication; after that the
/// client is evidently not speaking this protocol and is disconnected.
const MAX_FRAMES_BEFORE_AUTH: u32 = 10;

/// Characters of a client-supplied username that reach the log.
const MAX_LOGGED_NAME_CHARS: usize = 64;

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Reading from or writing to the client failed.
    #[error("connection I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The client did not take its replies within the idle timeout.
    #[error("client did not read its replies within {0:?}")]
    WriteTimeout(Duration),
}

enum Flow {
    Continue,
    Close,
}

/// Per-connection state. Generic over the stream so that TLS and plain TCP share it.
pub(crate) struct Handler<S> {
    conn: Connection<S>,
    ctx: Arc<TcpJsonContext>,
    peer: SocketAddr,
    user: Option<User>,
    auth_failures: u32,
    frames_before_auth: u32,
    shutdown: watch::Receiver<bool>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Handler<S> {
    pub(crate) fn new(
        stream: S,
        peer: SocketAddr,
        ctx: Arc<TcpJsonContext>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Handler {
            conn: Connection::new(stream, ctx.options.max_frame_bytes),
            ctx,
            peer,
            user: None,
            auth_failures: 0,
            frames_before_auth: 0,
            shutdown,
        }
    }

    /// Serves the connection until the client closes it, sends `close`, times out, breaks
    /// the protocol too often, or the server shuts down. A batch being written when shutdown
    /// starts is finished and acknowledged first: shutdown is only observed while waiting
    /// for input.
    pub(crate) async fn run(mut self) -> Result<(), HandlerError> {
        loop {
            if let Flow::Close = self.process_buffered().await? {
                return Ok(());
            }
            let timeout = if self.user.is_some() {
                self.ctx.options.idle_timeout
            } else {
                self.ctx.options.auth_timeout
            };
            let filled = tokio::select! {
                biased;
                // An error means the server dropped its sender: shutting down as well.
                _ = self.shutdown.wait_for(|&stop| stop) => {
                    tracing::debug!(peer = %self.peer, "closing connection for shutdown");
                    return Ok(());
                }
                r = tokio::time::timeout(timeout, self.conn.fill()) => r,
            };
            match filled {
                Err(_) => {
                    tracing::debug!(peer = %self.peer, ?timeout, "closing idle connection");
                    let what = if self.user.is_some() {
                        "idle"
                    } else {
                        "unauthenticated"
                    };
                    self.conn.queue(&Reply::error(format!(
                        "connection {what} for {} s; closing",
                        timeout.as_secs()
                    )));
                    return self.flush().await;
                }
                Ok(Ok(Fill::Data)) => {}
                Ok(Ok(Fill::Eof)) => {
                    // Frames that arrived before the client's FIN are still answered.
                    self.process_buffered().await?;
                    return Ok(());
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Handles every complete frame in the buffer.
    async fn process_buffered(&mut self) -> Result<Flow, HandlerError> {
        loop {
            let flow = if self.user.is_some() {
                match self.process_batch().await? {
                    None => return Ok(Flow::Continue),
                    Some(flow) => flow,
                }
            } else {
                let limit = self.ctx.options.max_frame_bytes;
                let frame = match self.conn.next_line() {
                    None => return Ok(Flow::Continue),
                    Some(line) => parse(line, limit),
                };
                self.handle_unauthenticated(frame).await?
            };
            if let Flow::Close = flow {
                return Ok(Flow::Close);
            }
        }
    }

    async fn handle_unauthenticated(
        &mut self,
        frame: Result<Frame, FrameError>,
    ) -> Result<Flow, HandlerError> {
        let flow = match frame {
            Ok(Frame::Auth { username, password }) => {
                self.authenticate(username, password.into_inner()).await
            }
            Ok(Frame::Close) => {
                self.conn.queue(&Reply::Ok);
                Flow::Close
            }
            Ok(Frame::Data(_)) => self.refuse_before_auth(Reply::error(
                "Not authenticated: send {\"type\":\"auth\",\"username\":...,\"password\":...} first",
            )),
            Err(e) => self.refuse_before_auth(Reply::error(e.to_string())),
        };
        self.flush().await?;
        Ok(flow)
    }

    fn refuse_before_auth(&mut self, reply: Reply) -> Flow {
        self.conn.queue(&reply);
        self.frames_before_auth += 1;
        if self.frames_before_auth >= MAX_FRAMES_BEFORE_AUTH {
            self.conn.queue(&Reply::error(
                "too many frames before authentication; closing",
            ));
            return Flow::Close;
        }
        Flow::Continue
    }

    async fn authenticate(&mut self, username: String, password: String) -> Flow {
        let ip = self.peer.ip();
        let throttle = &self.ctx.throttle;
        if let Err(retry_after) = throttle.check(ip, Instant::now()) {
            self.conn.queue(&throttled(retry_after));
            return Flow::Close;
        }
        match self
            .ctx
            .users
            .verify_async(username.clone(), password)
            .await
        {
            Ok(user) if user.can(Role::Write) => {
                throttle.record_success(ip);
                tracing::info!(peer = %self.peer, user = ?user.username, "client authenticated");
                self.user = Some(user);
                self.conn.queue(&Reply::Ok);
                Flow::Continue
            }
            Ok(user) => {
                tracing::info!(peer = %self.peer, user = ?user.username, "login without write role refused");
                self.conn.queue(&Reply::error(format!(
                    "Permission denied: user {:?} may not write",
                    user.username
                )));
                // Counted like a failure, so that one connection cannot keep the blocking
                // pool busy with bcrypt by repeating a valid but useless login.
                self.auth_failures += 1;
                if self.auth_failures >= MAX_AUTH_FAILURES_PER_CONNECTION {
                    Flow::Close
                } else {
                    Flow::Continue
                }
            }
            Err(AuthError::InvalidCredentials) => {
                self.auth_failures += 1;
                // The username is logged so that operators can spot a misconfigured client;
                // the password never is. It is client input: shortened, and escaped by `?`.
                let shown: String = username.chars().take(MAX_LOGGED_NAME_CHARS).collect();
                tracing::info!(peer = %self.peer, user = ?shown, "failed login");
                self.conn.queue(&Reply::error("Invalid credentials"));
                match throttle.record_failure(ip, Instant::now()) {
                    Err(lockout) => {
                        self.conn.queue(&throttled(lockout));
                        Flow::Close
                    }
                    Ok(()) if self.auth_failures >= MAX_AUTH_FAILURES_PER_CONNECTION => Flow::Close,
                    Ok(()) => Flow::Continue,
                }
            }
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "authentication failed internally");
                self.conn
                    .queue(&Reply::error("internal error during authentication"));
                Flow::Continue
            }
        }
    }

    /// Parses up to `max_batch` buffered frames, stores their samples as one batch and
    /// queues and sends one reply per frame. `None` when nothing was buffered.
    async fn process_batch(&mut self) -> Result<Option<Flow>, HandlerError> {
        let max_batch = self.ctx.options.max_batch.max(1);
        let limit = self.ctx.options.max_frame_bytes;
        let mut slots: Vec<Slot> = Vec::new();
        let mut batch: Vec<(Labels, Sample)> = Vec::new();
        let mut close = false;
        while slots.len() < max_batch {
            let Some(line) = self.conn.next_line() else {
                break;
            };
            match parse(line, limit) {
                Ok(Frame::Data(d)) => {
                    slots.push(Slot::Sample(batch.len()));
                    batch.push((d.labels, d.sample));
                }
                Ok(Frame::Close) => {
                    close = true;
                    break;
                }
                Ok(Frame::Auth { .. }) => {
                    slots.push(Slot::Refused(Reply::error("already authenticated")))
                }
                Err(e) => slots.push(Slot::Refused(Reply::error(e.to_string()))),
            }
        }
        if slots.is_empty() && !close {
            return Ok(None);
        }
        let outcome = self.store(batch).await;
        for slot in slots {
            let reply = match slot {
                Slot::Refused(reply) => reply,
                Slot::Sample(i) => match &outcome {
                    Ok(rejected) => match rejected.get(i) {
                        Some(Some(why)) => Reply::error(why.to_string()),
                        _ => Reply::Ok,
                    },
                    Err(message) => Reply::error(message.clone()),
                },
            };
            self.conn.queue(&reply);
        }
        if close {
            self.conn.queue(&Reply::Ok);
        }
        self.flush().await?;
        Ok(Some(if close { Flow::Close } else { Flow::Continue }))
    }

    /// Writes a batch; on success, the rejection (if any) of each sample by batch index.
    async fn store(&self, batch: Vec<(Labels, Sample)>) -> Result<Vec<Option<Rejection>>, String> {
        let n = batch.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        // Each frame's label set is built anew (no label cache here).
        match self.ctx.sink.write(batch, LabelSets::PerBatch).await {
            Ok(outcome) => {
                let mut rejected = vec![None; n];
                for (i, why) in outcome.rejected {
                    if let Some(slot) = rejected.get_mut(i) {
                        *slot = Some(why);
                    }
                }
                Ok(rejected)
            }
            Err(e) => {
                tracing::error!(peer = %self.peer, samples = n, error = %e, "storing a batch failed");
                Err(format!("storage error, samples not stored: {e}"))
            }
        }
    }

    async fn flush(&mut self) -> Result<(), HandlerError> {
        let limit = self.ctx.options.idle_timeout;
        match tokio::time::timeout(limit, self.conn.flush()).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(HandlerError::WriteTimeout(limit)),
        }
    }
}

/// What a frame of a batch gets as its reply.
enum Slot {
    /// The sample at this batch index: `ok` once stored, or why it was refused.
    Sample(usize),
    /// Refused before storage (parse error, misplaced frame).
    Refused(Reply),
}

fn parse(line: Line<'_>, limit: usize) -> Result<Frame, FrameError> {
    match line {
        Line::Frame(bytes) => Frame::parse(bytes),
        Line::Oversized => Err(FrameError::TooLarge { limit }),
    }
}

fn throttled(retry_after: Duration) -> Reply {
    Reply::error(format!(
        "Too many failed login attempts from this address; retry in {} s",
        retry_after.as_secs().max(1)
    ))
}
