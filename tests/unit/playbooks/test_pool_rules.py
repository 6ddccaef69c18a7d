"""scale-pool's pure decisions: pool → provider, autoscaler bounds, topology, which Machines go, limits (protection: test_node_pods)."""

from __future__ import annotations

from typing import Any

import pytest

from gpuctl.playbooks.node_pods import NodePod
from gpuctl.playbooks.pool_rules import (
    MAX_SIZE_ANNOTATION,
    MIN_SIZE_ANNOTATION,
    MachineInfo,
    Provider,
    autoscaler_bounds,
    by_name,
    choose_provider,
    choose_victims,
    gpus_per_node,
    limit_checks,
    providers_of,
    size_checks,
    topology_warning,
)


def node(
    name: str, *, labels: dict[str, str] | None = None, machine: str | None = None, namespace: str = "capi"
) -> dict[str, Any]:
    annotations = {"cluster.x-k8s.io/machine": machine, "cluster.x-k8s.io/cluster-namespace": namespace} if machine else {}
    return {"metadata": {"name": name, "labels": labels or {}, "annotations": annotations}}


def test_nodes_map_to_their_machine_deployment_or_node_pool() -> None:
    nodes = [
        node("md-1", machine="m1"),
        node("md-2", machine="m2"),
        node("kp-1", labels={"karpenter.sh/nodepool": "gpu"}),
        node("bare"),
        node("orphan", machine="gone"),  # its Machine is not listed: unmanaged
    ]
    found = providers_of(nodes, {("capi", "m1"): "h100", ("capi", "m2"): "h100"})
    assert found.by_provider == {
        Provider("MachineDeployment", "h100", "capi"): ("md-1", "md-2"),
        Provider("NodePool", "gpu"): ("kp-1",),
    }
    assert found.unmanaged == ("bare", "orphan")
    provider, blocked, _ = choose_provider("mixed", found)
    assert provider is None and "belong to several node groups" in blocked[0] and "NodePool gpu: kp-1" in blocked[0]


def test_one_provider_with_unmanaged_nodes_warns() -> None:
    found = providers_of([node("a", machine="m1"), node("b")], {("capi", "m1"): "h100"})
    provider, blocked, warnings = choose_provider("h100", found)
    assert provider == Provider("MachineDeployment", "h100", "capi") and not blocked
    assert "1 of pool h100's nodes (b) belong to no MachineDeployment or NodePool" in warnings[0]
    assert choose_provider("empty", providers_of([node("b")], {})) == (None, [], [])


def test_a_pool_without_managed_nodes_is_looked_up_by_name() -> None:
    md = Provider("MachineDeployment", "h100", "capi")
    assert by_name("h100", ["gpu"], [md]) == (md, [])
    assert by_name("gpu", ["gpu"], [md]) == (Provider("NodePool", "gpu"), [])
    twice = by_name("h100", [], [md, Provider("MachineDeployment", "h100", "other")])
    assert twice[0] is None and "names several node groups" in twice[1][0]
    none = by_name("l4", ["gpu"], [md])
    assert none[0] is None and "no MachineDeployment or NodePool is named l4" in none[1][0]


def test_autoscaler_bounds_need_both_annotations() -> None:
    assert autoscaler_bounds({MIN_SIZE_ANNOTATION: "1", MAX_SIZE_ANNOTATION: "5"}) == (1, 5)
    assert autoscaler_bounds({MIN_SIZE_ANNOTATION: "1"}) is None
    assert autoscaler_bounds({MIN_SIZE_ANNOTATION: "1", MAX_SIZE_ANNOTATION: "many"}) is None


@pytest.mark.parametrize(
    ("current", "target", "bounds", "blocked", "warned"),
    [
        (2, 4, None, [], []),
        (2, 2, None, ["already has 2 replicas"], []),
        (2, 6, (1, 5), ["outside the autoscaler's bounds", "(1..5"], []),
        (2, 0, (1, 5), ["outside the autoscaler's bounds"], []),
        (2, 4, (1, 5), [], ["cluster-autoscaler manages", "set both annotations to 4"]),
        (2, 20, None, ["max_nodes (10)"], []),
    ],
)
def test_size_checks(current: int, target: int, bounds: tuple[int, int] | None, blocked: list[str], warned: list[str]) -> None:
    got_blocked, got_warnings = size_checks("MachineDeployment capi/h100", current, target, bounds, max_nodes=10)
    assert bool(got_blocked) == bool(blocked) and all(b in " | ".join(got_blocked) for b in blocked)
    assert bool(got_warnings) == bool(warned) and all(w in " | ".join(got_warnings) for w in warned)


def test_a_cluster_class_topology_that_sets_replicas_is_warned_about() -> None:
    md = {"metadata": {"name": "c-md-h100-x", "labels": {"topology.cluster.x-k8s.io/deployment-name": "h100"}}}
    cluster = {
        "metadata": {"name": "c"},
        "spec": {"topology": {"workers": {"machineDeployments": [{"class": "gpu", "name": "h100", "replicas": 3}]}}},
    }
    warning = topology_warning(cluster, md)
    assert warning is not None and "sets this MachineDeployment to 3 replicas" in warning
    assert "machineDeployments[h100].replicas" in warning
    # Left to the autoscaler (no replicas), not topology-owned, or no topology: nothing to say.
    unset = {"metadata": {"name": "c"}, "spec": {"topology": {"workers": {"machineDeployments": [{"name": "h100"}]}}}}
    assert topology_warning(unset, md) is None
    assert topology_warning(cluster, {"metadata": {"name": "plain"}}) is None
    assert topology_warning(None, md) is None


def test_gpus_per_node() -> None:
    assert gpus_per_node({"capacity.cluster-autoscaler.kubernetes.io/gpu-count": "8"}, [4]) == 8
    assert gpus_per_node({}, [4, 2]) == 4
    assert gpus_per_node({}, []) == 0


def pod(name: str) -> NodePod:
    meta = {"name": name, "namespace": "team-a", "uid": f"uid-{name}"}
    return NodePod.read({"metadata": meta, "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})


def machine(name: str, *, node: str | None = "n", marked: bool = False, pods: int = 0) -> MachineInfo:
    return MachineInfo(
        name, f"uid-{name}", f"{name}-node" if node else None, marked, tuple(pod(f"{name}-p{i}") for i in range(pods))
    )


def names(machines: tuple[MachineInfo, ...]) -> list[str]:
    return [m.name for m in machines]


def test_scale_down_takes_nodeless_then_idle_machines() -> None:
    machines = [machine("a", pods=1), machine("b"), machine("c", node=None), machine("d")]
    victims = choose_victims(machines, 2, drain=False)
    assert names(victims.machines) == ["c", "b"] and not victims.blocked


def test_scale_down_with_too_few_idle_nodes_is_refused_unless_drained() -> None:
    machines = [machine("a", pods=2), machine("b"), machine("c", pods=1)]
    refused = choose_victims(machines, 2, drain=False)
    assert "needs 2 without GPU pods, there are 1" in refused.blocked[0]
    assert "c-node (1 GPU pods: team-a/c-p0)" in refused.blocked[0] and "drain=true" in refused.blocked[0]
    drained = choose_victims(machines, 2, drain=True)
    assert names(drained.machines) == ["b", "c"] and not drained.blocked  # the least busy one is drained


def test_machines_marked_already_go_first_and_must_be_idle() -> None:
    machines = [machine("a"), machine("b", marked=True), machine("c")]
    assert names(choose_victims(machines, 2, drain=False).machines) == ["b", "a"]
    # More marked than removed: Cluster API picks among them, so every one must qualify.
    busy_marked = [machine("a", marked=True), machine("b", marked=True, pods=1), machine("c")]
    victims = choose_victims(busy_marked, 1, drain=False)
    assert names(victims.machines) == ["a", "b"]
    assert "already marked for deletion" in victims.blocked[0] and "Machine b" in victims.blocked[0]
    assert not choose_victims(busy_marked, 1, drain=True).blocked


@pytest.mark.parametrize(
    ("before", "new", "in_pool", "blocked", "warned"),
    [
        (8, 16, 8, [], []),
        (8, 8, 8, ["already limits nvidia.com/gpu to 8"], []),
        (16, 8, 16, [], ["removes no node for a limit"]),
        (None, 32, 16, [], ["has no nvidia.com/gpu limit now"]),
        (8, 100, 8, ["max_gpus (80)"], []),
        (None, 100, 16, ["max_gpus (80)"], ["has no nvidia.com/gpu limit now"]),
    ],
)
def test_limit_checks(before: float | None, new: int, in_pool: float, blocked: list[str], warned: list[str]) -> None:
    got_blocked, got_warnings = limit_checks("NodePool gpu", before, new, in_pool, max_gpus=80)
    assert bool(got_blocked) == bool(blocked) and all(b in " | ".join(got_blocked) for b in blocked)
    assert bool(got_warnings) == bool(warned) and all(w in " | ".join(got_warnings) for w in warned)
