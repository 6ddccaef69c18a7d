"""reclaim-idle-gpus' logic without an API server: what makes a plan stale, plans that need no reads."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from gpuctl.identity import Identity, Requester
from gpuctl.model import Snapshot
from gpuctl.playbooks.context import RunContext
from gpuctl.playbooks.loader import Catalog
from gpuctl.playbooks.logic import Clients, PlanRequest
from gpuctl.playbooks.params import validate_params
from gpuctl.playbooks.plan import Plan, Step, TargetRef
from gpuctl.playbooks.reclaim import LABELS, LOGIC, NODE, PHASE, SKIPPED_SHOWN, PodNow, changed_since_plan
from tests.snapshots import HOUR, T0, World

UID = "0b7c-uid"
TARGET = TargetRef(kind="Pod", name="train-3", namespace="team-a", uid=UID, resource_version="100")
BEFORE = {NODE: "node-1", PHASE: "Running", LABELS: {"app": "train"}, "metadata.annotations[gpuctl.io/reclaim]": None}
NO_CLIENTS = cast(Clients, None)  # plans below choose nothing, so they never read or write


def pod_now(**changes: Any) -> PodNow:
    meta: dict[str, Any] = {"name": "train-3", "namespace": "team-a", "uid": UID, "resourceVersion": "101",
                            "labels": {"app": "train"}, "annotations": {}}  # fmt: skip
    meta.update(changes.pop("meta", {}))
    obj = {"metadata": meta, "spec": {"nodeName": changes.pop("node", "node-1")}, "status": {"phase": changes.pop("phase", "Running")}}
    return PodNow.of(obj)


def test_status_only_updates_are_not_a_reason() -> None:
    assert changed_since_plan(pod_now(), TARGET, BEFORE) == (None, False)  # resourceVersion moved: 100 -> 101


def test_what_makes_a_planned_pod_stale() -> None:
    assert changed_since_plan(None, TARGET, BEFORE) == ("team-a/train-3 is gone", True)
    replaced = changed_since_plan(pod_now(meta={"uid": "new"}), TARGET, BEFORE)
    assert replaced == ("team-a/train-3 was replaced by another pod of that name (uid new, planned 0b7c-uid)", True)
    terminating = changed_since_plan(pod_now(meta={"deletionTimestamp": "2026-12-01T12:00:00Z"}), TARGET, BEFORE)
    assert terminating == ("team-a/train-3 is already terminating", True)
    assert changed_since_plan(pod_now(node="node-2"), TARGET, BEFORE) == (
        "team-a/train-3: spec.nodeName is now 'node-2' (was 'node-1' when planned)", False)  # fmt: skip
    assert changed_since_plan(pod_now(phase="Succeeded"), TARGET, BEFORE) == (
        "team-a/train-3: status.phase is now 'Succeeded' (was 'Running' when planned)", False)  # fmt: skip
    relabelled = changed_since_plan(pod_now(meta={"labels": {"app": "train", "gpuctl.io/reclaim": "never"}}), TARGET, BEFORE)
    assert relabelled == ("team-a/train-3: its labels changed since the plan", False)
    opted_out = changed_since_plan(pod_now(meta={"annotations": {"gpuctl.io/reclaim": "never"}}), TARGET, BEFORE)
    assert opted_out == ("team-a/train-3: annotation gpuctl.io/reclaim is now 'never' (was None when planned)", False)
    other_annotation = pod_now(meta={"annotations": {"gpuctl.io/reclaim-after": "2026-12-01T12:30:00Z"}})
    assert changed_since_plan(other_annotation, TARGET, BEFORE) == (None, False)  # not one the plan relies on


def request(catalog: Catalog, world: World, metrics_stale: bool = False, **given: str) -> PlanRequest:
    playbook = catalog.get("reclaim-idle-gpus")
    requester = Requester(identity=Identity(user="user-a", groups=("team-a",)), via="cli")
    snapshot = world.snapshot(metrics_stale=metrics_stale)
    return PlanRequest(playbook=playbook, args=validate_params(playbook, given), requester=requester, snapshot=snapshot, now=T0)


async def test_a_plan_with_stale_metrics_is_blocked(catalog: Catalog) -> None:
    world = World()
    world.pod("idle", gpus=4)
    draft = await LOGIC.plan(request(catalog, world, metrics_stale=True, namespace="team-a"), NO_CLIENTS)
    assert draft.steps == [] and draft.blocked == [
        "GPU metrics are stale (Prometheus unreachable): an unmeasured GPU is not an idle one; try again later"
    ]
    assert [str(scope) for scope in draft.scopes] == ["team-a"] and draft.dry_run == "none"


async def test_left_out_pods_are_listed_then_counted(catalog: Catalog) -> None:
    world = World()
    for i in range(SKIPPED_SHOWN + 30):
        world.pod(f"young-{i:03d}", node=f"node-{i}", age=HOUR, idle_for=3 * HOUR - i)
    for i in range(5):
        world.pod(f"brief-{i}", node=f"other-{i}", idle_for=HOUR)
    draft = await LOGIC.plan(request(catalog, world), NO_CLIENTS)
    assert draft.steps == [] and draft.blocked == []
    assert len(draft.skipped) == SKIPPED_SHOWN
    assert draft.skipped[0].target.name == "young-000" and draft.skipped[0].reason == "1h00m old, younger than 2h00m"
    assert draft.skipped[0].target.uid == world.pods[0].uid
    assert draft.warnings == ["35 more idle-looking pods left out (30 too young, 5 idle too briefly); not listed one by one"]


async def test_a_staged_run_whose_deadline_comes_before_the_grace_ends_does_nothing(catalog: Catalog) -> None:
    steps = (
        Step(action="annotate_pods", target=TARGET), Step(action="record_pod_event", target=TARGET),
        Step(action="evict_pods", target=TARGET, gpus=4),
    )  # fmt: skip
    args = validate_params(catalog.get("reclaim-idle-gpus"), {"mode": "staged", "grace": "30m"})
    plan = Plan(playbook="reclaim-idle-gpus", parameters=dict(args), created_at=T0, steps=steps,
                requester=Requester(identity=Identity(user="user-a"), via="cli"))  # fmt: skip
    seen: list[object] = []

    async def sink(*item: object) -> None:
        seen.append(item)

    async def no_snapshot() -> Snapshot:
        raise AssertionError("a refused run needs no live picture")

    ctx = RunContext(clients=NO_CLIENTS, deadline=T0 + timedelta(minutes=20), on_call=sink, on_progress=sink,
                     latest_snapshot=no_snapshot, clock=lambda: T0)  # fmt: skip
    report = await LOGIC.execute(plan, ctx)
    assert [o.status for o in report.outcomes] == ["refused"] * 3 and seen == []
    assert report.outcomes[0].message == (
        "the run's deadline (12:20:00 UTC) comes before the 30m grace period ends: nothing was done")
    assert report.message == "evicted 0 pod(s) (0 GPUs), 1 refused"
