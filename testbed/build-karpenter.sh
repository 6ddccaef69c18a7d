#!/usr/bin/env bash
# Builds the real Karpenter controller with its kwok cloud provider
# (sigs.k8s.io/karpenter/kwok) from its Go module and caches the binary by
# version, so a warm run is instant. Karpenter asks for a newer Go than the
# machine's: the go command fetches KARPENTER_GOTOOLCHAIN through the module proxy.
#
#   testbed/build-karpenter.sh          # prints the bin directory on its last line
#
# Pinned versions live in testbed/versions.env.
set -euo pipefail

# shellcheck source=versions.env
source "$(dirname "${BASH_SOURCE[0]}")/versions.env"

CACHE_ROOT="${GPUCTL_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpuctl-testbed}"
BIN="$CACHE_ROOT/karpenter-$KARPENTER_VERSION/bin"
mkdir -p "$CACHE_ROOT"
# One build at a time per cache: scripts/test runs the builds in the background
# while the tests that need none run, and the test bed waits here for them.
exec 9>"$CACHE_ROOT/.build-karpenter.lock"
flock 9
if [[ -x $BIN/karpenter-kwok ]]; then echo "$BIN"; exit 0; fi

export GOTOOLCHAIN=$KARPENTER_GOTOOLCHAIN CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod"
log() { printf '[testbed build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

start=$SECONDS
log "building karpenter v$KARPENTER_VERSION (kwok cloud provider) with $KARPENTER_GOTOOLCHAIN"
mkdir -p "$CACHE_ROOT"
staging=$(mktemp -d "$CACHE_ROOT/.karpenter.XXXXXX")
trap 'rm -rf "$staging"' EXIT
# `go install pkg@version` works: the karpenter module has no replace directives.
GOBIN="$staging" go install -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/karpenter/pkg/operator.Version=v$KARPENTER_VERSION" \
  "sigs.k8s.io/karpenter/kwok@v$KARPENTER_VERSION" >&2
mkdir -p "$BIN"
mv "$staging/kwok" "$BIN/karpenter-kwok"
log "built in $((SECONDS - start))s"
echo "$BIN"
