"""Small builders for the doctor's unit tests: snapshots and inventories made of exactly what a test names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from gpuctl.doctor.findings import Finding
from gpuctl.doctor.inventory import Inventory
from gpuctl.doctor.options import DoctorOptions
from gpuctl.doctor.run import diagnose
from gpuctl.model import Gpu, GpuPod, MetricsHealth, NamespaceUsage, Node, Snapshot, Taint, WatchHealth

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
GPU_TAINT = Taint(key="nvidia.com/gpu", value="present", effect="NoSchedule")
TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def node(name: str = "n1", **kw: Any) -> Node:
    kw.setdefault("gpu_capacity", 8)
    kw.setdefault("taints", (GPU_TAINT,))
    return Node(name=name, pool=kw.pop("pool", "a100"), **kw)


def pod(name: str = "p1", namespace: str = "ml", **kw: Any) -> GpuPod:
    kw.setdefault("gpus", 1)
    kw.setdefault("priority_class", "training")
    return GpuPod(namespace=namespace, name=name, phase=kw.pop("phase", "Running"), node=kw.pop("node", "n1"), **kw)


def snapshot(
    nodes: Iterable[Node] = (),
    pods: Iterable[GpuPod] = (),
    gpus: Iterable[Gpu] = (),
    namespaces: Iterable[NamespaceUsage] | None = None,
    metrics: bool | None = None,
) -> Snapshot:
    """`metrics`: Prometheus answered (default: when GPUs are given, so other tests see no metrics findings)."""
    pods, gpus = tuple(pods), tuple(gpus)
    metrics = bool(gpus) if metrics is None else metrics
    if namespaces is None:  # every namespace with a GPU quota unless the test says otherwise
        namespaces = [NamespaceUsage(name=ns, gpu_quota_hard=8) for ns in sorted({p.namespace for p in pods})]
    health = MetricsHealth(source="prometheus", last_success=NOW, stale=False) if metrics else MetricsHealth(source="none")
    return Snapshot(
        taken_at=NOW, idle_threshold_pct=5, idle_window_s=1800, nodes=tuple(nodes), pods=pods, gpus=gpus,
        namespaces=tuple(namespaces), metrics=health, watch=WatchHealth(source="kubernetes", connected=True),
    )  # fmt: skip


def raw(name: str, namespace: str | None = None, **meta: Any) -> dict[str, Any]:
    """An API object's skeleton: metadata with name (and namespace), plus other metadata fields."""
    return {"metadata": {"name": name, **({"namespace": namespace} if namespace else {}), **meta}}


def raw_pod(p: GpuPod, tolerations: list[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    return raw(p.name, p.namespace) | {"spec": {"tolerations": [TOLERATION] if tolerations is None else tolerations}}


def managed_state_at(when: datetime) -> list[dict[str, Any]]:
    """managedFields saying the MIG state label was last written at `when`."""
    fields = {"f:metadata": {"f:labels": {"f:nvidia.com/mig.config.state": {}}}}
    return [{"manager": "nvidia-mig-manager", "operation": "Update", "time": when.isoformat(), "fieldsV1": fields}]


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def inventory(snap: Snapshot, **parts: Any) -> Inventory:
    """An inventory where every one-shot list was read (empty unless given) and GPU pods tolerate the taint."""
    parts.setdefault("nodes", {n.name: raw(n.name) for n in snap.nodes})
    parts.setdefault("pods", {p.key: raw_pod(p) for p in snap.pods})
    parts.setdefault("jobs", [])
    parts.setdefault("limit_ranges", [raw("defaults", ns) for ns in {p.namespace for p in snap.pods}])
    parts.setdefault("priority_classes", [raw("training") | {"value": 1000}])
    parts.setdefault("rules", [])
    return Inventory(snapshot=snap, **parts)


def found(inv: Inventory, options: DoctorOptions | None = None) -> dict[str, list[list[str]]]:
    """check id -> each finding's object keys."""
    out: dict[str, list[list[str]]] = {}
    for f in diagnose(inv, options or DoctorOptions()).findings:
        out.setdefault(f.check, []).append([o.key for o in f.objects])
    return out


def findings(inv: Inventory, check: str) -> list[Finding]:
    return [f for f in diagnose(inv).findings if f.check == check]
