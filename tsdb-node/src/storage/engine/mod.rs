//! The storage engine: the one object the server talks to.
//!
//! Write path: `append` validates a batch, logs it to the WAL and applies it to the head while
//! holding the state's write lock (so the WAL order is the order the head saw), then waits for
//! the WAL's group commit outside the lock. Background maintenance cuts the head into level-0
//! segments (`checkpoint`), compacts them into time blocks, computes rollups and applies
//! retention. See ARCHITECTURE.md for the invariants on `seq` and epochs.

mod checkpoint;
mod compact;
mod downsample;
mod each;
mod estimate;
mod handle;
mod id_memo;
mod maintenance;
mod recovery;
mod replica;
mod retention;
mod settle;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use each::Selection;
pub use estimate::ReadEstimate;
pub use handle::SegmentHandle;
use id_memo::IdMemo;
pub use maintenance::MaintenanceHandle;

use crate::storage::catalog::{Catalog, LimitError};
use crate::storage::head::Head;
use crate::storage::layout::{self, SegmentKind};
use crate::storage::model::{Labels, Matcher, Sample, SeriesId};
use crate::storage::options::EngineOptions;
use crate::storage::querier::{
    is_raw, rollup_valid, RollupSeries, SelectedSeries, Series, SeriesAggregate, Snapshot, Source,
};
use crate::storage::tombstones::{Tombstone, Tombstones};
use crate::storage::wal::{Wal, WalRecord};
use crate::storage::StorageError;

/// The previous head, read-only while a checkpoint writes it to disk.
pub struct FrozenHead {
    pub head: Head,
    pub seq: u64,
    /// First WAL segment written after this head was frozen; older ones are covered once the
    /// head is on disk.
    pub wal_start: u64,
    /// Series created while this head was live, for the series log.
    pub new_series: Vec<(SeriesId, Labels)>,
}

/// A file moved aside because it could not be trusted.
#[derive(Clone, Debug)]
pub struct Quarantined {
    pub file: PathBuf,
    pub reason: String,
}

pub(crate) struct State {
    pub catalog: Catalog,
    pub head: Head,
    /// Epoch of the live head; segments cut from it get this seq.
    pub head_epoch: u64,
    pub frozen: Option<Arc<FrozenHead>>,
    pub segments: Vec<Arc<SegmentHandle>>,
    pub tombstones: Tombstones,
    /// Newest timestamp ever accepted; the out-of-order window is measured from it.
    pub max_t: i64,
    pub quarantined: Vec<Quarantined>,
    /// Series created since the last cut. Their definitions live only in the WAL until the
    /// checkpoint copies them to the series log, before it deletes the WAL files.
    pub new_series: Vec<SeriesId>,
}

/// Why one sample of a batch was not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Older than the out-of-order window allows.
    TooOld {
        t: i64,
        min_valid: i64,
    },
    UnknownSeries(SeriesId),
    /// The series breaks a limit or naming rule.
    InvalidSeries(crate::storage::catalog::LimitError),
    /// Refused by another node of the cluster that owns the series (its reason).
    Replica(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::TooOld { t, min_valid } => write!(
                f,
                "sample at {t} ms is older than the out-of-order window allows (oldest accepted: {min_valid} ms)"
            ),
            Rejection::UnknownSeries(id) => write!(f, "unknown series id {id}"),
            Rejection::InvalidSeries(e) => write!(f, "{e}"),
            Rejection::Replica(why) => write!(f, "{why}"),
        }
    }
}

/// Result of an append: how many samples are durable, and which were refused.
#[derive(Debug, Default, Clone)]
pub struct AppendOutcome {
    pub appended: usize,
    /// Index into the batch, and why.
    pub rejected: Vec<(usize, Rejection)>,
}

/// Where a batch's label sets come from: decides whether the engine remembers their series ids
/// by allocation (see `id_memo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelSets {
    /// Ingest's label caches: the same allocation comes back with the series' next batch.
    Cached,
    /// Built for this batch alone (cluster RPCs, repairs): remembering them would only fill the
    /// memo with allocations that never come back.
    PerBatch,
}

/// Figures for the status page and `/metrics`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EngineStats {
    pub series: usize,
    pub head_series: usize,
    pub head_samples: u64,
    pub head_bytes: usize,
    pub raw_segments: usize,
    pub rollup_segments: usize,
    pub segment_bytes: u64,
    pub segment_samples: u64,
    pub wal_bytes: u64,
    pub tombstones: usize,
    pub quarantined: Vec<String>,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
    pub samples_appended_total: u64,
    pub checkpoints_total: u64,
    pub compactions_total: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub samples_appended: AtomicU64,
    pub checkpoints: AtomicU64,
    pub compactions: AtomicU64,
}

pub struct Engine {
    pub(crate) opts: EngineOptions,
    pub(crate) wal: Wal,
    /// Every series definition ever made durable past a checkpoint (`data/series/`), in WAL
    /// format. Segments also carry labels, but a series whose samples were all deleted and
    /// compacted away can still receive new samples, so its definition must outlive them.
    pub(crate) series_log: Wal,
    pub(crate) state: RwLock<State>,
    /// One checkpoint/compaction/downsampling/retention pass at a time.
    pub(crate) maintenance: Mutex<()>,
    pub(crate) counters: Counters,
    pub(crate) last_checkpoint: Mutex<std::time::Instant>,
    /// Set while segments of a cut are visible but `CHECKPOINT` does not record the cut yet.
    /// Compaction must not merge such segments: after a crash recovery would delete the
    /// level-0 files and replay their WAL, but not undo a block built from them.
    pub(crate) checkpoint_unrecorded: std::sync::atomic::AtomicBool,
    /// Ids of the label sets ingest handed over recently, by allocation: spares appends the
    /// catalog's keyed hash. Only ever locked alone.
    pub(crate) id_memo: RwLock<IdMemo>,
}

impl Engine {
    /// Opens (or creates) the engine's directories, recovers from any crash and replays the WAL.
    pub fn open(opts: EngineOptions) -> Result<Engine, StorageError> {
        recovery::open(opts)
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// The id of a series, creating it (and logging it to the WAL) if it is new.
    pub fn series_id(&self, labels: &Labels) -> Result<SeriesId, StorageError> {
        if let Some(id) = self.state.read().catalog.id_of(labels) {
            return Ok(id);
        }
        let mut st = self.state.write();
        let (id, created) = st.catalog.get_or_create(labels)?;
        if created {
            st.new_series.push(id);
            // Not waited for: the samples that follow are logged after it, and their wait
            // covers it.
            self.wal.enqueue(&[WalRecord::Series {
                id,
                labels: labels.clone(),
            }])?;
        }
        Ok(id)
    }

    /// Appends samples; returns once every accepted sample is durable in the WAL.
    pub fn append(&self, batch: &[(SeriesId, Sample)]) -> Result<AppendOutcome, StorageError> {
        self.append_within(batch, self.opts.out_of_order_window_ms)
    }

    /// [`Engine::append`] refusing samples older than the newest minus `window` ms.
    pub(crate) fn append_within(
        &self,
        batch: &[(SeriesId, Sample)],
        window: i64,
    ) -> Result<AppendOutcome, StorageError> {
        let mut outcome = AppendOutcome::default();
        if batch.is_empty() {
            return Ok(outcome);
        }
        // Encoded before the state lock on the bet that every sample is accepted (the common
        // case), so that appends serialise only on validation and the head; re-encoded under
        // the lock when some sample was refused.
        let optimistic = Wal::encode_samples(batch)?;
        let ticket = {
            let mut st = self.state.write();
            let mut max_t = st.max_t;
            let mut accepted = Vec::with_capacity(batch.len());
            // Batches grouped by series repeat an id many times in a row: look it up once.
            let mut known: Option<SeriesId> = None;
            for (i, &(id, s)) in batch.iter().enumerate() {
                let min_valid = if max_t == i64::MIN {
                    i64::MIN
                } else {
                    max_t.saturating_sub(window)
                };
                if s.t < min_valid {
                    outcome
                        .rejected
                        .push((i, Rejection::TooOld { t: s.t, min_valid }));
                } else if known != Some(id) && !st.catalog.contains(id) {
                    outcome.rejected.push((i, Rejection::UnknownSeries(id)));
                } else {
                    known = Some(id);
                    max_t = max_t.max(s.t);
                    accepted.push((id, s));
                }
            }
            if accepted.is_empty() {
                return Ok(outcome);
            }
            let ticket = if accepted.len() == batch.len() {
                self.wal.enqueue_encoded(&optimistic)?
            } else {
                self.wal.enqueue_encoded(&Wal::encode_samples(&accepted)?)?
            };
            let chunk = self.opts.head_chunk_samples;
            let mut run: Vec<Sample> = Vec::new();
            for group in accepted.chunk_by(|a, b| a.0 == b.0) {
                let Some(&(id, _)) = group.first() else {
                    continue;
                };
                run.clear();
                run.extend(group.iter().map(|&(_, s)| s));
                st.head.append_run(id, &run, chunk)?;
            }
            st.max_t = max_t;
            outcome.appended = accepted.len();
            ticket
        };
        self.wal.wait_durable(ticket)?;
        self.counters
            .samples_appended
            .fetch_add(outcome.appended as u64, Ordering::Relaxed);
        Ok(outcome)
    }

    /// Appends samples given by label set. A series that breaks a limit is refused sample by
    /// sample (reported in `rejected` with its batch index); the rest is stored.
    pub fn append_labeled(
        &self,
        batch: &[(Labels, Sample)],
    ) -> Result<AppendOutcome, StorageError> {
        self.append_labeled_within(batch, self.opts.out_of_order_window_ms, LabelSets::Cached)
    }

    /// [`Engine::append_labeled`] refusing samples older than the newest minus `window` ms.
    pub fn append_labeled_within(
        &self,
        batch: &[(Labels, Sample)],
        window: i64,
        sets: LabelSets,
    ) -> Result<AppendOutcome, StorageError> {
        let resolved = self.resolve_series(sets, batch.iter().map(|(l, _)| l))?;
        let mut ids = Vec::with_capacity(batch.len());
        let mut index = Vec::with_capacity(batch.len());
        let mut refused = Vec::new();
        for (i, ((_, s), id)) in batch.iter().zip(resolved).enumerate() {
            match id {
                Ok(id) => {
                    ids.push((id, *s));
                    index.push(i);
                }
                Err(e) => refused.push((i, Rejection::InvalidSeries(e))),
            }
        }
        self.append_mapped(&ids, &index, refused, window)
    }

    /// Appends samples grouped by series: each label set once with its samples in order. The
    /// cheapest way in for protocols that carry series (remote write, binary batches), since
    /// no label set is copied per sample. Indices in `rejected` count samples in batch order
    /// (series after series).
    pub fn append_series(
        &self,
        batch: &[(Labels, Vec<Sample>)],
    ) -> Result<AppendOutcome, StorageError> {
        self.append_series_within(batch, self.opts.out_of_order_window_ms, LabelSets::Cached)
    }

    /// [`Engine::append_series`] refusing samples older than the newest minus `window` ms.
    pub(crate) fn append_series_within(
        &self,
        batch: &[(Labels, Vec<Sample>)],
        window: i64,
        sets: LabelSets,
    ) -> Result<AppendOutcome, StorageError> {
        let resolved = self.resolve_series(sets, batch.iter().map(|(l, _)| l))?;
        let total = batch.iter().map(|(_, s)| s.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut index = Vec::with_capacity(total);
        let mut refused = Vec::new();
        let mut offset = 0;
        for ((_, samples), id) in batch.iter().zip(resolved) {
            match id {
                Ok(id) => {
                    ids.extend(samples.iter().map(|s| (id, *s)));
                    index.extend(offset..offset + samples.len());
                }
                Err(e) => refused.extend(
                    (offset..offset + samples.len())
                        .map(|i| (i, Rejection::InvalidSeries(e.clone()))),
                ),
            }
            offset += samples.len();
        }
        self.append_mapped(&ids, &index, refused, window)
    }

    /// The series id of each label set, creating series that do not exist yet; a label set
    /// that breaks a limit gets its error. Known series are resolved under one read lock for
    /// the whole batch: by the memo when ingest handed over a remembered allocation, by the
    /// previous entry when the same label set repeats (remote write and line protocol send a
    /// series' samples adjacent), else by the catalog, whose lookup hashes every label.
    fn resolve_series<'a>(
        &self,
        sets: LabelSets,
        labels: impl ExactSizeIterator<Item = &'a Labels> + Clone,
    ) -> Result<Vec<Result<SeriesId, LimitError>>, StorageError> {
        let remembered = self.remembered_ids(sets, labels.clone());
        let mut learned = Vec::new();
        let mut resolved: Vec<Option<SeriesId>> = Vec::with_capacity(labels.len());
        {
            let st = self.state.read();
            let mut last: Option<(&Labels, SeriesId)> = None;
            for (l, memo) in labels.clone().zip(remembered) {
                let id = match (last, memo) {
                    (Some((prev, id)), _) if prev == l => Some(id),
                    (_, Some(id)) if st.catalog.contains(id) => Some(id),
                    _ => {
                        let id = st.catalog.id_of(l);
                        learned.extend(id.map(|id| (l, id)));
                        id
                    }
                };
                if let Some(id) = id {
                    last = Some((l, id));
                }
                resolved.push(id);
            }
        }
        let mut out = Vec::with_capacity(resolved.len());
        for (l, id) in labels.zip(resolved) {
            out.push(match id {
                Some(id) => Ok(id),
                None => match self.series_id(l) {
                    Ok(id) => {
                        learned.push((l, id));
                        Ok(id)
                    }
                    Err(StorageError::Limit(e)) => Err(e),
                    Err(e) => return Err(e),
                },
            });
        }
        self.remember_ids(sets, learned);
        Ok(out)
    }

    /// The memo's id for each label set, unchecked: the caller confirms under the state lock
    /// that the catalog still contains it.
    fn remembered_ids<'a>(
        &self,
        sets: LabelSets,
        labels: impl ExactSizeIterator<Item = &'a Labels>,
    ) -> Vec<Option<SeriesId>> {
        if sets == LabelSets::PerBatch {
            return vec![None; labels.len()];
        }
        let memo = self.id_memo.read();
        labels.map(|l| memo.get(l)).collect()
    }

    /// Remembers ids the catalog resolved, for the next batch that brings the same label sets.
    fn remember_ids(&self, sets: LabelSets, learned: Vec<(&Labels, SeriesId)>) {
        if learned.is_empty() || sets == LabelSets::PerBatch {
            return;
        }
        let mut memo = self.id_memo.write();
        for (labels, id) in learned {
            memo.remember(labels, id);
        }
    }

    /// Appends resolved samples; `index[k]` is the caller's position of `ids[k]`, and
    /// `refused` the positions already refused while resolving series.
    fn append_mapped(
        &self,
        ids: &[(SeriesId, Sample)],
        index: &[usize],
        refused: Vec<(usize, Rejection)>,
        window: i64,
    ) -> Result<AppendOutcome, StorageError> {
        let mut out = self.append_within(ids, window)?;
        for r in &mut out.rejected {
            if let Some(&i) = index.get(r.0) {
                r.0 = i;
            }
        }
        out.rejected.extend(refused);
        out.rejected.sort_by_key(|r| r.0);
        Ok(out)
    }

    /// Deletes the samples of the matched series in `[mint, maxt]`. Durable on return.
    pub fn delete(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<usize, StorageError> {
        if mint > maxt {
            return Err(StorageError::InvalidArgument(format!(
                "delete: start {mint} is after end {maxt}"
            )));
        }
        let (ticket, ids) = {
            let mut st = self.state.write();
            let ids = st.catalog.select(matchers);
            let ticket = self.wal.enqueue(&[WalRecord::Tombstone {
                matchers: matchers.to_vec(),
                mint,
                maxt,
            }])?;
            let chunk = self.opts.head_chunk_samples;
            st.head.delete(&ids, mint, maxt, chunk)?;
            let epoch = st.head_epoch;
            st.tombstones.add(Tombstone {
                epoch,
                matchers: matchers.to_vec(),
                mint,
                maxt,
            });
            st.tombstones
                .save(&self.opts.data_dir.join(layout::TOMBSTONES_FILE))?;
            (ticket, ids)
        };
        self.wal.wait_durable(ticket)?;
        Ok(ids.len())
    }

    fn snapshot(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        rollup_resolution: Option<i64>,
    ) -> Snapshot {
        let st = self.state.read();
        // Rollup queries read raw data for the whole buckets around the range.
        let (rmin, rmax) = match rollup_resolution {
            Some(r) => (
                layout::bucket_start(mint, r),
                layout::bucket_start(maxt, r).saturating_add(r - 1),
            ),
            None => (mint, maxt),
        };
        let ids = st.catalog.select(matchers);
        let mut series = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(labels) = st.catalog.labels(id) else {
                continue;
            };
            let mut head = Vec::new();
            if let Some(ms) = st.head.series(id) {
                // A decoding failure here is an engine bug, not bad input: the head only holds
                // chunks it encoded itself. Surface it loudly but keep serving the rest.
                if let Err(e) = ms.samples_in(rmin, rmax, &mut head) {
                    tracing::error!(series = %labels, error = %e, "head chunk failed to decode");
                }
            }
            series.push(SelectedSeries { id, labels, head });
        }
        let mut sources: Vec<Source> = st
            .segments
            .iter()
            .filter(|h| is_raw(h) && h.name.overlaps(rmin, rmax))
            .map(|h| Source::Segment(h.clone()))
            .collect();
        if let Some(f) = &st.frozen {
            sources.push(Source::Frozen(f.clone()));
        }
        sources.sort_by_key(|s| s.seq());
        let mut rollups = Vec::new();
        let mut raw_extents = Vec::new();
        if let Some(res) = rollup_resolution {
            rollups = st
                .segments
                .iter()
                .filter(|h| {
                    h.name.kind == SegmentKind::Rollup { resolution_ms: res }
                        && h.name.overlaps(rmin, rmax)
                })
                .cloned()
                .collect();
            raw_extents = raw_extents_of(&st);
        }
        let tombstones = st
            .tombstones
            .iter()
            .filter(|t| t.mint <= rmax && t.maxt >= rmin)
            .cloned()
            .collect();
        Snapshot {
            series,
            sources,
            rollups,
            raw_extents,
            tombstones,
            mint,
            maxt,
        }
    }

    /// The end of the newest window that rollups of `resolution_ms` answer for (see
    /// [`rollup_valid`]); `None` when none do. Windows before it may still be stale for some
    /// series (a later deletion) or missing; [`Engine::select_rollup`] reads raw data there.
    pub fn rollup_coverage_end(&self, resolution_ms: i64) -> Option<i64> {
        let st = self.state.read();
        let rollups: Vec<&Arc<SegmentHandle>> = st
            .segments
            .iter()
            .filter(|h| h.name.kind == SegmentKind::Rollup { resolution_ms })
            .collect();
        let raw_extents = raw_extents_of(&st);
        rollups
            .iter()
            .filter(|r| rollup_valid(r, rollups.iter().copied(), &raw_extents))
            .map(|r| r.name.end)
            .max()
    }

    /// Runs `f` on a snapshot; a segment found corrupt on the way is quarantined and the query
    /// fails with an error naming it, never with wrong values.
    fn with_snapshot<T>(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        resolution: Option<i64>,
        f: impl FnOnce(&Snapshot) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        if mint > maxt {
            return Err(StorageError::InvalidArgument(format!(
                "query start {mint} is after end {maxt}"
            )));
        }
        let snap = self.snapshot(matchers, mint, maxt, resolution);
        let res = f(&snap);
        if let Err(StorageError::CorruptSegment { path, reason }) = &res {
            self.quarantine_path(path, reason);
        }
        res
    }

    /// Every selected series' samples in `[mint, maxt]` (inclusive), merged over head,
    /// out-of-order data and segments, deduplicated, in time order.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, StorageError> {
        self.with_snapshot(matchers, mint, maxt, None, |s| s.select())
    }

    /// Like [`Engine::select`], keeping only the samples whose timestamps `keep` accepts.
    /// Chunks are still decoded whole, but only kept samples are materialised: the PromQL
    /// rollup path reads the few raw samples at window edges this way.
    pub fn select_where(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        keep: impl Fn(i64) -> bool,
    ) -> Result<Vec<Series>, StorageError> {
        self.with_snapshot(matchers, mint, maxt, None, |s| s.select_where(keep))
    }

    /// Count, sum, min, max, first and last per series over `[t0, t1)`, computed while
    /// decoding.
    pub fn aggregate(
        &self,
        matchers: &[Matcher],
        t0: i64,
        t1: i64,
    ) -> Result<Vec<SeriesAggregate>, StorageError> {
        if t1 <= t0 {
            return Ok(Vec::new());
        }
        self.with_snapshot(matchers, t0, t1 - 1, None, |s| s.aggregate())
    }

    /// Downsampled series: one point per `resolution_ms` bucket whose start is in
    /// `[mint, maxt]`. Uses stored rollups where they are valid, raw data elsewhere.
    pub fn select_rollup(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        resolution_ms: i64,
    ) -> Result<Vec<RollupSeries>, StorageError> {
        if resolution_ms <= 0 {
            return Err(StorageError::InvalidArgument(format!(
                "resolution must be positive, got {resolution_ms}"
            )));
        }
        self.with_snapshot(matchers, mint, maxt, Some(resolution_ms), |s| {
            s.select_rollup(resolution_ms)
        })
    }

    /// Ids of the selected series that have data in `[mint, maxt]`.
    fn series_with_data(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesId>, StorageError> {
        let all = mint == i64::MIN && maxt == i64::MAX;
        if all {
            return Ok(self.state.read().catalog.select(matchers));
        }
        Ok(self
            .select(matchers, mint, maxt)?
            .into_iter()
            .map(|s| s.id)
            .collect())
    }

    /// Label names of the selected series (all series when `matchers` is empty) with data in
    /// the range.
    pub fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let ids = self.series_with_data(matchers, mint, maxt)?;
        Ok(self.state.read().catalog.label_names(Some(&ids)))
    }

    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let ids = self.series_with_data(matchers, mint, maxt)?;
        Ok(self.state.read().catalog.label_values(name, Some(&ids)))
    }

    /// Label sets of the selected series with data in the range.
    pub fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        let ids = self.series_with_data(matchers, mint, maxt)?;
        let st = self.state.read();
        Ok(ids.iter().filter_map(|id| st.catalog.labels(*id)).collect())
    }

    pub fn stats(&self) -> EngineStats {
        let st = self.state.read();
        let mut s = EngineStats {
            series: st.catalog.len(),
            head_series: st.head.num_series(),
            head_samples: st.head.appended_samples(),
            head_bytes: st.head.heap_bytes(),
            wal_bytes: self.wal.size_bytes(),
            tombstones: st.tombstones.len(),
            quarantined: st
                .quarantined
                .iter()
                .map(|q| format!("{}: {}", q.file.display(), q.reason))
                .collect(),
            samples_appended_total: self.counters.samples_appended.load(Ordering::Relaxed),
            checkpoints_total: self.counters.checkpoints.load(Ordering::Relaxed),
            compactions_total: self.counters.compactions.load(Ordering::Relaxed),
            ..Default::default()
        };
        let mut lo = i64::MAX;
        let mut hi = i64::MIN;
        for h in &st.segments {
            s.segment_bytes += h.seg.file_size();
            match h.name.kind {
                SegmentKind::Raw { .. } => {
                    s.raw_segments += 1;
                    s.segment_samples += h.seg.meta().num_samples;
                    lo = lo.min(h.seg.meta().mint);
                    hi = hi.max(h.seg.meta().maxt);
                }
                SegmentKind::Rollup { .. } => s.rollup_segments += 1,
            }
        }
        if let Some((a, b)) = st.head.time_range() {
            lo = lo.min(a);
            hi = hi.max(b);
        }
        if lo <= hi {
            s.min_time = Some(lo);
            s.max_time = Some(hi);
        }
        s
    }

    /// Files set aside at start-up or when a read found them damaged.
    pub fn quarantined(&self) -> Vec<Quarantined> {
        self.state.read().quarantined.clone()
    }

    /// Moves a damaged segment out of the way and stops serving it.
    pub(crate) fn quarantine_path(&self, path: &std::path::Path, reason: &str) {
        let mut st = self.state.write();
        let Some(pos) = st.segments.iter().position(|h| h.path == path) else {
            return;
        };
        st.segments.remove(pos);
        let q = recovery::quarantine_file(&self.opts.data_dir, path, reason);
        st.quarantined.push(q);
    }

    /// Cuts the head into a segment now (the `flush` admin action), then shuts nothing down.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.checkpoint()
    }

    /// Flushes the head so that the next start replays little, and makes the WAL durable.
    pub fn close(&self) -> Result<(), StorageError> {
        self.checkpoint()
    }
}

/// Every raw extent as `(seq, start, end)`: segments, the frozen head (seq of its cut) and the
/// live head (newer than anything, `u64::MAX`).
fn raw_extents_of(st: &State) -> Vec<(u64, i64, i64)> {
    let mut raw_extents: Vec<(u64, i64, i64)> = st
        .segments
        .iter()
        .filter(|h| is_raw(h))
        .map(|h| (h.name.seq, h.name.start, h.name.end))
        .collect();
    if let Some(f) = &st.frozen {
        if let Some((a, b)) = f.head.time_range() {
            raw_extents.push((f.seq, a, b));
        }
    }
    if let Some((a, b)) = st.head.time_range() {
        raw_extents.push((u64::MAX, a, b));
    }
    raw_extents
}
