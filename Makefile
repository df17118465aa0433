# Bulkhead's entry points. `make test` is what CI runs (.ci/run); `make sandbox` runs the product locally.
CARGO ?= cargo

.PHONY: help test lint unit generate crds assets cluster netpol-e2e bench-cluster postgres pg-matrix pg-matrix-cluster sandbox bench bench-postgres bench-gateway images isolation kind-test bench-gateway-cluster bench-grants bench-verify bench-scale bench-routes bench-postgres-scale

help:
	@echo "make test           fmt check, clippy -D warnings, every unit and integration test, and the PostgreSQL"
	@echo "                    tests again on PostgreSQL $(PG_EXTRA_VERSION) with a CREATEROLE admin (what CI runs)"
	@echo "make pg-matrix      the PostgreSQL tests on PostgreSQL 14..18 x superuser/CREATEROLE admin, as a table"
	@echo "make pg-matrix-cluster  the cluster isolation suite on the same ten combinations"
	@echo "make sandbox        local cluster + PostgreSQL + operator and gateway pods + examples/, Ctrl-C to stop"
	@echo "make generate       regenerate the CRD YAML (crds/generated, chart), the chart's RBAC and verify's JSON Schema"
	@echo "make bench          operator benchmark against the local control plane (N=200 tenants; N=1000 for the big run)"
	@echo "make bench-scale    operator, gateway routes and PostgreSQL at 1,000 and 10,000 Tenants (about an hour; BENCHMARKS.md)"
	@echo "make bench-routes   gateway route table at N Tenants (N=1000): load time, RSS, idle CPU, time until routable, request cost vs 10 routes"
	@echo "make bench-postgres-scale  provisioning, resync, sweeps and catalog growth at 1000 schemas and 100 databases"
	@echo "make bench-postgres provisioning benchmark: 500 tenants vs the same SQL in one psql session"
	@echo "make bench-grants   grant repair window (operator, sweep 5 s and 1 s) and catalog-scan cost at 1000 tenants"
	@echo "make bench-verify   bulkhead-operator verify on 1000 namespaces x 5 policies + 200 foreign policies: time, peak RSS"
	@echo "make bench-gateway  gateway vs HAProxy 2.6 and plain nginx, hot and distinct tokens (wrk, pinned CPUs)"
	@echo "make images         OCI image archives of the operator, gateway and test stack in target/images (no Docker)"
	@echo "make assets         provide the local cluster's components (versions in e2e/cluster/versions.env; cached)"
	@echo "make cluster        start the local one-node cluster, print its KUBECONFIG, Ctrl-C to stop and clean up"
	@echo "make netpol-e2e     upstream [sig-network] Netpol e2e tests on the local cluster (records docs/netpol-e2e.md)"
	@echo "make bench-cluster  cluster start-up, pod start and NetworkPolicy latency (records docs/benchmarks.md)"
	@echo "make bench-gateway-cluster  requests through the gateway Service vs the stack Service, on the local cluster"
	@echo "make isolation      the isolation suite on the local cluster: helm install, traffic matrix, drift window"
	@echo "make kind-test      the same isolation suite on a kind cluster (needs docker, kind, kubectl, helm)"

# Provides the local cluster's components up front (Debian packages, and the Go components built once from the
# Go module proxy and cached by version), so a cold build is not charged to a test.
assets:
	@bash e2e/scripts/cluster-assets.sh >/dev/null

cluster: assets
	$(CARGO) build -q -p bulkhead-e2e --bin cluster
	./target/debug/cluster

netpol-e2e: assets
	@bash e2e/scripts/cluster-assets.sh netpol >/dev/null
	$(CARGO) build -q --release -p bulkhead-e2e --bin netpol-e2e
	./target/release/netpol-e2e --write docs/netpol-e2e.md

# The isolation suite binary against the local cluster, its output shown and recorded in docs/isolation-suite.md
# (it is also part of `make test`).
isolation: assets postgres images
	BULKHEAD_SUITE_RECORD=docs/isolation-suite.md $(CARGO) test --locked -p bulkhead-e2e --test isolation_suite -- --nocapture

# The same suite on kind, for users' CI (e2e/kind/README.md).
kind-test:
	e2e/kind/run.sh

bench-gateway-cluster: assets images
	$(CARGO) build -q --release -p bulkhead-e2e --bin bench-gateway-cluster
	./target/release/bench-gateway-cluster --write docs/benchmarks.md

bench-cluster: assets
	$(CARGO) build -q --release -p bulkhead-e2e --bin bench-cluster
	./target/release/bench-cluster --write docs/benchmarks.md

# The PostgreSQL test binaries: the ones named here and every e2e/tests/postgres_*.rs. `make test` runs them once
# more on PostgreSQL $(PG_EXTRA_VERSION) with a non-superuser CREATEROLE CREATEDB admin (as on managed services);
# `make pg-matrix` on every supported major with both kinds of admin.
PG_TESTS := $(sort postgres_isolation database postgres_capacity postgres_harness verify_postgres \
	$(basename $(notdir $(wildcard e2e/tests/postgres_*.rs))))
PG_EXTRA_VERSION := 18

# PostgreSQL for the Postgres tests: Debian's 15 (the default; preinstalled on the project's machines), and the
# pinned npm build of PostgreSQL $(PG_EXTRA_VERSION) for `make test` (fetched and cached by cluster-assets.sh).
postgres:
	@if [ ! -x "$${BULKHEAD_PG_BIN:-/usr/lib/postgresql/15/bin}/postgres" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-client-15 >/dev/null; \
	  else \
	    echo "PostgreSQL 15 is needed: sudo apt-get install postgresql-15 (or set BULKHEAD_PG_BIN)"; exit 1; \
	  fi; \
	fi
	@bash e2e/scripts/cluster-assets.sh postgres $(PG_EXTRA_VERSION) >/dev/null

# Every major 14..18 with each kind of admin; a table of results and times, failing if any combination fails
# (logs in target/pg-matrix). The majors other than 15 are fetched on first use.
pg-matrix: postgres
	CARGO="$(CARGO)" bash e2e/scripts/pg-matrix.sh $(PG_TESTS)

# The cluster isolation suite (helm install, traffic matrix, the operator's database in real pods) on every major
# with each kind of admin.
pg-matrix-cluster: assets postgres images
	CARGO="$(CARGO)" bash e2e/scripts/pg-matrix.sh isolation_suite

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked --lib --bins

# The sandbox test runs the images of `make images` on the local cluster.
test: assets postgres images lint
	$(CARGO) test --workspace --locked --all-targets
	BULKHEAD_PG_VERSION=$(PG_EXTRA_VERSION) BULKHEAD_PG_ADMIN=createrole \
	  $(CARGO) test --locked -p bulkhead-e2e $(addprefix --test ,$(PG_TESTS))

# Regenerates every checked-in generated file: the CRDs, the operator's RBAC in the chart and verify's JSON Schema.
generate:
	$(CARGO) run -q -p bulkhead-crds --bin crdgen
	$(CARGO) run -q -p bulkhead-operator -- rbac > charts/bulkhead/templates/operator-rbac.yaml
	$(CARGO) run -q -p bulkhead-operator -- verify --print-schema > docs/verify.schema.json

crds: generate

N ?= 200
bench: assets
	$(CARGO) build -q --release -p bulkhead-operator -p bulkhead-gateway -p bulkhead-e2e --bins
	./target/release/bench-operator --tenants $(N) --write docs/benchmarks.md

# Bulkhead at the size of the largest MSP platforms, every part at N = 1,000 and 10,000, into BENCHMARKS.md.
bench-scale: assets
	$(CARGO) build -q --release -p bulkhead-operator -p bulkhead-gateway -p bulkhead-e2e --bins
	./target/release/bench-scale --write BENCHMARKS.md

bench-routes: assets
	$(CARGO) build -q --release -p bulkhead-gateway -p bulkhead-e2e --bin bulkhead-gateway --bin bench-routes
	./target/release/bench-routes --tenants $(or $(N),1000) --write docs/benchmarks.md

bench-postgres-scale:
	$(CARGO) build -q --release -p bulkhead-e2e --bin bench-postgres-scale
	./target/release/bench-postgres-scale --schemas 1000 --databases 100 --write docs/benchmarks.md

bench-postgres:
	$(CARGO) build -q --release -p bulkhead-e2e --bin bench-postgres
	./target/release/bench-postgres --tenants 500 --write docs/benchmarks.md

bench-grants: assets
	$(CARGO) build -q --release -p bulkhead-e2e --bin bench-grants
	./target/release/bench-grants --write docs/benchmarks.md

bench-verify:
	$(CARGO) build -q --release -p bulkhead-e2e --bin bench-verify
	./target/release/bench-verify --write docs/benchmarks.md

bench-gateway:
	@for tool in haproxy nginx wrk; do command -v $$tool >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q haproxy nginx-light wrk >/dev/null; break; }; done
	$(CARGO) build -q --release -p bulkhead-gateway --bin bulkhead-gateway --example plain_proxy --example ws_bench
	gateway/bench/bench.sh --write docs/benchmarks.md

# The operator, the gateway and the examples' stacks run as pods on the local cluster, from the images of `make images`.
sandbox: assets images
	$(CARGO) build -q -p bulkhead-e2e --bin sandbox
	./target/debug/sandbox

# The operator, gateway and test stack as OCI image archives in target/images (for `ctr images import`,
# `kind load image-archive` or `docker load`), without Docker or a registry: static binaries (glibc with
# crt-static; no musl toolchain needed) on an empty base, non-root. Paths are remapped so the binaries, and so the
# image digests, do not depend on where the checkout or the Cargo home is.
STATIC_TARGET := x86_64-unknown-linux-gnu
STATIC_RUSTFLAGS := -C target-feature=+crt-static --remap-path-prefix=$(CURDIR)=/bulkhead \
	--remap-path-prefix=$(or $(CARGO_HOME),$(HOME)/.cargo)=/cargo
images:
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build -q --release --locked --target $(STATIC_TARGET) \
	  -p bulkhead-operator -p bulkhead-gateway -p bulkhead-stack --bins
	$(CARGO) run -q --locked -p bulkhead-e2e --bin images -- --out target/images \
	  --binaries target/$(STATIC_TARGET)/release
