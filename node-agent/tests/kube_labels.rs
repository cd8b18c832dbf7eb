//! The pod watcher against a mocked API server (`tower-test` behind `kube::Client`): it lists
//! and watches only the pods on its node, and the index follows what the API server says.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use strata_agent::cgroup::ContainerRef;
use strata_agent::kube_labels::{watch_node_pods, PodLabels};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn pod(name: &str, uid: &str, container: &str, id: &str, rv: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "resourceVersion": rv},
        "spec": {"nodeName": "node-1", "containers": [{"name": container, "image": "img:1"}]},
        "status": {"containerStatuses": [{
            "name": container, "image": "registry.local/img:1", "imageID": "", "ready": true,
            "restartCount": 0, "containerID": format!("containerd://{id}")}]}
    })
}

fn container(id: &str) -> ContainerRef {
    ContainerRef {
        container_id: id.into(),
        pod_uid: None,
    }
}

#[tokio::test]
async fn lists_and_watches_the_pods_of_its_node() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = requests.clone();
    let server = tokio::spawn(async move {
        // Watches after the first are held open (their responders kept alive), as an API
        // server does until its timeout.
        let mut held = Vec::new();
        let mut n = 0;
        while let Some((request, send)) = handle.next_request().await {
            seen.lock().unwrap().push(request.uri().to_string());
            let query = request.uri().query().unwrap_or_default().to_string();
            n += 1;
            if !query.contains("watch=true") {
                let list = json!({"kind": "PodList", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": "10"},
                                  "items": [pod("web-0", "u-a", "nginx", A, "10")]});
                send.send_response(
                    Response::builder()
                        .status(StatusCode::OK)
                        .body(Body::from(serde_json::to_vec(&list).unwrap()))
                        .unwrap(),
                );
            } else if n == 2 {
                let event = json!({"type": "ADDED", "object": pod("web-1", "u-b", "app", B, "11")});
                let mut line = serde_json::to_vec(&event).unwrap();
                line.push(b'\n');
                send.send_response(
                    Response::builder()
                        .status(StatusCode::OK)
                        .body(Body::from(line))
                        .unwrap(),
                );
            } else {
                held.push(send);
            }
        }
    });

    let labeler = watch_node_pods(Client::new(service, "default"), "node-1");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let index = labeler.index();
        if index.lookup(&container(A)).is_some() && index.lookup(&container(B)).is_some() {
            assert_eq!(
                index.lookup(&container(B)),
                Some(&PodLabels {
                    namespace: "shop".into(),
                    pod: "web-1".into(),
                    container: "app".into(),
                    image: "registry.local/img:1".into(),
                })
            );
            assert_eq!(index.lookup(&container(A)).unwrap().pod, "web-0");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "index never held both pods; requests: {:#?}",
            requests.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let requests = requests.lock().unwrap().clone();
    assert!(requests.len() >= 2, "a list and a watch: {requests:#?}");
    for r in &requests {
        assert!(r.starts_with("/api/v1/pods?"), "all namespaces: {r}");
        assert!(
            r.contains("fieldSelector=spec.nodeName%3Dnode-1"),
            "only this node's pods: {r}"
        );
    }
    assert!(requests[1].contains("watch=true"), "{requests:#?}");
    server.abort();
}
