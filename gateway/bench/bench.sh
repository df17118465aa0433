#!/usr/bin/env bash
# Throughput and latency of bulkhead-gateway against HAProxy's JWT verification and a plain nginx proxy, on
# loopback, with wrk. Every server is started here and stopped by pid at the end; every run is bounded
# (DURATION seconds). Needs: haproxy, nginx (nginx-light), wrk (`apt-get install haproxy nginx-light wrk`)
# and a release build (`cargo build --release -p bulkhead-gateway`).
#
#   gateway/bench/bench.sh [--write gateway/BENCHMARKS.md]
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${BULKHEAD_GATEWAY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/bulkhead-gateway}"
KEYS="$ROOT/gateway/tests/keys"
DURATION="${DURATION:-10}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
WRITE=""
[[ "${1:-}" == "--write" ]] && WRITE="${2:?--write needs a file}"

for tool in haproxy nginx wrk; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install haproxy nginx-light wrk" >&2; exit 1; }
done
[[ -x "$BIN" ]] || { echo "missing $BIN: cargo build --release -p bulkhead-gateway" >&2; exit 1; }

WORK="$(mktemp -d /tmp/bulkhead-bench.XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

BACKEND=127.0.0.1:18081
ISS=https://clerk.bench.example

# nginx: the backend every proxy forwards to, and the plain (no JWT) proxy baseline.
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backend { server $BACKEND; keepalive 64; }
  server { listen $BACKEND; location / { return 200 "ok\n"; } }
  server {
    listen 127.0.0.1:18446;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
nginx -c "$WORK/nginx.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)

# HAProxy: RS256 verified on every request with a literal algorithm, exp checked, org → backend map.
echo "org_bench be_tenant" > "$WORK/tenants.map"
cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 2
defaults
  mode http
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:18445
  http-request del-header x-org-id
  http-request set-var(txn.tok) http_auth_bearer
  http-request deny deny_status 401 unless { var(txn.tok) -m found }
  http-request set-var(txn.alg) var(txn.tok),jwt_header_query('\$.alg')
  http-request deny deny_status 401 unless { var(txn.alg) -m str RS256 }
  http-request deny deny_status 401 unless { var(txn.tok),jwt_verify("RS256","$KEYS/rsa-a.pub.pem") -m int 1 }
  http-request set-var(txn.now) date()
  http-request set-var(txn.exp) var(txn.tok),jwt_payload_query('\$.exp','int')
  http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  http-request set-var(txn.org) var(txn.tok),jwt_payload_query('\$.o.id')
  http-request set-var(txn.be) var(txn.org),map_str($WORK/tenants.map)
  http-request deny deny_status 403 unless { var(txn.be) -m found }
  http-request set-header x-org-id %[var(txn.org)]
  use_backend %[var(txn.be)]
backend be_tenant
  http-reuse always
  server s1 $BACKEND
CONF
haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 &
PIDS+=($!)

# bulkhead-gateway, twice: with the verified-token cache (default) and without it (every request verified).
echo "routes: [{org: org_bench, upstream: '$BACKEND', tenant: bench}]" > "$WORK/routes.yaml"
start_gateway() { # name port admin cache_entries
  cat > "$WORK/$1.yaml" <<CONF
listen: 127.0.0.1:$2
admin: 127.0.0.1:$3
issuers:
  - issuer: $ISS
    algorithms: [RS256, ES256]
    pem_keys:
      - {kid: rsa, algorithm: RS256, path: $KEYS/rsa-a.pub.pem}
      - {kid: ec, algorithm: ES256, path: $KEYS/ec-a.pub.pem}
cache: {max_entries: $4}
routes: {source: file, file: $WORK/routes.yaml}
CONF
  "$BIN" run --config "$WORK/$1.yaml" --log warn >/dev/null 2>"$WORK/$1.log" &
  PIDS+=($!)
}
start_gateway cached 18443 18543 10000
start_gateway uncached 18444 18544 0

wait_for() { # url
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "not ready: $1" >&2
  exit 1
}
wait_for http://$BACKEND/
wait_for http://127.0.0.1:18543/readyz
wait_for http://127.0.0.1:18544/readyz

RS="$("$BIN" token --key "$KEYS/rsa-a.pem" --alg RS256 --kid rsa --iss "$ISS" --org org_bench --exp-in 3000)"
ES="$("$BIN" token --key "$KEYS/ec-a.pem" --alg ES256 --kid ec --iss "$ISS" --org org_bench --exp-in 3000)"
# Sanity: each proxy answers 200 with the token and refuses without it.
for port in 18443 18444 18445; do
  [[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $RS" http://127.0.0.1:$port/)" == 200 ]] \
    || { echo "port $port does not accept the token" >&2; exit 1; }
  [[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/)" == 401 ]] \
    || { echo "port $port does not refuse a missing token" >&2; exit 1; }
done

ROWS=()
run() { # label url token
  local args=(-t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency)
  [[ -n "$3" ]] && args+=(-H "Authorization: Bearer $3")
  local out
  out="$(wrk "${args[@]}" "$2")"
  local rps p50 p99 errors
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  errors="$(awk '/Non-2xx/ {print $5}' <<<"$out")"
  ROWS+=("| $1 | ${rps} | ${p50} | ${p99} | ${errors:-0} |")
  echo "$1: ${rps} req/s, p50 ${p50}, p99 ${p99}, non-2xx ${errors:-0}" >&2
}
run "nginx plain proxy (no JWT)" http://127.0.0.1:18446/ ""
run "HAProxy 2.6 jwt_verify RS256 (every request)" http://127.0.0.1:18445/ "$RS"
run "bulkhead-gateway RS256, token cache" http://127.0.0.1:18443/ "$RS"
run "bulkhead-gateway RS256, no cache (every request verified)" http://127.0.0.1:18444/ "$RS"
run "bulkhead-gateway ES256, no cache (every request verified)" http://127.0.0.1:18444/ "$ES"
run "bulkhead-gateway denial (no token, 401)" http://127.0.0.1:18443/ ""

REPORT="$(cat <<MD
## Gateway benchmark ($(date -u +%Y-%m-%d), \`gateway/bench/bench.sh\`)

wrk ${THREADS} threads, ${CONNECTIONS} connections, ${DURATION} s per row, HTTP/1.1 keep-alive, all on loopback on
one $(nproc)-core machine shared by wrk, the proxy under test and the nginx backend (\`return 200\`), so the numbers
compare the proxies with each other, not with production. HAProxy $(haproxy -v | awk 'NR==1 {print $3}'),
nginx $(nginx -v 2>&1 | awk -F/ '{print $2}'), bulkhead-gateway release build with audit lines to /dev/null.
The denial row counts 401s as its non-2xx answers.

| setup | req/s | p50 | p99 | non-2xx |
|---|---|---|---|---|
$(printf '%s\n' "${ROWS[@]}")
MD
)"
echo "$REPORT"
if [[ -n "$WRITE" ]]; then
  printf '%s\n' "$REPORT" > "$WRITE"
fi
