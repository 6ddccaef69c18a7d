"""Node pools and taints: GPU nodes keep other pods off with a `nvidia.com/gpu` NoSchedule taint, and GPU pods
carry the toleration for it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gpuctl.doctor.findings import Check, Finding, Severity, finding, node, pod
from gpuctl.doctor.inventory import Inventory
from gpuctl.doctor.options import DoctorOptions
from gpuctl.model import Node, Taint

GPU_TAINT_KEY = "nvidia.com/gpu"

NODE_TAINT = Check(
    id="nodes.gpu-taint",
    severity=Severity.WARNING,
    title="GPU node without a nvidia.com/gpu NoSchedule taint",
    why="Any pod can be scheduled there: CPU-only work takes the CPU and memory GPU jobs need, and the node "
    "cannot be drained or scaled as a GPU pool.",
    fix="kubectl taint nodes NODE nvidia.com/gpu=present:NoSchedule (or set the taint on the node pool / "
    "Karpenter NodePool / MachineDeployment so new nodes get it).",
)
POD_TOLERATION = Check(
    id="pods.gpu-toleration",
    severity=Severity.WARNING,
    title="GPU pod without a toleration for the nvidia.com/gpu taint",
    why="Once its GPU nodes carry the NoSchedule taint (the practice), the pod cannot be scheduled again: its "
    "next restart or rollout stays Pending.",
    fix="Add `tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]` to the pod template, "
    "or enable the ExtendedResourceToleration admission plugin.",
)
CHECKS = (NODE_TAINT, POD_TOLERATION)


def is_gpu_node(n: Node) -> bool:
    return bool(n.gpu_capacity or n.gpu_slices_allocatable or n.mig_allocatable)


def has_gpu_taint(taints: Iterable[Taint]) -> bool:
    return any(t.key == GPU_TAINT_KEY and t.effect == "NoSchedule" for t in taints)


def tolerates_gpu_taint(tolerations: Iterable[Mapping[str, Any]]) -> bool:
    """Whether these tolerations let a pod onto a node tainted `nvidia.com/gpu=<any>:NoSchedule`
    (Kubernetes' rules: an empty key with Exists tolerates every taint; an empty effect every effect)."""
    for t in tolerations:
        key, operator, effect = t.get("key") or "", t.get("operator") or "Equal", t.get("effect") or ""
        if effect not in ("", "NoSchedule"):
            continue
        if operator == "Exists" and key in ("", GPU_TAINT_KEY):
            return True
        # Equal matches one value only: the value nodes are tainted with varies (present, true, ...), so an
        # Equal toleration counts when it names the key; the taint check reports nodes separately.
        if operator == "Equal" and key == GPU_TAINT_KEY:
            return True
    return False


def find(inv: Inventory, options: DoctorOptions) -> Iterable[Finding]:
    for n in inv.snapshot.nodes:
        if is_gpu_node(n) and not has_gpu_taint(n.taints):
            taints = ", ".join(f"{t.key}={t.value or ''}:{t.effect}" for t in n.taints) or "none"
            yield finding(NODE_TAINT, f"pool {n.pool}; taints: {taints}", node(n.name))
    if inv.pods is None:
        return
    for p in inv.snapshot.pods:
        raw = inv.pods.get(p.key)
        if raw is None or p.phase in ("Succeeded", "Failed"):
            continue
        tolerations = (raw.get("spec") or {}).get("tolerations") or ()
        if not tolerates_gpu_taint(tolerations):
            where = f"on node {p.node}" if p.node else "pending"
            yield finding(POD_TOLERATION, f"{p.gpus_total} GPU device(s) requested, {where}", pod(p.namespace, p.name))
