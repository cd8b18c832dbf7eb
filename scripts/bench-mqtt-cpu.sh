#!/usr/bin/env bash
# Where the CPU goes in one MQTT QoS 0 run (BENCHMARKS.md, "Reading QoS 0 in bulk"): the
# publisher, mosquitto and the subscriber (`mosquitto_sub` or a strata-node) share the
# machine's cores; this prints each one's CPU per message and the context switches of the
# subscriber's and the broker's threads. Needs release binaries, mosquitto + mosquitto-clients
# and perf.
#
#   scripts/bench-mqtt-cpu.sh [messages] [sub|node]      # default: 500000 node
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-500000}
WHO=${2:-node}
BIN=${STRATA_BIN:-target/release}
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_seconds() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }
stored() { curl -s "http://127.0.0.1:$HTTP/metrics" | awk '$1=="strata_mqtt_messages_stored_total"{print $2}'; }

BROKER_PORT=$(free_port)
cat >"$WORK/mosquitto.conf" <<CONF
listener $BROKER_PORT 127.0.0.1
allow_anonymous true
max_inflight_messages 0
max_queued_messages 0
CONF
"$MOSQUITTO" -c "$WORK/mosquitto.conf" >/dev/null 2>&1 &
BROKER=$!
PIDS+=("$BROKER")
sleep 0.5

case "$WHO" in
  sub)
    /usr/bin/time -f "%U %S" -o "$WORK/sub.time" \
      mosquitto_sub -V mqttv5 -p "$BROKER_PORT" -t 'iot/sensors/+' -q 0 -C "$N" >/dev/null &
    PIDS+=("$!")
    sleep 0.3
    SUB=$(pgrep -n mosquitto_sub)
    ;;
  node)
    HTTP=$(free_port)
    mkdir -p "$WORK/node"
    cat >"$WORK/node/config.yaml" <<CONF
server:
  http_addr: 127.0.0.1:$HTTP
  binary_addr: 127.0.0.1:$(free_port)
  tcp_addr: 127.0.0.1:$(free_port)
storage:
  data_dir: $WORK/node/data
  wal_dir: $WORK/node/wal
mqtt:
  broker: tcp://127.0.0.1:$BROKER_PORT
  qos: 0
  protocol: "5"
  client_id: strata-bench
CONF
    RUST_LOG=warn "$BIN/strata-node" --config "$WORK/node/config.yaml" >/dev/null 2>&1 &
    SUB=$!
    PIDS+=("$SUB")
    until curl -s "http://127.0.0.1:$HTTP/metrics" | awk '$1=="strata_mqtt_connected"{print $2}' | grep -qx 1; do sleep 0.1; done
    ;;
  *) echo "the second argument is sub or node" >&2; exit 2 ;;
esac
sleep 0.5

perf stat -e task-clock,context-switches --per-thread -p "$SUB,$BROKER" -o "$WORK/perf.txt" 2>/dev/null &
PERF=$!
sleep 0.2
SUB0=$( [ "$WHO" = node ] && cpu_seconds "$SUB" || echo 0 )
BROKER0=$(cpu_seconds "$BROKER")
T0=$(date +%s.%N)
/usr/bin/time -f "%U %S" -o "$WORK/pub.time" "$BIN/stratactl" simulate mqtt \
  --broker "tcp://127.0.0.1:$BROKER_PORT" --devices 100 --metrics 4 --rate 0 --count "$N" \
  --qos 0 --quiet >/dev/null
if [ "$WHO" = sub ]; then
  while kill -0 "$SUB" 2>/dev/null; do sleep 0.01; done
else
  until [ "$(stored)" -ge "$N" ]; do sleep 0.05; done
fi
T1=$(date +%s.%N)
BROKER1=$(cpu_seconds "$BROKER")
if [ "$WHO" = node ]; then SUB1=$(cpu_seconds "$SUB"); else sleep 0.1; SUB1=$(awk '{print $1+$2}' "$WORK/sub.time"); fi
kill -INT "$PERF"; wait "$PERF" 2>/dev/null || true

python3 - "$N" "$T0" "$T1" "$SUB0" "$SUB1" "$BROKER0" "$BROKER1" "$(cat "$WORK/pub.time")" "$WHO" <<'PY'
import sys
n = int(sys.argv[1])
t0, t1, s0, s1, b0, b1 = map(float, sys.argv[2:8])
pub_user, pub_sys = map(float, sys.argv[8].split())
us = lambda secs: f"{1e6 * secs / n:.2f} µs"
print(f"{sys.argv[9]}: {n / (t1 - t0):.0f} msgs/s end to end; CPU per message: "
      f"publisher {us(pub_user + pub_sys)}, mosquitto {us(b1 - b0)}, subscriber {us(s1 - s0)}")
PY
echo "context switches during the run:"
awk '/context-switches/ && $2 ~ /^[0-9,]+$/ {print "  " $1 ": " $2}' "$WORK/perf.txt"
