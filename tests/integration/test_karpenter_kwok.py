"""The real Karpenter controller (kwok cloud provider) on the test bed: a
NodePool's `spec.limits` for nvidia.com/gpu decide whether a pending GPU pod
gets a node — the knob the scale-pool playbook turns."""

from __future__ import annotations

from typing import Any

import pytest

from testbed.karpenter import Karpenter, node_pool_object
from testbed.kube import RestClient, apply_objects
from testbed.objects import namespace_object, unique
from testbed.waiting import poll

pytestmark = pytest.mark.testbed

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
# Karpenter serves every pending pod it can: a taint of the test's own keeps other
# tests' pending pods (the simulated fleet has some) out of this pool.
POOL_TAINT = "gpuctl.io/test-pool"


def _gpu_pod(name: str, namespace: str, pool: str, gpus: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeSelector": {"karpenter.sh/nodepool": pool},
            # kube-controller-manager here runs no node-lifecycle controller, so
            # new nodes keep the not-ready taint admission gives them.
            "tolerations": [
                {"operator": "Exists", "key": "nvidia.com/gpu"},
                {"operator": "Equal", "key": POOL_TAINT, "value": pool, "effect": "NoSchedule"},
                {"operator": "Exists", "key": "node.kubernetes.io/not-ready"},
            ],
            "containers": [
                {"name": "main", "image": "registry.invalid/train:1", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
            ],
        },
    }


async def _node_of(admin: RestClient, pod: str, namespace: str) -> str | None:
    return (await admin.get("Pod", pod, namespace)).body.get("spec", {}).get("nodeName")


async def test_a_pending_gpu_pod_gets_a_node_until_the_pool_limit(admin: RestClient, karpenter: Karpenter) -> None:
    pool = unique("gpu")
    namespace = pool
    await apply_objects(
        admin,
        [
            namespace_object(namespace),
            node_pool_object(
                pool,
                instance_types=["p5.48xlarge"],
                gpu_limit=8,
                labels={"gpuctl.io/pool": pool},
                taints=[GPU_TAINT, {"key": POOL_TAINT, "value": pool, "effect": "NoSchedule"}],
            ),
        ],
    )
    await apply_objects(admin, [_gpu_pod("first", namespace, pool, 8)])
    node = await poll(lambda: _node_of(admin, "first", namespace), timeout_s=90, what="Karpenter to give the first pod a node")
    created = (await admin.get("Node", node)).body
    assert created["metadata"]["labels"]["karpenter.sh/nodepool"] == pool
    assert created["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "p5.48xlarge"
    assert created["status"]["capacity"]["nvidia.com/gpu"] == "8"

    async def claimed_nodes() -> list[str | None]:
        claims = (await admin.list("NodeClaim", labelSelector=f"karpenter.sh/nodepool={pool}")).body["items"]
        return [c.get("status", {}).get("nodeName") for c in claims]

    # The scheduler may bind the pod before Karpenter registers the node on its NodeClaim.
    assert await poll(claimed_nodes, lambda names: bool(names) and None not in names, what="the NodeClaim's registration") == [node]

    # The pool is at its limit: Karpenter says so on the second pod instead of launching.
    await apply_objects(admin, [_gpu_pod("second", namespace, pool, 8)])

    async def limit_events() -> list[str]:
        events = (await admin.request("GET", f"/api/v1/namespaces/{namespace}/events")).body.get("items", [])
        return [e["message"] for e in events if e["involvedObject"]["name"] == "second" and "limit" in e.get("message", "")]

    messages = await poll(limit_events, timeout_s=60, what="Karpenter to report the NodePool limit")
    assert pool in messages[0]
    assert await _node_of(admin, "second", namespace) is None

    # Raising spec.limits (what scale-pool does) lets Karpenter launch the second node.
    raised = await admin.patch("NodePool", pool, {"spec": {"limits": {"nvidia.com/gpu": "16"}}})
    assert raised.status == 200, raised.body
    second = await poll(lambda: _node_of(admin, "second", namespace), timeout_s=90, what="a node for the second pod")
    assert second != node
