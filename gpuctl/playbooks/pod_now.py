"""A pod as the API server returns it now, and the fields of it a reclaim plan records and compares.

reclaim-idle-gpus re-reads every pod it plans for or acts on (`read_pod`): what is
there now decides, never the snapshot alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.kubeapi import JSON, ApiCall, ObjectRef, check

NODE, PHASE, LABELS = "spec.nodeName", "status.phase", "metadata.labels"


@dataclass(frozen=True, slots=True)
class PodNow:
    """A pod as the API server returned it just now."""

    object: JSON
    uid: str
    resource_version: str
    node: str | None
    phase: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    terminating: bool

    @classmethod
    def of(cls, obj: JSON) -> PodNow:
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        return cls(
            object=obj,
            uid=str(meta.get("uid", "")),
            resource_version=str(meta.get("resourceVersion", "")),
            node=spec.get("nodeName") or None,
            phase=status.get("phase") or "Pending",
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            terminating=meta.get("deletionTimestamp") is not None,
        )

    def value(self, field_path: str) -> Any:
        """The current value of a field an evict step recorded as its before-value."""
        if field_path == NODE:
            return self.node
        if field_path == PHASE:
            return self.phase
        if field_path == LABELS:
            return dict(self.labels)
        if field_path.startswith("metadata.annotations[") and field_path.endswith("]"):
            return self.annotations.get(field_path[len("metadata.annotations[") : -1])
        raise ValueError(f"reclaim records no field {field_path!r}")


async def read_pod(client: ActingClient, namespace: str, name: str) -> tuple[PodNow | None, ApiCall]:
    """The pod now (None when it does not exist), with the call that read it; other refusals raise."""
    ref = ObjectRef(plural="pods", namespace=namespace, name=name)
    response = await client.api.request("GET", ref.path(), acting_as=client.identity)
    if response.call.status == 404:
        return None, response.call
    return PodNow.of(check(response, what=f"get {ref}")), response.call
