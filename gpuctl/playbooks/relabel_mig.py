"""relabel-mig: repartition a node's GPUs by setting `nvidia.com/mig.config`, which NVIDIA's MIG manager acts on.

Plan: the profile must be a key under mig-configs in the MIG manager's config
for the node (`<node>-mig-config`, else `default-mig-parted-config`, in the
GPU operator's namespace: parameter operator_namespace) — an unknown one is a
ParameterError listing those that exist — and must fit the node's GPU model.
The MIG manager drains nothing, so the plan cordons the node and evicts its
GPU pods (drain=true) or refuses; then it sets the label and, once the MIG
manager reports success and the node advertises the profile's resources,
uncordons the node (only when the plan cordoned it). Every write is dry-run
on the API server as the requester.

Execute: cordon → evict (budgets retried until the deadline) → wait until no
GPU pod is left → set the label on the version just read → watch
`nvidia.com/mig.config.state` (bounded by pending_timeout): success with the
expected resources → uncordon; failed → the previous label is put back, and
the node uncordoned only once that is back in place; still pending → reported,
the node stays cordoned, and the report says what to check.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

from gpuctl.errors import GpuctlError, MigConfigInvalid, NotFound, ParameterError
from gpuctl.migparted import (
    CONFIG_KEY,
    DEFAULT_CONFIG_MAP,
    MIG_CONFIG_LABEL,
    MIG_STATE_LABEL,
    MigPartedConfig,
    gpu_model,
    node_config_map,
)
from gpuctl.playbooks import drain
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.context import DeadlinePassed
from gpuctl.playbooks.evictions import Backoff, evict_planned
from gpuctl.playbooks.kubeapi import JSON, ObjectRef
from gpuctl.playbooks.locks import LockTarget
from gpuctl.playbooks.logic import Check, Clients, Draft, ExecContext, PlanRequest, Report, StepOutcome, Verification
from gpuctl.playbooks.mig_node import (
    DEFAULT_STRATEGY,
    NodeFacts,
    Verdict,
    describe_resources,
    expected_resources,
    judge,
    label_change,
    not_relabelable,
    previous_resources,
    reconfigures,
    relabel_target,
    stuck_report,
    what_to_check,
)
from gpuctl.playbooks.node_pods import gpu_pods_on
from gpuctl.playbooks.plan import Plan, Step, TargetRef
from gpuctl.playbooks.policy import Scope
from gpuctl.playbooks.stepkit import Status, StepCalls
from gpuctl.render.format import duration
from gpuctl.sources.kube.reflector import Gone
from gpuctl.state.pools import pool_for

NAME = "relabel-mig"
EVICTION_BACKOFF = Backoff(first_s=5.0)


def _label_patch(value: str | None) -> JSON:
    return {"metadata": {"labels": {MIG_CONFIG_LABEL: value}}}


async def read_mig_config(reader: ActingClient, namespace: str, node: str) -> tuple[MigPartedConfig, str]:
    """The config the MIG manager reads for `node`, and where it came from; MigConfigInvalid when none is usable."""
    for name in (node_config_map(node), DEFAULT_CONFIG_MAP):
        try:
            got = await reader.get(ObjectRef(plural="configmaps", namespace=namespace, name=name))
        except NotFound:
            continue
        source = f"{namespace}/{name}"
        text = (got.object.get("data") or {}).get(CONFIG_KEY)
        if text is None:
            raise MigConfigInvalid(f"ConfigMap {source} has no {CONFIG_KEY}: the MIG manager cannot use it")
        return MigPartedConfig.parse(text, source=source), source
    raise MigConfigInvalid(
        f"no MIG manager config for node {node} in namespace {namespace} (neither {node_config_map(node)} nor {DEFAULT_CONFIG_MAP})",
        hint="is the GPU operator installed in another namespace? set operator_namespace",
    )


def _unknown_profile(profile: str, node: str, config: MigPartedConfig, source: str) -> ParameterError:
    known = ", ".join(sorted(config.mig_configs))
    return ParameterError(
        f"MIG profile {profile!r} is not in {source}, the MIG manager's config for node {node}; available: {known}",
        hint="pick one of those, or add the profile to that ConfigMap",
    )


def _same_profile(node: NodeFacts, profile: str) -> str:
    if node.mig_state == "success":
        return f"node {node.name} already has MIG profile {profile} ({MIG_STATE_LABEL}=success): nothing to do"
    if node.mig_state == "failed":
        return (
            f"node {node.name} is labelled {profile} and the MIG manager reported failed; it does not retry the same value: "
            "relabel to another profile first, or restart the mig-manager pod"
        )
    return f"the MIG manager is still applying {profile} on node {node.name} ({MIG_STATE_LABEL}={node.mig_state}): wait for it"


class RelabelMig:
    name = NAME

    # -- plan ---------------------------------------------------------------------
    async def plan(self, request: PlanRequest, clients: Clients) -> Draft:
        args = request.args
        node_name, profile = str(args["node"]), str(args["profile"])
        namespace, drain_pods = str(args["operator_namespace"]), bool(args["drain"])
        guardrails = request.playbook.guardrails
        try:
            read = await clients.reader.get(ObjectRef(plural="nodes", name=node_name))
        except NotFound:
            raise ParameterError(f"there is no node named {node_name!r}", hint="`gpuctl top` lists the nodes") from None
        node = NodeFacts.read(read.object)
        pool = next((n.pool for n in request.snapshot.nodes if n.name == node_name), None) or pool_for(node.labels)
        draft = Draft(scopes=[Scope(kind="pool", name=pool)], locks=[LockTarget(kind="node", name=node_name)])

        annotations = (read.object.get("metadata") or {}).get("annotations") or {}
        if (opt_out := drain.node_opt_out(node.labels, annotations, guardrails.protected)) is not None:
            draft.blocked.append(f"node {node_name} opted out of MIG relabelling ({opt_out})")
        if (why := not_relabelable(node)) is not None:
            draft.blocked.append(why)
            return draft
        try:
            config, source = await read_mig_config(clients.reader, namespace, node_name)
        except MigConfigInvalid as e:
            draft.blocked.append(str(e))
            return draft
        if profile not in config.mig_configs:
            raise _unknown_profile(profile, node_name, config, source)
        if node.mig_config == profile:
            draft.blocked.append(_same_profile(node, profile))
            return draft
        if node.mig_state in ("pending", "rebooting"):
            draft.blocked.append(
                f"the MIG manager is still applying {node.mig_config} on node {node_name} ({MIG_STATE_LABEL}={node.mig_state}): "
                f"wait for success or failed; if it is stuck, {what_to_check(namespace, node_name)}"
            )
            return draft
        strategy = node.strategy
        if strategy is None:
            strategy = DEFAULT_STRATEGY
            draft.warnings.append(
                f"node {node_name} has no nvidia.com/mig.strategy label: assuming {strategy}, the GPU operator's default"
            )
        model = gpu_model(node.product)
        assert model is not None  # not_relabelable checked it
        target = relabel_target(node, config, source, profile, model, strategy)
        if isinstance(target, str):
            draft.blocked.append(target)
            return draft

        pods, _ = await gpu_pods_on(clients.reader, node_name)
        leaving = [pod for pod in pods if drain.must_leave(pod)]
        draft.blocked.extend(drain.refusals(node_name, leaving, drain=drain_pods, guardrails=guardrails))

        node_ref = TargetRef(kind="Node", name=node_name, uid=node.uid, resource_version=node.resource_version)
        cordons = not node.unschedulable
        if not cordons:
            draft.warnings.append(f"node {node_name} is already cordoned: it stays cordoned afterwards")
        if cordons:
            draft.steps.append(drain.cordon_step(node_ref))
        if drain_pods:
            draft.steps.extend(drain.eviction_steps(leaving))
        restore = node.mig_config or "no label"
        draft.steps.append(
            Step(
                action="set_node_label",
                target=node_ref,
                changes=target.changes(node.mig_config, profile),
                gpus=target.gpus,
                detail=f"{target.gpus}× {model.product}, {strategy} strategy, {source}; if the MIG manager reports failed: back to {restore}",
            )
        )
        if cordons:
            draft.steps.append(
                drain.uncordon_step(node_ref, "once the MIG manager reports success and the node advertises the profile")
            )
        if set(target.before) != set(target.after):
            draft.warnings.append(
                f"node {node_name} will advertise {describe_resources(target.after)} instead of {describe_resources(target.before)}: "
                "pods, ResourceQuotas and Kueue flavors must request the new resource names"
            )
        if not draft.blocked:
            blocked, warnings = await drain.dry_run_steps(clients.acting, draft.steps, {"set_node_label": _label_patch(profile)})
            draft.blocked.extend(blocked)
            draft.warnings.extend(warnings)
            draft.dry_run = "server" if not blocked else "none"
        return draft

    # -- stale --------------------------------------------------------------------
    async def stale(self, plan: Plan, clients: Clients) -> list[str]:
        step = _label_step(plan)
        change = label_change(step)
        target = step.target
        try:
            node = NodeFacts.read((await clients.reader.get(ObjectRef(plural="nodes", name=target.name))).object)
        except NotFound:
            return [f"node {target.name} no longer exists"]
        reasons: list[str] = []
        if target.uid and node.uid != target.uid:
            reasons.append(f"node {target.name} was replaced since the plan (uid {node.uid}, planned {target.uid})")
        if node.mig_config != change.before:
            reasons.append(f"{MIG_CONFIG_LABEL} on {target.name} is now {node.mig_config!r}; the plan saw {change.before!r}")
        cordons = any(s.action == "cordon_node" for s in plan.steps)
        if cordons and node.unschedulable:
            reasons.append(f"node {target.name} was cordoned since the plan; the run would uncordon it at the end")
        if not cordons and not node.unschedulable:
            reasons.append(f"node {target.name} was uncordoned since the plan, which counted on it staying cordoned")
        pods, _ = await gpu_pods_on(clients.reader, target.name)
        now = {pod.uid: pod.key for pod in pods if drain.must_leave(pod)}
        planned = {s.target.uid: s.target.key.removeprefix("Pod/") for s in plan.steps if s.action == "evict_pods"}
        if arrived := [key for uid, key in now.items() if uid not in planned]:
            reasons.append(f"GPU pods arrived on {target.name} since the plan: {', '.join(arrived)}")
        if left := [key for uid, key in planned.items() if uid not in now]:
            reasons.append(f"GPU pods the plan evicts left {target.name} since: {', '.join(left)}")
        namespace = plan.parameters.get("operator_namespace")
        if isinstance(namespace, str):
            try:
                config, source = await read_mig_config(clients.reader, namespace, target.name)
                if change.after not in config.mig_configs:
                    reasons.append(f"MIG profile {change.after} is no longer in {source}")
            except MigConfigInvalid as e:
                reasons.append(str(e))
        return reasons

    # -- execute ------------------------------------------------------------------
    async def execute(self, plan: Plan, ctx: ExecContext) -> Report:
        return await _Execution(plan, ctx).run()

    # -- verify -------------------------------------------------------------------
    async def verify(self, plan: Plan, report: Report, ctx: ExecContext) -> Verification:
        step = _label_step(plan)
        profile = label_change(step).after
        read = await ctx.clients.reader.get(ObjectRef(plural="nodes", name=step.target.name))
        node = NodeFacts.read(read.object)
        expected = expected_resources(step)
        applied = node.mig_config == profile and node.mig_state == "success"
        resources = dict(node.allocatable) == expected
        uncordons = any(s.action == "uncordon_node" for s in plan.steps)
        schedulable_ok = not node.unschedulable if uncordons else node.unschedulable
        return Verification(
            checks=(
                Check(name="mig_config_applied", ok=applied,
                      detail=f"{MIG_CONFIG_LABEL}={node.mig_config}, {MIG_STATE_LABEL}={node.mig_state} (wanted {profile}, success)"),
                Check(name="mig_resources", ok=resources,
                      detail=f"advertises {describe_resources(node.allocatable)}; {profile} gives {describe_resources(expected)}"),
                Check(name="schedulable" if uncordons else "stays_cordoned", ok=schedulable_ok,
                      detail=f"node {node.name} is {'cordoned' if node.unschedulable else 'schedulable'}"),
            )
        )  # fmt: skip

    # -- undo ---------------------------------------------------------------------
    def undo(self, plan: Plan, report: Report) -> Draft | None:
        """Relabel back to the profile the plan found, with the same cordon rules; None when the label never changed.

        The Draft evicts nothing: GPU pods that landed since make it stale (plan
        relabel-mig again with drain=true). Its steps pin the node's uid, not a
        resourceVersion (unknown until it is read again)."""
        step = _label_step(plan)
        index = plan.steps.index(step)
        if not any(o.index == index and o.status == "done" for o in report.outcomes):
            return None
        change = label_change(step)
        node = step.target.model_copy(update={"resource_version": None})
        # The original run's policy scopes (Plan.scopes, which the engine adds): an undo is authorized where the run was.
        draft = Draft(scopes=list(getattr(plan, "scopes", ())), locks=[LockTarget(kind="node", name=node.name)])
        if change.before is None:
            draft.blocked.append(
                f"node {node.name} had no {MIG_CONFIG_LABEL} before: choose a profile (e.g. all-disabled) and plan relabel-mig"
            )
            return draft
        swapped = tuple(c.model_copy(update={"before": c.after, "after": c.before}) for c in step.changes)
        cordons = any(s.action == "cordon_node" for s in plan.steps)
        if cordons:
            draft.steps.append(drain.cordon_step(node))
        draft.steps.append(
            step.model_copy(update={"target": node, "changes": swapped, "detail": f"undo: back to {change.before}"})
        )
        if cordons:
            draft.steps.append(
                drain.uncordon_step(node, "once the MIG manager reports success and the node advertises the profile")
            )
        draft.warnings.append(
            f"this undo evicts nothing: if GPU pods run on {node.name} now it is stale; plan relabel-mig with profile={change.before} drain=true"
        )
        return draft


def _label_step(plan: Plan) -> Step:
    try:
        return next(s for s in plan.steps if s.action == "set_node_label")
    except StopIteration:
        raise GpuctlError(f"plan {plan.fingerprint} of {plan.playbook} has no set_node_label step") from None


class _Execution:
    """One run of a plan: the outcome of each step, in order, and the cleanup a failure needs."""

    def __init__(self, plan: Plan, ctx: ExecContext) -> None:
        self.plan, self.ctx = plan, ctx
        self.outcomes: dict[int, StepOutcome] = {}
        self.label = _label_step(plan)
        self.label_index = plan.steps.index(self.label)
        change = label_change(self.label)
        self.old: str | None = change.before
        self.new = str(change.after)
        self.node = self.label.target
        self.reconfigures = reconfigures(self.label)
        self.indexes = {s.action: i for i, s in enumerate(plan.steps) if s.action != "evict_pods"}
        timeout = plan.parameters.get("pending_timeout")
        self.pending_timeout = float(timeout) if isinstance(timeout, (int, float)) else None
        namespace = plan.parameters.get("operator_namespace")
        self.namespace = namespace if isinstance(namespace, str) else None

    def _set(self, index: int, status: Status, message: str) -> None:
        self.outcomes[index] = StepOutcome(index=index, status=status, message=message)

    def _labelled(self, value: str | None) -> Callable[[JSON], str | None]:
        def check(obj: JSON) -> str | None:
            now = NodeFacts.read(obj).mig_config
            return None if now == value else f"{MIG_CONFIG_LABEL} on {self.node.name} is {now!r}, not {value!r} as planned"

        return check

    async def run(self) -> Report:
        message = await self._steps()
        for index, _ in enumerate(self.plan.steps):
            if index not in self.outcomes:
                self._set(index, "skipped", "not run: " + message)
        return Report(outcomes=tuple(self.outcomes[i] for i in sorted(self.outcomes)), message=message)

    async def _steps(self) -> str:
        cordon = self.indexes.get("cordon_node")
        if cordon is not None:
            try:
                await drain.patch_node(self.ctx, cordon, self.node, drain.CORDON_PATCH, still_as_planned=self._labelled(self.old))
            except GpuctlError as e:
                self._set(cordon, "failed", str(e))
                return f"could not cordon {self.node.name}: {e}"
            self._set(cordon, "done", f"cordoned {self.node.name}")
            await self.ctx.progress(f"cordoned {self.node.name}", step=cordon)
        evictions = [(i, s) for i, s in enumerate(self.plan.steps) if s.action == "evict_pods"]
        self.outcomes.update(await evict_planned(self.ctx, StepCalls(self.ctx), evictions, EVICTION_BACKOFF))
        if any(self.outcomes[i].status != "done" for i, _ in evictions):
            return await self._abandon(f"not every GPU pod on {self.node.name} could be evicted; {MIG_CONFIG_LABEL} not changed")
        try:
            why = await drain.wait_until_drained(
                self.ctx, self.node.name, {s.target.uid or "" for _, s in evictions}, step=self.label_index
            )
        except DeadlinePassed:
            why = f"the evicted GPU pods had not left {self.node.name} by the run's deadline"
        if why is not None:
            self._set(self.label_index, "refused", why)
            return await self._abandon(f"{why}; {MIG_CONFIG_LABEL} not changed")
        return await self._relabel()

    async def _relabel(self) -> str:
        index, node = self.label_index, self.node.name
        try:
            result = await drain.patch_node(
                self.ctx, index, self.node, _label_patch(self.new), still_as_planned=self._labelled(self.old)
            )
        except GpuctlError as e:
            self._set(index, "failed", str(e))
            return await self._abandon(f"could not set {MIG_CONFIG_LABEL}={self.new} on {node}: {e}")
        await self.ctx.progress(f"set {MIG_CONFIG_LABEL}={self.new} on {node}; waiting for the MIG manager", step=index)
        facts = NodeFacts.read(result.object)
        verdict, last, waited = await self._answer(facts, self.new, expected_resources(self.label))
        if verdict == "success":
            self._set(
                index, "done", f"the MIG manager applied {self.new}: {node} advertises {describe_resources(last.allocatable)}"
            )
            return await self._uncordon(f"{self.new} applied on {node}")
        if verdict == "changed":
            why = f"{MIG_CONFIG_LABEL} on {node} was changed to {last.mig_config!r} by someone else while the MIG manager worked"
            self._set(index, "failed", why)
            return self._leave_cordoned(f"{why}; {node} stays cordoned")
        if verdict == "failed":
            return await self._restore()
        why = stuck_report(
            last, profile=self.new, expected=expected_resources(self.label), waited=waited, namespace=self.namespace
        )
        self._set(index, "failed", why)
        return self._leave_cordoned(why)

    async def _restore(self) -> str:
        """restore_on_failure: the previous label back; the node uncordoned only once that is in place again."""
        index, node = self.label_index, self.node.name
        failed = f"the MIG manager reported failed for {self.new} on {node}"
        try:
            result = await drain.patch_node(
                self.ctx, index, self.node, _label_patch(self.old), still_as_planned=self._labelled(self.new)
            )
        except GpuctlError as e:
            self._set(index, "failed", f"{failed}; putting {self.old or 'no label'} back failed too: {e}")
            return self._leave_cordoned(f"{failed}, and {MIG_CONFIG_LABEL} could not be put back: {node} stays cordoned")
        await self.ctx.progress(f"{failed}; put {MIG_CONFIG_LABEL}={self.old} back", step=index)
        if self.old is None:
            self._set(index, "failed", f"{failed}; removed the label again (it had none)")
            return self._leave_cordoned(
                f"{failed}; the label is removed again, {node} stays cordoned: {what_to_check(self.namespace, node)}"
            )
        verdict, last, waited = await self._answer(NodeFacts.read(result.object), self.old, previous_resources(self.label))
        if verdict == "success":
            self._set(index, "failed", f"{failed}; put {self.old} back and the MIG manager restored it")
            return await self._uncordon(f"{failed}; {self.old} is back in place")
        self._set(index, "failed", f"{failed}; put {self.old} back, but it did not come back in place")
        report = stuck_report(
            last, profile=self.old, expected=previous_resources(self.label), waited=waited, namespace=self.namespace
        )
        return self._leave_cordoned(f"{failed}; {self.old} was put back but {report}")

    async def _uncordon(self, why: str) -> str:
        index = self.indexes.get("uncordon_node")
        if index is None:
            return f"{why}; {self.node.name} stays cordoned, as it was before"
        try:
            await drain.patch_node(self.ctx, index, self.node, drain.UNCORDON_PATCH, still_as_planned=lambda obj: None)
        except GpuctlError as e:
            self._set(index, "failed", str(e))
            return f"{why}; uncordoning {self.node.name} failed: {e}"
        self._set(index, "done", f"uncordoned {self.node.name}")
        await self.ctx.progress(f"uncordoned {self.node.name}", step=index)
        return f"{why}; {self.node.name} uncordoned"

    async def _abandon(self, why: str) -> str:
        """Before the label changed: undo our own cordon, so the node is as it was (minus evicted pods)."""
        cordon = self.indexes.get("cordon_node")
        done = cordon is not None and cordon in self.outcomes and self.outcomes[cordon].status == "done"
        return await self._uncordon(why) if done else why

    def _leave_cordoned(self, why: str) -> str:
        index = self.indexes.get("uncordon_node")
        if index is not None:
            self._set(index, "skipped", f"{self.node.name} left cordoned")
        return why

    async def _answer(self, start: NodeFacts, profile: str, expected: dict[str, int]) -> tuple[Verdict | None, NodeFacts, str]:
        """Watch the node until the MIG manager answers for `profile`, pending_timeout passes or the deadline comes.

        Returns the verdict (None: no answer), the node as last seen, and when waiting ended without one."""
        left_s = (self.ctx.deadline - self.ctx.now()).total_seconds()
        timeout_s = max(0.0, min(self.pending_timeout or left_s, left_s))
        seen: set[str | None] = set()
        last = start

        def verdict(node: NodeFacts) -> Verdict | None:
            seen.add(node.mig_state)
            return judge(
                node, profile=profile, expected=expected, reconfigures=self.reconfigures, start_state=start.mig_state, seen=seen
            )

        try:
            async with asyncio.timeout(timeout_s):
                if (answer := verdict(start)) is not None:
                    return answer, start, ""
                versions = node_versions(self.ctx.clients.reader, self.node.name, start.resource_version)
                async with contextlib.aclosing(versions):
                    async for obj in versions:
                        last = NodeFacts.read(obj)
                        if (answer := verdict(last)) is not None:
                            return answer, last, ""
        except TimeoutError:
            pass
        except GpuctlError as e:  # the watch failed: what happened next is unknown, so nothing more is done
            return None, last, f"when watching the node failed ({e})"
        return None, last, f"after {duration(timeout_s)}"


async def node_versions(reader: ActingClient, name: str, since: str) -> AsyncGenerator[Mapping[str, Any]]:
    """Every version of the node after resourceVersion `since`, as a watch delivers them (re-watching when the
    server ends one, reading afresh when the version is too old)."""
    params = {"fieldSelector": f"metadata.name={name}"}
    version = since
    while True:
        try:
            async with reader.api.watch(
                "/api/v1/nodes", acting_as=reader.identity, params={**params, "resourceVersion": version}
            ) as events:
                async for event in events:
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion", version)
                    if event.get("type") == "DELETED":
                        raise GpuctlError(f"node {name} was deleted while the MIG manager was reconfiguring it")
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        yield obj
        except Gone:
            read = await reader.get(ObjectRef(plural="nodes", name=name))
            version = read.resource_version
            yield read.object


LOGIC = RelabelMig()
