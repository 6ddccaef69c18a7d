"""What a namespace's GPU limit and a pool's GPU count mean, checked against the real
kube-apiserver, its quota admission and the quota controller.

- Kubernetes accepts `limits.nvidia.com/gpu` and a bare `nvidia.com/gpu` in a
  ResourceQuota but enforces neither (extended resources cannot be overcommitted,
  so only `requests.` is counted): gpuctl shows only `requests.nvidia.com/gpu`.
- Scoped quotas bind only the pods in their scope; of several unscoped quotas the
  lowest hard limit binds. MIG quotas are shown per profile.
- The API server hands back quantities as written when they are canonical enough
  (`+2`, `2E3`, `1e1`), so gpuctl must read the whole quantity grammar.
- Time-sliced nodes advertise each physical GPU `replicas` times.

Each test makes its own namespaces and nodes; the shared fleet is left alone.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_kubernetes_source import create, eventually, gpu_pod, own_node_and_namespace, unique, watching

from gpuctl.model import NamespaceUsage, Snapshot
from testbed.controlplane import ControlPlane
from testbed.kube import RestClient, apply_objects
from testbed.nodes import gpu_node_object
from testbed.waiting import poll

pytestmark = pytest.mark.testbed


def quota(name: str, namespace: str, hard: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hard": hard, **spec},
    }


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def with_requests(pod: dict[str, Any], resources: dict[str, str]) -> dict[str, Any]:
    pod["spec"]["containers"][0]["resources"] = {"limits": resources}
    return pod


async def counted(admin: RestClient, name: str, ns: str) -> dict[str, Any]:
    """The quota's status once the quota controller has filled it (admission refuses pods until then)."""

    async def status() -> dict[str, Any]:
        return (await admin.get("ResourceQuota", name, ns)).body.get("status", {})

    return await poll(status, lambda s: "hard" in s, what=f"the quota controller to count {ns}/{name}")


def usage(store_snapshot: Snapshot, name: str) -> NamespaceUsage | None:
    return next((n for n in store_snapshot.namespaces if n.name == name), None)


async def test_only_requests_quota_keys_limit_gpus(control_plane: ControlPlane, admin: RestClient) -> None:
    node, _ = await own_node_and_namespace(admin, "keys")
    spaces = {key: unique("quota-key") for key in ("requests.nvidia.com/gpu", "limits.nvidia.com/gpu", "nvidia.com/gpu")}
    objects = [namespace(ns) for ns in spaces.values()]
    objects += [quota("gpus", ns, {key: "1"}) for key, ns in spaces.items()]
    await apply_objects(admin, objects)  # all three are accepted by validation
    for ns in spaces.values():
        await counted(admin, "gpus", ns)
        # Pods need the namespace's default ServiceAccount; without it admission says 403 as well.
        await poll(lambda: admin.get("ServiceAccount", "default", ns), lambda r: r.status == 200, what=f"{ns}'s ServiceAccount")

    created = {key: (await admin.create(gpu_pod("two", ns, node, 2))).status for key, ns in spaces.items()}
    assert created == {"requests.nvidia.com/gpu": 403, "limits.nvidia.com/gpu": 201, "nvidia.com/gpu": 201}
    fits = spaces["requests.nvidia.com/gpu"]
    await create(admin, gpu_pod("one", fits, node, 1))

    async with watching(control_plane) as (_, store):

        def shown() -> dict[str, tuple[float | None, float, int]]:
            rows = {ns: usage(store.snapshot(), ns) for ns in spaces.values()}
            return {key: (r.gpu_quota_hard, r.gpu_quota_used, r.gpus_requested) for key, ns in spaces.items() if (r := rows[ns])}

        expected = {"requests.nvidia.com/gpu": (1, 1, 1), "limits.nvidia.com/gpu": (None, 0, 2), "nvidia.com/gpu": (None, 0, 2)}
        await eventually(lambda: shown() == expected, f"quota rows {expected}")
    # What Kubernetes itself counts: only the requests. key has usage; the others are not even tracked.
    used = {key: (await admin.get("ResourceQuota", "gpus", ns)).body["status"].get("used", {}) for key, ns in spaces.items()}
    assert used == {"requests.nvidia.com/gpu": {"requests.nvidia.com/gpu": "1"}, "limits.nvidia.com/gpu": {}, "nvidia.com/gpu": {}}


async def test_the_lowest_unscoped_quota_binds_and_mig_quotas_show_per_profile(control_plane: ControlPlane, admin: RestClient) -> None:
    node, ns = await own_node_and_namespace(admin, "quotas")
    high_only = {"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["gpuctl-high"]}]}}
    forms = {  # quantity spellings the API server stores and returns as written
        "requests.nvidia.com/mig-1g.10gb": "5e3",
        "requests.nvidia.com/mig-2g.20gb": "+2",
        "requests.nvidia.com/mig-3g.40gb": "2E3",
        "requests.nvidia.com/mig-7g.80gb": "1k",
    }
    await apply_objects(
        admin,
        [
            quota("wide", ns, {"requests.nvidia.com/gpu": "8"}),
            quota("tight", ns, {"requests.nvidia.com/gpu": "3", "requests.nvidia.com/mig-1g.10gb": "4"}),
            quota("high-only", ns, {"requests.nvidia.com/gpu": "1"}, **high_only),
            quota("forms", ns, forms),
        ],
    )
    stored = (await admin.get("ResourceQuota", "forms", ns)).body["spec"]["hard"]
    assert stored == forms
    for name in ("wide", "tight", "high-only", "forms"):
        await counted(admin, name, ns)
    await create(admin, gpu_pod("whole", ns, node, 2))  # outside the scoped quota: no priority class
    await create(admin, with_requests(gpu_pod("mig", ns, node), {"nvidia.com/mig-1g.10gb": "3"}))

    async with watching(control_plane) as (_, store):

        def row() -> tuple[object, ...] | None:
            r = usage(store.snapshot(), ns)
            return None if r is None else (r.gpu_quota_hard, r.gpu_quota_used, r.mig_quota_hard, r.mig_quota_used)

        expected = (
            3,  # tight < wide; the PriorityClass-scoped 1 binds only its own pods
            2,
            {"nvidia.com/mig-1g.10gb": 4, "nvidia.com/mig-2g.20gb": 2, "nvidia.com/mig-3g.40gb": 2000, "nvidia.com/mig-7g.80gb": 1000},
            {"nvidia.com/mig-1g.10gb": 3, "nvidia.com/mig-2g.20gb": 0, "nvidia.com/mig-3g.40gb": 0, "nvidia.com/mig-7g.80gb": 0},
        )
        await eventually(lambda: row() == expected, f"the namespace row {expected}")


async def test_time_sliced_gpus_count_once_and_requests_as_slices(control_plane: ControlPlane, admin: RestClient) -> None:
    pool = unique("sliced")
    ns = unique("sliced")
    sliced, renamed, whole = unique("sliced-node"), unique("renamed-node"), unique("whole-node")
    sharing = {"gpuctl.io/pool": pool, "nvidia.com/gpu.replicas": "4", "nvidia.com/gpu.sharing-strategy": "time-slicing"}
    await apply_objects(
        admin,
        [
            namespace(ns),
            # renameByDefault=false: the replicas are nvidia.com/gpu itself; GFD counts 2 physical GPUs.
            gpu_node_object(sliced, labels={**sharing, "nvidia.com/gpu.count": "2", "nvidia.com/gpu.product": "NVIDIA-L4-SHARED"},
                            resources={"nvidia.com/gpu": 8}),
            # renameByDefault=true: nvidia.com/gpu.shared, no count label.
            gpu_node_object(renamed, labels={**sharing, "nvidia.com/gpu.product": "NVIDIA-L4"}, resources={"nvidia.com/gpu.shared": 8}),
            gpu_node_object(whole, labels={"gpuctl.io/pool": pool, "nvidia.com/gpu.product": "NVIDIA-L4"}, resources={"nvidia.com/gpu": 2}),
        ],
    )
    for i in range(3):
        await create(admin, gpu_pod(f"slice-{i}", ns, sliced, 1))
    await create(admin, with_requests(gpu_pod("shared", ns, renamed), {"nvidia.com/gpu.shared": "2"}))
    await create(admin, gpu_pod("whole", ns, whole, 1))

    async with watching(control_plane) as (_, store):

        def picture() -> tuple[object, ...]:
            snap = store.snapshot()
            nodes = {n.name: n for n in snap.nodes}
            shown = tuple(
                (n.gpu_capacity, n.gpu_allocatable, n.gpu_replicas, n.gpu_slices_allocatable, n.gpu_requested, n.gpu_slices_requested)
                for name in (sliced, renamed, whole)
                if (n := nodes.get(name))
            )
            pools = [(p.gpus_total, p.gpus_allocated, p.gpu_slices_total, p.gpu_slices_allocated) for p in snap.pools if p.name == pool]
            placeholders = sorted(g.key for g in snap.gpus if g.node in (sliced, renamed))
            return shown, pools, placeholders

        expected = (
            ((2, 2, 4, 8, 0, 3), (2, 2, 4, 8, 0, 2), (2, 2, 1, 0, 1, 0)),
            [(6, 1 + 1 + 1, 16, 5)],  # each node's slices take up ceil(slices / 4) GPUs
            sorted(f"{n}/{i}" for n in (sliced, renamed) for i in range(2)),
        )
        await eventually(lambda: picture() == expected, f"time-sliced capacity {expected}")
        pods = {p.name: p for p in store.snapshot().pods if p.namespace == ns}
        assert (pods["shared"].gpus, pods["shared"].gpu_slices) == (0, 2)
