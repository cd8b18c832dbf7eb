//! The `TimeSeriesCluster` controller: watches clusters and the objects they own, and
//! reconciles each cluster towards its spec.
//!
//! `reconcile` does the I/O; the decisions are pure functions in `scale`, `rollout`,
//! `volumes` and `status` so they can be tested without an API server.

pub mod leader;
pub mod node_api;
pub mod observed;
pub mod quantity;
pub mod reconcile;
pub mod rollout;
pub mod scale;
pub mod status;
pub mod telemetry;
pub mod volumes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::crd::TimeSeriesCluster;
use crate::resources::Names;
use node_api::NodeApi;

/// The finalizer that lets the controller delete the cluster-scoped agent RBAC objects.
pub const FINALIZER: &str = "strata.dev/cleanup";

/// Errors of one reconcile; every one is retried with exponential backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Rendering `config.yaml` failed.
    #[error("rendering config.yaml: {0}")]
    Render(#[from] serde_yaml::Error),
    /// A storage node's API call failed.
    #[error(transparent)]
    Node(#[from] node_api::NodeApiError),
    /// The finalizer helper failed (it wraps the errors above).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The resource has no namespace (the CRD is namespaced, so the API never sends one).
    #[error("TimeSeriesCluster without a namespace")]
    NotNamespaced,
}

/// How the controller addresses a node's HTTP API (`host:port`; the scheme follows
/// `spec.tls`): by pod DNS in Kubernetes; tests and the local cluster twin substitute their
/// own.
pub type NodeAddress = dyn Fn(&Names, i32, i32) -> String + Send + Sync;

/// `host:port` of pod `ordinal`'s HTTP API through the headless Service.
pub fn dns_node_address(names: &Names, ordinal: i32, port: i32) -> String {
    format!("{}:{port}", names.pod_dns(ordinal))
}

/// Shared by every reconcile.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Publishes Kubernetes events on the clusters.
    pub recorder: Recorder,
    /// Talks to the storage nodes.
    pub nodes: Arc<dyn NodeApi>,
    /// Where a node's HTTP API is.
    pub node_address: Arc<NodeAddress>,
    /// Consecutive failures per cluster, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<TimeSeriesCluster>, u32>>,
    /// Counters for `/metrics`.
    pub metrics: telemetry::Metrics,
}

impl Context {
    /// A context reaching nodes through `nodes` at `node_address`.
    pub fn new(
        client: Client,
        reporter: Reporter,
        nodes: Arc<dyn NodeApi>,
        node_address: Arc<NodeAddress>,
    ) -> Context {
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            nodes,
            node_address,
            failures: Mutex::new(HashMap::new()),
            metrics: telemetry::Metrics::default(),
        }
    }

    fn record_result(&self, obj: &TimeSeriesCluster, ok: bool) -> u32 {
        let key = ObjectRef::from(obj);
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            f.remove(&key);
            0
        } else {
            let n = f.entry(key).or_insert(0);
            *n = n.saturating_add(1);
            *n
        }
    }
}

/// Backoff after `failures` consecutive failed reconciles: 2 s doubling up to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let secs = 2u64.saturating_mul(1u64 << failures.saturating_sub(1).min(8));
    Duration::from_secs(secs.min(300))
}

fn error_policy(obj: Arc<TimeSeriesCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx.record_result(&obj, false);
    ctx.metrics.failure();
    let delay = backoff(failures);
    tracing::warn!(cluster = %ObjectRef::from(obj.as_ref()), %error, failures, ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_and_count(
    obj: Arc<TimeSeriesCluster>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let action = reconcile::reconcile(obj.clone(), ctx.clone()).await?;
    ctx.record_result(&obj, true);
    Ok(action)
}

/// Runs the controller until `shutdown` resolves. Watches every namespace, or only
/// `namespace` when given.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=strata-operator");
    Controller::new(
        api::<TimeSeriesCluster>(&client, &namespace),
        watcher::Config::default(),
    )
    .owns(api::<StatefulSet>(&client, &namespace), owned.clone())
    .owns(api::<Service>(&client, &namespace), owned.clone())
    .owns(api::<ConfigMap>(&client, &namespace), owned.clone())
    .owns(
        api::<PodDisruptionBudget>(&client, &namespace),
        owned.clone(),
    )
    .owns(api::<DaemonSet>(&client, &namespace), owned)
    .graceful_shutdown_on(shutdown)
    .run(reconcile_and_count, error_policy, ctx)
    .for_each(|res| async move {
        match res {
            Ok((obj, _)) => tracing::debug!(cluster = %obj, "reconciled"),
            Err(e) => tracing::debug!(error = %e, "reconcile loop"),
        }
    })
    .await;
}

#[cfg(test)]
pub(crate) mod test_support {
    use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
    use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};

    /// A StatefulSet with `replicas` whose controller has computed `revision`.
    pub fn sts(replicas: i32, revision: &str) -> StatefulSet {
        StatefulSet {
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(StatefulSetStatus {
                update_revision: Some(revision.into()),
                replicas,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A ready pod running `revision`.
    pub fn ready_pod(name: &str, revision: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.labels = Some(
            [(
                super::rollout::REVISION_LABEL.to_string(),
                revision.to_string(),
            )]
            .into(),
        );
        p.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}
