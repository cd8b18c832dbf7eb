//! Deletions that are not yet physically applied.
//!
//! A deletion removes the matched samples from the live head at once (the head is rewritten in
//! memory) and is remembered as a tombstone with the head's epoch `E`. A tombstone hides data
//! only in sources older than the deletion: segments with `seq < E`. Samples written after the
//! deletion live in the head (epoch >= E) or in segments cut from it (seq >= E), so they are
//! untouched. Compaction applies tombstones physically; a tombstone is dropped once no source
//! it applies to overlaps it.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::storage::model::{Labels, MatchOp, Matcher};

#[derive(Clone, Debug)]
pub struct Tombstone {
    pub epoch: u64,
    pub matchers: Vec<Matcher>,
    pub mint: i64,
    pub maxt: i64,
}

impl Tombstone {
    pub fn applies_to(&self, labels: &Labels, source_seq: u64) -> bool {
        source_seq < self.epoch && self.matchers.iter().all(|m| m.matches_labels(labels))
    }

    fn same_as(&self, other: &Tombstone) -> bool {
        self.epoch == other.epoch
            && self.mint == other.mint
            && self.maxt == other.maxt
            && self.matchers.len() == other.matchers.len()
            && self
                .matchers
                .iter()
                .zip(&other.matchers)
                .all(|(a, b)| a.name == b.name && a.op == b.op && a.value == b.value)
    }
}

#[derive(Serialize, Deserialize)]
struct StoredMatcher {
    name: String,
    op: String,
    value: String,
}

#[derive(Serialize, Deserialize)]
struct StoredTombstone {
    epoch: u64,
    mint: i64,
    maxt: i64,
    matchers: Vec<StoredMatcher>,
}

#[derive(Debug, thiserror::Error)]
pub enum TombstoneError {
    #[error("tombstones file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tombstones file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Debug, Default)]
pub struct Tombstones {
    list: Vec<Tombstone>,
}

fn op_str(op: MatchOp) -> &'static str {
    match op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::RegexMatch => "=~",
        MatchOp::RegexNoMatch => "!~",
    }
}

impl Tombstones {
    pub fn load(path: &Path) -> Result<Self, TombstoneError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tombstones::default()),
            Err(source) => {
                return Err(TombstoneError::Io {
                    path: path.into(),
                    source,
                })
            }
        };
        let corrupt = |reason: String| TombstoneError::Corrupt {
            path: path.into(),
            reason,
        };
        let stored: Vec<StoredTombstone> =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let mut list = Vec::with_capacity(stored.len());
        for t in stored {
            let mut matchers = Vec::with_capacity(t.matchers.len());
            for m in t.matchers {
                let op = match m.op.as_str() {
                    "=" => MatchOp::Equal,
                    "!=" => MatchOp::NotEqual,
                    "=~" => MatchOp::RegexMatch,
                    "!~" => MatchOp::RegexNoMatch,
                    other => return Err(corrupt(format!("unknown matcher operator {other:?}"))),
                };
                matchers
                    .push(Matcher::new(op, m.name, m.value).map_err(|e| corrupt(e.to_string()))?);
            }
            list.push(Tombstone {
                epoch: t.epoch,
                matchers,
                mint: t.mint,
                maxt: t.maxt,
            });
        }
        Ok(Tombstones { list })
    }

    /// Writes the set atomically: temporary file, fsync, rename, fsync of the directory.
    pub fn save(&self, path: &Path) -> Result<(), TombstoneError> {
        let stored: Vec<StoredTombstone> = self
            .list
            .iter()
            .map(|t| StoredTombstone {
                epoch: t.epoch,
                mint: t.mint,
                maxt: t.maxt,
                matchers: t
                    .matchers
                    .iter()
                    .map(|m| StoredMatcher {
                        name: m.name.clone(),
                        op: op_str(m.op).into(),
                        value: m.value.clone(),
                    })
                    .collect(),
            })
            .collect();
        let io = |source| TombstoneError::Io {
            path: path.into(),
            source,
        };
        let json = serde_json::to_vec_pretty(&stored).map_err(|e| io(std::io::Error::other(e)))?;
        crate::storage::fsutil::write_atomic(path, &json).map_err(io)
    }

    /// Adds a tombstone unless the same one (same epoch) is already there, as happens when the
    /// WAL is replayed.
    pub fn add(&mut self, t: Tombstone) -> bool {
        if self.list.iter().any(|x| x.same_as(&t)) {
            return false;
        }
        self.list.push(t);
        true
    }

    /// Forgets tombstones from `epoch` on: after a restart the WAL replay adds them again with
    /// the epoch the replayed head really has.
    pub fn forget_from_epoch(&mut self, epoch: u64) {
        self.list.retain(|t| t.epoch < epoch);
    }

    pub fn retain(&mut self, keep: impl FnMut(&Tombstone) -> bool) {
        self.list.retain(keep);
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Tombstone> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Time ranges of `tombstones` that hide data of a series in a source with sequence `seq`.
pub fn deleted_ranges(tombstones: &[Tombstone], labels: &Labels, seq: u64) -> Vec<(i64, i64)> {
    tombstones
        .iter()
        .filter(|t| t.applies_to(labels, seq))
        .map(|t| (t.mint, t.maxt))
        .collect()
}

/// Whether `t` falls in any of the deleted ranges.
pub fn is_deleted(ranges: &[(i64, i64)], t: i64) -> bool {
    ranges.iter().any(|&(a, b)| t >= a && t <= b)
}
