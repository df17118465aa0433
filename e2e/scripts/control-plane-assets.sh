#!/usr/bin/env bash
# Provides etcd, kube-apiserver and kube-controller-manager for the local control plane and prints the directory
# that holds them (last line of stdout). Order of preference:
#   1. $KUBEBUILDER_ASSETS, when it already holds all three binaries (users with envtest assets);
#   2. the versioned cache ($BULKHEAD_CACHE_DIR, default ~/.cache/bulkhead) from an earlier build;
#   3. a build from Debian's kubernetes source package (Debian bookworm, as root; ~5 minutes on 2 cores).
# Everything it prints besides the directory goes to stderr.
set -euo pipefail

K8S_DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
K8S_VERSION="1.20.2"
CACHE_ROOT="${BULKHEAD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bulkhead}"
CACHE_DIR="$CACHE_ROOT/control-plane/$K8S_VERSION-deb12u1"
BINARIES=(etcd kube-apiserver kube-controller-manager)

log() { echo "control-plane-assets: $*" >&2; }

has_all() {
  local dir=$1 b
  for b in "${BINARIES[@]}"; do [ -x "$dir/$b" ] || return 1; done
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && has_all "$KUBEBUILDER_ASSETS"; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi
if has_all "$CACHE_DIR"; then
  echo "$CACHE_DIR"
  exit 0
fi

# Building needs Debian's packages, which needs root on Debian. Anywhere else, say what to do and stop.
if [ "$(id -u)" != 0 ] || ! grep -qs 'bookworm' /etc/os-release; then
  log "no control-plane binaries found in \$KUBEBUILDER_ASSETS or $CACHE_DIR."
  log "Either point KUBEBUILDER_ASSETS at a directory holding etcd, kube-apiserver and kube-controller-manager"
  log "(for example: KUBEBUILDER_ASSETS=\$(setup-envtest use -p path 1.30.x)),"
  log "or run this script as root on Debian bookworm to build them from Debian's kubernetes source package."
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
SRC_LIST=/etc/apt/sources.list.d/bulkhead-deb-src.sources
need_update=0
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src ' /etc/apt/sources.list; then
  log "enabling Debian source packages ($SRC_LIST)"
  cat >"$SRC_LIST" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  need_update=1
fi
pkgs=(etcd-server golang-go rsync jq make golang-github-modern-go-reflect2-dev)
missing=()
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if [ "$need_update" = 1 ] || [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get update"
  apt-get update -qq >&2
fi
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  # etcd-server's postinst would start the packaged service; policy-rc.d keeps it from running.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  [ "$created_policy" = 1 ] && rm -f "$policy"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-k8s-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
log "downloading Debian source package kubernetes=$K8S_DEB_VERSION"
apt-get source --download-only "kubernetes=$K8S_DEB_VERSION" >&2
orig=$(ls kubernetes_*.orig.tar.* | head -n 1)
mkdir src
tar -xf "$orig" -C src --strip-components=1
cd src
# The vendored reflect2 v1.0.1 faults under Go >= 1.18 on the first CRD request; use Debian's v1.0.2.
log "replacing vendored github.com/modern-go/reflect2 with Debian's v1.0.2"
rm -rf vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
rm -f vendor/github.com/modern-go/reflect2/go.mod
log "building kube-apiserver and kube-controller-manager (several minutes)"
GOFLAGS=-mod=vendor make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" KUBE_BUILD_PLATFORMS=linux/amd64 >&2
mkdir -p "$CACHE_DIR.tmp"
cp _output/bin/kube-apiserver _output/bin/kube-controller-manager "$CACHE_DIR.tmp/"
cp "$(command -v etcd || echo /usr/bin/etcd)" "$CACHE_DIR.tmp/etcd"
rm -rf "$CACHE_DIR"
mv "$CACHE_DIR.tmp" "$CACHE_DIR"
log "cached in $CACHE_DIR"
echo "$CACHE_DIR"
