//! Engine configuration with production defaults.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::storage::catalog::SeriesLimits;

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Source of "now" in milliseconds since the epoch; injectable so that retention and the
/// out-of-order window can be tested without waiting.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn wall_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

/// How long data of each resolution is kept; `None` keeps it forever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    pub raw_ms: Option<i64>,
    pub rollup_1m_ms: Option<i64>,
    pub rollup_5m_ms: Option<i64>,
    pub rollup_1h_ms: Option<i64>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw_ms: Some(30 * DAY_MS),
            rollup_1m_ms: Some(90 * DAY_MS),
            rollup_5m_ms: Some(365 * DAY_MS),
            rollup_1h_ms: None,
        }
    }
}

impl Retention {
    pub fn keep_forever() -> Self {
        Retention {
            raw_ms: None,
            rollup_1m_ms: None,
            rollup_5m_ms: None,
            rollup_1h_ms: None,
        }
    }

    /// Retention of a resolution (0 = raw). Rollup resolutions other than the standard three
    /// take the retention of the standard class they fall in: below 5 min the 1-minute
    /// setting, below 1 h the 5-minute one, else the 1-hour one.
    pub fn for_resolution(&self, resolution_ms: i64) -> Option<i64> {
        match resolution_ms {
            r if r <= 0 => self.raw_ms,
            r if r < 5 * MINUTE_MS => self.rollup_1m_ms,
            r if r < HOUR_MS => self.rollup_5m_ms,
            _ => self.rollup_1h_ms,
        }
    }
}

#[derive(Clone)]
pub struct EngineOptions {
    pub data_dir: PathBuf,
    pub wal_dir: PathBuf,
    /// WAL segment size; a checkpoint is also triggered when the WAL grows past it.
    pub wal_segment_size: u64,
    /// fsync the WAL before acknowledging. Only benchmarks and tests that measure something
    /// else turn this off.
    pub wal_sync: bool,
    /// Added to every WAL fsync: a slow disk on demand, for overload tests. Zero in
    /// production.
    pub wal_sync_delay: Duration,
    pub checkpoint_interval: Duration,
    /// Samples older than the newest sample minus this window are refused.
    pub out_of_order_window_ms: i64,
    /// Compaction block ranges, smallest first; each must divide the next.
    pub block_ranges_ms: Vec<i64>,
    /// Compact a block window early once it holds this many level-0 segments.
    pub max_level0_segments: usize,
    /// Rollup resolutions; each must divide the smallest block range.
    pub downsample_resolutions_ms: Vec<i64>,
    pub retention: Retention,
    pub limits: SeriesLimits,
    /// Samples per head chunk before it is sealed and re-encoded.
    pub head_chunk_samples: usize,
    /// Samples per chunk in compacted blocks: bigger chunks compress better, smaller ones
    /// decode less for narrow queries.
    pub block_chunk_samples: usize,
    pub clock: Clock,
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("data_dir", &self.data_dir)
            .field("wal_dir", &self.wal_dir)
            .field("wal_segment_size", &self.wal_segment_size)
            .field("wal_sync", &self.wal_sync)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("out_of_order_window_ms", &self.out_of_order_window_ms)
            .field("block_ranges_ms", &self.block_ranges_ms)
            .field("downsample_resolutions_ms", &self.downsample_resolutions_ms)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl EngineOptions {
    /// Defaults with `data/` and `wal/` under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        EngineOptions {
            data_dir: root.join("data"),
            wal_dir: root.join("wal"),
            wal_segment_size: 64 << 20,
            wal_sync: true,
            wal_sync_delay: Duration::ZERO,
            checkpoint_interval: Duration::from_secs(60),
            out_of_order_window_ms: HOUR_MS,
            block_ranges_ms: vec![2 * HOUR_MS, 6 * HOUR_MS, DAY_MS],
            max_level0_segments: 8,
            downsample_resolutions_ms: vec![MINUTE_MS, 5 * MINUTE_MS, HOUR_MS],
            retention: Retention::default(),
            limits: SeriesLimits::default(),
            head_chunk_samples: 120,
            block_chunk_samples: 2048,
            clock: wall_clock(),
        }
    }

    /// Checks the relations the engine relies on; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.block_ranges_ms.is_empty() {
            return Err("block_ranges_ms: at least one block range is required".into());
        }
        for w in self.block_ranges_ms.windows(2) {
            if w[0] <= 0 || w[1] % w[0] != 0 || w[1] <= w[0] {
                return Err(format!(
                    "block_ranges_ms: each range must be positive and divide the next larger one ({} / {})",
                    w[0], w[1]
                ));
            }
        }
        if self.block_ranges_ms[0] <= 0 {
            return Err("block_ranges_ms: ranges must be positive".into());
        }
        for r in &self.downsample_resolutions_ms {
            if *r <= 0 || self.block_ranges_ms[0] % r != 0 {
                return Err(format!(
                    "downsample_resolutions_ms: {r} must be positive and divide the smallest block range {}",
                    self.block_ranges_ms[0]
                ));
            }
        }
        if self.out_of_order_window_ms < 0 {
            return Err("out_of_order_window_ms: must not be negative".into());
        }
        if self.head_chunk_samples == 0 || self.block_chunk_samples == 0 {
            return Err("head_chunk_samples/block_chunk_samples: must be at least 1".into());
        }
        if self.wal_segment_size < 64 << 10 {
            return Err("wal_segment_size: must be at least 64 KiB".into());
        }
        Ok(())
    }
}
