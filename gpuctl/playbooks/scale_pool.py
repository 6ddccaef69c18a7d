"""scale-pool: resize a GPU pool through the object that sizes it.

The pool is resolved to its provider object (pool_rules explains the mapping):
- a Cluster API MachineDeployment: `replicas` through its scale subresource,
  within the cluster-autoscaler's min/max annotations (outside them refused;
  inside, a warning that the autoscaler may resize it again), with a warning
  when the Cluster's ClusterClass topology sets its replicas. A scale-down
  first cordons the nodes that go, evicts their GPU pods when drain=true
  (never otherwise: busy nodes are refused), marks their Machines
  cluster.x-k8s.io/delete-machine so Cluster API removes exactly those, and
  then scales.
- a Karpenter NodePool: `gpu_limit` sets spec.limits nvidia.com/gpu (a merge
  patch). A lower limit removes no node; Karpenter only stops launching.

Every write is a server-side dry run as the requester while planning.
`undo` puts back what a run changed: the replicas of a scale-down, a NodePool's
limit, the cordons and marks of a scale-down that did not get to scale. A
scale-up is not undone blindly: the nodes to remove must be chosen from the
live cluster, so its undo is blocked with the plan command that does it.
"""

from __future__ import annotations

from gpuctl.errors import NotFound
from gpuctl.playbooks.acting import ObjectResult
from gpuctl.playbooks.discovery import CLUSTER_API, KARPENTER, served_version
from gpuctl.playbooks.drain import CORDON_PATCH, UNCORDON_PATCH, cordon_step
from gpuctl.playbooks.evictions import Backoff, evict_planned
from gpuctl.playbooks.kubeapi import JSON, ObjectRef
from gpuctl.playbooks.locks import LockTarget
from gpuctl.playbooks.logic import Check, Clients, Draft, ExecContext, PlanRequest, Report, Verification
from gpuctl.playbooks.node_pods import drain_refusals, gpu_pods_on, try_eviction
from gpuctl.playbooks.plan import Change, Plan, Step, TargetRef
from gpuctl.playbooks.policy import Scope
from gpuctl.playbooks.pool_lookup import machines_of, resolve_pool
from gpuctl.playbooks.pool_rules import (
    DELETE_MACHINE_ANNOTATION,
    MachineInfo,
    Provider,
    autoscaler_bounds,
    choose_victims,
    gpus_per_node,
    limit_checks,
    size_checks,
    topology_warning,
)
from gpuctl.playbooks.pool_steps import (
    CORDON,
    EVICT,
    LIMIT,
    LIMIT_FIELD,
    MARK,
    MARK_FIELD,
    MARK_VALUE,
    NODE_FIELD,
    REPLICAS_FIELD,
    SCALE,
    UNCORDON,
    drift,
    inverse,
    object_ref,
    read_field,
    replicas_of,
    target_of,
    write,
)
from gpuctl.playbooks.quantities import number, quantity
from gpuctl.playbooks.stepkit import StepCalls, StepDone, dry_run, run_steps, wait_until, write_on_fresh
from gpuctl.state.resources import GPU


class _Planning:
    """One plan's draft and whether every dry run passed."""

    def __init__(self, pool: str) -> None:
        self.draft = Draft(scopes=[Scope(kind="pool", name=pool)], locks=[LockTarget(kind="pool", name=pool)])
        self.dry_runs_passed = True

    def tried(self, result: object) -> None:
        """Note a dry run's result (None: the API server refused it)."""
        self.dry_runs_passed = self.dry_runs_passed and result is not None


class ScalePool:
    name = "scale-pool"

    def __init__(self, *, verify_timeout_s: float = 900.0, poll_s: float = 2.0, evict_retry_s: float = 10.0) -> None:
        self.verify_timeout_s = verify_timeout_s  # a cloud takes minutes to provision a node
        self.poll_s = poll_s
        self.backoff = Backoff(first_s=evict_retry_s)  # between attempts a PodDisruptionBudget refused

    # -- plan ---------------------------------------------------------------------------------
    async def plan(self, request: PlanRequest, clients: Clients) -> Draft:
        args = request.args
        pool = str(args["pool"])
        planning = _Planning(pool)
        draft = planning.draft
        resolution = await resolve_pool(pool, request.snapshot, clients.reader)
        draft.warnings += resolution.warnings
        provider = resolution.provider
        if provider is None:
            draft.blocked += resolution.blocked
            return draft
        replicas, gpu_limit = args.get("replicas"), args.get("gpu_limit")
        if provider.kind == "NodePool":
            if not isinstance(gpu_limit, int):
                draft.blocked.append(
                    f"pool {pool} is Karpenter's {provider}, which has no replica count: set gpu_limit (its spec.limits {GPU})"
                )
                return draft
            await self._plan_node_pool(planning, request, clients, provider, gpu_limit)
        else:
            if not isinstance(replicas, int):
                draft.blocked.append(f"pool {pool} is Cluster API's {provider}: set replicas (gpu_limit is for NodePools)")
                return draft
            await self._plan_machine_deployment(planning, request, clients, provider, replicas)
        draft.dry_run = "server" if planning.dry_runs_passed and draft.steps else "none"
        return draft

    async def _plan_node_pool(
        self, planning: _Planning, request: PlanRequest, clients: Clients, provider: Provider, new: int
    ) -> None:
        draft = planning.draft
        version = await served_version(clients.reader, KARPENTER)
        ref = ObjectRef(group=KARPENTER, version=version, plural="nodepools", name=provider.name)
        read = await clients.reader.get(ref)
        before = number(quantity(((read.object.get("spec") or {}).get("limits") or {}).get(GPU)))
        in_pool = quantity(((read.object.get("status") or {}).get("resources") or {}).get(GPU))
        if in_pool is None:  # Karpenter not reporting yet: count the pool's nodes
            in_pool = float(sum(n.gpu_allocatable for n in request.snapshot.nodes if n.pool == request.args["pool"]))
        guard = request.playbook.guardrails
        blocked, warnings = limit_checks(str(provider), before, new, in_pool, max_gpus=guard.max_gpus)
        draft.blocked += blocked
        draft.warnings += warnings
        patch = {"spec": {"limits": {GPU: str(new)}}}
        planning.tried(
            await dry_run(draft.blocked, clients.acting.patch(ref, patch, resource_version=read.resource_version, dry_run=True))
        )
        shown = "none" if before is None else before
        draft.steps.append(
            Step(
                action=LIMIT,
                target=target_of(read.object, "NodePool", f"{KARPENTER}/{version}"),
                changes=(Change(field=LIMIT_FIELD, before=before, after=new),),
                gpus=int(abs(new - (before if before is not None else in_pool))),
                detail=f"{provider}: spec.limits {GPU} {shown} → {new} ({in_pool:g} GPUs in its nodes now)",
            )
        )

    async def _plan_machine_deployment(
        self, planning: _Planning, request: PlanRequest, clients: Clients, provider: Provider, target: int
    ) -> None:
        draft, guard = planning.draft, request.playbook.guardrails
        version = await served_version(clients.reader, CLUSTER_API)
        ref = ObjectRef(
            group=CLUSTER_API, version=version, plural="machinedeployments", namespace=provider.namespace, name=provider.name
        )
        read = await clients.reader.get(ref)
        md = read.object
        annotations = md["metadata"].get("annotations") or {}
        current = replicas_of(md)
        blocked, warnings = size_checks(str(provider), current, target, autoscaler_bounds(annotations), max_nodes=guard.max_nodes)
        draft.blocked += blocked
        draft.warnings += warnings
        per_node = gpus_per_node(
            annotations, (n.gpu_allocatable for n in request.snapshot.nodes if n.pool == request.args["pool"])
        )
        gpus = abs(target - current) * per_node
        if guard.max_gpus is not None and gpus > guard.max_gpus:
            draft.blocked.append(f"{gpus} GPUs ({per_node} per node) exceed this playbook's max_gpus ({guard.max_gpus}) per run")
        if cluster_name := (md.get("spec") or {}).get("clusterName"):
            cluster_ref = ObjectRef(
                group=CLUSTER_API, version=version, plural="clusters", namespace=provider.namespace, name=cluster_name
            )
            try:
                cluster = (await clients.reader.get(cluster_ref)).object
            except NotFound:
                cluster = None
            if (topology := topology_warning(cluster, md)) is not None:
                draft.warnings.append(topology)
        if target < current:
            await self._plan_removal(planning, request, clients, version, md, current - target)
        scale = clients.acting.scale(ref, target, resource_version=read.resource_version, dry_run=True)
        planning.tried(await dry_run(draft.blocked, scale))
        draft.steps.append(
            Step(
                action=SCALE,
                target=target_of(md, "MachineDeployment", f"{CLUSTER_API}/{version}"),
                changes=(Change(field=REPLICAS_FIELD, before=current, after=target),),
                gpus=gpus,
                detail=f"{provider}: {current} → {target} nodes ({per_node} GPUs each)",
            )
        )

    async def _plan_removal(
        self, planning: _Planning, request: PlanRequest, clients: Clients, version: str, md: JSON, remove: int
    ) -> None:
        """Which Machines go, and the cordons, evictions and marks before the scale step."""
        draft, guard = planning.draft, request.playbook.guardrails
        drain = bool(request.args.get("drain"))
        infos: list[MachineInfo] = []
        machines = {m["metadata"]["name"]: m for m in await machines_of(clients.reader, version, md)}
        for name, machine_obj in machines.items():
            node = ((machine_obj.get("status") or {}).get("nodeRef") or {}).get("name")
            pods = tuple((await gpu_pods_on(clients.reader, node))[0]) if node else ()
            marked = DELETE_MACHINE_ANNOTATION in (machine_obj["metadata"].get("annotations") or {})
            infos.append(MachineInfo(name, machine_obj["metadata"].get("uid", ""), node, marked, pods))
        victims = choose_victims(infos, remove, drain=drain)
        draft.blocked += victims.blocked
        if len(victims.machines) > remove:
            names = ", ".join(m.name for m in victims.machines)
            draft.warnings.append(
                f"{len(victims.machines)} Machines are marked for deletion ({names}): Cluster API removes {remove} of them"
            )
        evicted = [(str(m.node), p) for m in victims.machines for p in m.gpu_pods]
        draft.blocked += drain_refusals(evicted, guard.protected, guard.max_pods)
        for machine in victims.machines:
            if machine.node is not None:
                await self._plan_cordon(planning, clients, machine)
        for machine in victims.machines:
            target = target_of(machines[machine.name], "Machine", f"{CLUSTER_API}/{version}")
            if not machine.marked:
                mark = clients.acting.annotate(object_ref(target), {DELETE_MACHINE_ANNOTATION: MARK_VALUE}, dry_run=True)
                planning.tried(await dry_run(draft.blocked, mark))
            draft.steps.append(
                Step(
                    action=MARK,
                    target=target,
                    changes=(Change(field=MARK_FIELD, before=MARK_VALUE if machine.marked else None, after=MARK_VALUE),),
                    detail=f"Machine {machine.name} (node {machine.node or 'none yet'}) goes"
                    + (" (already marked)" if machine.marked else ""),
                )
            )

    async def _plan_cordon(self, planning: _Planning, clients: Clients, machine: MachineInfo) -> None:
        """Cordon the node (no new pods land on it), then evict its GPU pods (only there when drain=true)."""
        draft = planning.draft
        node = (await clients.reader.get(ObjectRef(plural="nodes", name=str(machine.node)))).object
        target = target_of(node, "Node")
        cordoned = bool((node.get("spec") or {}).get("unschedulable"))
        cordon = clients.acting.patch(object_ref(target), CORDON_PATCH, dry_run=True)
        planning.tried(await dry_run(draft.blocked, cordon))
        pods = f", then evict its {len(machine.gpu_pods)} GPU pods" if machine.gpu_pods else " (no GPU pods)"
        draft.steps.append(cordon_step(target, f"cordon {machine.node}{pods}", cordoned=cordoned))
        for pod in machine.gpu_pods:
            target = TargetRef(kind="Pod", name=pod.name, namespace=pod.namespace, uid=pod.uid)
            planning.tried(await try_eviction(clients.acting, target, draft.blocked, draft.warnings))
            draft.steps.append(
                Step(
                    action=EVICT,
                    target=target,
                    changes=(Change(field=NODE_FIELD, before=machine.node, after=None),),
                    detail=f"evict {pod.key} ({pod.gpu_count} GPUs) from {machine.node}",
                )
            )

    # -- stale --------------------------------------------------------------------------------
    async def stale(self, plan: Plan, clients: Clients) -> list[str]:
        reasons: list[str] = []
        drained = _drained_nodes(plan)
        for step in plan.steps:
            try:
                read = await clients.reader.get(object_ref(step.target))
            except NotFound:
                if step.action != EVICT:  # a pod that left by itself needs no eviction
                    reasons.append(f"{step.target.key} is gone")
                continue
            if step.action == EVICT:
                if read.uid != step.target.uid:
                    reasons.append(f"pod {step.target.key} was replaced since the plan")
                continue
            if (why := drift(step, read.object)) is not None:
                reasons.append(why)
            if step.action == CORDON:
                reasons += await self._unplanned_pods(plan, clients, step.target.name, drained)
            if step.action == SCALE:
                bounds = autoscaler_bounds(read.object["metadata"].get("annotations") or {})
                target = int(step.changes[0].after)
                if bounds is not None and not bounds[0] <= target <= bounds[1]:
                    reasons.append(f"{step.target.key}'s autoscaler bounds are {bounds[0]}..{bounds[1]} now, {target} is outside")
                reasons += await self._extra_marks(plan, clients, read.object)
        return reasons

    async def _unplanned_pods(self, plan: Plan, clients: Clients, node: str, drained: set[str]) -> list[str]:
        """GPU pods on a node that goes which the plan does not evict."""
        planned = {step.target.key for step in plan.steps if step.action == EVICT}
        pods = [p for p in (await gpu_pods_on(clients.reader, node))[0] if f"Pod/{p.key}" not in planned]
        if not pods:
            return []
        listed = ", ".join(p.key for p in pods)
        return [f"node {node} runs GPU pods the plan does not evict: {listed}" + ("" if node in drained else " (it was idle)")]

    async def _extra_marks(self, plan: Plan, clients: Clients, md: JSON) -> list[str]:
        """Machines marked for deletion since the plan: Cluster API could remove one of those instead."""
        victims = {step.target.name for step in plan.steps if step.action == MARK}
        if not victims:
            return []
        version = md["apiVersion"].rpartition("/")[2]
        marked = [
            m["metadata"]["name"]
            for m in await machines_of(clients.reader, version, md)
            if DELETE_MACHINE_ANNOTATION in (m["metadata"].get("annotations") or {}) and m["metadata"]["name"] not in victims
        ]
        return [f"Machines {', '.join(marked)} were marked for deletion since the plan"] if marked else []

    # -- execute ------------------------------------------------------------------------------
    async def execute(self, plan: Plan, ctx: ExecContext) -> Report:
        drained = _drained_nodes(plan)

        async def apply(step: Step, calls: StepCalls) -> str:
            if step.action == EVICT:
                return await self._evict(step, calls, ctx)
            change, ref = step.changes[0], object_ref(step.target)
            # A node planned idle must still be: checked before cordoning it and, for a pod landing in between, after.
            idle = step.action == CORDON and step.target.name not in drained
            if idle and (arrived := await _gpu_pods(ctx, step.target.name)):
                raise StepDone("refused", f"GPU pods arrived since the plan: {arrived}; the node is not removed")

            def still_planned(fresh: ObjectResult) -> None:
                if (why := drift(step, fresh.object)) is not None:
                    raise StepDone("refused", why)
                if read_field(change.field, fresh.object) == change.after:
                    raise StepDone("skipped", f"{change.field} is already {change.after}")

            written = await write_on_fresh(
                calls, lambda: ctx.clients.reader.get(ref), still_planned, lambda fresh: write(ctx.clients.acting, step, fresh)
            )
            if idle and (arrived := await _gpu_pods(ctx, step.target.name)):
                await calls.track(ctx.clients.acting.patch(ref, UNCORDON_PATCH, resource_version=written.resource_version))
                raise StepDone(
                    "refused", f"GPU pods arrived since the plan: {arrived}; uncordoned again, the node is not removed"
                )
            return f"{change.field}: {change.before} → {change.after}"

        return await run_steps(plan, ctx, apply)

    async def _evict(self, step: Step, calls: StepCalls, ctx: ExecContext) -> str:
        """Evict through the Eviction API (a refusing PodDisruptionBudget retried until the deadline), then wait until it is gone."""
        outcome = (await evict_planned(ctx, calls, [(calls.index, step)], self.backoff))[calls.index]
        if outcome.status != "done":
            raise StepDone(outcome.status, outcome.message)
        uid = step.target.uid
        ref = object_ref(step.target)

        async def still_there() -> bool:
            try:
                return (await ctx.clients.reader.get(ref)).uid == uid
            except NotFound:
                return False

        gone, _ = await wait_until(
            ctx, still_there, lambda there: not there, timeout_s=self.verify_timeout_s, interval_s=self.poll_s
        )
        if not gone:
            raise StepDone("refused", "evicted, but still terminating: its node is not removed under it")
        return f"{outcome.message}; off node {step.changes[0].before}"

    # -- verify -------------------------------------------------------------------------------
    async def verify(self, plan: Plan, report: Report, ctx: ExecContext) -> Verification:
        checks: list[Check] = []
        for step, outcome in zip(plan.steps, report.outcomes, strict=True):
            name = f"{step.target.key} {step.changes[0].field}"
            if outcome.status in ("refused", "failed"):
                checks.append(Check(name=name, ok=False, detail=f"not done: {outcome.message}"))
            elif step.action == SCALE:
                checks.append(await self._verify_scale(plan, step, ctx))
            elif step.action in (LIMIT, UNCORDON) or (step.action == MARK and step.changes[0].after is None):
                checks.append(await self._verify_field(step, ctx))
        return Verification(checks=tuple(checks))

    async def _verify_field(self, step: Step, ctx: ExecContext) -> Check:
        change = step.changes[0]
        try:
            value = read_field(change.field, (await ctx.clients.reader.get(object_ref(step.target))).object)
        except NotFound:
            return Check(name=f"{step.target.key} {change.field}", ok=True, detail="gone since")
        detail = f"{change.field} is {value}" + ("" if value == change.after else f", expected {change.after}")
        return Check(name=f"{step.target.key} {change.field}", ok=value == change.after, detail=detail)

    async def _verify_scale(self, plan: Plan, step: Step, ctx: ExecContext) -> Check:
        """The MachineDeployment reports the new replicas, and (scale-down) the Machines the plan marked are gone."""
        target = int(step.changes[0].after)
        remove = max(0, int(step.changes[0].before) - target)
        victims = [s.target for s in plan.steps if s.action == MARK]
        md_ref = object_ref(step.target)

        async def progress() -> tuple[int | None, int]:
            md = (await ctx.clients.reader.get(md_ref)).object
            gone = 0
            for victim in victims:
                try:
                    await ctx.clients.reader.get(object_ref(victim))
                except NotFound:
                    gone += 1
            return (md.get("status") or {}).get("replicas"), gone

        def reached(state: tuple[int | None, int]) -> bool:
            return state[0] == target and state[1] >= min(remove, len(victims))

        ok, (replicas, gone) = await wait_until(ctx, progress, reached, timeout_s=self.verify_timeout_s, interval_s=self.poll_s)
        detail = f"status.replicas {replicas} (target {target})"
        if victims:
            detail += f"; {gone} of the {len(victims)} marked Machines gone"
        return Check(name=f"{step.target.key} replicas", ok=ok, detail=detail)

    # -- undo ---------------------------------------------------------------------------------
    def undo(self, plan: Plan, report: Report) -> Draft | None:
        pool = str(plan.parameters.get("pool"))
        draft = Draft(scopes=[Scope(kind="pool", name=pool)], locks=[LockTarget(kind="pool", name=pool)])
        done = [step for step, outcome in zip(plan.steps, report.outcomes, strict=True) if outcome.status == "done"]
        scaled = next((s for s in done if s.action == SCALE), None)
        for step in done:
            if step.action == LIMIT:
                draft.steps.append(inverse(step))
        if scaled is not None:
            before, after = int(scaled.changes[0].before), int(scaled.changes[0].after)
            draft.steps.append(inverse(scaled, detail=f"{scaled.target.key}: back to {before} nodes"))
            if after > before:
                draft.blocked.append(
                    f"undoing a scale-up removes {after - before} nodes, which must be chosen from the live cluster (idle ones"
                    f" first): plan it afresh with `gpuctl playbook plan scale-pool -p pool={pool} -p replicas={before}`"
                )
        else:  # the scale did not happen: put back the cordons and marks made for it
            for step in done:
                if step.action == MARK:
                    draft.steps.append(inverse(step, detail=f"unmark Machine {step.target.name}"))
                elif step.action == CORDON:
                    draft.steps.append(inverse(step, action=UNCORDON, detail=f"uncordon {step.target.name}"))
        evicted = [s.target.key for s in done if s.action == EVICT]
        if evicted:
            draft.warnings.append(f"evicted pods are not brought back (their controllers recreate them): {', '.join(evicted)}")
        return draft if draft.steps else None


async def _gpu_pods(ctx: ExecContext, node: str) -> str:
    """The GPU pods on a node now, listed for a message ('' when none)."""
    return ", ".join(p.key for p in (await gpu_pods_on(ctx.clients.reader, node))[0])


def _drained_nodes(plan: Plan) -> set[str]:
    return {str(c.before) for s in plan.steps if s.action == EVICT for c in s.changes if c.field == NODE_FIELD}


LOGIC = ScalePool()
