"""Checks every simulated fleet must pass, whatever its seed, scale or churn."""

from __future__ import annotations

from gpuctl.sim.fleet import Fleet
from gpuctl.sim.placement import Allocator


def assert_consistent(fleet: Fleet) -> None:
    held: dict[str, str] = {}
    for pod in fleet.pods:
        if pod.node is None:
            assert pod.gpu_keys == (), pod.key
            continue
        node = fleet.node_by_name[pod.node]
        assert node.pool == pod.pool, pod.key
        resources: dict[str, int] = {}
        for key in pod.gpu_keys:
            gpu = fleet.gpu_by_key[key]  # every GPU it holds exists...
            assert gpu.node == pod.node, (pod.key, key)  # ...on the pod's node
            assert key not in held, f"{key} held by {held.get(key)} and {pod.key}"
            held[key] = pod.key
            resources[gpu.resource] = resources.get(gpu.resource, 0) + 1
        assert resources == dict(pod.gpu_requests), pod.key
    for ns in fleet.namespaces:
        used = fleet.quota_used(ns.name)
        for key, hard in ns.quota_hard.items():
            assert used.get(key, 0) <= hard, (ns.name, key, used.get(key), hard)
    keys = [p.key for p in fleet.pods]
    assert len(keys) == len(set(keys))


def assert_pending_do_not_fit(fleet: Fleet) -> None:
    """A pending pod is pending because no node of its pool has room, not by fiat."""
    alloc = Allocator(fleet.nodes)
    for pod in fleet.pods:
        if pod.node:
            alloc.take_keys(pod.node, pod.gpu_keys)
    for pod in fleet.pods:
        if pod.node is None:
            nodes = [n.name for n in fleet.nodes if n.pool == pod.pool]
            assert alloc.first_fit(nodes, pod.gpu_requests) is None, pod.key
