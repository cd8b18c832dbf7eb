//! The Strata node agent: container metrics for one Kubernetes node.
//!
//! A collection round ([`collect`]) rescans the cgroup tree ([`cgroup`]), reads CPU and
//! memory from cgroup files, network and block I/O from eBPF maps ([`ebpf`], programs in
//! `bpf/`) or their fallbacks ([`procfs`], cgroup io files), labels containers from the pods on
//! the node ([`kube_labels`]), and yields cAdvisor-named series ([`sample`]). [`agent`] runs
//! rounds every interval, [`ship`] sends them by Prometheus remote write, [`http`] serves
//! `/metrics` and `/health`, [`telemetry`] counts what the agent does. Flags: [`cli`].

pub mod agent;
pub mod cgroup;
pub mod cli;
pub mod collect;
pub mod ebpf;
pub mod http;
pub mod kube_labels;
pub mod procfs;
pub mod sample;
pub mod ship;
pub mod telemetry;
