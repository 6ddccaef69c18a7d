"""adjust-quota's and scale-pool's pure step logic: drift since the plan, undo from the recorded
before-state, the revert time, running steps in order (refusals stop the rest)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gpuctl.errors import Conflict, Forbidden
from gpuctl.identity import Identity, Requester
from gpuctl.playbooks.acting import ActingClient, ObjectResult
from gpuctl.playbooks.adjust_quota import LOGIC as ADJUST_QUOTA
from gpuctl.playbooks.adjust_quota import drift as quota_drift
from gpuctl.playbooks.adjust_quota import revert_at
from gpuctl.playbooks.context import RunContext
from gpuctl.playbooks.kubeapi import ApiCall
from gpuctl.playbooks.logic import Clients, Report, StepOutcome
from gpuctl.playbooks.plan import Change, Plan, Step, TargetRef
from gpuctl.playbooks.pool_steps import (
    CORDON,
    EVICT,
    LIMIT,
    LIMIT_FIELD,
    MARK,
    MARK_FIELD,
    NODE_FIELD,
    REPLICAS_FIELD,
    SCALE,
    UNCORDON,
    UNSCHEDULABLE_FIELD,
    drift,
    read_field,
)
from gpuctl.playbooks.scale_pool import LOGIC as SCALE_POOL
from gpuctl.playbooks.stepkit import WRITE_ATTEMPTS, StepCalls, StepDone, run_steps, write_on_fresh

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
REQUESTER = Requester(identity=Identity(user="user-a", groups=("team-a",)), via="cli")
KEY = "requests.nvidia.com/gpu"
QUOTA = TargetRef(kind="ResourceQuota", name="gpu", namespace="team-a", uid="u1", resource_version="10")


def plan(playbook: str, steps: list[Step], **parameters: Any) -> Plan:
    return Plan(playbook=playbook, parameters=parameters, requester=REQUESTER, created_at=NOW, steps=tuple(steps))


def report(*statuses: str) -> Report:
    return Report(outcomes=tuple(StepOutcome(index=i, status=s, message=s) for i, s in enumerate(statuses)))  # type: ignore[arg-type]


def quota_step(before: int, after: int, *, used: int | None = None) -> Step:
    changes = [Change(field=f"spec.hard[{KEY}]", before=before, after=after)]
    if used is not None:
        changes.append(Change(field=f"status.used[{KEY}]", before=used, after=used))
    return Step(action="set_resourcequota", target=QUOTA, changes=tuple(changes), gpus=abs(after - before))


def quota_obj(hard: str, used: str = "0", uid: str = "u1") -> dict[str, Any]:
    return {"metadata": {"uid": uid, "resourceVersion": "11"}, "spec": {"hard": {KEY: hard}}, "status": {"used": {KEY: used}}}


def test_quota_drift() -> None:
    guarded = quota_step(8, 4, used=3)
    assert quota_drift(guarded, quota_obj("8", "3")) is None
    assert quota_drift(guarded, quota_obj("8", "4")) is None  # still within the new value
    grew = quota_drift(guarded, quota_obj("8", "5"))
    assert grew is not None and "5 are in use now, above the new 4" in grew and "force=true" in grew
    assert quota_drift(guarded, quota_obj("4", "5")) is None  # already set: nothing to object to
    moved = quota_drift(guarded, quota_obj("6", "3"))
    assert moved == f"ResourceQuota team-a/gpu: spec.hard[{KEY}] is 6 now, the plan saw 8"
    replaced = quota_drift(guarded, quota_obj("8", "3", uid="u2"))
    assert replaced == "ResourceQuota team-a/gpu was deleted and created again since the plan"
    # A forced plan (and an undo) carries no usage guard.
    assert quota_drift(quota_step(8, 4), quota_obj("8", "7")) is None
    gone = quota_drift(quota_step(8, 4), {"metadata": {"uid": "u1"}, "spec": {"hard": {}}})
    assert gone == f"ResourceQuota team-a/gpu no longer has spec.hard[{KEY}]"


def test_revert_time_counts_from_execution() -> None:
    timed = plan("adjust-quota", [quota_step(4, 8)], revert_after=7200.0)
    assert revert_at(timed, NOW) == NOW + timedelta(hours=2)
    assert revert_at(plan("adjust-quota", [quota_step(4, 8)], revert_after=None), NOW) is None
    assert ADJUST_QUOTA.revert_at(timed, NOW) == NOW + timedelta(hours=2)


def test_quota_undo_sets_the_before_value_back_without_a_usage_guard() -> None:
    raised = plan("adjust-quota", [quota_step(4, 8, used=3)], namespace="team-a", quota=8)
    draft = ADJUST_QUOTA.undo(raised, report("done"))
    assert draft is not None
    (step,) = draft.steps
    assert step.changes == (Change(field=f"spec.hard[{KEY}]", before=8, after=4),)
    assert step.target.uid == "u1" and step.target.resource_version is None
    assert [s.name for s in draft.scopes] == ["team-a"] and [lock.name for lock in draft.locks] == ["team-a"]
    assert "goes back to 4 even if more is in use" in draft.warnings[0]
    assert ADJUST_QUOTA.undo(raised, report("refused")) is None
    assert ADJUST_QUOTA.undo(raised, report("skipped")) is None  # already so: not this run's doing


def test_a_cluster_queue_undo_is_scoped_to_the_queue_and_unlocked() -> None:
    field = "spec.resourceGroups.flavors[h100].resources[nvidia.com/gpu].nominalQuota"
    target = TargetRef(kind="ClusterQueue", api_version="kueue.x-k8s.io/v1beta2", name="team-a", uid="q")
    lowered = Step(action="set_clusterqueue_quota", target=target, changes=(Change(field=field, before=8, after=4),))
    draft = ADJUST_QUOTA.undo(plan("adjust-quota", [lowered]), report("done"))
    assert draft is not None and draft.steps[0].changes[0].after == 8
    assert [(s.kind, s.name) for s in draft.scopes] == [("cluster_queue", "team-a")] and draft.locks == []
    assert draft.warnings == []  # raising back needs no warning


MD = TargetRef(kind="MachineDeployment", api_version="cluster.x-k8s.io/v1beta2", name="h100", namespace="capi", uid="md")
NODE = TargetRef(kind="Node", name="h100-3", uid="n3", resource_version="5")
MACHINE = TargetRef(kind="Machine", api_version="cluster.x-k8s.io/v1beta2", name="h100-3", namespace="capi", uid="m3")
POD = TargetRef(kind="Pod", name="train", namespace="team-a", uid="p1")


def scale_down_steps() -> list[Step]:
    return [
        Step(action=CORDON, target=NODE, changes=(Change(field=UNSCHEDULABLE_FIELD, before=False, after=True),)),
        Step(action=EVICT, target=POD, changes=(Change(field=NODE_FIELD, before="h100-3", after=None),)),
        Step(action=MARK, target=MACHINE, changes=(Change(field=MARK_FIELD, before=None, after="yes"),)),
        Step(action=SCALE, target=MD, changes=(Change(field=REPLICAS_FIELD, before=3, after=2),), gpus=8),
    ]


def test_undo_of_a_scale_down_scales_back_up() -> None:
    draft = SCALE_POOL.undo(
        plan("scale-pool", scale_down_steps(), pool="h100", replicas=2), report("done", "done", "done", "done")
    )
    assert draft is not None and not draft.blocked
    (step,) = draft.steps
    assert (step.action, step.changes[0].before, step.changes[0].after) == (SCALE, 2, 3)
    assert "evicted pods are not brought back" in draft.warnings[0] and "team-a/train" in draft.warnings[0]
    assert [(s.kind, s.name) for s in draft.scopes] == [("pool", "h100")]


def test_undo_of_a_scale_down_that_stopped_before_scaling_uncordons_and_unmarks() -> None:
    stopped = report("done", "done", "done", "refused")
    draft = SCALE_POOL.undo(plan("scale-pool", scale_down_steps(), pool="h100"), stopped)
    assert draft is not None
    assert [(s.action, s.target.name, s.changes[0].after) for s in draft.steps] == [
        (UNCORDON, "h100-3", False),
        (MARK, "h100-3", None),
    ]


def test_undo_of_a_scale_up_is_blocked_with_the_plan_that_does_it() -> None:
    up = Step(action=SCALE, target=MD, changes=(Change(field=REPLICAS_FIELD, before=2, after=4),), gpus=16)
    draft = SCALE_POOL.undo(plan("scale-pool", [up], pool="h100"), report("done"))
    assert draft is not None and draft.steps[0].changes[0].after == 2
    assert "gpuctl playbook plan scale-pool -p pool=h100 -p replicas=2" in draft.blocked[0]


def test_undo_of_a_node_pool_limit_puts_the_old_one_back_even_none() -> None:
    target = TargetRef(kind="NodePool", api_version="karpenter.sh/v1", name="gpu", uid="np")
    raised = Step(action=LIMIT, target=target, changes=(Change(field=LIMIT_FIELD, before=None, after=16),))
    draft = SCALE_POOL.undo(plan("scale-pool", [raised], pool="gpu"), report("done"))
    assert draft is not None and draft.steps[0].changes[0] == Change(field=LIMIT_FIELD, before=16, after=None)
    assert SCALE_POOL.undo(plan("scale-pool", [raised], pool="gpu"), report("failed")) is None


def test_pool_fields_and_drift() -> None:
    node = {"metadata": {"uid": "n3"}, "spec": {"unschedulable": True}}
    assert read_field(UNSCHEDULABLE_FIELD, node) is True
    assert read_field(UNSCHEDULABLE_FIELD, {"metadata": {}, "spec": {}}) is False
    machine = {"metadata": {"uid": "m3", "annotations": {"cluster.x-k8s.io/delete-machine": "true"}}}
    assert read_field(MARK_FIELD, machine) == "yes"  # Cluster API looks at presence only
    assert read_field(LIMIT_FIELD, {"spec": {"limits": {"nvidia.com/gpu": "16", "cpu": "1k"}}}) == 16
    assert read_field(LIMIT_FIELD, {"spec": {"limits": {}}}) is None
    md_step = scale_down_steps()[3]
    assert drift(md_step, {"metadata": {"uid": "md"}, "spec": {"replicas": 3}}) is None
    assert drift(md_step, {"metadata": {"uid": "md"}, "spec": {"replicas": 2}}) is None
    # Replicas left unset (no CAPI webhook defaulted them): what it has counts.
    assert drift(md_step, {"metadata": {"uid": "md"}, "spec": {}, "status": {"replicas": 3}}) is None
    assert drift(md_step, {"metadata": {"uid": "md"}, "spec": {"replicas": 5}}) == (
        "MachineDeployment capi/h100: spec.replicas is 5 now, the plan saw 3"
    )


def _context(calls: list[tuple[ApiCall, int]], progress: list[str]) -> RunContext:
    async def on_call(call: ApiCall, step: int) -> None:
        calls.append((call, step))

    async def on_progress(message: str, step: int | None) -> None:
        progress.append(message)

    async def no_snapshot() -> Any:
        raise AssertionError("not asked for")

    unused = ActingClient(None, None)  # type: ignore[arg-type]  # the handlers below make no requests
    return RunContext(Clients(unused, unused), NOW + timedelta(hours=1), on_call, on_progress, no_snapshot)


class _Answer:
    def __init__(self, status: int) -> None:
        self.call = ApiCall(method="PATCH", path="/x", status=status, audit_id="a", acting_as=None, dry_run=False)


async def test_steps_run_in_order_and_a_refusal_stops_the_rest() -> None:
    calls: list[tuple[ApiCall, int]] = []
    progress: list[str] = []
    steps = [quota_step(1, 2), quota_step(2, 3), quota_step(3, 4), quota_step(4, 5)]

    async def answer(status: int) -> _Answer:
        return _Answer(status)

    async def handler(step: Step, tracked: StepCalls) -> str:
        before = step.changes[0].before
        await tracked.track(answer(200))
        if before == 2:
            raise StepDone("skipped", "already so")
        if before == 3:
            raise Forbidden('User "user-b" cannot patch', reason="Forbidden")
        return "set"

    result = await run_steps(plan("adjust-quota", steps), _context(calls, progress), handler)
    assert [(o.status, o.message) for o in result.outcomes] == [
        ("done", "set"),
        ("skipped", "already so"),
        ("refused", 'the cluster refused it: User "user-b" cannot patch'),
        ("skipped", "not run: step 3 did not complete"),
    ]
    assert [step for _, step in calls] == [0, 1, 2] and len(result.outcomes[0].calls) == 1
    assert not result.ok and result.message.startswith("1 of 4 steps done; step 3 refused")
    assert len(progress) == 3


async def test_a_conflict_is_a_refusal_that_says_so() -> None:
    async def handler(step: Step, tracked: StepCalls) -> str:
        raise Conflict("cannot patch: it changed", status=409, reason="Conflict")

    result = await run_steps(plan("adjust-quota", [quota_step(1, 2)]), _context([], []), handler)
    assert result.outcomes[0].status == "refused" and "changed since it was read (Conflict)" in result.outcomes[0].message


async def test_a_conflict_rereads_and_checks_again_before_writing_again() -> None:
    answered = _Answer(200).call
    versions = iter(["1", "2", "3", "4"])
    checked: list[str] = []
    conflicts = [True, False]

    async def read() -> ObjectResult:
        return ObjectResult(call=answered, object={"metadata": {"resourceVersion": next(versions)}})

    def check(fresh: ObjectResult) -> None:
        checked.append(fresh.resource_version)

    async def write(fresh: ObjectResult) -> ObjectResult:
        if conflicts.pop(0):
            raise Conflict("changed", status=409, reason="Conflict")
        return fresh

    calls = StepCalls(_context([], []), 0)
    written = await write_on_fresh(calls, read, check, write)
    assert written.resource_version == "2" and checked == ["1", "2"]

    async def always_conflicts(fresh: ObjectResult) -> ObjectResult:
        raise Conflict("changed", status=409, reason="Conflict")

    checked.clear()
    versions = iter(str(v) for v in range(10))
    with pytest.raises(Conflict):
        await write_on_fresh(calls, read, check, always_conflicts)
    assert len(checked) == WRITE_ATTEMPTS

    def refuse(fresh: ObjectResult) -> None:
        raise StepDone("refused", "changed in what matters")

    with pytest.raises(StepDone) as refused:
        await write_on_fresh(calls, read, refuse, always_conflicts)
    assert refused.value.status == "refused"


async def test_a_refused_request_is_recorded_with_its_step_once() -> None:
    recorded: list[tuple[ApiCall, int]] = []
    refused = _Answer(403).call

    async def forbidden() -> _Answer:
        raise Forbidden('User "user-b" cannot patch', reason="Forbidden", call=refused)

    async def tracked_refusal(step: Step, tracked: StepCalls) -> str:
        return str(await tracked.track(forbidden()))  # seen by track, then by run_steps

    async def untracked_refusal(step: Step, tracked: StepCalls) -> str:
        raise Conflict("cannot patch: it changed", status=409, reason="Conflict", call=_Answer(409).call)

    result = await run_steps(plan("adjust-quota", [quota_step(1, 2)]), _context(recorded, []), tracked_refusal)
    assert result.outcomes[0].status == "refused" and result.outcomes[0].calls == (refused,)
    assert recorded == [(refused, 0)]
    result = await run_steps(plan("adjust-quota", [quota_step(1, 2)]), _context(recorded, []), untracked_refusal)
    assert [c.status for c in result.outcomes[0].calls] == [409] and len(recorded) == 2
