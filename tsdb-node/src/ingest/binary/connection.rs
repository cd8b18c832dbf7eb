//! Reads and writes whole ZTSD frames on a byte stream.
//!
//! The header is read first and its length checked against the cap before the payload buffer
//! is allocated, so a hostile length field costs nothing. Reads are bounded in time: a peer
//! that goes quiet between frames is dropped after the idle timeout, one that stalls in the
//! middle of a frame after the (shorter) read timeout.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};

use super::frame::{decode_header, Frame, FrameError, HEADER_LEN};

/// Limits applied to one connection's reads.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Largest payload accepted.
    pub max_payload: u32,
    /// How long the peer may stay silent between frames.
    pub idle_timeout: Duration,
    /// How long the rest of a frame may take once its first byte arrived.
    pub read_timeout: Duration,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("connection closed in the middle of a frame ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("no complete frame within {0:?}")]
    Timeout(Duration),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// A framed ZTSD stream.
pub struct Connection<S> {
    stream: BufStream<S>,
    limits: ConnectionLimits,
    out: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps a stream. Reads are buffered (many small frames cost one syscall); writes are
    /// buffered and flushed by [`Connection::write_frame`].
    pub fn new(stream: S, limits: ConnectionLimits) -> Self {
        Connection {
            stream: BufStream::new(stream),
            limits,
            out: Vec::new(),
        }
    }

    /// Reads the next frame. `Ok(None)` is a clean close between frames. A non-fatal
    /// [`ConnectionError::Frame`] (see [`FrameError::is_fatal`]) means the payload was consumed
    /// and the connection is still aligned on frame boundaries.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ConnectionError> {
        let mut header = [0u8; HEADER_LEN];
        // The first byte is awaited under the idle timeout, the rest of the frame under the
        // read timeout: a slow trickle must not hold a connection slot for long.
        let first =
            tokio::time::timeout(self.limits.idle_timeout, self.stream.read(&mut header[..1]))
                .await
                .map_err(|_| ConnectionError::Timeout(self.limits.idle_timeout))??;
        if first == 0 {
            return Ok(None);
        }
        let deadline = tokio::time::Instant::now() + self.limits.read_timeout;
        self.read_exact_by(&mut header[1..], deadline, 1, HEADER_LEN)
            .await?;
        let raw = decode_header(&header, self.limits.max_payload)?;
        // Bounded by `max_payload`, checked just above.
        let mut payload = vec![0u8; raw.payload_len as usize];
        let want = HEADER_LEN + payload.len();
        self.read_exact_by(&mut payload, deadline, HEADER_LEN, want)
            .await?;
        let header = raw.checked()?;
        Ok(Some(Frame::decode_payload(header.msg_type, &payload)?))
    }

    /// Fills `buf` before `deadline`. `already`/`want` only describe the frame for errors.
    async fn read_exact_by(
        &mut self,
        buf: &mut [u8],
        deadline: tokio::time::Instant,
        already: usize,
        want: usize,
    ) -> Result<(), ConnectionError> {
        let mut filled = 0;
        while filled < buf.len() {
            let Some(rest) = buf.get_mut(filled..) else {
                break;
            };
            let n = tokio::time::timeout_at(deadline, self.stream.read(rest))
                .await
                .map_err(|_| ConnectionError::Timeout(self.limits.read_timeout))??;
            if n == 0 {
                return Err(ConnectionError::Truncated {
                    got: already + filled,
                    want,
                });
            }
            filled += n;
        }
        Ok(())
    }

    /// Encodes and sends one frame, flushing it to the peer.
    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), ConnectionError> {
        self.out.clear();
        frame.encode(&mut self.out)?;
        self.stream.write_all(&self.out).await?;
        self.stream.flush().await?;
        // Keep the buffer for the next reply, unless a large data reply grew it.
        if self.out.capacity() > 1 << 20 {
            self.out = Vec::new();
        }
        Ok(())
    }
}
