//! The StatefulSet of storage nodes.
//!
//! Updates use `OnDelete`: the controller replaces pods itself, one at a time and only while
//! the ring is healthy, which a RollingUpdate cannot gate on. Volume claim templates are
//! immutable in Kubernetes; the controller re-creates the StatefulSet (orphaning its pods)
//! when they must change.

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{labels, owned_meta, paths, selector_labels, Component, Names, RUN_AS_USER};
use crate::crd::{SecretKeyRef, TimeSeriesCluster, VolumeSpec};

/// Pod annotation carrying a digest of `config.yaml`, so a config change is a template change
/// and rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "strata.dev/config-hash";

/// Seconds the kubelet waits after SIGTERM: the node drains in-flight writes and flushes.
const TERMINATION_GRACE_SECONDS: i64 = 60;

/// Seed nodes listed in every pod's flags. A fixed small prefix of the ordinals keeps the pod
/// template unchanged when the cluster scales past it.
const MAX_SEEDS: i32 = 3;

/// What the controller decided for this reconcile, beyond the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaPlan {
    /// StatefulSet replicas: the spec's count, or more while nodes are still decommissioning.
    pub replicas: i32,
    /// Digest of the rendered `config.yaml`.
    pub config_hash: String,
}

/// The StatefulSet `<name>` with `wal` and `data` claim templates.
pub fn statefulset(tsc: &TimeSeriesCluster, plan: &ReplicaPlan) -> StatefulSet {
    let names = Names::of(tsc);
    let spec = &tsc.spec;
    let selector = selector_labels(&names, Component::Node);
    let reclaim = match spec.storage.reclaim_policy {
        crate::crd::ReclaimPolicy::Delete => "Delete",
        crate::crd::ReclaimPolicy::Retain => "Retain",
    };
    StatefulSet {
        metadata: owned_meta(tsc, &names, names.cluster.clone(), Component::Node),
        spec: Some(StatefulSetSpec {
            replicas: Some(plan.replicas),
            service_name: Some(names.peers_service()),
            // Nodes find each other by gossip; none needs another to be ready to start.
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                rolling_update: None,
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    // Scale-down claims are deleted by the controller, and only after the
                    // node's data has been handed off.
                    when_scaled: Some("Retain".into()),
                    when_deleted: Some(reclaim.into()),
                },
            ),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                match_expressions: None,
            },
            template: pod_template(tsc, &names, plan),
            volume_claim_templates: Some(vec![
                claim_template(&names, "wal", &spec.storage.wal),
                claim_template(&names, "data", &spec.storage.data),
            ]),
            ..Default::default()
        }),
        status: None,
    }
}

fn claim_template(names: &Names, name: &str, v: &VolumeSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(selector_labels(names, Component::Node)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: v.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Quantity(v.size.clone()))].into()),
                limits: None,
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// The node's flags: identity and addresses differ per pod, so they come from the downward
/// API through `$(VAR)` expansion rather than from the shared ConfigMap.
pub fn node_args(tsc: &TimeSeriesCluster, names: &Names) -> Vec<String> {
    let p = &tsc.spec.ports;
    let seeds = (0..tsc.spec.replicas.clamp(1, MAX_SEEDS))
        .map(|i| format!("{}:{}", names.pod_dns(i), p.gossip))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        format!("--config={}", paths::CONFIG_FILE),
        "--node-id=$(POD_NAME)".into(),
        format!("--data-dir={}", paths::DATA_DIR),
        format!("--wal-dir={}", paths::WAL_DIR),
        format!("--gossip-addr=$(POD_IP):{}", p.gossip),
        format!("--grpc-addr=$(POD_IP):{}", p.grpc),
        format!("--seeds={seeds}"),
        format!("--replication-factor={}", tsc.spec.replication_factor),
        "--mode=all".into(),
    ]
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..Default::default()
        }),
        value: None,
    }
}

fn secret_env(name: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        value: None,
    }
}

fn port(name: &str, number: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some(protocol.into()),
        ..Default::default()
    }
}

/// A probe of the node's HTTP port. With `spec.tls` the node serves that port over TLS only,
/// so a plain-HTTP probe would never pass; the kubelet does not verify the certificate of an
/// HTTPS probe, so no trust needs configuring.
fn http_probe(tsc: &TimeSeriesCluster, path: &str, period: i32, failures: i32) -> Probe {
    let scheme = super::http_scheme(tsc).to_ascii_uppercase();
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            scheme: Some(scheme),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(3),
        ..Default::default()
    }
}

fn pod_template(tsc: &TimeSeriesCluster, names: &Names, plan: &ReplicaPlan) -> PodTemplateSpec {
    let spec = &tsc.spec;
    let p = &spec.ports;
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_IP", "status.podIP"),
    ];
    if let Some(s) = &spec.cluster_secret {
        env.push(secret_env("STRATA_CLUSTER__SECRET", s));
    }
    if let Some(s) = spec.mqtt.as_ref().and_then(|m| m.password_secret.as_ref()) {
        env.push(secret_env("STRATA_MQTT__PASSWORD", s));
    }
    let mut mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: paths::CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: "wal".into(),
            mount_path: paths::WAL_DIR.into(),
            ..Default::default()
        },
        VolumeMount {
            name: "data".into(),
            mount_path: paths::DATA_DIR.into(),
            ..Default::default()
        },
    ];
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: names.configmap(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if let Some(users) = &spec.users_secret {
        mounts.push(VolumeMount {
            name: "users".into(),
            mount_path: paths::USERS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(secret_volume("users", &users.name));
    }
    if let Some(tls) = &spec.tls {
        mounts.push(VolumeMount {
            name: "tls".into(),
            mount_path: paths::TLS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(secret_volume("tls", &tls.secret_name));
    }
    let container = Container {
        name: "strata-node".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        command: Some(vec!["strata-node".into()]),
        args: Some(node_args(tsc, names)),
        env: Some(env),
        ports: Some(vec![
            port("http", p.http, "TCP"),
            port("tcp-json", p.tcp, "TCP"),
            port("binary", p.binary, "TCP"),
            port("gossip", p.gossip, "TCP"),
            port("gossip-udp", p.gossip, "UDP"),
            port("grpc", p.grpc, "TCP"),
        ]),
        // WAL replay after a crash may take a while: the startup probe allows 5 minutes
        // before liveness takes over.
        startup_probe: Some(http_probe(tsc, "/health", 5, 60)),
        liveness_probe: Some(http_probe(tsc, "/health", 10, 6)),
        readiness_probe: Some(http_probe(tsc, "/ready", 5, 3)),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sched = &spec.scheduling;
    let affinity = sched
        .affinity
        .clone()
        .unwrap_or_else(|| default_anti_affinity(names));
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(names, Component::Node)),
            annotations: Some(
                [(CONFIG_HASH_ANNOTATION.to_string(), plan.config_hash.clone())].into(),
            ),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            // Storage nodes never call the Kubernetes API.
            automount_service_account_token: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS_USER),
                run_as_group: Some(RUN_AS_USER),
                fs_group: Some(RUN_AS_USER),
                fs_group_change_policy: Some("OnRootMismatch".into()),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                ..Default::default()
            }),
            affinity: Some(affinity),
            tolerations: non_empty(sched.tolerations.clone()),
            topology_spread_constraints: non_empty(sched.topology_spread_constraints.clone()),
            node_selector: if sched.node_selector.is_empty() {
                None
            } else {
                Some(sched.node_selector.clone())
            },
            priority_class_name: sched.priority_class_name.clone(),
            ..Default::default()
        }),
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    if v.is_empty() {
        None
    } else {
        Some(v)
    }
}

fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Prefer one node per host: replicas of a series should not share a failure domain. Only
/// preferred, so small test clusters still schedule.
fn default_anti_affinity(names: &Names) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(names, Component::Node)),
                            match_expressions: None,
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..Default::default()
                    },
                },
            ]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::cluster;

    fn plan(replicas: i32) -> ReplicaPlan {
        ReplicaPlan {
            replicas,
            config_hash: "abc".into(),
        }
    }

    fn container(sts: &StatefulSet) -> &Container {
        &sts.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
    }

    #[test]
    fn default_cluster() {
        let tsc = cluster("tsc", "{}");
        let sts = statefulset(&tsc, &plan(3));
        let s = sts.spec.as_ref().unwrap();
        assert_eq!(s.replicas, Some(3));
        assert_eq!(s.service_name.as_deref(), Some("tsc-peers"));
        assert_eq!(
            s.update_strategy.as_ref().unwrap().type_.as_deref(),
            Some("OnDelete")
        );
        let claims = s.volume_claim_templates.as_ref().unwrap();
        let claim_names: Vec<_> = claims
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(claim_names, ["wal", "data"]);
        let size = |i: usize| {
            claims[i]
                .spec
                .as_ref()
                .unwrap()
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"]
                .0
                .clone()
        };
        assert_eq!(size(0), "2Gi");
        assert_eq!(size(1), "10Gi");

        let c = container(&sts);
        let args = c.args.as_ref().unwrap();
        assert!(args.contains(&"--node-id=$(POD_NAME)".to_string()));
        assert!(args.contains(&"--config=/etc/strata/config.yaml".to_string()));
        assert!(args.contains(&"--gossip-addr=$(POD_IP):7946".to_string()));
        assert!(args.contains(&"--grpc-addr=$(POD_IP):7070".to_string()));
        assert!(args.contains(&"--replication-factor=3".to_string()));
        assert!(args.contains(&"--mode=all".to_string()));
        assert!(args.contains(
            &"--seeds=tsc-0.tsc-peers.metrics.svc:7946,tsc-1.tsc-peers.metrics.svc:7946,tsc-2.tsc-peers.metrics.svc:7946"
                .to_string()
        ));
        let env: Vec<_> = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(env, ["POD_NAME", "POD_NAMESPACE", "POD_IP"]);
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/ready")
        );
        assert_eq!(
            c.liveness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/health")
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        let pod = s.template.spec.as_ref().unwrap();
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(RUN_AS_USER));
        let anti = pod
            .affinity
            .as_ref()
            .unwrap()
            .pod_anti_affinity
            .as_ref()
            .unwrap();
        assert_eq!(
            anti.preferred_during_scheduling_ignored_during_execution
                .as_ref()
                .unwrap()[0]
                .pod_affinity_term
                .topology_key,
            "kubernetes.io/hostname"
        );
        let annotations = s
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap();
        assert_eq!(annotations[CONFIG_HASH_ANNOTATION], "abc");
        // The selector is a subset of the template's labels, as the API server requires.
        let tl = s
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        for (k, v) in s.selector.match_labels.as_ref().unwrap() {
            assert_eq!(tl.get(k), Some(v));
        }
    }

    #[test]
    fn seeds_stay_fixed_beyond_three_and_shrink_for_one() {
        let five = cluster("tsc", "replicas: 5");
        let one = cluster("tsc", "{replicas: 1, replicationFactor: 1}");
        let seeds = |t: &TimeSeriesCluster| {
            node_args(t, &Names::of(t))
                .into_iter()
                .find(|a| a.starts_with("--seeds="))
                .unwrap()
        };
        assert_eq!(seeds(&five).matches(":7946").count(), 3);
        assert_eq!(seeds(&one), "--seeds=tsc-0.tsc-peers.metrics.svc:7946");
    }

    #[test]
    fn secrets_storage_and_scheduling_options() {
        let tsc = cluster(
            "tsc",
            r#"
image: registry.local/strata-node:2
imagePullPolicy: Never
storage:
  wal: {size: 5Gi, storageClassName: fast}
  data: {size: 100Gi}
  reclaimPolicy: Retain
usersSecret: {name: users, key: users.yaml}
clusterSecret: {name: cluster, key: secret}
tls: {secretName: tls}
mqtt: {broker: "tcp://broker:1883", passwordSecret: {name: mqtt, key: pw}}
scheduling:
  tolerations: [{key: dedicated, operator: Equal, value: tsdb, effect: NoSchedule}]
  nodeSelector: {disk: ssd}
  affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: zone}]}}
"#,
        );
        let sts = statefulset(&tsc, &plan(3));
        let s = sts.spec.as_ref().unwrap();
        let c = container(&sts);
        assert_eq!(c.image.as_deref(), Some("registry.local/strata-node:2"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Never"));
        let wal = &s.volume_claim_templates.as_ref().unwrap()[0];
        assert_eq!(
            wal.spec.as_ref().unwrap().storage_class_name.as_deref(),
            Some("fast")
        );
        assert_eq!(
            s.persistent_volume_claim_retention_policy
                .as_ref()
                .unwrap()
                .when_deleted
                .as_deref(),
            Some("Retain")
        );
        let env = c.env.as_ref().unwrap();
        let secret_of = |n: &str| {
            env.iter()
                .find(|e| e.name == n)
                .and_then(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
                .map(|r| (r.name.clone(), r.key.clone()))
        };
        assert_eq!(
            secret_of("STRATA_CLUSTER__SECRET"),
            Some(("cluster".into(), "secret".into()))
        );
        assert_eq!(
            secret_of("STRATA_MQTT__PASSWORD"),
            Some(("mqtt".into(), "pw".into()))
        );
        assert!(env
            .iter()
            .all(|e| e.value.is_none() || !e.name.contains("SECRET")));
        let mounts: Vec<_> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str()))
            .collect();
        assert!(mounts.contains(&("users", "/etc/strata/users")));
        assert!(mounts.contains(&("tls", "/etc/strata/tls")));
        let pod = s.template.spec.as_ref().unwrap();
        assert_eq!(
            pod.tolerations.as_ref().unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        assert_eq!(pod.node_selector.as_ref().unwrap()["disk"], "ssd");
        let required = pod
            .affinity
            .as_ref()
            .unwrap()
            .pod_anti_affinity
            .as_ref()
            .unwrap();
        assert!(required
            .required_during_scheduling_ignored_during_execution
            .is_some());
    }

    #[test]
    fn probes_speak_https_when_the_node_serves_tls() {
        let schemes = |spec: &str| -> Vec<Option<String>> {
            let sts = statefulset(&cluster("tsc", spec), &plan(1));
            let c = container(&sts);
            [&c.startup_probe, &c.liveness_probe, &c.readiness_probe]
                .into_iter()
                .map(|p| {
                    p.as_ref()
                        .unwrap()
                        .http_get
                        .as_ref()
                        .unwrap()
                        .scheme
                        .clone()
                })
                .collect()
        };
        assert_eq!(schemes("{}"), vec![Some("HTTP".to_string()); 3]);
        assert_eq!(
            schemes("tls: {secretName: tls}"),
            vec![Some("HTTPS".to_string()); 3]
        );
    }
}
