//! What the broker's persistent session of this node is subscribed to, remembered across
//! restarts in `<data_dir>/mqtt/subscribed`.
//!
//! A persistent session keeps its subscriptions when the node's configuration changes. A
//! cluster that moves from plain filters to a shared subscription (`shared_group`) would go on
//! receiving every message through the old plain filter besides its share of the new one, on
//! every node: each message stored several times over, for as long as the session lives. On a
//! resumed session the connection unsubscribes from the filters recorded here that are no
//! longer configured.

use std::io;
use std::path::{Path, PathBuf};

use crate::storage::fsutil::write_atomic;

/// The record file: one filter per line, as sent (`$share/<group>/` included).
pub(super) struct SubscribedRecord {
    path: PathBuf,
}

impl SubscribedRecord {
    pub fn new(data_dir: &Path) -> SubscribedRecord {
        SubscribedRecord {
            path: data_dir.join("mqtt").join("subscribed"),
        }
    }

    /// The recorded filters; none when there is no record yet (or it cannot be read: then the
    /// worst case is the duplicate delivery this guards against, not a failure).
    pub fn load(&self) -> Vec<String> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e,
                        "cannot read the record of MQTT subscriptions");
                }
                Vec::new()
            }
        }
    }

    /// Records `filters` as the session's subscriptions.
    pub fn store(&self, filters: &[String]) {
        let result = self
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| write_atomic(&self.path, filters.join("\n").as_bytes()));
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), error = %e,
                "cannot record the MQTT subscriptions");
        }
    }
}

/// Recorded filters that are not among `current`, in recorded order.
pub(super) fn stale<'a>(recorded: &'a [String], current: &[String]) -> Vec<&'a String> {
    recorded.iter().filter(|f| !current.contains(f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_and_stale_filters_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let record = SubscribedRecord::new(dir.path());
        assert!(record.load().is_empty());
        let old = vec!["iot/sensors/+".to_string(), "plant/#".to_string()];
        record.store(&old);
        assert_eq!(SubscribedRecord::new(dir.path()).load(), old);
        let new = vec![
            "$share/strata-x/iot/sensors/+".to_string(),
            "plant/#".to_string(),
        ];
        assert_eq!(stale(&old, &new), vec!["iot/sensors/+"]);
        assert!(stale(&new, &new).is_empty());
        record.store(&new);
        assert_eq!(record.load(), new);
    }
}
