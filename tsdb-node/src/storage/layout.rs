//! What lives where under `data/`, and the names that carry a file's identity.
//!
//! Segment files are named so that start-up can classify them without opening them:
//! `raw.L<level>.s<seq>.w<start>.<end>.u<uid>.seg` and
//! `rollup.r<resolution_ms>.s<seq>.w<start>.<end>.u<uid>.seg`, where `[start, end]` is the
//! inclusive time window the file belongs to (a level-0 segment lies inside one window of the
//! smallest block range; a level-n block covers exactly one window of range n), `seq` orders data
//! versions (a newer seq wins on equal timestamps) and `uid` makes names unique.

use std::sync::atomic::{AtomicU64, Ordering};

pub const SEGMENT_SUFFIX: &str = ".seg";
pub const TMP_SUFFIX: &str = ".tmp";
pub const CHECKPOINT_FILE: &str = "CHECKPOINT";
pub const TOMBSTONES_FILE: &str = "tombstones.json";
pub const JOURNAL_SUFFIX: &str = ".journal";
pub const QUARANTINE_DIR: &str = "quarantine";
pub const SERIES_LOG_DIR: &str = "series";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SegmentKind {
    Raw { level: u32 },
    Rollup { resolution_ms: i64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SegmentName {
    pub kind: SegmentKind,
    pub seq: u64,
    /// Inclusive window.
    pub start: i64,
    pub end: i64,
    pub uid: u64,
}

impl SegmentName {
    pub fn new(kind: SegmentKind, seq: u64, window: (i64, i64)) -> Self {
        SegmentName {
            kind,
            seq,
            start: window.0,
            end: window.1,
            uid: next_uid(),
        }
    }

    pub fn file_name(&self) -> String {
        let kind = match self.kind {
            SegmentKind::Raw { level } => format!("raw.L{level}"),
            SegmentKind::Rollup { resolution_ms } => format!("rollup.r{resolution_ms}"),
        };
        format!(
            "{kind}.s{}.w{}.{}.u{}{SEGMENT_SUFFIX}",
            self.seq, self.start, self.end, self.uid
        )
    }

    pub fn parse(name: &str) -> Option<SegmentName> {
        let body = name.strip_suffix(SEGMENT_SUFFIX)?;
        let parts: Vec<&str> = body.split('.').collect();
        let [kind, sub, seq, start, end, uid] = parts.as_slice() else {
            return None;
        };
        let kind = match *kind {
            "raw" => SegmentKind::Raw {
                level: sub.strip_prefix('L')?.parse().ok()?,
            },
            "rollup" => SegmentKind::Rollup {
                resolution_ms: sub.strip_prefix('r')?.parse().ok()?,
            },
            _ => return None,
        };
        Some(SegmentName {
            kind,
            seq: seq.strip_prefix('s')?.parse().ok()?,
            start: start.strip_prefix('w')?.parse().ok()?,
            end: end.parse().ok()?,
            uid: uid.strip_prefix('u')?.parse().ok()?,
        })
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.start <= maxt && self.end >= mint
    }

    pub fn contained_in(&self, start: i64, end: i64) -> bool {
        self.start >= start && self.end <= end
    }

    /// Whether `self` makes `other` (same kind of file) obsolete: it covers other's window with
    /// data at least as new. Ties are broken by window size, then by uid, so that of two files
    /// exactly one survives.
    pub fn supersedes(&self, other: &SegmentName) -> bool {
        if self.uid == other.uid
            || self.kind != other.kind
            || !other.contained_in(self.start, self.end)
        {
            return false;
        }
        let wider = (self.start, self.end) != (other.start, other.end);
        self.seq > other.seq || self.seq == other.seq && (wider || self.uid > other.uid)
    }
}

/// Unique within this process and, through the time component, across restarts.
fn next_uid() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The inclusive window of width `range` that holds `t`, computed without overflow at the
/// edges of the i64 range.
pub fn window_of(t: i64, range: i64) -> (i64, i64) {
    let r = range as i128;
    let start = (t as i128).div_euclid(r) * r;
    let end = start + r - 1;
    (
        start.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        end.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
    )
}

/// Start of the bucket of width `resolution` holding `t`.
pub fn bucket_start(t: i64, resolution: i64) -> i64 {
    window_of(t, resolution).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in [
            SegmentKind::Raw { level: 2 },
            SegmentKind::Rollup {
                resolution_ms: 300_000,
            },
        ] {
            let n = SegmentName::new(kind, 42, (-7_200_000, -1));
            assert_eq!(SegmentName::parse(&n.file_name()), Some(n));
        }
        assert_eq!(SegmentName::parse("raw.L1.s1.w0.9.seg"), None);
        assert_eq!(SegmentName::parse("garbage"), None);
    }

    #[test]
    fn windows_at_the_edges_do_not_overflow() {
        assert_eq!(window_of(0, 10), (0, 9));
        assert_eq!(window_of(-1, 10), (-10, -1));
        let (s, e) = window_of(i64::MAX, 7_200_000);
        assert!(s > i64::MAX - 7_200_000 && e == i64::MAX);
        let (s, _) = window_of(i64::MIN, 7_200_000);
        assert_eq!(s, i64::MIN);
    }
}
