"""A small REST client for setting up and poking at the test bed's API server.

The product talks to Kubernetes through its own KubeConnection (a kubeconfig
loader over aiohttp); the test bed uses this thin aiohttp client, independent of
the product's, so that loading thousands of objects is fast and a test can act
as any identity (each has its own client certificate).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import yaml

from testbed.waiting import poll

if TYPE_CHECKING:
    from testbed.controlplane import ControlPlane, Identity

# kind -> (API prefix, plural, namespaced)
KINDS: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("/api/v1", "namespaces", False),
    "Node": ("/api/v1", "nodes", False),
    "Pod": ("/api/v1", "pods", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "ResourceQuota": ("/api/v1", "resourcequotas", True),
    "LimitRange": ("/api/v1", "limitranges", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Secret": ("/api/v1", "secrets", True),
    "Service": ("/api/v1", "services", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "ReplicaSet": ("/apis/apps/v1", "replicasets", True),
    "StatefulSet": ("/apis/apps/v1", "statefulsets", True),
    "Job": ("/apis/batch/v1", "jobs", True),
    "CronJob": ("/apis/batch/v1", "cronjobs", True),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets", True),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "PriorityClass": ("/apis/scheduling.k8s.io/v1", "priorityclasses", False),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases", True),
    "CustomResourceDefinition": ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    # Custom resources of the upstream CRDs the test bed installs (testbed/crds.py).
    "Cluster": ("/apis/cluster.x-k8s.io/v1beta2", "clusters", True),
    "MachineDeployment": ("/apis/cluster.x-k8s.io/v1beta2", "machinedeployments", True),
    "MachineSet": ("/apis/cluster.x-k8s.io/v1beta2", "machinesets", True),
    "Machine": ("/apis/cluster.x-k8s.io/v1beta2", "machines", True),
    "ClusterQueue": ("/apis/kueue.x-k8s.io/v1beta2", "clusterqueues", False),
    "LocalQueue": ("/apis/kueue.x-k8s.io/v1beta2", "localqueues", True),
    "ResourceFlavor": ("/apis/kueue.x-k8s.io/v1beta2", "resourceflavors", False),
    "NodePool": ("/apis/karpenter.sh/v1", "nodepools", False),
    "NodeClaim": ("/apis/karpenter.sh/v1", "nodeclaims", False),
    "KWOKNodeClass": ("/apis/karpenter.kwok.sh/v1alpha1", "kwoknodeclasses", False),
}


def collection_path(kind: str, namespace: str | None = None) -> str:
    prefix, plural, namespaced = KINDS[kind]
    if namespaced and namespace:
        return f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{prefix}/{plural}"


def object_path(kind: str, name: str, namespace: str | None = None) -> str:
    return f"{collection_path(kind, namespace)}/{name}"


@dataclass
class Response:
    status: int
    body: dict[str, Any]


class RestClient:
    def __init__(self, server: str, ssl_context: ssl.SSLContext, *, concurrency: int = 32) -> None:
        self.server = server
        self._ssl = ssl_context
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._limit = asyncio.Semaphore(concurrency)

    async def close(self) -> None:
        await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | list[Any] | None = None,
        *,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        async with self._limit:
            async with self._session.request(
                method,
                f"{self.server}{path}",
                json=body,
                params=params,
                ssl=self._ssl,
                headers={**({"Content-Type": content_type} if body is not None else {}), **(headers or {})},
            ) as response:
                payload = await response.json(content_type=None) if response.content_length != 0 else {}
                return Response(response.status, payload or {})

    async def create(self, obj: Mapping[str, Any]) -> Response:
        meta = obj["metadata"]
        return await self.request("POST", collection_path(obj["kind"], meta.get("namespace")), obj)

    async def get(self, kind: str, name: str, namespace: str | None = None) -> Response:
        return await self.request("GET", object_path(kind, name, namespace))

    async def list(
        self, kind: str, namespace: str | None = None, *, headers: Mapping[str, str] | None = None, **params: str
    ) -> Response:
        return await self.request("GET", collection_path(kind, namespace), params=params or None, headers=headers)

    async def delete(self, kind: str, name: str, namespace: str | None = None, *, grace_s: int | None = None) -> Response:
        body = None if grace_s is None else {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": grace_s}
        return await self.request("DELETE", object_path(kind, name, namespace), body)

    async def patch(self, kind: str, name: str, patch: Mapping[str, Any], namespace: str | None = None, *, subresource: str = "") -> Response:
        path = object_path(kind, name, namespace) + (f"/{subresource}" if subresource else "")
        return await self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    async def watch(
        self, kind: str, namespace: str | None = None, *, resource_version: str, timeout_s: int = 60, **params: str
    ) -> AsyncIterator[dict[str, Any]]:
        """One watch request's events (`{"type", "object"}`), from `resource_version`
        until the server closes the stream after about `timeout_s`. A refused
        watch yields one ERROR event carrying the Status."""
        query = {
            **params,
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_s),
        }
        # Not under the request semaphore: a watch holds its connection for minutes.
        async with self._session.get(
            f"{self.server}{collection_path(kind, namespace)}",
            params=query,
            ssl=self._ssl,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_s + 30),
        ) as response:
            if response.status != 200:
                yield {"type": "ERROR", "object": await response.json(content_type=None)}
                return
            pending = b""
            async for chunk in response.content.iter_any():
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)

    async def evict(self, name: str, namespace: str, *, dry_run: bool = False) -> Response:
        """POST an Eviction; `dry_run`: the server checks the budgets and deletes nothing."""
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
        params = {"dryRun": "All"} if dry_run else None
        return await self.request("POST", object_path("Pod", name, namespace) + "/eviction", body, params=params)


class ApplyFailed(RuntimeError):
    pass


# Containers before contents: namespaces and cluster-wide objects, then what
# admission consults (quotas, roles), then everything else.
_APPLY_RANK = {
    "Namespace": 0, "PriorityClass": 0, "ClusterRole": 0, "CustomResourceDefinition": 0,
    "ResourceQuota": 1, "LimitRange": 1, "Role": 1, "ServiceAccount": 1,
}  # fmt: skip


async def apply_objects(client: RestClient, objects: Iterable[Mapping[str, Any]]) -> None:
    """Create each object, in order of kind so namespaces exist before their contents.

    An object that already exists is left as it is (idempotent re-runs)."""
    by_rank: dict[int, list[Mapping[str, Any]]] = {}
    for obj in objects:
        by_rank.setdefault(_APPLY_RANK.get(obj["kind"], 2), []).append(obj)
    for rank in sorted(by_rank):
        responses = await asyncio.gather(*(client.create(obj) for obj in by_rank[rank]))
        failures = [
            f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}: {r.status} {r.body.get('message')}"
            for obj, r in zip(by_rank[rank], responses)
            if r.status not in (200, 201, 409)
        ]
        if failures:
            raise ApplyFailed("; ".join(failures[:5]))


def load_manifests(*paths: Path) -> list[dict[str, Any]]:
    """The objects in YAML files (several documents each, empty ones skipped)."""
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]


async def install_crds(client: RestClient, *paths: Path) -> list[str]:
    """Create the CustomResourceDefinitions in these files and wait until the API server serves them."""
    crds = [obj for obj in load_manifests(*paths) if obj["kind"] == "CustomResourceDefinition"]
    await apply_objects(client, crds)
    names = [crd["metadata"]["name"] for crd in crds]

    async def established(name: str) -> bool:
        conditions = ((await client.get("CustomResourceDefinition", name)).body.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    for name in names:
        await poll(lambda: established(name), what=f"CRD {name} to be established")
    return names


async def budget_settled(client: RestClient, name: str, namespace: str, *, allowed: int | None = None) -> dict[str, Any]:
    """A PodDisruptionBudget once the disruption controller has observed its spec (and, if given, allows that many)."""

    async def read() -> dict[str, Any]:
        return (await client.get("PodDisruptionBudget", name, namespace)).body

    def settled(pdb: dict[str, Any]) -> bool:
        status = pdb.get("status") or {}
        observed = status.get("observedGeneration") == pdb["metadata"]["generation"]
        return observed and (allowed is None or status.get("disruptionsAllowed") == allowed)

    return await poll(read, settled, what=f"the disruption controller to settle {namespace}/{name} (allowing {allowed})")


@asynccontextmanager
async def client_for(plane: ControlPlane, identity: Identity | None = None) -> AsyncIterator[RestClient]:
    from testbed.controlplane import ADMIN

    who = identity or ADMIN
    context = ssl.create_default_context(cafile=str(plane.ca.pair.cert))
    pair = plane.client_cert(who)
    context.load_cert_chain(str(pair.cert), str(pair.key))
    client = RestClient(plane.server, context)
    try:
        yield client
    finally:
        await client.close()
