//! The node-agent DaemonSet: one `strata-agent` per Kubernetes node, shipping container
//! metrics to the cluster's client Service by Prometheus remote write.
//!
//! The agent's contract (flags below, `/metrics` on 9100) is fixed here and in
//! ARCHITECTURE.md so that the agent crate can be written against it.

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    HostPathVolumeSource, ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{labels, owned_meta, selector_labels, Component, Names};
use crate::crd::TimeSeriesCluster;

/// Port of the agent's own `/metrics` and `/health`.
pub const AGENT_METRICS_PORT: i32 = 9100;

fn host_mount(name: &str, host: &str, mount: &str) -> (Volume, VolumeMount) {
    (
        Volume {
            name: name.into(),
            host_path: Some(HostPathVolumeSource {
                path: host.into(),
                type_: Some("Directory".into()),
            }),
            ..Default::default()
        },
        VolumeMount {
            name: name.into(),
            mount_path: mount.into(),
            read_only: Some(true),
            ..Default::default()
        },
    )
}

/// The DaemonSet `<name>-agent`, or `None` when the agent is disabled.
pub fn agent_daemonset(tsc: &TimeSeriesCluster) -> Option<DaemonSet> {
    let agent = &tsc.spec.node_agent;
    if !agent.enabled {
        return None;
    }
    let names = Names::of(tsc);
    let (cg_vol, cg_mount) = host_mount("cgroup", "/sys/fs/cgroup", "/host/sys/fs/cgroup");
    let (proc_vol, proc_mount) = host_mount("proc", "/proc", "/host/proc");
    let container = Container {
        name: "strata-agent".into(),
        image: Some(agent.image.clone()),
        image_pull_policy: tsc.spec.image_pull_policy.map(|p| p.as_str().to_string()),
        command: Some(vec!["strata-agent".into()]),
        args: Some(vec![
            "--node-name=$(NODE_NAME)".into(),
            format!(
                "--remote-write-url={}://{}:{}/api/v1/write",
                super::http_scheme(tsc),
                names.client_dns(),
                tsc.spec.ports.http
            ),
            format!("--interval={}", agent.interval),
            format!("--listen-addr=0.0.0.0:{AGENT_METRICS_PORT}"),
            "--cgroup-root=/host/sys/fs/cgroup".into(),
            "--proc-root=/host/proc".into(),
        ]),
        env: Some(vec![EnvVar {
            name: "NODE_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "spec.nodeName".into(),
                    api_version: None,
                }),
                ..Default::default()
            }),
            value: None,
        }]),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: AGENT_METRICS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/health".into()),
                port: IntOrString::String("metrics".into()),
                ..Default::default()
            }),
            period_seconds: Some(20),
            ..Default::default()
        }),
        resources: agent.resources.clone(),
        volume_mounts: Some(vec![cg_mount, proc_mount]),
        // Loading eBPF programs needs root with CAP_BPF and CAP_PERFMON (tp_btf), CAP_NET_ADMIN
        // for the cgroup_skb programs that count network traffic, and CAP_SYS_RESOURCE for the
        // memlock limit on kernels before 5.11; everything else is dropped and the root
        // filesystem is read-only. Where eBPF is refused the agent falls back to /proc and
        // cgroup files.
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: Some(vec![
                    "BPF".into(),
                    "PERFMON".into(),
                    "NET_ADMIN".into(),
                    "SYS_RESOURCE".into(),
                ]),
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "Unconfined".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    Some(DaemonSet {
        metadata: owned_meta(tsc, &names, names.agent(), Component::Agent),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(selector_labels(&names, Component::Agent)),
                match_expressions: None,
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&names, Component::Agent)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names.agent()),
                    containers: vec![container],
                    volumes: Some(vec![cg_vol, proc_vol]),
                    tolerations: if agent.tolerations.is_empty() {
                        None
                    } else {
                        Some(agent.tolerations.clone())
                    },
                    priority_class_name: Some("system-node-critical".into()),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::cluster;

    #[test]
    fn disabled_by_default() {
        assert!(agent_daemonset(&cluster("tsc", "{}")).is_none());
    }

    #[test]
    fn ships_to_the_client_service_with_least_privilege() {
        let ds = agent_daemonset(&cluster(
            "tsc",
            "nodeAgent: {enabled: true, image: 'agent:1', interval: 30s}",
        ))
        .unwrap();
        assert_eq!(ds.metadata.name.as_deref(), Some("tsc-agent"));
        let pod = ds.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("tsc-agent"));
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("agent:1"));
        let args = c.args.as_ref().unwrap();
        assert!(args
            .contains(&"--remote-write-url=http://tsc.metrics.svc:8181/api/v1/write".to_string()));
        assert!(args.contains(&"--interval=30s".to_string()));
        let caps = c
            .security_context
            .as_ref()
            .unwrap()
            .capabilities
            .as_ref()
            .unwrap();
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert!(!caps.add.as_ref().unwrap().iter().any(|c| c == "SYS_ADMIN"));
        assert!(c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .all(|m| m.read_only == Some(true)));
    }

    #[test]
    fn remote_write_follows_tls() {
        let tsc = cluster("tsc", "nodeAgent: {enabled: true}\ntls: {secretName: tls}");
        let ds = agent_daemonset(&tsc).unwrap();
        let args = ds.spec.unwrap().template.spec.unwrap().containers[0]
            .args
            .clone()
            .unwrap();
        assert!(
            args.contains(&"--remote-write-url=https://tsc.metrics.svc:8181/api/v1/write".into()),
            "{args:?}"
        );
    }
}
