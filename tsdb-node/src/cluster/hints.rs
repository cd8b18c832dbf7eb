//! Hinted handoff: replica writes that could not reach their owner, kept on disk until the
//! owner answers again.
//!
//! Layout under `<data_dir>/hints/`: one directory per target node (its id hex-encoded, so
//! any id is a safe file name) holding `active.log`, which new hints are appended to, and
//! `<seq>.replay` files cut from it for delivery. A record is
//! `len: u32 LE | crc32c(payload): u32 LE | payload` where the payload is a protobuf
//! `WriteRequest`, or a `DeleteRequest` when the top bit of `len` is set (a cluster-wide
//! delete the target missed). Records are delivered in the order they were appended, so a
//! target sees writes and deletes in the order this node saw them. Every append is fsynced
//! before the write it belongs to counts as hinted. Reading stops at the first torn or
//! corrupt record; delivering a record twice is harmless because a sample written again with
//! the same timestamp replaces itself and a tombstone is applied once per id.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use prost::Message;

use super::rpc::{DeleteRequest, WriteRequest};

const ACTIVE: &str = "active.log";
const REPLAY_EXT: &str = "replay";
/// Largest record accepted when reading back; a larger length field means corruption.
const MAX_RECORD: usize = 64 << 20;
/// `active.log` is cut into a replay file once it reaches this size, which bounds what one
/// delivery reads into memory.
const ROTATE_BYTES: u64 = 16 << 20;
/// Set in a record's length word when its payload is a `DeleteRequest`.
const DELETE_FLAG: u32 = 1 << 31;

/// One hinted operation, in the order it was appended.
#[derive(Clone, Debug, PartialEq)]
pub enum HintRecord {
    Write(WriteRequest),
    Delete(DeleteRequest),
}

#[derive(Debug, thiserror::Error)]
pub enum HintError {
    #[error("hint store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> HintError + '_ {
    move |source| HintError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The hints of every target node.
pub struct HintStore {
    dir: PathBuf,
    max_bytes_per_target: u64,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn sync_dir(dir: &Path) -> Result<(), HintError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

impl HintStore {
    pub fn open(dir: PathBuf, max_bytes_per_target: u64) -> Result<HintStore, HintError> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(HintStore {
            dir,
            max_bytes_per_target,
            locks: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self, target: &str) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .entry(target.to_string())
            .or_default()
            .clone()
    }

    fn target_dir(&self, target: &str) -> PathBuf {
        self.dir.join(hex(target))
    }

    /// Appends a hint for `target` and fsyncs it. Returns false (and stores nothing) when the
    /// target's hints already use their byte budget.
    pub fn append(&self, target: &str, req: &WriteRequest) -> Result<bool, HintError> {
        self.append_record(target, 0, &req.encode_to_vec(), true)
    }

    /// Appends a delete for `target` behind the writes hinted so far. Not capped by the
    /// budget: it is small, and leaving it out would let the writes before it resurrect data
    /// until anti-entropy passes the tombstone on.
    pub fn append_delete(&self, target: &str, req: &DeleteRequest) -> Result<(), HintError> {
        self.append_record(target, DELETE_FLAG, &req.encode_to_vec(), false)
            .map(|_| ())
    }

    /// Forgets every hint for `target` (a node removed from the cluster for good).
    pub fn drop_target(&self, target: &str) -> Result<u64, HintError> {
        let lock = self.lock(target);
        let _g = lock.lock();
        let dir = self.target_dir(target);
        if !dir.exists() {
            return Ok(0);
        }
        let bytes = dir_size(&dir);
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        sync_dir(&self.dir)?;
        Ok(bytes)
    }

    fn append_record(
        &self,
        target: &str,
        flag: u32,
        payload: &[u8],
        budgeted: bool,
    ) -> Result<bool, HintError> {
        let lock = self.lock(target);
        let _g = lock.lock();
        let dir = self.target_dir(target);
        let created = !dir.exists();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        if created {
            sync_dir(&self.dir)?;
        }
        if budgeted && dir_size(&dir) >= self.max_bytes_per_target {
            return Ok(false);
        }
        // MAX_RECORD keeps real lengths far below the flag bit.
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX) & !DELETE_FLAG;
        let mut record = Vec::with_capacity(payload.len() + 8);
        record.extend_from_slice(&(len | flag).to_le_bytes());
        record.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        record.extend_from_slice(payload);
        let path = dir.join(ACTIVE);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all(&record).map_err(io_err(&path))?;
        f.sync_data().map_err(io_err(&path))?;
        if created {
            sync_dir(&dir)?;
        }
        if f.metadata().map(|m| m.len()).unwrap_or(0) >= ROTATE_BYTES {
            self.rotate(&dir)?;
        }
        Ok(true)
    }

    /// Renames `active.log` to the next replay file. Caller holds the target's lock.
    fn rotate(&self, dir: &Path) -> Result<(), HintError> {
        let active = dir.join(ACTIVE);
        if !active.exists() {
            return Ok(());
        }
        let next = self.replay_files(dir).last().map_or(0, |(seq, _)| seq + 1);
        let to = dir.join(format!("{next:012}.{REPLAY_EXT}"));
        fs::rename(&active, &to).map_err(io_err(&active))?;
        sync_dir(dir)
    }

    fn replay_files(&self, dir: &Path) -> Vec<(u64, PathBuf)> {
        let mut out: Vec<(u64, PathBuf)> = fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let p = e.path();
                        if p.extension()? != REPLAY_EXT {
                            return None;
                        }
                        let seq = p.file_stem()?.to_str()?.parse().ok()?;
                        Some((seq, p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Node ids that have hints waiting.
    pub fn targets(&self) -> Vec<String> {
        fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| dir_size(&e.path()) > 0)
                    .filter_map(|e| unhex(e.file_name().to_str()?))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Bytes of hints waiting for `target`.
    pub fn pending_bytes(&self, target: &str) -> u64 {
        dir_size(&self.target_dir(target))
    }

    /// Cuts the active log and returns every replay file for `target`, oldest first.
    pub fn take(&self, target: &str) -> Result<Vec<PathBuf>, HintError> {
        let lock = self.lock(target);
        let _g = lock.lock();
        let dir = self.target_dir(target);
        if !dir.exists() {
            return Ok(Vec::new());
        }
        self.rotate(&dir)?;
        Ok(self
            .replay_files(&dir)
            .into_iter()
            .map(|(_, p)| p)
            .collect())
    }

    /// The hints in a replay file, up to the first damaged record.
    pub fn read(path: &Path) -> Result<Vec<HintRecord>, HintError> {
        let mut data = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(io_err(path))?;
        let (out, damaged) = decode_records(&data);
        if damaged {
            tracing::warn!(file = %path.display(), "hint file holds a damaged record; the rest is skipped");
        }
        Ok(out)
    }

    /// Deletes a delivered replay file.
    pub fn remove(&self, path: &Path) -> Result<(), HintError> {
        fs::remove_file(path).map_err(io_err(path))
    }
}

/// The hints in a file's bytes, up to the first torn, corrupt or undecodable record; the flag
/// says whether such a record was met.
pub fn decode_records(data: &[u8]) -> (Vec<HintRecord>, bool) {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some((is_delete, record)) = next_record(&mut rest) else {
            return (out, true);
        };
        let decoded = if is_delete {
            DeleteRequest::decode(record).map(HintRecord::Delete)
        } else {
            WriteRequest::decode(record).map(HintRecord::Write)
        };
        match decoded {
            Ok(r) => out.push(r),
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

/// Splits the next record off `rest` with its kind (true: a delete); `None` on a torn or
/// corrupt record.
fn next_record<'a>(rest: &mut &'a [u8]) -> Option<(bool, &'a [u8])> {
    let word = u32::from_le_bytes(rest.get(0..4)?.try_into().ok()?);
    let is_delete = word & DELETE_FLAG != 0;
    let len = (word & !DELETE_FLAG) as usize;
    let crc = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = rest.get(8..8 + len)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    *rest = rest.get(8 + len..)?;
    Some((is_delete, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::rpc::{LabelPair, SeriesSamples, TombstoneMsg};

    fn first_ts(r: &HintRecord) -> i64 {
        match r {
            HintRecord::Write(w) => w.series[0].timestamps[0],
            HintRecord::Delete(d) => -d.tombstones[0].mint,
        }
    }

    fn req(t: i64) -> WriteRequest {
        WriteRequest {
            hinted_at_ms: 0,
            handover: false,
            series: vec![SeriesSamples {
                labels: vec![LabelPair {
                    name: "__name__".into(),
                    value: "m".into(),
                }],
                timestamps: vec![t],
                values: vec![1.0],
            }],
        }
    }

    #[test]
    fn hints_survive_reopen_and_are_delivered_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = HintStore::open(dir.path().join("hints"), 1 << 20).unwrap();
        assert!(store.append("node/1 ü", &req(1)).unwrap());
        assert!(store.append("node/1 ü", &req(2)).unwrap());
        drop(store);
        let store = HintStore::open(dir.path().join("hints"), 1 << 20).unwrap();
        assert_eq!(store.targets(), vec!["node/1 ü".to_string()]);
        store.append("node/1 ü", &req(3)).unwrap();
        let files = store.take("node/1 ü").unwrap();
        assert_eq!(files.len(), 1);
        let got: Vec<i64> = HintStore::read(&files[0])
            .unwrap()
            .iter()
            .map(first_ts)
            .collect();
        assert_eq!(got, vec![1, 2, 3]);
        store.remove(&files[0]).unwrap();
        assert!(store.targets().is_empty());
    }

    #[test]
    fn deletes_keep_their_place_among_writes_and_ignore_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let record = req(1).encode_to_vec().len() as u64 + 8;
        let store = HintStore::open(dir.path().to_path_buf(), record).unwrap();
        let delete = DeleteRequest {
            tombstones: vec![TombstoneMsg {
                id: 9,
                matchers: vec![],
                mint: 5,
                maxt: 6,
                deleted_at_ms: 7,
            }],
        };
        assert!(store.append("a", &req(1)).unwrap());
        // The budget is used up: writes are refused, the delete is not.
        assert!(!store.append("a", &req(2)).unwrap());
        store.append_delete("a", &delete).unwrap();
        let files = store.take("a").unwrap();
        let got = HintStore::read(&files[0]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], HintRecord::Delete(delete));
        assert_eq!(first_ts(&got[0]), 1);
        assert!(store.drop_target("a").unwrap() > 0);
        assert!(store.targets().is_empty());
        assert_eq!(store.drop_target("a").unwrap(), 0);
    }

    #[test]
    fn torn_and_corrupt_tails_are_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let store = HintStore::open(dir.path().to_path_buf(), 1 << 20).unwrap();
        store.append("a", &req(1)).unwrap();
        store.append("a", &req(2)).unwrap();
        let files = store.take("a").unwrap();
        let mut bytes = fs::read(&files[0]).unwrap();
        let full = bytes.len();
        bytes.truncate(full - 3);
        fs::write(&files[0], &bytes).unwrap();
        assert_eq!(HintStore::read(&files[0]).unwrap().len(), 1);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        bytes.truncate(full / 2 + 2);
        bytes[10] ^= 0x55;
        fs::write(&files[0], &bytes).unwrap();
        assert!(HintStore::read(&files[0]).unwrap().is_empty());
        // A huge length field is refused without allocating.
        fs::write(&files[0], [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).unwrap();
        assert!(HintStore::read(&files[0]).unwrap().is_empty());
    }

    #[test]
    fn budget_caps_a_target() {
        let dir = tempfile::tempdir().unwrap();
        // Room for a little more than one record: the second append still fits the check
        // (made before writing), the third does not.
        let record = req(1).encode_to_vec().len() as u64 + 8;
        let store = HintStore::open(dir.path().to_path_buf(), record + 1).unwrap();
        assert!(store.append("a", &req(1)).unwrap());
        assert!(store.append("a", &req(2)).unwrap());
        assert!(!store.append("a", &req(3)).unwrap());
        assert!(store.append("b", &req(3)).unwrap());
    }
}
