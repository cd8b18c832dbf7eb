//! Start-up: finish or roll back interrupted work, open segments, replay the WAL.
//!
//! Crash-safety rests on three records, each replaced atomically:
//! - `data/CHECKPOINT` (`next_epoch`, `wal_start`): the last completed head cut. Level-0
//!   segments with `seq >= next_epoch` belong to a cut that did not finish and are deleted:
//!   the WAL from `wal_start` still holds all their data.
//! - `data/<id>.journal`: written before a compaction publishes its output. If every output
//!   listed exists, the compaction completed and its inputs are deleted; otherwise the outputs
//!   are deleted. Either the old set or the new set is visible, never both and never neither.
//! - `data/tombstones.json`: deletions not yet applied to every segment.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::id_memo::{self, IdMemo};
use super::{Counters, Engine, Quarantined, SegmentHandle, State};
use crate::storage::catalog::Catalog;
use crate::storage::fsutil::{sync_dir, write_atomic};
use crate::storage::head::Head;
use crate::storage::layout::{self, SegmentKind, SegmentName};
use crate::storage::options::EngineOptions;
use crate::storage::segment::Segment;
use crate::storage::tombstones::{Tombstone, Tombstones};
use crate::storage::wal::{self, Wal, WalOptions, WalRecord};
use crate::storage::StorageError;

/// Series with freshly sealed chunks that WAL replay lets queue before settling them: few, so
/// that a chunk is settled while its bytes are still in cache (with 4096, replay of the
/// reference day took 7–10 s instead of 5).
const REPLAY_SETTLE_BATCH: usize = 256;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct CheckpointRecord {
    pub next_epoch: u64,
    pub wal_start: u64,
    /// Newest timestamp accepted before the cut. Kept so that the out-of-order window does
    /// not widen after a restart when the newest samples were deleted and compacted away.
    #[serde(default = "min_time")]
    pub max_t: i64,
}

fn min_time() -> i64 {
    i64::MIN
}

impl CheckpointRecord {
    pub fn load(data_dir: &Path) -> Result<Self, StorageError> {
        let path = data_dir.join(layout::CHECKPOINT_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                path,
                reason: format!("unreadable checkpoint record: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CheckpointRecord {
                next_epoch: 1,
                wal_start: 0,
                max_t: i64::MIN,
            }),
            Err(source) => Err(StorageError::Io { path, source }),
        }
    }

    pub fn save(&self, data_dir: &Path) -> Result<(), StorageError> {
        let path = data_dir.join(layout::CHECKPOINT_FILE);
        let bytes = serde_json::to_vec(self).map_err(|e| StorageError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&path, &bytes).map_err(|source| StorageError::Io { path, source })
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Journal {
    pub outputs: Vec<String>,
    pub inputs: Vec<String>,
}

impl Journal {
    pub fn write(&self, path: &Path) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(self).map_err(|e| StorageError::Io {
            path: path.into(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(path, &bytes).map_err(|source| StorageError::Io {
            path: path.into(),
            source,
        })
    }
}

fn replay_error(e: wal::ReplayError<StorageError>) -> StorageError {
    match e {
        wal::ReplayError::Wal(e) => StorageError::Wal(e),
        wal::ReplayError::Apply { source, .. } => source,
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Moves a file into `data/quarantine/` and says why, loudly.
pub(crate) fn quarantine_file(data_dir: &Path, path: &Path, reason: &str) -> Quarantined {
    let qdir = data_dir.join(layout::QUARANTINE_DIR);
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let target = qdir.join(&name);
    let moved = fs::create_dir_all(&qdir).and_then(|_| fs::rename(path, &target));
    match &moved {
        Ok(()) => {
            tracing::error!(file = %path.display(), moved_to = %target.display(), %reason, "segment quarantined");
            let _ = sync_dir(data_dir);
        }
        Err(e) => {
            tracing::error!(file = %path.display(), %reason, error = %e, "segment is damaged and could not be moved to quarantine; it is no longer served")
        }
    }
    Quarantined {
        file: if moved.is_ok() {
            target
        } else {
            path.to_path_buf()
        },
        reason: reason.to_string(),
    }
}

fn remove_if_exists(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::Io {
            path: path.into(),
            source: e,
        }),
    }
}

/// Completes or rolls back every interrupted compaction.
fn resolve_journals(data_dir: &Path) -> Result<(), StorageError> {
    for entry in fs::read_dir(data_dir).map_err(io_err(data_dir))? {
        let path = entry.map_err(io_err(data_dir))?.path();
        if path.extension().and_then(|e| e.to_str())
            != Some(layout::JOURNAL_SUFFIX.trim_start_matches('.'))
        {
            continue;
        }
        let journal: Journal = match fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(j) => j,
            None => {
                // A journal is written atomically, so an unreadable one was never complete:
                // nothing was published under it.
                tracing::warn!(file = %path.display(), "ignoring unreadable compaction journal");
                remove_if_exists(&path)?;
                continue;
            }
        };
        let complete = journal.outputs.iter().all(|o| data_dir.join(o).exists());
        if complete {
            tracing::info!(file = %path.display(), "finishing interrupted compaction: removing its inputs");
            for i in &journal.inputs {
                remove_if_exists(&data_dir.join(i))?;
            }
        } else {
            tracing::info!(file = %path.display(), "rolling back interrupted compaction: removing its outputs");
            for o in &journal.outputs {
                remove_if_exists(&data_dir.join(o))?;
                remove_if_exists(&data_dir.join(format!("{o}{}", layout::TMP_SUFFIX)))?;
            }
        }
        sync_dir(data_dir).map_err(io_err(data_dir))?;
        remove_if_exists(&path)?;
    }
    Ok(())
}

pub(super) fn open(opts: EngineOptions) -> Result<Engine, StorageError> {
    opts.validate().map_err(StorageError::Config)?;
    let data_dir = opts.data_dir.clone();
    fs::create_dir_all(&data_dir).map_err(io_err(&data_dir))?;
    fs::create_dir_all(&opts.wal_dir).map_err(io_err(&opts.wal_dir))?;

    resolve_journals(&data_dir)?;
    let checkpoint = CheckpointRecord::load(&data_dir)?;

    let mut catalog = Catalog::new(opts.limits.clone());
    let mut segments: Vec<Arc<SegmentHandle>> = Vec::new();
    let mut quarantined = Vec::new();
    let mut max_t = checkpoint.max_t;
    let mut names: Vec<(SegmentName, PathBuf)> = Vec::new();
    for entry in fs::read_dir(&data_dir).map_err(io_err(&data_dir))? {
        let path = entry.map_err(io_err(&data_dir))?.path();
        let Some(file) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if file.ends_with(layout::TMP_SUFFIX) {
            // Unpublished output of an interrupted write.
            remove_if_exists(&path)?;
            continue;
        }
        if !file.ends_with(layout::SEGMENT_SUFFIX) {
            continue;
        }
        match SegmentName::parse(&file) {
            Some(n) => names.push((n, path)),
            None => quarantined.push(quarantine_file(
                &data_dir,
                &path,
                "unrecognised segment file name",
            )),
        }
    }
    names.sort_by_key(|(n, _)| (n.seq, n.uid));
    for (name, path) in names {
        if matches!(name.kind, SegmentKind::Raw { level: 0 }) && name.seq >= checkpoint.next_epoch {
            tracing::info!(file = %path.display(), "removing segment of an unfinished checkpoint; the WAL still holds its data");
            remove_if_exists(&path)?;
            continue;
        }
        let seg = match Segment::open(&path) {
            Ok(s) => s,
            Err(e) => {
                quarantined.push(quarantine_file(&data_dir, &path, &e.to_string()));
                continue;
            }
        };
        if seg.meta().seq != name.seq {
            quarantined.push(quarantine_file(
                &data_dir,
                &path,
                "seq in file differs from its name",
            ));
            continue;
        }
        let mut bad = None;
        for item in seg.iter_series() {
            let res = item
                .map_err(|e| e.to_string())
                .and_then(|(id, labels)| catalog.insert(id, labels).map_err(|e| e.to_string()));
            if let Err(reason) = res {
                bad = Some(reason);
                break;
            }
        }
        if let Some(reason) = bad {
            quarantined.push(quarantine_file(&data_dir, &path, &reason));
            continue;
        }
        if matches!(name.kind, SegmentKind::Raw { .. }) && seg.meta().num_samples > 0 {
            max_t = max_t.max(seg.meta().maxt);
        }
        segments.push(Arc::new(SegmentHandle { name, path, seg }));
    }

    // Series definitions that outlived the WAL files they were first logged in.
    let series_dir = data_dir.join(layout::SERIES_LOG_DIR);
    fs::create_dir_all(&series_dir).map_err(io_err(&series_dir))?;
    wal::replay(&series_dir, |rec| -> Result<(), StorageError> {
        if let WalRecord::Series { id, labels } = rec {
            if let Err(e) = catalog.insert(id, labels) {
                tracing::warn!(error = %e, "series log entry conflicts with the catalog; skipped");
            }
        }
        Ok(())
    })
    .map_err(replay_error)?;
    let series_log = Wal::open(
        &series_dir,
        WalOptions {
            segment_size: opts.wal_segment_size,
            sync: opts.wal_sync,
            ..WalOptions::default()
        },
    )?;

    let tombstones_path = data_dir.join(layout::TOMBSTONES_FILE);
    let mut tombstones = Tombstones::load(&tombstones_path)?;
    tombstones.forget_from_epoch(checkpoint.next_epoch);

    // WAL files before the checkpoint's start are covered by segments.
    for n in wal::segments(&opts.wal_dir)? {
        if n < checkpoint.wal_start {
            remove_if_exists(&opts.wal_dir.join(wal::segment_file_name(n)))?;
        }
    }
    let head_epoch = checkpoint.next_epoch;
    let mut head = Head::new();
    let mut unknown_series = 0u64;
    let mut new_series = Vec::new();
    let mut bad_series = 0u64;
    let chunk = opts.head_chunk_samples;
    let started = std::time::Instant::now();
    let stats = wal::replay(&opts.wal_dir, |rec| -> Result<(), StorageError> {
        match rec {
            WalRecord::Series { id, labels } => {
                new_series.push(id);
                if let Err(e) = catalog.insert(id, labels) {
                    tracing::warn!(error = %e, "WAL series record conflicts with the catalog; skipped");
                    bad_series += 1;
                }
            }
            WalRecord::Samples(samples) => {
                for (id, s) in samples {
                    if !catalog.contains(id) {
                        unknown_series += 1;
                        continue;
                    }
                    head.append(id, s, chunk)?;
                    max_t = max_t.max(s.t);
                }
                // Settled as replay goes, so that a large head never sits in Gorilla form
                // (about five times the size) before the settling thread starts.
                if head.unsettled_series() >= REPLAY_SETTLE_BATCH {
                    head.settle_queued();
                }
            }
            WalRecord::Tombstone { matchers, mint, maxt } => {
                let ids = catalog.select(&matchers);
                head.delete(&ids, mint, maxt, chunk)?;
                tombstones.add(Tombstone {
                    epoch: head_epoch,
                    matchers,
                    mint,
                    maxt,
                });
            }
        }
        Ok(())
    })
    .map_err(replay_error)?;
    head.settle_queued();
    if unknown_series > 0 || bad_series > 0 {
        tracing::warn!(
            unknown_series,
            bad_series,
            "WAL replay dropped samples of series whose definition was lost to damage"
        );
    }
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        records = stats.records,
        samples = stats.samples,
        seconds = secs,
        truncated_bytes = stats.truncated_bytes,
        corrupt = stats.corrupt_segments.len(),
        "WAL replayed"
    );
    tombstones.save(&tombstones_path)?;

    let wal = Wal::open(
        &opts.wal_dir,
        WalOptions {
            segment_size: opts.wal_segment_size,
            sync: opts.wal_sync,
            sync_delay: opts.wal_sync_delay,
            ..WalOptions::default()
        },
    )?;
    let state = State {
        catalog,
        head,
        head_epoch,
        frozen: None,
        segments,
        tombstones,
        max_t,
        quarantined,
        new_series,
    };
    Ok(Engine {
        opts,
        wal,
        series_log,
        state: RwLock::new(state),
        maintenance: Mutex::new(()),
        counters: Counters::default(),
        last_checkpoint: Mutex::new(std::time::Instant::now()),
        checkpoint_unrecorded: std::sync::atomic::AtomicBool::new(false),
        id_memo: RwLock::new(IdMemo::new(id_memo::MAX_ENTRIES)),
    })
}
