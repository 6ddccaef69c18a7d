"""The wire types hold every field trim reads: trim on an object's wire form equals trim on the whole object,
and every key trim looks up (recorded as it reads) is declared in the kind's wire type."""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec
import pytest

from gpuctl.sources.kube import wire
from gpuctl.sources.kube.trim import trim_job, trim_namespace, trim_node, trim_pdb, trim_pod, trim_quota, trim_replicaset

Path = tuple[str, ...]
ANY_BELOW = "*"  # a declared dict[str, ...] or Any: whatever trim reads below it is decoded

META = {
    "name": "x", "namespace": "ml", "uid": "u-1", "resourceVersion": "42", "generation": 3,
    "creationTimestamp": "2026-01-01T12:00:00Z", "deletionTimestamp": "2026-01-02T12:00:00Z",
    "labels": {"app": "vllm", "nvidia.com/gpu.product": "H100", "karpenter.sh/nodepool": "h100"},
    "ownerReferences": [{"apiVersion": "v1", "kind": "Other", "name": "o", "uid": "o-1"},
                        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "r-1", "controller": True}],
    "annotations": {"unread": "yes"}, "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
}  # fmt: skip
CONTAINERS = {
    "containers": [{"name": "main", "image": "i", "resources": {"requests": {"nvidia.com/gpu": "2", "cpu": "1"}}},
                   {"name": "mig", "resources": {"limits": {"nvidia.com/mig-1g.10gb": 1}}}],
    "initContainers": [{"name": "warm", "resources": {"limits": {"nvidia.com/gpu": "4"}}},
                       {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"nvidia.com/gpu": "1"}}}],
}  # fmt: skip
POD = {
    "kind": "Pod", "metadata": META,
    "spec": {**CONTAINERS, "nodeName": "gpu-1", "priorityClassName": "high", "volumes": [{"name": "v"}]},
    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [{}]},
}  # fmt: skip
NODE = {
    "kind": "Node", "metadata": META,
    "spec": {"unschedulable": True, "taints": [{"key": "nvidia.com/gpu", "value": "x", "effect": "NoSchedule"}]},
    "status": {"capacity": {"nvidia.com/gpu": "8", "cpu": "96"}, "allocatable": {"nvidia.com/gpu": "7"},
               "conditions": [{"type": "Ready", "status": "True"}], "images": [{"names": ["a"]}]},
}  # fmt: skip
QUOTA = {
    "kind": "ResourceQuota", "metadata": META,
    "spec": {"hard": {"requests.nvidia.com/gpu": "8"}},
    "status": {"hard": {"requests.nvidia.com/gpu": "8"}, "used": {"requests.nvidia.com/gpu": "3", "pods": "9"}},
}  # fmt: skip
SCOPED_QUOTA = {**QUOTA, "spec": {"hard": {"requests.nvidia.com/gpu": "8"}, "scopes": ["BestEffort"],
                                  "scopeSelector": {"matchExpressions": [{"operator": "Exists", "scopeName": "PriorityClass"}]}}}  # fmt: skip
CONTROLLER = {"kind": "ReplicaSet", "metadata": META, "spec": {"replicas": 2, "template": {"metadata": {"labels": {}}, "spec": CONTAINERS}}}
PDB = {
    "kind": "PodDisruptionBudget", "metadata": META,
    "spec": {"selector": {"matchLabels": {"app": "vllm"}, "matchExpressions": [{"key": "t", "operator": "In", "values": ["a"]}]},
             "minAvailable": "50%", "maxUnavailable": 1},
    "status": {"disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3, "observedGeneration": 3},
}  # fmt: skip

CASES: list[tuple[str, Callable[[Any], Any], type, dict[str, Any]]] = [
    ("pod", trim_pod, wire.Pod, POD),
    ("pod without controller", trim_pod, wire.Pod, {**POD, "metadata": {**META, "ownerReferences": []}}),
    ("node", partial(trim_node, keep_labels=frozenset({"karpenter.sh/nodepool"})), wire.Node, NODE),
    ("quota", trim_quota, wire.ResourceQuota, QUOTA),
    ("quota from spec", trim_quota, wire.ResourceQuota, {**QUOTA, "status": {}}),
    ("scoped quota", trim_quota, wire.ResourceQuota, SCOPED_QUOTA),
    ("namespace", trim_namespace, wire.Namespace, {"kind": "Namespace", "metadata": META, "spec": {"finalizers": ["k"]}}),
    ("replicaset", trim_replicaset, wire.Controller, CONTROLLER),
    ("job", trim_job, wire.Controller, {**CONTROLLER, "kind": "Job"}),
    ("pdb", trim_pdb, wire.PodDisruptionBudget, PDB),
]


class Reading(dict[str, Any]):
    """A dict that records the path of every key looked up in it (and in what it holds)."""

    def __init__(self, data: dict[str, Any], path: Path, seen: set[Path]) -> None:
        super().__init__({k: _reading(v, (*path, k), seen) for k, v in data.items()})
        self._path, self._seen = path, seen

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self._seen.add((*self._path, key))
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self._seen.add((*self._path, key))
        return super().__getitem__(key)


def _reading(value: Any, path: Path, seen: set[Path]) -> Any:
    if isinstance(value, dict):
        return Reading(value, path, seen)
    if isinstance(value, list):
        return [_reading(v, (*path, "[]"), seen) for v in value]
    return value


def declared(t: Any, path: Path = ()) -> set[Path]:
    """Every path a wire type declares; ANY_BELOW ends those it decodes whole."""
    if typing.is_typeddict(t):
        out: set[Path] = set()
        for key, value in typing.get_type_hints(t).items():
            out |= {(*path, key)} | declared(value, (*path, key))
        return out
    origin = typing.get_origin(t)
    if origin is list:
        return declared(typing.get_args(t)[0], (*path, "[]"))
    if origin is dict or t is Any:
        return {(*path, ANY_BELOW)}
    return set()


def covered(path: Path, paths: set[Path]) -> bool:
    return path in paths or any((*path[:i], ANY_BELOW) in paths for i in range(len(path)))


@pytest.mark.parametrize(("trim", "kind", "obj"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_trim_reads_only_what_the_wire_type_declares(trim: Callable[[Any], Any], kind: type, obj: dict[str, Any]) -> None:
    seen: set[Path] = set()
    whole = trim(Reading(obj, (), seen))
    undeclared = sorted(p for p in seen if not covered(p, declared(kind)))
    assert not undeclared, f"trim reads {undeclared}, which {kind.__name__} does not declare"
    narrowed = msgspec.json.decode(json.dumps(obj), type=kind)
    assert trim(narrowed) == whole
    assert "managedFields" not in narrowed.get("metadata", {})  # what trim does not read is not decoded


def test_a_page_or_event_off_the_schema_is_read_in_full() -> None:
    decoders = wire.Decoders.of(wire.Pod)
    odd = {**POD, "spec": {**POD["spec"], "nodeName": 7}}  # a value of another type: the page falls back
    page = decoders.page(json.dumps({"metadata": {"continue": "t"}, "items": [POD, odd]}).encode())
    assert page["items"][1]["spec"]["nodeName"] == 7 and "managedFields" in page["items"][0]["metadata"]
    typed = decoders.page(json.dumps({"metadata": {"resourceVersion": "9", "continue": "t"}, "items": [POD]}).encode())
    assert typed["metadata"] == {"resourceVersion": "9", "continue": "t"} and "managedFields" not in typed["items"][0]["metadata"]
    error = {"type": "ERROR", "object": {"kind": "Status", "status": "Failure", "message": "too old", "reason": "Expired", "code": 410}}
    assert decoders.event(json.dumps(error).encode()) == error  # a Status, not a pod: its code and message survive
    with pytest.raises(ValueError):
        decoders.page(b'{"items": [')
