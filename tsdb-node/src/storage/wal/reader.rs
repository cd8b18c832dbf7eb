//! Crash recovery: replaying the segments and cutting away damaged tails.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Bytes requested per read while replaying.
const READ_CHUNK: usize = 8 << 20;

use tracing::{info, warn};

use super::error::{ReplayError, WalError};
use super::files::{segment_path, segments, sync_dir};
use super::format::{
    check_header, parse_frame, FrameError, HeaderError, FRAME_HEADER_LEN, HEADER_LEN,
};
use super::record::WalRecord;

/// A segment in which replay found damage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptSegment {
    /// Segment number.
    pub segment: u64,
    /// Offset of the first damaged byte; the file was truncated there (0: bad header, the
    /// file was renamed to `<name>.corrupt` or, if it held only a partial header, removed).
    pub offset: u64,
    /// What was wrong.
    pub reason: String,
}

/// What [`replay`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records passed to the callback.
    pub records: u64,
    /// Samples in those records.
    pub samples: u64,
    /// Segment files visited.
    pub segments: u64,
    /// Bytes cut from damaged segments (or dropped with torn headers).
    pub truncated_bytes: u64,
    /// Damage found, in segment order.
    pub corrupt_segments: Vec<CorruptSegment>,
}

/// Reads every segment in `dir` in order and calls `f` with each valid record.
///
/// Damage is repaired so that it can never resurface in the middle of the log:
/// * a torn or corrupt tail (short frame, bad length, checksum mismatch, undecodable payload)
///   is logged and the file truncated at the last good record boundary and fsynced; replay then
///   continues with the next segment, whose records are still valid;
/// * a file whose header is only partially written holds no records and is removed;
/// * a file with a foreign header is renamed to `<name>.corrupt` and skipped.
///
/// Must run before [`Wal::open`](super::Wal::open) on the same directory. A missing directory
/// replays nothing. If `f` fails, replay stops and returns [`ReplayError::Apply`].
pub fn replay<E, F>(dir: &Path, f: F) -> Result<ReplayStats, ReplayError<E>>
where
    F: FnMut(WalRecord) -> Result<(), E>,
{
    replay_chunked(dir, READ_CHUNK, f)
}

/// [`replay`] reading `read_chunk` bytes at a time; tests use tiny chunks so that frames
/// straddle every possible read boundary.
pub(crate) fn replay_chunked<E, F>(
    dir: &Path,
    read_chunk: usize,
    mut f: F,
) -> Result<ReplayStats, ReplayError<E>>
where
    F: FnMut(WalRecord) -> Result<(), E>,
{
    let mut stats = ReplayStats::default();
    // Reused across segments; bounded by about two frames or read chunks, whatever the files.
    let mut buf = Vec::new();
    for n in segments(dir)? {
        let path = segment_path(dir, n);
        stats.segments += 1;
        match replay_segment(&path, n, read_chunk, &mut buf, &mut stats, &mut f)? {
            SegmentEnd::Clean => {}
            SegmentEnd::BadHeader(e) => {
                set_aside(dir, &path, &e)?;
                if let HeaderError::Torn(len) = e {
                    stats.truncated_bytes += len as u64;
                }
                stats.corrupt_segments.push(CorruptSegment {
                    segment: n,
                    offset: 0,
                    reason: e.to_string(),
                });
            }
            SegmentEnd::Damaged { offset, reason } => {
                let len = fs::metadata(&path)
                    .map_err(|e| WalError::io("stat", &path, e))?
                    .len();
                let cut = len.saturating_sub(offset);
                warn!(
                    file = %path.display(),
                    offset,
                    reason = %reason,
                    bytes = cut,
                    "damaged WAL segment tail; truncating at the last good record"
                );
                truncate(&path, offset)?;
                stats.truncated_bytes += cut;
                stats.corrupt_segments.push(CorruptSegment {
                    segment: n,
                    offset,
                    reason,
                });
            }
        }
    }
    info!(
        dir = %dir.display(),
        segments = stats.segments,
        records = stats.records,
        samples = stats.samples,
        damaged = stats.corrupt_segments.len(),
        "WAL replayed"
    );
    Ok(stats)
}

/// How reading one segment ended.
enum SegmentEnd {
    Clean,
    BadHeader(HeaderError),
    Damaged { offset: u64, reason: String },
}

/// Streams the records of one segment into `f`. The file is read in large chunks so replay
/// costs few syscalls, while memory stays bounded no matter how big the file is.
fn replay_segment<E, F>(
    path: &Path,
    segment: u64,
    read_chunk: usize,
    buf: &mut Vec<u8>,
    stats: &mut ReplayStats,
    f: &mut F,
) -> Result<SegmentEnd, ReplayError<E>>
where
    F: FnMut(WalRecord) -> Result<(), E>,
{
    let mut file = File::open(path).map_err(|e| WalError::io("opening segment", path, e))?;
    buf.clear();
    read_up_to(&mut file, buf, HEADER_LEN, path)?;
    if let Err(e) = check_header(buf) {
        return Ok(SegmentEnd::BadHeader(e));
    }
    buf.clear();
    // File offset of buf[0], and the parse position within buf.
    let mut base = HEADER_LEN as u64;
    let mut pos = 0usize;
    let mut eof = false;
    loop {
        let res = parse_frame(buf.get(pos..).unwrap_or_default());
        let incomplete = matches!(
            res,
            Ok(None) | Err(FrameError::ShortHeader(_)) | Err(FrameError::ShortPayload { .. })
        );
        if incomplete && !eof {
            let frame_len = match res {
                Err(FrameError::ShortPayload { len, .. }) => FRAME_HEADER_LEN + len,
                _ => FRAME_HEADER_LEN,
            };
            // Keep the unparsed tail (less than one frame) and read at least the rest of the
            // frame, usually a whole chunk.
            buf.drain(..pos.min(buf.len()));
            base += pos as u64;
            pos = 0;
            eof = read_up_to(&mut file, buf, frame_len.max(read_chunk), path)?;
            continue;
        }
        match res {
            Ok(Some((rec, used))) => {
                let offset = base + pos as u64;
                pos += used;
                stats.records += 1;
                stats.samples += rec.sample_count() as u64;
                f(rec).map_err(|source| ReplayError::Apply {
                    segment,
                    offset,
                    source,
                })?;
            }
            Ok(None) => return Ok(SegmentEnd::Clean),
            Err(e) => {
                return Ok(SegmentEnd::Damaged {
                    offset: base + pos as u64,
                    reason: e.to_string(),
                })
            }
        }
    }
}

/// Appends to `buf` until it holds `want` bytes or the file ends; returns whether it ended.
fn read_up_to(
    file: &mut File,
    buf: &mut Vec<u8>,
    want: usize,
    path: &Path,
) -> Result<bool, WalError> {
    let missing = want.saturating_sub(buf.len());
    buf.reserve_exact(missing);
    let read = file
        .take(missing as u64)
        .read_to_end(buf)
        .map_err(|e| WalError::io("reading segment", path, e))?;
    Ok(read < missing)
}

fn truncate(path: &Path, len: u64) -> Result<(), WalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io("opening segment for truncation", path, e))?;
    file.set_len(len)
        .map_err(|e| WalError::io("truncating segment", path, e))?;
    file.sync_all()
        .map_err(|e| WalError::io("fsyncing truncated segment", path, e))
}

/// Removes a segment with a partial header (a crash during creation: it holds nothing), or
/// renames one with a foreign header out of the way so that an operator can inspect it.
fn set_aside(dir: &Path, path: &Path, err: &HeaderError) -> Result<(), WalError> {
    if let HeaderError::Torn(_) = err {
        warn!(file = %path.display(), reason = %err, "removing WAL segment with a torn header");
        fs::remove_file(path).map_err(|e| WalError::io("removing segment", path, e))?;
    } else {
        let mut target = path.as_os_str().to_owned();
        target.push(".corrupt");
        let target = PathBuf::from(target);
        warn!(
            file = %path.display(),
            renamed_to = %target.display(),
            reason = %err,
            "WAL segment has a bad header; setting it aside"
        );
        fs::rename(path, &target).map_err(|e| WalError::io("renaming segment", path, e))?;
    }
    sync_dir(dir)
}
