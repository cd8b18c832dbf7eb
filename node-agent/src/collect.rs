//! One collection round: rescan the cgroup tree, read every container's figures from cgroup
//! files, eBPF maps or `/proc`, and label them — a [`Scrape`] of cAdvisor-named series.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::cgroup::{discover, CgroupFiles, Container, Hierarchies};
use crate::ebpf::{Counters, InterfaceTraffic, Probes, Source};
use crate::kube_labels::PodIndex;
use crate::procfs;
use crate::sample::{self, Family, Scrape, Series};

/// Collects container metrics on this host.
pub struct Collector {
    hierarchies: Hierarchies,
    proc_root: PathBuf,
    probes: Probes,
    /// Cgroup ids seen in the previous round, to drop eBPF map entries of vanished ones.
    last_ids: HashSet<u64>,
}

/// What one round found, besides the series.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoundInfo {
    pub containers: usize,
    pub labelled: usize,
}

impl Collector {
    pub fn new(hierarchies: Hierarchies, proc_root: PathBuf, probes: Probes) -> Collector {
        Collector {
            hierarchies,
            proc_root,
            probes,
            last_ids: HashSet::new(),
        }
    }

    pub fn net_source(&self) -> Source {
        self.probes.net_source()
    }

    pub fn io_source(&self) -> Source {
        self.probes.io_source()
    }

    pub fn hierarchies(&self) -> &Hierarchies {
        &self.hierarchies
    }

    /// One round at `timestamp_ms`.
    pub fn collect(&mut self, labels: &PodIndex, timestamp_ms: i64) -> (Scrape, RoundInfo) {
        let containers = discover(&self.hierarchies);
        let ids: HashSet<u64> = containers
            .iter()
            .flat_map(|c| c.cgroup_ids.iter().copied())
            .collect();
        let gone: Vec<u64> = self.last_ids.difference(&ids).copied().collect();
        self.probes.forget(&gone);
        self.last_ids = ids;

        let (net, io) = self.probes.read();
        let mut series = Vec::new();
        let mut info = RoundInfo {
            containers: containers.len(),
            labelled: 0,
        };
        for container in &containers {
            let mut base = vec![("id", container.path.clone())];
            if let Some(l) = labels.lookup(&container.reference) {
                info.labelled += 1;
                for (name, value) in [
                    ("namespace", &l.namespace),
                    ("pod", &l.pod),
                    ("container", &l.container),
                    ("image", &l.image),
                ] {
                    if !value.is_empty() {
                        base.push((name, value.clone()));
                    }
                }
            }
            let files = CgroupFiles::new(&self.hierarchies, &container.path);
            let mut push = |family: Family, value: f64| {
                series.push(Series {
                    family,
                    labels: base.clone(),
                    value,
                })
            };
            if let Some(cpu) = files.cpu() {
                push(sample::CPU_USAGE, cpu.usage_seconds);
                push(sample::CPU_USER, cpu.user_seconds);
                push(sample::CPU_SYSTEM, cpu.system_seconds);
            }
            if let Some(mem) = files.memory() {
                push(sample::MEMORY_USAGE, mem.usage_bytes as f64);
                push(sample::MEMORY_WORKING_SET, mem.working_set_bytes as f64);
                push(sample::MEMORY_RSS, mem.rss_bytes as f64);
            }
            let io_totals = match self.probes.io_source() {
                Source::Ebpf => Some(sum_io(container, &io)),
                _ => files.io(),
            };
            if let Some(t) = io_totals {
                push(sample::FS_READ_BYTES, t.read_bytes as f64);
                push(sample::FS_WRITE_BYTES, t.write_bytes as f64);
                push(sample::FS_READS, t.reads as f64);
                push(sample::FS_WRITES, t.writes as f64);
            }
            let pid = procfs::process_in(&files.dirs());
            let interfaces = match self.probes.net_source() {
                Source::Ebpf => self.ebpf_interfaces(container, &net, pid),
                _ => pid.map(|p| self.procfs_interfaces(p)).unwrap_or_default(),
            };
            for (name, t) in interfaces {
                let mut labels = base.clone();
                labels.push(("interface", name));
                for (family, value) in [
                    (sample::NET_RX_BYTES, t.rx.bytes),
                    (sample::NET_RX_PACKETS, t.rx.events),
                    (sample::NET_TX_BYTES, t.tx.bytes),
                    (sample::NET_TX_PACKETS, t.tx.events),
                ] {
                    series.push(Series {
                        family,
                        labels: labels.clone(),
                        value: value as f64,
                    });
                }
            }
        }
        (
            Scrape {
                timestamp_ms,
                series,
            },
            info,
        )
    }

    /// Traffic of the container's sockets by interface, named from the container's network
    /// namespace.
    fn ebpf_interfaces(
        &self,
        container: &Container,
        net: &crate::ebpf::NetTotals,
        pid: Option<u32>,
    ) -> Vec<(String, InterfaceTraffic)> {
        let mut by_index: HashMap<u32, InterfaceTraffic> = HashMap::new();
        for id in &container.cgroup_ids {
            for (ifindex, t) in net.get(id).into_iter().flatten() {
                let acc = by_index.entry(*ifindex).or_default();
                acc.rx = add(acc.rx, t.rx);
                acc.tx = add(acc.tx, t.tx);
            }
        }
        if by_index.is_empty() {
            return Vec::new();
        }
        let names: HashMap<u32, String> = pid
            .and_then(|p| read(&self.proc_root, p, "net/igmp"))
            .map(|t| procfs::igmp_interfaces(&t).into_iter().collect())
            .unwrap_or_default();
        let mut out: Vec<(String, InterfaceTraffic)> = by_index
            .into_iter()
            .map(|(index, t)| {
                let name = names
                    .get(&index)
                    .cloned()
                    .unwrap_or_else(|| format!("if{index}"));
                (name, t)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every interface of the process's network namespace.
    fn procfs_interfaces(&self, pid: u32) -> Vec<(String, InterfaceTraffic)> {
        read(&self.proc_root, pid, "net/dev")
            .map(|t| procfs::net_dev(&t))
            .unwrap_or_default()
            .into_iter()
            .map(|d| {
                (
                    d.name,
                    InterfaceTraffic {
                        rx: Counters {
                            bytes: d.rx_bytes,
                            events: d.rx_packets,
                        },
                        tx: Counters {
                            bytes: d.tx_bytes,
                            events: d.tx_packets,
                        },
                    },
                )
            })
            .collect()
    }
}

fn read(proc_root: &Path, pid: u32, file: &str) -> Option<String> {
    std::fs::read_to_string(proc_root.join(pid.to_string()).join(file)).ok()
}

fn add(a: Counters, b: Counters) -> Counters {
    Counters {
        bytes: a.bytes.wrapping_add(b.bytes),
        events: a.events.wrapping_add(b.events),
    }
}

fn sum_io(container: &Container, io: &crate::ebpf::IoTotalsById) -> crate::cgroup::parse::IoTotals {
    let mut t = crate::cgroup::parse::IoTotals::default();
    for id in &container.cgroup_ids {
        if let Some((r, w)) = io.get(id) {
            t.read_bytes = t.read_bytes.wrapping_add(r.bytes);
            t.reads = t.reads.wrapping_add(r.events);
            t.write_bytes = t.write_bytes.wrapping_add(w.bytes);
            t.writes = t.writes.wrapping_add(w.events);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0f3b6c2d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";

    /// A pure v2 tree in a temporary directory, read with the fallbacks.
    #[test]
    fn fallback_round_over_a_fake_v2_tree() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("cgroup.controllers"), "cpu io memory").unwrap();
        let dir = r.join(format!("docker/{ID}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("cpu.stat"),
            "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n",
        )
        .unwrap();
        std::fs::write(dir.join("memory.current"), "8192").unwrap();
        std::fs::write(dir.join("memory.stat"), "anon 4096\ninactive_file 1024\n").unwrap();
        std::fs::write(
            dir.join("io.stat"),
            "8:0 rbytes=10 wbytes=20 rios=1 wios=2\n",
        )
        .unwrap();
        std::fs::write(dir.join("cgroup.procs"), "77\n").unwrap();
        let proc_root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(proc_root.path().join("77/net")).unwrap();
        std::fs::write(
            proc_root.path().join("77/net/dev"),
            "h\nh\n  eth0: 100 2 0 0 0 0 0 0 300 4 0 0 0 0 0 0\n",
        )
        .unwrap();

        let h = Hierarchies::detect(r).unwrap();
        let mut c = Collector::new(h, proc_root.path().into(), Probes::disabled());
        let (scrape, info) = c.collect(&PodIndex::default(), 1000);
        assert_eq!(info.containers, 1);
        let value = |name: &str| {
            scrape
                .series
                .iter()
                .find(|s| s.family.name == name)
                .unwrap_or_else(|| panic!("{name} missing"))
                .value
        };
        assert_eq!(value("container_cpu_usage_seconds_total"), 1.5);
        assert_eq!(value("container_memory_working_set_bytes"), 7168.0);
        assert_eq!(value("container_memory_rss"), 4096.0);
        assert_eq!(value("container_fs_writes_bytes_total"), 20.0);
        assert_eq!(value("container_network_transmit_packets_total"), 4.0);
        let net = scrape
            .series
            .iter()
            .find(|s| s.family.name == "container_network_receive_bytes_total")
            .unwrap();
        assert_eq!(
            net.labels,
            vec![
                ("id", format!("/docker/{ID}")),
                ("interface", "eth0".into())
            ]
        );
    }
}
