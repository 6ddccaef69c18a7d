"""Trim raw Kubernetes JSON objects to the records the store keeps.

Runs on every watch event, so it reads dicts straight from the API's JSON (no
generated model classes) and keeps only what gpuctl shows: nvidia.com/*
resources, GPU/MIG/pool labels, the top-level owner. Objects gpuctl doesn't
care about (pods without GPUs, nodes without NVIDIA resources, quotas without
GPU keys) trim to None, which the watcher turns into a delete: an object that
stops matching disappears, one that starts matching appears.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from gpuctl.model import Taint
from gpuctl.state.records import NamespaceRecord, NodeRecord, PodRecord, QuotaRecord

NVIDIA = "nvidia.com/"
_QUANTITY = re.compile(r"^([+-]?\d+(?:\.\d+)?)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip

JSON = Mapping[str, Any]


def parse_quantity(value: object) -> float:
    """A Kubernetes quantity ('8', '500m', '2k', '1Gi') as a number; ValueError if malformed."""
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if not match or match.group(2) not in _SUFFIX:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def _nvidia_counts(resources: JSON | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, value in (resources or {}).items():
        if name.startswith(NVIDIA):
            try:
                count = int(parse_quantity(value))
            except ValueError:
                continue
            if count:
                out[name] = count
    return out


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def object_key(obj: JSON) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def trim_node(obj: JSON, keep_labels: Collection[str]) -> NodeRecord | None:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k.startswith(NVIDIA) or k in keep_labels}
    capacity = _nvidia_counts(status.get("capacity"))
    if not capacity and not any(k.startswith(NVIDIA) for k in labels):
        return None  # not a GPU node
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())
    taints = tuple(
        Taint(key=t.get("key", ""), value=t.get("value"), effect=t.get("effect", "")) for t in spec.get("taints") or ()
    )
    return NodeRecord(
        name=meta["name"],
        labels=labels,
        capacity=capacity,
        allocatable=_nvidia_counts(status.get("allocatable")),
        taints=taints,
        unschedulable=bool(spec.get("unschedulable")),
        ready=ready,
        created=_time(meta.get("creationTimestamp")),
    )


def _container_gpus(container: JSON) -> dict[str, int]:
    resources = container.get("resources") or {}
    # Extended resources: requests default to limits, and may not differ from them when both are set.
    return _nvidia_counts(resources.get("requests")) or _nvidia_counts(resources.get("limits"))


def pod_gpu_requests(spec: JSON) -> dict[str, int]:
    """Effective nvidia.com/* requests: max(sum over app containers + sidecars, largest init container)."""
    total: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    for container in spec.get("initContainers") or ():
        counts = _container_gpus(container)
        sidecar = container.get("restartPolicy") == "Always"  # runs alongside the app containers
        for name, count in counts.items():
            if sidecar:
                total[name] = total.get(name, 0) + count
            else:
                init_peak[name] = max(init_peak.get(name, 0), count)
    for container in spec.get("containers") or ():
        for name, count in _container_gpus(container).items():
            total[name] = total.get(name, 0) + count
    for name, count in init_peak.items():
        total[name] = max(total.get(name, 0), count)
    return total


def top_owner(meta: JSON) -> tuple[str | None, str | None]:
    """The controller that owns the pod, lifted from ReplicaSet to its Deployment when the names show it."""
    refs = meta.get("ownerReferences") or ()
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if ref is None:
        return None, None
    kind, name = ref.get("kind"), ref.get("name")
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    if kind == "ReplicaSet" and template_hash and name and name.endswith(f"-{template_hash}"):
        return "Deployment", name[: -len(template_hash) - 1]
    return kind, name


def trim_pod(obj: JSON) -> PodRecord | None:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    requests = pod_gpu_requests(spec)
    if not requests:
        return None  # not a GPU pod
    owner_kind, owner_name = top_owner(meta)
    return PodRecord(
        namespace=meta["namespace"],
        name=meta["name"],
        node=spec.get("nodeName") or None,
        phase=status.get("phase") or "Pending",
        gpu_requests=requests,
        owner_kind=owner_kind,
        owner_name=owner_name,
        priority_class=spec.get("priorityClassName"),
        created=_time(meta.get("creationTimestamp")),
        deleting=meta.get("deletionTimestamp") is not None,
    )


def _gpu_quota(values: JSON | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in (values or {}).items():
        if NVIDIA in name:
            try:
                out[name] = parse_quantity(value)
            except ValueError:
                continue
    return out


def trim_quota(obj: JSON) -> QuotaRecord | None:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    # status.hard is what the quota controller enforces; right after creation only spec.hard is set.
    hard = _gpu_quota(status.get("hard")) or _gpu_quota(spec.get("hard"))
    if not hard:
        return None
    return QuotaRecord(namespace=meta["namespace"], name=meta["name"], hard=hard, used=_gpu_quota(status.get("used")))


def trim_namespace(obj: JSON) -> NamespaceRecord:
    meta = obj.get("metadata") or {}
    return NamespaceRecord(name=meta["name"], labels=dict(meta.get("labels") or {}))
