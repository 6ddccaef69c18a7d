"""reclaim-idle-gpus: evict pods whose every GPU sits idle, staged or at once, never around a budget.

plan     select from the live picture (reclaim_select: guardrails, caps, order), re-read each
         chosen pod from the API server (fresh uid, resourceVersion, labels and annotations: the
         opt-outs apply to what is there now), then dry-run every write as the requester
         (dryRun=All: RBAC, admission and the eviction's PodDisruptionBudget check run for real).
         Staged: annotate_pods + record_pod_event per pod, then evict_pods after the grace
         period; immediate: evict_pods. Each evict step records what the pod was (node, phase,
         labels, opt-out annotations) as its before-values: that is what `stale` and `execute`
         compare against, so status-only updates never make a plan stale.
         With `pods`, only the named pods are considered; each one not planned is listed as
         "not reclaimable: why" (reclaim_named asks the API server about those the picture lacks).
stale    a planned pod gone, replaced (uid), terminating, moved, finished, relabelled or opted out.
execute  staged: the notices now, then the grace period (deadline-aware); then, both modes,
         spare every pod not idle all along since the plan (the live picture) and every pod that
         changed or opted out (re-read), taking back the notice of a spared pod that still
         carries this run's (as the requester, on the version read); evict the rest through the
         Eviction API only, uid-pinned (gpuctl.playbooks.evictions: 429 retried with backoff
         until the deadline).
         Only the plan's pods: one dropped here is never replaced (the run's report names them).
verify   each evicted pod gone or terminating, and no longer holding GPUs in the live picture.
undo     none: an evicted pod cannot be put back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from gpuctl.errors import ClusterError, Conflict, Forbidden
from gpuctl.model import GpuPod, Snapshot
from gpuctl.playbooks.acting import ObjectResult
from gpuctl.playbooks.context import DeadlinePassed
from gpuctl.playbooks.evictions import Backoff, budget_named, evict_planned
from gpuctl.playbooks.kubeapi import ObjectRef
from gpuctl.playbooks.locks import LockTarget
from gpuctl.playbooks.logic import Check, Clients, Draft, ExecContext, PlanRequest, Report, StepOutcome, Verification
from gpuctl.playbooks.node_pods import describe_opt_out, opted_out
from gpuctl.playbooks.plan import Change, Plan, Skipped, Step, TargetRef
from gpuctl.playbooks.pod_now import LABELS, NODE, PHASE, PodNow, read_pod
from gpuctl.playbooks.policy import Scope
from gpuctl.playbooks.reclaim_named import NOT_RECLAIMABLE, named_pods, unknown_pods
from gpuctl.playbooks.reclaim_select import Choice, Limits, devices, select_idle_pods, spare_reasons
from gpuctl.playbooks.spec import Guardrails, OptOut
from gpuctl.playbooks.stepkit import Status, StepCalls, StepDone, write_on_fresh
from gpuctl.render.format import duration

NOTICE_ANNOTATION = "gpuctl.io/reclaim-after"  # when a staged run evicts the pod (RFC 3339, UTC)
EVENT_REASON = "GpuReclaimScheduled"
EVENT_ACTION = "ScheduleEviction"
SKIPPED_SHOWN = 100  # left-out pods listed one by one; the rest are counted in a warning (the plan stays small)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Params:
    idle_for_s: float
    mode: str
    grace_s: float
    max_pods: int
    max_gpus: int
    namespace: str | None
    pool: str | None
    node: str | None
    pods: tuple[str, ...] | None  # exactly these pods (namespace/name), when given

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Params:
        """From validated arguments (plan) or a plan's recorded parameters (execute)."""
        return cls(
            idle_for_s=float(values["idle_for"]),
            mode=str(values["mode"]),
            grace_s=float(values["grace"]),
            max_pods=int(values["max_pods"]),
            max_gpus=int(values["max_gpus"]),
            namespace=values.get("namespace"),
            pool=values.get("pool"),
            node=values.get("node"),
            pods=named_pods(values.get("pods")),
        )


def changed_since_plan(now: PodNow | None, target: TargetRef, before: Mapping[str, Any]) -> tuple[str | None, bool]:
    """(why the pod may not be acted on any more, whether it is simply gone) — (None, False) when unchanged.

    Only what the plan relied on counts: uid, terminating, node, phase, labels and the opt-out
    annotations it recorded. A new resourceVersion from a status update alone is not a reason."""
    key = f"{target.namespace}/{target.name}"
    if now is None:
        return f"{key} is gone", True
    if target.uid and now.uid != target.uid:
        return f"{key} was replaced by another pod of that name (uid {now.uid}, planned {target.uid})", True
    if now.terminating:
        return f"{key} is already terminating", True
    for field_path, planned in before.items():
        current = now.value(field_path)
        if current != planned:
            if field_path == LABELS:
                return f"{key}: its labels changed since the plan", False
            if field_path.startswith("metadata.annotations["):
                name = field_path[len("metadata.annotations[") : -1]
                return f"{key}: annotation {name} is now {current!r} (was {planned!r} when planned)", False
            return f"{key}: {field_path} is now {current!r} (was {planned!r} when planned)", False
    return None, False


def guards_of(step: Step) -> dict[str, Any]:
    """The before-values an evict step recorded (what the pod was when planned)."""
    return {change.field: change.before for change in step.changes}


def _annotation_opt_outs(opt_outs: Iterable[OptOut]) -> list[OptOut]:
    return [rule for rule in opt_outs if rule.object == "pod" and rule.annotation is not None]


def _detail(choice: Choice) -> str:
    pod = choice.pod
    owner = f"owner {pod.owner_kind}/{pod.owner_name}" if pod.owner_kind else "no controller: it is not recreated"
    return f"idle {duration(choice.idle_s)}, {devices(pod)} GPUs, {pod.key}, {owner}"


def _note(choice: Choice, params: Params, request: PlanRequest, opt_outs: Sequence[OptOut]) -> str:
    keep = f" To keep it, annotate it {opt_outs[0].annotation}={opt_outs[0].value}." if opt_outs else ""
    return (
        f"Its GPUs have been idle for {duration(choice.idle_s)}: gpuctl ({request.playbook.name}, requested by "
        f"{request.requester.identity.user}) evicts this pod after a {duration(params.grace_s)} grace period "
        f"(see annotation {NOTICE_ANNOTATION}) unless its GPUs become busy again.{keep}"
    )


@dataclass
class _Prepared:
    """What planning found for one chosen pod."""

    notices: list[Step] = field(default_factory=list)
    evict: Step | None = None
    skipped: Skipped | None = None
    warnings: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


@dataclass
class _Planned:
    """One pod's steps in a plan, by index."""

    notices: list[tuple[int, Step]] = field(default_factory=list)
    evict: tuple[int, Step] | None = None


class ReclaimLogic:
    """The reclaim-idle-gpus playbook (PlaybookLogic). Waits are tunable for tests; LOGIC uses the defaults."""

    name = "reclaim-idle-gpus"

    def __init__(
        self, *, backoff: Backoff | None = None, verify_wait_s: float = 60.0, poll_s: float = 2.0, concurrency: int = 8
    ) -> None:
        self.backoff = backoff or Backoff()
        self.verify_wait_s = verify_wait_s
        self.poll_s = poll_s
        self.concurrency = concurrency

    async def _bounded(self, calls: Iterable[Awaitable[T]]) -> list[T]:
        """Run the calls concurrently, at most `concurrency` at a time, results in order."""
        gate = asyncio.Semaphore(self.concurrency)

        async def one(call: Awaitable[T]) -> T:
            async with gate:
                return await call

        return list(await asyncio.gather(*(one(c) for c in calls)))

    # -- plan -------------------------------------------------------------------------------

    async def plan(self, request: PlanRequest, clients: Clients) -> Draft:
        params = Params.of(request.args)
        guardrails = request.playbook.guardrails
        limits = Limits.of(guardrails, idle_for_s=params.idle_for_s, max_pods=params.max_pods, max_gpus=params.max_gpus)
        # Over every pod and GPU of the snapshot (10,000 pods: ~0.1 s): in a worker thread, off the event loop.
        # Its inputs are frozen (the Snapshot, the guardrails, the limits), so the thread shares nothing mutable.
        selection = await asyncio.to_thread(
            select_idle_pods, request.snapshot, guardrails, limits, namespace=params.namespace, pool=params.pool,
            node=params.node, pods=params.pods,
        )  # fmt: skip
        draft = Draft(blocked=list(selection.blocked))
        said = NOT_RECLAIMABLE if params.pods is not None else ""  # asked for by name: each answer says so
        for candidate in selection.left_out[:SKIPPED_SHOWN]:
            draft.skipped.append(Skipped(target=_ref(candidate.pod), reason=said + candidate.reason))
        if selection.unknown and not selection.blocked:
            draft.skipped += await unknown_pods(clients.reader, selection.unknown, concurrency=self.concurrency)
        if len(selection.left_out) > SKIPPED_SHOWN:
            draft.warnings.append(_more_left_out([c.label for c in selection.left_out[SKIPPED_SHOWN:]]))
        if params.namespace:
            draft.scopes.append(Scope(kind="namespace", name=params.namespace))
        if selection.blocked or not selection.chosen:
            return draft

        prepared = await self._bounded(self._prepare(choice, request, clients, params, guardrails) for choice in selection.chosen)
        evicts: list[Step] = []
        for item in prepared:
            draft.warnings.extend(item.warnings)
            draft.blocked.extend(b for b in item.blocked if b not in draft.blocked)
            if item.skipped is not None:
                draft.skipped.append(item.skipped.model_copy(update={"reason": said + item.skipped.reason}))
            if item.evict is not None:
                draft.steps.extend(item.notices)
                evicts.append(item.evict)
        draft.steps.extend(evicts)  # staged: every notice first, the evictions after the grace period
        draft.warnings.extend(_shared_budgets(request.snapshot, selection.chosen, evicts))
        bare = [f"{s.target.namespace}/{s.target.name}" for s, c in _chosen_steps(selection.chosen, evicts) if not c.pod.owner_kind]
        if bare:
            shown = ", ".join(bare[:5]) + (f" and {len(bare) - 5} more" if len(bare) > 5 else "")
            draft.warnings.append(f"{len(bare)} planned pod(s) have no controller: once evicted they are not recreated ({shown})")
        if evicts and params.mode == "staged":
            draft.warnings.append(
                f"staged: {len(evicts)} pod(s) are notified now and evicted after {duration(params.grace_s)} unless "
                "busy again; the run's deadline must leave room for the grace period"
            )
        for namespace in dict.fromkeys(step.target.namespace or "" for step in evicts):
            if namespace != params.namespace:
                draft.scopes.append(Scope(kind="namespace", name=namespace))
        draft.locks = [LockTarget(kind="node", name=node) for node in dict.fromkeys(_nodes(evicts))]
        draft.dry_run = "server" if evicts else "none"
        return draft

    async def _prepare(
        self, choice: Choice, request: PlanRequest, clients: Clients, params: Params, guardrails: Guardrails
    ) -> _Prepared:
        """Re-read one chosen pod, build its steps and dry-run each as the requester."""
        pod, out = choice.pod, _Prepared()
        try:
            now, _ = await read_pod(clients.reader, pod.namespace, pod.name)
        except ClusterError as e:
            out.blocked.append(f"cannot re-read {pod.key} before planning: {e}")
            return out
        why = _why_skip_now(pod, now, guardrails.protected.opt_out)
        if why is not None or now is None:
            out.skipped = Skipped(target=_ref(pod), reason=why or "gone since the snapshot")
            return out
        target = TargetRef(kind="Pod", name=pod.name, namespace=pod.namespace, uid=now.uid, resource_version=now.resource_version)
        detail = _detail(choice)
        opt_outs = _annotation_opt_outs(guardrails.protected.opt_out)
        guards = [Change(field=NODE, before=now.node), Change(field=PHASE, before=now.phase),
                  Change(field=LABELS, before=dict(now.labels))]  # fmt: skip
        guards += [
            Change(field=f"metadata.annotations[{key}]", before=now.annotations.get(key))
            for key in dict.fromkeys(rule.annotation or "" for rule in opt_outs)
        ]
        acting = clients.acting
        ref = ObjectRef(plural="pods", namespace=pod.namespace, name=pod.name)
        try:
            if params.mode == "staged":
                after = f"the notice's time + {duration(params.grace_s)}"
                out.notices.append(Step(action="annotate_pods", target=target, detail=f"notice: {detail}", changes=(
                    Change(field=f"metadata.annotations[{NOTICE_ANNOTATION}]", before=now.annotations.get(NOTICE_ANNOTATION),
                           after=after),)))  # fmt: skip
                note = _note(choice, params, request, opt_outs)
                out.notices.append(Step(action="record_pod_event", target=target, detail=f"Warning {EVENT_REASON} on {pod.key}",
                                        changes=(Change(field="Event", after=note),)))  # fmt: skip
                placeholder = (request.now + timedelta(seconds=params.grace_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
                await acting.annotate(ref, {NOTICE_ANNOTATION: placeholder}, resource_version=now.resource_version, dry_run=True)
                await acting.create_event(now.object, reason=EVENT_REASON, note=note, action=EVENT_ACTION, type="Warning",
                                          dry_run=True)  # fmt: skip
            trial = await acting.evict(pod.namespace, pod.name, uid=now.uid, dry_run=True)
        except Conflict:
            out.skipped = Skipped(target=target, reason="changed while the plan was made (resourceVersion); plan again")
            return out
        except Forbidden as e:
            out.blocked.append(f"the cluster refuses the dry run: {e.message}")
            return out
        except ClusterError as e:
            out.blocked.append(f"the API server refused the dry run for {pod.key}: {e}")
            return out
        if trial.outcome in ("gone", "precondition_failed"):
            out.skipped = Skipped(target=target, reason="gone or replaced while the plan was made")
            return out
        if trial.outcome == "multiple_pdbs":
            out.skipped = Skipped(target=target, reason=f"under several PodDisruptionBudgets: the Eviction API refuses it "
                                                        f"({trial.message})")  # fmt: skip
            return out
        if trial.outcome == "pdb_refused":
            budget = budget_named(trial, pod.namespace, pod.pdbs)
            out.warnings.append(f"{budget} allows no disruption now for {pod.key}; eviction will be retried until the deadline")
        out.evict = Step(action="evict_pods", target=target, gpus=devices(pod), detail=detail, changes=tuple(guards))
        return out

    # -- stale ------------------------------------------------------------------------------

    async def stale(self, plan: Plan, clients: Clients) -> list[str]:
        evicts = [step for step in plan.steps if step.action == "evict_pods"]
        reads = await self._bounded(read_pod(clients.reader, s.target.namespace or "", s.target.name) for s in evicts)
        reasons = [changed_since_plan(now, step.target, guards_of(step))[0] for (now, _), step in zip(reads, evicts)]
        return [why for why in reasons if why is not None]

    # -- execute ----------------------------------------------------------------------------

    async def execute(self, plan: Plan, ctx: ExecContext) -> Report:
        params = Params.of(plan.parameters)
        calls = StepCalls(ctx)
        pods = _by_pod(plan.steps)
        outcomes: dict[int, StepOutcome] = {}
        notice: str | None = None  # the reclaim-after value this run's notices carry
        if params.mode == "staged":
            ends = ctx.now() + timedelta(seconds=params.grace_s)
            notice = _notice_value(ends)
            if ends >= ctx.deadline:
                why = (f"the run's deadline ({ctx.deadline:%H:%M:%S} UTC) comes before the {duration(params.grace_s)} grace "
                       "period ends: nothing was done")  # fmt: skip
                return _report(plan, [calls.outcome(i, "refused", why) for i in range(len(plan.steps))])
            for pod in pods.values():
                outcomes.update(await self._notify(ctx, calls, pod, ends))
            notified = sum(1 for pod in pods.values() if pod.evict and pod.evict[0] not in outcomes)
            await ctx.progress(f"notified {notified} pod(s); evicting at {ends:%H:%M:%S} UTC unless busy again")
            try:
                await ctx.sleep(params.grace_s)
            except DeadlinePassed as e:
                for pod in pods.values():
                    if pod.evict and pod.evict[0] not in outcomes:
                        outcomes[pod.evict[0]] = calls.outcome(pod.evict[0], "refused", f"not evicted: {e}")
                return _report(plan, outcomes.values())
        ready = [pod.evict for pod in pods.values() if pod.evict and pod.evict[0] not in outcomes]
        outcomes.update(await self._spare(ctx, calls, plan, ready, notice))
        ready = [(index, step) for index, step in ready if index not in outcomes]
        outcomes.update(await evict_planned(ctx, calls, ready, self.backoff))
        return _report(plan, outcomes.values())

    async def _recheck(self, ctx: ExecContext, calls: StepCalls, index: int, step: Step, guards: Mapping[str, Any]) -> tuple[
            PodNow | None, str | None, bool]:  # fmt: skip
        """(the pod now, why it may not be acted on, whether it is gone) — a read failure is a reason too."""
        target = step.target
        try:
            now, call = await read_pod(ctx.clients.reader, target.namespace or "", target.name)
        except ClusterError as e:
            await calls.refused(e, index)
            return None, f"cannot re-read {target.namespace}/{target.name}: {e}", False
        await calls.record(call, index)
        why, gone = changed_since_plan(now, target, guards)
        return now, why, gone

    async def _notify(self, ctx: ExecContext, calls: StepCalls, pod: _Planned, ends: datetime) -> dict[int, StepOutcome]:
        """Annotate and post the Event on one pod; a pod that changed (or a notice that failed) will not be evicted."""
        outcomes: dict[int, StepOutcome] = {}
        if not pod.notices or pod.evict is None:
            return outcomes
        first, evict_index = pod.notices[0][0], pod.evict[0]
        now, why, gone = await self._recheck(ctx, calls, first, pod.notices[0][1], guards_of(pod.evict[1]))
        if why is not None or now is None:
            for index, _ in pod.notices:
                outcomes[index] = calls.outcome(index, "skipped", why or "gone")
            outcomes[evict_index] = calls.outcome(evict_index, "done" if gone else "skipped", why or "gone")
            return outcomes
        acting, regarding = ctx.clients.acting, now.object
        ref = ObjectRef(plural="pods", namespace=now.object["metadata"]["namespace"], name=now.object["metadata"]["name"])
        for index, step in pod.notices:
            try:
                if step.action == "annotate_pods":
                    value = _notice_value(ends)
                    annotate = acting.annotate(ref, {NOTICE_ANNOTATION: value}, resource_version=now.resource_version)
                    result = await calls.track(annotate, index)
                    regarding = result.object
                    message = f"annotated {ref.namespace}/{ref.name} {NOTICE_ANNOTATION}={value}"
                elif step.action == "record_pod_event":
                    note = str(step.changes[0].after)
                    event = acting.create_event(regarding, reason=EVENT_REASON, note=note, action=EVENT_ACTION, type="Warning")
                    result = await calls.track(event, index)
                    message = f"posted Event {EVENT_REASON} on {ref.namespace}/{ref.name}"
                else:
                    raise ValueError(f"reclaim-idle-gpus has no action {step.action}")
            except (ClusterError, ValueError) as e:
                status: Status = "refused" if isinstance(e, Forbidden | Conflict) else "failed"
                outcomes[index] = calls.outcome(index, status, f"{step.action} on {ref.namespace}/{ref.name}: {e}")
                outcomes[evict_index] = calls.outcome(evict_index, "skipped", "not evicted: its notice was not given")
                return outcomes
            outcomes[index] = calls.outcome(index, "done", message)
        return outcomes

    async def _spare(
        self, ctx: ExecContext, calls: StepCalls, plan: Plan, ready: Sequence[tuple[int, Step]], notice: str | None
    ) -> dict[int, StepOutcome]:
        """Outcomes for the pods not to evict: not idle all along since the plan, changed, or opted out.

        A spared pod that carries this run's notice (`notice`, staged mode) has it removed."""
        outcomes: dict[int, StepOutcome] = {}
        if not ready:
            return outcomes
        # Immediate mode executes moments after planning: wait for a picture taken since (one refresh away).
        snapshot = await self._live(ctx, lambda snapshot: snapshot.taken_at >= plan.created_at)
        planned = {f"{s.target.namespace}/{s.target.name}": s.target.uid for _, s in ready}
        spare = await asyncio.to_thread(spare_reasons, snapshot, planned, plan.created_at)  # the whole snapshot: off the loop
        for index, step in ready:
            key = f"{step.target.namespace}/{step.target.name}"
            why, gone = spare[key], False
            if why is not None:
                why = f"spared {key}: {why}"
            else:
                _, why, gone = await self._recheck(ctx, calls, index, step, guards_of(step))
            if why is None:
                continue
            if notice is not None and not gone:
                why += await self._withdraw_notice(ctx, calls, index, step, notice)
            outcomes[index] = calls.outcome(index, "done" if gone else "skipped", why)
            if not gone:
                await ctx.progress(why, step=index)
        return outcomes

    async def _withdraw_notice(self, ctx: ExecContext, calls: StepCalls, index: int, step: Step, notice: str) -> str:
        """Remove this run's notice from a pod it spares, as the requester, on the version just read (a Conflict
        reads again); a notice another run has put there since is left alone. What happened, for the outcome."""
        target = step.target
        ref = ObjectRef(plural="pods", namespace=target.namespace, name=target.name)

        def still_ours(fresh: ObjectResult) -> None:
            value = (fresh.object["metadata"].get("annotations") or {}).get(NOTICE_ANNOTATION)
            if fresh.uid != target.uid or value != notice:
                raise StepDone("skipped", f"its {NOTICE_ANNOTATION} is {value!r} now, not this run's: left as it is")

        def remove(fresh: ObjectResult) -> Awaitable[ObjectResult]:
            return ctx.clients.acting.annotate(ref, {NOTICE_ANNOTATION: None}, resource_version=fresh.resource_version)

        try:
            await write_on_fresh(calls, lambda: ctx.clients.reader.get(ref), still_ours, remove, step=index)
        except StepDone as e:
            return f"; {e.message}"
        except ClusterError as e:
            return f"; its {NOTICE_ANNOTATION} notice could not be removed: {e}"
        return f"; its {NOTICE_ANNOTATION} notice was removed"

    # -- verify, undo -----------------------------------------------------------------------

    async def verify(self, plan: Plan, report: Report, ctx: ExecContext) -> Verification:
        done = {o.index for o in report.outcomes if o.status == "done"}
        evicted = [step for index, step in enumerate(plan.steps) if step.action == "evict_pods" and index in done]
        if not evicted:
            return Verification()
        snapshot = await self._released(ctx, {step.target.uid for step in evicted if step.target.uid})
        holding = {p.uid: p for p in snapshot.pods if p.uid}
        checks: list[Check] = []
        for step in evicted:
            target = step.target
            key = f"{target.namespace}/{target.name}"
            try:
                now, _ = await read_pod(ctx.clients.reader, target.namespace or "", target.name)
            except ClusterError as e:
                checks.append(Check(name=f"{key} gone", ok=False, detail=f"cannot read it: {e}"))
            else:
                checks.append(_gone_check(key, target, now))
            still = holding.get(target.uid or "")
            detail = f"its {step.gpus} GPUs are free" if still is None else (
                f"the live picture still shows it holding {', '.join(still.gpu_keys) or f'{devices(still)} GPUs'}")  # fmt: skip
            checks.append(Check(name=f"{key} GPUs released", ok=still is None, detail=detail))
        return Verification(checks=tuple(checks))

    async def _released(self, ctx: ExecContext, uids: set[str]) -> Snapshot:
        """The live picture once no evicted pod is in it any more, or the last one seen within verify_wait_s."""
        return await self._live(ctx, lambda snapshot: not any(p.uid in uids for p in snapshot.pods))

    async def _live(self, ctx: ExecContext, ready: Callable[[Snapshot], bool]) -> Snapshot:
        """The live picture once `ready` says so, or the last one seen within verify_wait_s (or the deadline)."""
        waited = 0.0
        while True:
            snapshot = await ctx.snapshot()
            if ready(snapshot) or waited >= self.verify_wait_s:
                return snapshot
            try:
                await ctx.sleep(self.poll_s)
            except DeadlinePassed:
                return snapshot
            waited += self.poll_s

    def undo(self, plan: Plan, report: Report) -> Draft | None:
        return None  # an evicted pod cannot be put back; its controller recreates it if it has one


def _ref(pod: GpuPod) -> TargetRef:
    return TargetRef(kind="Pod", name=pod.name, namespace=pod.namespace, uid=pod.uid, resource_version=pod.resource_version)


def _why_skip_now(pod: GpuPod, now: PodNow | None, opt_outs: Iterable[OptOut]) -> str | None:
    """Why a chosen pod is left out after reading it again, or None."""
    if now is None:
        return "gone since the snapshot"
    if now.uid != pod.uid:
        return f"replaced since the snapshot (uid now {now.uid})"
    if now.terminating:
        return "already terminating"
    if now.phase != "Running" or now.node != pod.node:
        return f"changed since the snapshot: phase {now.phase} on node {now.node}"
    if (rule := opted_out(opt_outs, now.labels, now.annotations)) is not None:
        return describe_opt_out(rule)
    return None


def _more_left_out(labels: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    parts = ", ".join(f"{n:,} {label}" for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{len(labels):,} more idle-looking pods left out ({parts}); not listed one by one"


def _chosen_steps(chosen: Sequence[Choice], evicts: Sequence[Step]) -> list[tuple[Step, Choice]]:
    """Each planned eviction with the selection's choice it came from."""
    by_key = {c.pod.key: c for c in chosen}
    return [(step, by_key[f"{step.target.namespace}/{step.target.name}"]) for step in evicts]


def _shared_budgets(snapshot: Snapshot, chosen: Sequence[Choice], evicts: Sequence[Step]) -> list[str]:
    """A warning per budget that would have to allow more disruptions than it allows now."""
    wanted: dict[tuple[str, str], int] = {}
    for _, choice in _chosen_steps(chosen, evicts):
        if len(choice.pod.pdbs) == 1:
            budget = (choice.pod.namespace, choice.pod.pdbs[0])
            wanted[budget] = wanted.get(budget, 0) + 1
    allows = {(b.namespace, b.name): b.disruptions_allowed for b in snapshot.pdbs}
    warnings = []
    for (namespace, name), n in sorted(wanted.items()):
        allowed = allows.get((namespace, name))
        if n > 1 and allowed is not None and allowed < n:
            warnings.append(f"PDB {namespace}/{name} allows {allowed} disruption(s) now for {n} planned pods: "
                            "the others are retried as it allows, until the deadline")  # fmt: skip
    return warnings


def _nodes(evicts: Iterable[Step]) -> Iterable[str]:
    for step in evicts:
        node = guards_of(step).get(NODE)
        if node:
            yield str(node)


def _by_pod(steps: Sequence[Step]) -> dict[str, _Planned]:
    pods: dict[str, _Planned] = {}
    for index, step in enumerate(steps):
        planned = pods.setdefault(step.target.key, _Planned())
        if step.action == "evict_pods":
            planned.evict = (index, step)
        else:
            planned.notices.append((index, step))
    return pods


def _gone_check(key: str, target: TargetRef, now: PodNow | None) -> Check:
    if now is None:
        return Check(name=f"{key} gone", ok=True, detail="gone")
    if target.uid and now.uid != target.uid:
        return Check(name=f"{key} gone", ok=True, detail=f"gone; a new pod of that name runs (uid {now.uid})")
    if now.terminating:
        deleted = now.object["metadata"].get("deletionTimestamp")
        return Check(name=f"{key} gone", ok=True, detail=f"terminating since {deleted}")
    return Check(name=f"{key} gone", ok=False, detail=f"still there, phase {now.phase}, not terminating")


def _notice_value(ends: datetime) -> str:
    return ends.strftime("%Y-%m-%dT%H:%M:%SZ")


def _report(plan: Plan, outcomes: Iterable[StepOutcome]) -> Report:
    """The outcomes in step order, and one line about the evictions: evicted, gone, spared, refused, failed."""
    ordered = sorted(outcomes, key=lambda o: o.index)
    evicts = [(o, plan.steps[o.index]) for o in ordered if plan.steps[o.index].action == "evict_pods"]
    evicted = [step for o, step in evicts if o.status == "done" and o.message.startswith("evicted")]
    parts = [f"evicted {len(evicted)} pod(s) ({sum(step.gpus for step in evicted)} GPUs)"]
    for status, word in (("done", "already gone"), ("skipped", "spared"), ("refused", "refused"), ("failed", "failed")):
        n = sum(1 for o, step in evicts if o.status == status and step not in evicted)
        if n:
            parts.append(f"{n} {word}")
    message = ", ".join(parts)
    # Say which planned pods were dropped at the re-read, and that none took their place.
    dropped = sorted(f"{step.target.namespace}/{step.target.name}" for o, step in evicts
                     if o.status in ("done", "skipped") and step not in evicted)  # fmt: skip
    if dropped:
        message += f"; dropped since the plan, no other pod taken instead: {', '.join(dropped)}"
    return Report(outcomes=tuple(ordered), message=message)


LOGIC = ReclaimLogic()
