#!/usr/bin/env bash
# Fetches the CustomResourceDefinitions of Cluster API, Kueue and Karpenter from
# their Go modules (the module zips carry them; fetched through the Go module
# proxy like the control plane's sources) and caches the few the remediation
# playbooks act on, by version. Nothing upstream is committed to this repository.
#
#   testbed/fetch-crds.sh          # prints the CRD directory (<dir>/<project>/*.yaml) on its last line
#
# Pinned versions live in testbed/versions.env.
set -euo pipefail

# shellcheck source=versions.env
source "$(dirname "${BASH_SOURCE[0]}")/versions.env"

CACHE_ROOT="${GPUCTL_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpuctl-testbed}"
DEST="$CACHE_ROOT/crds/cluster-api-$CLUSTER_API_VERSION-kueue-$KUEUE_VERSION-karpenter-$KARPENTER_VERSION"
mkdir -p "$CACHE_ROOT"
# One build at a time per cache: scripts/test runs the builds in the background
# while the tests that need none run, and the test bed waits here for them.
exec 9>"$CACHE_ROOT/.fetch-crds.lock"
flock 9
if [[ -f $DEST/.complete ]]; then echo "$DEST"; exit 0; fi

export GOFLAGS=-mod=mod
log() { printf '[testbed crds %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# The module's extracted directory in the module cache (downloading it if needed).
module_dir() {
  GOTOOLCHAIN="${2:-local}" go mod download -json "$1" | python3 -c '
import json, sys
info = json.load(sys.stdin)
if info.get("Error"):
    sys.exit("go mod download: " + info["Error"])
print(info["Dir"])'
}

mkdir -p "$CACHE_ROOT/crds"
staging=$(mktemp -d "$CACHE_ROOT/crds/.partial.XXXXXX")
trap 'rm -rf "$staging"' EXIT
copy() {
  local project=$1 dir=$2; shift 2
  mkdir -p "$staging/$project"
  for file in "$@"; do install -m 0644 "$dir/$file" "$staging/$project/"; done
}

start=$SECONDS
log "fetching sigs.k8s.io/cluster-api@v$CLUSTER_API_VERSION"
capi=$(module_dir "sigs.k8s.io/cluster-api@v$CLUSTER_API_VERSION")
# Since v1.11 the core CRDs live under core/; older releases keep them in config/.
bases=core/config/crd/bases
[[ -d $capi/$bases ]] || bases=config/crd/bases
copy cluster-api "$capi" "$bases"/cluster.x-k8s.io_{clusters,machinedeployments,machinesets,machines}.yaml

log "fetching sigs.k8s.io/kueue@v$KUEUE_VERSION"
kueue=$(module_dir "sigs.k8s.io/kueue@v$KUEUE_VERSION")
copy kueue "$kueue" config/components/crd/bases/kueue.x-k8s.io_{clusterqueues,localqueues,resourceflavors}.yaml

log "fetching sigs.k8s.io/karpenter@v$KARPENTER_VERSION (toolchain $KARPENTER_GOTOOLCHAIN)"
karpenter=$(module_dir "sigs.k8s.io/karpenter@v$KARPENTER_VERSION" "$KARPENTER_GOTOOLCHAIN")
copy karpenter "$karpenter" pkg/apis/crds/karpenter.sh_{nodepools,nodeclaims}.yaml \
  kwok/apis/crds/karpenter.kwok.sh_kwoknodeclasses.yaml

touch "$staging/.complete"
rm -rf "$DEST"
mv "$staging" "$DEST"
trap - EXIT
log "fetched in $((SECONDS - start))s"
echo "$DEST"
