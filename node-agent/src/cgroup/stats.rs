//! A container's CPU, memory and block-I/O figures, each read from the hierarchy where its
//! controller is attached (see [`super::layout`]).

use std::path::{Path, PathBuf};

use super::layout::Hierarchies;
use super::parse::IoTotals;
use super::{v1, v2};

/// Cumulative CPU time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuStats {
    pub usage_seconds: f64,
    pub user_seconds: f64,
    pub system_seconds: f64,
}

/// Memory, as cAdvisor reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub usage_bytes: u64,
    /// Usage minus inactive file pages (what the kubelet evicts on), never below zero.
    pub working_set_bytes: u64,
    /// Anonymous memory (v2 `anon`, v1 `total_rss`).
    pub rss_bytes: u64,
}

/// Where a container's files are in each hierarchy.
pub struct CgroupFiles<'a> {
    h: &'a Hierarchies,
    rel: &'a str,
}

impl<'a> CgroupFiles<'a> {
    /// `rel` as in [`super::Container::path`].
    pub fn new(h: &'a Hierarchies, rel: &'a str) -> Self {
        CgroupFiles { h, rel }
    }

    fn v1(&self, controller: &str) -> Option<PathBuf> {
        self.h.v1(controller).map(|root| self.join(root))
    }

    fn v2(&self) -> Option<PathBuf> {
        self.h.unified.as_deref().map(|root| self.join(root))
    }

    fn join(&self, root: &Path) -> PathBuf {
        root.join(self.rel.trim_start_matches('/'))
    }

    pub fn cpu(&self) -> Option<CpuStats> {
        match self.v1("cpuacct") {
            Some(dir) => v1::cpu(&dir),
            None => v2::cpu(&self.v2()?),
        }
    }

    pub fn memory(&self) -> Option<MemoryStats> {
        match self.v1("memory") {
            Some(dir) => v1::memory(&dir),
            None => v2::memory(&self.v2()?),
        }
    }

    /// Block I/O from the kernel's own accounting (the fallback to eBPF).
    pub fn io(&self) -> Option<IoTotals> {
        match self.v1("blkio") {
            Some(dir) => v1::io(&dir),
            None => v2::io(&self.v2()?),
        }
    }

    /// Directories of the container in every hierarchy, to find a process in it.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.v2().into_iter().collect();
        dirs.extend(self.h.v1.values().map(|root| self.join(root)));
        dirs
    }
}
