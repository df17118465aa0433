# Bulkhead's entry points. `make test` is what CI runs (.ci/run); `make sandbox` runs the product locally.
CARGO ?= cargo

.PHONY: help test lint unit generate crds control-plane postgres sandbox bench bench-postgres bench-gateway

help:
	@echo "make test           fmt check, clippy -D warnings, every unit and integration test (what CI runs)"
	@echo "make sandbox        local control plane + operator + examples/, status table, Ctrl-C to stop"
	@echo "make generate       regenerate the CRD YAML (crds/generated, chart) and the chart's operator RBAC"
	@echo "make bench          operator benchmark against the local control plane (N=200 tenants; N=1000 for the big run)"
	@echo "make bench-postgres provisioning benchmark: 500 tenants vs the same SQL in one psql session"
	@echo "make bench-gateway  gateway vs HAProxy 2.6 and plain nginx, hot and distinct tokens (wrk, pinned CPUs)"
	@echo "make control-plane  provide etcd, kube-apiserver, kube-controller-manager (cached after the first build)"

# Provides the control-plane binaries up front, so a cold build (several minutes) is not charged to a test.
control-plane:
	@bash e2e/scripts/control-plane-assets.sh >/dev/null

# PostgreSQL 15 for the Postgres isolation tests (Debian's package; preinstalled on the project's machines).
postgres:
	@if [ ! -x "$${BULKHEAD_PG_BIN:-/usr/lib/postgresql/15/bin}/postgres" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-client-15 >/dev/null; \
	  else \
	    echo "PostgreSQL 15 is needed: sudo apt-get install postgresql-15 (or set BULKHEAD_PG_BIN)"; exit 1; \
	  fi; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked --lib --bins

test: control-plane postgres lint
	$(CARGO) test --workspace --locked --all-targets

# Regenerates every checked-in generated file: the CRDs and the operator's RBAC in the chart.
generate:
	$(CARGO) run -q -p bulkhead-crds --bin crdgen
	$(CARGO) run -q -p bulkhead-operator -- rbac > charts/bulkhead/templates/operator-rbac.yaml

crds: generate

N ?= 200
bench: control-plane
	$(CARGO) build -q --release -p bulkhead-operator -p bulkhead-e2e --bins
	./target/release/bench-operator --tenants $(N) --write BENCHMARKS.md

bench-postgres:
	$(CARGO) build -q --release -p bulkhead-e2e --bin bench-postgres
	./target/release/bench-postgres --tenants 500 --write BENCHMARKS.md

bench-gateway:
	@for tool in haproxy nginx wrk; do command -v $$tool >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q haproxy nginx-light wrk >/dev/null; break; }; done
	$(CARGO) build -q --release -p bulkhead-gateway --bin bulkhead-gateway --example plain_proxy
	gateway/bench/bench.sh --write BENCHMARKS.md

sandbox: control-plane
	$(CARGO) build -q -p bulkhead-operator -p bulkhead-gateway -p bulkhead-e2e --bins
	./target/debug/sandbox
