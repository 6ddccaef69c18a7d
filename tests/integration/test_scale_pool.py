"""scale-pool against the real API server with Cluster API's and Karpenter's real CRDs: the test
bed's MachineDeployment provider moves kwok nodes with replicas, the real Karpenter controller
(kwok cloud provider) launches NodePool nodes. Plan (dry runs as the requester), execute
through a RunContext, verify, undo; autoscaler bounds, busy nodes, drain, a GPU pod arriving
after the plan."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio
from playbook_kit import Sinks, clients, cluster_grant, live, operator_api, plan_request, seal, seal_undo, snapshot_where

from gpuctl.identity import Identity
from gpuctl.playbooks.kubeapi import KubeApi
from gpuctl.playbooks.logic import Clients
from gpuctl.playbooks.pool_rules import MAX_SIZE_ANNOTATION, MIN_SIZE_ANNOTATION
from gpuctl.playbooks.scale_pool import ScalePool
from gpuctl.state.store import ClusterStore
from testbed.capi_provider import CAPI_CLUSTER, CAPI_NAMESPACE, CapiProvider, machine_deployment_object
from testbed.karpenter import Karpenter, node_pool_object
from testbed.kube import RestClient, apply_objects
from testbed.objects import gpu_pod, namespace_object, rule, unique
from testbed.waiting import poll

pytestmark = pytest.mark.testbed
__all__ = ["live", "operator_api"]  # module fixtures from playbook_kit

LOGIC = ScalePool(verify_timeout_s=60, poll_s=0.5, evict_retry_s=1)
POOL_WRITES = [
    rule("cluster.x-k8s.io", ["machinedeployments/scale", "machines"], ["patch"]),
    rule("karpenter.sh", ["nodepools"], ["patch"]),
    rule("", ["nodes"], ["patch"]),
    rule("", ["pods/eviction"], ["create"]),
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool_operator(admin: RestClient, operator_api: KubeApi) -> Clients:
    """user-a, in a group that may resize pools (the writes scale-pool declares), acting through the operator."""
    group = unique("pool-operators")
    await apply_objects(admin, cluster_grant(f"test:{group}", group, POOL_WRITES))
    run_clients = clients(operator_api, Identity(user="user-a", groups=("team-a", group)))
    await poll(
        lambda: run_clients.acting.can_i("patch", "machinedeployments", subresource="scale", group="cluster.x-k8s.io"),
        lambda review: review.allowed,
        what="the pool operators' ClusterRoleBinding to reach RBAC",
    )
    return run_clients


async def _md(admin: RestClient, name: str) -> dict[str, Any]:
    return (await admin.get("MachineDeployment", name, CAPI_NAMESPACE)).body


async def machine_deployment(
    admin: RestClient, store: ClusterStore, replicas: int, annotations: dict[str, str] | None = None
) -> tuple[str, list[str]]:
    """A MachineDeployment of H100 nodes (pool = its name) at `replicas` ready nodes, in the snapshot; its node names."""
    name = unique("h100")
    labels = {"gpuctl.io/pool": name, "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    md = machine_deployment_object(
        name, CAPI_NAMESPACE, cluster=CAPI_CLUSTER, replicas=replicas, gpus=8, node_labels=labels, annotations=annotations
    )
    await apply_objects(admin, [md])
    await poll(lambda: _md(admin, name), lambda m: m.get("status", {}).get("readyReplicas") == replicas, what="ready nodes")
    snapshot = await snapshot_where(
        store, lambda s: sum(n.pool == name and n.ready for n in s.nodes) == replicas, f"pool {name} in the snapshot"
    )
    return name, sorted(n.name for n in snapshot.nodes if n.pool == name)


async def running_gpu_pod(admin: RestClient, node: str, namespace: str, name: str) -> None:
    pod = gpu_pod(name, namespace, 4, node=node)
    pod["spec"]["terminationGracePeriodSeconds"] = 0
    await apply_objects(admin, [pod])
    await poll(
        lambda: admin.get("Pod", name, namespace), lambda r: r.body.get("status", {}).get("phase") == "Running", what="running"
    )


async def test_scale_up_within_the_autoscaler_bounds(
    admin: RestClient, capi_provider: CapiProvider, pool_operator: Clients, live: ClusterStore
) -> None:
    bounds = {MIN_SIZE_ANNOTATION: "1", MAX_SIZE_ANNOTATION: "5"}
    pool, _ = await machine_deployment(admin, live, 2, bounds)

    outside = await LOGIC.plan(
        plan_request("scale-pool", {"pool": pool, "replicas": "6"}, pool_operator.acting.identity, live.snapshot()), pool_operator
    )  # type: ignore[arg-type]
    assert any("6 is outside the autoscaler's bounds" in b and "(1..5" in b for b in outside.blocked), outside.blocked
    assert (await _md(admin, pool))["spec"]["replicas"] == 2

    request = plan_request("scale-pool", {"pool": pool, "replicas": "4"}, pool_operator.acting.identity, live.snapshot())  # type: ignore[arg-type]
    draft = await LOGIC.plan(request, pool_operator)
    assert not draft.blocked and draft.dry_run == "server"
    assert any("cluster-autoscaler manages" in w for w in draft.warnings)
    assert [(s.kind, s.name) for s in draft.scopes] == [("pool", pool)]
    (step,) = draft.steps
    assert (step.action, step.target.kind, step.target.namespace, step.target.name) == (
        "scale_machinedeployment",
        "MachineDeployment",
        CAPI_NAMESPACE,
        pool,
    )
    assert (step.changes[0].before, step.changes[0].after, step.gpus) == (2, 4, 16)
    assert (await _md(admin, pool))["spec"]["replicas"] == 2  # the dry run changed nothing

    plan = seal(draft, request)
    assert await LOGIC.stale(plan, pool_operator) == []
    sinks = Sinks()
    ctx = sinks.context(pool_operator, live)
    report = await LOGIC.execute(plan, ctx)
    assert report.ok, report
    (scale,) = [c for c, _ in sinks.calls if c.method == "PATCH"]
    assert scale.path.endswith(f"/machinedeployments/{pool}/scale") and scale.acting_as == pool_operator.acting.identity
    verification = await LOGIC.verify(plan, report, ctx)
    assert verification.ok, verification
    assert (await _md(admin, pool))["status"]["replicas"] == 4

    undo = LOGIC.undo(plan, report)
    assert undo is not None and f"-p pool={pool} -p replicas=2" in undo.blocked[0]


async def two_busy_nodes(admin: RestClient, live: ClusterStore, single: str) -> tuple[str, list[str], str]:
    """A pool of two nodes: big-0 and big-1 on the first, `single` on the second (the least busy); pool, nodes, namespace."""
    pool, nodes = await machine_deployment(admin, live, 2)
    namespace = unique("train")
    await apply_objects(admin, [namespace_object(namespace)])
    await running_gpu_pod(admin, nodes[0], namespace, "big-0")
    await running_gpu_pod(admin, nodes[0], namespace, "big-1")
    await running_gpu_pod(admin, nodes[1], namespace, single)
    return pool, nodes, namespace


async def test_scale_down_removes_idle_nodes_never_busy_ones(
    admin: RestClient, capi_provider: CapiProvider, pool_operator: Clients, live: ClusterStore
) -> None:
    pool, nodes = await machine_deployment(admin, live, 3)
    namespace = unique("train")
    await apply_objects(admin, [namespace_object(namespace)])
    await running_gpu_pod(admin, nodes[0], namespace, "busy-0")
    await running_gpu_pod(admin, nodes[1], namespace, "busy-1")
    requester = pool_operator.acting.identity
    assert requester is not None

    refused = await LOGIC.plan(
        plan_request("scale-pool", {"pool": pool, "replicas": "1"}, requester, live.snapshot()), pool_operator
    )
    assert any("removing 2 nodes needs 2 without GPU pods, there are 1" in b for b in refused.blocked), refused.blocked
    assert (await _md(admin, pool))["spec"]["replicas"] == 3

    request = plan_request("scale-pool", {"pool": pool, "replicas": "2"}, requester, live.snapshot())
    draft = await LOGIC.plan(request, pool_operator)
    assert not draft.blocked and draft.dry_run == "server", draft.blocked
    assert [(s.action, s.target.name) for s in draft.steps] == [
        ("cordon_node", nodes[2]),
        ("mark_machine_for_deletion", nodes[2]),  # the test bed names nodes after their Machines
        ("scale_machinedeployment", pool),
    ]
    plan = seal(draft, request)
    ctx = Sinks().context(pool_operator, live)
    report = await LOGIC.execute(plan, ctx)
    assert report.ok, report
    verification = await LOGIC.verify(plan, report, ctx)
    assert verification.ok, verification
    remaining = (await admin.list("Node", labelSelector=f"gpuctl.io/pool={pool}")).body["items"]
    assert sorted(n["metadata"]["name"] for n in remaining) == nodes[:2]  # the busy ones stay

    undo = LOGIC.undo(plan, report)
    assert undo is not None and not undo.blocked
    reverting = seal_undo(undo, plan)
    assert await LOGIC.stale(reverting, pool_operator) == []
    reverted = await LOGIC.execute(reverting, ctx)
    assert reverted.ok and (await LOGIC.verify(reverting, reverted, ctx)).ok
    assert (await _md(admin, pool))["status"]["replicas"] == 3


async def test_drain_evicts_gpu_pods_before_the_node_goes(
    admin: RestClient, capi_provider: CapiProvider, pool_operator: Clients, live: ClusterStore
) -> None:
    pool, nodes, namespace = await two_busy_nodes(admin, live, "small")
    requester = pool_operator.acting.identity
    assert requester is not None

    request = plan_request("scale-pool", {"pool": pool, "replicas": "1", "drain": "true"}, requester, live.snapshot())
    draft = await LOGIC.plan(request, pool_operator)
    assert not draft.blocked and draft.dry_run == "server", draft.blocked
    assert [(s.action, s.target.name) for s in draft.steps] == [
        ("cordon_node", nodes[1]),  # the least busy node goes
        ("evict_pods", "small"),
        ("mark_machine_for_deletion", nodes[1]),
        ("scale_machinedeployment", pool),
    ]
    plan = seal(draft, request)
    ctx = Sinks().context(pool_operator, live)
    report = await LOGIC.execute(plan, ctx)
    assert report.ok, report
    assert (await LOGIC.verify(plan, report, ctx)).ok
    assert (await admin.get("Pod", "small", namespace)).status == 404
    assert (await admin.get("Pod", "big-0", namespace)).status == 200
    remaining = (await admin.list("Node", labelSelector=f"gpuctl.io/pool={pool}")).body["items"]
    assert [n["metadata"]["name"] for n in remaining] == [nodes[0]]


async def test_a_protected_pod_on_a_node_that_would_go_refuses_the_drain(
    admin: RestClient, capi_provider: CapiProvider, pool_operator: Clients, live: ClusterStore
) -> None:
    pool, nodes, namespace = await two_busy_nodes(admin, live, "kept")
    await admin.patch("Pod", "kept", {"metadata": {"annotations": {"gpuctl.io/evict": "never"}}}, namespace)
    requester = pool_operator.acting.identity
    assert requester is not None

    request = plan_request("scale-pool", {"pool": pool, "replicas": "1", "drain": "true"}, requester, live.snapshot())
    draft = await LOGIC.plan(request, pool_operator)
    # The words relabel-mig's drain uses too (gpuctl.playbooks.node_pods).
    assert draft.blocked == [
        f"pod {namespace}/kept on node {nodes[1]} cannot be evicted: opted out (annotation gpuctl.io/evict=never)"
    ]
    assert (await _md(admin, pool))["spec"]["replicas"] == 2
    assert not (await admin.get("Node", nodes[1])).body["spec"].get("unschedulable")


async def test_a_gpu_pod_arriving_after_the_plan_stops_the_removal(
    admin: RestClient, capi_provider: CapiProvider, pool_operator: Clients, live: ClusterStore
) -> None:
    pool, nodes = await machine_deployment(admin, live, 2)
    namespace = unique("late")
    await apply_objects(admin, [namespace_object(namespace)])
    await running_gpu_pod(admin, nodes[0], namespace, "early")
    requester = pool_operator.acting.identity
    assert requester is not None
    request = plan_request("scale-pool", {"pool": pool, "replicas": "1"}, requester, live.snapshot())
    plan = seal(await LOGIC.plan(request, pool_operator), request)
    assert plan.runnable and plan.steps[0].target.name == nodes[1]

    await running_gpu_pod(admin, nodes[1], namespace, "late")
    stale = await LOGIC.stale(plan, pool_operator)
    assert stale == [f"node {nodes[1]} runs GPU pods the plan does not evict: {namespace}/late (it was idle)"]
    # Executed anyway (the engine would have refused): the cordon step catches it, nothing is changed.
    report = await LOGIC.execute(plan, Sinks().context(pool_operator, live))
    assert [o.status for o in report.outcomes] == ["refused", "skipped", "skipped"]
    assert report.outcomes[0].message == f"GPU pods arrived since the plan: {namespace}/late; the node is not removed"
    assert (await _md(admin, pool))["spec"]["replicas"] == 2
    assert not (await admin.get("Node", nodes[1])).body["spec"].get("unschedulable")
    assert LOGIC.undo(plan, report) is None  # nothing to put back


async def test_a_node_pool_gpu_limit_is_set_and_reverted(
    admin: RestClient, karpenter: Karpenter, pool_operator: Clients, live: ClusterStore
) -> None:
    pool = unique("gpu")
    taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    await apply_objects(
        admin, [namespace_object(pool), node_pool_object(pool, instance_types=["p5.48xlarge"], gpu_limit=8, taints=[taint])]
    )
    pod = gpu_pod("first", pool, 8)
    pod["spec"]["nodeSelector"] = {"karpenter.sh/nodepool": pool}
    pod["spec"]["tolerations"] = [{"operator": "Exists"}]
    await apply_objects(admin, [pod])
    # Karpenter launches a node for it: the pool (karpenter.sh/nodepool) shows up through that node.
    await snapshot_where(live, lambda s: any(n.pool == pool for n in s.nodes), "Karpenter's node in the snapshot")
    requester = pool_operator.acting.identity
    assert requester is not None

    wrong = await LOGIC.plan(
        plan_request("scale-pool", {"pool": pool, "replicas": "2"}, requester, live.snapshot()), pool_operator
    )
    assert wrong.blocked == [
        f"pool {pool} is Karpenter's NodePool {pool}, which has no replica count: set gpu_limit (its spec.limits nvidia.com/gpu)"
    ]

    request = plan_request("scale-pool", {"pool": pool, "gpu_limit": "16"}, requester, live.snapshot())
    draft = await LOGIC.plan(request, pool_operator)
    assert not draft.blocked and draft.dry_run == "server", draft.blocked
    (step,) = draft.steps
    assert (step.action, step.target.kind, step.target.name) == ("set_nodepool_gpu_limit", "NodePool", pool)
    assert (step.changes[0].field, step.changes[0].before, step.changes[0].after, step.gpus) == (
        "spec.limits[nvidia.com/gpu]",
        8,
        16,
        8,
    )

    async def limit() -> str:
        return (await admin.get("NodePool", pool)).body["spec"]["limits"]["nvidia.com/gpu"]

    assert await limit() == "8"
    plan = seal(draft, request)
    ctx = Sinks().context(pool_operator, live)
    report = await LOGIC.execute(plan, ctx)
    assert report.ok and (await LOGIC.verify(plan, report, ctx)).ok
    assert await limit() == "16"

    undo = LOGIC.undo(plan, report)
    assert undo is not None
    reverting = seal_undo(undo, plan)
    reverted = await LOGIC.execute(reverting, ctx)
    assert reverted.ok and (await LOGIC.verify(reverting, reverted, ctx)).ok
    assert await limit() == "8"
