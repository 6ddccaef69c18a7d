"""reclaim-idle-gpus against the real API server: re-reads, dry runs, notices, the Eviction API, budgets.

The live picture is the one thing the tests control: `Live` builds a Snapshot from the pods the
API server has now (real uids, resourceVersions, labels, nodes), with their GPUs in the states a
test sets (idle by default, idle 3 h, pods 5 h old, no controller like the bare pods here).
Everything else is real: RBAC through impersonation (user-a acts, gpu-viewer reads), the
disruption controller, the Eviction API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio

from gpuctl.clock import utcnow
from gpuctl.identity import Identity, Requester
from gpuctl.model import Snapshot
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.context import RunContext
from gpuctl.playbooks.evictions import Backoff
from gpuctl.playbooks.kubeapi import ApiCall, KubeApi
from gpuctl.playbooks.loader import load_catalog
from gpuctl.playbooks.logic import Clients, Draft, PlanRequest
from gpuctl.playbooks.params import validate_params
from gpuctl.playbooks.plan import Plan
from gpuctl.playbooks.reclaim import NOTICE_ANNOTATION, ReclaimLogic
from gpuctl.sources.kube.connect import KubeConnection
from testbed.fleet_loader import wait_nodes_ready
from testbed.kube import RestClient, apply_objects, budget_settled
from testbed.nodes import gpu_node_object
from testbed.objects import gpu_pod, namespace_object, pod_disruption_budget, role, role_binding, rule, unique
from testbed.waiting import poll
from tests.snapshots import HOUR, World

pytestmark = pytest.mark.testbed

USER_A = Identity(user="user-a", groups=("team-a",))
USER_B = Identity(user="user-b", groups=("team-b",))
VIEWER = Identity(user="gpu-viewer", groups=("gpuctl:viewers",))  # reads pods cluster-wide, nothing else
PLAYBOOK = load_catalog().get("reclaim-idle-gpus")
# Short waits so a run's deadline comes within seconds; the logic's own defaults are 10 s / 60 s.
LOGIC = ReclaimLogic(backoff=Backoff(first_s=0.5, max_s=1.0, last_try_s=0.3), verify_wait_s=30.0, poll_s=0.5)


@dataclass
class Bed:
    namespace: str
    nodes: tuple[str, str]
    admin: RestClient
    api: KubeApi
    calls: list[ApiCall]  # every request any client made through `api`, refusals included

    def clients(self, identity: Identity = USER_A) -> Clients:
        return Clients(acting=ActingClient(self.api, identity), reader=ActingClient(self.api, VIEWER))

    async def pods(self, *pods: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Create the pods and wait until kwok runs them; their objects by name."""
        await apply_objects(self.admin, pods)
        names = {p["metadata"]["name"] for p in pods}

        async def running() -> dict[str, dict[str, Any]]:
            items = (await self.admin.list("Pod", self.namespace)).body["items"]
            return {p["metadata"]["name"]: p for p in items if p["metadata"]["name"] in names}

        found = await poll(running, lambda got: len(got) == len(names) and all(
            p["status"].get("phase") == "Running" for p in got.values()), what=f"kwok to run {sorted(names)}")  # fmt: skip
        return found

    async def pod(self, name: str) -> dict[str, Any] | None:
        response = await self.admin.get("Pod", name, self.namespace)
        return response.body if response.status == 200 else None


@dataclass
class Live:
    """The live picture: the namespace's pods as the API server has them, GPUs in the states the test sets."""

    bed: Bed
    only: Iterable[str]  # the test's own pods (the namespace is shared by the module's tests)
    states: dict[str, str] = field(default_factory=dict)  # pod name -> "idle" (default) | "busy" | ...

    async def snapshot(self) -> Snapshot:
        world = World(taken_at=utcnow())
        for obj in (await self.bed.admin.list("Pod", self.bed.namespace)).body["items"]:
            meta, spec = obj["metadata"], obj["spec"]
            if meta["name"] not in self.only:
                continue
            gpus = int(spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
            state = self.states.get(meta["name"], "idle")
            world.pod(meta["name"], namespace=meta["namespace"], node=spec["nodeName"], gpus=gpus, states=(state,) * gpus,
                      idle_for=3 * HOUR, age=5 * HOUR, uid=meta["uid"], resource_version=meta["resourceVersion"],
                      labels=meta.get("labels") or {}, phase=obj["status"].get("phase", "Pending"), owners=())  # fmt: skip
        return world.snapshot()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bed(admin: RestClient, operator_connection: KubeConnection) -> Bed:
    """A namespace where team-a may annotate pods, post Events and evict, on two fresh 8-GPU kwok nodes."""
    namespace = unique("reclaim")
    nodes = (f"{namespace}-gpu-0", f"{namespace}-gpu-1")
    rules = [rule("", ["pods"], ["patch"]), rule("events.k8s.io", ["events"], ["create"]), rule("", ["pods/eviction"], ["create"])]
    await apply_objects(admin, [
        namespace_object(namespace),
        role("reclaimer", namespace, rules),
        role_binding("team-a-reclaims", namespace, role="reclaimer", group="team-a"),
        *(gpu_node_object(n, labels={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}, resources={"nvidia.com/gpu": 8})
          for n in nodes),
    ])  # fmt: skip
    await wait_nodes_ready(admin, set(nodes))
    calls: list[ApiCall] = []
    api = KubeApi(operator_connection, on_call=calls.append)
    user_a = ActingClient(api, USER_A)

    async def granted() -> bool:
        return (await user_a.can_i("create", "pods", subresource="eviction", namespace=namespace)).allowed

    await poll(granted, what="team-a's RoleBinding to reach RBAC")
    return Bed(namespace, nodes, admin, api, calls)


def plan_request(snapshot: Snapshot, requester: Identity = USER_A, grace_s: float | None = None, **given: str) -> PlanRequest:
    args = validate_params(PLAYBOOK, {"namespace": snapshot.pods[0].namespace, **given})
    if grace_s is not None:  # the tests' grace periods are seconds; the parameter's minimum (5m) is for people
        args["grace"] = grace_s
    return PlanRequest(playbook=PLAYBOOK, args=args, requester=Requester(identity=requester, via="cli"), snapshot=snapshot,
                       now=utcnow())  # fmt: skip


def seal(draft: Draft, request: PlanRequest) -> Plan:
    """What the engine does with a Draft (here without policy, approval or locks)."""
    return Plan(playbook=PLAYBOOK.name, parameters=dict(request.args), requester=request.requester, created_at=request.now,
                snapshot_generation=request.snapshot.generation, steps=tuple(draft.steps), skipped=tuple(draft.skipped),
                warnings=tuple(draft.warnings), blocked=tuple(draft.blocked), dry_run=draft.dry_run)  # fmt: skip


@dataclass
class Run:
    """List-appending sinks for a RunContext; `react` sees each progress line as it is reported."""

    calls: list[tuple[ApiCall, int]] = field(default_factory=list)
    progress: list[str] = field(default_factory=list)
    react: Callable[[str], Awaitable[None]] | None = None

    def context(self, clients: Clients, live: Live, seconds: float) -> RunContext:
        async def on_call(call: ApiCall, step: int) -> None:
            self.calls.append((call, step))

        async def on_progress(message: str, step: int | None) -> None:
            self.progress.append(message)
            if self.react is not None:
                await self.react(message)

        deadline = utcnow() + timedelta(seconds=seconds)
        return RunContext(clients=clients, deadline=deadline, on_call=on_call, on_progress=on_progress, latest_snapshot=live.snapshot)


def methods(calls: Iterable[ApiCall]) -> set[tuple[str, str]]:
    """(method, last path segment) of each call, query string dropped."""
    return {(c.method, c.path.split("?")[0].rsplit("/", 1)[-1]) for c in calls}


async def test_the_plan_pins_rereads_and_dry_runs_without_changing_anything(bed: Bed) -> None:
    ns = bed.namespace
    objs = await bed.pods(
        gpu_pod("train-1", ns, 4, node=bed.nodes[0], labels={"app": "train"}),
        gpu_pod("train-2", ns, 2, node=bed.nodes[1], labels={"app": "train"}),
        gpu_pod("keep", ns, 1, node=bed.nodes[1]),
    )
    await bed.admin.patch("Pod", "keep", {"metadata": {"annotations": {"gpuctl.io/reclaim": "never"}}}, ns)
    live = Live(bed, objs)
    request = plan_request(await live.snapshot(), mode="staged")
    first = len(bed.calls)
    draft = await LOGIC.plan(request, bed.clients())

    assert draft.blocked == [] and draft.dry_run == "server"
    assert [(s.action, s.target.name) for s in draft.steps] == [
        ("annotate_pods", "train-1"), ("record_pod_event", "train-1"), ("annotate_pods", "train-2"),
        ("record_pod_event", "train-2"), ("evict_pods", "train-1"), ("evict_pods", "train-2")]  # fmt: skip
    evict = draft.steps[4]
    assert evict.target.uid == objs["train-1"]["metadata"]["uid"] and evict.gpus == 4
    assert evict.target.resource_version is not None and int(evict.target.resource_version) >= int(
        objs["train-1"]["metadata"]["resourceVersion"])  # fmt: skip
    assert evict.detail == f"idle 3h00m, 4 GPUs, {ns}/train-1, no controller: it is not recreated"
    assert draft.warnings == [
        f"2 planned pod(s) have no controller: once evicted they are not recreated ({ns}/train-1, {ns}/train-2)",
        "staged: 2 pod(s) are notified now and evicted after 30m unless busy again; the run's deadline must leave room "
        "for the grace period",
    ]
    assert [(s.target.name, s.reason) for s in draft.skipped] == [("keep", "opted out (annotation gpuctl.io/reclaim=never)")]
    assert [str(s) for s in draft.scopes] == [ns]
    assert sorted(lock.name for lock in draft.locks) == sorted(bed.nodes)

    made = bed.calls[first:]
    writes = [c for c in made if c.method != "GET" and "accessreview" not in c.path]
    assert writes and all(c.dry_run and c.acting_as == USER_A for c in writes)
    assert methods(writes) == {("PATCH", "train-1"), ("PATCH", "train-2"), ("POST", "events"), ("POST", "eviction")}
    assert all(c.acting_as == VIEWER for c in made if c.method == "GET")
    for name in ("train-1", "train-2"):
        pod = await bed.pod(name)
        assert pod is not None and pod["metadata"].get("deletionTimestamp") is None
        assert NOTICE_ANNOTATION not in (pod["metadata"].get("annotations") or {})
    events = (await bed.admin.request("GET", f"/apis/events.k8s.io/v1/namespaces/{ns}/events")).body["items"]
    assert [e for e in events if e.get("reason") == "GpuReclaimScheduled"] == []

    plan = seal(draft, request)
    assert await LOGIC.stale(plan, bed.clients()) == []
    # A status-only update moves the resourceVersion and is not a reason; a label change is.
    condition = {"type": "gpuctl.io/Checked", "status": "True", "lastTransitionTime": "2026-12-01T12:00:00Z"}
    await bed.admin.request("PATCH", f"/api/v1/namespaces/{ns}/pods/train-1/status", {"status": {"conditions": [condition]}},
                            content_type="application/strategic-merge-patch+json")  # fmt: skip
    moved = await bed.pod("train-1")
    assert moved is not None and moved["metadata"]["resourceVersion"] != evict.target.resource_version
    assert await LOGIC.stale(plan, bed.clients()) == []
    await bed.admin.patch("Pod", "train-2", {"metadata": {"labels": {"gpuctl.io/reclaim": "never"}}}, ns)
    assert await LOGIC.stale(plan, bed.clients()) == [f"{ns}/train-2: its labels changed since the plan"]


async def test_the_cluster_refusing_the_dry_run_blocks_the_plan(bed: Bed) -> None:
    ns = bed.namespace
    live = Live(bed, await bed.pods(gpu_pod("theirs", ns, 1, node=bed.nodes[0])))
    draft = await LOGIC.plan(plan_request(await live.snapshot(), requester=USER_B, mode="immediate"), bed.clients(USER_B))
    assert draft.steps == [] and len(draft.blocked) == 1
    assert draft.blocked[0].startswith("the cluster refuses the dry run: user-b (team-b) may not evict pods")


async def test_a_pdb_protected_pod_survives_reclaim(bed: Bed) -> None:
    ns = bed.namespace
    serving = {"app": "serving"}
    objs = await bed.pods(gpu_pod("serving-0", ns, 2, node=bed.nodes[0], labels=serving))
    await apply_objects(bed.admin, [pod_disruption_budget("serving", ns, serving, min_available=1)])
    await budget_settled(bed.admin, "serving", ns, allowed=0)
    live = Live(bed, objs)
    request = plan_request(await live.snapshot(), mode="immediate")
    draft = await LOGIC.plan(request, bed.clients())
    assert [s.target.name for s in draft.steps] == ["serving-0"]
    assert f"PDB {ns}/serving allows no disruption now for {ns}/serving-0; eviction will be retried until the deadline" in (
        draft.warnings)  # fmt: skip

    run = Run()
    plan = seal(draft, request)
    report = await LOGIC.execute(plan, run.context(bed.clients(), live, seconds=4))
    (outcome,) = report.outcomes
    assert outcome.status == "refused"
    assert outcome.message.startswith(f"{ns}/serving-0 not evicted: PDB {ns}/serving still allowed no disruption at the run's deadline")
    evictions = [c for c, _ in run.calls if c.path.split("?")[0].endswith("/eviction")]
    assert len(evictions) >= 2 and all(c.status == 429 and c.method == "POST" and not c.dry_run for c in evictions)
    assert any(p.startswith(f"PDB {ns}/serving blocked {ns}/serving-0, retrying in") for p in run.progress)
    assert report.message == "evicted 0 pod(s) (0 GPUs), 1 refused" and not report.ok
    still = await bed.pod("serving-0")
    assert still is not None and still["metadata"]["uid"] == objs["serving-0"]["metadata"]["uid"]
    assert still["metadata"].get("deletionTimestamp") is None
    assert (await LOGIC.verify(plan, report, run.context(bed.clients(), live, seconds=5))).checks == ()


async def test_a_pod_under_two_budgets_is_left_out(bed: Bed) -> None:
    ns = bed.namespace
    objs = await bed.pods(gpu_pod("double", ns, 1, node=bed.nodes[1], labels={"app": "double", "tier": "double"}))
    await apply_objects(bed.admin, [pod_disruption_budget("double-a", ns, {"app": "double"}, min_available=0),
                                    pod_disruption_budget("double-b", ns, {"tier": "double"}, min_available=0)])  # fmt: skip
    for budget in ("double-a", "double-b"):
        await budget_settled(bed.admin, budget, ns)
    live = Live(bed, objs)  # its pods carry no budgets: the dry run, not the snapshot, finds the two
    draft = await LOGIC.plan(plan_request(await live.snapshot(), mode="immediate"), bed.clients())
    assert draft.steps == [] and draft.blocked == []
    (skipped,) = draft.skipped
    assert skipped.target.name == "double"
    assert skipped.reason.startswith("under several PodDisruptionBudgets: the Eviction API refuses it")
    assert (await bed.pod("double")) is not None


async def test_staged_mode_notifies_then_spares_a_pod_that_became_busy(bed: Bed) -> None:
    ns = bed.namespace
    objs = await bed.pods(gpu_pod("nb-idle", ns, 1, node=bed.nodes[0]), gpu_pod("nb-wakes", ns, 1, node=bed.nodes[1]),
                          gpu_pod("nb-answers", ns, 1, node=bed.nodes[1]))  # fmt: skip
    live = Live(bed, objs)
    request = plan_request(await live.snapshot(), mode="staged", grace_s=1.0)
    draft = await LOGIC.plan(request, bed.clients())
    assert len(draft.steps) == 9 and draft.blocked == []
    plan = seal(draft, request)

    async def during_grace(message: str) -> None:
        if message.startswith("notified 3 pod(s)"):  # the notices are out: nb-wakes' owner starts working again,
            live.states["nb-wakes"] = "busy"  # nb-answers' owner opts out as the Event says
            await bed.admin.patch("Pod", "nb-answers", {"metadata": {"annotations": {"gpuctl.io/reclaim": "never"}}}, ns)

    run = Run(react=during_grace)
    report = await LOGIC.execute(plan, run.context(bed.clients(), live, seconds=30))
    by_step = {(plan.steps[o.index].action, plan.steps[o.index].target.name): o for o in report.outcomes}
    for name in objs:
        assert by_step[("annotate_pods", name)].status == "done"
        assert by_step[("record_pod_event", name)].status == "done"
    assert by_step[("evict_pods", "nb-idle")].status == "done"
    spared = by_step[("evict_pods", "nb-wakes")]
    assert spared.status == "skipped" and spared.message.startswith(f"spared {ns}/nb-wakes: busy again")
    assert spared.message.endswith(f"; its {NOTICE_ANNOTATION} notice was removed")
    assert any(p.startswith(f"spared {ns}/nb-wakes") for p in run.progress)
    answered = by_step[("evict_pods", "nb-answers")]
    assert answered.status == "skipped"
    assert answered.message == (f"{ns}/nb-answers: annotation gpuctl.io/reclaim is now 'never' (was None when planned); "
                                f"its {NOTICE_ANNOTATION} notice was removed")  # fmt: skip
    assert report.message == (f"evicted 1 pod(s) (1 GPUs), 2 spared; dropped since the plan, no other pod taken "
                              f"instead: {ns}/nb-answers, {ns}/nb-wakes")  # fmt: skip
    # A spared pod's notice is taken back as the requester, on the version just read, and the outcome carries the calls.
    for name in ("nb-wakes", "nb-answers"):
        outcome = by_step[("evict_pods", name)]
        patches = [c for c in outcome.calls if c.method == "PATCH"]
        assert len(patches) == 1 and patches[0].acting_as == USER_A and patches[0].path.split("?")[0].endswith(f"/pods/{name}")
        assert all((c, outcome.index) in run.calls for c in outcome.calls)  # recorded for the audit log as they happened

    woke = await bed.pod("nb-wakes")
    assert woke is not None and woke["metadata"]["uid"] == objs["nb-wakes"]["metadata"]["uid"]
    assert NOTICE_ANNOTATION not in (woke["metadata"].get("annotations") or {})
    answers = await bed.pod("nb-answers")
    assert answers is not None and answers["metadata"]["annotations"] == {"gpuctl.io/reclaim": "never"}
    events = (await bed.admin.request("GET", f"/apis/events.k8s.io/v1/namespaces/{ns}/events")).body["items"]
    noticed = {e["regarding"]["name"]: e for e in events if e.get("reason") == "GpuReclaimScheduled"}
    assert set(noticed) == set(objs)
    assert noticed["nb-wakes"]["type"] == "Warning" and "annotate it gpuctl.io/reclaim=never" in noticed["nb-wakes"]["note"]
    assert noticed["nb-idle"]["regarding"]["uid"] == objs["nb-idle"]["metadata"]["uid"]

    verification = await LOGIC.verify(plan, report, run.context(bed.clients(), live, seconds=40))
    assert verification.ok and [c.name for c in verification.checks] == [f"{ns}/nb-idle gone", f"{ns}/nb-idle GPUs released"]
    await poll(lambda: bed.pod("nb-idle"), lambda pod: pod is None, what="kwok to finish the eviction")


async def test_a_spared_pod_keeps_a_notice_that_is_not_this_runs(bed: Bed) -> None:
    ns = bed.namespace
    objs = await bed.pods(gpu_pod("nb-renoticed", ns, 1, node=bed.nodes[0]))
    live = Live(bed, objs)
    request = plan_request(await live.snapshot(), mode="staged", grace_s=1.0)
    plan = seal(await LOGIC.plan(request, bed.clients()), request)
    later = "2099-01-01T00:00:00Z"

    async def during_grace(message: str) -> None:
        if message.startswith("notified 1 pod(s)"):  # busy again, and another run has given its own notice since
            live.states["nb-renoticed"] = "busy"
            await bed.admin.patch("Pod", "nb-renoticed", {"metadata": {"annotations": {NOTICE_ANNOTATION: later}}}, ns)

    report = await LOGIC.execute(plan, Run(react=during_grace).context(bed.clients(), live, seconds=30))
    spared = next(o for o in report.outcomes if plan.steps[o.index].action == "evict_pods")
    assert spared.status == "skipped" and spared.message.startswith(f"spared {ns}/nb-renoticed: busy again")
    assert spared.message.endswith(f"; its {NOTICE_ANNOTATION} is '{later}' now, not this run's: left as it is")
    assert [c.method for c in spared.calls] == ["GET"]  # read, nothing written
    pod = await bed.pod("nb-renoticed")
    assert pod is not None and pod["metadata"]["annotations"][NOTICE_ANNOTATION] == later


async def test_immediate_mode_evicts_through_the_eviction_api_only(bed: Bed) -> None:
    ns = bed.namespace
    objs = await bed.pods(gpu_pod("scratch-1", ns, 2, node=bed.nodes[0]), gpu_pod("scratch-2", ns, 1, node=bed.nodes[1]))
    live = Live(bed, objs)
    request = plan_request(await live.snapshot(), mode="immediate")
    draft = await LOGIC.plan(request, bed.clients())
    assert [s.action for s in draft.steps] == ["evict_pods", "evict_pods"]
    plan = seal(draft, request)

    first = len(bed.calls)
    run = Run()
    report = await LOGIC.execute(plan, run.context(bed.clients(), live, seconds=30))
    assert report.ok and report.message == "evicted 2 pod(s) (3 GPUs)"
    assert all(o.status == "done" and o.message.startswith("evicted") for o in report.outcomes)
    recorded = [c for c, _ in run.calls]
    assert methods(recorded) == {("GET", "scratch-1"), ("GET", "scratch-2"), ("POST", "eviction")}
    assert all(c.acting_as == USER_A and not c.dry_run for c in recorded if c.method == "POST")
    sent = bed.calls[first:]
    assert "DELETE" not in {c.method for c in sent}  # not by the logic, not by any client
    assert {c.path.split("?")[0] for c in sent if c.method == "POST"} == {
        f"/api/v1/namespaces/{ns}/pods/scratch-1/eviction", f"/api/v1/namespaces/{ns}/pods/scratch-2/eviction"}  # fmt: skip
    # The outcome carries its calls (the re-read, then the eviction) for the audit log.
    assert [c.method for c in report.outcomes[0].calls] == ["GET", "POST"]

    verification = await LOGIC.verify(plan, report, run.context(bed.clients(), live, seconds=40))
    assert verification.ok, verification.checks
    for name in objs:
        gone = await poll(lambda: bed.pod(name), lambda pod: pod is None or pod["metadata"]["uid"] != objs[name]["metadata"]["uid"],
                          what=f"{name} to be gone")  # fmt: skip
        assert gone is None


async def test_pods_evicts_exactly_the_named_pod_and_reports_one_dropped_at_the_reread(bed: Bed) -> None:
    ns = bed.namespace
    plain = gpu_pod("named-cpu", ns, 1, node=bed.nodes[1])
    plain["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "100m"}}  # exists, holds no GPU
    objs = await bed.pods(gpu_pod("named-1", ns, 1, node=bed.nodes[0]), gpu_pod("named-2", ns, 1, node=bed.nodes[1]),
                          gpu_pod("idle-other", ns, 2, node=bed.nodes[0]), plain)  # fmt: skip
    live = Live(bed, ["named-1", "named-2", "idle-other"])  # every one idle; the CPU pod is no GPU pod
    pods = f"{ns}/named-1,{ns}/named-2,{ns}/named-cpu,{ns}/ghost"
    request = plan_request(await live.snapshot(), mode="immediate", pods=pods)
    draft = await LOGIC.plan(request, bed.clients())
    assert sorted(s.target.name for s in draft.steps) == ["named-1", "named-2"]  # never idle-other, idler and bigger
    assert {s.target.name: s.reason for s in draft.skipped} == {
        "named-cpu": "not reclaimable: it holds no GPU that gpuctl sees (phase Running on node " + bed.nodes[1] + ")",
        "ghost": "not reclaimable: no such pod",
    }
    plan = seal(draft, request)

    # named-2 opts out after the plan: the run drops it at the re-read and takes no other pod instead.
    patch = {"metadata": {"labels": {"gpuctl.io/reclaim": "never"}}}
    await bed.admin.patch("Pod", "named-2", patch, ns)
    report = await LOGIC.execute(plan, Run().context(bed.clients(), live, seconds=30))
    assert report.message == (f"evicted 1 pod(s) (1 GPUs), 1 spared; dropped since the plan, no other pod taken "
                              f"instead: {ns}/named-2")  # fmt: skip
    skipped = next(o for o in report.outcomes if o.status == "skipped")
    assert skipped.message == f"{ns}/named-2: its labels changed since the plan"
    gone = await poll(lambda: bed.pod("named-1"), lambda pod: pod is None or pod["metadata"]["uid"] != objs["named-1"]["metadata"]["uid"],
                      what="named-1 to be gone")  # fmt: skip
    assert gone is None
    for name in ("named-2", "idle-other", "named-cpu"):
        still = await bed.pod(name)
        assert still is not None and still["metadata"]["uid"] == objs[name]["metadata"]["uid"]
        assert still["metadata"].get("deletionTimestamp") is None
