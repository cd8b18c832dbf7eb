#!/usr/bin/env bash
# End-to-end tests on a kind cluster: creates the cluster, builds and loads the images,
# deploys mosquitto (kind-tests/mosquitto.yaml) as the clusters' MQTT broker, installs the
# chart with a one-node sample cluster, runs `helm test`, runs the Rust
# scenarios (tests/kind.rs) against it, then uninstalls and checks that nothing is left.
#
# Needs docker, kind, kubectl, helm and cargo. Environment:
#   KIND_CLUSTER   cluster name (default strata-e2e); an existing cluster is reused
#   KEEP_CLUSTER=1 keep the cluster afterwards (it is deleted otherwise, even on failure)
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${KIND_CLUSTER:-strata-e2e}
namespace=strata-e2e
user=e2e
password=e2e-password
created=0

for tool in docker kind kubectl helm cargo curl; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

cleanup() {
  local status=$?
  if [[ $status -ne 0 ]]; then
    echo "== failure: operator log and cluster state" >&2
    kubectl -n "$namespace" logs deployment/strata-operator --tail=200 >&2 || true
    kubectl -n "$namespace" get tsc,sts,pods,pvc -o wide >&2 || true
  fi
  if [[ $created -eq 1 && ${KEEP_CLUSTER:-0} != 1 ]]; then
    kind delete cluster --name "$cluster" || true
  fi
  exit "$status"
}
trap cleanup EXIT

echo "== kind cluster $cluster"
if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --config kind-tests/kind-config.yaml --wait 180s
  created=1
fi
kubectl config use-context "kind-$cluster"

echo "== images"
docker build -f tsdb-node/Dockerfile -t strata-node:e2e .
# A second tag of the same build stands for a new release in the rollout scenario.
docker tag strata-node:e2e strata-node:e2e-v2
docker build -f operator/Dockerfile -t strata-operator:e2e .
docker build -f node-agent/Dockerfile -t strata-agent:e2e .
kind load docker-image --name "$cluster" strata-node:e2e strata-node:e2e-v2 strata-operator:e2e \
  strata-agent:e2e

echo "== namespace and users Secret"
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
hash=$(docker run --rm docker.io/library/httpd:2.4-alpine htpasswd -nbBC 10 "" "$password" | tr -d ':\n')
users=$(printf -- '- username: %s\n  password_hash: "%s"\n  roles: [read, write, admin]\n' "$user" "$hash")
kubectl -n "$namespace" create secret generic strata-users \
  --from-literal=users.yaml="$users" --dry-run=client -o yaml | kubectl apply -f -

echo "== MQTT broker"
# The clusters subscribe to it (spec.mqtt); the scenarios publish to it.
kubectl -n "$namespace" apply -f kind-tests/mosquitto.yaml
kubectl -n "$namespace" rollout status deployment/mosquitto --timeout=180s

echo "== helm install"
helm upgrade --install strata charts/strata --namespace "$namespace" --wait --timeout 5m \
  --set operator.image.repository=strata-operator \
  --set operator.image.tag=e2e \
  --set operator.image.pullPolicy=Never \
  --set sampleCluster.enabled=true \
  --set-json 'sampleCluster.spec={"replicas":1,"replicationFactor":1,"image":"strata-node:e2e","imagePullPolicy":"Never","usersSecret":{"name":"strata-users","key":"users.yaml"},"storage":{"wal":{"size":"256Mi"},"data":{"size":"1Gi"}},"nodeAgent":{"enabled":true,"image":"strata-agent:e2e","interval":"5s"},"mqtt":{"broker":"tcp://mosquitto:1883"}}'
kubectl -n "$namespace" wait tsc/strata --for=jsonpath='{.status.phase}'=Running --timeout=300s

echo "== helm test"
helm test strata --namespace "$namespace" --timeout 5m --logs

echo "== node agent"
# The sample cluster enables the agent: its DaemonSet must roll out and its series, labelled
# from the pods on the node, must reach the cluster by remote write.
kubectl -n "$namespace" rollout status daemonset/strata-agent --timeout=180s
kubectl -n "$namespace" port-forward svc/strata 18181:8181 >/dev/null &
forward=$!
agent_ok=0
for _ in $(seq 60); do
  if curl -sf -G http://127.0.0.1:18181/api/v1/query \
    --data-urlencode "query=count(container_cpu_usage_seconds_total{namespace=\"$namespace\",pod=\"strata-0\"})" |
    grep -q '"result":\[{'; then
    agent_ok=1
    break
  fi
  sleep 2
done
kill "$forward" || true
if [[ $agent_ok -ne 1 ]]; then
  echo "no labelled container metrics from strata-agent" >&2
  kubectl -n "$namespace" logs daemonset/strata-agent --tail=100 >&2 || true
  exit 1
fi

echo "== Rust scenarios"
cargo build -p tsdb-node --bin stratactl
STRATA_E2E_KIND=1 STRATA_E2E_NAMESPACE="$namespace" STRATA_E2E_USER="$user" \
  STRATA_E2E_PASSWORD="$password" STRATA_E2E_IMAGE=strata-node:e2e \
  STRATA_E2E_NEW_IMAGE=strata-node:e2e-v2 STRATA_E2E_MQTT_SERVICE=mosquitto \
  cargo test -p kind-tests --test kind -- --nocapture

echo "== uninstall"
# Clusters first, while the operator still runs to complete their finalizers.
kubectl -n "$namespace" delete tsc --all --wait=true --timeout=300s
helm uninstall strata --namespace "$namespace" --wait
leftover=$(kubectl get clusterroles,clusterrolebindings -l app.kubernetes.io/managed-by=strata-operator -o name)
leftover+=$(kubectl -n "$namespace" get statefulsets,services,configmaps,poddisruptionbudgets,daemonsets \
  -l app.kubernetes.io/managed-by=strata-operator -o name)
if [[ -n $leftover ]]; then
  echo "left behind after uninstall:" >&2
  echo "$leftover" >&2
  exit 1
fi
echo "kind end-to-end tests passed"
