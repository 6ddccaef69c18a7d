"""scale-pool's steps: each one's target and field as the plan records them, how
to read that field from the live object, what changed since the plan, and the
write that sets it (as the requester, on the version just read).

| action | target | field (before → after) |
|---|---|---|
| cordon_node / uncordon_node | Node | spec.unschedulable (false → true / true → false) |
| evict_pods | Pod | spec.nodeName (the node → null): the pod leaves it |
| mark_machine_for_deletion | Machine | metadata.annotations[cluster.x-k8s.io/delete-machine] (null → "yes"; undo: back) |
| scale_machinedeployment | MachineDeployment | spec.replicas (through the scale subresource) |
| set_nodepool_gpu_limit | NodePool | spec.limits[nvidia.com/gpu] (null = no limit) |
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from gpuctl.playbooks.acting import ActingClient, ObjectResult, ScaleResult
from gpuctl.playbooks.drain import CORDON_PATCH, UNCORDON_PATCH, UNSCHEDULABLE_FIELD
from gpuctl.playbooks.kubeapi import JSON, ObjectRef
from gpuctl.playbooks.plan import Change, Step, TargetRef
from gpuctl.playbooks.pool_rules import DELETE_MACHINE_ANNOTATION
from gpuctl.playbooks.quantities import number, quantity
from gpuctl.playbooks.spec import Action
from gpuctl.playbooks.stepkit import changed_since_plan
from gpuctl.state.resources import GPU

CORDON = Action.cordon_node.value
UNCORDON = Action.uncordon_node.value
EVICT = Action.evict_pods.value
MARK = Action.mark_machine_for_deletion.value
SCALE = Action.scale_machinedeployment.value
LIMIT = Action.set_nodepool_gpu_limit.value

NODE_FIELD = "spec.nodeName"
MARK_FIELD = f"metadata.annotations[{DELETE_MACHINE_ANNOTATION}]"
REPLICAS_FIELD = "spec.replicas"
LIMIT_FIELD = f"spec.limits[{GPU}]"
MARK_VALUE = "yes"  # Cluster API looks only at the annotation's presence

PLURALS = {
    "Node": "nodes",
    "Pod": "pods",
    "Machine": "machines",
    "MachineDeployment": "machinedeployments",
    "NodePool": "nodepools",
}


def object_ref(target: TargetRef) -> ObjectRef:
    group, _, version = target.api_version.rpartition("/")
    return ObjectRef(group=group, version=version, plural=PLURALS[target.kind], namespace=target.namespace, name=target.name)


def target_of(obj: JSON, kind: str, api_version: str = "v1") -> TargetRef:
    """A step's target pinned to the object as it was read."""
    meta = obj["metadata"]
    return TargetRef(
        kind=kind,
        api_version=api_version,
        name=meta["name"],
        namespace=meta.get("namespace"),
        uid=meta.get("uid"),
        resource_version=meta.get("resourceVersion"),
    )


def replicas_of(machine_deployment: JSON) -> int:
    """Its desired replicas: spec.replicas, or (left unset, before CAPI's webhook defaults it) what it has."""
    spec, status = machine_deployment.get("spec") or {}, machine_deployment.get("status") or {}
    replicas = spec.get("replicas")
    return int(replicas if replicas is not None else status.get("replicas") or 0)


def read_field(field: str, obj: JSON) -> Any:
    """The value of a step's field in the object as read now, spelt as the plan spells it."""
    spec, meta = obj.get("spec") or {}, obj.get("metadata") or {}
    if field == UNSCHEDULABLE_FIELD:
        return bool(spec.get("unschedulable"))
    if field == NODE_FIELD:
        return spec.get("nodeName")
    if field == MARK_FIELD:
        return MARK_VALUE if DELETE_MACHINE_ANNOTATION in (meta.get("annotations") or {}) else None
    if field == REPLICAS_FIELD:
        return replicas_of(obj)
    if field == LIMIT_FIELD:
        return number(quantity((spec.get("limits") or {}).get(GPU)))
    raise ValueError(f"scale-pool has no step field {field!r}")


def drift(step: Step, obj: JSON) -> str | None:
    """What changed in the step's target since the plan that the step depends on; None when nothing did."""
    return changed_since_plan(step, obj, read_field(step.changes[0].field, obj))


def write(acting: ActingClient, step: Step, fresh: ObjectResult) -> Awaitable[ObjectResult | ScaleResult]:
    """The write that sets the step's field to its `after`, on the version just read (Conflict if it moves)."""
    change, ref, version = step.changes[0], object_ref(step.target), fresh.resource_version
    if change.field == REPLICAS_FIELD:
        return acting.scale(ref, int(change.after), resource_version=version)
    patch: dict[str, Any]
    if change.field == UNSCHEDULABLE_FIELD:
        patch = CORDON_PATCH if change.after else UNCORDON_PATCH
    elif change.field == MARK_FIELD:
        patch = {"metadata": {"annotations": {DELETE_MACHINE_ANNOTATION: change.after}}}
    elif change.field == LIMIT_FIELD:
        patch = {"spec": {"limits": {GPU: None if change.after is None else str(change.after)}}}
    else:
        raise ValueError(f"scale-pool cannot write {change.field!r}")
    return acting.patch(ref, patch, resource_version=version)


def inverse(step: Step, action: str | None = None, detail: str | None = None) -> Step:
    """The step that puts the field back (target no longer pinned to a version: the run moved it)."""
    change = step.changes[0]
    return Step(
        action=action or step.action,
        target=step.target.model_copy(update={"resource_version": None}),
        changes=(Change(field=change.field, before=change.after, after=change.before),),
        gpus=step.gpus,
        detail=detail or f"put back {step.target.key}: {change.field} {change.after} → {change.before}",
    )
