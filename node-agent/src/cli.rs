//! Command-line flags. The operator's DaemonSet passes `--node-name`, `--remote-write-url`,
//! `--interval`, `--listen-addr`, `--cgroup-root` and `--proc-root`
//! (`operator/src/resources/agent_daemonset.rs`); those names are a contract.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// strata-agent: container CPU, memory, network and block-I/O metrics for one node.
///
/// Finds every container in the cgroup tree (v1, v2 or hybrid; kubelet's systemd and cgroupfs
/// layouts, docker, containerd, CRI-O), labels it from the Kubernetes pods on this node when
/// running in a cluster, and every --interval ships cAdvisor-named series
/// (container_cpu_usage_seconds_total, container_memory_working_set_bytes,
/// container_network_receive_bytes_total, container_fs_writes_bytes_total, ...) by Prometheus
/// remote write. Network and block I/O come from eBPF programs (cgroup_skb on the cgroup v2
/// root, tp_btf/block_bio_queue) where the kernel allows them, else from /proc/<pid>/net/dev
/// and the cgroup io files. Serves the same series and its own counters on /metrics, and
/// /health.
#[derive(Parser, Debug, Clone)]
#[command(name = "strata-agent", version)]
pub struct Args {
    /// This Kubernetes node's name: only pods with spec.nodeName equal to it are watched.
    #[arg(long, env = "NODE_NAME", default_value = "")]
    pub node_name: String,

    /// Prometheus remote-write endpoint, e.g. http://strata.metrics.svc:8181/api/v1/write.
    /// Without it the agent only serves /metrics.
    #[arg(long, env = "STRATA_AGENT_REMOTE_WRITE_URL")]
    pub remote_write_url: Option<String>,

    /// File holding a bearer token for the remote-write endpoint (a node with `auth.http` on
    /// accepts a token whose SHA-256 is in `auth.tokens`).
    #[arg(long, env = "STRATA_AGENT_BEARER_TOKEN_FILE")]
    pub bearer_token_file: Option<PathBuf>,

    /// Collection (and shipping) interval: a number with ms, s, m or h.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Address of /metrics and /health.
    #[arg(long, default_value = "0.0.0.0:9100")]
    pub listen_addr: SocketAddr,

    /// Where the host's cgroup hierarchies are mounted (a v2 root, or v1 controller
    /// directories with an optional unified/ beside them).
    #[arg(long, default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,

    /// The host's /proc (for a container process's network counters and interface names).
    #[arg(long, default_value = "/proc")]
    pub proc_root: PathBuf,

    /// Do not load eBPF programs: network from /proc/<pid>/net/dev, block I/O from io.stat or
    /// blkio.throttle.*.
    #[arg(long)]
    pub no_ebpf: bool,

    /// Collection rounds kept while the remote-write endpoint is unreachable; beyond that the
    /// oldest is dropped (and counted).
    #[arg(long, default_value_t = 240)]
    pub max_queued_rounds: usize,

    /// Timeout of one remote-write request.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub remote_write_timeout: Duration,
}

/// `15s`, `500ms`, `2m`, `1h` (the operator's CRD accepts `^[0-9]+(ms|s|m|h)$`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?}: missing unit (ms, s, m, h)"))?;
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a number before the unit"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    };
    if d.is_zero() {
        return Err(format!("{s:?}: must be positive"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "15", "s", "0s", "1.5s", "-1s", "10d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn accepts_the_daemonset_arguments() {
        let args = Args::try_parse_from([
            "strata-agent",
            "--node-name=node-1",
            "--remote-write-url=http://tsc.metrics.svc:8181/api/v1/write",
            "--interval=30s",
            "--listen-addr=0.0.0.0:9100",
            "--cgroup-root=/host/sys/fs/cgroup",
            "--proc-root=/host/proc",
        ])
        .unwrap();
        assert_eq!(args.node_name, "node-1");
        assert_eq!(args.interval, Duration::from_secs(30));
        assert_eq!(args.cgroup_root, PathBuf::from("/host/sys/fs/cgroup"));
        assert!(!args.no_ebpf);
    }

    proptest! {
        #[test]
        fn duration_parser_never_panics(s in "\\PC*") {
            let _ = parse_duration(&s);
        }
    }
}
