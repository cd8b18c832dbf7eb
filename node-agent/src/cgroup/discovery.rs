//! Finds every container cgroup: walks each hierarchy root (see [`Hierarchies::search_roots`])
//! and keeps directories whose path [`parse_container`] recognises, without descending into
//! them. The same relative path in several hierarchies is one container.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::layout::Hierarchies;
use super::path::{parse_container, ContainerRef};

/// Deeper than any kubelet or runtime layout (kind nodes add a few levels on top).
const MAX_DEPTH: usize = 16;

/// A container cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// The cgroup path relative to the hierarchy roots, starting with `/`: cAdvisor's `id`.
    pub path: String,
    pub reference: ContainerRef,
    /// Cgroup ids (inode numbers in the unified hierarchy) of the container's directory and
    /// every directory below it: eBPF reports the innermost cgroup of a socket or task.
    pub cgroup_ids: Vec<u64>,
}

/// Every container under `h`, sorted by path.
pub fn discover(h: &Hierarchies) -> Vec<Container> {
    let mut found: BTreeMap<String, ContainerRef> = BTreeMap::new();
    for root in h.search_roots() {
        walk(&root, "", 0, &mut found);
    }
    found
        .into_iter()
        .map(|(path, reference)| {
            let mut cgroup_ids = Vec::new();
            if let Some(unified) = &h.unified {
                collect_ids(
                    &unified.join(path.trim_start_matches('/')),
                    0,
                    &mut cgroup_ids,
                );
            }
            Container {
                path,
                reference,
                cgroup_ids,
            }
        })
        .collect()
}

fn walk(dir: &Path, rel: &str, depth: usize, found: &mut BTreeMap<String, ContainerRef>) {
    if depth > MAX_DEPTH {
        return;
    }
    // Cgroups come and go while we walk: an unreadable directory is simply skipped.
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // file_type() does not follow symlinks: v1 roots' `cpu -> cpu,cpuacct` links are not
        // walked twice.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let child = format!("{rel}/{name}");
        match parse_container(&child) {
            Some(reference) => {
                found.entry(child).or_insert(reference);
            }
            None => walk(&entry.path(), &child, depth + 1, found),
        }
    }
}

fn collect_ids(dir: &Path, depth: usize, ids: &mut Vec<u64>) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    ids.push(meta.ino());
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_ids(&entry.path(), depth + 1, ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const UID: &str = "2b8f2c1e-7d4a-4c1b-9a3e-5f6d7e8f9a0b";

    fn mkdir(p: &Path) {
        std::fs::create_dir_all(p).unwrap();
    }

    #[test]
    fn hybrid_tree_merges_hierarchies_and_collects_v2_ids() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("unified")).unwrap();
        std::fs::write(r.join("unified/cgroup.controllers"), "").unwrap();
        for h in ["cpuacct", "memory"] {
            mkdir(&r.join(h));
            std::fs::write(r.join(h).join("cgroup.procs"), "").unwrap();
        }
        let pod = format!("kubepods/burstable/pod{UID}");
        // A in every hierarchy, with a nested cgroup in v2; B only in memory.
        mkdir(&r.join(format!("unified/{pod}/{A}/inner")));
        mkdir(&r.join(format!("cpuacct/{pod}/{A}")));
        mkdir(&r.join(format!("memory/{pod}/{A}")));
        mkdir(&r.join(format!("memory/{pod}/{B}")));
        mkdir(&r.join("unified/system.slice/sshd.service"));

        let h = Hierarchies::detect(r).unwrap();
        let found = discover(&h);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].path, format!("/{pod}/{A}"));
        assert_eq!(found[0].reference.pod_uid.as_deref(), Some(UID));
        assert_eq!(
            found[0].cgroup_ids.len(),
            2,
            "the container and its nested cgroup"
        );
        assert_eq!(
            found[0].cgroup_ids[0],
            std::fs::metadata(r.join(format!("unified/{pod}/{A}")))
                .unwrap()
                .ino()
        );
        assert_eq!(found[1].path, format!("/{pod}/{B}"));
        assert!(
            found[1].cgroup_ids.is_empty(),
            "no v2 directory, no cgroup id"
        );
    }
}
