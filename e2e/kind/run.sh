#!/usr/bin/env bash
# The isolation suite on kind: the same binary as on the local cluster; only the cluster's creation and the
# image loading differ. See e2e/kind/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=/dev/null
source e2e/cluster/versions.env

CLUSTER="${KIND_CLUSTER:-bulkhead}"
CNI="${CNI:-kindnet}"
for tool in docker kind kubectl helm cargo; do
  command -v "$tool" >/dev/null || { echo "kind-test: $tool is needed on PATH" >&2; exit 2; }
done
case "$(kind version)" in
  *v0.1*|*v0.2[0-3].*) echo "kind-test: kind >= 0.24 is needed (kindnet enforces NetworkPolicy from 0.24)" >&2; exit 2;;
esac

make images
cargo build -q --release --locked -p bulkhead-e2e --bin isolation-suite

work="$(mktemp -d)"
listener_pid=""
cleanup() {
  [ -n "$listener_pid" ] && kill "$listener_pid" 2>/dev/null || true
  [ "${KEEP_CLUSTER:-0}" = 1 ] || kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

config=e2e/kind/kind-config.yaml
if [ "$CNI" = calico ]; then
  config="$work/kind-config.yaml"
  sed -e 's/disableDefaultCNI: false/disableDefaultCNI: true\n  podSubnet: 192.168.0.0\/16/' e2e/kind/kind-config.yaml >"$config"
fi
kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --config "$config" --kubeconfig "$work/kubeconfig" --wait 120s
export KUBECONFIG="$work/kubeconfig"
if [ "$CNI" = calico ]; then
  kubectl apply -f "https://raw.githubusercontent.com/projectcalico/calico/v${CALICO_VERSION}/manifests/calico.yaml"
  kubectl -n kube-system rollout status daemonset/calico-node --timeout=300s
fi
for archive in target/images/operator.tar target/images/gateway.tar target/images/stack.tar; do
  kind load image-archive "$archive" --name "$CLUSTER"
done

# PostgreSQL from its official image, in a namespace Bulkhead does not manage.
password="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
kubectl create namespace bulkhead-postgres
kubectl -n bulkhead-postgres create secret generic postgres --from-literal=password="$password"
kubectl -n bulkhead-postgres apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: postgres}
spec:
  selector: {matchLabels: {app: postgres}}
  template:
    metadata: {labels: {app: postgres}}
    spec:
      containers:
        - name: postgres
          image: ${POSTGRES_IMAGE}
          env:
            - {name: POSTGRES_PASSWORD, valueFrom: {secretKeyRef: {name: postgres, key: password}}}
            - {name: POSTGRES_DB, value: bulkhead}
          ports: [{containerPort: 5432}]
          readinessProbe: {exec: {command: [pg_isready, -U, postgres]}, periodSeconds: 2}
YAML
kubectl -n bulkhead-postgres rollout status deployment/postgres --timeout=300s
pg_ip="$(kubectl -n bulkhead-postgres get pod -l app=postgres -o jsonpath='{.items[0].status.podIP}')"
printf 'postgres://postgres:%s@%s:5432/bulkhead?sslmode=disable' "$password" "$pg_ip" >"$work/admin-dsn"

# Something outside the cluster: a listener on the host's end of kind's Docker network.
gateway_ip="$(docker network inspect kind -f '{{range .IPAM.Config}}{{if .Gateway}}{{.Gateway}} {{end}}{{end}}' | tr ' ' '\n' | grep -m1 '\.')"
python3 -m http.server 18099 --bind "$gateway_ip" >/dev/null 2>&1 &
listener_pid=$!

./target/release/isolation-suite \
  --kubeconfig "$work/kubeconfig" \
  --helm "$(command -v helm)" \
  --pull-policy IfNotPresent \
  --postgres-host "$pg_ip" --postgres-port 5432 \
  --postgres-admin-dsn-file "$work/admin-dsn" \
  --outside "$gateway_ip:18099" \
  --previous-chart e2e/fixtures/charts/bulkhead-0.1.0 \
  "$@"
