"""Quotas and LimitRanges: every namespace that runs GPU pods has a ResourceQuota on
`requests.nvidia.com/gpu` (and on each MIG resource it uses) and a LimitRange."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from gpuctl.doctor.findings import Check, Finding, Severity, finding, namespace
from gpuctl.doctor.inventory import Inventory
from gpuctl.doctor.options import DoctorOptions

QUOTA = Check(
    id="namespaces.gpu-quota",
    severity=Severity.WARNING,
    title="GPU namespace without a ResourceQuota on its GPU resources",
    why="Nothing stops one team from taking every GPU of the cluster. Kubernetes enforces quotas on extended "
    "resources only as requests.nvidia.com/* (limits. and bare keys are accepted but never counted).",
    fix="Create an unscoped ResourceQuota with spec.hard requests.nvidia.com/gpu (and requests.nvidia.com/mig-* "
    "for MIG resources the namespace uses).",
)
LIMIT_RANGE = Check(
    id="namespaces.limit-range",
    severity=Severity.INFO,
    title="GPU namespace without a LimitRange",
    why="Pods without CPU and memory requests get none by default: GPU pods land on nodes without the CPU and "
    "memory to feed their GPUs, and a quota on cpu/memory would refuse them.",
    fix="Create a LimitRange with default requests and limits for containers (cpu, memory) in the namespace.",
)
CHECKS = (QUOTA, LIMIT_RANGE)


def find(inv: Inventory, options: DoctorOptions) -> Iterable[Finding]:
    snapshot = inv.snapshot
    usage = {ns.name: ns for ns in snapshot.namespaces}
    wants: dict[str, set[str]] = defaultdict(set)  # namespace -> quota keys its pods need
    for p in snapshot.pods:
        if p.gpus:
            wants[p.namespace].add("requests.nvidia.com/gpu")
        wants[p.namespace].update(f"requests.{resource}" for resource in p.mig)
    for name in sorted(wants):
        ns = usage.get(name)
        have = set() if ns is None else {f"requests.{r}" for r in ns.mig_quota_hard}
        if ns is not None and ns.gpu_quota_hard is not None:
            have.add("requests.nvidia.com/gpu")
        missing = sorted(wants[name] - have)
        if missing:
            yield finding(QUOTA, "no unscoped quota on " + ", ".join(missing), namespace(name))
    if inv.limit_ranges is None:
        return
    limited = {(lr.get("metadata") or {}).get("namespace") for lr in inv.limit_ranges}
    for name in sorted({p.namespace for p in snapshot.pods} - limited):
        yield finding(LIMIT_RANGE, "no LimitRange in the namespace", namespace(name))
