"""Emptying a node of its GPU pods, for playbooks that must (relabel-mig; a scale-down that drains).

Planning: `gpu_pods_on` reads the node's GPU pods fresh from the API server
(uid and resourceVersion to pin them), `must_leave` says which ones have to
go, `protection` which the playbook's guardrails protect, and `node_steps` /
`eviction_steps` build cordon, evict and uncordon steps, each tried as a
server-side dry run as the requester (`dry_run_steps`): the eviction dry run
runs the PodDisruptionBudget check too.

Executing: `patch_node` (re-read, uid pinned, applied only to the version read),
`evict_all` (the Eviction API only; a budget's refusal is retried with backoff
until the run's deadline, never bypassed; a pod under several budgets is
reported) and `wait_until_drained` (until no GPU pod is left, refusing a GPU
pod the plan did not list).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from gpuctl.errors import Conflict, GpuctlError
from gpuctl.playbooks.acting import ActingClient, ObjectResult
from gpuctl.playbooks.context import DeadlinePassed
from gpuctl.playbooks.kubeapi import JSON, ApiCall, ObjectRef, check
from gpuctl.playbooks.logic import ExecContext, StepOutcome
from gpuctl.playbooks.plan import Change, Step, TargetRef
from gpuctl.playbooks.spec import Guardrails, Protected
from gpuctl.sources.kube.trim import controller_ref, pod_gpu_requests

# DaemonSet GPU clients that name this label in their nodeSelector are paused by the MIG manager itself (v0.15).
MIG_PAUSED_CLIENT_LABEL = "nvidia.com/gpu.deploy.client"
UNSCHEDULABLE_FIELD = "spec.unschedulable"
_FIRST_RETRY_S = 5.0
_MAX_RETRY_S = 60.0
_DRAIN_POLL_S = 2.0
_CONFLICT_RETRIES = 5


@dataclass(frozen=True, slots=True)
class NodePod:
    """A GPU pod bound to the node, as read."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    gpus: Mapping[str, int]
    owner_kind: str | None
    priority_class: str | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    node_selector: Mapping[str, str]

    @classmethod
    def read(cls, obj: Mapping[str, Any]) -> NodePod:
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            resource_version=meta.get("resourceVersion", ""),
            gpus=pod_gpu_requests(spec, obj),
            owner_kind=controller_ref(meta)[0],
            priority_class=spec.get("priorityClassName"),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            node_selector=dict(spec.get("nodeSelector") or {}),
        )

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def gpu_count(self) -> int:
        return sum(self.gpus.values())

    @property
    def target(self) -> TargetRef:
        return TargetRef(
            kind="Pod", namespace=self.namespace, name=self.name, uid=self.uid, resource_version=self.resource_version
        )


def must_leave(pod: NodePod) -> bool:
    """A GPU pod that holds the node's GPUs until it is gone (the MIG manager pauses its own clients)."""
    return bool(pod.gpus) and MIG_PAUSED_CLIENT_LABEL not in pod.node_selector


async def gpu_pods_on(reader: ActingClient, node: str) -> tuple[list[NodePod], ApiCall]:
    """The node's non-terminated pods that request GPUs (whole, shared or MIG), fresh from the API server."""
    params = {"fieldSelector": f"spec.nodeName={node},status.phase!=Succeeded,status.phase!=Failed"}
    response = await reader.api.request("GET", "/api/v1/pods", acting_as=reader.identity, params=params)
    body = check(response, what=f"list the pods on node {node}")
    pods = [NodePod.read(obj) for obj in body.get("items") or ()]
    return [pod for pod in pods if pod.gpus], response.call


def protection(pod: NodePod, protected: Protected) -> str | None:
    """Why the guardrails keep this pod from being evicted, or None."""
    if any(fnmatchcase(pod.namespace, glob) for glob in protected.namespaces):
        return f"namespace {pod.namespace} is protected"
    if pod.priority_class and any(fnmatchcase(pod.priority_class, glob) for glob in protected.priority_classes):
        return f"priority class {pod.priority_class} is protected"
    for rule in protected.opt_out:
        if rule.object != "pod":
            continue
        carried = pod.labels.get(rule.label) if rule.label else pod.annotations.get(rule.annotation or "")
        if carried == rule.value:
            return f"it opted out ({rule})"
    if pod.owner_kind == "DaemonSet":
        return "a DaemonSet pod comes back on a cordoned node"
    return None


def refusals(node: str, leaving: Sequence[NodePod], *, drain: bool, guardrails: Guardrails) -> list[str]:
    """Why the node cannot be emptied of `leaving` (its GPU pods that must go): not allowed to drain, protected pods
    (whatever `on_match` says: a node that must be empty cannot skip one), more pods than the guardrail allows."""
    if not leaving:
        return []
    if not drain:
        listed = ", ".join(f"{p.key} ({p.gpu_count} GPU)" for p in leaving)
        return [f"node {node} runs GPU pods: {listed}; plan with drain=true to evict them first"]
    reasons = [f"{p.key} cannot be evicted: {why}" for p in leaving if (why := protection(p, guardrails.protected))]
    if guardrails.max_pods is not None and len(leaving) > guardrails.max_pods:
        reasons.append(
            f"draining node {node} evicts {len(leaving)} GPU pods, more than the {guardrails.max_pods} allowed per run"
        )
    return reasons


def node_opt_out(labels: Mapping[str, str], annotations: Mapping[str, str], protected: Protected) -> str | None:
    """The node opt-out the node carries (`{object: node, ...}`), as text, or None."""
    for rule in protected.opt_out:
        if rule.object != "node":
            continue
        carried = labels.get(rule.label) if rule.label else annotations.get(rule.annotation or "")
        if carried == rule.value:
            return str(rule)
    return None


# -- steps ------------------------------------------------------------------------


def cordon_step(node: TargetRef) -> Step:
    return Step(action="cordon_node", target=node, changes=(Change(field=UNSCHEDULABLE_FIELD, before=False, after=True),),
                detail="no new pods while the node changes")  # fmt: skip


def uncordon_step(node: TargetRef, detail: str) -> Step:
    return Step(action="uncordon_node", target=node, changes=(Change(field=UNSCHEDULABLE_FIELD, before=True, after=False),),
                detail=detail)  # fmt: skip


def eviction_steps(pods: Sequence[NodePod]) -> list[Step]:
    return [
        Step(
            action="evict_pods",
            target=pod.target,
            detail=", ".join(f"{count}× {name.removeprefix('nvidia.com/')}" for name, count in sorted(pod.gpus.items()))
            + (f", {pod.owner_kind}" if pod.owner_kind else ", no controller: it will not come back"),
        )
        for pod in pods
    ]


def node_ref(target: TargetRef) -> ObjectRef:
    return ObjectRef(plural="nodes", name=target.name)


CORDON: JSON = {"spec": {"unschedulable": True}}
UNCORDON: JSON = {"spec": {"unschedulable": None}}  # as `kubectl uncordon`: the field removed


async def dry_run_steps(
    acting: ActingClient, steps: Sequence[Step], node_patches: Mapping[str, JSON] | None = None
) -> tuple[list[str], list[str]]:
    """Each eviction, cordon and uncordon of `steps`, and each node step `node_patches` has a patch for (by action),
    as a server-side dry run as the requester.

    Returns (blocked, warnings): a refusal blocks the plan; a budget that refuses
    an eviction now only warns (the run retries it until its deadline)."""
    blocked: list[str] = []
    warnings: list[str] = []
    for step in steps:
        target = step.target
        try:
            if step.action == "evict_pods":
                result = await acting.evict(target.namespace or "", target.name, uid=target.uid, dry_run=True)
                if result.outcome == "pdb_refused":
                    warnings.append(f"{target.namespace}/{target.name}: a PodDisruptionBudget refuses its eviction now "
                                    f"({result.disruption_budget or result.message}); the run retries until its deadline")  # fmt: skip
                elif result.outcome == "multiple_pdbs":
                    blocked.append(f"{target.namespace}/{target.name} is under several PodDisruptionBudgets: the Eviction API "
                                   "refuses it whatever they allow; fix the budgets first")  # fmt: skip
                elif result.outcome != "evicted":
                    blocked.append(f"{target.namespace}/{target.name} changed while planning ({result.message}): plan again")
                continue
            patch = {"cordon_node": CORDON, "uncordon_node": UNCORDON, **(node_patches or {})}.get(step.action)
            if patch is not None:
                await acting.patch(node_ref(target), patch, resource_version=target.resource_version, dry_run=True)
        except GpuctlError as e:
            blocked.append(f"dry run of {step.action} on {target.key}: {e}")
    return blocked, warnings


# -- executing ---------------------------------------------------------------------------


async def patch_node(
    ctx: ExecContext, step: int, target: TargetRef, patch: JSON, *, still_as_planned: Callable[[JSON], str | None]
) -> ObjectResult:
    """Re-read the node, refuse (GpuctlError) if it is another node or `still_as_planned` objects, and patch
    exactly the version read; a Conflict (the node moved in between: heartbeats, other writers) reads again."""
    reader, acting = ctx.clients.reader, ctx.clients.acting
    ref = node_ref(target)
    for attempt in range(_CONFLICT_RETRIES):
        read = await reader.get(ref)
        await ctx.record(read.call, step=step)
        if target.uid and read.uid != target.uid:
            raise GpuctlError(f"node {target.name} was replaced since the plan (uid {read.uid}, planned {target.uid})")
        if (why := still_as_planned(read.object)) is not None:
            raise GpuctlError(why)
        try:
            result = await acting.patch(ref, patch, resource_version=read.resource_version)
        except Conflict:
            if attempt == _CONFLICT_RETRIES - 1:
                raise
            continue
        await ctx.record(result.call, step=step)
        return result
    raise AssertionError("unreachable")


async def evict_all(ctx: ExecContext, steps: Sequence[tuple[int, Step]]) -> list[StepOutcome]:
    """Evict each planned pod (uid-pinned) until every one is gone or refused for good, or the deadline comes."""
    outcomes: list[StepOutcome] = []
    waiting = list(steps)
    delay = _FIRST_RETRY_S
    while waiting:
        refused: list[tuple[int, Step, str, int | None]] = []
        for index, step in waiting:
            pod = step.target
            try:
                result = await ctx.clients.acting.evict(pod.namespace or "", pod.name, uid=pod.uid)
            except GpuctlError as e:
                outcomes.append(StepOutcome(index=index, status="failed", message=str(e)))
                continue
            await ctx.record(result.call, step=index)
            calls = (result.call,)
            if result.outcome == "evicted":
                outcomes.append(StepOutcome(index=index, status="done", message=f"evicted {pod.key}", calls=calls))
                await ctx.progress(f"evicted {pod.namespace}/{pod.name}", step=index)
            elif result.outcome in ("gone", "precondition_failed"):
                gone = "already gone" if result.outcome == "gone" else "replaced by another pod of that name (not evicted)"
                outcomes.append(StepOutcome(index=index, status="done", message=f"{pod.key}: {gone}", calls=calls))
            elif result.outcome == "multiple_pdbs":
                message = f"{pod.key} is under several PodDisruptionBudgets; the Eviction API refuses it: {result.message}"
                outcomes.append(StepOutcome(index=index, status="failed", message=message, calls=calls))
            else:
                refused.append((index, step, result.disruption_budget or result.message, result.retry_after_s))
        if not refused:
            break
        wait_s = max([delay, *(float(r[3]) for r in refused if r[3])])
        names = ", ".join(f"{s.target.namespace}/{s.target.name}" for _, s, _, _ in refused)
        await ctx.progress(f"PodDisruptionBudget refused {names}; retrying in {wait_s:.0f} s")
        try:
            await ctx.sleep(wait_s)
        except DeadlinePassed:
            for index, step, why, _ in refused:
                message = (
                    f"{step.target.namespace}/{step.target.name}: a PodDisruptionBudget still refused at the deadline ({why})"
                )
                outcomes.append(StepOutcome(index=index, status="refused", message=message))
            break
        waiting = [(index, step) for index, step, _, _ in refused]
        delay = min(delay * 2, _MAX_RETRY_S)
    return sorted(outcomes, key=lambda o: o.index)


async def wait_until_drained(ctx: ExecContext, node: str, planned: set[str], *, step: int) -> str | None:
    """Wait until no GPU pod that must leave is on the node; the reason it never will, or None.

    A GPU pod the plan does not evict (uid not in `planned`) stops the wait: the
    run never does more than its plan. DeadlinePassed propagates."""
    while True:
        pods, call = await gpu_pods_on(ctx.clients.reader, node)
        await ctx.record(call, step=step)
        left = [pod for pod in pods if must_leave(pod)]
        stranger = [pod.key for pod in left if pod.uid not in planned]
        if stranger:
            return f"GPU pods the plan does not evict are on node {node}: {', '.join(stranger)}; plan again"
        if not left:
            return None
        await ctx.progress(f"waiting for {len(left)} evicted GPU pod(s) to leave {node}", step=step)
        await ctx.sleep(_DRAIN_POLL_S)
