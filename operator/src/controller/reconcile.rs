//! One reconcile of one cluster: read the state, apply the owned objects with server-side
//! apply, take at most one step of each day-2 operation, and write the status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::observed::{ordinal, Observed, RingView};
use super::rollout::{self, RolloutStep};
use super::scale::{self, ScaleStep};
use super::status::{self, Progress};
use super::volumes;
use super::{Context, Error, FINALIZER};
use crate::crd::{ReclaimPolicy, TimeSeriesCluster};
use crate::resources::{self, selector_string, Names, ReplicaPlan, FIELD_MANAGER};

/// Poll interval while an operation is under way.
const BUSY_REQUEUE: Duration = Duration::from_secs(10);
/// Re-check interval of a steady cluster (also catches drift no watch reports, e.g. the ring).
const IDLE_REQUEUE: Duration = Duration::from_secs(300);

/// Entry point: the finalizer helper adds our finalizer, then dispatches to apply or cleanup.
pub async fn reconcile(tsc: Arc<TimeSeriesCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = tsc.namespace().ok_or(Error::NotNamespaced)?;
    let api: Api<TimeSeriesCluster> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, tsc, |event| async {
        match event {
            Finalizer::Apply(tsc) => apply(&tsc, &ctx).await,
            Finalizer::Cleanup(tsc) => cleanup(&tsc, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn ssa() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

async fn apply_object<K>(api: &Api<K>, obj: &K) -> Result<K, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api.patch(&name, &ssa(), &Patch::Apply(obj)).await?)
}

/// Deletes `name`, treating "already gone" as success.
async fn delete_if_present<K>(api: &Api<K>, name: &str, dp: &DeleteParams) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn publish(
    ctx: &Context,
    tsc: &TimeSeriesCluster,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    // Events are advisory: a failure to record one must not fail the reconcile.
    if let Err(e) = ctx.recorder.publish(&ev, &tsc.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish event");
    }
}

fn config_hash(config: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, config.as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The base URL of pod `ordinal`'s HTTP API. With `spec.tls` the node serves it over TLS
/// only, so a plain-HTTP request would never get an answer.
fn node_base(tsc: &TimeSeriesCluster, ctx: &Context, names: &Names, ordinal: i32) -> String {
    format!(
        "{}://{}",
        resources::http_scheme(tsc),
        (ctx.node_address)(names, ordinal, tsc.spec.ports.http)
    )
}

async fn observe(tsc: &TimeSeriesCluster, ctx: &Context, names: &Names) -> Result<Observed, Error> {
    let client = &ctx.client;
    let ns = &names.namespace;
    let selector = selector_string(names);
    let lp = ListParams::default().labels(&selector);
    let statefulset = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get_opt(&names.cluster)
        .await?;
    let mut pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
        .items;
    pods.sort_by_key(|p| ordinal(names, "", &p.name_any()).unwrap_or(i32::MAX));
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
        .items;
    let mut observed = Observed {
        statefulset,
        pods,
        pvcs,
        ring: RingView::Unknown,
    };
    // Ask ready nodes in ordinal order; the first answer is the ring view. A node that
    // cannot answer is reported through readiness, not as a reconcile error.
    let ready: Vec<i32> = observed
        .ready_pods()
        .filter_map(|p| ordinal(names, "", &p.name_any()))
        .collect();
    for o in ready {
        let base = node_base(tsc, ctx, names, o);
        match ctx.nodes.members(&base).await {
            Ok(m) => {
                observed.ring = m.into();
                break;
            }
            Err(e) => tracing::debug!(error = %e, "members query failed"),
        }
    }
    Ok(observed)
}

/// Applies every object the spec asks for and removes optional ones it no longer asks for.
async fn apply_static(
    tsc: &TimeSeriesCluster,
    ctx: &Context,
    names: &Names,
) -> Result<String, Error> {
    let client = &ctx.client;
    let ns = &names.namespace;
    let cm = resources::configmap(tsc)?;
    let hash = config_hash(
        cm.data
            .as_ref()
            .and_then(|d| d.get("config.yaml"))
            .map(String::as_str)
            .unwrap_or_default(),
    );
    apply_object(&Api::<ConfigMap>::namespaced(client.clone(), ns), &cm).await?;
    let services = Api::<Service>::namespaced(client.clone(), ns);
    apply_object(&services, &resources::peers_service(tsc)).await?;
    apply_object(&services, &resources::client_service(tsc)).await?;
    let pdbs = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns);
    match resources::pdb(tsc) {
        Some(p) => {
            apply_object(&pdbs, &p).await?;
        }
        None => delete_if_present(&pdbs, &names.pdb(), &DeleteParams::default()).await?,
    }
    let sas = Api::<ServiceAccount>::namespaced(client.clone(), ns);
    let roles = Api::<ClusterRole>::all(client.clone());
    let bindings = Api::<ClusterRoleBinding>::all(client.clone());
    let daemonsets = Api::<DaemonSet>::namespaced(client.clone(), ns);
    match (
        resources::agent_service_account(tsc),
        resources::agent_cluster_role(tsc),
        resources::agent_cluster_role_binding(tsc),
        resources::agent_daemonset(tsc),
    ) {
        (Some(sa), Some(role), Some(binding), Some(ds)) => {
            apply_object(&sas, &sa).await?;
            apply_object(&roles, &role).await?;
            apply_object(&bindings, &binding).await?;
            apply_object(&daemonsets, &ds).await?;
        }
        _ => {
            let dp = DeleteParams::default();
            delete_if_present(&daemonsets, &names.agent(), &dp).await?;
            delete_if_present(&bindings, &names.agent_cluster_role(), &dp).await?;
            delete_if_present(&roles, &names.agent_cluster_role(), &dp).await?;
            delete_if_present(&sas, &names.agent(), &dp).await?;
        }
    }
    Ok(hash)
}

/// Grows claims and re-creates the StatefulSet around its running pods. Returns a problem
/// to report when a StorageClass cannot expand; `Ok(true)` when it started an expansion.
async fn expand_volumes(
    tsc: &TimeSeriesCluster,
    ctx: &Context,
    names: &Names,
    observed: &Observed,
) -> Result<Result<bool, (String, String)>, Error> {
    let Some(sts) = &observed.statefulset else {
        return Ok(Ok(false));
    };
    let resizes = volumes::resizes(tsc, sts);
    if resizes.is_empty() {
        return Ok(Ok(false));
    }
    let pvc_api = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &names.namespace);
    let classes = Api::<StorageClass>::all(ctx.client.clone());
    for r in &resizes {
        for pvc in volumes::claims_to_expand(&observed.pvcs, &r.template, &names.cluster, &r.size) {
            let class = pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone());
            if let Some(class) = class {
                let expandable = classes
                    .get_opt(&class)
                    .await?
                    .and_then(|c| c.allow_volume_expansion)
                    .unwrap_or(false);
                if !expandable {
                    return Ok(Err((
                        "VolumeExpansionUnsupported".into(),
                        format!("StorageClass {class} does not allow volume expansion"),
                    )));
                }
            }
            let patch = serde_json::json!({
                "spec": {"resources": {"requests": {"storage": r.size}}}
            });
            pvc_api
                .patch(
                    &pvc.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
        }
    }
    // Orphan the pods: they keep running and the re-created StatefulSet adopts them.
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..Default::default()
    };
    delete_if_present(
        &Api::<StatefulSet>::namespaced(ctx.client.clone(), &names.namespace),
        &names.cluster,
        &dp,
    )
    .await?;
    let sizes: Vec<String> = resizes
        .iter()
        .map(|r| format!("{}={}", r.template, r.size))
        .collect();
    publish(
        ctx,
        tsc,
        EventType::Normal,
        "ExpandingVolumes",
        sizes.join(", "),
    )
    .await;
    Ok(Ok(true))
}

/// Deletes claims of pods that were scaled away, when the reclaim policy says so.
async fn reclaim_claims(
    tsc: &TimeSeriesCluster,
    ctx: &Context,
    names: &Names,
    observed: &Observed,
    replicas: i32,
) -> Result<(), Error> {
    if tsc.spec.storage.reclaim_policy != ReclaimPolicy::Delete {
        return Ok(());
    }
    let api = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &names.namespace);
    for pvc in &observed.pvcs {
        let name = pvc.name_any();
        let ord = ["wal-", "data-"]
            .iter()
            .find_map(|prefix| ordinal(names, prefix, &name));
        let Some(ord) = ord else { continue };
        // Only once the pod is gone: deleting a mounted claim would just hang in its
        // protection finalizer, and a pod still present may be mid-hand-off.
        if ord >= replicas && observed.pod(&names.pod(ord)).is_none() {
            delete_if_present(&api, &name, &DeleteParams::default()).await?;
            publish(
                ctx,
                tsc,
                EventType::Normal,
                "ClaimDeleted",
                format!("deleted {name} of removed node {ord}"),
            )
            .await;
        }
    }
    Ok(())
}

async fn apply(tsc: &TimeSeriesCluster, ctx: &Context) -> Result<Action, Error> {
    let names = Names::of(tsc);
    let mut observed = observe(tsc, ctx, &names).await?;
    let config_hash = apply_static(tsc, ctx, &names).await?;
    let mut decommissioning = tsc
        .status
        .as_ref()
        .map(|s| s.decommissioning.clone())
        .unwrap_or_default();

    let mut blocked = None;
    let expanding = match expand_volumes(tsc, ctx, &names, &observed).await? {
        Ok(started) => started,
        Err(problem) => {
            publish(ctx, tsc, EventType::Warning, &problem.0, problem.1.clone()).await;
            blocked = Some(problem);
            false
        }
    };
    if expanding {
        // The StatefulSet is gone for a moment; the next reconcile re-creates it.
        let progress = Progress {
            scale: ScaleStep::Steady,
            rollout: RolloutStep::UpToDate,
            expanding: true,
            blocked,
            decommissioning,
        };
        write_status(tsc, ctx, &names, &observed, &progress).await?;
        return Ok(Action::requeue(Duration::from_secs(2)));
    }

    let step = scale::plan(tsc, &observed, &decommissioning);
    match &step {
        ScaleStep::Decommission { ordinal } => {
            let pod = names.pod(*ordinal);
            let base = node_base(tsc, ctx, &names, *ordinal);
            ctx.nodes.decommission(&base).await?;
            if !decommissioning.contains(&pod) {
                decommissioning.push(pod.clone());
            }
            publish(
                ctx,
                tsc,
                EventType::Normal,
                "Decommissioning",
                format!("{pod} hands its data off before scale-down"),
            )
            .await;
        }
        ScaleStep::Shrink { ordinal } => {
            publish(
                ctx,
                tsc,
                EventType::Normal,
                "ScalingDown",
                format!("{} left the ring; removing it", names.pod(*ordinal)),
            )
            .await;
        }
        ScaleStep::Up { from, to } if *from > 0 => {
            publish(
                ctx,
                tsc,
                EventType::Normal,
                "ScalingUp",
                format!("{from} → {to} nodes"),
            )
            .await;
        }
        _ => {}
    }
    let replicas = step.replicas(tsc, &observed);
    let plan = ReplicaPlan {
        replicas,
        config_hash,
    };
    let sts_api = Api::<StatefulSet>::namespaced(ctx.client.clone(), &names.namespace);
    // The apply answers with the StatefulSet as stored now: its generation counts the
    // template just applied while its status still describes what the StatefulSet
    // controller last saw. The rollout must judge pods against that, not against the
    // StatefulSet read before the apply.
    observed.statefulset = Some(apply_object(&sts_api, &resources::statefulset(tsc, &plan)).await?);

    reclaim_claims(tsc, ctx, &names, &observed, replicas).await?;
    decommissioning.retain(|pod| {
        observed.pod(pod).is_some() || ordinal(&names, "", pod).is_some_and(|o| o < replicas)
    });

    let scaling_down = !matches!(step, ScaleStep::Steady | ScaleStep::Up { .. });
    let rollout = rollout::plan(&names, &observed, replicas, scaling_down);
    if let RolloutStep::Replace { pod } = &rollout {
        delete_if_present(
            &Api::<Pod>::namespaced(ctx.client.clone(), &names.namespace),
            pod,
            &DeleteParams::default(),
        )
        .await?;
        publish(
            ctx,
            tsc,
            EventType::Normal,
            "RollingUpdate",
            format!("replacing {pod} with the new template"),
        )
        .await;
    }

    let busy = step.is_progressing() || !matches!(rollout, RolloutStep::UpToDate);
    let progress = Progress {
        scale: step,
        rollout,
        expanding: false,
        blocked,
        decommissioning,
    };
    write_status(tsc, ctx, &names, &observed, &progress).await?;
    Ok(Action::requeue(if busy {
        BUSY_REQUEUE
    } else {
        IDLE_REQUEUE
    }))
}

async fn write_status(
    tsc: &TimeSeriesCluster,
    ctx: &Context,
    names: &Names,
    observed: &Observed,
    progress: &Progress,
) -> Result<(), Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = status::compute(tsc, observed, progress, selector_string(names), now);
    if tsc.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let patch = serde_json::json!({ "status": status });
    Api::<TimeSeriesCluster>::namespaced(ctx.client.clone(), &names.namespace)
        .patch_status(
            &names.cluster,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// Runs before the cluster disappears: namespaced objects follow through owner references;
/// the agent's cluster-scoped RBAC objects must be deleted here.
async fn cleanup(tsc: &TimeSeriesCluster, ctx: &Context) -> Result<Action, Error> {
    let names = Names::of(tsc);
    let dp = DeleteParams::default();
    delete_if_present(
        &Api::<ClusterRoleBinding>::all(ctx.client.clone()),
        &names.agent_cluster_role(),
        &dp,
    )
    .await?;
    delete_if_present(
        &Api::<ClusterRole>::all(ctx.client.clone()),
        &names.agent_cluster_role(),
        &dp,
    )
    .await?;
    publish(
        ctx,
        tsc,
        EventType::Normal,
        "Deleted",
        "cluster-scoped objects removed".into(),
    )
    .await;
    Ok(Action::await_change())
}
