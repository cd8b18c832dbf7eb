//! The WAL writer: group commit, segment rotation, backpressure and the failed state.
//!
//! Appending is split in two so that many threads share one write + fsync:
//!
//! * [`Wal::enqueue`] encodes the records (outside any lock) and appends their frames to a
//!   shared pending buffer under the state mutex. That append fixes the records' order in the
//!   log and yields a [`Ticket`]: the logical end position of those bytes.
//! * [`Wal::wait_durable`] blocks until the durable position reaches the ticket. If no write is
//!   in flight, the caller becomes the *leader*: it takes the whole pending buffer, releases the
//!   mutex (so others keep enqueueing), writes and fdatasyncs, then publishes the new durable
//!   position and wakes everyone. Followers whose tickets are covered return; the others
//!   elect the next leader among themselves.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};
use tracing::{debug, error, info, warn};

use super::error::WalError;
use super::files::{create_segment, segment_path, segments, sync_dir};
use super::format::{encode_frames, encode_samples_frames, own_frame_len, HEADER_LEN};
use super::record::WalRecord;
use crate::storage::model::{Sample, SeriesId};

/// Pending buffers up to this capacity are kept for reuse; larger ones are freed so that one
/// burst does not pin memory forever.
const SPARE_BUFFER_KEEP: usize = 8 << 20;

/// Configuration of a [`Wal`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// A segment is rotated before a record that would make it exceed this size. A single
    /// record larger than this gets a segment of its own.
    pub segment_size: u64,
    /// Fsync on every commit. `false` gives up durability and exists only for benchmarks and
    /// tests.
    pub sync: bool,
    /// Encoded bytes that may wait for the next write before [`Wal::enqueue`] blocks
    /// (backpressure). Memory use peaks at about twice this: one buffer being written, one
    /// filling.
    pub max_pending_bytes: usize,
    /// Extra time added to every fsync, to stand in for a slow disk in overload tests and
    /// benchmarks. Zero in production.
    pub sync_delay: std::time::Duration,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: 64 << 20,
            sync: true,
            max_pending_bytes: 64 << 20,
            sync_delay: std::time::Duration::ZERO,
        }
    }
}

/// Whole frames encoded by [`Wal::encode_samples`], not yet in the log.
#[derive(Debug)]
pub struct Encoded(Vec<u8>);

/// A logical log position returned by [`Wal::enqueue`]; pass it to [`Wal::wait_durable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(u64);

/// State shared by all callers, behind `Wal::state`.
struct Shared {
    /// Encoded frames not yet taken by a leader.
    pending: Vec<u8>,
    /// An empty buffer kept to swap in for `pending`, so steady state allocates nothing.
    spare: Vec<u8>,
    /// Logical end of everything enqueued.
    enqueued: u64,
    /// Logical end of everything written and synced.
    durable: u64,
    /// Whether some thread is currently writing a batch.
    leader_active: bool,
    /// Set forever by the first failed write/fsync.
    failed: Option<String>,
    closed: bool,
}

/// The segment being written; only the leader touches it.
struct Active {
    file: File,
    number: u64,
    size: u64,
    has_records: bool,
}

/// The write-ahead log of one node. `Send + Sync`; share it behind an `Arc`.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    state: Mutex<Shared>,
    /// Signalled when the durable position moves or the WAL fails.
    durable_cv: Condvar,
    /// Signalled when the pending buffer is drained, for enqueuers under backpressure.
    space_cv: Condvar,
    active: Mutex<Active>,
    current: AtomicU64,
    live_bytes: AtomicU64,
}

impl Wal {
    /// Opens the WAL in `dir` (created if missing) and starts a new segment numbered after the
    /// highest existing one. Existing segments are never appended to, so a torn tail left by a
    /// crash always stays at the end of its file. Run [`replay`](super::replay) first.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<Wal, WalError> {
        if opts.segment_size <= HEADER_LEN as u64 {
            return Err(WalError::InvalidOptions(format!(
                "segment_size {} must exceed the {HEADER_LEN}-byte segment header",
                opts.segment_size
            )));
        }
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)
                .map_err(|e| WalError::io("creating WAL directory", dir, e))?;
            if opts.sync {
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    sync_dir(parent)?;
                }
            }
        }
        let existing = segments(dir)?;
        let mut live_bytes = 0;
        for &n in &existing {
            let path = segment_path(dir, n);
            let meta = std::fs::metadata(&path).map_err(|e| WalError::io("stat", &path, e))?;
            live_bytes += meta.len();
        }
        let number = existing.last().map_or(1, |n| n + 1);
        let file = create_segment(dir, number, opts.sync)?;
        live_bytes += HEADER_LEN as u64;
        info!(dir = %dir.display(), segment = number, "WAL opened");
        Ok(Wal {
            dir: dir.to_path_buf(),
            state: Mutex::new(Shared {
                pending: Vec::new(),
                spare: Vec::new(),
                enqueued: 0,
                durable: 0,
                leader_active: false,
                failed: None,
                closed: false,
            }),
            durable_cv: Condvar::new(),
            space_cv: Condvar::new(),
            active: Mutex::new(Active {
                file,
                number,
                size: HEADER_LEN as u64,
                has_records: false,
            }),
            current: AtomicU64::new(number),
            live_bytes: AtomicU64::new(live_bytes),
            opts,
        })
    }

    /// Numbers of the segment files in `dir`, ascending.
    pub fn segments(dir: &Path) -> Result<Vec<u64>, WalError> {
        segments(dir)
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of the segment currently written.
    pub fn current_segment(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    /// Total size in bytes of the live segment files, including data not yet synced.
    pub fn size_bytes(&self) -> u64 {
        self.live_bytes.load(Ordering::Relaxed)
    }

    /// Appends `records` to the log and returns once they are durable.
    pub fn append(&self, records: &[WalRecord]) -> Result<(), WalError> {
        let ticket = self.enqueue(records)?;
        self.wait_durable(ticket)
    }

    /// Queues `records` for the next write and returns their ticket. Their position relative to
    /// other threads' records is fixed here. Blocks while the pending buffer is over
    /// [`WalOptions::max_pending_bytes`], writing it itself if no other thread is.
    ///
    /// A `Samples` record too large for one frame is stored as several consecutive `Samples`
    /// records; other records larger than
    /// [`MAX_RECORD_SIZE`](super::MAX_RECORD_SIZE) are rejected with
    /// [`WalError::RecordTooLarge`] and nothing is queued.
    pub fn enqueue(&self, records: &[WalRecord]) -> Result<Ticket, WalError> {
        let mut frames = Vec::new();
        encode_frames(records, &mut frames)?;
        self.enqueue_encoded(&Encoded(frames))
    }

    /// Encodes a `Samples` record from a slice, ready for [`enqueue_encoded`]. Lets a caller
    /// encode before it takes a lock of its own and enqueue under it, so that only the copy
    /// into the pending buffer is serialised.
    ///
    /// [`enqueue_encoded`]: Self::enqueue_encoded
    pub fn encode_samples(samples: &[(SeriesId, Sample)]) -> Result<Encoded, WalError> {
        let mut frames = Vec::with_capacity(samples.len() * 12 + 16);
        encode_samples_frames(samples, &mut frames)?;
        Ok(Encoded(frames))
    }

    /// [`enqueue`](Self::enqueue) of records encoded beforehand.
    pub fn enqueue_encoded(&self, encoded: &Encoded) -> Result<Ticket, WalError> {
        let frames = &encoded.0;
        let mut st = self.state.lock();
        Self::check_usable(&st)?;
        while !st.pending.is_empty()
            && st.pending.len().saturating_add(frames.len()) > self.opts.max_pending_bytes
        {
            if st.leader_active {
                self.space_cv.wait(&mut st);
            } else {
                self.lead(&mut st, false)?;
            }
            Self::check_usable(&st)?;
        }
        st.pending.extend_from_slice(frames);
        st.enqueued += frames.len() as u64;
        Ok(Ticket(st.enqueued))
    }

    /// Blocks until everything up to `ticket` is written and fsynced. Returns an error if the
    /// WAL failed before that point became durable; the records are then not guaranteed to be
    /// on disk.
    pub fn wait_durable(&self, ticket: Ticket) -> Result<(), WalError> {
        let mut st = self.state.lock();
        // A ticket from another Wal could lie beyond anything this one will ever write; clamp
        // it rather than wait forever.
        let target = ticket.0.min(st.enqueued);
        loop {
            if st.durable >= target {
                return Ok(());
            }
            if let Some(cause) = &st.failed {
                return Err(WalError::Failed {
                    cause: cause.clone(),
                });
            }
            if st.leader_active {
                self.durable_cv.wait(&mut st);
            } else {
                self.lead(&mut st, false)?;
            }
        }
    }

    /// Makes everything enqueued so far durable, closes the current segment and starts a new
    /// one, whose number N is returned. Every record enqueued before this call is in a segment
    /// below N; every record enqueued after it returns is in N or later. If the current
    /// segment holds no records it is kept and its number returned, which satisfies the same
    /// contract without leaving empty files behind.
    pub fn cut(&self) -> Result<u64, WalError> {
        let mut st = self.state.lock();
        loop {
            Self::check_usable(&st)?;
            if !st.leader_active {
                break;
            }
            self.durable_cv.wait(&mut st);
        }
        self.lead(&mut st, true)
    }

    /// Deletes the segments numbered below `n` (never the current one) and fsyncs the
    /// directory. Returns how many were deleted. Works even in the failed state, since it only
    /// drops data that a checkpoint already covers.
    pub fn remove_before(&self, n: u64) -> Result<usize, WalError> {
        let current = self.current_segment();
        if n > current {
            warn!(
                requested = n,
                current, "remove_before beyond the current segment; keeping the current one"
            );
        }
        let limit = n.min(current);
        let mut removed = 0;
        for seg in segments(&self.dir)?.into_iter().take_while(|&s| s < limit) {
            let path = segment_path(&self.dir, seg);
            let len = match std::fs::metadata(&path) {
                Ok(m) => m.len(),
                // A concurrent remove_before got there first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(WalError::io("stat", &path, e)),
            };
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    removed += 1;
                    let _ =
                        self.live_bytes
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                                Some(b.saturating_sub(len))
                            });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(WalError::io("removing segment", &path, e)),
            }
        }
        if removed > 0 {
            if self.opts.sync {
                sync_dir(&self.dir)?;
            }
            debug!(removed, before = limit, "removed WAL segments");
        }
        Ok(removed)
    }

    /// Makes everything enqueued durable and refuses all later appends with
    /// [`WalError::Closed`]. Calling it again is a no-op.
    pub fn close(&self) -> Result<(), WalError> {
        let mut st = self.state.lock();
        loop {
            if st.closed {
                return Ok(());
            }
            if let Some(cause) = &st.failed {
                return Err(WalError::Failed {
                    cause: cause.clone(),
                });
            }
            if st.leader_active {
                self.durable_cv.wait(&mut st);
            } else if st.durable < st.enqueued {
                self.lead(&mut st, false)?;
            } else {
                break;
            }
        }
        st.closed = true;
        self.durable_cv.notify_all();
        self.space_cv.notify_all();
        Ok(())
    }

    fn check_usable(st: &Shared) -> Result<(), WalError> {
        if let Some(cause) = &st.failed {
            return Err(WalError::Failed {
                cause: cause.clone(),
            });
        }
        if st.closed {
            return Err(WalError::Closed);
        }
        Ok(())
    }

    /// Writes and syncs the whole pending buffer with the state lock released, then publishes
    /// the outcome. The caller must have checked that no other leader is active. Returns the
    /// current segment number afterwards.
    fn lead(&self, st: &mut MutexGuard<'_, Shared>, rotate: bool) -> Result<u64, WalError> {
        st.leader_active = true;
        let spare = std::mem::take(&mut st.spare);
        let mut batch = std::mem::replace(&mut st.pending, spare);
        let end = st.enqueued;
        self.space_cv.notify_all();

        let res = MutexGuard::unlocked(st, || self.write_batch(&batch, rotate));

        st.leader_active = false;
        match &res {
            Ok(_) => st.durable = end,
            Err(e) => {
                error!(dir = %self.dir.display(), error = %e, "WAL write failed; refusing further writes");
                st.failed = Some(e.to_string());
            }
        }
        batch.clear();
        if batch.capacity() <= SPARE_BUFFER_KEEP && batch.capacity() > st.spare.capacity() {
            st.spare = batch;
        }
        self.durable_cv.notify_all();
        self.space_cv.notify_all();
        res
    }

    /// Writes `batch` (whole frames) to the current segment, rotating whenever the next frame
    /// would overflow it, then syncs. With `rotate`, finishes by starting a new segment if the
    /// current one holds any record.
    fn write_batch(&self, batch: &[u8], rotate: bool) -> Result<u64, WalError> {
        let mut seg = self.active.lock();
        let (mut pos, mut run_start) = (0usize, 0usize);
        while pos < batch.len() {
            let Some(len) = batch
                .get(pos..)
                .and_then(own_frame_len)
                .filter(|&l| pos + l <= batch.len())
            else {
                // Unreachable: the buffer holds only frames this process encoded. Failing the
                // WAL is the safe answer to a bug here.
                return Err(WalError::io(
                    "framing pending buffer",
                    segment_path(&self.dir, seg.number),
                    std::io::Error::other("malformed frame in the pending buffer"),
                ));
            };
            let run = (pos - run_start + len) as u64;
            // An oversized record still goes into an empty segment: it has to go somewhere.
            let has_data = seg.has_records || pos > run_start;
            if seg.size + run > self.opts.segment_size && has_data {
                self.write_run(&mut seg, &batch[run_start..pos])?;
                self.rotate(&mut seg)?;
                run_start = pos;
                continue;
            }
            pos += len;
        }
        self.write_run(&mut seg, &batch[run_start..pos])?;
        if rotate && seg.has_records {
            self.rotate(&mut seg)?;
        } else if self.opts.sync && !batch.is_empty() {
            let path = segment_path(&self.dir, seg.number);
            seg.file
                .sync_data()
                .map_err(|e| WalError::io("fsyncing segment", path, e))?;
            if !self.opts.sync_delay.is_zero() {
                std::thread::sleep(self.opts.sync_delay);
            }
        }
        Ok(seg.number)
    }

    fn write_run(&self, seg: &mut Active, run: &[u8]) -> Result<(), WalError> {
        if run.is_empty() {
            return Ok(());
        }
        seg.file
            .write_all(run)
            .map_err(|e| WalError::io("writing segment", segment_path(&self.dir, seg.number), e))?;
        seg.size += run.len() as u64;
        seg.has_records = true;
        self.live_bytes
            .fetch_add(run.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Syncs and closes the current segment and starts the next one.
    fn rotate(&self, seg: &mut Active) -> Result<(), WalError> {
        if self.opts.sync {
            let path = segment_path(&self.dir, seg.number);
            seg.file
                .sync_data()
                .map_err(|e| WalError::io("fsyncing segment", path, e))?;
        }
        let next = seg.number + 1;
        let file = create_segment(&self.dir, next, self.opts.sync)?;
        debug!(
            from = seg.number,
            to = next,
            size = seg.size,
            "rotated WAL segment"
        );
        *seg = Active {
            file,
            number: next,
            size: HEADER_LEN as u64,
            has_records: false,
        };
        self.live_bytes
            .fetch_add(HEADER_LEN as u64, Ordering::Relaxed);
        self.current.store(next, Ordering::Release);
        Ok(())
    }
}

impl Drop for Wal {
    /// Writes what is still pending. Those records were never acknowledged, so this is a
    /// courtesy for clean shutdowns, not a durability promise; failures are only logged.
    fn drop(&mut self) {
        let st = self.state.get_mut();
        if st.closed || st.failed.is_some() || st.pending.is_empty() {
            return;
        }
        if let Err(e) = self.close() {
            warn!(error = %e, "flushing the WAL on drop failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn wal_is_send_and_sync() {
        assert_send_sync::<Wal>();
    }

    #[test]
    fn rejects_tiny_segments() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_size: 4,
            ..WalOptions::default()
        };
        assert!(matches!(
            Wal::open(dir.path(), opts),
            Err(WalError::InvalidOptions(_))
        ));
    }
}
