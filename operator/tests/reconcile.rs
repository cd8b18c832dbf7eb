//! Reconcile against a mocked API server (`tower-test` behind `kube::Client`): the requests the
//! controller makes, in order, for create, scale-down, rollout, volume expansion and deletion.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::events::Reporter;
use kube::Client;
use serde_json::{json, Value};
use strata_operator::controller::node_api::{Member, NodeApi, NodeApiError};
use strata_operator::controller::{reconcile::reconcile, Context, FINALIZER};
use strata_operator::crd::TimeSeriesCluster;
use strata_operator::resources::Names;

/// Everything the controller did, Kubernetes requests and node calls interleaved.
type Log = Arc<Mutex<Vec<String>>>;

/// The cluster state the fake API server answers reads from.
#[derive(Default, Clone)]
struct World {
    statefulset: Option<Value>,
    pods: Vec<Value>,
    pvcs: Vec<Value>,
    storage_classes: HashMap<String, Value>,
    members: Option<Vec<Member>>,
}

struct FakeNodes {
    log: Log,
    members: Option<Vec<Member>>,
}

#[async_trait::async_trait]
impl NodeApi for FakeNodes {
    async fn members(&self, base: &str) -> Result<Option<Vec<Member>>, NodeApiError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("NODE members {base}"));
        Ok(self.members.clone())
    }
    async fn decommission(&self, base: &str) -> Result<(), NodeApiError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("NODE decommission {base}"));
        Ok(())
    }
}

fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "not found", "reason": "NotFound", "code": 404}),
    )
}

fn list(kind: &str, items: &[Value]) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})
}

fn answer(world: &World, method: &Method, path: &str, body: &Value) -> (StatusCode, Value) {
    let last = path.rsplit('/').next().unwrap_or_default();
    match *method {
        Method::GET if path.ends_with("/statefulsets/tsc") => match &world.statefulset {
            Some(s) => (StatusCode::OK, s.clone()),
            None => not_found(),
        },
        Method::GET if path.ends_with("/pods") => (StatusCode::OK, list("PodList", &world.pods)),
        Method::GET if path.ends_with("/persistentvolumeclaims") => (
            StatusCode::OK,
            list("PersistentVolumeClaimList", &world.pvcs),
        ),
        Method::GET if path.contains("/storageclasses/") => match world.storage_classes.get(last) {
            Some(c) => (StatusCode::OK, c.clone()),
            None => not_found(),
        },
        Method::PATCH if path.ends_with("/statefulsets/tsc") => {
            (StatusCode::OK, apply_sts(world, body))
        }
        // The cluster itself (finalizer and status patches): the API server returns the
        // whole resource.
        Method::PATCH if path.contains("/timeseriesclusters/") => (
            StatusCode::OK,
            json!({"apiVersion": "strata.dev/v1alpha1", "kind": "TimeSeriesCluster",
                   "metadata": {"name": "tsc", "namespace": "metrics"}, "spec": {}}),
        ),
        // Applies and event creation answer with what was sent, as the API server would
        // after defaulting.
        Method::PATCH | Method::POST | Method::PUT => {
            let mut obj = body.clone();
            if obj.get("metadata").is_none() {
                obj["metadata"] = json!({"name": last});
            }
            let code = if *method == Method::POST {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (code, obj)
        }
        Method::DELETE => (
            StatusCode::OK,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
        ),
        _ => not_found(),
    }
}

/// What the API server answers to the StatefulSet's apply: the applied object with the
/// stored one's status, and a generation bumped when the spec changed (a new object starts at
/// generation 1 with no status). The StatefulSet controller has not run in between, so
/// `status.observedGeneration` stays behind. Worlds whose StatefulSet has a placeholder
/// template (no containers) do not model templates: the apply leaves those unchanged.
fn apply_sts(world: &World, applied: &Value) -> Value {
    let mut obj = applied.clone();
    let Some(stored) = &world.statefulset else {
        obj["metadata"]["generation"] = json!(1);
        return obj;
    };
    let generation = stored["metadata"]["generation"].as_i64().unwrap_or(1);
    let stored_template = &stored["spec"]["template"];
    let placeholder = stored_template["spec"]["containers"]
        .as_array()
        .is_some_and(|c| c.is_empty());
    let changed = (!placeholder && *stored_template != applied["spec"]["template"])
        || stored["spec"]["replicas"] != applied["spec"]["replicas"];
    obj["metadata"]["generation"] = json!(generation + i64::from(changed));
    obj["status"] = stored["status"].clone();
    obj
}

/// Runs one reconcile of `tsc` against `world`; returns the log.
async fn run(tsc: TimeSeriesCluster, world: World) -> Vec<String> {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log: Log = Arc::default();
    let server_log = log.clone();
    let server_world = world.clone();
    let server = tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let path = parts.uri.path().to_string();
            let query = parts.uri.query().unwrap_or_default().to_string();
            let mut entry = format!("{} {path}", parts.method);
            if !query.is_empty() {
                entry.push('?');
                entry.push_str(&query);
            }
            if parts.method != Method::GET && !path.contains("/events") {
                entry.push(' ');
                entry.push_str(&body.to_string());
            }
            if !path.contains("/events") {
                server_log.lock().unwrap().push(entry);
            }
            let (code, reply) = answer(&server_world, &parts.method, &path, &body);
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    let client = Client::new(service, "metrics");
    let nodes = Arc::new(FakeNodes {
        log: log.clone(),
        members: world.members.clone(),
    });
    let ctx = Arc::new(Context::new(
        client,
        Reporter {
            controller: "strata-operator".into(),
            instance: None,
        },
        nodes,
        Arc::new(|n: &Names, ordinal: i32, port: i32| format!("{}:{port}", n.pod(ordinal))),
    ));
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        reconcile(Arc::new(tsc), ctx),
    )
    .await
    .expect("reconcile hung");
    server.abort();
    let entries = log.lock().unwrap().clone();
    result.unwrap_or_else(|e| panic!("reconcile failed: {e}\nrequests: {entries:#?}"));
    entries
}

fn cluster(spec: Value, status: Value) -> TimeSeriesCluster {
    serde_json::from_value(json!({
        "apiVersion": "strata.dev/v1alpha1",
        "kind": "TimeSeriesCluster",
        "metadata": {"name": "tsc", "namespace": "metrics", "uid": "u-1", "generation": 2,
                     "finalizers": [FINALIZER], "resourceVersion": "7"},
        "spec": spec,
        "status": status,
    }))
    .unwrap()
}

fn sts(replicas: i32, revision: &str, data_size: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "tsc", "namespace": "metrics", "generation": 1},
        "spec": {"replicas": replicas, "serviceName": "tsc-peers",
                 "selector": {"matchLabels": {"app": "x"}},
                 "template": {"metadata": {}, "spec": {"containers": []}},
                 "volumeClaimTemplates": [
                     {"metadata": {"name": "wal"}, "spec": {"resources": {"requests": {"storage": "2Gi"}}}},
                     {"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": data_size}}}}]},
        "status": {"replicas": replicas, "updateRevision": revision, "observedGeneration": 1}
    })
}

fn pod(ordinal: i32, revision: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("tsc-{ordinal}"), "namespace": "metrics",
                     "labels": {"controller-revision-hash": revision}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn pvc(template: &str, ordinal: i32, size: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": format!("{template}-tsc-{ordinal}"), "namespace": "metrics"},
        "spec": {"storageClassName": "standard", "resources": {"requests": {"storage": size}}}
    })
}

fn ring(states: &[&str]) -> Option<Vec<Member>> {
    Some(
        states
            .iter()
            .enumerate()
            .map(|(i, s)| Member {
                id: format!("tsc-{i}"),
                state: s.to_string(),
                pending_hints: 0,
            })
            .collect(),
    )
}

fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:#}"))
        .clone()
}

fn position(log: &[String], needle: &str) -> usize {
    log.iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no request containing {needle:?} in {log:#?}"))
}

fn sts_apply(log: &[String]) -> Value {
    let line = &log[position(
        log,
        "PATCH /apis/apps/v1/namespaces/metrics/statefulsets/tsc?",
    )];
    serde_json::from_str(line.split_once(' ').unwrap().1.split_once(' ').unwrap().1).unwrap()
}

fn status_patch(log: &[String]) -> Value {
    let line = &log[position(log, "/timeseriesclusters/tsc/status")];
    let json = line.splitn(3, ' ').nth(2).unwrap();
    serde_json::from_str::<Value>(json).unwrap()["status"].clone()
}

#[tokio::test]
async fn new_cluster_creates_every_object_by_server_side_apply() {
    let log = run(
        cluster(json!({"replicas": 3}), json!(null)),
        World::default(),
    )
    .await;
    let applies: Vec<&String> = log.iter().filter(|l| l.starts_with("PATCH")).collect();
    for a in &applies[..applies.len() - 1] {
        assert!(a.contains("fieldManager=strata-operator"), "{a}");
        assert!(a.contains("force=true"), "{a}");
    }
    let order = [
        "GET /apis/apps/v1/namespaces/metrics/statefulsets/tsc",
        "configmaps/tsc-config?",
        "services/tsc-peers?",
        "services/tsc?",
        "poddisruptionbudgets/tsc?",
        "statefulsets/tsc?",
        "/timeseriesclusters/tsc/status",
    ];
    let positions: Vec<usize> = order.iter().map(|n| position(&log, n)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "order {positions:?} in {log:#?}"
    );
    assert_eq!(sts_apply(&log)["spec"]["replicas"], 3);
    assert!(!log.iter().any(|l| l.contains("NODE decommission")));
    // The agent is disabled: its objects are removed, never created.
    assert!(log
        .iter()
        .any(|l| l.starts_with("DELETE") && l.contains("daemonsets/tsc-agent")));
    let status = status_patch(&log);
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["selector"], "app.kubernetes.io/component=node,app.kubernetes.io/instance=tsc,app.kubernetes.io/name=strata");
}

#[tokio::test]
async fn scale_down_decommissions_the_highest_ordinal_before_shrinking() {
    let spec = json!({"replicas": 3});
    let world = World {
        statefulset: Some(sts(5, "r1", "10Gi")),
        pods: (0..5).map(|i| pod(i, "r1")).collect(),
        pvcs: (0..5)
            .flat_map(|i| [pvc("wal", i, "2Gi"), pvc("data", i, "10Gi")])
            .collect(),
        members: ring(&["active"; 5]),
        ..Default::default()
    };

    // Step 1: tsc-4 is asked to leave; the StatefulSet keeps 5 replicas, nothing is deleted.
    let log = run(cluster(spec.clone(), json!(null)), world.clone()).await;
    let decom = position(&log, "NODE decommission");
    assert_eq!(log[decom], "NODE decommission http://tsc-4:8181");
    assert_eq!(
        log.iter()
            .filter(|l| l.contains("NODE decommission"))
            .count(),
        1
    );
    assert!(decom < position(&log, "statefulsets/tsc?"));
    assert_eq!(sts_apply(&log)["spec"]["replicas"], 5);
    assert!(!log
        .iter()
        .any(|l| l.contains("DELETE") && l.contains("persistentvolumeclaims")));
    let status = status_patch(&log);
    assert_eq!(status["decommissioning"], json!(["tsc-4"]));
    assert_eq!(status["phase"], "Scaling");

    // Step 2: still leaving: poll, no second request, no shrink.
    let mut leaving = world.clone();
    leaving.members = ring(&["active", "active", "active", "active", "leaving"]);
    let asked = json!({"decommissioning": ["tsc-4"]});
    let log = run(cluster(spec.clone(), asked.clone()), leaving).await;
    assert!(!log.iter().any(|l| l.contains("NODE decommission")));
    assert_eq!(sts_apply(&log)["spec"]["replicas"], 5);

    // Step 3: tsc-4 has left: shrink to 4; its claims stay while its pod still exists.
    let mut left = world.clone();
    left.members = ring(&["active", "active", "active", "active", "left"]);
    let log = run(cluster(spec.clone(), asked.clone()), left).await;
    assert_eq!(sts_apply(&log)["spec"]["replicas"], 4);
    assert!(!log.iter().any(|l| l.contains("NODE decommission")));
    assert!(!log
        .iter()
        .any(|l| l.contains("DELETE") && l.contains("persistentvolumeclaims")));

    // Step 4: pod tsc-4 is gone: its claims are deleted (policy Delete) after the shrink,
    // and tsc-3 is asked to leave next.
    let next = World {
        statefulset: Some(sts(4, "r1", "10Gi")),
        pods: (0..4).map(|i| pod(i, "r1")).collect(),
        members: ring(&["active", "active", "active", "active"]),
        ..world.clone()
    };
    let log = run(cluster(spec.clone(), asked), next).await;
    assert_eq!(
        log[position(&log, "NODE decommission")],
        "NODE decommission http://tsc-3:8181"
    );
    let applied = position(&log, "statefulsets/tsc?");
    assert_eq!(sts_apply(&log)["spec"]["replicas"], 4);
    let wal = position(
        &log,
        "DELETE /api/v1/namespaces/metrics/persistentvolumeclaims/wal-tsc-4",
    );
    let data = position(
        &log,
        "DELETE /api/v1/namespaces/metrics/persistentvolumeclaims/data-tsc-4",
    );
    assert!(applied < wal && applied < data);
    assert!(!log
        .iter()
        .any(|l| l.contains("DELETE") && l.contains("-tsc-3")));
    assert_eq!(status_patch(&log)["decommissioning"], json!(["tsc-3"]));
}

#[tokio::test]
async fn nodes_serving_tls_are_asked_over_https() {
    let world = World {
        statefulset: Some(sts(3, "r1", "10Gi")),
        pods: (0..3).map(|i| pod(i, "r1")).collect(),
        members: ring(&["active"; 3]),
        ..Default::default()
    };
    let spec = json!({"replicas": 2, "tls": {"secretName": "tsc-tls"}});
    let log = run(cluster(spec, json!(null)), world).await;
    assert_eq!(
        log[position(&log, "NODE members")],
        "NODE members https://tsc-0:8181"
    );
    assert_eq!(
        log[position(&log, "NODE decommission")],
        "NODE decommission https://tsc-2:8181"
    );
    let probe = &sts_apply(&log)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"];
    assert_eq!(probe["httpGet"]["scheme"], "HTTPS", "{probe:#}");
}

#[tokio::test]
async fn scale_down_waits_while_the_ring_is_unhealthy() {
    let world = World {
        statefulset: Some(sts(4, "r1", "10Gi")),
        pods: (0..4).map(|i| pod(i, "r1")).collect(),
        members: ring(&["active", "joining", "active", "active"]),
        ..Default::default()
    };
    let log = run(cluster(json!({"replicas": 3}), json!(null)), world).await;
    assert!(!log.iter().any(|l| l.contains("NODE decommission")));
    assert_eq!(sts_apply(&log)["spec"]["replicas"], 4);
    let status = status_patch(&log);
    let progressing = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap()
        .clone();
    assert_eq!(progressing["reason"], "RingUnhealthy");
}

#[tokio::test]
async fn rollout_replaces_one_pod_at_a_time_from_the_top() {
    let world = World {
        statefulset: Some(sts(3, "new", "10Gi")),
        pods: vec![pod(0, "old"), pod(1, "old"), pod(2, "new")],
        members: ring(&["active"; 3]),
        ..Default::default()
    };
    let log = run(cluster(json!({"replicas": 3}), json!(null)), world.clone()).await;
    let deletes: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("DELETE /api/v1/namespaces/metrics/pods/"))
        .collect();
    assert_eq!(deletes.len(), 1, "{log:#?}");
    assert!(deletes[0].contains("/pods/tsc-1"));
    assert!(position(&log, "statefulsets/tsc?") < position(&log, "/pods/tsc-1"));
    assert_eq!(status_patch(&log)["phase"], "Upgrading");

    // The replaced pod is not ready yet: nothing else is deleted.
    let mut waiting = world;
    waiting.pods[1]["status"] = json!({});
    let log = run(cluster(json!({"replicas": 3}), json!(null)), waiting).await;
    assert!(!log
        .iter()
        .any(|l| l.starts_with("DELETE /api/v1/namespaces/metrics/pods/")));
}

#[tokio::test]
async fn a_new_image_is_not_current_before_the_statefulset_controller_rolls_it() {
    let spec = json!({"replicas": 3, "image": "strata:new"});
    let old_status = json!({"currentImage": "strata:old"});
    // Render the template the cluster ran with the old image, as the StatefulSet stores it.
    let first = run(
        cluster(
            json!({"replicas": 3, "image": "strata:old"}),
            old_status.clone(),
        ),
        World::default(),
    )
    .await;
    let mut stored = sts_apply(&first);
    stored["metadata"]["generation"] = json!(1);
    stored["status"] = json!({"replicas": 3, "updateRevision": "r1", "observedGeneration": 1});
    let world = World {
        statefulset: Some(stored),
        pods: (0..3).map(|i| pod(i, "r1")).collect(),
        members: ring(&["active"; 3]),
        ..Default::default()
    };

    // The image changed and no pod was replaced yet: the StatefulSet's updateRevision still
    // names the old template, which every pod runs.
    let log = run(cluster(spec.clone(), old_status.clone()), world.clone()).await;
    assert_eq!(
        sts_apply(&log)["spec"]["template"]["spec"]["containers"][0]["image"],
        "strata:new"
    );
    assert!(
        !log.iter()
            .any(|l| l.starts_with("DELETE /api/v1/namespaces/metrics/pods/")),
        "{log:#?}"
    );
    let status = status_patch(&log);
    assert_eq!(status["currentImage"], "strata:old", "{status:#}");
    assert_eq!(status["phase"], "Upgrading");
    let progressing = condition(&status, "Progressing");
    assert_eq!(progressing["status"], "True");
    assert_eq!(progressing["reason"], "StatefulSetNotObserved");

    // The StatefulSet controller has seen the new template: the rollout starts at the top.
    let mut observed = world.clone();
    let sts = observed.statefulset.as_mut().unwrap();
    sts["spec"]["template"] = sts_apply(&log)["spec"]["template"].clone();
    sts["metadata"]["generation"] = json!(2);
    sts["status"] = json!({"replicas": 3, "updateRevision": "r2", "observedGeneration": 2});
    let log = run(cluster(spec.clone(), old_status.clone()), observed.clone()).await;
    position(&log, "DELETE /api/v1/namespaces/metrics/pods/tsc-2");
    assert_eq!(status_patch(&log)["currentImage"], "strata:old");

    // Every pod runs the new revision: now the image is current.
    observed.pods = (0..3).map(|i| pod(i, "r2")).collect();
    let log = run(cluster(spec, old_status), observed).await;
    assert!(!log
        .iter()
        .any(|l| l.starts_with("DELETE /api/v1/namespaces/metrics/pods/")));
    let status = status_patch(&log);
    assert_eq!(status["currentImage"], "strata:new");
    assert_eq!(status["phase"], "Running");
    assert_eq!(condition(&status, "Progressing")["status"], "False");
}

/// Two ready pods at revision r1 with 2Gi WAL and 10Gi data claims on a StorageClass that can
/// expand volumes.
fn two_nodes_on_an_expandable_class() -> World {
    let mut world = World {
        statefulset: Some(sts(2, "r1", "10Gi")),
        pods: vec![pod(0, "r1"), pod(1, "r1")],
        pvcs: (0..2)
            .flat_map(|i| [pvc("wal", i, "2Gi"), pvc("data", i, "10Gi")])
            .collect(),
        members: ring(&["active"; 2]),
        ..Default::default()
    };
    world.storage_classes.insert(
        "standard".into(),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "standard"},
               "provisioner": "x", "allowVolumeExpansion": true}),
    );
    world
}

#[tokio::test]
async fn larger_volumes_expand_claims_then_recreate_the_statefulset_orphaning_pods() {
    let mut world = two_nodes_on_an_expandable_class();
    let spec = json!({"replicas": 2, "storage": {"data": {"size": "20Gi"}}});
    let log = run(cluster(spec.clone(), json!(null)), world.clone()).await;
    let p0 = position(
        &log,
        "PATCH /api/v1/namespaces/metrics/persistentvolumeclaims/data-tsc-0",
    );
    let p1 = position(
        &log,
        "PATCH /api/v1/namespaces/metrics/persistentvolumeclaims/data-tsc-1",
    );
    assert!(log[p0].contains("20Gi"));
    assert!(!log
        .iter()
        .any(|l| l.contains("PATCH") && l.contains("wal-tsc-")));
    let del = position(
        &log,
        "DELETE /apis/apps/v1/namespaces/metrics/statefulsets/tsc",
    );
    assert!(
        log[del].contains("\"propagationPolicy\":\"Orphan\""),
        "{}",
        log[del]
    );
    assert!(p0 < del && p1 < del);
    assert!(!log
        .iter()
        .any(|l| l.starts_with("DELETE /api/v1/namespaces/metrics/pods/")));
    assert!(
        !log.iter().any(|l| l.contains("statefulsets/tsc?")),
        "re-created on the next reconcile"
    );

    // A class that cannot expand: nothing is touched and the cluster reports Degraded.
    world.storage_classes.get_mut("standard").unwrap()["allowVolumeExpansion"] = json!(false);
    let log = run(cluster(spec, json!(null)), world).await;
    assert!(!log
        .iter()
        .any(|l| l.contains("PATCH /api/v1/namespaces/metrics/persistentvolumeclaims")));
    assert!(!log
        .iter()
        .any(|l| l.starts_with("DELETE /apis/apps/v1/namespaces/metrics/statefulsets")));
    let status = status_patch(&log);
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap()
        .clone();
    assert_eq!(degraded["reason"], "VolumeExpansionUnsupported");
}

#[tokio::test]
async fn a_size_written_differently_is_not_a_resize() {
    // The API server stores 10240Mi as 10Gi: the same size, nothing to expand or re-create
    // (the class could expand, so a misjudged resize would show as claim patches).
    let world = two_nodes_on_an_expandable_class();
    let spec =
        json!({"replicas": 2, "storage": {"wal": {"size": "2048Mi"}, "data": {"size": "10240Mi"}}});
    let log = run(cluster(spec, json!(null)), world).await;
    assert_eq!(
        condition(&status_patch(&log), "Degraded")["status"],
        "False"
    );
    assert!(
        !log.iter()
            .any(|l| l.contains("persistentvolumeclaims/") && !l.starts_with("GET")),
        "{log:#?}"
    );
    assert!(
        !log.iter()
            .any(|l| l.starts_with("DELETE /apis/apps/v1/namespaces/metrics/statefulsets")),
        "{log:#?}"
    );
    position(&log, "statefulsets/tsc?");
}

#[tokio::test]
async fn node_agent_objects_are_applied_and_cleaned_up_by_the_finalizer() {
    let spec = json!({"replicas": 1, "replicationFactor": 1, "nodeAgent": {"enabled": true}});
    let log = run(cluster(spec.clone(), json!(null)), World::default()).await;
    for obj in [
        "serviceaccounts/tsc-agent?",
        "clusterroles/strata-agent-metrics-tsc?",
        "clusterrolebindings/strata-agent-metrics-tsc?",
        "daemonsets/tsc-agent?",
    ] {
        assert!(log[position(&log, obj)].starts_with("PATCH"), "{obj}");
    }

    let mut deleting = cluster(spec, json!(null));
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    let log = run(deleting, World::default()).await;
    let binding = position(
        &log,
        "DELETE /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/strata-agent-metrics-tsc",
    );
    let role = position(
        &log,
        "DELETE /apis/rbac.authorization.k8s.io/v1/clusterroles/strata-agent-metrics-tsc",
    );
    let unfinalize = position(
        &log,
        "PATCH /apis/strata.dev/v1alpha1/namespaces/metrics/timeseriesclusters/tsc",
    );
    assert!(binding < unfinalize && role < unfinalize);
    assert!(!log.iter().any(|l| l.contains("statefulsets/tsc?")));
}
