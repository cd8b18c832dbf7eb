//! eBPF counters for network and block I/O: [`loader`] attaches the programs, [`maps`] reads
//! their per-CPU maps. [`Probes::start`] decides, once, which source each figure comes from:
//! eBPF where the kernel accepts the programs, else the fallback files (`/proc/<pid>/net/dev`
//! for network, `io.stat` / `blkio.throttle.*` for block I/O).

pub mod loader;
pub mod maps;

use std::path::Path;

pub use loader::{IoProbe, NetProbe};
pub use maps::{Counters, InterfaceTraffic, IoTotalsById, NetTotals};

/// An error with its causes (aya's errors name the syscall; the errno is in the source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Where a figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Ebpf,
    /// `/proc/<pid>/net/dev` (network).
    Procfs,
    /// `io.stat` or `blkio.throttle.*` (block I/O).
    Cgroupfs,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Ebpf => "ebpf",
            Source::Procfs => "procfs",
            Source::Cgroupfs => "cgroupfs",
        }
    }
}

/// The attached probes; `None` where the fallback is used.
pub struct Probes {
    pub net: Option<NetProbe>,
    pub io: Option<IoProbe>,
}

impl Probes {
    /// No eBPF at all (`--no-ebpf`).
    pub fn disabled() -> Probes {
        tracing::info!(
            network = Source::Procfs.as_str(),
            block_io = Source::Cgroupfs.as_str(),
            "eBPF disabled by flag"
        );
        Probes {
            net: None,
            io: None,
        }
    }

    /// Loads and attaches what the kernel allows, logging once which source each figure
    /// uses and why eBPF was refused.
    pub fn start(unified_root: Option<&Path>) -> Probes {
        loader::raise_memlock_limit();
        let net = match loader::load_net(unified_root) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %chain(&e), "network eBPF refused; falling back to /proc/<pid>/net/dev");
                None
            }
        };
        let io = match loader::load_io() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %chain(&e), "block-I/O eBPF refused; falling back to cgroup io files");
                None
            }
        };
        let probes = Probes { net, io };
        tracing::info!(
            network = probes.net_source().as_str(),
            block_io = probes.io_source().as_str(),
            "metric sources"
        );
        probes
    }

    pub fn net_source(&self) -> Source {
        if self.net.is_some() {
            Source::Ebpf
        } else {
            Source::Procfs
        }
    }

    pub fn io_source(&self) -> Source {
        if self.io.is_some() {
            Source::Ebpf
        } else {
            Source::Cgroupfs
        }
    }

    /// Current totals of both maps (empty where a probe is not attached).
    pub fn read(&self) -> (NetTotals, IoTotalsById) {
        (
            self.net
                .as_ref()
                .map(|p| maps::read_net(&p.map))
                .unwrap_or_default(),
            self.io
                .as_ref()
                .map(|p| maps::read_io(&p.map))
                .unwrap_or_default(),
        )
    }

    /// Drops the map entries of cgroups that no longer exist.
    pub fn forget(&mut self, gone: &[u64]) {
        if gone.is_empty() {
            return;
        }
        if let Some(p) = &mut self.net {
            maps::forget_net(&mut p.map, gone);
        }
        if let Some(p) = &mut self.io {
            maps::forget_io(&mut p.map, gone);
        }
    }
}
