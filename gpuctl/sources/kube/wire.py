"""The Kubernetes objects as trim reads them: only those fields, decoded straight from the API's bytes.

A pod as the API server sends it is mostly what gpuctl never reads (managedFields, volumes, images, container
statuses). `json.loads` builds all of it, then trim throws it away: at 10,000 pods that decoding was most of
the list's CPU. msgspec decodes into these TypedDicts instead: plain dicts holding only the declared keys,
the rest skipped unbuilt (a 500-pod page: ~2.5 ms instead of ~29 ms), so trim.py reads them as before.

Each kind's type declares every field its trim function reads: a field trim starts reading must be added
here. tests/unit/sources/kube/test_wire.py records every key trim looks up and fails on one not declared;
tests/integration/test_kubernetes_source.py holds the store built through these equal to the real API
server's lists trimmed in full. Types are the API's; an object
that breaks them (a value of another type) fails the page's decoding with `msgspec.ValidationError`, and the
reflector reads that page in full with `json` instead, where trim skips the odd object alone
(`Decoders.page` / `event`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar

import msgspec

Item = TypeVar("Item")

class OwnerReference(TypedDict, total=False):
    kind: str
    name: str
    uid: str
    controller: bool


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    resourceVersion: str
    generation: int
    creationTimestamp: str
    deletionTimestamp: str
    labels: dict[str, str]
    ownerReferences: list[OwnerReference]


class Condition(TypedDict, total=False):
    type: str
    status: str


class Resources(TypedDict, total=False):
    requests: dict[str, Any]  # quantities: strings, or numbers from some clients
    limits: dict[str, Any]


class Container(TypedDict, total=False):
    resources: Resources
    restartPolicy: str  # "Always" on an init container: a sidecar


class PodSpec(TypedDict, total=False):
    nodeName: str
    priorityClassName: str
    containers: list[Container]
    initContainers: list[Container]


class PodStatus(TypedDict, total=False):
    phase: str
    conditions: list[Condition]


class Pod(TypedDict, total=False):
    kind: str
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus


class Taint(TypedDict, total=False):
    key: str
    value: str
    effect: str


class NodeSpec(TypedDict, total=False):
    taints: list[Taint]
    unschedulable: bool


class NodeStatus(TypedDict, total=False):
    capacity: dict[str, Any]
    allocatable: dict[str, Any]
    conditions: list[Condition]


class Node(TypedDict, total=False):
    kind: str
    metadata: ObjectMeta
    spec: NodeSpec
    status: NodeStatus


class QuotaSpec(TypedDict, total=False):
    hard: dict[str, Any]
    scopes: list[str]
    scopeSelector: Any


class QuotaStatus(TypedDict, total=False):
    hard: dict[str, Any]
    used: dict[str, Any]


class ResourceQuota(TypedDict, total=False):
    kind: str
    metadata: ObjectMeta
    spec: QuotaSpec
    status: QuotaStatus


class Namespace(TypedDict, total=False):
    kind: str
    metadata: ObjectMeta


class PodTemplate(TypedDict, total=False):
    spec: PodSpec


class ControllerSpec(TypedDict, total=False):
    template: PodTemplate


class Controller(TypedDict, total=False):
    """A ReplicaSet or a Job: who controls it, and whether its pods ask for GPUs."""

    kind: str
    metadata: ObjectMeta
    spec: ControllerSpec


class PdbSpec(TypedDict, total=False):
    selector: Any  # a label selector, parsed (and judged) by trim
    minAvailable: Any  # int or percent string
    maxUnavailable: Any


class PdbStatus(TypedDict, total=False):
    disruptionsAllowed: int
    currentHealthy: int
    desiredHealthy: int
    expectedPods: int
    observedGeneration: int


class PodDisruptionBudget(TypedDict, total=False):
    kind: str
    metadata: ObjectMeta
    spec: PdbSpec
    status: PdbStatus


# "continue" is a Python keyword: no class syntax for this one.
ListMeta = TypedDict("ListMeta", {"resourceVersion": str, "continue": str}, total=False)


class Page(TypedDict, Generic[Item], total=False):
    metadata: ListMeta
    items: list[Item]


class Event(TypedDict, Generic[Item], total=False):
    type: str
    object: Item


@dataclass(frozen=True, slots=True)
class Decoders:
    """A list page's and a watch line's decoders for one kind's wire type (or for full JSON, with None)."""

    _page: msgspec.json.Decoder[Any] | None
    _event: msgspec.json.Decoder[Any] | None

    @classmethod
    def of(cls, item: type | None) -> Decoders:
        if item is None:
            return cls(None, None)
        return cls(msgspec.json.Decoder(Page[item]), msgspec.json.Decoder(Event[item]))  # type: ignore[valid-type]

    def page(self, raw: bytes) -> Any:
        """A list page (`metadata`, `items`). Raises ValueError for bytes that are not JSON."""
        return _decode(self._page, raw)

    def event(self, raw: bytes) -> Any:
        """A watch event (`type`, `object`). Raises ValueError for bytes that are not JSON."""
        event = _decode(self._event, raw)
        if self._event is not None and isinstance(event, dict) and event.get("type") == "ERROR":
            return json.loads(raw)  # its object is a Status (code, message), not an object of the kind
        return event


def _decode(decoder: msgspec.json.Decoder[Any] | None, raw: bytes) -> Any:
    if decoder is not None:
        try:
            return decoder.decode(raw)
        except msgspec.ValidationError:
            pass  # off the schema somewhere: read it all, so that trim judges each object on its own
    return json.loads(raw)
