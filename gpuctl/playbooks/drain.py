"""Emptying a node of its GPU pods for relabel-mig, and the cordon patches scale-pool shares.

Planning: the node's GPU pods come from `node_pods.gpu_pods_on` (uid and
resourceVersion to pin them), `must_leave` says which ones have to go,
`refusals` why they cannot (node_pods' protection rules, shared with every
playbook), and `cordon_step` / `eviction_steps` / `uncordon_step` build the
steps, each tried as a server-side dry run as the requester
(`dry_run_steps`): the eviction dry run runs the PodDisruptionBudget check too.

Executing: `patch_node` (re-read, uid pinned, applied only to the version read),
the evictions themselves (gpuctl.playbooks.evictions) and `wait_until_drained`
(until no GPU pod is left, refusing a GPU pod the plan did not list).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from gpuctl.errors import GpuctlError
from gpuctl.playbooks.acting import ActingClient, ObjectResult
from gpuctl.playbooks.kubeapi import JSON, ObjectRef
from gpuctl.playbooks.logic import ExecContext
from gpuctl.playbooks.node_pods import NodePod, drain_refusals, gpu_pods_on, opted_out, try_eviction
from gpuctl.playbooks.plan import Change, Step, TargetRef
from gpuctl.playbooks.spec import Guardrails, Protected
from gpuctl.playbooks.stepkit import StepCalls, dry_run, write_on_fresh

# DaemonSet GPU clients that name this label in their nodeSelector are paused by the MIG manager itself (v0.15).
MIG_PAUSED_CLIENT_LABEL = "nvidia.com/gpu.deploy.client"
UNSCHEDULABLE_FIELD = "spec.unschedulable"
_DRAIN_POLL_S = 2.0
_CONFLICT_RETRIES = 5  # a node's version moves with every heartbeat


def must_leave(pod: NodePod) -> bool:
    """A GPU pod that holds the node's GPUs until it is gone (the MIG manager pauses its own clients)."""
    return bool(pod.gpus) and MIG_PAUSED_CLIENT_LABEL not in pod.node_selector


def refusals(node: str, leaving: Sequence[NodePod], *, drain: bool, guardrails: Guardrails) -> list[str]:
    """Why the node cannot be emptied of `leaving` (its GPU pods that must go): not allowed to drain, protected pods
    (whatever `on_match` says: a node that must be empty cannot skip one), more pods than the guardrail allows."""
    if not leaving:
        return []
    if not drain:
        listed = ", ".join(f"{p.key} ({p.gpu_count} GPU)" for p in leaving)
        return [f"node {node} runs GPU pods: {listed}; plan with drain=true to evict them first"]
    return drain_refusals([(node, pod) for pod in leaving], guardrails.protected, guardrails.max_pods)


def node_opt_out(labels: Mapping[str, str], annotations: Mapping[str, str], protected: Protected) -> str | None:
    """The node opt-out the node carries (`{object: node, ...}`), as text, or None."""
    rule = opted_out(protected.opt_out, labels, annotations, of="node")
    return None if rule is None else str(rule)


# -- steps ------------------------------------------------------------------------


def cordon_step(node: TargetRef, detail: str = "no new pods while the node changes", *, cordoned: bool = False) -> Step:
    return Step(action="cordon_node", target=node, changes=(Change(field=UNSCHEDULABLE_FIELD, before=cordoned, after=True),),
                detail=detail)  # fmt: skip


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


CORDON_PATCH: JSON = {"spec": {"unschedulable": True}}
UNCORDON_PATCH: JSON = {"spec": {"unschedulable": None}}  # as `kubectl uncordon`: the field removed


async def dry_run_steps(
    acting: ActingClient, steps: Sequence[Step], node_patches: Mapping[str, JSON] | None = None
) -> tuple[list[str], list[str]]:
    """Each eviction, cordon and uncordon of `steps`, and each node step `node_patches` has a patch for (by action),
    as a server-side dry run as the requester.

    Returns (blocked, warnings): a refusal blocks the plan; a budget that refuses
    an eviction now only warns (the run retries it until its deadline)."""
    blocked: list[str] = []
    warnings: list[str] = []
    patches = {"cordon_node": CORDON_PATCH, "uncordon_node": UNCORDON_PATCH, **(node_patches or {})}
    for step in steps:
        target, what = step.target, f"dry run of {step.action} on {step.target.key}"
        if step.action == "evict_pods":
            await try_eviction(acting, target, blocked, warnings)
        elif (patch := patches.get(step.action)) is not None:
            await dry_run(
                blocked, acting.patch(node_ref(target), patch, resource_version=target.resource_version, dry_run=True), what
            )
    return blocked, warnings


# -- executing ---------------------------------------------------------------------------


async def patch_node(
    ctx: ExecContext, step: int, target: TargetRef, patch: JSON, *, still_as_planned: Callable[[JSON], str | None]
) -> ObjectResult:
    """Re-read the node, refuse (GpuctlError) if it is another node or `still_as_planned` objects, and patch
    exactly the version read; a Conflict (the node moved in between: heartbeats, other writers) reads again."""
    ref = node_ref(target)

    def check(read: ObjectResult) -> None:
        if target.uid and read.uid != target.uid:
            raise GpuctlError(f"node {target.name} was replaced since the plan (uid {read.uid}, planned {target.uid})")
        if (why := still_as_planned(read.object)) is not None:
            raise GpuctlError(why)

    def write(read: ObjectResult) -> Awaitable[ObjectResult]:
        return ctx.clients.acting.patch(ref, patch, resource_version=read.resource_version)

    read = ctx.clients.reader.get
    return await write_on_fresh(StepCalls(ctx, step), lambda: read(ref), check, write, attempts=_CONFLICT_RETRIES)


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
