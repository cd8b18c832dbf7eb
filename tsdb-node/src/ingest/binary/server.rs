//! Accept loop of the ZTSD server: a connection limit, one task per connection, and a graceful
//! shutdown that stops accepting, lets each connection finish the request it is serving (so an
//! insert that is being made durable still gets its acknowledgement) and then closes it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::connection::{Connection, ConnectionError};
use super::frame::Frame;
use super::handler::Handler;
use super::{BinaryConfig, BinaryContext};

/// Serves ZTSD connections accepted on `listener` until `shutdown` completes, then waits for
/// the open connections to finish their current request and returns.
pub async fn serve(
    listener: TcpListener,
    ctx: BinaryContext,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let config = Arc::new(ctx.config);
    let tls = ctx.tls;
    let handler = Handler::new(ctx.sink, config.max_reply_points);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tracing::info!(addr = ?listener.local_addr().ok(), "binary ZTSD server listening");

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connections so the set does not grow with every client ever seen.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning; the listener is fine.
                        tracing::warn!(error = %e, "binary server accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let config = config.clone();
                let handler = handler.clone();
                let stop = stop_rx.clone();
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let tls = tls.clone();
                        connections.spawn(async move {
                            match tls {
                                None => run_connection(socket, peer, &config, &handler, stop).await,
                                Some(acceptor) => {
                                    // A client that stalls the handshake is cut off like one that stops reading.
                                    match tokio::time::timeout(config.write_timeout, acceptor.accept(socket)).await {
                                        Ok(Ok(s)) => run_connection(s, peer, &config, &handler, stop).await,
                                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "binary TLS handshake failed"),
                                        Err(_) => tracing::debug!(%peer, "binary TLS handshake timed out"),
                                    }
                                }
                            }
                            drop(permit);
                        });
                    }
                    Err(_) if tls.is_some() => {
                        // A plain-text refusal would be garbage to a TLS client: just close.
                        tracing::warn!(%peer, limit = config.max_connections, "binary connection refused: limit reached");
                        drop(socket);
                    }
                    Err(_) => {
                        // Refuse at once with a reason, rather than leaving the client waiting
                        // in the accept backlog with no way to tell why.
                        tracing::warn!(%peer, limit = config.max_connections, "binary connection refused: limit reached");
                        connections.spawn(async move {
                            let mut conn = Connection::new(socket, config.limits());
                            let msg = format!("too many connections (limit {})", config.max_connections);
                            let _ = tokio::time::timeout(config.write_timeout, conn.write_frame(&Frame::Error(msg))).await;
                        });
                    }
                }
            }
        }
    }

    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    tracing::info!("binary ZTSD server stopped");
    Ok(())
}

/// Serves one client until it closes, breaks the protocol, times out or the server stops.
async fn run_connection<S: AsyncRead + AsyncWrite + Unpin>(
    socket: S,
    peer: SocketAddr,
    config: &BinaryConfig,
    handler: &Handler,
    mut stop: watch::Receiver<bool>,
) {
    let mut conn = Connection::new(socket, config.limits());
    tracing::debug!(%peer, "binary connection opened");
    loop {
        // Only the read is raced against shutdown: a request already read is always answered.
        let read = tokio::select! {
            // Checked first so that a client sending without pause cannot delay shutdown.
            biased;
            _ = stop.wait_for(|s| *s) => break,
            r = conn.read_frame() => r,
        };
        let (reply, close) = match read {
            Ok(None) => break,
            Ok(Some(frame)) => (handler.handle(frame).await, false),
            Err(ConnectionError::Frame(e)) => {
                tracing::debug!(%peer, error = %e, "bad binary frame");
                (Frame::Error(e.to_string()), e.is_fatal())
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "binary connection dropped");
                break;
            }
        };
        match tokio::time::timeout(config.write_timeout, conn.write_frame(&reply)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "binary reply failed");
                break;
            }
            Err(_) => {
                tracing::debug!(%peer, "binary reply timed out: the client is not reading");
                break;
            }
        }
        if close {
            break;
        }
    }
    tracing::debug!(%peer, "binary connection closed");
}
