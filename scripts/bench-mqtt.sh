#!/usr/bin/env bash
# MQTT ingest benchmark (BENCHMARKS.md): messages/s stored end to end by a strata-node, against
# the broker's own ceiling measured the same way: a plain `mosquitto_sub` counting the same
# publisher load to /dev/null. Needs release binaries and mosquitto + mosquitto-clients.
#
# Both subscribers speak the same MQTT version: PROTOCOL=5 (default) or PROTOCOL=3.1.1.
#
#   cargo build --release --bin strata-node --bin stratactl
#   scripts/bench-mqtt.sh [messages] [qos...]        # default: 200000 messages, QoS 0 and 1
#   PROTOCOL=3.1.1 scripts/bench-mqtt.sh 300000 1
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
shift || true
QOS_LIST=${*:-0 1}
PROTOCOL=${PROTOCOL:-5}
case "$PROTOCOL" in
  5) SUB_VERSION=mqttv5 ;;
  3.1.1) SUB_VERSION=mqttv311 ;;
  *) echo "PROTOCOL must be 5 or 3.1.1" >&2; exit 2 ;;
esac
BIN=${STRATA_BIN:-target/release}
# shellcheck source=scripts/mqtt-bench-lib.sh
. scripts/mqtt-bench-lib.sh

publish() { # qos
  "$BIN/stratactl" simulate mqtt --broker "tcp://127.0.0.1:$BROKER_PORT" --devices 100 \
    --metrics 4 --rate 0 --count "$N" --qos "$1" --quiet >"$WORK/pub.out"
}

now() { date +%s.%N; }

# Polls the node's stored-messages counter every 10 ms until it reaches N (or the deadline);
# prints the count and the time it was seen, in `date +%s.%N`'s clock.
cat >"$WORK/wait_stored.py" <<'PY'
import http.client, sys, time
port, n, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port)
deadline = time.time() + limit
stored = 0
while stored < n and time.time() < deadline:
    time.sleep(0.01)
    conn.request("GET", "/metrics")
    for line in conn.getresponse().read().decode().splitlines():
        if line.startswith("strata_mqtt_messages_stored_total "):
            stored = int(float(line.split()[1]))
print(stored, f"{time.time():.6f}")
PY

for QOS in $QOS_LIST; do
  # 1. The ceiling: mosquitto_sub counting N messages to /dev/null.
  start_broker
  timeout 300 mosquitto_sub -V "$SUB_VERSION" -p "$BROKER_PORT" -t 'iot/sensors/+' -q "$QOS" -C "$N" >/dev/null &
  SUB=$!
  sleep 0.5
  T0=$(now)
  publish "$QOS" &
  PUB=$!
  wait $SUB || echo "mosquitto_sub did not receive all $N messages" >&2
  T1=$(now)
  wait $PUB || true
  CEIL=$(python3 -c "print(round($N/($T1-$T0)))")
  stop_broker

  # 2. The node: the same load, timed until N messages are durable (its own counter).
  start_broker
  start_node "$QOS" "$PROTOCOL"
  # One poller process on a keep-alive connection: a curl (and awk) started every 10 ms costs
  # several milliseconds of CPU each, a core's worth that the node's run would pay and the
  # ceiling's run would not.
  python3 "$WORK/wait_stored.py" "$HTTP" "$N" 300 >"$WORK/stored.out" &
  POLLER=$!
  sleep 0.5
  T0=$(now)
  publish "$QOS" &
  PUB=$!
  wait $POLLER || true
  read -r STORED T1 <"$WORK/stored.out"
  LEVEL=$(node_metric strata_mqtt_protocol_version)
  wait $PUB || true
  NODE_RATE=$(python3 -c "print(round($STORED/($T1-$T0)))")
  kill "$NODE"; wait "$NODE" 2>/dev/null || true
  stop_broker
  echo "MQTT $PROTOCOL (node's protocol level $LEVEL), QoS $QOS, load average $(cut -d' ' -f1-3 /proc/loadavg): mosquitto_sub ceiling $CEIL msgs/s; strata-node stored $STORED/$N at $NODE_RATE msgs/s ($(python3 -c "print(round(100*$NODE_RATE/$CEIL))") % of the ceiling); publisher: $(cat "$WORK/pub.out")"
done
