#!/usr/bin/env bash
# Builds kubectl from Go modules at the control plane's Kubernetes version (its
# built-in kustomize renders deploy/; tests apply the result server-side) and
# caches it by version next to the other test-bed binaries, so a warm run is
# instant. Same approach and cache as e2e-speed's bench/build-kubectl.sh.
#
#   testbed/build-kubectl.sh          # prints the bin directory on its last line
#
# Like the control plane, k8s.io/kubernetes/cmd/kubectl is built through a
# wrapper module that pins every staging module to its published tag.
# Pinned versions live in testbed/versions.env.
set -euo pipefail

# shellcheck source=versions.env
source "$(dirname "${BASH_SOURCE[0]}")/versions.env"
[[ -n "${K8S_VERSION:-}" && -n "${K8S_STAGING:-}" ]] || { echo "no K8S_VERSION/K8S_STAGING in testbed/versions.env" >&2; exit 1; }

CACHE_ROOT="${GPUCTL_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpuctl-testbed}"
BIN="$CACHE_ROOT/kubectl-$K8S_VERSION/bin"
mkdir -p "$CACHE_ROOT"
# One build at a time per cache: scripts/test runs the builds in the background
# while the tests that need none run, and the test bed waits here for them.
exec 9>"$CACHE_ROOT/.build-kubectl.lock"
flock 9
if [[ -x $BIN/kubectl ]]; then echo "$BIN"; exit 0; fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
log() { printf '[testbed build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
dir="$CACHE_ROOT/src/kubectl-$K8S_VERSION"
mkdir -p "$dir" "$BIN"
cd "$dir"
if [[ ! -f go.mod ]]; then
  go mod init gpuctl.local/kubectlbin >/dev/null 2>&1
  go mod edit -go=1.24.0 -godebug=default=go1.24
  staging=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])' \
    | xargs sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p')
  for m in $staging; do go mod edit -replace="$m=$m@v$K8S_STAGING"; done
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kubectl"
GO
  go get "k8s.io/kubernetes@v$K8S_VERSION" >&2
  go mod tidy >&2
fi
minor=${K8S_VERSION#*.}; minor=${minor%%.*}
log "building kubectl v$K8S_VERSION"
start=$SECONDS
# Built beside the cache and moved in: an interrupted build never leaves a half-written kubectl there.
go build -trimpath -ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION \
  -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor \
  -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION" -o "$BIN/.kubectl.partial" k8s.io/kubernetes/cmd/kubectl
mv "$BIN/.kubectl.partial" "$BIN/kubectl"
log "built in $((SECONDS - start))s"
echo "$BIN"
