//! Streaming writer of a segment file with crash-safe publication.
//!
//! Chunk bytes go straight to a temporary file through a `BufWriter`; only the per-series index
//! entries are kept in memory until [`SegmentWriter::finish`] writes the index sections and the
//! footer, fsyncs, renames the temporary file to its final name and fsyncs the directory. A
//! crash at any point leaves either no segment or a complete one, plus possibly a `*.tmp` file
//! that is garbage.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::chunk_entry::{ChunkEntry, StoredChunkEntry};
use super::error::SegmentError;
use super::format::{self, Footer, Section, SectionRef, TMP_SUFFIX};
use super::meta::{SegmentMeta, SegmentMetaSeed};
use super::postings::{PostingsBuilder, PostingsWriteError};
use super::symbols::{SymbolTableBuilder, SymbolWriteError};
use crate::storage::model::{Labels, SeriesId};

/// One chunk handed to [`SegmentWriter::add_series`]: `(kind, mint, maxt, count, bytes)`, with
/// `mint`/`maxt` the inclusive time range of the chunk and `count` its number of samples.
pub type ChunkInput<'a> = (u8, i64, i64, u32, &'a [u8]);

const WRITE_BUFFER: usize = 256 * 1024;

struct PendingSeries {
    id: SeriesId,
    labels: Labels,
    chunks: Vec<StoredChunkEntry>,
}

/// Writes one segment file. Create it, add series in strictly increasing id order, then
/// [`finish`](Self::finish) (publish) or [`abort`](Self::abort). Dropping an unfinished writer
/// removes its temporary file, like `abort`.
pub struct SegmentWriter {
    dir: PathBuf,
    final_path: PathBuf,
    tmp_path: PathBuf,
    out: Option<BufWriter<File>>,
    /// Bytes written to the file so far: the offset of the next chunk.
    pos: u64,
    seed: SegmentMetaSeed,
    series: Vec<PendingSeries>,
    mint: i64,
    maxt: i64,
    num_chunks: u64,
    num_samples: u64,
    poisoned: bool,
    /// Whether the temporary file may exist and must be removed if the writer goes away.
    tmp_live: bool,
}

impl SegmentWriter {
    /// Starts writing segment `file_name` in `dir` (as `<file_name>.tmp` until published).
    ///
    /// `file_name` must be a plain file name, conventionally `<name>.seg`. Fails with
    /// [`SegmentError::AlreadyExists`] if the final file exists; a leftover temporary file from
    /// a crashed writer is overwritten.
    pub fn create(
        dir: &Path,
        file_name: &str,
        seed: SegmentMetaSeed,
    ) -> Result<SegmentWriter, SegmentError> {
        let final_path = dir.join(file_name);
        let plain = !file_name.is_empty()
            && file_name != "."
            && file_name != ".."
            && !file_name.contains(['/', '\\', '\0'])
            && !file_name.ends_with(TMP_SUFFIX);
        if !plain {
            return Err(SegmentError::InvalidInput {
                path: final_path,
                reason: format!("{file_name:?} is not a valid segment file name"),
            });
        }
        if seed.resolution_ms < 0 {
            return Err(SegmentError::InvalidInput {
                path: final_path,
                reason: format!("resolution {} ms is negative", seed.resolution_ms),
            });
        }
        match fs::symlink_metadata(&final_path) {
            Ok(_) => return Err(SegmentError::AlreadyExists { path: final_path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SegmentError::io(&final_path, e)),
        }
        let tmp_path = dir.join(format!("{file_name}{TMP_SUFFIX}"));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(|e| SegmentError::io(&tmp_path, e))?;
        let mut writer = SegmentWriter {
            dir: dir.to_path_buf(),
            final_path,
            tmp_path,
            out: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            pos: 0,
            seed,
            series: Vec::new(),
            mint: i64::MAX,
            maxt: i64::MIN,
            num_chunks: 0,
            num_samples: 0,
            poisoned: false,
            tmp_live: true,
        };
        writer.write_raw(&format::encode_header())?;
        debug!(path = %writer.tmp_path.display(), "segment writer created");
        Ok(writer)
    }

    /// Final path the segment will be published under.
    pub fn path(&self) -> &Path {
        &self.final_path
    }

    /// Appends one series and its chunks. Ids must be strictly increasing across calls
    /// ([`SegmentError::OutOfOrder`] otherwise). Chunks must be sorted by `(kind, mint)` and
    /// have `mint <= maxt`; chunks of one kind may overlap in time. A validation error leaves
    /// the writer unchanged and usable; an I/O error poisons it.
    pub fn add_series(
        &mut self,
        id: SeriesId,
        labels: &Labels,
        chunks: &[ChunkInput<'_>],
    ) -> Result<(), SegmentError> {
        self.check_usable()?;
        if let Some(prev) = self.series.last().map(|s| s.id) {
            if id <= prev {
                return Err(SegmentError::OutOfOrder {
                    path: self.final_path.clone(),
                    prev,
                    id,
                });
            }
        }
        self.validate_series(id, labels, chunks)?;

        let mut entries = Vec::with_capacity(chunks.len());
        let mut run_maxt = i64::MIN;
        let mut run_kind = None;
        for &(kind, mint, maxt, count, data) in chunks {
            if run_kind != Some(kind) {
                run_kind = Some(kind);
                run_maxt = maxt;
            }
            run_maxt = run_maxt.max(maxt);
            let entry = ChunkEntry {
                kind,
                mint,
                maxt,
                count,
                offset: self.pos,
                // Checked by validate_series.
                len: u32::try_from(data.len()).unwrap_or(u32::MAX),
                crc32c: crc32c::crc32c(data),
            };
            self.write_raw(data)?;
            entries.push(StoredChunkEntry {
                entry,
                run_maxt,
                reserved: [0; 3],
            });
            self.mint = self.mint.min(mint);
            self.maxt = self.maxt.max(maxt);
            self.num_samples = self.num_samples.saturating_add(u64::from(count));
        }
        self.num_chunks += entries.len() as u64;
        self.series.push(PendingSeries {
            id,
            labels: labels.clone(),
            chunks: entries,
        });
        Ok(())
    }

    /// Writes the index sections, meta and footer, makes the file durable and publishes it
    /// under its final name. Returns the final path.
    pub fn finish(mut self) -> Result<PathBuf, SegmentError> {
        self.check_usable()?;
        if self.num_chunks == 0 {
            // Drop removes the temporary file.
            return Err(SegmentError::Empty {
                path: self.final_path.clone(),
            });
        }
        let meta = self.write_index()?;
        let out = self.out.take().ok_or_else(|| SegmentError::Poisoned {
            path: self.final_path.clone(),
        })?;
        let file = out
            .into_inner()
            .map_err(|e| SegmentError::io(&self.tmp_path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| SegmentError::io(&self.tmp_path, e))?;
        drop(file);
        fs::rename(&self.tmp_path, &self.final_path)
            .map_err(|e| SegmentError::io(&self.final_path, e))?;
        // The temporary name is gone; Drop must not touch the published file.
        self.tmp_live = false;
        sync_dir(&self.dir)?;
        debug!(
            path = %self.final_path.display(),
            size = self.pos,
            series = meta.num_series,
            chunks = meta.num_chunks,
            "segment published"
        );
        Ok(std::mem::take(&mut self.final_path))
    }

    /// Abandons the segment and removes the temporary file.
    pub fn abort(mut self) -> Result<(), SegmentError> {
        self.out = None;
        self.tmp_live = false;
        match fs::remove_file(&self.tmp_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SegmentError::io(&self.tmp_path, e)),
        }
    }

    fn check_usable(&self) -> Result<(), SegmentError> {
        if self.poisoned || self.out.is_none() {
            return Err(SegmentError::Poisoned {
                path: self.final_path.clone(),
            });
        }
        Ok(())
    }

    fn validate_series(
        &self,
        id: SeriesId,
        labels: &Labels,
        chunks: &[ChunkInput<'_>],
    ) -> Result<(), SegmentError> {
        let invalid = |reason: String| SegmentError::InvalidChunk {
            path: self.final_path.clone(),
            id,
            reason,
        };
        if u32::try_from(chunks.len()).is_err() {
            return Err(invalid(format!(
                "{} chunks exceed the per-series limit",
                chunks.len()
            )));
        }
        if u32::try_from(labels.len()).is_err() {
            return Err(SegmentError::InvalidInput {
                path: self.final_path.clone(),
                reason: format!("series {id} has too many labels"),
            });
        }
        let mut prev: Option<(u8, i64)> = None;
        for (i, &(kind, mint, maxt, _, data)) in chunks.iter().enumerate() {
            if mint > maxt {
                return Err(invalid(format!("chunk {i} has mint {mint} > maxt {maxt}")));
            }
            if u32::try_from(data.len()).is_err() {
                return Err(invalid(format!(
                    "chunk {i} is {} bytes, more than 4 GiB",
                    data.len()
                )));
            }
            if prev.is_some_and(|p| p > (kind, mint)) {
                return Err(invalid(format!(
                    "chunk {i} (kind {kind}, mint {mint}) is not sorted by (kind, mint)"
                )));
            }
            prev = Some((kind, mint));
        }
        Ok(())
    }

    /// Appends bytes to the file, poisoning the writer on failure because the file's content
    /// and `pos` may then disagree.
    fn write_raw(&mut self, data: &[u8]) -> Result<(), SegmentError> {
        let Some(out) = self.out.as_mut() else {
            return Err(SegmentError::Poisoned {
                path: self.final_path.clone(),
            });
        };
        if let Err(e) = out.write_all(data) {
            self.poisoned = true;
            return Err(SegmentError::io(&self.tmp_path, e));
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Writes everything after the chunk data; returns the meta that was written.
    fn write_index(&mut self) -> Result<SegmentMeta, SegmentError> {
        let result = self.write_index_inner();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn write_index_inner(&mut self) -> Result<SegmentMeta, SegmentError> {
        let final_path = self.final_path.clone();
        let tmp_path = self.tmp_path.clone();
        let io_err = |e: io::Error| SegmentError::io(&tmp_path, e);
        let too_large = |what: &str| SegmentError::InvalidInput {
            path: final_path.clone(),
            reason: format!("{what} exceeds the format's limits"),
        };
        let series = std::mem::take(&mut self.series);
        let Some(out) = self.out.as_mut() else {
            return Err(SegmentError::Poisoned { path: final_path });
        };

        let mut footer = Footer::default();
        let data_start = format::HEADER_LEN as u64;
        footer.set(
            Section::Data,
            SectionRef {
                offset: data_start,
                len: self.pos - data_start,
                crc: 0,
            },
        );
        let mut pos = self.pos;

        let mut symbols = SymbolTableBuilder::default();
        let mut postings = PostingsBuilder::default();
        for s in &series {
            for l in s.labels.iter() {
                symbols.add(&l.name);
                symbols.add(&l.value);
                postings.add(&l.name, &l.value, s.id);
            }
        }

        let mut w = Tracked::new(out);
        let refs = symbols.write(&mut w).map_err(|e| match e {
            SymbolWriteError::Io(e) => io_err(e),
            SymbolWriteError::TooLarge => too_large("symbol table"),
        })?;
        pos = w.finish(&mut footer, Section::Symbols, pos);

        let mut w = Tracked::new(out);
        let mut index = Vec::with_capacity(series.len());
        let mut rel = 0u64;
        let sym = |s: &str| {
            refs.get(s)
                .copied()
                .ok_or_else(|| too_large("symbol reference"))
        };
        for s in &series {
            index.push((s.id, rel));
            let mut header = [0u8; format::SERIES_HEADER_LEN];
            header[..8].copy_from_slice(&s.id.to_le_bytes());
            header[8..12].copy_from_slice(&(s.labels.len() as u32).to_le_bytes());
            header[12..].copy_from_slice(&(s.chunks.len() as u32).to_le_bytes());
            w.write_all(&header).map_err(io_err)?;
            for l in s.labels.iter() {
                w.write_all(&sym(&l.name)?.to_le_bytes()).map_err(io_err)?;
                w.write_all(&sym(&l.value)?.to_le_bytes()).map_err(io_err)?;
            }
            for c in &s.chunks {
                w.write_all(&c.encode()).map_err(io_err)?;
            }
            rel += (format::SERIES_HEADER_LEN
                + s.labels.len() * format::LABEL_REF_LEN
                + s.chunks.len() * format::CHUNK_ENTRY_LEN) as u64;
        }
        pos = w.finish(&mut footer, Section::Series, pos);

        let mut w = Tracked::new(out);
        for (id, offset) in &index {
            w.write_all(&id.to_le_bytes()).map_err(io_err)?;
            w.write_all(&offset.to_le_bytes()).map_err(io_err)?;
        }
        pos = w.finish(&mut footer, Section::SeriesIndex, pos);

        let mut w = Tracked::new(out);
        postings.write(&refs, &mut w).map_err(|e| match e {
            PostingsWriteError::Io(e) => io_err(e),
            PostingsWriteError::TooLarge => too_large("postings list"),
            PostingsWriteError::MissingSymbol => too_large("symbol reference"),
        })?;
        pos = w.finish(&mut footer, Section::Postings, pos);

        let meta = SegmentMeta {
            seq: self.seed.seq,
            level: self.seed.level,
            resolution_ms: self.seed.resolution_ms,
            mint: self.mint,
            maxt: self.maxt,
            num_series: series.len() as u64,
            num_chunks: self.num_chunks,
            num_samples: self.num_samples,
        };
        let mut w = Tracked::new(out);
        w.write_all(&meta.encode()).map_err(io_err)?;
        pos = w.finish(&mut footer, Section::Meta, pos);

        out.write_all(&footer.encode()).map_err(io_err)?;
        self.pos = pos + format::FOOTER_LEN as u64;
        Ok(meta)
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        if !self.tmp_live {
            return;
        }
        self.out = None;
        match fs::remove_file(&self.tmp_path) {
            Ok(()) => debug!(path = %self.tmp_path.display(), "unfinished segment discarded"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(path = %self.tmp_path.display(), error = %e, "could not remove unfinished segment")
            }
        }
    }
}

/// Counts and checksums the bytes of one section as they are written.
struct Tracked<'w, W: Write> {
    inner: &'w mut W,
    crc: u32,
    len: u64,
}

impl<'w, W: Write> Tracked<'w, W> {
    fn new(inner: &'w mut W) -> Self {
        Tracked {
            inner,
            crc: 0,
            len: 0,
        }
    }

    /// Records the section in the footer; returns the file offset after it.
    fn finish(self, footer: &mut Footer, section: Section, start: u64) -> u64 {
        footer.set(
            section,
            SectionRef {
                offset: start,
                len: self.len,
                crc: self.crc,
            },
        );
        start + self.len
    }
}

impl<W: Write> Write for Tracked<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written = buf.get(..n).unwrap_or(buf);
        self.crc = crc32c::crc32c_append(self.crc, written);
        self.len += written.len() as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), SegmentError> {
    #[cfg(unix)]
    {
        let d = File::open(dir).map_err(|e| SegmentError::io(dir, e))?;
        d.sync_all().map_err(|e| SegmentError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
