"""Trim raw Kubernetes JSON objects to the records the store keeps.

Runs on every watch event, so it reads dicts straight from the API's JSON (no
generated model classes) and keeps only what gpuctl shows: nvidia.com/*
resources, GPU/MIG/pool labels, a pod's own controller (the join follows the
chain up from there, through the ReplicaSets and Jobs trimmed here too), each
object's uid and resourceVersion (preconditions for writes). Objects gpuctl doesn't
care about (pods without GPUs, nodes without NVIDIA resources, quotas without
`requests.nvidia.com/*` keys or limited to a scope, ReplicaSets and Jobs that
lead nowhere) trim to None, which the watcher turns into a delete: an object
that stops matching disappears, one that starts matching appears. A malformed
quantity is logged and left out, never dropped silently.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Collection, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from gpuctl.model import Taint
from gpuctl.state.records import (
    NO_LABELS,
    JobRecord,
    NamespaceRecord,
    NodeRecord,
    PdbRecord,
    PodRecord,
    QuotaRecord,
    ReplicaSetRecord,
)
from gpuctl.state.selectors import InvalidSelector, parse_selector

log = logging.getLogger(__name__)

NVIDIA = "nvidia.com/"
# Kubernetes' quantity grammar (k8s.io/apimachinery/pkg/api/resource/quantity.go):
# <signedNumber> then a binary SI suffix, a decimal SI suffix, or e/E with a signed integer exponent.
_QUANTITY = re.compile(r"([+-]?)(\d+\.?\d*|\.\d+)(?:(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)|[eE]([+-]?\d+))?")
_SUFFIX = {
    None: Decimal(1), "m": Decimal("1e-3"), "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
    "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18"),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40), "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}  # fmt: skip
# ResourceQuota enforces extended resources only under this prefix: they cannot be overcommitted, so
# `limits.nvidia.com/gpu` and a bare `nvidia.com/gpu` are accepted by validation but never counted
# or enforced by the quota controller and admission (checked against kube-apiserver in
# tests/integration/test_quota_semantics.py).
QUOTA_REQUESTS = "requests." + NVIDIA
# Most GPU pods ask for 1-8 whole GPUs and nothing else: their records share one dict per count
# (10,000 pods, 8 dicts). Never written to, like NO_LABELS.
_WHOLE_GPUS: dict[int, Mapping[str, int]] = {n: {NVIDIA + "gpu": n} for n in range(1, 9)}

JSON = Mapping[str, Any]


def parse_quantity(value: object) -> float:
    """A Kubernetes quantity ('8', '500m', '2k', '1Gi', '1e3', '.5', '+2') as a number; ValueError if malformed."""
    if isinstance(value, bool):
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.fullmatch(str(value))
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    sign, number, suffix, exponent = match.groups()
    try:
        amount = Decimal(number)
        amount = amount.scaleb(int(exponent)) if exponent is not None else amount * _SUFFIX[suffix]
    except ArithmeticError as e:  # an exponent beyond what Decimal holds (Kubernetes caps far lower)
        raise ValueError(f"not a Kubernetes quantity: {value!r}") from e
    return float(-amount if sign == "-" else amount)


def _nvidia_counts(resources: JSON | None, owner: JSON) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, value in (resources or {}).items():
        if name.startswith(NVIDIA):
            try:
                count = int(parse_quantity(value))
            except ValueError:
                _malformed(owner, name, value)
                continue
            if count:
                out[name] = count
    return out


def _malformed(owner: JSON, name: str, value: object) -> None:
    """The API server validates quantities, so this is a bug somewhere: say so rather than drop it silently."""
    kind = owner.get("kind") or "object"
    log.warning("%s %s: %s=%r is not a Kubernetes quantity; ignored", kind, object_key(owner), name, value)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def object_key(obj: JSON) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def trim_node(obj: JSON, keep_labels: Collection[str]) -> NodeRecord | None:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k.startswith(NVIDIA) or k in keep_labels}
    capacity = _nvidia_counts(status.get("capacity"), obj)
    if not capacity and not any(k.startswith(NVIDIA) for k in labels):
        return None  # not a GPU node
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())
    taints = tuple(
        Taint(key=t.get("key", ""), value=t.get("value"), effect=t.get("effect", "")) for t in spec.get("taints") or ()
    )
    return NodeRecord(
        name=sys.intern(meta["name"]),
        labels=labels,
        capacity=capacity,
        allocatable=_nvidia_counts(status.get("allocatable"), obj),
        taints=taints,
        unschedulable=bool(spec.get("unschedulable")),
        ready=ready,
        created=_time(meta.get("creationTimestamp")),
        uid=meta.get("uid"),
        resource_version=meta.get("resourceVersion"),
    )


def _container_gpus(container: JSON, owner: JSON) -> dict[str, int]:
    resources = container.get("resources") or {}
    # Extended resources: requests default to limits, and may not differ from them when both are set.
    return _nvidia_counts(resources.get("requests"), owner) or _nvidia_counts(resources.get("limits"), owner)


def pod_gpu_requests(spec: JSON, owner: JSON | None = None) -> dict[str, int]:
    """Effective nvidia.com/* requests: max(sum over app containers + sidecars, largest init container)."""
    total: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    owner = owner or {}
    for container in spec.get("initContainers") or ():
        counts = _container_gpus(container, owner)
        sidecar = container.get("restartPolicy") == "Always"  # runs alongside the app containers
        for name, count in counts.items():
            if sidecar:
                total[name] = total.get(name, 0) + count
            else:
                init_peak[name] = max(init_peak.get(name, 0), count)
    for container in spec.get("containers") or ():
        for name, count in _container_gpus(container, owner).items():
            total[name] = total.get(name, 0) + count
    for name, count in init_peak.items():
        total[name] = max(total.get(name, 0), count)
    return total


def controller_ref(meta: JSON) -> tuple[str | None, str | None, str | None]:
    """(kind, name, uid) of the object's controller: its ownerReference marked controller, else its first."""
    refs = meta.get("ownerReferences") or ()
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if ref is None:
        return None, None, None
    return _intern(ref.get("kind")), ref.get("name"), ref.get("uid")


def _intern(text: str | None) -> str | None:
    # Kinds, namespaces, node names and label keys repeat across thousands of records: keep one copy of each.
    # (Pod and node names are interned too: the metrics' labels name them again at every refresh.)
    return None if text is None else sys.intern(text)


def labels_of(meta: JSON) -> Mapping[str, str]:
    """All the object's labels, keys and values shared with every other record that has them."""
    labels = meta.get("labels")
    if not labels:
        return NO_LABELS
    return {sys.intern(k): sys.intern(v) for k, v in labels.items()}


def trim_pod(obj: JSON) -> PodRecord | None:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    requests = pod_gpu_requests(spec, obj)
    if not requests:
        return None  # not a GPU pod
    owner_kind, owner_name, owner_uid = controller_ref(meta)
    return PodRecord(
        namespace=sys.intern(meta["namespace"]),
        name=sys.intern(meta["name"]),  # shared with the metrics' pod labels (interned there too)
        node=_intern(spec.get("nodeName") or None),
        phase=status.get("phase") or "Pending",
        gpu_requests=_WHOLE_GPUS.get(requests.get(NVIDIA + "gpu", 0), requests) if len(requests) == 1 else requests,
        owner_kind=owner_kind,
        owner_name=owner_name,
        priority_class=spec.get("priorityClassName"),
        created=_time(meta.get("creationTimestamp")),
        deleting=meta.get("deletionTimestamp") is not None,
        uid=meta.get("uid"),
        resource_version=meta.get("resourceVersion"),
        labels=labels_of(meta),
        owner_uid=owner_uid,
        ready=_condition(status, "Ready"),
    )


def _quota_values(values: JSON | None, owner: JSON) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in (values or {}).items():
        if name.startswith(QUOTA_REQUESTS):
            try:
                out[name] = parse_quantity(value)
            except ValueError:
                _malformed(owner, name, value)
    return out


def trim_quota(obj: JSON) -> QuotaRecord | None:
    """A ResourceQuota's `requests.nvidia.com/*` limits; None for a quota without any, or a scoped one.

    A scoped quota (spec.scopes or spec.scopeSelector, e.g. per PriorityClass) limits only the pods in
    its scope, so it is not the namespace's GPU limit; gpuctl leaves it out rather than show a limit
    that most of the namespace's pods are not held to."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    if spec.get("scopes") or spec.get("scopeSelector"):
        return None
    # status.hard is what the quota controller enforces; right after creation only spec.hard is set.
    hard = _quota_values(status.get("hard"), obj) or _quota_values(spec.get("hard"), obj)
    if not hard:
        return None
    return QuotaRecord(
        namespace=meta["namespace"],
        name=meta["name"],
        hard=hard,
        used=_quota_values(status.get("used"), obj),
        uid=meta.get("uid"),
        resource_version=meta.get("resourceVersion"),
    )


def trim_namespace(obj: JSON) -> NamespaceRecord:
    meta = obj.get("metadata") or {}
    return NamespaceRecord(name=meta["name"], labels=dict(meta.get("labels") or {}))


def _condition(status: JSON, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in status.get("conditions") or ())


Controller = TypeVar("Controller", ReplicaSetRecord, JobRecord)


def _trim_controller(obj: JSON, record: type[Controller]) -> Controller | None:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    owner_kind, owner_name, owner_uid = controller_ref(meta)
    if owner_kind is None or owner_name is None:
        return None  # the top itself: the pod's ownerReference already names it
    if not pod_gpu_requests((spec.get("template") or {}).get("spec") or {}):
        return None  # makes no GPU pods
    return record(
        namespace=sys.intern(meta["namespace"]),
        name=meta["name"],
        uid=meta.get("uid"),
        owner_kind=owner_kind,
        owner_name=owner_name,
        owner_uid=owner_uid,
    )


def trim_replicaset(obj: JSON) -> ReplicaSetRecord | None:
    """A ReplicaSet of GPU pods with a controller (normally its Deployment); else None."""
    return _trim_controller(obj, ReplicaSetRecord)


def trim_job(obj: JSON) -> JobRecord | None:
    """A Job of GPU pods with a controller (normally its CronJob); else None."""
    return _trim_controller(obj, JobRecord)


def _int_or_percent(value: object) -> str | None:
    return None if value is None else str(value)


def trim_pdb(obj: JSON) -> PdbRecord:
    """Every PodDisruptionBudget: any of them may cover a GPU pod."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    try:
        selector = parse_selector(spec.get("selector"))
    except InvalidSelector:
        selector = None  # the Eviction API lets such a budget match no pod
    return PdbRecord(
        namespace=sys.intern(meta["namespace"]),
        name=meta["name"],
        selector=selector,
        min_available=_int_or_percent(spec.get("minAvailable")),
        max_unavailable=_int_or_percent(spec.get("maxUnavailable")),
        disruptions_allowed=int(status.get("disruptionsAllowed") or 0),
        current_healthy=int(status.get("currentHealthy") or 0),
        desired_healthy=int(status.get("desiredHealthy") or 0),
        expected_pods=int(status.get("expectedPods") or 0),
        observed=int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0),
        uid=meta.get("uid"),
        resource_version=meta.get("resourceVersion"),
    )
