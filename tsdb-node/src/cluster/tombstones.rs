//! Cluster tombstones: the deletions a node knows were made anywhere in the cluster, kept
//! so that anti-entropy and late hints cannot bring deleted samples back from a replica that
//! missed the delete, and so that such a replica learns the delete from its peers.
//!
//! A tombstone is `(id, matchers, mint, maxt, deleted_at)`. It *covers* a sample of a series
//! the matchers select when `mint <= t <= min(maxt, deleted_at)`: samples timestamped after
//! the delete was made are data the delete cannot have meant (a delete without an end would
//! otherwise block the repair of every later sample of the series).
//!
//! Persisted in `<data_dir>/cluster/tombstones.json`, replaced atomically on every change.
//! A tombstone expires once `deleted_at` is older than raw retention: every sample it covers
//! is then past the horizon on every replica, and anti-entropy no longer compares it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::rpc::{self, MalformedMessage, MatcherMsg, TombstoneMsg};
use crate::storage::{Labels, Matcher};

pub const FILE: &str = "tombstones.json";

/// One cluster-wide deletion.
#[derive(Clone, Debug)]
pub struct ClusterTombstone {
    pub id: u64,
    pub matchers: Vec<Matcher>,
    pub mint: i64,
    pub maxt: i64,
    pub deleted_at_ms: i64,
}

impl ClusterTombstone {
    /// Whether the series' sample at `t` was deleted by this tombstone.
    pub fn covers(&self, labels: &Labels, t: i64) -> bool {
        t >= self.mint
            && t <= self.maxt.min(self.deleted_at_ms)
            && self.matchers.iter().all(|m| m.matches_labels(labels))
    }

    pub fn to_wire(&self) -> TombstoneMsg {
        TombstoneMsg {
            id: self.id,
            matchers: rpc::matchers_to_wire(&self.matchers),
            mint: self.mint,
            maxt: self.maxt,
            deleted_at_ms: self.deleted_at_ms,
        }
    }

    pub fn from_wire(m: TombstoneMsg) -> Result<ClusterTombstone, MalformedMessage> {
        if m.mint > m.maxt {
            return Err(MalformedMessage(format!(
                "tombstone {:016x}: start {} after end {}",
                m.id, m.mint, m.maxt
            )));
        }
        if m.matchers.is_empty() {
            return Err(MalformedMessage(format!(
                "tombstone {:016x} has no matchers",
                m.id
            )));
        }
        Ok(ClusterTombstone {
            id: m.id,
            matchers: rpc::matchers_from_wire(m.matchers)?,
            mint: m.mint,
            maxt: m.maxt,
            deleted_at_ms: m.deleted_at_ms,
        })
    }

    /// A new tombstone's id: a hash of who made it, when, and what it deletes, so two deletes
    /// never share one by accident and a redelivered one is recognised.
    pub fn new_id(origin: &str, seq: u64, deleted_at_ms: i64, matchers: &[Matcher]) -> u64 {
        let mut key = format!("{origin}\u{0}{seq}\u{0}{deleted_at_ms}");
        for m in matchers {
            key.push_str(&format!("\u{0}{m}"));
        }
        xxhash_rust::xxh3::xxh3_64(key.as_bytes())
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    id: String,
    matchers: Vec<StoredMatcher>,
    mint: i64,
    maxt: i64,
    deleted_at_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredMatcher {
    name: String,
    op: u32,
    value: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TombstoneStoreError {
    #[error("cluster tombstones {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cluster tombstones {path} are unreadable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The tombstones this node knows, in memory and on disk.
pub struct TombstoneStore {
    path: PathBuf,
    list: Mutex<Vec<ClusterTombstone>>,
}

fn encode(list: &[ClusterTombstone]) -> Vec<u8> {
    let stored: Vec<Stored> = list
        .iter()
        .map(|t| Stored {
            id: format!("{:016x}", t.id),
            matchers: t
                .to_wire()
                .matchers
                .into_iter()
                .map(|m| StoredMatcher {
                    name: m.name,
                    op: m.op,
                    value: m.value,
                })
                .collect(),
            mint: t.mint,
            maxt: t.maxt,
            deleted_at_ms: t.deleted_at_ms,
        })
        .collect();
    serde_json::to_vec_pretty(&stored).unwrap_or_default()
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Vec<ClusterTombstone>, TombstoneStoreError> {
    let corrupt = |reason: String| TombstoneStoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let stored: Vec<Stored> = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    stored
        .into_iter()
        .map(|s| {
            let id = u64::from_str_radix(&s.id, 16).map_err(|e| corrupt(e.to_string()))?;
            ClusterTombstone::from_wire(TombstoneMsg {
                id,
                matchers: s
                    .matchers
                    .into_iter()
                    .map(|m| MatcherMsg {
                        name: m.name,
                        op: m.op,
                        value: m.value,
                    })
                    .collect(),
                mint: s.mint,
                maxt: s.maxt,
                deleted_at_ms: s.deleted_at_ms,
            })
            .map_err(|e| corrupt(e.to_string()))
        })
        .collect()
}

impl TombstoneStore {
    /// Loads `<state_dir>/tombstones.json` (none yet is an empty store). An unreadable file
    /// is an error: starting without the tombstones would let repairs undo deletes.
    pub fn open(state_dir: &Path) -> Result<TombstoneStore, TombstoneStoreError> {
        let path = state_dir.join(FILE);
        let list = match std::fs::read(&path) {
            Ok(bytes) => decode(&path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(TombstoneStoreError::Io { path, source }),
        };
        Ok(TombstoneStore {
            path,
            list: Mutex::new(list),
        })
    }

    fn save(&self, list: &[ClusterTombstone]) -> Result<(), TombstoneStoreError> {
        let io = |source| TombstoneStoreError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        crate::storage::fsutil::write_atomic(&self.path, &encode(list)).map_err(io)
    }

    /// Every tombstone known.
    pub fn all(&self) -> Vec<ClusterTombstone> {
        self.list.lock().clone()
    }

    pub fn is_empty(&self) -> bool {
        self.list.lock().is_empty()
    }

    pub fn knows(&self, id: u64) -> bool {
        self.list.lock().iter().any(|t| t.id == id)
    }

    /// Of `candidates`, those not known yet (each id once).
    pub fn unknown(&self, candidates: Vec<ClusterTombstone>) -> Vec<ClusterTombstone> {
        let list = self.list.lock();
        let mut seen: HashSet<u64> = list.iter().map(|t| t.id).collect();
        candidates
            .into_iter()
            .filter(|t| seen.insert(t.id))
            .collect()
    }

    /// Remembers `new` (ids already known are skipped) and persists before returning.
    pub fn add(&self, new: Vec<ClusterTombstone>) -> Result<(), TombstoneStoreError> {
        let mut list = self.list.lock();
        let mut changed = false;
        for t in new {
            if !list.iter().any(|k| k.id == t.id) {
                list.push(t);
                changed = true;
            }
        }
        if changed {
            self.save(&list)?;
        }
        Ok(())
    }

    /// Forgets tombstones made before `horizon_ms` (raw retention's horizon).
    pub fn expire(&self, horizon_ms: i64) -> Result<usize, TombstoneStoreError> {
        let mut list = self.list.lock();
        let before = list.len();
        list.retain(|t| t.deleted_at_ms >= horizon_ms);
        let dropped = before - list.len();
        if dropped > 0 {
            self.save(&list)?;
        }
        Ok(dropped)
    }

    /// Whether any tombstone covers the sample at `t` of `labels`.
    pub fn covers(&self, labels: &Labels, t: i64) -> bool {
        self.list.lock().iter().any(|x| x.covers(labels, t))
    }

    /// `samples` without those a tombstone covers; `made_after` limits the check to
    /// tombstones made at or after that moment (a hinted write stored before them).
    pub fn retain_uncovered(
        &self,
        labels: &Labels,
        samples: &mut Vec<crate::storage::Sample>,
        made_after: i64,
    ) {
        let list = self.list.lock();
        let relevant: Vec<&ClusterTombstone> = list
            .iter()
            .filter(|x| {
                x.deleted_at_ms >= made_after && x.matchers.iter().all(|m| m.matches_labels(labels))
            })
            .collect();
        if relevant.is_empty() {
            return;
        }
        samples.retain(|s| !relevant.iter().any(|x| x.covers(labels, s.t)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MatchOp, Sample};

    fn tomb(id: u64, device: &str, mint: i64, maxt: i64, at: i64) -> ClusterTombstone {
        ClusterTombstone {
            id,
            matchers: vec![
                Matcher::equal("__name__", "temp"),
                Matcher::new(MatchOp::RegexMatch, "device", device).unwrap(),
            ],
            mint,
            maxt,
            deleted_at_ms: at,
        }
    }

    #[test]
    fn covers_up_to_the_deletion_time() {
        let t = tomb(1, "d1|d2", 100, i64::MAX, 500);
        let d1 = Labels::from_metric("temp", &[("device", "d1")]);
        let d3 = Labels::from_metric("temp", &[("device", "d3")]);
        assert!(t.covers(&d1, 100));
        assert!(t.covers(&d1, 500));
        assert!(!t.covers(&d1, 99));
        // Written after the delete was made: not what it meant.
        assert!(!t.covers(&d1, 501));
        assert!(!t.covers(&d3, 200));
        let narrow = tomb(2, "d1", 100, 200, 500);
        assert!(!narrow.covers(&d1, 201));
    }

    #[test]
    fn persisted_across_reopen_and_expired_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = TombstoneStore::open(dir.path()).unwrap();
        assert!(store.is_empty());
        store
            .add(vec![
                tomb(1, "d1", 0, 10, 1_000),
                tomb(2, "d2", 0, 10, 5_000),
            ])
            .unwrap();
        store.add(vec![tomb(1, "d1", 0, 10, 1_000)]).unwrap();
        let again = TombstoneStore::open(dir.path()).unwrap();
        let all = again.all();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].matchers[1].op, MatchOp::RegexMatch);
        assert!(again.knows(2) && !again.knows(3));
        assert_eq!(
            again
                .unknown(vec![
                    tomb(2, "x", 0, 1, 0),
                    tomb(3, "x", 0, 1, 0),
                    tomb(3, "x", 0, 1, 0)
                ])
                .len(),
            1
        );
        assert_eq!(again.expire(2_000).unwrap(), 1);
        assert_eq!(TombstoneStore::open(dir.path()).unwrap().all()[0].id, 2);
        // A damaged file is refused rather than silently forgotten.
        std::fs::write(dir.path().join(FILE), b"[{").unwrap();
        assert!(TombstoneStore::open(dir.path()).is_err());
    }

    #[test]
    fn hinted_samples_are_filtered_only_by_later_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = TombstoneStore::open(dir.path()).unwrap();
        store.add(vec![tomb(1, "d1", 0, 100, 1_000)]).unwrap();
        let d1 = Labels::from_metric("temp", &[("device", "d1")]);
        let mut s = vec![Sample::new(50, 1.0), Sample::new(150, 2.0)];
        // Hinted after the delete: a write the user made after deleting, kept.
        store.retain_uncovered(&d1, &mut s, 2_000);
        assert_eq!(s.len(), 2);
        // Hinted before it: the covered sample goes.
        store.retain_uncovered(&d1, &mut s, 500);
        assert_eq!(s, vec![Sample::new(150, 2.0)]);
        assert!(store.covers(&d1, 50) && !store.covers(&d1, 150));
    }

    #[test]
    fn malformed_tombstones_are_refused() {
        let mut m = tomb(1, "d1", 0, 10, 0).to_wire();
        m.mint = 11;
        assert!(ClusterTombstone::from_wire(m).is_err());
        let mut m = tomb(1, "d1", 0, 10, 0).to_wire();
        m.matchers.clear();
        assert!(ClusterTombstone::from_wire(m).is_err());
        let a = ClusterTombstone::new_id("a", 1, 5, &[Matcher::equal("x", "y")]);
        assert_ne!(
            a,
            ClusterTombstone::new_id("a", 2, 5, &[Matcher::equal("x", "y")])
        );
        assert_ne!(
            a,
            ClusterTombstone::new_id("b", 1, 5, &[Matcher::equal("x", "y")])
        );
    }
}
