//! Metric metadata (type, help, unit) as Prometheus remote write sends it, answered by
//! `/api/v1/metadata`.
//!
//! Kept in memory and in one small JSON file under the data directory (`metadata.json`),
//! rewritten atomically whenever a write brings something new, so it survives restarts. The
//! data comes from the network, so everything is capped: the number of metric families, the
//! variants kept per family and the length of each text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Metric families kept; metadata for further families is dropped.
pub const MAX_METRICS: usize = 100_000;
/// Different (type, help, unit) variants kept per family, as several targets may disagree.
pub const MAX_VARIANTS: usize = 8;
/// Longest help text or unit kept, in bytes; longer ones are cut at a character boundary.
pub const MAX_TEXT: usize = 4096;

/// The file under the data directory.
pub const FILE_NAME: &str = "metadata.json";

/// One metric family's metadata, as `/api/v1/metadata` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MetricMetadata {
    /// `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`, `stateset` or
    /// `unknown`.
    #[serde(rename = "type")]
    pub kind: String,
    pub help: String,
    pub unit: String,
}

impl MetricMetadata {
    /// From remote write's `MetricMetadata.type` enum and texts; texts are capped.
    pub fn from_remote_write(kind: i32, help: &str, unit: &str) -> Self {
        let kind = match kind {
            1 => "counter",
            2 => "gauge",
            3 => "histogram",
            4 => "gaugehistogram",
            5 => "summary",
            6 => "info",
            7 => "stateset",
            _ => "unknown",
        };
        MetricMetadata {
            kind: kind.to_string(),
            help: cap(help),
            unit: cap(unit),
        }
    }
}

fn cap(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_string();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding metadata: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Metadata by metric family name.
pub type MetadataMap = BTreeMap<String, Vec<MetricMetadata>>;

/// The node's metric metadata.
pub struct MetadataStore {
    path: PathBuf,
    families: Mutex<MetadataMap>,
}

impl MetadataStore {
    /// Loads `dir/metadata.json` if it exists. A file that cannot be read or parsed is logged
    /// and ignored (metadata is advisory and Prometheus resends it every minute), never a
    /// reason to refuse to start.
    pub fn open(dir: &Path) -> Self {
        let path = dir.join(FILE_NAME);
        let families = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<MetadataMap>(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable metric metadata file");
                    MetadataMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MetadataMap::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the metric metadata file");
                MetadataMap::new()
            }
        };
        MetadataStore {
            path,
            families: Mutex::new(families),
        }
    }

    /// Adds metadata; persists the whole set when something changed. Returns whether it did.
    pub fn record(
        &self,
        entries: impl IntoIterator<Item = (String, MetricMetadata)>,
    ) -> Result<bool, MetadataError> {
        let mut families = self.families.lock();
        let mut changed = false;
        for (name, meta) in entries {
            if name.is_empty() {
                continue;
            }
            if !families.contains_key(&name) && families.len() >= MAX_METRICS {
                continue;
            }
            let variants = families.entry(name).or_default();
            if variants.contains(&meta) {
                continue;
            }
            if variants.len() >= MAX_VARIANTS {
                // The newest description wins over the oldest one.
                variants.remove(0);
            }
            variants.push(meta);
            changed = true;
        }
        if changed {
            // Written under the lock so that concurrent writers cannot reorder the file
            // versions; metadata writes are rare (once a minute per sender).
            let bytes = serde_json::to_vec(&*families)?;
            crate::storage::fsutil::write_atomic(&self.path, &bytes).map_err(|source| {
                MetadataError::Write {
                    path: self.path.clone(),
                    source,
                }
            })?;
        }
        Ok(changed)
    }

    /// Metadata of `metric` only (when given), of at most `limit` families (when given), as
    /// Prometheus' `/api/v1/metadata` selects it.
    pub fn query(&self, metric: Option<&str>, limit: Option<usize>) -> MetadataMap {
        let families = self.families.lock();
        let limit = limit.unwrap_or(usize::MAX);
        match metric {
            Some(m) => families
                .get_key_value(m)
                .filter(|_| limit > 0)
                .map(|(k, v)| (k.clone(), v.clone()))
                .into_iter()
                .collect(),
            None => families
                .iter()
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: i32, help: &str) -> MetricMetadata {
        MetricMetadata::from_remote_write(kind, help, "")
    }

    #[test]
    fn records_dedups_persists_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path());
        assert!(store
            .record([
                ("up".to_string(), meta(2, "1 if the target is up")),
                ("http_total".to_string(), meta(1, "Requests.")),
                (String::new(), meta(1, "no name")),
            ])
            .unwrap());
        assert!(!store
            .record([("up".to_string(), meta(2, "1 if the target is up"))])
            .unwrap());
        assert!(store
            .record([("up".to_string(), meta(0, "other"))])
            .unwrap());

        let reopened = MetadataStore::open(dir.path());
        let all = reopened.query(None, None);
        assert_eq!(all.len(), 2);
        assert_eq!(all["up"].len(), 2);
        assert_eq!(all["http_total"][0].kind, "counter");
        assert_eq!(reopened.query(Some("up"), None).len(), 1);
        assert!(reopened.query(Some("nope"), None).is_empty());
        assert_eq!(reopened.query(None, Some(1)).len(), 1);
        assert!(reopened.query(Some("up"), Some(0)).is_empty());
    }

    #[test]
    fn caps_what_the_network_sends() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path());
        let long = "é".repeat(MAX_TEXT);
        let m = MetricMetadata::from_remote_write(99, &long, "");
        assert!(m.help.len() <= MAX_TEXT && m.kind == "unknown");
        for i in 0..(MAX_VARIANTS + 3) {
            store
                .record([("m".to_string(), meta(1, &format!("v{i}")))])
                .unwrap();
        }
        let v = &store.query(Some("m"), None)["m"];
        assert_eq!(v.len(), MAX_VARIANTS);
        assert_eq!(v.last().unwrap().help, format!("v{}", MAX_VARIANTS + 2));
    }

    #[test]
    fn a_damaged_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        assert!(MetadataStore::open(dir.path()).query(None, None).is_empty());
    }
}
