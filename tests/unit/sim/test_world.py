"""The demo world's simulated controllers: scheduler, MIG manager, Karpenter."""

from __future__ import annotations

from gpuctl.migparted import MIG_CONFIG_LABEL, MIG_STATE_LABEL
from gpuctl.sim import build_fleet
from gpuctl.sim.world import SimWorld, WorldChange


def world() -> SimWorld:
    return SimWorld(build_fleet(7), 7, mig_reconfigure_s=1.0, node_launch_s=1.0)


def test_karpenter_launches_within_the_limit_only_and_a_lower_limit_removes_nothing() -> None:
    w = world()
    assert w.pool_limits["a100-train"] == w.pool_gpus("a100-train") == 32
    w.set_pool_limit("a100-train", 39)  # a node has 8: no room for one
    w.advance(5.0, churn=False)
    assert w.pool_gpus("a100-train") == 32
    w.set_pool_limit("a100-train", 40)
    w.advance(5.5, churn=False)  # launching: nothing shows before it is ready
    assert w.pool_gpus("a100-train") == 32
    w.advance(6.5, churn=False)
    assert w.pool_gpus("a100-train") == 40
    new = w.fleet.nodes[-1]
    assert new.pool == "a100-train" and any(p.node == new.name for p in w.fleet.pods)  # a pending 8-GPU pod runs there
    w.set_pool_limit("a100-train", 8)
    w.advance(20.0, churn=False)
    assert w.pool_gpus("a100-train") == 40


def test_the_mig_manager_fails_while_gpu_pods_hold_the_node_and_applies_once_they_left() -> None:
    w = world()
    node = w.node("h100-mig-b7vm2")
    assert node is not None
    w.set_node(node.name, labels={**node.labels, MIG_CONFIG_LABEL: "all-7g.80gb"}, unschedulable=True)
    assert w.node(node.name).labels[MIG_STATE_LABEL] == "pending"  # type: ignore[union-attr]
    w.advance(2.0, churn=False)
    assert w.node(node.name).labels[MIG_STATE_LABEL] == "failed"  # type: ignore[union-attr]
    for pod in [p for p in w.fleet.pods if p.node == node.name]:
        w.evict(pod.key)
    relabelled = w.node(node.name)
    assert relabelled is not None
    w.set_node(node.name, labels={**relabelled.labels, MIG_CONFIG_LABEL: "all-disabled"}, unschedulable=True)
    w.advance(4.0, churn=False)
    done = w.node(node.name)
    assert done is not None and done.labels[MIG_STATE_LABEL] == "success"
    assert done.resources == {"nvidia.com/gpu": 8} and all(g.mig_profile is None for g in done.gpus)
    assert not any(p.node == node.name for p in w.fleet.pods)  # cordoned: the replacements went elsewhere or wait


def test_an_evicted_controller_pod_comes_back_pending_and_a_bare_pod_does_not() -> None:
    w = world()
    seen: list[WorldChange] = []
    w.subscribe(seen.append)
    bare = next(p for p in w.fleet.pods if p.name == "jupyter-alice")
    owned = next(p for p in w.fleet.pods if p.ref_kind == "ReplicaSet" and p.node)
    w.evict(bare.key)
    w.evict(owned.key)
    assert w.pod(bare.key) is None and w.pod(owned.key) is None
    replacement = next(p for p in w.fleet.pods if p.ref_name == owned.ref_name and p.node is None)
    assert replacement.uid != owned.uid and seen[-1].pods == {owned.key, replacement.key}
    w.advance(1.0, churn=False)
    assert w.pod(replacement.key).node is not None  # type: ignore[union-attr]
    assert not any(p.name.startswith("jupyter-alice") for p in w.fleet.pods)
