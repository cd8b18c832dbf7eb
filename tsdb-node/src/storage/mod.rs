//! The storage engine: series catalog, WAL, compressed head, immutable segments, querier,
//! compaction, downsampling and retention. [`Engine`] is the entry point.

pub mod catalog;
pub mod chunking;
pub mod codec;
pub mod downsample;
pub mod engine;
pub mod fsutil;
pub mod head;
pub mod layout;
pub mod model;
pub mod options;
pub mod querier;
pub mod segment;
pub mod tombstones;
mod varint;
pub mod wal;

use std::path::PathBuf;

pub use engine::{
    AppendOutcome, Engine, EngineStats, LabelSets, MaintenanceHandle, Quarantined, ReadEstimate,
    Rejection, Selection,
};
pub use model::{Label, Labels, MatchOp, Matcher, Sample, SeriesId, METRIC_NAME_LABEL};
pub use options::{EngineOptions, Retention};
pub use querier::{RollupPoint, RollupSeries, Series, SeriesAggregate};

/// Every error the engine reports. Variants name the file or the limit involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    #[error(transparent)]
    Segment(#[from] segment::SegmentError),
    #[error("segment {path} is damaged ({reason}); it has been quarantined")]
    CorruptSegment { path: PathBuf, reason: String },
    #[error("{path} is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
    #[error(transparent)]
    Head(#[from] head::HeadError),
    #[error(transparent)]
    Limit(#[from] catalog::LimitError),
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    #[error(transparent)]
    Tombstone(#[from] tombstones::TombstoneError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid storage configuration: {0}")]
    Config(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// Not enough replicas of the cluster answered (the write or read may be retried).
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
}
