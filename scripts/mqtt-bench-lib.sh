# Shared by scripts/bench-mqtt.sh and scripts/bench-mqtt-cpu.sh (sourced, not run): a work
# directory cleaned up on exit, a mosquitto broker configured as the benchmarks need it, and a
# strata-node subscribed to it. Expects BIN (directory of the release binaries) to be set.
# shellcheck shell=bash

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

# Starts mosquitto on a free port: sets BROKER_PORT and BROKER_PID.
start_broker() {
  BROKER_PORT=$(free_port)
  # Unlimited in-flight QoS 1 messages per 3.1.1 client: with acks sent only after the WAL
  # commit, mosquitto's default of 20 would cap the node at 20 messages per fsync. (An MQTT 5
  # client's window is its own Receive Maximum, 65 535 for the node.)
  cat >"$WORK/mosquitto.conf" <<CONF
listener $BROKER_PORT 127.0.0.1
allow_anonymous true
max_inflight_messages 0
max_queued_messages 0
CONF
  "$MOSQUITTO" -c "$WORK/mosquitto.conf" >/dev/null 2>&1 &
  BROKER_PID=$!
  PIDS+=("$BROKER_PID")
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null && return; sleep 0.1; done
  echo "mosquitto did not start" >&2; exit 1
}

stop_broker() { kill "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true; }

# Starts a fresh strata-node subscribed to the broker at QoS $1 over MQTT $2 and waits until
# it is connected: sets HTTP (its HTTP port) and NODE (its pid).
start_node() {
  HTTP=$(free_port)
  rm -rf "$WORK/node"; mkdir -p "$WORK/node"
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
  qos: $1
  protocol: "$2"
  client_id: strata-bench
CONF
  RUST_LOG=warn "$BIN/strata-node" --config "$WORK/node/config.yaml" >/dev/null 2>&1 &
  NODE=$!
  PIDS+=("$NODE")
  until [ "$(node_metric strata_mqtt_connected)" = "1" ]; do sleep 0.1; done
}

# The value of one of the node's /metrics lines.
node_metric() { curl -s "http://127.0.0.1:$HTTP/metrics" | awk -v m="$1" '$1==m {print $2}'; }
