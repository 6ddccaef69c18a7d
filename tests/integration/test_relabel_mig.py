"""relabel-mig against the real API server and the MIG manager simulator: plans (dry-run as the requester),
refusals, runs to success, failure with the old label put back, a reconfiguration stuck in pending, undo."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from gpuctl.errors import ParameterError
from gpuctl.identity import Identity, Requester
from gpuctl.migparted import MIG_CONFIG_LABEL, MIG_STATE_LABEL, node_config_map
from gpuctl.model import MetricsHealth, Node, Snapshot, WatchHealth
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.context import RunContext
from gpuctl.playbooks.kubeapi import ApiCall, KubeApi
from gpuctl.playbooks.loader import load_catalog
from gpuctl.playbooks.locks import LockTarget
from gpuctl.playbooks.logic import Clients, Draft, PlanRequest, Report
from gpuctl.playbooks.params import validate_params
from gpuctl.playbooks.plan import Plan
from gpuctl.playbooks.policy import Scope
from gpuctl.playbooks.relabel_mig import LOGIC
from gpuctl.sources.kube.connect import KubeConnection
from testbed.fleet_loader import wait_nodes_ready
from testbed.gpu_operator import OPERATOR_NAMESPACE, mig_config_map, mig_node_object
from testbed.kube import RestClient, apply_objects
from testbed.mig_manager import MigManagerSim
from testbed.objects import RBAC, gpu_pod, namespace_object, pod_disruption_budget, unique
from testbed.waiting import poll

pytestmark = pytest.mark.testbed

H100 = "NVIDIA-H100-80GB-HBM3"
A100_40GB = "NVIDIA-A100-SXM4-40GB"
PLAYBOOK = load_catalog().get("relabel-mig")


def _cluster_grant(name: str, group: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules},
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": group}],
        },
    ]


@dataclass(frozen=True)
class Bed:
    admin: RestClient
    sim: MigManagerSim
    api: KubeApi
    requester: Requester
    reader: ActingClient
    namespace: str  # where the tests' GPU pods run
    sent: list[ApiCall]  # every request made through `api`

    def clients(self, requester: Requester | None = None) -> Clients:
        who = requester or self.requester
        return Clients(acting=ActingClient(self.api, who.identity), reader=self.reader)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bed(admin: RestClient, mig_manager: MigManagerSim, operator_connection: KubeConnection) -> Bed:
    """user-a, through a fresh group, may patch nodes and evict pods (what relabel-mig's permissions list);
    gpuctl's reads go through an identity that may only read nodes, pods and ConfigMaps (the operator
    itself may only impersonate on the test bed)."""
    admins, readers = unique("mig-admins"), unique("gpuctl-readers")
    namespace = unique("mig-jobs")
    await apply_objects(
        admin,
        [
            namespace_object(namespace),
            *_cluster_grant(admins, admins, [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["patch"]},
                                             {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]}]),
            *_cluster_grant(readers, readers, [{"apiGroups": [""], "resources": ["nodes", "pods", "configmaps"],
                                                "verbs": ["get", "list", "watch"]}]),
        ],
    )  # fmt: skip
    sent: list[ApiCall] = []
    api = KubeApi(operator_connection, on_call=sent.append)
    requester = Requester(identity=Identity(user="user-a", groups=("team-a", admins)), via="cli")
    reader = ActingClient(api, Identity(user="gpuctl-reader", groups=(readers,)))
    acting = ActingClient(api, requester.identity)

    async def granted() -> bool:
        checks = [
            acting.can_i("patch", "nodes"),
            acting.can_i("create", "pods", subresource="eviction", namespace=namespace),
            reader.can_i("watch", "nodes"),
            reader.can_i("get", "configmaps", namespace=OPERATOR_NAMESPACE),
        ]
        return all([(await check).allowed for check in checks])

    await poll(granted, timeout_s=10, what="the test grants to reach RBAC")
    return Bed(admin, mig_manager, api, requester, reader, namespace, sent)


async def _node(bed: Bed, **kwargs: Any) -> str:
    name = unique("relabel")
    await apply_objects(bed.admin, [mig_node_object(name, **kwargs)])
    await wait_nodes_ready(bed.admin, {name})
    return name


async def _pods(bed: Bed, node: str, *names: str, labels: Mapping[str, str] | None = None) -> None:
    await apply_objects(bed.admin, [gpu_pod(name, bed.namespace, 1, node=node, labels=dict(labels or {})) for name in names])

    async def phases() -> list[str]:
        return [(await bed.admin.get("Pod", name, bed.namespace)).body.get("status", {}).get("phase") for name in names]

    await poll(phases, lambda seen: seen == ["Running"] * len(names), what="kwok to run the pods")


def _snapshot(node: str, pool: str) -> Snapshot:
    now = datetime.now(UTC)
    return Snapshot(
        taken_at=now,
        idle_threshold_pct=5,
        idle_window_s=3600,
        nodes=(Node(name=node, pool=pool),),
        metrics=MetricsHealth(source="none"),
        watch=WatchHealth(source="none"),
    )


async def _plan(bed: Bed, node: str, *, requester: Requester | None = None, **params: str) -> tuple[Draft, Plan]:
    args = validate_params(PLAYBOOK, {"node": node, **params})
    who = requester or bed.requester
    request = PlanRequest(playbook=PLAYBOOK, args=args, requester=who, snapshot=_snapshot(node, "train"), now=datetime.now(UTC))
    draft = await LOGIC.plan(request, bed.clients(who))
    return draft, _seal(draft, args, who)


def _seal(draft: Draft, parameters: Mapping[str, Any], requester: Requester) -> Plan:
    """What the engine does with a Draft (fingerprint comes with the Plan)."""
    return Plan(
        playbook=PLAYBOOK.name,
        parameters=dict(parameters),
        requester=requester,
        created_at=datetime.now(UTC),
        steps=tuple(draft.steps),
        skipped=tuple(draft.skipped),
        warnings=tuple(draft.warnings),
        blocked=tuple(draft.blocked),
        dry_run=draft.dry_run,
    )


@dataclass
class Run:
    context: RunContext
    calls: list[tuple[ApiCall, int]]
    progress: list[tuple[str, int | None]]


def _context(bed: Bed, snapshot: Snapshot, *, deadline_s: float = 7200) -> Run:
    calls: list[tuple[ApiCall, int]] = []
    progress: list[tuple[str, int | None]] = []

    async def on_call(call: ApiCall, step: int) -> None:
        calls.append((call, step))

    async def on_progress(message: str, step: int | None) -> None:
        progress.append((message, step))

    async def latest() -> Snapshot:
        return snapshot

    context = RunContext(
        clients=bed.clients(),
        deadline=datetime.now(UTC) + timedelta(seconds=deadline_s),
        on_call=on_call,
        on_progress=on_progress,
        latest_snapshot=latest,
    )
    return Run(context, calls, progress)


async def _read(bed: Bed, node: str) -> dict[str, Any]:
    return (await bed.admin.get("Node", node)).body


def _gpu_allocatable(node: dict[str, Any]) -> dict[str, str]:
    return {
        k: v for k, v in node["status"]["allocatable"].items() if k.startswith(("nvidia.com/gpu", "nvidia.com/mig-")) and v != "0"
    }


async def _pod_names(bed: Bed) -> set[str]:
    return {p["metadata"]["name"] for p in (await bed.admin.list("Pod", bed.namespace)).body["items"]}


def _statuses(report: Report) -> list[str]:
    return [o.status for o in report.outcomes]


# -- plans --------------------------------------------------------------------------


async def test_plan_cordons_evicts_relabels_and_uncordons_all_dry_run(bed: Bed) -> None:
    node = await _node(bed, product=H100, gpus=8, strategy="single", applied="all-disabled")
    await _pods(bed, node, "train-0")
    await _pods(bed, node, "serve-0", labels={"app": "relabel-serve"})
    await apply_objects(bed.admin, [pod_disruption_budget("serve", bed.namespace, {"app": "relabel-serve"}, min_available=2)])
    before = await _read(bed, node)
    bed.sent.clear()

    draft, plan = await _plan(bed, node, profile="all-1g.10gb", drain="true")

    assert draft.blocked == []
    assert [s.action for s in plan.steps] == ["cordon_node", "evict_pods", "evict_pods", "set_node_label", "uncordon_node"]
    uid, version = before["metadata"]["uid"], before["metadata"]["resourceVersion"]
    assert {(s.target.kind, s.target.uid, s.target.resource_version) for s in plan.steps if s.target.kind == "Node"} == {
        ("Node", uid, version)
    }
    assert sorted(s.target.name for s in plan.steps if s.action == "evict_pods") == ["serve-0", "train-0"]
    assert all(s.target.uid for s in plan.steps if s.action == "evict_pods")
    label = plan.steps[3]
    assert [(c.field, c.before, c.after) for c in label.changes] == [
        (f"labels[{MIG_CONFIG_LABEL}]", "all-disabled", "all-1g.10gb"),
        ("gpus[MIG devices]", "8× MIG off", "8× 7×1g.10gb"),
        ("status.allocatable[nvidia.com/gpu]", 8, 56),
    ]
    assert label.gpus == 8 and "if the MIG manager reports failed: back to all-disabled" in (label.detail or "")
    assert plan.dry_run == "server"
    # Every write of the plan was tried on the API server, as the requester, in order, and only tried.
    writes = [c for c in bed.sent if c.method != "GET"]
    assert [(c.method, c.path.split("?")[0].rsplit("/", 1)[-1]) for c in writes] == [
        ("PATCH", node), ("POST", "eviction"), ("POST", "eviction"), ("PATCH", node), ("PATCH", node)
    ]  # fmt: skip
    assert all(c.dry_run and c.path.endswith("dryRun=All") and c.acting_as == bed.requester.identity for c in writes)
    assert [c.status for c in writes] == [200, 429, 201, 200, 200]  # serve-0's budget says no; pods come in name order
    # The budget refuses now: a warning (the run retries until its deadline), not a refusal.
    assert any("serve-0" in w and "PodDisruptionBudget" in w for w in plan.warnings)
    assert draft.scopes == [Scope(kind="pool", name="train")]  # the snapshot's pool
    assert draft.locks == [LockTarget(kind="node", name=node)]

    # Dry runs only: nothing changed.
    after = await _read(bed, node)
    assert after["metadata"]["labels"][MIG_CONFIG_LABEL] == "all-disabled"
    assert not after["spec"].get("unschedulable")
    assert {"train-0", "serve-0"} <= await _pod_names(bed)
    assert await LOGIC.stale(plan, bed.clients()) == []


async def test_an_unknown_profile_is_an_error_listing_the_available_ones(bed: Bed) -> None:
    node = await _node(bed, product=H100, gpus=2, strategy="single", applied="all-disabled")
    with pytest.raises(ParameterError) as refused:
        await _plan(bed, node, profile="all-9g.99gb")
    message = str(refused.value)
    assert "'all-9g.99gb' is not in gpu-operator/default-mig-parted-config" in message
    assert all(name in message for name in ("all-disabled", "all-1g.10gb", "all-balanced", "all-7g.80gb"))


async def test_a_profile_the_gpus_cannot_hold_is_refused(bed: Bed) -> None:
    node = await _node(bed, product=A100_40GB, gpus=4, strategy="single", applied="all-disabled")
    draft, plan = await _plan(bed, node, profile="all-1g.20gb")  # a profile of 80 GB GPUs
    assert not plan.runnable
    assert len(draft.blocked) == 1
    assert (
        "all-1g.20gb does not fit node" in draft.blocked[0]
        and "1g.20gb does not exist on NVIDIA-A100-SXM4-40GB" in draft.blocked[0]
    )

    draft, _ = await _plan(bed, node, profile="all-balanced")  # several profiles per GPU
    assert len(draft.blocked) == 1 and "single MIG strategy" in draft.blocked[0]


async def test_gpu_pods_without_drain_refuse_the_plan(bed: Bed) -> None:
    node = await _node(bed, product=H100, gpus=8, strategy="single", applied="all-disabled")
    await _pods(bed, node, "notebook-0")
    draft, plan = await _plan(bed, node, profile="all-1g.10gb")  # drain defaults to false
    assert not plan.runnable
    assert len(draft.blocked) == 1
    assert f"{bed.namespace}/notebook-0 (1 GPU)" in draft.blocked[0] and "drain=true" in draft.blocked[0]
    assert "evict_pods" not in [s.action for s in plan.steps]


async def test_the_clusters_rbac_refuses_the_dry_run(bed: Bed) -> None:
    node = await _node(bed, product=H100, gpus=2, strategy="single", applied="all-disabled")
    user_b = Requester(identity=Identity(user="user-b", groups=("team-b",)), via="slack")
    draft, plan = await _plan(bed, node, profile="all-1g.10gb", requester=user_b)
    assert not plan.runnable and plan.dry_run == "none"
    assert any('User "user-b"' in reason and "patch" in reason for reason in draft.blocked)
    assert not (await _read(bed, node))["spec"].get("unschedulable")


# -- runs ---------------------------------------------------------------------------------


async def test_run_drains_relabels_verifies_uncordons_and_undo_puts_it_back(bed: Bed) -> None:
    node = await _node(bed, product=H100, gpus=8, strategy="single", applied="all-disabled")
    await _pods(bed, node, "batch-0")
    _, plan = await _plan(bed, node, profile="all-1g.10gb", drain="true")
    assert plan.runnable and await LOGIC.stale(plan, bed.clients()) == []
    run = _context(bed, _snapshot(node, "train"))

    report = await LOGIC.execute(plan, run.context)

    assert report.ok, report
    assert _statuses(report) == ["done", "done", "done", "done"]
    assert "uncordoned" in report.message
    after = await _read(bed, node)
    assert after["metadata"]["labels"][MIG_CONFIG_LABEL] == "all-1g.10gb"
    assert after["metadata"]["labels"][MIG_STATE_LABEL] == "success"
    assert _gpu_allocatable(after) == {"nvidia.com/gpu": "56"}
    assert not after["spec"].get("unschedulable")
    assert "batch-0" not in await _pod_names(bed)
    verification = await LOGIC.verify(plan, report, run.context)
    assert verification.ok, verification
    # Every write went to the API server as the requester, in the plan's order.
    writes = [(c.method, c.path.split("?")[0].rsplit("/", 1)[-1], step) for c, step in run.calls if c.method != "GET"]
    assert writes == [("PATCH", node, 0), ("POST", "eviction", 1), ("PATCH", node, 2), ("PATCH", node, 3)]
    assert all(c.acting_as == bed.requester.identity and c.audit_id for c, _ in run.calls if c.method != "GET")

    undo = LOGIC.undo(plan, report)
    assert undo is not None and undo.blocked == []
    assert [s.action for s in undo.steps] == ["cordon_node", "set_node_label", "uncordon_node"]
    undo_plan = _seal(undo, {**plan.parameters, "profile": "all-disabled"}, bed.requester)
    assert await LOGIC.stale(undo_plan, bed.clients()) == []
    undone = await LOGIC.execute(undo_plan, _context(bed, _snapshot(node, "train")).context)
    assert undone.ok, undone
    back = await _read(bed, node)
    assert back["metadata"]["labels"][MIG_CONFIG_LABEL] == "all-disabled"
    assert _gpu_allocatable(back) == {"nvidia.com/gpu": "8"}
    assert not back["spec"].get("unschedulable")
    assert (await LOGIC.verify(undo_plan, undone, run.context)).ok


async def test_a_failed_reconfiguration_puts_the_old_label_back(bed: Bed) -> None:
    node = await _node(bed, product=H100, gpus=2, strategy="single", applied="all-disabled")
    per_node = "version: v1\nmig-configs:\n  all-disabled: [{devices: all, mig-enabled: false}]\n  all-1g.10gb: [{devices: all, mig-enabled: true, mig-devices: {1g.10gb: %d}}]\n"
    await apply_objects(bed.admin, [mig_config_map(per_node % 7, name=node_config_map(node))])
    _, plan = await _plan(bed, node, profile="all-1g.10gb")
    assert plan.runnable and await LOGIC.stale(plan, bed.clients()) == []
    # Applying it will fail on the "hardware" (8 instances of 1g.10gb cannot fit), as mig-parted apply can.
    broken = mig_config_map(per_node % 8, name=node_config_map(node))
    assert (
        await bed.admin.patch("ConfigMap", broken["metadata"]["name"], {"data": broken["data"]}, OPERATOR_NAMESPACE)
    ).status == 200

    report = await LOGIC.execute(plan, _context(bed, _snapshot(node, "train")).context)

    assert not report.ok
    assert _statuses(report) == ["done", "failed", "done"]
    assert "reported failed for all-1g.10gb" in report.outcomes[1].message
    assert "put all-disabled back and the MIG manager restored it" in report.outcomes[1].message
    after = await _read(bed, node)
    assert after["metadata"]["labels"][MIG_CONFIG_LABEL] == "all-disabled"
    assert after["metadata"]["labels"][MIG_STATE_LABEL] == "success"
    assert _gpu_allocatable(after) == {"nvidia.com/gpu": "2"}
    assert not after["spec"].get("unschedulable")  # back as it was, so back in service
    assert LOGIC.undo(plan, report) is None  # nothing to undo


async def test_stuck_in_pending_is_reported_and_the_node_stays_cordoned(bed: Bed) -> None:
    node = await _node(bed, product=H100, gpus=2, strategy="single", applied="all-disabled")
    _, plan = await _plan(bed, node, profile="all-7g.80gb")
    # pending_timeout is at least 5m for people (validate_params); the logic honours whatever the plan says.
    plan = plan.model_copy(update={"parameters": {**plan.parameters, "pending_timeout": 3.0}})
    bed.sim.hang(node)
    try:
        report = await LOGIC.execute(plan, _context(bed, _snapshot(node, "train")).context)
    finally:
        bed.sim.hang(node, False)

    assert _statuses(report) == ["done", "failed", "skipped"]
    message = report.outcomes[1].message
    assert f"{MIG_STATE_LABEL} on {node} is still pending after 3s" in message
    assert "the node stays cordoned" in message
    assert "app=nvidia-mig-manager" in message and "nvidia-operator-validator" in message
    after = await _read(bed, node)
    assert after["spec"].get("unschedulable") is True
    assert after["metadata"]["labels"][MIG_CONFIG_LABEL] == "all-7g.80gb"  # pending is not failed: nothing put back
    verification = await LOGIC.verify(plan, report, _context(bed, _snapshot(node, "train")).context)
    assert [c.name for c in verification.checks if not c.ok] == ["mig_config_applied", "mig_resources", "schedulable"]


async def test_a_budget_that_never_allows_is_retried_until_the_deadline_then_the_cordon_is_undone(bed: Bed) -> None:
    node = await _node(bed, product=H100, gpus=8, strategy="single", applied="all-disabled")
    await _pods(bed, node, "guarded-0", labels={"app": "relabel-guarded"})
    await apply_objects(bed.admin, [pod_disruption_budget("guarded", bed.namespace, {"app": "relabel-guarded"}, min_available=1)])
    _, plan = await _plan(bed, node, profile="all-1g.10gb", drain="true")
    assert plan.runnable
    run = _context(bed, _snapshot(node, "train"), deadline_s=8)

    report = await LOGIC.execute(plan, run.context)

    assert _statuses(report) == ["done", "refused", "skipped", "done"]
    assert "still allowed no disruption at the run's deadline" in report.outcomes[1].message
    assert any("retrying in" in line for line, _ in run.progress)
    assert len([c for c, step in run.calls if step == 1 and c.status == 429]) >= 2  # retried, never bypassed
    after = await _read(bed, node)
    assert after["metadata"]["labels"][MIG_CONFIG_LABEL] == "all-disabled"
    assert not after["spec"].get("unschedulable")
    assert "guarded-0" in await _pod_names(bed)
