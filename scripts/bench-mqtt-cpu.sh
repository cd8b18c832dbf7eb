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
# shellcheck source=scripts/mqtt-bench-lib.sh
. scripts/mqtt-bench-lib.sh

cpu_seconds() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }

start_broker
BROKER=$BROKER_PID

case "$WHO" in
  sub)
    /usr/bin/time -f "%U %S" -o "$WORK/sub.time" \
      mosquitto_sub -V mqttv5 -p "$BROKER_PORT" -t 'iot/sensors/+' -q 0 -C "$N" >/dev/null &
    PIDS+=("$!")
    sleep 0.3
    SUB=$(pgrep -n mosquitto_sub)
    ;;
  node)
    start_node 0 5
    SUB=$NODE
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
  until [ "$(node_metric strata_mqtt_messages_stored_total)" -ge "$N" ]; do sleep 0.05; done
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
