"""scale-pool's reads (as gpuctl's own identity): the provider object behind a
pool (see pool_rules for the mapping), a MachineDeployment's Machines (a
node's GPU pods: gpuctl.playbooks.node_pods)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpuctl.errors import NotInstalled
from gpuctl.model import Snapshot
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.discovery import CLUSTER_API, KARPENTER, served_version
from gpuctl.playbooks.kubeapi import JSON
from gpuctl.playbooks.pool_rules import (
    CLUSTER_NAME_LABEL,
    DEPLOYMENT_NAME_LABEL,
    Provider,
    by_name,
    choose_provider,
    machine_of,
    providers_of,
)


@dataclass(slots=True)
class Resolution:
    provider: Provider | None
    blocked: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


async def optional_version(reader: ActingClient, group: str) -> str | None:
    """The served version of a provider's API group, None when the cluster does not have that provider."""
    try:
        return await served_version(reader, group)
    except NotInstalled:
        return None


async def resolve_pool(pool: str, snapshot: Snapshot, reader: ActingClient) -> Resolution:
    """The MachineDeployment or NodePool that sizes `pool`: through its nodes, else by its name."""
    capi = await optional_version(reader, CLUSTER_API)
    karpenter = await optional_version(reader, KARPENTER)
    names = {node.name for node in snapshot.nodes if node.pool == pool}
    if names:
        nodes = [n for n in (await reader.list_objects("", "v1", "nodes")).items if n["metadata"]["name"] in names]
        deployments: dict[tuple[str, str], str] = {}
        if capi is not None:
            for namespace in sorted({m[0] for n in nodes if (m := machine_of(n)) is not None}):
                machines = await reader.list_objects(CLUSTER_API, capi, "machines", namespace=namespace)
                for machine in machines.items:
                    meta = machine["metadata"]
                    if md := (meta.get("labels") or {}).get(DEPLOYMENT_NAME_LABEL):
                        deployments[(namespace, meta["name"])] = md
        provider, blocked, warnings = choose_provider(pool, providers_of(nodes, deployments))
        if provider is not None or blocked:
            return Resolution(provider, blocked, warnings)
    node_pools: list[str] = []
    if karpenter is not None:
        node_pools = [np["metadata"]["name"] for np in (await reader.list_objects(KARPENTER, karpenter, "nodepools")).items]
    machine_deployments: list[Provider] = []
    if capi is not None:
        listed = await reader.list_objects(CLUSTER_API, capi, "machinedeployments")
        machine_deployments = [
            Provider("MachineDeployment", md["metadata"]["name"], md["metadata"]["namespace"]) for md in listed.items
        ]
    provider, blocked = by_name(pool, node_pools, machine_deployments)
    return Resolution(provider, blocked)


async def machines_of(reader: ActingClient, version: str, machine_deployment: JSON) -> tuple[JSON, ...]:
    """The Machines of a MachineDeployment (by the labels CAPI gives them: cluster and deployment name)."""
    meta, spec = machine_deployment["metadata"], machine_deployment.get("spec") or {}
    selector = f"{DEPLOYMENT_NAME_LABEL}={meta['name']}"
    if cluster := spec.get("clusterName"):
        selector += f",{CLUSTER_NAME_LABEL}={cluster}"
    listed = await reader.list_objects(CLUSTER_API, version, "machines", namespace=meta["namespace"], label_selector=selector)
    return listed.items
