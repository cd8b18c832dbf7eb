//! Loads the embedded programs (compiled from `bpf/*.bpf.c` by `build.rs`) with aya and
//! attaches them: `cgroup_skb` ingress and egress on the root of the cgroup v2 hierarchy
//! (alongside whatever else is attached there, see [`attach_mode`]) and
//! `tp_btf/block_bio_queue`.
//! Each object is loaded on its own so that a kernel that refuses one still gets the other.

use std::fs::File;
use std::path::Path;

use aya::maps::{MapData, PerCpuHashMap};
use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType};
use aya::{Btf, Ebpf, EbpfLoader};

use super::maps::{Counters, IoKey, NetKey};

static NET_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/net.bpf.o"));
static BLKIO_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/blkio.bpf.o"));

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no cgroup v2 hierarchy to attach cgroup_skb programs to")]
    NoUnifiedHierarchy,
    #[error("cannot open the cgroup v2 root {path}: {source}")]
    OpenCgroup {
        path: String,
        source: std::io::Error,
    },
    #[error("kernel BTF unavailable (/sys/kernel/btf/vmlinux): {0}")]
    Btf(#[from] aya::BtfError),
    #[error(transparent)]
    Ebpf(#[from] aya::EbpfError),
    #[error(transparent)]
    Program(#[from] aya::programs::ProgramError),
    #[error(transparent)]
    Map(#[from] aya::maps::MapError),
    #[error("program or map {0} missing from the embedded object")]
    Missing(&'static str),
}

/// The network programs, attached for as long as this lives.
pub struct NetProbe {
    /// Owns the programs and their links; dropping it detaches them.
    _ebpf: Ebpf,
    pub map: PerCpuHashMap<MapData, NetKey, Counters>,
}

/// The block-I/O program, attached for as long as this lives.
pub struct IoProbe {
    _ebpf: Ebpf,
    pub map: PerCpuHashMap<MapData, IoKey, Counters>,
}

/// Kernels before 5.11 charge eBPF memory to RLIMIT_MEMLOCK (hence SYS_RESOURCE in the
/// DaemonSet); newer ones to the memory cgroup, where this is harmless.
pub fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid pointer to an initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot raise RLIMIT_MEMLOCK");
    }
}

/// From 5.7 aya attaches through a BPF link, which always coexists with other programs on the
/// cgroup and takes no flags (the kernel refuses `BPF_F_ALLOW_MULTI` there); before that it
/// uses `BPF_PROG_ATTACH`, where only `BPF_F_ALLOW_MULTI` leaves room for other programs.
fn attach_mode() -> CgroupAttachMode {
    match aya::util::KernelVersion::current() {
        Ok(v) if v < aya::util::KernelVersion::new(5, 7, 0) => CgroupAttachMode::AllowMultiple,
        _ => CgroupAttachMode::Single,
    }
}

pub fn load_net(unified_root: Option<&Path>) -> Result<NetProbe, LoadError> {
    let root = unified_root.ok_or(LoadError::NoUnifiedHierarchy)?;
    let cgroup = File::open(root).map_err(|source| LoadError::OpenCgroup {
        path: root.display().to_string(),
        source,
    })?;
    let mut ebpf = EbpfLoader::new().load(NET_OBJECT)?;
    for (name, attach) in [
        ("count_ingress", CgroupSkbAttachType::Ingress),
        ("count_egress", CgroupSkbAttachType::Egress),
    ] {
        let program: &mut CgroupSkb = ebpf
            .program_mut(name)
            .ok_or(LoadError::Missing("count_ingress/count_egress"))?
            .try_into()?;
        program.load()?;
        program.attach(&cgroup, attach, attach_mode())?;
    }
    let map = ebpf
        .take_map("net_stats")
        .ok_or(LoadError::Missing("net_stats"))?;
    Ok(NetProbe {
        map: PerCpuHashMap::try_from(map)?,
        _ebpf: ebpf,
    })
}

pub fn load_io() -> Result<IoProbe, LoadError> {
    let btf = Btf::from_sys_fs()?;
    let mut ebpf = EbpfLoader::new().btf(Some(&btf)).load(BLKIO_OBJECT)?;
    let program: &mut BtfTracePoint = ebpf
        .program_mut("count_bio")
        .ok_or(LoadError::Missing("count_bio"))?
        .try_into()?;
    program.load("block_bio_queue", &btf)?;
    program.attach()?;
    let map = ebpf
        .take_map("io_stats")
        .ok_or(LoadError::Missing("io_stats"))?;
    Ok(IoProbe {
        map: PerCpuHashMap::try_from(map)?,
        _ebpf: ebpf,
    })
}
