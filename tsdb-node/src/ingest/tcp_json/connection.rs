//! Line framing over a byte stream: reads newline-terminated frames into a bounded buffer and
//! writes replies. Knows nothing about frame contents or the protocol's states.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::reply::Reply;

/// Bytes requested from the socket per read. Large enough that one read of a pipelining
/// client's input yields a batch of hundreds of frames.
const READ_CHUNK: usize = 64 * 1024;

/// A buffer that grew past this (for a long line) is shrunk back once it is empty, so that an
/// idle connection holds no more than a few read chunks.
const SHRINK_ABOVE: usize = 4 * READ_CHUNK;

/// One unit of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line's bytes, without the newline (and without a trailing `\r`).
    Frame(&'a [u8]),
    /// A line longer than the frame limit. Its bytes were discarded, not buffered: the
    /// connection drops input until the next newline and reports the line once.
    Oversized,
}

/// Result of [`Connection::fill`].
#[derive(Debug, PartialEq, Eq)]
pub enum Fill {
    /// More input was read (possibly not yet a complete line).
    Data,
    /// The peer closed its side. A final line without newline was completed.
    Eof,
}

/// A client connection: buffered line reading with a size cap, and buffered replies.
///
/// Memory per connection is bounded by `max_frame_bytes` plus one read chunk for input, and
/// by the replies of one batch for output.
pub struct Connection<S> {
    stream: S,
    buf: Vec<u8>,
    /// First unconsumed byte of `buf`.
    start: usize,
    /// `buf[start..scanned]` is known to hold no newline, so searches resume at `scanned`.
    scanned: usize,
    /// Dropping input up to the next newline, after an oversized line was reported.
    discarding: bool,
    /// An oversized line was detected and not yet returned by `next_line`.
    oversized_pending: bool,
    max_frame_bytes: usize,
    out: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps a stream; lines longer than `max_frame_bytes` are refused.
    pub fn new(stream: S, max_frame_bytes: usize) -> Self {
        Connection {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            scanned: 0,
            discarding: false,
            oversized_pending: false,
            max_frame_bytes,
            out: Vec::new(),
        }
    }

    /// The next complete line already buffered, without I/O. Blank lines are skipped.
    pub fn next_line(&mut self) -> Option<Line<'_>> {
        loop {
            if self.oversized_pending {
                self.oversized_pending = false;
                return Some(Line::Oversized);
            }
            let tail = self.buf.get(self.scanned..)?;
            let Some(offset) = memchr::memchr(b'\n', tail) else {
                self.scanned = self.buf.len();
                return None;
            };
            let line_start = self.start;
            let mut line_end = self.scanned + offset;
            self.start = line_end + 1;
            self.scanned = self.start;
            let line = self.buf.get(line_start..line_end)?;
            if line.last() == Some(&b'\r') {
                line_end -= 1;
            }
            if line_end - line_start > self.max_frame_bytes {
                return Some(Line::Oversized);
            }
            let line = self.buf.get(line_start..line_end)?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(Line::Frame(line));
        }
    }

    /// Reads more input. Call only when [`Connection::next_line`] returned `None`.
    /// Cancel-safe: a cancelled read consumed nothing.
    pub async fn fill(&mut self) -> io::Result<Fill> {
        self.compact();
        self.buf.reserve(READ_CHUNK);
        // `take` caps one read at a chunk even when the vector has more spare capacity, so
        // the partial-line check below runs at least every chunk.
        let n = (&mut self.stream)
            .take(READ_CHUNK as u64)
            .read_buf(&mut self.buf)
            .await?;
        if n == 0 {
            // A last line without newline is still a frame; a discarded one stays discarded.
            if !self.discarding && self.start < self.buf.len() {
                self.buf.push(b'\n');
            }
            self.discarding = false;
            return Ok(Fill::Eof);
        }
        if self.discarding {
            match memchr::memchr(b'\n', &self.buf) {
                Some(i) => {
                    self.discarding = false;
                    self.start = i + 1;
                    self.scanned = self.start;
                }
                None => self.clear(),
            }
        } else if self.buf.len() - self.start > self.max_frame_bytes
            && memchr::memchr(b'\n', self.buf.get(self.scanned..).unwrap_or_default()).is_none()
        {
            // The partial line is already over the limit: report it now and drop the rest of
            // it as it arrives, instead of buffering up to the newline.
            self.clear();
            self.discarding = true;
            self.oversized_pending = true;
        }
        Ok(Fill::Data)
    }

    /// Queues a reply; sent by [`Connection::flush`].
    pub fn queue(&mut self, reply: &Reply) {
        reply.encode(&mut self.out);
    }

    /// Sends every queued reply.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.stream.write_all(&self.out).await?;
        // TLS streams buffer internally; a plain socket's flush is a no-op.
        self.stream.flush().await?;
        self.out.clear();
        Ok(())
    }

    /// Moves unconsumed bytes to the front so the buffer does not grow with consumed input.
    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.clear();
        } else if self.start > 0 {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(self.buf.len() - self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        if self.buf.capacity() > SHRINK_ABOVE {
            self.buf.shrink_to(READ_CHUNK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn lines_of(input: Vec<u8>, max: usize) -> Vec<Result<String, ()>> {
        let (mut client, server) = tokio::io::duplex(1024);
        let writer = tokio::spawn(async move {
            client.write_all(&input).await.unwrap();
            client.shutdown().await.unwrap();
            // Keep the reading side open until the server side is done.
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink).await;
        });
        let mut conn = Connection::new(server, max);
        let mut out = Vec::new();
        loop {
            while let Some(line) = conn.next_line() {
                out.push(match line {
                    Line::Frame(b) => Ok(String::from_utf8(b.to_vec()).unwrap()),
                    Line::Oversized => Err(()),
                });
            }
            if conn.fill().await.unwrap() == Fill::Eof {
                while let Some(line) = conn.next_line() {
                    out.push(match line {
                        Line::Frame(b) => Ok(String::from_utf8(b.to_vec()).unwrap()),
                        Line::Oversized => Err(()),
                    });
                }
                break;
            }
        }
        drop(conn);
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn splits_lines_and_skips_blank_ones() {
        let got = lines_of(b"a\r\n\n  \nbb\nlast".to_vec(), 100).await;
        assert_eq!(
            got,
            vec![Ok("a".into()), Ok("bb".into()), Ok("last".into())]
        );
    }

    #[tokio::test]
    async fn oversized_lines_are_reported_once_and_not_buffered() {
        let mut input = b"ok1\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 500_000));
        input.extend_from_slice(b"\nok2\n");
        input.extend(std::iter::repeat_n(b'y', 150));
        input.extend_from_slice(b"\nok3\n");
        let got = lines_of(input, 100).await;
        assert_eq!(
            got,
            vec![
                Ok("ok1".into()),
                Err(()),
                Ok("ok2".into()),
                Err(()),
                Ok("ok3".into())
            ]
        );
    }

    #[tokio::test]
    async fn buffer_stays_bounded_while_discarding() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut conn = Connection::new(server, 1000);
        let chunk = vec![b'z'; 32 * 1024];
        for _ in 0..64 {
            client.write_all(&chunk).await.unwrap();
            while conn.next_line().is_some() {}
            conn.fill().await.unwrap();
            assert!(conn.buf.len() <= 1000 + READ_CHUNK);
        }
    }
}
