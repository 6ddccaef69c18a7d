"""Cluster API, Kueue and Karpenter CRDs as their Go modules ship them, in the
real API server; and the test-bed provider moving kwok nodes with a
MachineDeployment's replicas."""

from __future__ import annotations

from typing import Any

import pytest

from testbed.capi_provider import (
    CAPI_CLUSTER,
    CAPI_NAMESPACE,
    CLUSTER_NAME_LABEL,
    DELETE_MACHINE_ANNOTATION,
    DEPLOYMENT_NAME_LABEL,
    CapiProvider,
    machine_deployment_object,
)
from testbed.crds import InstalledCrds
from testbed.kube import RestClient, apply_objects, object_path
from testbed.objects import unique
from testbed.waiting import poll

pytestmark = pytest.mark.testbed


async def test_the_crds_are_established_with_the_versions_the_playbooks_use(
    admin: RestClient, upstream_crds: InstalledCrds
) -> None:
    assert set(upstream_crds.by_project) == {"cluster-api", "kueue", "karpenter"}
    assert set(upstream_crds.names) >= {
        "machinedeployments.cluster.x-k8s.io",
        "machines.cluster.x-k8s.io",
        "clusterqueues.kueue.x-k8s.io",
        "resourceflavors.kueue.x-k8s.io",
        "nodepools.karpenter.sh",
        "nodeclaims.karpenter.sh",
    }
    md = (await admin.get("CustomResourceDefinition", "machinedeployments.cluster.x-k8s.io")).body
    storage = [v for v in md["spec"]["versions"] if v["storage"]]
    assert storage[0]["name"] == "v1beta2"
    assert storage[0]["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"


async def test_schema_validation_is_the_upstream_one(admin: RestClient, upstream_crds: InstalledCrds) -> None:
    # A NodePool without a template is refused by Karpenter's own schema.
    response = await admin.create(
        {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": unique("np")}, "spec": {}}
    )
    assert response.status == 422
    assert "spec.template" in response.body["message"]


async def test_a_cluster_queue_nominal_quota_can_be_patched(admin: RestClient, upstream_crds: InstalledCrds) -> None:
    flavor, queue = unique("h100"), unique("team-a")
    await apply_objects(
        admin,
        [
            {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": flavor}, "spec": {}},
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "ClusterQueue",
                "metadata": {"name": queue},
                "spec": {
                    "namespaceSelector": {},
                    "resourceGroups": [
                        {
                            "coveredResources": ["nvidia.com/gpu"],
                            "flavors": [{"name": flavor, "resources": [{"name": "nvidia.com/gpu", "nominalQuota": "8"}]}],
                        }
                    ],
                },
            },
        ],
    )
    patch = {"op": "replace", "path": "/spec/resourceGroups/0/flavors/0/resources/0/nominalQuota", "value": "12"}
    response = await admin.request(
        "PATCH", object_path("ClusterQueue", queue), [patch], content_type="application/json-patch+json"
    )
    assert response.status == 200, response.body
    assert response.body["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuota"] == "12"


async def _scale(admin: RestClient, name: str, replicas: int) -> None:
    path = object_path("MachineDeployment", name, CAPI_NAMESPACE) + "/scale"
    response = await admin.request("PATCH", path, {"spec": {"replicas": replicas}}, content_type="application/merge-patch+json")
    assert response.status == 200, response.body


async def _pool_nodes(admin: RestClient, pool: str) -> list[dict[str, Any]]:
    nodes = (await admin.list("Node", labelSelector=f"gpuctl.io/pool={pool}")).body["items"]
    return sorted(nodes, key=lambda n: n["metadata"]["name"])


async def _status(admin: RestClient, name: str) -> dict[str, Any]:
    return (await admin.get("MachineDeployment", name, CAPI_NAMESPACE)).body.get("status", {})


async def test_a_machine_deployment_scale_moves_kwok_nodes_and_status(admin: RestClient, capi_provider: CapiProvider) -> None:
    name = unique("h100")
    md = machine_deployment_object(
        name,
        CAPI_NAMESPACE,
        cluster=CAPI_CLUSTER,
        replicas=2,
        gpus=8,
        node_labels={"gpuctl.io/pool": name, "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        taints="nvidia.com/gpu=present:NoSchedule",
    )
    await apply_objects(admin, [md])

    def settled(replicas: int):
        return lambda s: s.get("replicas") == replicas and s.get("readyReplicas") == replicas and s.get("phase") == "Running"

    status = await poll(lambda: _status(admin, name), settled(2), what="2 ready replicas")
    assert status["availableReplicas"] == status["upToDateReplicas"] == 2
    assert status["selector"] == f"{CLUSTER_NAME_LABEL}={CAPI_CLUSTER},{DEPLOYMENT_NAME_LABEL}={name}"
    nodes = await _pool_nodes(admin, name)
    assert [n["metadata"]["name"] for n in nodes] == [f"{name}-1", f"{name}-2"]
    node = nodes[0]
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "8"
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert node["metadata"]["annotations"]["cluster.x-k8s.io/machine"] == f"{name}-1"
    machine = (await admin.get("Machine", f"{name}-1", CAPI_NAMESPACE)).body
    assert machine["status"]["nodeRef"] == {"name": f"{name}-1"}

    await _scale(admin, name, 4)
    await poll(lambda: _status(admin, name), settled(4), what="4 ready replicas")
    assert [n["metadata"]["name"] for n in await _pool_nodes(admin, name)] == [f"{name}-{i}" for i in range(1, 5)]

    # Scale-down: the Machine marked for deletion first, then the newest.
    marked = await admin.patch(
        "Machine", f"{name}-2", {"metadata": {"annotations": {DELETE_MACHINE_ANNOTATION: "yes"}}}, CAPI_NAMESPACE
    )
    assert marked.status == 200
    await _scale(admin, name, 2)
    await poll(lambda: _status(admin, name), settled(2), what="2 replicas after scale-down")
    remaining = await poll(
        lambda: _pool_nodes(admin, name), lambda nodes: len(nodes) == 2, what="the removed machines' nodes to go"
    )
    assert [n["metadata"]["name"] for n in remaining] == [f"{name}-1", f"{name}-3"]
    machines = (await admin.list("Machine", CAPI_NAMESPACE, labelSelector=f"{DEPLOYMENT_NAME_LABEL}={name}")).body["items"]
    assert sorted(m["metadata"]["name"] for m in machines) == [f"{name}-1", f"{name}-3"]


async def test_unset_replicas_default_to_the_autoscaler_minimum(admin: RestClient, capi_provider: CapiProvider) -> None:
    name = unique("a100")
    md = machine_deployment_object(
        name,
        CAPI_NAMESPACE,
        cluster=CAPI_CLUSTER,
        replicas=None,
        node_labels={"gpuctl.io/pool": name},
        annotations={
            "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size": "3",
            "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size": "6",
        },
    )
    await apply_objects(admin, [md])
    await poll(
        lambda: _status(admin, name), lambda s: s.get("readyReplicas") == 3, what="3 replicas from the min-size annotation"
    )
    assert len(await _pool_nodes(admin, name)) == 3


async def test_another_clusters_machine_deployment_is_left_alone(admin: RestClient, capi_provider: CapiProvider) -> None:
    other, mine = unique("other"), unique("mine")
    for name, cluster in ((other, "someone-else"), (mine, CAPI_CLUSTER)):
        md = machine_deployment_object(name, CAPI_NAMESPACE, cluster=cluster, replicas=1, node_labels={"gpuctl.io/pool": name})
        assert (await admin.create(md)).status == 201
    # The provider sees both in creation order and reconciles one at a time:
    # once ours has a ready node, the other would have had its node too.
    await poll(lambda: _status(admin, mine), lambda s: s.get("readyReplicas") == 1, what="our MachineDeployment's node")
    assert await _pool_nodes(admin, other) == []
    assert await _status(admin, other) == {}
