"""The fleet as Kubernetes objects: what the simulated API serves for pods, nodes, namespaces,
ResourceQuotas, PodDisruptionBudgets, Karpenter NodePools and the MIG manager's ConfigMap.

Each object is rendered from the world (gpuctl.sim.world) when it is read, so
it is never out of step with what the demo source shows; its resourceVersion
is the world's revision of its last change. A write goes the other way
(`write_back`): the fields a playbook may change there (a pod's annotations, a
node's labels and cordon, a quota's spec.hard, a NodePool's spec.limits) are
handed to the world; a change to any other field is refused (422), because
the simulation could not follow it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from gpuctl.sim.api.status import JSON, invalid, not_found
from gpuctl.sim.fleet import SimNamespace, SimNode, SimPdb, SimPod, object_uid
from gpuctl.sim.world import (
    NAMESPACES,
    NODEPOOLS,
    NODES,
    OPERATOR_NAMESPACE,
    PDBS,
    PODS,
    QUOTA_CREATED_T,
    QUOTA_NAME,
    QUOTAS,
    SimWorld,
    budget,
)
from gpuctl.sources.kube.trim import parse_quantity
from gpuctl.state.resources import GPU

CONFIGMAPS = "configmaps"
MIG_CONFIG_MAP = "default-mig-parted-config"
FLEET_RESOURCES = frozenset({PODS, NODES, NAMESPACES, QUOTAS, PDBS, NODEPOOLS})


class FleetObjects:
    """Renders and writes the world's objects."""

    def __init__(self, world: SimWorld) -> None:
        self.world = world

    def _time(self, t: float) -> str:
        return (self.world.started_at + timedelta(seconds=t)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _meta(self, resource: str, key: str, created: float, **extra: Any) -> JSON:
        namespace, _, name = key.rpartition("/")
        meta: JSON = {"name": name, "uid": object_uid(resource, key, created), "resourceVersion": self.world.revisions.version(resource, key),
                      "creationTimestamp": self._time(created), "generation": 1}  # fmt: skip
        if namespace:
            meta["namespace"] = namespace
        return meta | extra

    # -- reading -------------------------------------------------------------------------------
    def get(self, resource: str, namespace: str | None, name: str) -> JSON:
        world = self.world
        found: JSON | None = None
        if resource == PODS:
            found = self.pod(pod) if (pod := world.pod(f"{namespace}/{name}")) is not None else None
        elif resource == NODES:
            found = self.node(node) if (node := world.node(name)) is not None else None
        elif resource == NAMESPACES:
            found = self.namespace(ns) if (ns := world.namespace(name)) is not None else None
        elif resource == QUOTAS:
            ns = world.namespace(str(namespace))
            found = self.quota(ns) if ns is not None and ns.quota_hard and name == QUOTA_NAME else None
        else:  # few of them
            found = next((obj for obj in self.items(resource, namespace) if obj["metadata"]["name"] == name), None)
        if found is None:
            raise not_found(resource, name)
        return found

    def items(self, resource: str, namespace: str | None) -> Iterator[JSON]:
        fleet = self.world.fleet
        if resource == PODS:
            yield from (self.pod(p) for p in fleet.pods if namespace in (None, p.namespace))
        elif resource == NODES:
            yield from (self.node(n) for n in fleet.nodes)
        elif resource == NAMESPACES:
            yield from (self.namespace(ns) for ns in fleet.namespaces)
        elif resource == QUOTAS:
            yield from (self.quota(ns) for ns in fleet.namespaces if ns.quota_hard and namespace in (None, ns.name))
        elif resource == PDBS:
            yield from (self.pdb(pdb) for pdb in fleet.pdbs if namespace in (None, pdb.namespace))
        elif resource == NODEPOOLS:
            yield from (self.node_pool(pool) for pool in sorted({n.pool for n in fleet.nodes} | set(self.world.pool_limits)))

    def pod(self, pod: SimPod) -> JSON:
        meta = self._meta(PODS, pod.key, pod.created_t, labels=dict(pod.labels), annotations=dict(pod.annotations))
        if pod.ref_kind and pod.ref_name:
            api = "apps/v1" if pod.ref_kind in ("ReplicaSet", "StatefulSet") else "batch/v1"
            meta["ownerReferences"] = [{"apiVersion": api, "kind": pod.ref_kind, "name": pod.ref_name, "controller": True,
                                        "uid": object_uid(pod.ref_kind, f"{pod.namespace}/{pod.ref_name}")}]  # fmt: skip
        requests = {resource: str(count) for resource, count in pod.gpu_requests.items()}
        spec: JSON = {
            "containers": [{"name": pod.container, "image": f"demo/{pod.container}", "resources": {"requests": requests, "limits": requests}}],
            "nodeSelector": dict(pod.node_selector),
            "tolerations": [{"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect} for t in pod.tolerations],
        }  # fmt: skip
        if pod.node:
            spec["nodeName"] = pod.node
        if pod.priority_class:
            spec["priorityClassName"] = pod.priority_class
        ready = "True" if pod.phase == "Running" else "False"
        status = {
            "phase": pod.phase,
            "conditions": [
                {"type": "Ready", "status": ready},
                {"type": "PodScheduled", "status": "True" if pod.node else "False"},
            ],
        }
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}

    def node(self, node: SimNode) -> JSON:
        meta = self._meta(NODES, node.name, node.created_t, labels=dict(node.labels), annotations={})
        resources = {"cpu": "96", "memory": "1536Gi", "pods": "110", **{k: str(v) for k, v in node.resources.items()}}
        spec: JSON = {"providerID": f"demo://{node.pool}/{node.name}",
                      "taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in node.taints]}  # fmt: skip
        if node.unschedulable:
            spec["unschedulable"] = True
        status = {"capacity": resources, "allocatable": dict(resources),
                  "conditions": [{"type": "Ready", "status": "True" if node.ready else "False"}]}  # fmt: skip
        return {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec, "status": status}

    def namespace(self, ns: SimNamespace) -> JSON:
        labels = {"kubernetes.io/metadata.name": ns.name, "team": ns.team}
        meta = self._meta(NAMESPACES, ns.name, QUOTA_CREATED_T, labels=labels)
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta, "status": {"phase": "Active"}}

    def quota(self, ns: SimNamespace) -> JSON:
        hard = {k: str(v) for k, v in ns.quota_hard.items()}
        used = self.world.fleet.quota_used(ns.name)
        meta = self._meta(QUOTAS, f"{ns.name}/{QUOTA_NAME}", QUOTA_CREATED_T)
        status = {"hard": dict(hard), "used": {k: str(used.get(k, 0)) for k in hard}}
        return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta, "spec": {"hard": hard}, "status": status}

    def pdb(self, pdb: SimPdb) -> JSON:
        counted = budget(pdb, self.world.fleet.selected_by(pdb))
        meta = self._meta(PDBS, f"{pdb.namespace}/{pdb.name}", QUOTA_CREATED_T)
        spec: JSON = {"selector": {"matchLabels": dict(pdb.match_labels)}}
        if pdb.min_available is not None:
            spec["minAvailable"] = pdb.min_available
        if pdb.max_unavailable is not None:
            spec["maxUnavailable"] = pdb.max_unavailable
        status = {"observedGeneration": 1, "disruptionsAllowed": counted.allowed, "currentHealthy": counted.healthy,
                  "desiredHealthy": counted.desired, "expectedPods": counted.expected}  # fmt: skip
        return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta, "spec": spec, "status": status}

    def node_pool(self, pool: str) -> JSON:
        nodes = [n for n in self.world.fleet.nodes if n.pool == pool]
        meta = self._meta(NODEPOOLS, pool, -60 * 86400.0)
        limit = self.world.pool_limits.get(pool)
        spec: JSON = {
            "template": {"metadata": {"labels": {"gpuctl.io/demo": "true"}},
                         "spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": pool},
                                  "requirements": []}},
            "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "1h"},
        }  # fmt: skip
        if limit is not None:
            spec["limits"] = {GPU: str(limit)}
        status = {"resources": {GPU: str(self.world.pool_gpus(pool)), "nodes": str(len(nodes))}}
        return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": meta, "spec": spec, "status": status}

    def mig_config_map(self) -> JSON:
        meta = self._meta(CONFIGMAPS, f"{OPERATOR_NAMESPACE}/{MIG_CONFIG_MAP}", -60 * 86400.0)
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"config.yaml": self.world.mig_parted_config}}

    # -- writing -------------------------------------------------------------------------------
    def write_back(self, resource: str, before: JSON, after: JSON, *, dry_run: bool) -> None:
        """Hand what a write changed to the world; refuse (422) a change the simulation cannot follow."""
        meta = after.get("metadata") or {}
        name, namespace = str(meta.get("name")), meta.get("namespace")
        allowed = _WRITABLE.get(resource, ())
        if _without(before, allowed) != _without(after, allowed):
            changeable = ", ".join(".".join(path) for path in allowed) or "nothing"
            raise invalid(resource, name, f"the demo's simulated cluster can change only {changeable} of a {before.get('kind')}")
        if dry_run or before == after:
            return
        if resource == PODS:
            self.world.set_pod_annotations(f"{namespace}/{name}", _strings(meta.get("annotations"), resource, name))
        elif resource == NODES:
            unschedulable = bool((after.get("spec") or {}).get("unschedulable"))
            self.world.set_node(name, labels=_strings(meta.get("labels"), resource, name), unschedulable=unschedulable)
        elif resource == QUOTAS:
            hard = (after.get("spec") or {}).get("hard") or {}
            self.world.set_quota(str(namespace), {k: _count(v, resource, name, f"spec.hard.{k}") for k, v in hard.items()})
        elif resource == NODEPOOLS:
            limit = ((after.get("spec") or {}).get("limits") or {}).get(GPU)
            self.world.set_pool_limit(name, None if limit is None else _count(limit, resource, name, f"spec.limits.{GPU}"))


# What a playbook may change on each kind (everything else is the fleet's own).
_WRITABLE: dict[str, tuple[tuple[str, ...], ...]] = {
    PODS: (("metadata", "annotations"),),
    NODES: (("metadata", "labels"), ("spec", "unschedulable")),
    QUOTAS: (("spec", "hard"),),
    NODEPOOLS: (("spec", "limits"),),
}
_SERVER_SET = (("metadata", "resourceVersion"), ("metadata", "managedFields"))


def _without(obj: JSON, paths: tuple[tuple[str, ...], ...]) -> JSON:
    """`obj` without the fields at `paths` (two levels deep) and the ones the server sets."""
    trimmed = {k: dict(v) if isinstance(v, dict) else v for k, v in obj.items()}
    for outer, inner in (*paths, *_SERVER_SET):
        part = trimmed.get(outer)
        if isinstance(part, dict):
            part.pop(inner, None)
            if not part:
                trimmed.pop(outer)
    return trimmed


def _strings(values: Any, resource: str, name: str) -> dict[str, str]:
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise invalid(resource, name, "labels and annotations must be strings")
    return dict(values)


def _count(value: Any, resource: str, name: str, field: str) -> int:
    try:
        number = parse_quantity(str(value))
    except ValueError:
        raise invalid(resource, name, f"{field}: {value!r} is not a quantity") from None
    if number != int(number) or number < 0:
        raise invalid(resource, name, f"{field}: {value!r} must be a whole number of GPUs in the demo")
    return int(number)
