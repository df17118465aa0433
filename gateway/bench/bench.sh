#!/usr/bin/env bash
# The gateway benchmark, in one run, printing one table:
#   nginx as a plain reverse proxy (no auth: context), HAProxy 2.6 verifying RS256/ES256 and routing by the
#   claim (the hardened config of anchors-gateway.md §1.4), and bulkhead-gateway; each with (a) a few hot tokens
#   and (b) a distinct token on every request (a wrk Lua script walking a file of pre-minted tokens). One more
#   reference row: the gateway's HTTP stack alone (hyper server + hyper-util pooled client on one current-thread
#   runtime, no auth: gateway/examples/plain_proxy.rs), which shows what hyper costs against nginx and what the
#   gateway's own work costs on top of hyper.
# Last, gateway/bench/ws.sh adds a second table: WebSocket echo messages/s and round-trip p50/p99 through the
# gateway beside the same echo server reached directly.
# Layout on the 2-core machine: every proxy under test is pinned to CPU 0; wrk (1 thread, 64 connections) and the
# upstream (nginx returning a small body) share CPU 1. Every server is started here, on loopback, and stopped by
# pid at the end.
#
#   gateway/bench/bench.sh [--write docs/benchmarks.md]      (make bench-gateway)
# Needs haproxy, nginx (nginx-light), wrk, taskset, curl, and a release build of bulkhead-gateway.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${BULKHEAD_GATEWAY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/bulkhead-gateway}"
PLAIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/plain_proxy"
KEYS="$ROOT/gateway/tests/keys"
DURATION="${DURATION:-10}"       # seconds per row and round
ROUNDS="${ROUNDS:-3}"            # runs of every row; the table shows the medians
CONNECTIONS="${CONNECTIONS:-64}"
DISTINCT="${DISTINCT:-200000}"   # pre-minted tokens per algorithm for the distinct rows
WRITE=""
[[ "${1:-}" == "--write" ]] && WRITE="${2:?--write needs a file}"

for tool in haproxy nginx wrk taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install haproxy nginx-light wrk util-linux curl" >&2; exit 1; }
done
[[ -x "$BIN" ]] || { echo "missing $BIN: cargo build --release -p bulkhead-gateway" >&2; exit 1; }
[[ -x "$PLAIN" ]] || { echo "missing $PLAIN: cargo build --release -p bulkhead-gateway --example plain_proxy" >&2; exit 1; }
[[ "$(nproc)" -ge 2 ]] || { echo "needs 2 CPUs (one for the proxy, one for wrk and the upstream)" >&2; exit 1; }

WORK="$(mktemp -d /tmp/bulkhead-gateway-bench.XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PROXY_CPU=0
LOAD_CPU=1
UPSTREAM=127.0.0.1:18081
NGINX=127.0.0.1:18446
HYPER=127.0.0.1:18447
HAPROXY=127.0.0.1:18445
GATEWAY=127.0.0.1:18443
GATEWAY_ADMIN=127.0.0.1:18543
ISS=https://clerk.bench.example
ORG=org_2benchTenantA

# The upstream (CPU 1) and the plain nginx proxy (CPU 0).
cat > "$WORK/upstream.conf" <<CONF
worker_processes 1;
pid $WORK/upstream.pid;
error_log $WORK/upstream-error.log;
events { worker_connections 4096; }
http { access_log off; server { listen $UPSTREAM; location / { return 200 "hello from tenant a\n"; } } }
CONF
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream tenant_a { server $UPSTREAM; keepalive 64; }
  server {
    listen $NGINX;
    location / { proxy_pass http://tenant_a; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
taskset -c $LOAD_CPU nginx -c "$WORK/upstream.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)
taskset -c $PROXY_CPU nginx -c "$WORK/nginx.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)
taskset -c $PROXY_CPU "$PLAIN" $HYPER $UPSTREAM &
PIDS+=($!)

# HAProxy 2.6, one thread: the hardened config of anchors-gateway.md §1.4 (signature by a literal algorithm and
# key chosen by kid, iss, exp, nbf, Clerk v2/v1 org claim, sts, org → backend map, spoofable headers removed).
echo "$ORG be_tenant_a" > "$WORK/tenants.map"
cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
defaults
  mode http
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend gw
  bind $HAPROXY
  http-request del-header x-org-id
  http-request del-header x-tenant-id
  http-request del-header x_org_id
  http-request deny deny_status 400 content-type text/plain string "gate=token reason=multiple_authorization" if { req.hdr_cnt(authorization) gt 1 }
  http-request set-var(txn.tok) http_auth_bearer
  http-request deny deny_status 401 content-type text/plain string "gate=token reason=missing" unless { var(txn.tok) -m found }
  http-request deny deny_status 401 content-type text/plain string "gate=token reason=too_large" if { var(txn.tok),length gt 8192 }
  http-request set-var(txn.alg) var(txn.tok),jwt_header_query('\$.alg')
  http-request set-var(txn.kid) var(txn.tok),jwt_header_query('\$.kid')
  http-request set-var(txn.sig) var(txn.tok),jwt_verify("RS256","$KEYS/rsa-a.pub.pem") if { var(txn.alg) -m str RS256 } { var(txn.kid) -m str rsa }
  http-request set-var(txn.sig) var(txn.tok),jwt_verify("ES256","$KEYS/ec-a.pub.pem") if { var(txn.alg) -m str ES256 } { var(txn.kid) -m str ec }
  http-request deny deny_status 401 content-type text/plain string "gate=signature reason=bad_sig_alg_or_kid" unless { var(txn.sig) -m int 1 }
  http-request set-var(txn.now) date
  http-request set-var(txn.iss) var(txn.tok),jwt_payload_query('\$.iss')
  http-request deny deny_status 401 content-type text/plain string "gate=claims reason=iss" unless { var(txn.iss) -m str $ISS }
  http-request set-var(txn.exp) var(txn.tok),jwt_payload_query('\$.exp','int')
  http-request deny deny_status 401 content-type text/plain string "gate=claims reason=exp_missing" unless { var(txn.exp) -m found }
  http-request deny deny_status 401 content-type text/plain string "gate=claims reason=expired" if { var(txn.exp),add(30),sub(txn.now) -m int lt 0 }
  http-request set-var(txn.nbf) var(txn.tok),jwt_payload_query('\$.nbf','int')
  http-request deny deny_status 401 content-type text/plain string "gate=claims reason=nbf" if { var(txn.nbf) -m found } { var(txn.now),add(30),sub(txn.nbf) -m int lt 0 }
  http-request set-var(txn.ver) var(txn.tok),jwt_payload_query('\$.v','int')
  http-request set-var(txn.org) var(txn.tok),jwt_payload_query('\$.o.id') if { var(txn.ver) -m int 2 }
  http-request set-var(txn.org) var(txn.tok),jwt_payload_query('\$.org_id') unless { var(txn.ver) -m found }
  http-request set-var(txn.sts) var(txn.tok),jwt_payload_query('\$.sts')
  http-request deny deny_status 403 content-type text/plain string "gate=tenant reason=session_pending" if { var(txn.sts) -m str pending }
  http-request set-var(txn.be) var(txn.org),map_str($WORK/tenants.map)
  http-request deny deny_status 403 content-type text/plain string "gate=tenant reason=unknown_or_missing_org" unless { var(txn.be) -m found }
  http-request set-header x-org-id %[var(txn.org)]
  use_backend %[var(txn.be)]
  default_backend be_none
backend be_none
  http-request deny deny_status 403
backend be_tenant_a
  http-reuse always
  server s1 $UPSTREAM
CONF
taskset -c $PROXY_CPU haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)

# bulkhead-gateway (it sees one CPU, so it runs tokio's current-thread runtime), audit lines chained (SHA-256 of each line) and written (to
# /dev/null) as in production.
echo "routes: [{org: $ORG, upstream: '$UPSTREAM', tenant: tenant-a}]" > "$WORK/routes.yaml"
cat > "$WORK/gateway.yaml" <<CONF
listen: $GATEWAY
admin: $GATEWAY_ADMIN
issuers:
  - issuer: $ISS
    algorithms: [RS256, ES256]
    pem_keys:
      - {kid: rsa, algorithm: RS256, path: $KEYS/rsa-a.pub.pem}
      - {kid: ec, algorithm: ES256, path: $KEYS/ec-a.pub.pem}
routes: {source: file, file: $WORK/routes.yaml}
CONF
taskset -c $PROXY_CPU "$BIN" run --config "$WORK/gateway.yaml" --log warn >/dev/null 2>"$WORK/gateway.log" &
GATEWAY_PID=$!
PIDS+=($GATEWAY_PID)

ready() { # url
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "not ready: $1" >&2
  exit 1
}
ready "http://$UPSTREAM/"
ready "http://$NGINX/"
ready "http://$HYPER/"
ready "http://$HAPROXY/"
ready "http://$GATEWAY_ADMIN/readyz"

# Tokens: a few hot ones per algorithm, and DISTINCT different ones (each with its own jti).
mint() { # alg kid key count out
  "$BIN" token --alg "$1" --kid "$2" --key "$KEYS/$3" --iss "$ISS" --org "$ORG" --exp-in 3000 --count "$4" > "$5"
}
echo "minting tokens (${DISTINCT} distinct per algorithm; RS256 signing takes a while)..." >&2
mint RS256 rsa rsa-a.pem 4 "$WORK/rs-hot.txt"
mint ES256 ec ec-a.pem 4 "$WORK/es-hot.txt"
mint RS256 rsa rsa-a.pem "$DISTINCT" "$WORK/rs-distinct.txt"
mint ES256 ec ec-a.pem "$DISTINCT" "$WORK/es-distinct.txt"

# Sanity: every proxy under test forwards a token and refuses a missing one.
TOKEN="$(head -1 "$WORK/rs-hot.txt")"
for addr in $HAPROXY $GATEWAY; do
  [[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://$addr/")" == 200 ]] \
    || { echo "$addr does not accept the token" >&2; exit 1; }
  [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/")" == 401 ]] \
    || { echo "$addr does not refuse a missing token" >&2; exit 1; }
done

# wrk walks a token file: one Authorization header per request, in file order, wrapping around at the end.
cat > "$WORK/tokens.lua" <<'LUA'
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end
done = function(summary, latency, requests)
  io.write(string.format("REQUESTS %d\n", summary.requests))
end
LUA

declare -A RPS P50 P99 RPS_ALL P50_ALL P99_ALL
ms() { # wrk latency (us/ms/s) → milliseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
ROWS=()
WARN=""
run() { # key label addr token-file-or-empty
  local out
  if [[ -n "$4" ]]; then
    out="$(TOKENS="$4" taskset -c $LOAD_CPU wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/tokens.lua" "http://$3/")"
  else
    out="$(taskset -c $LOAD_CPU wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://$3/")"
  fi
  local rps p50 p99 bad requests
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  bad="$(awk '/Non-2xx/ {print $5}' <<<"$out")"
  requests="$(awk '/^REQUESTS/ {print $2}' <<<"$out")"
  RPS_ALL[$1]+=" $rps"; P50_ALL[$1]+=" $(ms "$p50")"; P99_ALL[$1]+=" $(ms "$p99")"
  if [[ -n "${bad:-}" ]]; then WARN+="$2: ${bad} non-2xx answers. "; fi
  if [[ "$4" == *distinct* && -n "$requests" && "$requests" -gt "$DISTINCT" ]]; then
    WARN+="$2: ${requests} requests for ${DISTINCT} tokens, so some repeated. "
  fi
  echo "$2: $rps req/s, p50 $p50, p99 $p99, non-2xx ${bad:-0}" >&2
}
# Every row runs ROUNDS times, the rows taking turns, and the table shows each row's medians: this VM's throughput
# drifts by 10-20% over a minute, and rows that take turns share the drift instead of one row catching a slow
# spell alone.
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  run nginx "nginx plain proxy, no auth" $NGINX ""
  run hyper "hyper plain proxy, no auth (the gateway's HTTP stack)" $HYPER ""
  for alg in rs es; do
    ALG=$([[ $alg == rs ]] && echo RS256 || echo ES256)
    run "haproxy-$alg-hot" "HAProxy $ALG, hot tokens" $HAPROXY "$WORK/$alg-hot.txt"
    run "gateway-$alg-hot" "bulkhead-gateway $ALG, hot tokens" $GATEWAY "$WORK/$alg-hot.txt"
    run "haproxy-$alg-distinct" "HAProxy $ALG, distinct tokens" $HAPROXY "$WORK/$alg-distinct.txt"
    run "gateway-$alg-distinct" "bulkhead-gateway $ALG, distinct tokens" $GATEWAY "$WORK/$alg-distinct.txt"
  done
done
for key in "${!RPS_ALL[@]}"; do
  RPS[$key]="$(median "${RPS_ALL[$key]}")"; P50[$key]="$(median "${P50_ALL[$key]}")"; P99[$key]="$(median "${P99_ALL[$key]}")"
done
RSS_KB="$(awk '/VmHWM/ {print $2}' "/proc/$GATEWAY_PID/status")"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
row() { # key label target-note
  local k=$1
  ROWS+=("| $2 | $(printf '%.0f' "${RPS[$k]}") | $(ms "${P50[$k]}") | $(ms "${P99[$k]}") | $3 |")
}
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b ? "met" : "**missed**") }'; }
row nginx "nginx plain proxy, no auth (context)" "-"
row hyper "hyper plain proxy, no auth (reference: the gateway's HTTP stack alone)" "$(ratio "${RPS[hyper]}" "${RPS[nginx]}")× nginx"
for alg in rs es; do
  ALG=$([[ $alg == rs ]] && echo RS256 || echo ES256)
  hot=$(ratio "${RPS[gateway-$alg-hot]}" "${RPS[haproxy-$alg-hot]}")
  floor=$(ratio "${RPS[gateway-$alg-hot]}" "${RPS[nginx]}")
  distinct=$(ratio "${RPS[gateway-$alg-distinct]}" "${RPS[haproxy-$alg-distinct]}")
  p99hot=$(awk -v g="$(ms "${P99[gateway-$alg-hot]}")" -v h="$(ms "${P99[haproxy-$alg-hot]}")" 'BEGIN { print (g <= h ? "met" : "**missed**") }')
  p99distinct=$(awk -v g="$(ms "${P99[gateway-$alg-distinct]}")" -v h="$(ms "${P99[haproxy-$alg-distinct]}")" 'BEGIN { print (g <= h ? "met" : "**missed**") }')
  row "haproxy-$alg-hot" "HAProxy 2.6 $ALG, hot tokens" "-"
  stack=$(ratio "${RPS[gateway-$alg-hot]}" "${RPS[hyper]}")
  row "gateway-$alg-hot" "**bulkhead-gateway $ALG, hot tokens**" "${stack}× hyper alone (≥ 0.8: $(verdict "$stack" 0.8)); ${hot}× HAProxy (≥ 1.5: $(verdict "$hot" 1.5)); p99 ≤ HAProxy: $p99hot; ${floor}× nginx"
  row "haproxy-$alg-distinct" "HAProxy 2.6 $ALG, distinct tokens" "-"
  row "gateway-$alg-distinct" "**bulkhead-gateway $ALG, distinct tokens**" "${distinct}× HAProxy (≥ 1.0: $(verdict "$distinct" 1.0)); p99 ≤ HAProxy: $p99distinct"
done

REPORT="$(cat <<MD
### Gateway throughput and latency ($(date -u +%Y-%m-%d), \`make bench-gateway\`)

Loopback on one $(nproc)-CPU machine: each proxy pinned to CPU ${PROXY_CPU} (HAProxy \`nbthread 1\`, nginx one
worker, the gateway sees one CPU and so runs one current-thread runtime); wrk (1 thread, ${CONNECTIONS} connections, ${DURATION} s per row, HTTP/1.1
keep-alive; every row run ${ROUNDS} times, the rows taking turns, medians shown) and the upstream (nginx \`return 200\`, 20 bytes) share CPU ${LOAD_CPU}. Hot: 4 tokens in turn; distinct:
${DISTINCT} pre-minted tokens walked in order by a wrk Lua script, one per request. HAProxy $(haproxy -v | awk 'NR==1 {print $3}')
with the hardened config of anchors-gateway.md §1.4; nginx $(nginx -v 2>&1 | awk -F/ '{print $2}'); bulkhead-gateway
release build, audit lines chained and written (to /dev/null), default config (verified-token cache of 10000).
Gateway peak RSS over the whole run: $((RSS_KB / 1024)) MiB (target < 50 MiB: $( [[ $RSS_KB -lt 51200 ]] && echo met || echo '**missed**')).
${WARN:+Warnings: $WARN}

| setup | req/s | p50 ms | p99 ms | against the targets |
|---|---:|---:|---:|---|
$(printf '%s\n' "${ROWS[@]}")
MD
)"

# WebSocket echo rows (messages/s, round-trip p50/p99): gateway/bench/ws.sh, with its own gateway and echo
# server, as a second table under the first.
WS_REPORT="$("$HERE/ws.sh")" || WS_REPORT="WebSocket echo rows: gateway/bench/ws.sh failed (its output is above)."
REPORT+=$'\n\n'"$WS_REPORT"

echo
echo "$REPORT"
if [[ -n "$WRITE" ]]; then
  python3 - "$WRITE" "$REPORT" <<'PY'
import sys
path, report = sys.argv[1], sys.argv[2]
start, end = "<!-- gateway-bench:start -->", "<!-- gateway-bench:end -->"
text = open(path).read() if __import__("os").path.exists(path) else ""
block = f"{start}\n{report}\n{end}"
if start in text and end in text:
    text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n## Gateway\n\n" + block + "\n"
open(path, "w").write(text)
PY
  echo "wrote $WRITE" >&2
fi
