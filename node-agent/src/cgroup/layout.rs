//! Which cgroup hierarchies are mounted under `--cgroup-root`, and where each controller lives.
//!
//! - pure v2: the root itself is the unified hierarchy (`cgroup.controllers` in it);
//! - pure v1: one directory per hierarchy (`cpu,cpuacct`, `memory`, `blkio`, ..., often with
//!   symlinks such as `cpuacct -> cpu,cpuacct`);
//! - hybrid (systemd's default before v2): v1 directories plus the unified hierarchy at
//!   `unified/`, which then holds no controllers but still identifies every cgroup (its inode
//!   numbers are the cgroup ids eBPF reports).
//!
//! A controller is attached to exactly one hierarchy, so each figure is read where its
//! controller is: CPU from v1 `cpuacct` when that is mounted, else v2 `cpu.stat` (present even
//! without the cpu controller); memory from v1 `memory`, else v2; block I/O from v1 `blkio`,
//! else v2 `io.stat`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How the host mounts cgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    V2,
    V1,
    Hybrid,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::V2 => "v2",
            Mode::V1 => "v1",
            Mode::Hybrid => "hybrid",
        }
    }
}

/// The hierarchies found under a cgroup root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchies {
    /// The unified (v2) hierarchy's root directory.
    pub unified: Option<PathBuf>,
    /// v1 controller (`cpuacct`, `memory`, `blkio`, ...) → its hierarchy's root directory.
    pub v1: BTreeMap<String, PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot read the cgroup root {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no cgroup hierarchy under {0} (neither cgroup.controllers nor v1 controller directories)"
    )]
    Empty(PathBuf),
}

impl Hierarchies {
    /// Looks at what is mounted under `root`.
    pub fn detect(root: &Path) -> Result<Hierarchies, LayoutError> {
        if root.join("cgroup.controllers").is_file() {
            return Ok(Hierarchies {
                unified: Some(root.to_path_buf()),
                v1: BTreeMap::new(),
            });
        }
        let entries = std::fs::read_dir(root).map_err(|source| LayoutError::Read {
            path: root.to_path_buf(),
            source,
        })?;
        let mut unified = None;
        let mut v1 = BTreeMap::new();
        for entry in entries.flatten() {
            let dir = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "unified" && dir.join("cgroup.controllers").is_file() {
                unified = Some(dir);
            } else if dir.join("cgroup.procs").is_file() {
                // `cpu,cpuacct` names its controllers; `name=systemd` hierarchies are
                // mounted as `systemd` and carry no controller we read.
                for controller in name.split(',') {
                    v1.entry(controller.to_string())
                        .or_insert_with(|| dir.clone());
                }
            }
        }
        if unified.is_none() && v1.is_empty() {
            return Err(LayoutError::Empty(root.to_path_buf()));
        }
        Ok(Hierarchies { unified, v1 })
    }

    pub fn mode(&self) -> Mode {
        match (self.unified.is_some(), self.v1.is_empty()) {
            (true, true) => Mode::V2,
            (true, false) => Mode::Hybrid,
            (false, _) => Mode::V1,
        }
    }

    /// The root of the v1 hierarchy that holds `controller`.
    pub fn v1(&self, controller: &str) -> Option<&Path> {
        self.v1.get(controller).map(PathBuf::as_path)
    }

    /// Hierarchy roots to search for containers: the unified one and those of the v1
    /// controllers the agent reads, each directory once.
    pub fn search_roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = self.unified.iter().cloned().collect();
        for controller in ["cpuacct", "memory", "blkio", "pids"] {
            if let Some(dir) = self.v1(controller) {
                let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
                if !roots
                    .iter()
                    .any(|r| r.canonicalize().unwrap_or_else(|_| r.clone()) == canonical)
                {
                    roots.push(dir.to_path_buf());
                }
            }
        }
        roots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }

    #[test]
    fn pure_v2() {
        let root = tempfile::tempdir().unwrap();
        touch(&root.path().join("cgroup.controllers"));
        touch(&root.path().join("cgroup.procs"));
        let h = Hierarchies::detect(root.path()).unwrap();
        assert_eq!(h.mode(), Mode::V2);
        assert_eq!(h.unified.as_deref(), Some(root.path()));
        assert_eq!(h.search_roots(), vec![root.path().to_path_buf()]);
    }

    #[test]
    fn pure_v1_with_joined_controllers_and_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        touch(&r.join("cpu,cpuacct/cgroup.procs"));
        touch(&r.join("memory/cgroup.procs"));
        touch(&r.join("blkio/cgroup.procs"));
        touch(&r.join("systemd/cgroup.procs"));
        std::os::unix::fs::symlink(r.join("cpu,cpuacct"), r.join("cpuacct")).unwrap();
        std::os::unix::fs::symlink(r.join("cpu,cpuacct"), r.join("cpu")).unwrap();
        let h = Hierarchies::detect(r).unwrap();
        assert_eq!(h.mode(), Mode::V1);
        assert!(h.v1("cpuacct").is_some());
        assert!(h.v1("memory").is_some());
        let roots = h.search_roots();
        assert_eq!(roots.len(), 3, "cpu,cpuacct once, memory, blkio: {roots:?}");
    }

    #[test]
    fn hybrid() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        touch(&r.join("unified/cgroup.controllers"));
        touch(&r.join("cpuacct/cgroup.procs"));
        touch(&r.join("memory/cgroup.procs"));
        let h = Hierarchies::detect(r).unwrap();
        assert_eq!(h.mode(), Mode::Hybrid);
        assert_eq!(h.unified, Some(r.join("unified")));
        assert_eq!(h.v1("memory"), Some(r.join("memory").as_path()));
        assert_eq!(h.v1("blkio"), None);
    }

    #[test]
    fn nothing_mounted_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        assert!(matches!(
            Hierarchies::detect(root.path()),
            Err(LayoutError::Empty(_))
        ));
        assert!(matches!(
            Hierarchies::detect(&root.path().join("missing")),
            Err(LayoutError::Read { .. })
        ));
    }
}
