"""A test-bed Cluster API provider: kwok GPU nodes follow the `spec.replicas`
of the MachineDeployments of one cluster (`spec.clusterName`) in one namespace.

For each such MachineDeployment it keeps that many Machines, each with a kwok
Node, and reports through the status subresource what CAPI's MachineDeployment
controller reports: `replicas` (Machines that exist), `readyReplicas` and
`availableReplicas` (their Nodes Ready), `upToDateReplicas`, `selector` (the
scale subresource's labelSelectorPath), `observedGeneration` and `phase`.

A node's shape comes from the cluster-autoscaler's scale-from-zero annotations
on the MachineDeployment (kubernetes/autoscaler
cluster-autoscaler/cloudprovider/clusterapi/README.md), which is how a real
cluster describes a node group's nodes:

    capacity.cluster-autoscaler.kubernetes.io/gpu-count: "8"
    capacity.cluster-autoscaler.kubernetes.io/gpu-type: nvidia.com/gpu
    capacity.cluster-autoscaler.kubernetes.io/labels: nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3,gpuctl.io/pool=h100
    capacity.cluster-autoscaler.kubernetes.io/taints: nvidia.com/gpu=present:NoSchedule

Machines carry the labels `cluster.x-k8s.io/cluster-name` and
`cluster.x-k8s.io/deployment-name` (plus the template's labels) and
`status.nodeRef`; Nodes carry CAPI's annotations `cluster.x-k8s.io/machine`,
`cluster.x-k8s.io/cluster-name`, `cluster.x-k8s.io/cluster-namespace`,
`cluster.x-k8s.io/owner-kind` and `cluster.x-k8s.io/owner-name`.

Scale-down removes Machines annotated `cluster.x-k8s.io/delete-machine` first,
then follows `spec.deletion.order`: `Oldest` → oldest first; `Newest` and
`Random` (the default) → newest first (CAPI's Random is a hash order; newest
first keeps tests deterministic).

What the real controllers do that this does not: no MachineSets (Machines are
owned by the MachineDeployment directly, so `owner-kind` says
MachineDeployment, there are no rollouts and every Machine is up to date); no
bootstrap or infrastructure objects; Machines go straight to `Running`, with no
conditions; a removed Machine's Node is deleted at once — real CAPI cordons and
drains it first, honouring PodDisruptionBudgets until `nodeDrainTimeout`; no
webhooks (unset replicas are read as CAPI's webhook defaults a new
MachineDeployment — the autoscaler min-size annotation, else 1 — without
writing it back); no MachineHealthChecks; the Cluster object is neither
required nor read. `spec.paused` is honoured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping
from typing import Any

from testbed.informer import changes
from testbed.kube import Response, RestClient
from testbed.nodes import PROVIDER_ID_PREFIX, gpu_node_object

log = logging.getLogger(__name__)

# Where the `capi_provider` fixture's provider works.
CAPI_CLUSTER = "gpu-cluster"
CAPI_NAMESPACE = "capi-clusters"

API_VERSION = "cluster.x-k8s.io/v1beta2"
CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
DEPLOYMENT_NAME_LABEL = "cluster.x-k8s.io/deployment-name"
DELETE_MACHINE_ANNOTATION = "cluster.x-k8s.io/delete-machine"
MACHINE_ANNOTATION = "cluster.x-k8s.io/machine"
MIN_SIZE_ANNOTATION = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"
MAX_SIZE_ANNOTATION = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"
CAPACITY = "capacity.cluster-autoscaler.kubernetes.io/"
# Orders Machines created within the same second (creationTimestamp has seconds).
_ORDINAL_ANNOTATION = "testbed.gpuctl.io/machine-ordinal"


def _pairs(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if item)


def _taints(text: str) -> list[dict[str, str]]:
    taints = []
    for item in filter(None, text.split(",")):
        key_value, effect = item.rsplit(":", 1)
        key, _, value = key_value.partition("=")
        taints.append({"key": key, "effect": effect, **({"value": value} if value else {})})
    return taints


def machine_deployment_object(
    name: str,
    namespace: str,
    *,
    cluster: str,
    replicas: int | None,
    gpus: int = 8,
    node_labels: Mapping[str, str] | None = None,
    taints: str = "",
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A valid v1beta2 MachineDeployment whose nodes have `gpus` nvidia.com/gpu and `node_labels`."""
    selector = {CLUSTER_NAME_LABEL: cluster, DEPLOYMENT_NAME_LABEL: name}
    spec: dict[str, Any] = {
        "clusterName": cluster,
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": selector},
            "spec": {
                "clusterName": cluster,
                "bootstrap": {"dataSecretName": f"{name}-bootstrap"},
                "infrastructureRef": {
                    "apiGroup": "infrastructure.cluster.x-k8s.io",
                    "kind": "KwokMachineTemplate",
                    "name": name,
                },
            },
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    shape = {
        f"{CAPACITY}gpu-type": "nvidia.com/gpu",
        f"{CAPACITY}gpu-count": str(gpus),
        f"{CAPACITY}labels": ",".join(f"{k}={v}" for k, v in (node_labels or {}).items()),
        **({f"{CAPACITY}taints": taints} if taints else {}),
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "MachineDeployment",
        "metadata": {"name": name, "namespace": namespace, "annotations": {**shape, **(annotations or {})}},
        "spec": spec,
    }


def desired_replicas(md: dict[str, Any]) -> int:
    replicas = md["spec"].get("replicas")
    if replicas is not None:
        return int(replicas)
    annotations = md["metadata"].get("annotations", {})
    if MIN_SIZE_ANNOTATION in annotations and MAX_SIZE_ANNOTATION in annotations:
        return int(annotations[MIN_SIZE_ANNOTATION])
    return 1


def _ordinal(machine: dict[str, Any]) -> int:
    return int(machine["metadata"].get("annotations", {}).get(_ORDINAL_ANNOTATION, "0"))


def _age_key(machine: dict[str, Any]) -> tuple[str, int]:
    return machine["metadata"].get("creationTimestamp", ""), _ordinal(machine)


def deletion_order(machines: list[dict[str, Any]], order: str) -> list[dict[str, Any]]:
    """Machines in the order scale-down removes them."""
    by_age = sorted(machines, key=_age_key, reverse=order != "Oldest")
    marked = [m for m in by_age if DELETE_MACHINE_ANNOTATION in m["metadata"].get("annotations", {})]
    return marked + [m for m in by_age if m not in marked]


def _node_name(machine: dict[str, Any]) -> str:
    # Nodes are named after their Machine; nodeRef says so once status is written.
    return str(machine.get("status", {}).get("nodeRef", {}).get("name", machine["metadata"]["name"]))


def _ready(node: dict[str, Any] | None) -> bool:
    conditions = (node or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class CapiProvider:
    """Run with `await start()` / `await stop()`; reconciles one MachineDeployment at a time."""

    def __init__(self, client: RestClient, *, cluster: str, namespace: str) -> None:
        self.client = client
        self.cluster = cluster
        self.namespace = namespace
        self._dirty: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow("MachineDeployment", self.namespace), name="capi/mds"),
            asyncio.create_task(self._follow("Machine", self.namespace), name="capi/machines"),
            asyncio.create_task(self._follow("Node", None), name="capi/nodes"),
            asyncio.create_task(self._reconcile_loop(), name="capi/reconcile"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- which MachineDeployment an event concerns -------------------------------------
    def _owner(self, kind: str, obj: dict[str, Any]) -> str | None:
        meta = obj["metadata"]
        if kind == "MachineDeployment":
            return meta["name"] if obj["spec"].get("clusterName") == self.cluster else None
        if kind == "Machine":
            labels = meta.get("labels", {})
            return labels.get(DEPLOYMENT_NAME_LABEL) if labels.get(CLUSTER_NAME_LABEL) == self.cluster else None
        annotations = meta.get("annotations", {})
        if annotations.get("cluster.x-k8s.io/cluster-name") == self.cluster:
            if annotations.get("cluster.x-k8s.io/cluster-namespace") == self.namespace:
                return annotations.get("cluster.x-k8s.io/owner-name")
        return None

    async def _follow(self, kind: str, namespace: str | None) -> None:
        async for change in changes(self.client, kind, namespace):
            owner = self._owner(kind, change.obj)
            if owner is not None:
                self._dirty.put_nowait(owner)

    async def _reconcile_loop(self) -> None:
        while True:
            name = await self._dirty.get()
            try:
                await self.reconcile(name)
            except Exception:
                log.exception("reconciling MachineDeployment %s/%s", self.namespace, name)

    # -- reconciling ---------------------------------------------------------------
    async def reconcile(self, name: str) -> None:
        """Make Machines and Nodes match the MachineDeployment's replicas, then report status."""
        response = await self.client.get("MachineDeployment", name, self.namespace)
        machines = await self._machines(name)
        if response.status == 404:
            for machine in machines:
                await self._remove(machine)
            return
        md = response.body
        if md["spec"].get("clusterName") != self.cluster or md["spec"].get("paused"):
            return
        want = desired_replicas(md)
        if len(machines) < want:
            next_ordinal = max(map(_ordinal, machines), default=0) + 1
            for ordinal in range(next_ordinal, next_ordinal + want - len(machines)):
                machines.append(await self._add(md, ordinal))
        elif len(machines) > want:
            order = md["spec"].get("deletion", {}).get("order", "Random")
            victims = deletion_order(machines, order)[: len(machines) - want]
            for machine in victims:
                await self._remove(machine)
            machines = [m for m in machines if m not in victims]
        await self._report(md, machines)

    async def _machines(self, md_name: str) -> list[dict[str, Any]]:
        selector = f"{CLUSTER_NAME_LABEL}={self.cluster},{DEPLOYMENT_NAME_LABEL}={md_name}"
        response = await self.client.list("Machine", self.namespace, labelSelector=selector)
        return list(response.body.get("items", []))

    async def _add(self, md: dict[str, Any], ordinal: int) -> dict[str, Any]:
        md_name = md["metadata"]["name"]
        name = f"{md_name}-{ordinal}"
        template = md["spec"]["template"]
        machine = {
            "apiVersion": API_VERSION,
            "kind": "Machine",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {
                    **template.get("metadata", {}).get("labels", {}),
                    CLUSTER_NAME_LABEL: self.cluster,
                    DEPLOYMENT_NAME_LABEL: md_name,
                },
                "annotations": {_ORDINAL_ANNOTATION: str(ordinal)},
                "ownerReferences": [
                    {
                        "apiVersion": API_VERSION,
                        "kind": "MachineDeployment",
                        "name": md_name,
                        "uid": md["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {**template["spec"], "providerID": f"{PROVIDER_ID_PREFIX}{name}"},
        }
        await self._ok(self.client.create(machine), f"creating Machine {name}", also=(409,))
        await self._ok(self.client.create(self._node(md, name)), f"creating Node {name}", also=(409,))
        status = {"status": {"nodeRef": {"name": name}, "phase": "Running"}}
        return await self._ok(
            self.client.patch("Machine", name, status, self.namespace, subresource="status"), f"status of Machine {name}"
        )

    def _node(self, md: dict[str, Any], name: str) -> dict[str, Any]:
        annotations = md["metadata"].get("annotations", {})
        gpu_type = annotations.get(f"{CAPACITY}gpu-type", "nvidia.com/gpu")
        return gpu_node_object(
            name,
            labels=_pairs(annotations.get(f"{CAPACITY}labels", "")),
            resources={gpu_type: int(annotations.get(f"{CAPACITY}gpu-count", "0"))},
            taints=_taints(annotations.get(f"{CAPACITY}taints", "")),
            annotations={
                MACHINE_ANNOTATION: name,
                "cluster.x-k8s.io/cluster-name": self.cluster,
                "cluster.x-k8s.io/cluster-namespace": self.namespace,
                "cluster.x-k8s.io/owner-kind": "MachineDeployment",
                "cluster.x-k8s.io/owner-name": md["metadata"]["name"],
            },
        )

    async def _remove(self, machine: dict[str, Any]) -> None:
        name, node = machine["metadata"]["name"], _node_name(machine)
        await self._ok(self.client.delete("Node", node), f"deleting Node {node}", also=(404,))
        await self._ok(self.client.delete("Machine", name, self.namespace), f"deleting Machine {name}", also=(404,))

    async def _report(self, md: dict[str, Any], machines: list[dict[str, Any]]) -> None:
        """Status as CAPI reports it; Machines already match replicas, so only readiness can lag."""
        nodes = await self.client.list("Node")
        by_name = {n["metadata"]["name"]: n for n in nodes.body.get("items", [])}
        ready = sum(_ready(by_name.get(_node_name(m))) for m in machines)
        name = md["metadata"]["name"]
        status = {
            "selector": f"{CLUSTER_NAME_LABEL}={self.cluster},{DEPLOYMENT_NAME_LABEL}={name}",
            "replicas": len(machines),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "upToDateReplicas": len(machines),
            "observedGeneration": md["metadata"].get("generation", 1),
            "phase": "ScalingUp" if ready < len(machines) else "Running",
        }
        if md.get("status", {}) | status != md.get("status", {}):
            patch = self.client.patch("MachineDeployment", name, {"status": status}, self.namespace, subresource="status")
            await self._ok(patch, f"status of {name}")

    @staticmethod
    async def _ok(request: Awaitable[Response], what: str, *, also: tuple[int, ...] = ()) -> dict[str, Any]:
        response = await request
        if response.status >= 300 and response.status not in also:
            raise RuntimeError(f"{what}: {response.status} {response.body.get('message')}")
        return response.body
