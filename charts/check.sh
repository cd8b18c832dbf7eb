#!/usr/bin/env bash
# Checks of the Helm chart and the CRD, run by .ci/run:
#   - helm lint --strict, with default values and with every optional part enabled;
#   - helm template --include-crds through kubernetes-validate --strict for a pinned
#     Kubernetes version, failing on any error or warning;
#   - the chart's sample cluster and every example resource validated against the generated
#     CRD schema (unknown fields are errors);
#   - the kind tests' own manifests (the MQTT broker) through kubernetes-validate too;
#   - the ServiceMonitor kind has no schema here: it is checked for its group and required
#     fields only.
# Needs helm (HELM=path to override), kubernetes-validate and python3 with PyYAML and
# jsonschema (both come with kubernetes-validate).
set -euo pipefail
cd "$(dirname "$0")/.."

helm=${HELM:-helm}
k8s_version=${K8S_VERSION:-1.33.0}
chart=charts/strata
crd=crds/timeseriesclusters.strata.dev.yaml
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== CRD copies"
cmp "$crd" "$chart/crds/timeseriesclusters.strata.dev.yaml"

all_on=(
  --set sampleCluster.enabled=true
  --set grafana.datasource.enabled=true
  --set grafana.dashboards.enabled=true
  --set serviceMonitor.enabled=true
)

echo "== helm lint --strict"
"$helm" lint --strict "$chart"
"$helm" lint --strict "$chart" "${all_on[@]}"

validate() {
  local label=$1
  shift
  local dir="$work/$label"
  mkdir -p "$dir"
  "$helm" template strata "$chart" --include-crds --namespace strata "$@" >"$dir/rendered.yaml"
  python3 charts/split_manifests.py "$dir/rendered.yaml" "$dir"
  kubernetes-validate --strict -k "$k8s_version" "$dir/builtin.yaml" | tee "$dir/validate.log"
  if grep -Ev '^INFO ' "$dir/validate.log" | grep -q .; then
    echo "kubernetes-validate reported warnings or errors for $label" >&2
    exit 1
  fi
}

echo "== kubernetes-validate --strict (Kubernetes $k8s_version), default values"
validate default
echo "== kubernetes-validate --strict (Kubernetes $k8s_version), every option on"
validate all-on "${all_on[@]}"

echo "== custom resources against the CRD schema"
python3 charts/validate_crs.py "$crd" "$work/all-on/custom.yaml" operator/examples/*.yaml
# The check itself must catch an unknown field and a wrong type.
printf '%s\n' 'apiVersion: strata.dev/v1alpha1' 'kind: TimeSeriesCluster' 'metadata: {name: bad}' \
  'spec: {replicas: "three", storage: {data: {size: 1Gi, sise: 2Gi}}}' >"$work/bad.yaml"
if python3 charts/validate_crs.py "$crd" "$work/bad.yaml" >"$work/bad.log"; then
  echo "validate_crs.py accepted an invalid resource" >&2
  exit 1
fi
grep -q "'sise' was unexpected" "$work/bad.log"
grep -q "'three' is not of type 'integer'" "$work/bad.log"
python3 - "$work/all-on/custom.yaml" <<'PY'
import sys, yaml
monitors = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ServiceMonitor"]
assert len(monitors) == 2, monitors
for m in monitors:
    assert m["apiVersion"] == "monitoring.coreos.com/v1"
    assert m["spec"]["selector"]["matchLabels"] and m["spec"]["endpoints"], m
print("ok    ServiceMonitors")
PY
echo "== kind test manifests (kubernetes-validate --strict, Kubernetes $k8s_version)"
kubernetes-validate --strict -k "$k8s_version" kind-tests/mosquitto.yaml | tee "$work/kind.log"
if grep -Ev '^INFO ' "$work/kind.log" | grep -q .; then
  echo "kubernetes-validate reported warnings or errors for kind-tests/mosquitto.yaml" >&2
  exit 1
fi
echo "chart checks passed"
