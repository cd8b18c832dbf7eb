#!/usr/bin/env bash
# Cluster benchmarks (BENCHMARKS.md "Cluster"): a single node against 3-node clusters at RF=1
# and RF=3 on this machine (ingest samples/s and ack latency, query p50/p99), the bytes nodes
# send each other per sample, and the time to decommission a node holding ~10 M samples.
#
# Builds nothing: it runs the release binaries from $CARGO_TARGET_DIR/release (or target/
# release). Needs root: node-to-node bytes are counted by iptables on loopback.
#
#   cargo build --release -p tsdb-node
#   scripts/bench-cluster.sh            # STEPS, DECOM_STEPS, REPEAT, CONNECTIONS override
#   PUSHDOWN=false scripts/bench-cluster.sh   # clustered queries read raw series (cluster.pushdown)
#   PUSHDOWN_VERIFY=off scripts/bench-cluster.sh   # cluster.pushdown_verify (default: the node's)
#
# Every node gets its own loopback address (127.77.R.N) with the same ports, so one iptables
# rule per port counts the gRPC (replica writes, fan-out reads, hints, decommission
# streams) and gossip bytes between nodes, IP headers included, and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${STRATA_BIN:-${CARGO_TARGET_DIR:-target}/release}
DEVICES=1000                      # 4 series each
STEPS=${STEPS:-360}               # ingest runs: 1000 devices x 4 x 360 = 1.44 M samples
DECOM_STEPS=${DECOM_STEPS:-2500}  # decommission run: 1000 x 4 x 2500 = 10 M samples
REPEAT=${REPEAT:-200}
CONNECTIONS=${CONNECTIONS:-4}
PUSHDOWN=${PUSHDOWN:-true}        # aggregation push-down in the clustered setups
PUSHDOWN_VERIFY=${PUSHDOWN_VERIFY:-}  # off|quorum|all; empty keeps the default (quorum)
HTTP_PORT=18181 GRPC_PORT=17070 GOSSIP_PORT=17946 BIN_PORT=19876 TCP_PORT=15433
NET=127.77.$(($$ % 250))
CHAIN=STRATA_BENCH_$$
Q_ONE='avg_over_time(temperature{device_id="dev-00042"}[30m])'
Q_ALL='sum(rate(energy_kwh_total[5m]))'

for b in strata-node stratactl; do
  [[ -x $BIN/$b ]] || { echo "$BIN/$b missing: cargo build --release -p tsdb-node" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "run as root: node-to-node bytes are counted with iptables" >&2; exit 1; }
command -v iptables >/dev/null || { echo "iptables missing (apt-get install iptables)" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  iptables -D OUTPUT -o lo -j "$CHAIN" 2>/dev/null || true
  iptables -F "$CHAIN" 2>/dev/null || true
  iptables -X "$CHAIN" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

iptables -N "$CHAIN"
iptables -I OUTPUT -o lo -j "$CHAIN"
# Clients' source address is 127.0.0.1 (lo's primary), so match on the servers' side only.
iptables -A "$CHAIN" -d "$NET.0/24" -p tcp --dport "$GRPC_PORT"
iptables -A "$CHAIN" -s "$NET.0/24" -p tcp --sport "$GRPC_PORT"
iptables -A "$CHAIN" -d "$NET.0/24" -p udp --dport "$GOSSIP_PORT"

# Bytes counted since the last reset: "<grpc> <gossip>" (iptables-nft prints protocol numbers).
wire_bytes() {
  iptables -L "$CHAIN" -v -x -n | awk '
    $3 == "tcp" || $3 == "6" { grpc += $2 }
    $3 == "udp" || $3 == "17" { gossip += $2 }
    END { print grpc + 0, gossip + 0 }'
}
reset_wire() { iptables -Z "$CHAIN"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }

http() { echo "http://$NET.$1:$HTTP_PORT"; }

# start_node <n> <nodes> <rf>: rf 0 starts a plain, unclustered node.
start_node() {
  local n=$1 count=$2 rf=$3 dir="$WORK/node-$1" seeds=() i
  mkdir -p "$dir"
  for ((i = 1; i <= count; i++)); do [[ $i == "$n" ]] || seeds+=("\"$NET.$i:$GOSSIP_PORT\""); done
  cat >"$dir/config.yaml" <<CONF
server:
  node_id: node-$n
  http_addr: $NET.$n:$HTTP_PORT
  binary_addr: $NET.$n:$BIN_PORT
  tcp_addr: $NET.$n:$TCP_PORT
storage:
  data_dir: $dir/data
  wal_dir: $dir/wal
CONF
  if ((rf > 0)); then
    local list
    list=$(IFS=,; echo "${seeds[*]}")
    cat >>"$dir/config.yaml" <<CONF
cluster:
  gossip_addr: $NET.$n:$GOSSIP_PORT
  grpc_addr: $NET.$n:$GRPC_PORT
  seeds: [$list]
  secret: bench-cluster-secret
  replication_factor: $rf
  pushdown: $PUSHDOWN
CONF
    [[ -z $PUSHDOWN_VERIFY ]] || echo "  pushdown_verify: $PUSHDOWN_VERIFY" >>"$dir/config.yaml"
  fi
  RUST_LOG=warn "$BIN/strata-node" --config "$dir/config.yaml" >/dev/null 2>"$dir/node.log" &
  PIDS+=($!)
}

wait_ready() { # <n>
  local i
  for ((i = 0; i < 600; i++)); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$(http "$1")/ready") == 200 ]] && return
    sleep 0.1
  done
  echo "node-$1 not ready: $(tail -n 5 "$WORK/node-$1/node.log")" >&2
  exit 1
}

live_members() { # <n>: members node n sees alive
  curl -s "$(http "$1")/api/v1/cluster/members" |
    python3 -c 'import json,sys; print(sum(1 for m in json.load(sys.stdin)["data"]["members"] if m.get("live")))'
}

# start_cluster <nodes> <rf>
start_cluster() {
  local count=$1 rf=$2 i
  rm -rf "$WORK"/node-*
  PIDS=()
  for ((i = 1; i <= count; i++)); do start_node "$i" "$count" "$rf"; done
  for ((i = 1; i <= count; i++)); do wait_ready "$i"; done
  if ((rf > 0)); then
    for ((i = 0; i < 300; i++)); do
      [[ $(live_members 1) == "$count" && $(live_members "$count") == "$count" ]] && return
      sleep 0.2
    done
    echo "cluster did not converge" >&2
    exit 1
  fi
}

stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
}

ctl() { "$BIN/stratactl" --server "$(http 1)" "$@"; }

# ingest_bench <label>: remote write into node-1 (the coordinator for every request).
ingest_bench() {
  local out samples grpc
  reset_wire
  out=$(ctl bench --protocol remote-write --devices "$DEVICES" --steps "$STEPS" \
    --batch 1000 --connections "$CONNECTIONS" 2>/dev/null)
  read -r grpc _ <<<"$(wire_bytes)"
  samples=$((DEVICES * 4 * STEPS))
  RATE=$(awk '/^throughput:/ { print $2 }' <<<"$out")
  ACK=$(sed -n 's/^ack latency per request: //p' <<<"$out")
  WIRE=$(calc "round($grpc / $samples, 1)")
}

# query_bench <query>: sets P50/P99 (ms) and QWIRE (node-to-node bytes per query).
query_bench() {
  local out grpc
  reset_wire
  out=$(ctl bench --query "$1" --repeat "$REPEAT" 2>/dev/null)
  read -r grpc _ <<<"$(wire_bytes)"
  P50=$(sed -n 's/^latency: p50 \([0-9.]*\) ms.*/\1/p' <<<"$out")
  P99=$(sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p' <<<"$out")
  QWIRE=$(calc "round($grpc / $REPEAT)")
}

ROWS=()
run_setup() { # <label> <nodes> <rf>
  local label=$1 l0
  start_cluster "$2" "$3"
  l0=$(load)
  ingest_bench
  local rate=$RATE ack=$ACK wire=$WIRE
  query_bench "$Q_ONE"
  local one="$P50 / $P99" qw1=$QWIRE
  query_bench "$Q_ALL"
  local all="$P50 / $P99" qw2=$QWIRE
  ROWS+=("| $label | $rate | $ack | $wire | $one ($qw1 B) | $all ($qw2 B) | $l0 → $(load) |")
  echo "${ROWS[-1]}"
  stop_all
}

echo "# $(date -u +%FT%TZ), $(nproc) cores, load $(load); $DEVICES devices x 4 series x $STEPS steps; pushdown $PUSHDOWN, pushdown_verify ${PUSHDOWN_VERIFY:-default}"
run_setup "single node" 1 0
run_setup "3 nodes, RF=1" 3 1
run_setup "3 nodes, RF=3" 3 3

echo
echo "| setup | ingest samples/s | ack latency per 1000-sample request | node-to-node bytes/sample | one series, p50 / p99 ms (bytes/query) | 1000 series, p50 / p99 ms (bytes/query) | load avg before → after |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo "queries: one series = $Q_ONE; 1000 series = $Q_ALL; $REPEAT runs each against node-1"

# Decommission: 3 nodes at RF=3 hold every sample on every node; node-3 hands its copy to
# the two that remain (RF capped at 2 then), which verify they hold every series.
echo
STEPS=$DECOM_STEPS
start_cluster 3 3
T0=$(now)
ingest_bench
T1=$(now)
echo "decommission setup: $((DEVICES * 4 * DECOM_STEPS)) samples loaded at RF=3 in $(calc "round($T1 - $T0)") s ($RATE samples/s)"
reset_wire
L0=$(load)
T0=$(now)
"$BIN/stratactl" --server "$(http 3)" decommission >/dev/null
while :; do
  P=$(curl -s "$(http 1)/api/v1/cluster/members" | python3 -c '
import json, sys
m = [m for m in json.load(sys.stdin)["data"]["members"] if m["node_id"] == "node-3"]
print(m[0].get("state", "") + "|" + m[0].get("progress", "") if m else "gone|")')
  case $P in
    left\|left:*) break ;;
    *failed*) echo "decommission failed: $P" >&2; exit 1 ;;
  esac
  sleep 0.5
done
T1=$(now)
read -r grpc _ <<<"$(wire_bytes)"
echo "decommission of node-3 ($((DEVICES * 4 * DECOM_STEPS)) samples): $(calc "round($T1 - $T0, 1)") s, $(calc "round($grpc / 1e6, 1)") MB node-to-node, load $L0 → $(load)"
echo "final progress: ${P#*|}"
stop_all
