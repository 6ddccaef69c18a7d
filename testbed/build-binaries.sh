#!/usr/bin/env bash
# Builds the test bed's control plane from Go modules (no binary downloads are
# reachable here) and caches the binaries by version, so a warm run is instant.
#
#   testbed/build-binaries.sh          # prints the bin directory on its last line
#
# Pinned versions live in testbed/versions.env.
set -euo pipefail

# shellcheck source=versions.env
source "$(dirname "${BASH_SOURCE[0]}")/versions.env"

CACHE_ROOT="${GPUCTL_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpuctl-testbed}"
BIN="$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin"
WANTED=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok)
mkdir -p "$CACHE_ROOT"
# One build at a time per cache: scripts/test runs the builds in the background
# while the tests that need none run, and the test bed waits here for them.
exec 9>"$CACHE_ROOT/.build-binaries.lock"
flock 9

have_all() { for b in "${WANTED[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done; }
if have_all; then echo "$BIN"; exit 0; fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
WORK="$CACHE_ROOT/src"
mkdir -p "$BIN" "$WORK"
log() { printf '[testbed build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# k8s.io/kubernetes replaces its staging modules with ./staging paths, which
# `go install pkg@version` refuses; a wrapper module that pins every staging
# module to its published tag builds it (replace directives of a dependency are
# ignored). etcd's server is built in the same module, at the version
# k8s.io/kubernetes requires: etcd and the apiserver then compile the packages
# they share (gRPC, protobuf, the etcd client, OpenTelemetry, ...) once.
build_kubernetes_and_etcd() {
  local dir="$WORK/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
  mkdir -p "$dir" && cd "$dir"
  if [[ ! -f go.mod ]]; then
    go mod init gpuctl.local/k8sbin >/dev/null 2>&1
    go mod edit -go=1.24.0 -godebug=default=go1.24
    local staging
    staging=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])' \
      | xargs sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p')
    for m in $staging; do go mod edit -replace="$m=$m@v$K8S_STAGING"; done
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
    go get "k8s.io/kubernetes@v$K8S_VERSION" >&2
    go mod tidy >&2
  fi
  # ETCD_VERSION must be the etcd k8s.io/kubernetes requires: a newer one would
  # upgrade the apiserver's etcd client and gRPC behind its back.
  local etcd
  etcd=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
  [[ $etcd == "v$ETCD_VERSION" ]] || { log "k8s.io/kubernetes v$K8S_VERSION selects etcd $etcd, not v$ETCD_VERSION (testbed/versions.env)"; exit 1; }
  local minor=${K8S_VERSION#*.}; minor=${minor%%.*}
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
    -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
    -X k8s.io/component-base/version.gitTreeState=clean"
  log "building kube-apiserver, kube-controller-manager, kube-scheduler v$K8S_VERSION"
  go build -p "$(nproc)" -trimpath -ldflags "$ldflags" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler
  log "building etcd v$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
}

build_kwok() {
  log "building kwok v$KWOK_VERSION"
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
}

start=$SECONDS
[[ -x "$BIN/kwok" ]] || build_kwok
[[ -x "$BIN/etcd" && -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" && -x "$BIN/kube-scheduler" ]] || build_kubernetes_and_etcd
have_all || { log "build finished but binaries are missing in $BIN"; exit 1; }
log "built in $((SECONDS - start))s"
echo "$BIN"
