//! Segment files on disk: naming, listing, creation and directory fsync.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::error::WalError;
use super::format::segment_header;

/// Extension of live segment files.
const SEGMENT_EXT: &str = "wal";

/// File name of segment `n`: 8-digit zero-padded decimal (wider once numbers outgrow it).
pub fn segment_file_name(n: u64) -> String {
    format!("{n:08}.{SEGMENT_EXT}")
}

/// Path of segment `n` in `dir`.
pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(segment_file_name(n))
}

/// Parses a segment file name; anything else in the directory (`.corrupt` files, editor
/// droppings) is not a segment.
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_EXT)?.strip_suffix('.')?;
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Numbers of the segment files in `dir`, ascending. A missing directory has no segments.
pub fn segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(WalError::io("listing", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("listing", dir, e))?;
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(parse_segment_name) else {
            continue;
        };
        let ty = entry
            .file_type()
            .map_err(|e| WalError::io("stat", entry.path(), e))?;
        if ty.is_file() {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Fsyncs a directory so that file creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io("fsyncing directory", dir, e))
}

/// Creates segment `n` with its header. Fails if the file already exists: a segment is never
/// reopened for writing, so a torn tail can only ever be at the end of a file.
///
/// With `sync`, the header and the directory entry are durable on return.
pub(crate) fn create_segment(dir: &Path, n: u64, sync: bool) -> Result<File, WalError> {
    let path = segment_path(dir, n);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| WalError::io("creating segment", &path, e))?;
    file.write_all(&segment_header())
        .map_err(|e| WalError::io("writing segment header", &path, e))?;
    if sync {
        file.sync_all()
            .map_err(|e| WalError::io("fsyncing segment", &path, e))?;
        sync_dir(dir)?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        assert_eq!(segment_file_name(1), "00000001.wal");
        assert_eq!(parse_segment_name("00000001.wal"), Some(1));
        assert_eq!(parse_segment_name("123456789.wal"), Some(123_456_789));
        assert_eq!(parse_segment_name("00000001.wal.corrupt"), None);
        assert_eq!(parse_segment_name("0001.wal"), None);
        assert_eq!(parse_segment_name("0000000x.wal"), None);
        assert_eq!(parse_segment_name("+0000001.wal"), None);
    }

    #[test]
    fn listing_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        for n in [3, 1, 2] {
            create_segment(dir.path(), n, true).unwrap();
        }
        fs::write(dir.path().join("00000004.wal.corrupt"), b"x").unwrap();
        fs::create_dir(dir.path().join("00000005.wal")).unwrap();
        assert_eq!(segments(dir.path()).unwrap(), vec![1, 2, 3]);
        assert!(create_segment(dir.path(), 2, false).is_err());
        assert_eq!(
            segments(&dir.path().join("missing")).unwrap(),
            Vec::<u64>::new()
        );
    }
}
