//! The accept loop: connection limit, per-connection tasks and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::handler::Handler;
use super::TcpJsonContext;

/// Sent, best effort, to a connection refused because the server is full.
const TOO_MANY_CONNECTIONS: &[u8] =
    b"{\"status\":\"error\",\"message\":\"too many connections\"}\n";

/// Pause after a failed `accept` (typically out of file descriptors), so that the loop does
/// not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the protocol on `listener` until `shutdown` completes. Then it stops accepting,
/// lets every connection finish the batch it is writing (so that everything stored is also
/// acknowledged), closes the connections and returns once all have ended.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<TcpJsonContext>,
    shutdown: impl Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(ctx.options.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, tls = ctx.tls.is_some(), "TCP JSON ingest listening");
    }
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => report_panic(done),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match Arc::clone(&limit).try_acquire_owned() {
                    Ok(permit) => {
                        let task = connection(stream, peer, Arc::clone(&ctx), stop_rx.clone(), permit);
                        tasks.spawn(task);
                    }
                    Err(_) => {
                        tracing::warn!(%peer, max = ctx.options.max_connections, "connection refused: limit reached");
                        // Best effort and non-blocking: a full server must not wait on a
                        // client it is turning away.
                        let _ = stream.try_write(TOO_MANY_CONNECTIONS);
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    tracing::info!(connections = tasks.len(), "TCP JSON ingest shutting down");
    // The receivers see `true` once they are waiting for input again, i.e. after the batch
    // in flight has been acknowledged.
    let _ = stop_tx.send(true);
    while let Some(done) = tasks.join_next().await {
        report_panic(done);
    }
}

fn report_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "TCP JSON connection task panicked");
        }
    }
}

/// One connection's task: optional TLS handshake, then the protocol.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<TcpJsonContext>,
    stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    // Replies are small and latency matters to clients that wait for each ack.
    let _ = stream.set_nodelay(true);
    tracing::debug!(%peer, "connection accepted");
    match ctx.tls.clone() {
        None => run(stream, peer, ctx, stop).await,
        Some(acceptor) => {
            match tokio::time::timeout(ctx.options.auth_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => run(tls, peer, ctx, stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<TcpJsonContext>,
    stop: watch::Receiver<bool>,
) {
    match Handler::new(stream, peer, ctx, stop).run().await {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(e) => tracing::debug!(%peer, error = %e, "connection ended"),
    }
}
