#!/usr/bin/env bash
# WebSocket echo through the gateway beside the same echo server reached directly: messages per second and
# round-trip p50/p99, each connection sending one message and waiting for its echo before the next
# (gateway/examples/ws_bench.rs is both the echo server and the load generator).
# Layout on the 2-core machine, as in bench.sh: the gateway pinned to CPU 0; the load generator and the echo
# server share CPU 1. Every server is started here, on loopback, and stopped by pid at the end.
#
#   gateway/bench/ws.sh            prints a markdown table (bench.sh runs it last and adds the table to its report)
# Needs taskset and release builds of bulkhead-gateway and the ws_bench example.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${BULKHEAD_GATEWAY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/bulkhead-gateway}"
WS_BENCH="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/ws_bench"
KEYS="$ROOT/gateway/tests/keys"
DURATION="${DURATION:-10}"       # seconds per row
CONNECTIONS="${CONNECTIONS:-64}"
SIZE="${WS_MESSAGE_BYTES:-64}"   # bytes per message

for tool in taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install util-linux curl" >&2; exit 1; }
done
[[ -x "$BIN" ]] || { echo "missing $BIN: cargo build --release -p bulkhead-gateway" >&2; exit 1; }
[[ -x "$WS_BENCH" ]] || { echo "missing $WS_BENCH: cargo build --release -p bulkhead-gateway --example ws_bench" >&2; exit 1; }
[[ "$(nproc)" -ge 2 ]] || { echo "needs 2 CPUs (one for the gateway, one for the load and the echo server)" >&2; exit 1; }

WORK="$(mktemp -d /tmp/bulkhead-gateway-ws-bench.XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PROXY_CPU=0
LOAD_CPU=1
ECHO=127.0.0.1:18082
GATEWAY=127.0.0.1:18444
GATEWAY_ADMIN=127.0.0.1:18544
ISS=https://clerk.bench.example
ORG=org_2benchTenantA

taskset -c $LOAD_CPU "$WS_BENCH" echo $ECHO &
PIDS+=($!)

echo "routes: [{org: $ORG, upstream: '$ECHO', tenant: tenant-a}]" > "$WORK/routes.yaml"
cat > "$WORK/gateway.yaml" <<CONF
listen: $GATEWAY
admin: $GATEWAY_ADMIN
issuers:
  - issuer: $ISS
    algorithms: [ES256]
    pem_keys:
      - {kid: ec, algorithm: ES256, path: $KEYS/ec-a.pub.pem}
routes: {source: file, file: $WORK/routes.yaml}
proxy: {max_tunnels_per_org: $((CONNECTIONS * 2))}
CONF
taskset -c $PROXY_CPU "$BIN" run --config "$WORK/gateway.yaml" --log warn >"$WORK/audit.log" 2>"$WORK/gateway.log" &
PIDS+=($!)

for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://$GATEWAY_ADMIN/readyz" 2>/dev/null && (exec 3<>/dev/tcp/${ECHO%:*}/${ECHO#*:}) 2>/dev/null && break
  sleep 0.1
done

TOKEN="$("$BIN" token --alg ES256 --kid ec --key "$KEYS/ec-a.pem" --iss "$ISS" --org "$ORG" --exp-in 3000)"

declare -A MPS P50 P99 ERR
load() { # key url [token]
  local out
  out="$(taskset -c $LOAD_CPU "$WS_BENCH" load "$2" ${3:+--token "$3"} --connections "$CONNECTIONS" --seconds "$DURATION" --size "$SIZE")"
  MPS[$1]="$(awk '{print $2}' <<<"$out")"
  P50[$1]="$(awk '{print $4}' <<<"$out")"
  P99[$1]="$(awk '{print $6}' <<<"$out")"
  ERR[$1]="$(awk '{print $8}' <<<"$out")"
  echo "$1: ${MPS[$1]} messages/s, p50 ${P50[$1]} ms, p99 ${P99[$1]} ms, errors ${ERR[$1]}" >&2
}
load direct "ws://$ECHO/ws"
load gateway "ws://$GATEWAY/ws" "$TOKEN"

# Every tunnel was audited when it opened and when it closed.
OPENED="$(grep -c '"event":"tunnel_open"' "$WORK/audit.log" || true)"
CLOSED="$(sleep 1; grep -c '"event":"tunnel_close"' "$WORK/audit.log" || true)"
RATIO="$(awk -v a="${MPS[gateway]}" -v b="${MPS[direct]}" 'BEGIN { printf "%.2f", a / b }')"
WARN=""
[[ "${ERR[direct]}${ERR[gateway]}" == "00" ]] || WARN="errors: direct ${ERR[direct]}, gateway ${ERR[gateway]}. "

cat <<MD
#### WebSocket echo

${CONNECTIONS} connections, each sending a ${SIZE}-byte text message and waiting for its echo before the next, ${DURATION} s
per row (\`gateway/examples/ws_bench.rs\`: load generator and echo server, sharing CPU ${LOAD_CPU}; the gateway on CPU
${PROXY_CPU}, one ES256 token per connection checked at the handshake, then bytes copied). Tunnels audited: ${OPENED}
opened, ${CLOSED} closed.
${WARN:+Warnings: $WARN}

| setup | messages/s | p50 ms | p99 ms | against direct |
|---|---:|---:|---:|---|
| WebSocket echo server reached directly | ${MPS[direct]} | ${P50[direct]} | ${P99[direct]} | - |
| **bulkhead-gateway WebSocket tunnel** to the same echo server | ${MPS[gateway]} | ${P50[gateway]} | ${P99[gateway]} | ${RATIO}× direct |
MD
