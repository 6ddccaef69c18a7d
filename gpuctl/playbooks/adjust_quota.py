"""adjust-quota: set a namespace's GPU quota, or a Kueue ClusterQueue's nominalQuota.

Targets:
- `namespace=`: the binding ResourceQuota for `requests.<resource>` (the
  unscoped one with the lowest hard limit, quota_rules.binding_quota). A
  namespace without one is refused with the command that creates one: the
  playbook may only patch quotas, not create them.
- `cluster_queue=`: the ClusterQueue's nominalQuota for `resource` in `flavor`
  (or the only flavor covering it), in whichever Kueue API version the cluster
  serves (v1beta2, else v1beta1).

Checks: a value below what is in use is refused unless force=true (the plan
then carries a `status.used[...]` change, before = after = the usage it saw,
which `stale` holds it to); quotas adding up to more than the cluster's GPUs
give a warning; every write is first a server-side dry run as the requester.

revert_after: the plan's parameters carry it and the step says so; `execute`
writes the due time into its outcome; `revert_at(plan, executed_at)` tells the
engine when to run `undo(plan, report)`, whose steps set the recorded
before-value back on condition that the value is still the one this run set
(`stale` says so otherwise), whatever the usage is by then.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime, timedelta

from gpuctl.errors import NotFound
from gpuctl.playbooks.acting import ActingClient, ObjectResult
from gpuctl.playbooks.discovery import KUEUE, served_version
from gpuctl.playbooks.kubeapi import JSON, ObjectRef
from gpuctl.playbooks.locks import LockTarget
from gpuctl.playbooks.logic import Check, Clients, Draft, ExecContext, PlanRequest, Report, Verification
from gpuctl.playbooks.plan import Change, Plan, Step, TargetRef
from gpuctl.playbooks.policy import Scope
from gpuctl.playbooks.quantities import number, quantity
from gpuctl.playbooks.quota_rules import (
    binding_quota,
    capacity,
    check_new_value,
    hard_field,
    locate_nominal,
    namespace_quota_total,
    no_quota_reason,
    nominal_field,
    overcommit_warning,
    parse_hard_field,
    parse_nominal_field,
    parse_used_field,
    queue_usage,
    queues_total,
    quota_key,
    shadowed_warning,
    used_field,
)
from gpuctl.playbooks.spec import Action, spell_duration
from gpuctl.playbooks.stepkit import (
    StepCalls,
    StepDone,
    changed_since_plan,
    dry_run,
    run_steps,
    wait_until,
    write_on_fresh,
)
from gpuctl.state.resources import GPU

SET_QUOTA = Action.set_resourcequota.value
SET_NOMINAL = Action.set_clusterqueue_quota.value


def revert_at(plan: Plan, executed_at: datetime) -> datetime | None:
    """When the engine must run this plan's undo: `revert_after` after it was executed (None: never)."""
    seconds = plan.parameters.get("revert_after")
    return executed_at + timedelta(seconds=float(seconds)) if seconds else None


def _revert_note(before: object, revert_after: object) -> str:
    if not isinstance(revert_after, int | float) or not revert_after:
        return ""
    return f"; back to {before} {spell_duration(float(revert_after))} after it is applied"


def _ref(target: TargetRef) -> ObjectRef:
    if target.kind == "ResourceQuota":
        return ObjectRef(plural="resourcequotas", namespace=target.namespace, name=target.name)
    group, _, version = target.api_version.partition("/")
    return ObjectRef(group=group, version=version, plural="clusterqueues", name=target.name)


def _scope(target: TargetRef) -> Scope:
    if target.kind == "ResourceQuota":
        return Scope(kind="namespace", name=str(target.namespace))
    return Scope(kind="cluster_queue", name=target.name)


def _locks(target: TargetRef) -> list[LockTarget]:
    # LockKind has no cluster_queue (yet): a ClusterQueue change runs unlocked.
    return [LockTarget(kind="namespace", name=str(target.namespace))] if target.kind == "ResourceQuota" else []


def current_value(step: Step, obj: JSON) -> tuple[float | None, float]:
    """(the value the step changes, what is in use) in the object as read now."""
    change = step.changes[0]
    if (key := parse_hard_field(change.field)) is not None:
        hard = quantity(((obj.get("spec") or {}).get("hard") or {}).get(key))
        return hard, quantity(((obj.get("status") or {}).get("used") or {}).get(key)) or 0.0
    flavor, resource = parse_nominal_field(change.field) or ("", "")
    spot = locate_nominal(obj, resource, flavor)
    return (None if isinstance(spot, str) else spot.value), queue_usage(obj, flavor, resource)


def drift(step: Step, obj: JSON) -> str | None:
    """What changed in the target since the plan that the plan depends on; None when nothing did."""
    change = step.changes[0]
    current, used = current_value(step, obj)
    if (why := changed_since_plan(step, obj, number(current))) is not None or current == change.after:
        return why  # already as the plan wants it: executing it changes nothing, whatever is in use
    guarded = any(parse_used_field(c.field) for c in step.changes[1:])
    if guarded and change.after is not None and used > float(change.after):
        what = f"{step.target.kind} {step.target.key.split('/', 1)[1]}"
        return f"{what}: {used:g} are in use now, above the new {change.after}; plan again with force=true to set it anyway"
    return None


class AdjustQuota:
    name = "adjust-quota"

    def __init__(self, *, verify_timeout_s: float = 60.0, poll_s: float = 1.0) -> None:
        self.verify_timeout_s = verify_timeout_s
        self.poll_s = poll_s

    @staticmethod
    def revert_at(plan: Plan, executed_at: datetime) -> datetime | None:
        """When the engine runs this plan's undo on its own (revert_after); None: never."""
        return revert_at(plan, executed_at)

    # -- plan ---------------------------------------------------------------------------------
    async def plan(self, request: PlanRequest, clients: Clients) -> Draft:
        args = request.args
        resource = str(args.get("resource") or GPU)
        new = args["quota"]
        if not isinstance(new, int):
            raise TypeError(f"quota must be a validated int, got {new!r}")  # validate_params guarantees it
        force = bool(args.get("force"))
        max_gpus = request.playbook.guardrails.max_gpus
        if args.get("namespace"):
            draft = await self._plan_quota(request, clients, str(args["namespace"]), resource, new, force, max_gpus)
        else:
            draft = await self._plan_queue(request, clients, str(args["cluster_queue"]), resource, new, force, max_gpus)
        return draft

    async def _plan_quota(
        self, request: PlanRequest, clients: Clients, namespace: str, resource: str, new: int, force: bool, max_gpus: int | None
    ) -> Draft:
        key = quota_key(resource)
        draft = Draft(scopes=[Scope(kind="namespace", name=namespace)], locks=[LockTarget(kind="namespace", name=namespace)])
        listed = await clients.reader.list_objects("", "v1", "resourcequotas", namespace=namespace)
        binding = binding_quota(listed.items, key)
        limit = binding.limit
        if limit is None:
            draft.blocked.append(no_quota_reason(namespace, key, binding.scoped))
            return draft
        what = f"ResourceQuota {namespace}/{limit.name} {key}"
        blocked, warnings = check_new_value(what, limit.hard, new, limit.used, force=force, max_gpus=max_gpus)
        draft.blocked += blocked
        draft.warnings += warnings
        if (shadowed := shadowed_warning(key, new, binding.others)) is not None:
            draft.warnings.append(shadowed)
        total, counted = namespace_quota_total(request.snapshot, resource, namespace, new)
        cluster = capacity(request.snapshot, resource)
        if (over := overcommit_warning(total, f"{counted} namespaces", "namespace quotas", resource, cluster)) is not None:
            draft.warnings.append(over)
        ref = ObjectRef(plural="resourcequotas", namespace=namespace, name=limit.name)
        body = {"spec": {"hard": {key: str(new)}}}
        patch = clients.acting.patch(ref, body, resource_version=limit.resource_version, dry_run=True)
        if await dry_run(draft.blocked, patch) is not None:
            draft.dry_run = "server"
        before, used = number(limit.hard), number(limit.used)
        changes = [Change(field=hard_field(key), before=before, after=new)]
        if not force:
            changes.append(Change(field=used_field(key), before=used, after=used))
        target = TargetRef(
            kind="ResourceQuota", name=limit.name, namespace=namespace, uid=limit.uid, resource_version=limit.resource_version
        )
        detail = f"{what}: {before} → {new} ({used} in use)" + _revert_note(before, request.args.get("revert_after"))
        draft.steps.append(
            Step(action=SET_QUOTA, target=target, changes=tuple(changes), gpus=int(abs(new - limit.hard)), detail=detail)
        )
        return draft

    async def _plan_queue(
        self, request: PlanRequest, clients: Clients, name: str, resource: str, new: int, force: bool, max_gpus: int | None
    ) -> Draft:
        draft = Draft(scopes=[Scope(kind="cluster_queue", name=name)])
        version = await served_version(clients.reader, KUEUE)
        ref = ObjectRef(group=KUEUE, version=version, plural="clusterqueues", name=name)
        try:
            read = await clients.reader.get(ref)
        except NotFound:
            draft.blocked.append(f"ClusterQueue {name} does not exist")
            return draft
        flavor = request.args.get("flavor")
        spot = locate_nominal(read.object, resource, str(flavor) if flavor else None)
        if isinstance(spot, str):
            draft.blocked.append(spot)
            return draft
        used = queue_usage(read.object, spot.flavor, resource)
        what = f"ClusterQueue {name} flavor {spot.flavor} {resource} nominalQuota"
        blocked, warnings = check_new_value(what, spot.value, new, used, force=force, max_gpus=max_gpus)
        draft.blocked += blocked
        draft.warnings += warnings
        queues = await clients.reader.list_objects(KUEUE, version, "clusterqueues")
        total, counted = queues_total(queues.items, name, spot.flavor, resource, new)
        cluster = capacity(request.snapshot, resource)
        if (over := overcommit_warning(total, f"{counted} ClusterQueues", "nominal quotas", resource, cluster)) is not None:
            draft.warnings.append(over)
        patch = [{"op": "replace", "path": spot.path, "value": str(new)}]
        if await dry_run(draft.blocked, clients.acting.patch(ref, patch, resource_version=read.resource_version, dry_run=True)):
            draft.dry_run = "server"
        before = number(spot.value)
        changes = [Change(field=nominal_field(spot.flavor, resource), before=before, after=new)]
        if not force:
            changes.append(Change(field=used_field(resource), before=number(used), after=number(used)))
        target = TargetRef(
            kind="ClusterQueue", api_version=f"{KUEUE}/{version}", name=name, uid=read.uid, resource_version=read.resource_version
        )
        detail = f"{what}: {before} → {new} ({used:g} in use)" + _revert_note(before, request.args.get("revert_after"))
        draft.steps.append(
            Step(action=SET_NOMINAL, target=target, changes=tuple(changes), gpus=int(abs(new - spot.value)), detail=detail)
        )
        return draft

    # -- stale --------------------------------------------------------------------------------
    async def stale(self, plan: Plan, clients: Clients) -> list[str]:
        reasons: list[str] = []
        for step in plan.steps:
            try:
                read = await clients.reader.get(_ref(step.target))
            except NotFound:
                reasons.append(f"{step.target.key} is gone")
                continue
            if step.target.resource_version and read.resource_version == step.target.resource_version:
                continue  # not written since the plan read it
            if (why := drift(step, read.object)) is not None:
                reasons.append(why)
        return reasons

    # -- execute ------------------------------------------------------------------------------
    async def execute(self, plan: Plan, ctx: ExecContext) -> Report:
        async def apply(step: Step, calls: StepCalls) -> str:
            change = step.changes[0]

            def still_planned(fresh: ObjectResult) -> None:
                if (why := drift(step, fresh.object)) is not None:
                    raise StepDone("refused", why)
                if current_value(step, fresh.object)[0] == change.after:
                    raise StepDone("skipped", f"{change.field} is already {change.after}")

            ref, acting = _ref(step.target), ctx.clients.acting
            await write_on_fresh(
                calls, lambda: ctx.clients.reader.get(ref), still_planned, lambda fresh: self._write(acting, step, fresh)
            )
            message = f"{change.field}: {change.before} → {change.after}"
            if (due := revert_at(plan, ctx.now())) is not None:
                message += f"; revert due at {due:%Y-%m-%dT%H:%M:%SZ}"
            return message

        return await run_steps(plan, ctx, apply)

    @staticmethod
    def _write(acting: ActingClient, step: Step, fresh: ObjectResult) -> Awaitable[ObjectResult]:
        """The patch for the step, on the version just read (a Conflict if anything writes in between)."""
        change, ref = step.changes[0], _ref(step.target)
        value = None if change.after is None else str(change.after)
        if (key := parse_hard_field(change.field)) is not None:
            return acting.patch(ref, {"spec": {"hard": {key: value}}}, resource_version=fresh.resource_version)
        flavor, resource = parse_nominal_field(change.field) or ("", "")
        spot = locate_nominal(fresh.object, resource, flavor)
        assert not isinstance(spot, str)  # drift() found it a moment ago
        patch = [{"op": "replace", "path": spot.path, "value": value}]
        return acting.patch(ref, patch, resource_version=fresh.resource_version)

    # -- verify -------------------------------------------------------------------------------
    async def verify(self, plan: Plan, report: Report, ctx: ExecContext) -> Verification:
        checks = [
            await self._verified(step, outcome.status, outcome.message, ctx)
            for step, outcome in zip(plan.steps, report.outcomes, strict=True)
        ]
        return Verification(checks=tuple(checks))

    async def _verified(self, step: Step, status: str, message: str, ctx: ExecContext) -> Check:
        """The value in force: a ResourceQuota's status.hard (the quota controller's), a ClusterQueue's spec."""
        change = step.changes[0]
        name = f"{step.target.key} {change.field}"
        if status in ("refused", "failed"):
            return Check(name=name, ok=False, detail=f"not changed: {message}")
        ref, key = _ref(step.target), parse_hard_field(change.field)

        async def in_force() -> tuple[float | None, float | None]:
            obj = (await ctx.clients.reader.get(ref)).object
            spec_value = current_value(step, obj)[0]
            if key is None:
                return spec_value, spec_value  # a ClusterQueue has no status echo of its quotas
            return spec_value, quantity(((obj.get("status") or {}).get("hard") or {}).get(key))

        def as_set(values: tuple[float | None, float | None]) -> bool:
            return all(value == change.after for value in values)

        ok, (spec_value, status_value) = await wait_until(
            ctx, in_force, as_set, timeout_s=self.verify_timeout_s, interval_s=self.poll_s
        )
        detail = f"{'status.hard' if key else 'spec'} is {number(status_value)}" + ("" if ok else f", expected {change.after}")
        if key and spec_value != status_value:
            detail += f" (spec.hard {number(spec_value)}: the quota controller has not caught up)"
        return Check(name=name, ok=ok, detail=detail)

    # -- undo ---------------------------------------------------------------------------------
    def undo(self, plan: Plan, report: Report) -> Draft | None:
        """Set back what this run set; only where it is still this run's value (see `drift`), whatever is in use."""
        draft = Draft()
        for step, outcome in zip(plan.steps, report.outcomes, strict=True):
            if outcome.status != "done":
                continue
            change = step.changes[0]
            draft.steps.append(
                Step(
                    action=step.action,
                    target=step.target.model_copy(update={"resource_version": None}),  # status writes move it anyway
                    changes=(Change(field=change.field, before=change.after, after=change.before),),
                    gpus=step.gpus,
                    detail=f"revert {step.target.key}: {change.field} {change.after} → {change.before}",
                )
            )
            if (scope := _scope(step.target)) not in draft.scopes:
                draft.scopes.append(scope)
            draft.locks += [lock for lock in _locks(step.target) if lock not in draft.locks]
            lowering = change.before is not None and change.after is not None and float(change.before) < float(change.after)
            if lowering:
                draft.warnings.append(
                    f"{step.target.key} goes back to {change.before} even if more is in use by then:"
                    " running pods keep running, new ones wait until usage drops under it"
                )
        return draft if draft.steps else None


LOGIC = AdjustQuota()
