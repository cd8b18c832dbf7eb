//! Readers of cgroup v2 files: `cpu.stat`, `memory.current` + `memory.stat`, `io.stat`.

use std::path::Path;

use super::parse::{flat_keyed, io_stat, single_u64, IoTotals};
use super::stats::{CpuStats, MemoryStats};

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

/// `cpu.stat` (microseconds). Present even where the cpu controller is not enabled.
pub fn cpu(dir: &Path) -> Option<CpuStats> {
    let text = read(dir, "cpu.stat")?;
    let seconds = |key| flat_keyed(&text, key).map(|us| us as f64 / 1e6);
    Some(CpuStats {
        usage_seconds: seconds("usage_usec")?,
        user_seconds: seconds("user_usec").unwrap_or(0.0),
        system_seconds: seconds("system_usec").unwrap_or(0.0),
    })
}

/// `memory.current` and `memory.stat` (`anon`, `inactive_file`).
pub fn memory(dir: &Path) -> Option<MemoryStats> {
    let usage = single_u64(&read(dir, "memory.current")?)?;
    let stat = read(dir, "memory.stat").unwrap_or_default();
    let inactive_file = flat_keyed(&stat, "inactive_file").unwrap_or(0);
    Some(MemoryStats {
        usage_bytes: usage,
        working_set_bytes: usage.saturating_sub(inactive_file),
        rss_bytes: flat_keyed(&stat, "anon").unwrap_or(0),
    })
}

/// `io.stat`, summed over devices. Missing when the io controller is not enabled for the
/// cgroup's parent.
pub fn io(dir: &Path) -> Option<IoTotals> {
    Some(io_stat(&read(dir, "io.stat")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_v2_cgroup() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(
            p.join("cpu.stat"),
            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
        )
        .unwrap();
        std::fs::write(p.join("memory.current"), "10000\n").unwrap();
        std::fs::write(
            p.join("memory.stat"),
            "anon 6000\nfile 4000\nactive_file 1000\ninactive_file 3000\n",
        )
        .unwrap();
        std::fs::write(p.join("io.stat"), "8:0 rbytes=1 wbytes=2 rios=3 wios=4\n").unwrap();
        assert_eq!(
            cpu(p),
            Some(CpuStats {
                usage_seconds: 2.5,
                user_seconds: 2.0,
                system_seconds: 0.5
            })
        );
        assert_eq!(
            memory(p),
            Some(MemoryStats {
                usage_bytes: 10000,
                working_set_bytes: 7000,
                rss_bytes: 6000
            })
        );
        assert_eq!(io(p).unwrap().writes, 4);
        assert_eq!(cpu(&p.join("gone")), None);
    }
}
