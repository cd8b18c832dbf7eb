//! Kubernetes labels for containers: a reflector over the pods scheduled on this node
//! (`fieldSelector=spec.nodeName=<node>`, all namespaces), indexed by container id and pod
//! UID into `namespace`, `pod`, `container` and `image`.
//!
//! Outside a cluster (no in-cluster configuration) there is no watcher, and containers carry
//! only their `id` label.

use std::collections::HashMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use crate::cgroup::ContainerRef;

/// What Kubernetes says about one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodLabels {
    pub namespace: String,
    pub pod: String,
    /// Empty for a cgroup of a known pod that no container status names (the sandbox).
    pub container: String,
    pub image: String,
}

/// Pods on this node, by container id and by pod UID.
#[derive(Clone, Debug, Default)]
pub struct PodIndex {
    containers: HashMap<String, PodLabels>,
    pods: HashMap<String, PodLabels>,
}

impl PodIndex {
    pub fn from_pods<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> PodIndex {
        let mut index = PodIndex::default();
        for pod in pods {
            let meta = &pod.metadata;
            let (Some(namespace), Some(name)) = (&meta.namespace, &meta.name) else {
                continue;
            };
            let pod_labels = PodLabels {
                namespace: namespace.clone(),
                pod: name.clone(),
                ..PodLabels::default()
            };
            if let Some(uid) = &meta.uid {
                index.pods.insert(uid.clone(), pod_labels.clone());
            }
            let spec_images: HashMap<&str, &str> = pod
                .spec
                .iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .filter_map(|c| Some((c.name.as_str(), c.image.as_deref()?)))
                .collect();
            let statuses = pod.status.iter().flat_map(|s| {
                s.container_statuses
                    .iter()
                    .flatten()
                    .chain(s.init_container_statuses.iter().flatten())
                    .chain(s.ephemeral_container_statuses.iter().flatten())
            });
            for status in statuses {
                // `containerd://<id>`, `cri-o://<id>`, `docker://<id>`.
                let Some(id) = status
                    .container_id
                    .as_deref()
                    .and_then(|id| id.split_once("://").map(|(_, id)| id))
                else {
                    continue;
                };
                let image = if status.image.is_empty() {
                    spec_images
                        .get(status.name.as_str())
                        .copied()
                        .unwrap_or_default()
                } else {
                    &status.image
                };
                index.containers.insert(
                    id.to_string(),
                    PodLabels {
                        container: status.name.clone(),
                        image: image.to_string(),
                        ..pod_labels.clone()
                    },
                );
            }
        }
        index
    }

    /// Labels for a container found in the cgroup tree: by its id, else (the pod's sandbox,
    /// or a container started after the last pod update) by its pod UID.
    pub fn lookup(&self, r: &ContainerRef) -> Option<&PodLabels> {
        self.containers
            .get(&r.container_id)
            .or_else(|| self.pods.get(r.pod_uid.as_deref()?))
    }

    pub fn len(&self) -> usize {
        self.containers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
    }
}

/// Where labels come from.
#[derive(Clone)]
pub enum Labeler {
    /// Not in a cluster.
    None,
    Kube(Store<Pod>),
}

impl Labeler {
    /// The current index (empty without a cluster or before the first list).
    pub fn index(&self) -> PodIndex {
        match self {
            Labeler::None => PodIndex::default(),
            Labeler::Kube(store) => {
                let pods = store.state();
                PodIndex::from_pods(pods.iter().map(|p| p.as_ref()))
            }
        }
    }
}

/// Starts the reflector over the pods on `node` (list, then watch, re-listing with backoff
/// after errors) on the current runtime.
pub fn watch_node_pods(client: Client, node: &str) -> Labeler {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let (store, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, "pod watch");
            }
        }
    });
    Labeler::Kube(store)
}

/// The in-cluster client when the agent runs in a pod; `None` elsewhere.
pub async fn in_cluster_client() -> Option<Client> {
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        tracing::info!("not in a Kubernetes cluster: containers get only the id label");
        return None;
    }
    match kube::Config::incluster() {
        Ok(config) => match Client::try_from(config) {
            Ok(client) => Some(client),
            Err(e) => {
                tracing::warn!(error = %e, "cannot build a Kubernetes client; no pod labels");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "no in-cluster configuration; no pod labels");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0f3b6c2d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "shop", "uid": "u-1"},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"},
                                    {"name": "side", "image": "busybox"}]},
            "status": {"containerStatuses": [
                {"name": "nginx", "image": "docker.io/library/nginx:1.27",
                 "imageID": "", "ready": true, "restartCount": 0,
                 "containerID": format!("containerd://{ID}")},
                {"name": "side", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                 "containerID": "cri-o://beef"}
            ]}
        }))
        .unwrap()
    }

    #[test]
    fn indexes_by_container_id_then_pod_uid() {
        let index = PodIndex::from_pods([&pod()]);
        let by_id = index
            .lookup(&ContainerRef {
                container_id: ID.into(),
                pod_uid: None,
            })
            .unwrap();
        assert_eq!(
            by_id,
            &PodLabels {
                namespace: "shop".into(),
                pod: "web-0".into(),
                container: "nginx".into(),
                image: "docker.io/library/nginx:1.27".into()
            }
        );
        let side = index
            .lookup(&ContainerRef {
                container_id: "beef".into(),
                pod_uid: None,
            })
            .unwrap();
        assert_eq!(side.image, "busybox", "spec image when the status has none");
        let sandbox = index
            .lookup(&ContainerRef {
                container_id: "f".repeat(64),
                pod_uid: Some("u-1".into()),
            })
            .unwrap();
        assert_eq!(
            (sandbox.pod.as_str(), sandbox.container.as_str()),
            ("web-0", "")
        );
        assert!(index
            .lookup(&ContainerRef {
                container_id: "f".repeat(64),
                pod_uid: Some("other".into()),
            })
            .is_none());
    }
}
