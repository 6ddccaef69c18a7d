"""KubernetesSource against the real test bed: the store always converges to exactly a fresh list.

"Exactly" is checked the strict way: list every kind from the API server with a
separate client, trim it with the same functions, and compare record for record
with what the watchers built up, through deletes, API server restarts and 410s.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from gpuctl.model import Snapshot
from gpuctl.sim.fleet import Fleet
from gpuctl.sources.base import Backoff
from gpuctl.sources.kube.reflector import Reflector, Resource
from gpuctl.sources.kube.trim import trim_job, trim_namespace, trim_node, trim_pdb, trim_pod, trim_quota, trim_replicaset
from gpuctl.sources.kubernetes import KubernetesSource
from gpuctl.state.pools import pool_labels
from gpuctl.state.records import Kind, PodRecord, Record
from gpuctl.state.store import ClusterStore
from testbed.controlplane import ADMIN, USER_A, ControlPlane, Identity
from testbed.kube import RestClient, apply_objects
from testbed.nodes import gpu_node_object
from testbed.waiting import poll

pytestmark = pytest.mark.testbed

KEEP_LABELS = frozenset(pool_labels(None))
TRIM: dict[Kind, tuple[str, Callable[[Any], Record | None]]] = {
    Kind.NODE: ("Node", lambda o: trim_node(o, KEEP_LABELS)),
    Kind.POD: ("Pod", trim_pod),
    Kind.QUOTA: ("ResourceQuota", trim_quota),
    Kind.NAMESPACE: ("Namespace", trim_namespace),
    Kind.REPLICASET: ("ReplicaSet", trim_replicaset),
    Kind.JOB: ("Job", trim_job),
    Kind.PDB: ("PodDisruptionBudget", trim_pdb),
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def fresh_list(admin: RestClient, kind: Kind) -> dict[str, Record]:
    api_kind, trim = TRIM[kind]
    response = await admin.list(api_kind)
    assert response.status == 200, response.body
    records = (trim(obj) for obj in response.body["items"])
    return {r.key: r for r in records if r is not None}


async def mismatches(store: ClusterStore, admin: RestClient) -> list[str]:
    problems = []
    for kind in Kind:
        expected, got = await fresh_list(admin, kind), dict(store.records(kind))
        missing, ghosts = set(expected) - set(got), set(got) - set(expected)
        stale = {k for k in set(expected) & set(got) if expected[k] != got[k]}
        if missing or ghosts or stale:
            problems.append(f"{kind.value}: missing {sorted(missing)[:3]} ghosts {sorted(ghosts)[:3]} stale {sorted(stale)[:3]}")
    return problems


async def converged(store: ClusterStore, admin: RestClient, *, timeout_s: float = 30) -> None:
    """Wait until the store equals a fresh list of every kind."""
    await poll(lambda: mismatches(store, admin), lambda problems: not problems, timeout_s=timeout_s, interval_s=0.2,
               what="the store to match a fresh list")


async def eventually(predicate: Callable[[], bool], what: str, *, timeout_s: float = 30) -> None:
    await poll(predicate, timeout_s=timeout_s, interval_s=0.05, what=what)


@asynccontextmanager
async def watching(
    plane: ControlPlane, *, backoff: Callable[[], Backoff] | None = None, identity: Identity = ADMIN
) -> AsyncIterator[tuple[KubernetesSource, ClusterStore]]:
    store = ClusterStore()
    source = KubernetesSource(kubeconfig=plane.kubeconfig(identity), backoff=backoff or (lambda: Backoff(base=0.2, cap=2)))
    task = asyncio.create_task(source.run(store))
    try:
        await eventually(lambda: store.listed == frozenset(Kind), "the first list of every kind")
        yield source, store
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def create(admin: RestClient, obj: dict[str, Any], *, timeout_s: float = 30) -> None:
    """Create, retrying while a new namespace's default ServiceAccount does not exist yet."""
    await poll(lambda: admin.create(obj), lambda r: r.status in (200, 201), timeout_s=timeout_s,
               what=f"creating {obj['kind']} {obj['metadata']['name']}")


def gpu_pod(name: str, namespace: str, node: str, gpus: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {"name": "main", "image": "registry.invalid/train:1", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
            ],
        },
    }


async def own_node_and_namespace(admin: RestClient, prefix: str) -> tuple[str, str]:
    node, namespace = unique(f"{prefix}-node"), unique(prefix)
    await apply_objects(
        admin,
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            gpu_node_object(node, labels={"nvidia.com/gpu.product": "NVIDIA-L4", "gpuctl.io/pool": prefix}, resources={"nvidia.com/gpu": 4}),
        ],
    )
    return node, namespace


def expected_owner(sim: Any) -> tuple[str | None, str | None]:
    """The top controller, read from the objects: Deployment above the ReplicaSet, CronJob above the Job."""
    return sim.owner_kind, sim.owner_name


async def test_snapshot_matches_the_loaded_fleet(control_plane: ControlPlane, admin: RestClient, fleet: Fleet) -> None:
    async with watching(control_plane) as (_source, store):
        # Controllers adopt the loaded pods asynchronously; the watch must carry those updates in.
        def adopted() -> bool:
            records, pods = store.records(Kind.POD), {p.key: p for p in store.snapshot().pods}
            return all(
                (rec := records.get(sim.key)) is not None
                and (rec.owner_kind, rec.owner_name) == (sim.ref_kind, sim.ref_name)  # type: ignore[union-attr]
                and (pods[sim.key].owner_kind, pods[sim.key].owner_name) == expected_owner(sim)
                for sim in fleet.pods
            )

        await eventually(adopted, "every fleet pod with its owner", timeout_s=60)
        await converged(store, admin)
        snap = store.snapshot()
        assert snap.watch.connected and snap.watch.source == "kubernetes" and snap.watch.error is None
        assert snap.watch.context == "testbed-testbed-admin"

        nodes = {n.name: n for n in snap.nodes}
        for sim in fleet.nodes:
            node = nodes[sim.name]
            assert node.pool == sim.pool and node.ready
            assert node.gpu_allocatable + sum(node.mig_allocatable.values()) == sum(sim.resources.values())

        pods = {p.key: p for p in snap.pods}
        for sim in fleet.pods:
            pod = pods[sim.key]
            assert pod.node == sim.node and pod.gpus_total == sum(sim.gpu_requests.values())
            assert (pod.owner_kind, pod.owner_name) == expected_owner(sim), sim.key

        usage = {n.name: n for n in snap.namespaces}
        for ns in fleet.namespaces:
            if ns.quota_hard:
                assert usage[ns.name].gpu_quota_hard == ns.quota_hard.get("requests.nvidia.com/gpu")
                assert usage[ns.name].gpu_quota_used == fleet.quota_used(ns.name).get("requests.nvidia.com/gpu", 0)
                mig_used = fleet.quota_used(ns.name)
                assert usage[ns.name].mig_quota_hard == {k.removeprefix("requests."): v for k, v in ns.mig_quota_hard.items()}
                assert usage[ns.name].mig_quota_used == {k.removeprefix("requests."): mig_used.get(k, 0) for k in ns.mig_quota_hard}
        assert any(ns.mig_quota_hard for ns in fleet.namespaces)  # the fleet has a MIG quota to check

        # GPU entries come from node capacity even without metrics.
        assert {g.node for g in snap.gpus} >= {n.name for n in fleet.nodes if n.resources.get("nvidia.com/gpu")}


async def test_deletes_and_objects_that_start_or_stop_mattering(control_plane: ControlPlane, admin: RestClient) -> None:
    node, namespace = await own_node_and_namespace(admin, "ks-delete")
    async with watching(control_plane) as (_, store):
        await create(admin, gpu_pod("trainer", namespace, node, 2))
        await create(admin, {**gpu_pod("cpu-only", namespace, node), "spec": {**gpu_pod("x", namespace, node)["spec"], "containers": [{"name": "main", "image": "registry.invalid/cpu:1"}]}})
        await converged(store, admin)
        assert f"{namespace}/trainer" in store.records(Kind.POD)
        assert f"{namespace}/cpu-only" not in store.records(Kind.POD)  # no GPUs: never kept
        assert store.snapshot().pools and any(p.name == "ks-delete" for p in store.snapshot().pools)

        assert (await admin.delete("Pod", "trainer", namespace, grace_s=0)).status == 200
        await eventually(lambda: f"{namespace}/trainer" not in store.records(Kind.POD), "the pod delete")

        # A node unknown to kwok, patched by hand: no GPUs -> ignored; GPUs appear -> kept; gone again -> dropped.
        plain, fence = unique("ks-plain"), unique("ks-fence")
        await apply_objects(admin, [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": plain}}])
        # A watch delivers one resource's events in order: once a GPU node created after the plain one
        # has arrived, the plain one has been seen (and ignored) too.
        await apply_objects(admin, [gpu_node_object(fence, labels={}, resources={"nvidia.com/gpu": 1})])
        await eventually(lambda: fence in store.records(Kind.NODE), "a GPU node created after the plain one")
        assert plain not in store.records(Kind.NODE)
        await admin.patch("Node", plain, {"status": {"capacity": {"nvidia.com/gpu": "2"}}}, subresource="status")
        await eventually(lambda: plain in store.records(Kind.NODE), "a node that gained GPUs")
        await admin.patch("Node", plain, {"status": {"capacity": {"nvidia.com/gpu": None}}}, subresource="status")
        await eventually(lambda: plain not in store.records(Kind.NODE), "a node that lost its GPUs")

        assert (await admin.delete("Node", node)).status == 200
        await eventually(lambda: node not in store.records(Kind.NODE), "the node delete")
        assert node not in {g.node for g in store.snapshot().gpus}
        await admin.delete("Node", plain)
        await admin.delete("Node", fence)
        await converged(store, admin)


async def test_apiserver_restart_recovers_to_exactly_a_fresh_list(control_plane: ControlPlane, admin: RestClient) -> None:
    node, namespace = await own_node_and_namespace(admin, "ks-restart")
    for name in ("a", "b", "c"):
        await create(admin, gpu_pod(name, namespace, node))
    # A slow backoff leaves a window after the restart in which the cluster changes while we are not watching.
    async with watching(control_plane, backoff=lambda: Backoff(base=3, cap=6)) as (_source, store):
        await converged(store, admin)
        restart = asyncio.create_task(control_plane.restart_apiserver(down_for_s=2))
        await eventually(lambda: not store.watch_health.connected, "the watch to notice the API server is gone")
        health = store.snapshot().watch
        assert health.error is not None and control_plane.server in health.error
        await restart

        assert (await admin.delete("Pod", "a", namespace, grace_s=0)).status == 200  # a delete we did not see
        await create(admin, gpu_pod("d", namespace, node))  # an add we did not see
        await admin.delete("Namespace", unique("never-existed"))

        await eventually(lambda: store.watch_health.connected, "reconnecting", timeout_s=60)
        await converged(store, admin, timeout_s=60)
        pods = store.records(Kind.POD)
        assert f"{namespace}/a" not in pods and f"{namespace}/d" in pods
        assert store.snapshot().watch.error is None


async def test_a_too_old_resource_version_relists_and_drops_ghosts(control_plane: ControlPlane, admin: RestClient) -> None:
    store = ClusterStore()
    ghost = PodRecord(namespace="nowhere", name="ghost", node=None, phase="Running", gpu_requests={"nvidia.com/gpu": 1})
    store.replace(Kind.POD, [ghost])
    source = KubernetesSource(kubeconfig=control_plane.kubeconfig())
    conn = await source.connect()
    reflector = Reflector(
        Resource(Kind.POD, "pods", conn.lister("/api/v1/pods"), trim_pod),
        store,
        describe=lambda e, what: AssertionError(f"{what}: {e}"),  # type: ignore[arg-type,return-value]
        on_health=lambda r: None,
    )
    reflector.resource_version = "1"  # long compacted out of the API server's watch window
    task = asyncio.create_task(reflector.run())
    try:
        await eventually(lambda: reflector.lists == 1, "a re-list after 410 Gone")
        assert ghost.key not in store.records(Kind.POD)
        assert dict(store.records(Kind.POD)) == await fresh_list(admin, Kind.POD)
        assert reflector.error is None and reflector.resource_version not in (None, "1")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await conn.close()


async def gpuctl(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCTL_", "KUBE"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gpuctl.cli", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_snapshot_against_the_test_bed(control_plane: ControlPlane, fleet: Fleet) -> None:
    code, out, err = await gpuctl("snapshot", "--json", "--kubeconfig", str(control_plane.kubeconfig()))
    assert code == 0, err
    snap = Snapshot.model_validate_json(out)
    assert {p.key for p in fleet.pods} <= {p.key for p in snap.pods}
    assert json.loads(out)["watch"]["connected"] is True

    code, out, err = await gpuctl("snapshot", "--kubeconfig", str(control_plane.kubeconfig(USER_A)))
    assert code == 3 and out == ""
    assert len(err.strip().splitlines()) == 1 and "403 Forbidden" in err and "Traceback" not in err
