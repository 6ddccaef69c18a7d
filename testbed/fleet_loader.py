"""Turn a simulated `Fleet` into real objects in the test bed's API server.

Order matters and mirrors a real cluster's history: priority classes and
namespaces, then quotas (admission refuses quota'd pods until the quota
controller has counted), then nodes (kwok makes them Ready), then pods — bound
to their node when the fleet placed them, left to the scheduler when pending —
and last the controllers that own them, which *adopt* the existing pods
(creating a ReplicaSet first would race it into making pods of its own).
PodDisruptionBudgets come with the pods they protect.

The whole chain is real: a Deployment adopts its pods' ReplicaSet (the same
template, so the deployment controller takes it as its current ReplicaSet and
makes none of its own); a CronJob, suspended so it never runs, is created
before its Job, which names it as its controller (what the cronjob
controller would have written).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from gpuctl.model import Taint
from gpuctl.sim.fleet import Fleet, SimNode, SimPod
from testbed.kube import RestClient, apply_objects
from testbed.nodes import gpu_node_object
from testbed.waiting import poll

PRIORITY_VALUES = {"batch-low": 100, "training-standard": 10_000, "inference-critical": 1_000_000}
IMAGE = "registry.invalid/gpuctl-testbed/workload:1"


def _taint(taint: Taint) -> dict[str, str]:
    return {k: v for k, v in {"key": taint.key, "value": taint.value, "effect": taint.effect}.items() if v is not None}


def _toleration(taint: Taint) -> dict[str, str]:
    return {"operator": "Equal", **_taint(taint)}


def node_object(node: SimNode) -> dict[str, Any]:
    return gpu_node_object(
        node.name, labels=node.labels, resources=node.resources, taints=[_taint(t) for t in node.taints]
    )


def _container(pod: SimPod) -> dict[str, Any]:
    return {
        "name": pod.container,
        "image": IMAGE,
        "resources": {"limits": {resource: str(count) for resource, count in pod.gpu_requests.items()}},
    }


def pod_object(pod: SimPod) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [_container(pod)],
        "nodeSelector": dict(pod.node_selector),
        "tolerations": [_toleration(t) for t in pod.tolerations],
        "terminationGracePeriodSeconds": 0,
    }
    if pod.node:
        spec["nodeName"] = pod.node
    if pod.priority_class:
        spec["priorityClassName"] = pod.priority_class
    if pod.ref_kind == "StatefulSet":
        # The identity a StatefulSet checks before it adopts a pod.
        spec["hostname"] = pod.name
        spec["subdomain"] = pod.ref_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": dict(pod.labels)},
        "spec": spec,
    }


def _owner_selector(pod: SimPod) -> dict[str, str]:
    if pod.ref_kind == "Job":
        return {"job-name": pod.labels["job-name"]}
    if pod.ref_kind == "ReplicaSet":
        return {"app": pod.labels["app"], "pod-template-hash": pod.labels["pod-template-hash"]}
    return {"app": pod.labels["app"]}


def owner_objects(pods: Iterable[SimPod], cronjob_uids: dict[tuple[str, str], str] | None = None) -> list[dict[str, Any]]:
    """One controller per owner, sized to exactly the pods it adopts.

    `cronjob_uids`: (namespace, name) -> uid of the CronJobs made by `top_objects`, for their Jobs' ownerReferences."""
    groups: dict[tuple[str, str, str], list[SimPod]] = defaultdict(list)
    for pod in pods:
        if pod.ref_kind and pod.ref_name:
            groups[(pod.namespace, pod.ref_kind, pod.ref_name)].append(pod)
    objects = []
    for (namespace, kind, name), members in sorted(groups.items()):
        first = members[0]
        selector = _owner_selector(first)
        template = {
            "metadata": {"labels": dict(first.labels)},
            "spec": {k: v for k, v in pod_object(first)["spec"].items() if k not in ("nodeName", "hostname", "subdomain")},
        }
        meta = {"name": name, "namespace": namespace}
        if kind == "ReplicaSet":
            template["metadata"]["labels"] = selector | {"app": first.labels["app"]}
            spec = {"replicas": len(members), "selector": {"matchLabels": selector}, "template": template}
            meta["labels"] = dict(selector)  # a Deployment adopts the ReplicaSets its selector matches
            objects.append({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta, "spec": spec})
        elif kind == "Job":
            if first.owner_kind == "CronJob" and first.owner_name and cronjob_uids:
                uid = cronjob_uids[(namespace, first.owner_name)]
                meta["ownerReferences"] = [_controller_ref("batch/v1", "CronJob", first.owner_name, uid)]
            template["metadata"]["labels"] = selector
            template["spec"]["restartPolicy"] = "Never"
            spec = {
                "parallelism": len(members),
                "completions": len(members),
                "manualSelector": True,
                "selector": {"matchLabels": selector},
                "template": template,
            }
            objects.append({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec})
        elif kind == "StatefulSet":
            template["metadata"]["labels"] = selector
            spec = {
                "replicas": len(members),
                "serviceName": name,
                "podManagementPolicy": "Parallel",
                "updateStrategy": {"type": "OnDelete"},
                "selector": {"matchLabels": selector},
                "template": template,
            }
            objects.append({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": spec})
    return objects


def _controller_ref(api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True, "blockOwnerDeletion": True}


def top_objects(pods: Sequence[SimPod], kind: str) -> list[dict[str, Any]]:
    """The Deployments (kind "Deployment") or the suspended CronJobs (kind "CronJob") above the pods' controllers."""
    firsts: dict[tuple[str, str], SimPod] = {}
    for pod in pods:
        if pod.owner_kind == kind and pod.owner_name and pod.ref_kind != kind:
            firsts.setdefault((pod.namespace, pod.owner_name), pod)
    objects = []
    for (namespace, name), first in sorted(firsts.items()):
        meta = {"name": name, "namespace": namespace}
        rs = next(o for o in owner_objects([first]) if o["kind"] in ("ReplicaSet", "Job"))
        template = rs["spec"]["template"]
        if kind == "Deployment":
            # Equal to the ReplicaSet's template but for pod-template-hash: the controller adopts, makes none.
            labels = {"app": first.labels["app"]}
            template = {**template, "metadata": {"labels": labels}}
            replicas = sum(1 for p in pods if p.namespace == namespace and p.owner_kind == kind and p.owner_name == name)
            spec = {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template}
            objects.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec})
        else:
            template = {**template, "metadata": {"labels": {"app": name}}}
            spec = {"schedule": "0 0 1 1 *", "suspend": True, "jobTemplate": {"spec": {"template": template}}}
            objects.append({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta, "spec": spec})
    return objects


async def _wait_quotas_counted(client: RestClient, namespaces: list[str]) -> None:
    for namespace in namespaces:

        async def status() -> dict[str, Any]:
            return (await client.get("ResourceQuota", "gpu-quota", namespace)).body.get("status", {})

        await poll(status, lambda s: "hard" in s, what=f"the quota controller to count {namespace}/gpu-quota")


async def ready_nodes(client: RestClient) -> set[str]:
    nodes = (await client.list("Node")).body.get("items", [])
    return {
        n["metadata"]["name"]
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
    }


async def wait_nodes_ready(client: RestClient, names: set[str], timeout_s: float = 60) -> None:
    await poll(lambda: ready_nodes(client), lambda ready: names <= ready, timeout_s=timeout_s, what=f"kwok to make {len(names)} nodes Ready")


async def load_fleet(client: RestClient, fleet: Fleet) -> None:
    priority_classes = [
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": PRIORITY_VALUES.get(name, 1000),
        }
        for name in fleet.priority_classes
    ]
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns.name, "labels": {"team": ns.team}}}
        for ns in fleet.namespaces
    ]
    quotas = [
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "gpu-quota", "namespace": ns.name},
            "spec": {"hard": {key: str(value) for key, value in ns.quota_hard.items()}},
        }
        for ns in fleet.namespaces
        if ns.quota_hard
    ]
    await apply_objects(client, [*priority_classes, *namespaces, *quotas])
    await _wait_quotas_counted(client, [q["metadata"]["namespace"] for q in quotas])
    await apply_objects(client, [node_object(n) for n in fleet.nodes])
    await wait_nodes_ready(client, {n.name for n in fleet.nodes})
    pdbs = [
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": pdb.name, "namespace": pdb.namespace},
            "spec": {
                "selector": {"matchLabels": dict(pdb.match_labels)},
                **({"minAvailable": pdb.min_available} if pdb.min_available is not None else {}),
                **({"maxUnavailable": pdb.max_unavailable} if pdb.max_unavailable is not None else {}),
            },
        }
        for pdb in fleet.pdbs
    ]
    await apply_objects(client, [*pdbs, *(pod_object(p) for p in fleet.pods)])
    cronjobs = top_objects(fleet.pods, "CronJob")
    await apply_objects(client, cronjobs)
    uids = {}
    for cronjob in cronjobs:
        meta = cronjob["metadata"]
        made = await client.get("CronJob", meta["name"], meta["namespace"])
        uids[(meta["namespace"], meta["name"])] = made.body["metadata"]["uid"]
    await apply_objects(client, owner_objects(fleet.pods, uids))
    await apply_objects(client, top_objects(fleet.pods, "Deployment"))
