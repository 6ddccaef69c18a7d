"""The simulated fleet, loaded into the real API server, stays as the fleet says."""

from __future__ import annotations

from collections import Counter

import pytest

from gpuctl.sim.fleet import Fleet
from testbed.kube import RestClient
from testbed.waiting import poll

pytestmark = pytest.mark.testbed


async def _pods(admin: RestClient) -> dict[str, dict]:
    items = (await admin.list("Pod")).body["items"]
    return {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in items}


# The count each owner's status keeps of the pods it owns (pending and running alike).
OWNER_COUNT = {"ReplicaSet": "replicas", "StatefulSet": "replicas", "Job": "active"}


async def _unsynced_owners(admin: RestClient, fleet: Fleet) -> list[str]:
    """Owners whose status does not yet count exactly the fleet's pods they should own."""
    expected = Counter((p.ref_kind, f"{p.namespace}/{p.ref_name}") for p in fleet.pods if p.ref_kind)
    counted: dict[tuple[str, str], int] = {}
    for kind, field in OWNER_COUNT.items():
        for obj in (await admin.list(kind)).body["items"]:
            meta, status = obj["metadata"], obj.get("status") or {}
            if kind != "Job" and status.get("observedGeneration") != meta.get("generation"):
                continue  # not synced since it was created
            counted[(kind, f"{meta['namespace']}/{meta['name']}")] = status.get(field, 0)
    return [f"{kind} {key}: {counted.get((kind, key))} of {n}" for (kind, key), n in expected.items() if counted.get((kind, key)) != n]


async def test_loaded_fleet_matches_the_simulation_and_owners_adopt_without_churn(admin: RestClient, fleet: Fleet) -> None:
    # Wait until every controller has synced and counts exactly its adopted pods: from then on it makes
    # no pods of its own, so any extra pod below is one it (wrongly) made.
    await poll(lambda: _unsynced_owners(admin, fleet), lambda unsynced: not unsynced, what="every owner to count its pods")
    pods = await _pods(admin)
    sim_pods = {p.key: p for p in fleet.pods}
    assert set(sim_pods) <= set(pods), f"missing pods: {sorted(set(sim_pods) - set(pods))[:5]}"
    extra = {k for k in pods if k.split("/")[0] in {ns.name for ns in fleet.namespaces}} - set(sim_pods)
    assert not extra, f"controllers created pods of their own: {sorted(extra)[:5]}"

    for key, sim in sim_pods.items():
        pod = pods[key]
        if sim.node:
            assert pod["spec"]["nodeName"] == sim.node
        if sim.ref_kind:
            refs = pod["metadata"].get("ownerReferences", [])
            assert [(r["kind"], r["name"]) for r in refs] == [(sim.ref_kind, sim.ref_name)], key

    nodes = {n["metadata"]["name"]: n for n in (await admin.list("Node")).body["items"]}
    for sim_node in fleet.nodes:
        allocatable = nodes[sim_node.name]["status"]["allocatable"]
        for resource, count in sim_node.resources.items():
            assert allocatable[resource] == str(count)


async def test_quota_usage_counts_the_fleet_pods(admin: RestClient, fleet: Fleet) -> None:
    for namespace in fleet.namespaces:
        if not namespace.quota_hard:
            continue
        # A quota tracks only the resources it limits.
        expected = {k: str(v) for k, v in fleet.quota_used(namespace.name).items() if k in namespace.quota_hard}

        async def used_now() -> dict[str, str]:
            status = (await admin.get("ResourceQuota", "gpu-quota", namespace.name)).body["status"]
            return {k: v for k, v in status.get("used", {}).items() if v != "0"}

        used = await poll(used_now, lambda u: u == expected, what=f"{namespace.name}'s quota usage")
        assert used == expected, namespace.name
