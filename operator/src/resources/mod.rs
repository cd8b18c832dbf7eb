//! Builders for every object the operator owns, one file per object. Each is a pure function
//! of the `TimeSeriesCluster` (plus, for the StatefulSet, the replica count the controller
//! decided on), so the controller can server-side apply the result and tests can inspect it.

mod agent_cluster_role;
mod agent_cluster_role_binding;
mod agent_daemonset;
mod agent_service_account;
mod client_service;
mod configmap;
mod pdb;
mod peers_service;
mod statefulset;

pub use agent_cluster_role::agent_cluster_role;
pub use agent_cluster_role_binding::agent_cluster_role_binding;
pub use agent_daemonset::agent_daemonset;
pub use agent_service_account::agent_service_account;
pub use client_service::client_service;
pub use configmap::{config_yaml, configmap};
pub use pdb::pdb;
pub use peers_service::peers_service;
pub use statefulset::{statefulset, ReplicaPlan, CONFIG_HASH_ANNOTATION};

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::TimeSeriesCluster;

/// Where the node finds its configuration, data and secrets inside the pod.
pub mod paths {
    /// The ConfigMap's mount point.
    pub const CONFIG_DIR: &str = "/etc/strata";
    /// `config.yaml` inside the ConfigMap mount.
    pub const CONFIG_FILE: &str = "/etc/strata/config.yaml";
    /// The users Secret's mount point.
    pub const USERS_DIR: &str = "/etc/strata/users";
    /// The TLS Secret's mount point.
    pub const TLS_DIR: &str = "/etc/strata/tls";
    /// The `wal` claim's mount point.
    pub const WAL_DIR: &str = "/var/lib/strata/wal";
    /// The `data` claim's mount point.
    pub const DATA_DIR: &str = "/var/lib/strata/data";
}

/// The scheme of the node's HTTP API: with `spec.tls` the node serves it over TLS only.
pub fn http_scheme(tsc: &TimeSeriesCluster) -> &'static str {
    if tsc.spec.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// The user and group every Strata container runs as (matches the Dockerfiles).
pub const RUN_AS_USER: i64 = 10001;

/// Field manager name for server-side apply.
pub const FIELD_MANAGER: &str = "strata-operator";

/// Names of the objects of one cluster.
#[derive(Clone, Debug)]
pub struct Names {
    /// The resource's name: also the StatefulSet's and the client Service's.
    pub cluster: String,
    /// The resource's namespace.
    pub namespace: String,
}

impl Names {
    /// Names for `tsc`; a resource read from the API always has a namespace.
    pub fn of(tsc: &TimeSeriesCluster) -> Names {
        Names {
            cluster: tsc.name_any(),
            namespace: tsc.namespace().unwrap_or_else(|| "default".into()),
        }
    }

    /// The headless Service giving each pod a stable DNS name.
    pub fn peers_service(&self) -> String {
        format!("{}-peers", self.cluster)
    }

    /// The ConfigMap holding `config.yaml`.
    pub fn configmap(&self) -> String {
        format!("{}-config", self.cluster)
    }

    /// The PodDisruptionBudget.
    pub fn pdb(&self) -> String {
        self.cluster.clone()
    }

    /// Name of the node-agent DaemonSet and ServiceAccount.
    pub fn agent(&self) -> String {
        format!("{}-agent", self.cluster)
    }

    /// The agent's ClusterRole and binding: cluster-scoped, so the namespace is in the name.
    pub fn agent_cluster_role(&self) -> String {
        format!("strata-agent-{}-{}", self.namespace, self.cluster)
    }

    /// Pod `ordinal` of the StatefulSet.
    pub fn pod(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.cluster)
    }

    /// Stable DNS name of pod `ordinal` through the headless Service.
    pub fn pod_dns(&self, ordinal: i32) -> String {
        format!(
            "{}.{}.{}.svc",
            self.pod(ordinal),
            self.peers_service(),
            self.namespace
        )
    }

    /// DNS name of the client Service.
    pub fn client_dns(&self) -> String {
        format!("{}.{}.svc", self.cluster, self.namespace)
    }

    /// The claim `template` (`wal` or `data`) of pod `ordinal`.
    pub fn pvc(&self, template: &str, ordinal: i32) -> String {
        format!("{template}-{}", self.pod(ordinal))
    }
}

/// Which part of Strata an object belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// Storage nodes and everything around them.
    Node,
    /// The node agent.
    Agent,
}

impl Component {
    fn as_str(self) -> &'static str {
        match self {
            Component::Node => "node",
            Component::Agent => "agent",
        }
    }
}

/// Labels that select the pods of one component of one cluster. They are immutable in a
/// StatefulSet's selector, so they never carry anything that may change.
pub fn selector_labels(names: &Names, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "strata".to_string()),
        (
            "app.kubernetes.io/instance".to_string(),
            names.cluster.clone(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            component.as_str().to_string(),
        ),
    ])
}

/// The selector labels plus the recommended informational ones.
pub fn labels(names: &Names, component: Component) -> BTreeMap<String, String> {
    let mut l = selector_labels(names, component);
    l.insert(
        "app.kubernetes.io/managed-by".into(),
        "strata-operator".into(),
    );
    l.insert("app.kubernetes.io/part-of".into(), "strata".into());
    l
}

/// `matchLabels` as the string form the scale subresource reports.
pub fn selector_string(names: &Names) -> String {
    selector_labels(names, Component::Node)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The owner reference that makes Kubernetes garbage-collect a namespaced object with its
/// cluster. Cluster-scoped objects cannot have one; the finalizer deletes those.
pub fn owner_reference(tsc: &TimeSeriesCluster) -> Option<OwnerReference> {
    tsc.controller_owner_ref(&())
}

/// Metadata of a namespaced object owned by `tsc`.
pub fn owned_meta(
    tsc: &TimeSeriesCluster,
    names: &Names,
    name: String,
    component: Component,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(labels(names, component)),
        owner_references: owner_reference(tsc).map(|o| vec![o]),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::crd::{TimeSeriesCluster, TimeSeriesClusterSpec};

    /// A cluster as the API server returns it: defaults applied, uid and namespace set.
    pub fn cluster(name: &str, spec_yaml: &str) -> TimeSeriesCluster {
        let spec: TimeSeriesClusterSpec = serde_yaml::from_str(spec_yaml).expect("spec");
        let mut tsc = TimeSeriesCluster::new(name, spec);
        tsc.metadata.namespace = Some("metrics".into());
        tsc.metadata.uid = Some("4b0d6c52-0000-4000-8000-000000000001".into());
        tsc.metadata.generation = Some(1);
        tsc
    }
}
