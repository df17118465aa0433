# Bulkhead's entry points. `make test` is what CI runs (.ci/run); `make sandbox` runs the product locally.
CARGO ?= cargo

.PHONY: help test lint unit crds control-plane sandbox

help:
	@echo "make test           fmt check, clippy -D warnings, every unit and integration test (what CI runs)"
	@echo "make sandbox        local control plane + operator + examples/, status table, Ctrl-C to stop"
	@echo "make crds           regenerate the CRD YAML in crds/generated and charts/bulkhead/crds"
	@echo "make control-plane  provide etcd, kube-apiserver, kube-controller-manager (cached after the first build)"

# Provides the control-plane binaries up front, so a cold build (several minutes) is not charged to a test.
control-plane:
	@bash e2e/scripts/control-plane-assets.sh >/dev/null

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked --lib --bins

test: control-plane lint
	$(CARGO) test --workspace --locked --all-targets

crds:
	$(CARGO) run -q -p bulkhead-crds --bin crdgen

sandbox: control-plane
	$(CARGO) build -q -p bulkhead-operator -p bulkhead-e2e --bins
	./target/debug/sandbox
