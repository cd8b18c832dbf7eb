//! What `/proc` tells about a container's network: `<pid>/net/dev` (per-interface counters
//! of the process's network namespace: the fallback to eBPF) and `<pid>/net/igmp` (interface
//! index → name in that namespace, to name the interfaces eBPF reports by index). A
//! container's process is found through its cgroup's `cgroup.procs`.

use std::path::{Path, PathBuf};

/// One line of `/proc/<pid>/net/dev`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetDevice {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// Parses `/proc/<pid>/net/dev`: two header lines, then `name: rx_bytes rx_packets errs drop
/// fifo frame compressed multicast tx_bytes tx_packets ...`. Malformed lines are skipped.
pub fn net_dev(text: &str) -> Vec<NetDevice> {
    text.lines()
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let name = name.trim();
            if name.is_empty() || name.contains('|') {
                return None;
            }
            let fields: Vec<u64> = counters
                .split_ascii_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            (fields.len() >= 10).then(|| NetDevice {
                name: name.to_string(),
                rx_bytes: fields[0],
                rx_packets: fields[1],
                tx_bytes: fields[8],
                tx_packets: fields[9],
            })
        })
        .collect()
}

/// Interface index → name from `/proc/<pid>/net/igmp`: lines `<idx>\t<name> : <count> <querier>`
/// for every interface with IPv4 multicast state (which includes `lo` and any configured
/// interface); group lines below each start with whitespace.
pub fn igmp_interfaces(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter(|line| line.starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|line| {
            let mut words = line.split_ascii_whitespace();
            let index = words.next()?.parse().ok()?;
            let name = words.next()?.trim_end_matches(':');
            (!name.is_empty()).then(|| (index, name.to_string()))
        })
        .collect()
}

/// A process in the cgroup `dirs` (the container's directory in each hierarchy) or below it.
pub fn process_in(dirs: &[PathBuf]) -> Option<u32> {
    dirs.iter().find_map(|dir| first_pid(dir, 0))
}

fn first_pid(dir: &Path, depth: usize) -> Option<u32> {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        if let Some(pid) = text.lines().find_map(|l| l.trim().parse().ok()) {
            return Some(pid);
        }
    }
    if depth >= 8 {
        return None;
    }
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .find_map(|e| first_pid(&e.path(), depth + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1234567     890    0    0    0     0          0         0  1234567     890    0    0    0     0       0          0
  eth0: 98765432   12345    0    3    0     0          0        10  5432100    6789    0    0    0     0       0          0
";

    #[test]
    fn parses_net_dev() {
        let devs = net_dev(NET_DEV);
        assert_eq!(devs.len(), 2);
        assert_eq!(
            devs[1],
            NetDevice {
                name: "eth0".into(),
                rx_bytes: 98_765_432,
                rx_packets: 12_345,
                tx_bytes: 5_432_100,
                tx_packets: 6_789
            }
        );
    }

    #[test]
    fn parses_igmp_interface_names() {
        let text = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n\
                    1\tlo        :     1      V3\n\
                    \t\t\t\t010000E0     1 0:00000000\t\t0\n\
                    7\teth0      :     1      V3\n\
                    \t\t\t\t010000E0     1 0:00000000\t\t0\n";
        assert_eq!(
            igmp_interfaces(text),
            vec![(1, "lo".to_string()), (7, "eth0".to_string())]
        );
    }

    #[test]
    fn finds_a_process_in_nested_cgroups() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("c");
        std::fs::create_dir_all(top.join("inner")).unwrap();
        std::fs::write(top.join("cgroup.procs"), "").unwrap();
        std::fs::write(top.join("inner/cgroup.procs"), "4242\n").unwrap();
        assert_eq!(process_in(&[d.path().join("gone"), top]), Some(4242));
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_garbage(text in "\\PC*") {
            let _ = net_dev(&text);
            let _ = igmp_interfaces(&text);
        }

        #[test]
        fn net_dev_round_trips(name in "[a-z][a-z0-9]{0,14}", v in proptest::array::uniform16(any::<u64>())) {
            let line: Vec<String> = v.iter().map(u64::to_string).collect();
            let text = format!("h1\nh2|\n {name}: {}\n", line.join(" "));
            let devs = net_dev(&text);
            prop_assert_eq!(devs.len(), 1);
            prop_assert_eq!(devs[0].rx_bytes, v[0]);
            prop_assert_eq!(devs[0].tx_packets, v[9]);
        }
    }
}
