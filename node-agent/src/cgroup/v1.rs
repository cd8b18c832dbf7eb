//! Readers of cgroup v1 files: `cpuacct.usage` + `cpuacct.stat`, `memory.usage_in_bytes` +
//! `memory.stat`, `blkio.throttle.io_service_bytes` + `io_serviced`.

use std::path::Path;

use super::parse::{blkio_rwstat, flat_keyed, single_u64, IoTotals};
use super::stats::{CpuStats, MemoryStats};

/// `cpuacct.stat` counts in USER_HZ, which the kernel ABI fixes at 100 on every architecture
/// (whatever CONFIG_HZ is).
const USER_HZ: f64 = 100.0;

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

/// `cpuacct.usage` (nanoseconds) and `cpuacct.stat` (`user`, `system` in USER_HZ).
pub fn cpu(dir: &Path) -> Option<CpuStats> {
    let usage_ns = single_u64(&read(dir, "cpuacct.usage")?)?;
    let stat = read(dir, "cpuacct.stat").unwrap_or_default();
    let ticks = |key| flat_keyed(&stat, key).map_or(0.0, |t| t as f64 / USER_HZ);
    Some(CpuStats {
        usage_seconds: usage_ns as f64 / 1e9,
        user_seconds: ticks("user"),
        system_seconds: ticks("system"),
    })
}

/// `memory.usage_in_bytes` and `memory.stat`; the hierarchical `total_*` keys as cAdvisor
/// uses, falling back to the cgroup's own where the kernel has no totals.
pub fn memory(dir: &Path) -> Option<MemoryStats> {
    let usage = single_u64(&read(dir, "memory.usage_in_bytes")?)?;
    let stat = read(dir, "memory.stat").unwrap_or_default();
    let key = |total: &str, own: &str| {
        flat_keyed(&stat, total)
            .or_else(|| flat_keyed(&stat, own))
            .unwrap_or(0)
    };
    Some(MemoryStats {
        usage_bytes: usage,
        working_set_bytes: usage.saturating_sub(key("total_inactive_file", "inactive_file")),
        rss_bytes: key("total_rss", "rss"),
    })
}

/// The throttle policy's byte and operation counts (kept on every kernel, unlike the CFQ
/// ones), recursive where the kernel offers it so that nested cgroups count.
pub fn io(dir: &Path) -> Option<IoTotals> {
    let rwstat = |base: &str| {
        read(dir, &format!("{base}_recursive"))
            .or_else(|| read(dir, base))
            .map(|t| blkio_rwstat(&t))
    };
    let (read_bytes, write_bytes) = rwstat("blkio.throttle.io_service_bytes")?;
    let (reads, writes) = rwstat("blkio.throttle.io_serviced").unwrap_or((0, 0));
    Some(IoTotals {
        read_bytes,
        write_bytes,
        reads,
        writes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_v1_cgroup() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("cpuacct.usage"), "3000000000\n").unwrap();
        std::fs::write(p.join("cpuacct.stat"), "user 250\nsystem 40\n").unwrap();
        std::fs::write(p.join("memory.usage_in_bytes"), "10000\n").unwrap();
        std::fs::write(
            p.join("memory.stat"),
            "rss 10\ninactive_file 99\ntotal_rss 5000\ntotal_inactive_file 2500\n",
        )
        .unwrap();
        std::fs::write(
            p.join("blkio.throttle.io_service_bytes"),
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n",
        )
        .unwrap();
        std::fs::write(
            p.join("blkio.throttle.io_serviced"),
            "8:0 Read 1\n8:0 Write 2\n8:0 Total 3\nTotal 3\n",
        )
        .unwrap();
        assert_eq!(
            cpu(p),
            Some(CpuStats {
                usage_seconds: 3.0,
                user_seconds: 2.5,
                system_seconds: 0.4
            })
        );
        assert_eq!(
            memory(p),
            Some(MemoryStats {
                usage_bytes: 10000,
                working_set_bytes: 7500,
                rss_bytes: 5000
            })
        );
        assert_eq!(
            io(p),
            Some(IoTotals {
                read_bytes: 4096,
                write_bytes: 8192,
                reads: 1,
                writes: 2
            })
        );
    }
}
