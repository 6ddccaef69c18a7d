"""scale-pool's decisions, without I/O: which provider object a pool is, the
autoscaler's bounds, what a ClusterClass topology owns, which Machines a
scale-down removes, a NodePool limit's effect (which pods may be drained:
gpuctl.playbooks.node_pods).

How a pool maps to its provider (decided here, documented in docs/playbooks.md):
a pool is what gpuctl shows (gpuctl.state.pools: a node label, e.g.
`karpenter.sh/nodepool` or `gpuctl.io/pool`), so it is resolved through its
nodes: a node labelled `karpenter.sh/nodepool=N` belongs to NodePool N; a node
annotated `cluster.x-k8s.io/machine` (+ `cluster-namespace`), which Cluster API
puts on every node it provisions, belongs to that Machine's
`cluster.x-k8s.io/deployment-name` MachineDeployment. All of a pool's managed
nodes must agree on one object. A pool with no nodes (scaled to zero) is
looked up by name: a NodePool, or the one MachineDeployment of that name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gpuctl.playbooks.node_pods import NodePod

JSON = Mapping[str, Any]

NODEPOOL_LABEL = "karpenter.sh/nodepool"
MACHINE_ANNOTATION = "cluster.x-k8s.io/machine"
CLUSTER_NAMESPACE_ANNOTATION = "cluster.x-k8s.io/cluster-namespace"
CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
DEPLOYMENT_NAME_LABEL = "cluster.x-k8s.io/deployment-name"
DELETE_MACHINE_ANNOTATION = "cluster.x-k8s.io/delete-machine"
MIN_SIZE_ANNOTATION = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"
MAX_SIZE_ANNOTATION = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"
GPU_COUNT_ANNOTATION = "capacity.cluster-autoscaler.kubernetes.io/gpu-count"
# Set by the topology controller on the MachineDeployments a ClusterClass topology owns.
TOPOLOGY_DEPLOYMENT_LABEL = "topology.cluster.x-k8s.io/deployment-name"


@dataclass(frozen=True, slots=True, order=True)
class Provider:
    kind: Literal["MachineDeployment", "NodePool"]
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


def _meta(obj: JSON) -> JSON:
    return obj.get("metadata") or {}


def machine_of(node: JSON) -> tuple[str, str] | None:
    """(namespace, name) of the Cluster API Machine behind a node, from the annotations CAPI sets on it."""
    annotations = _meta(node).get("annotations") or {}
    machine, namespace = annotations.get(MACHINE_ANNOTATION), annotations.get(CLUSTER_NAMESPACE_ANNOTATION)
    return (namespace, machine) if machine and namespace else None


@dataclass(frozen=True, slots=True)
class PoolProviders:
    by_provider: dict[Provider, tuple[str, ...]]  # provider -> the pool's nodes it manages
    unmanaged: tuple[str, ...]  # nodes no MachineDeployment or NodePool manages


def providers_of(nodes: Iterable[JSON], deployments: Mapping[tuple[str, str], str]) -> PoolProviders:
    """Which provider object manages each node; `deployments` maps a Machine (namespace, name) to its MachineDeployment."""
    found: dict[Provider, list[str]] = {}
    unmanaged: list[str] = []
    for node in nodes:
        name = str(_meta(node).get("name"))
        provider: Provider | None = None
        if pool := (_meta(node).get("labels") or {}).get(NODEPOOL_LABEL):
            provider = Provider("NodePool", pool)
        elif (machine := machine_of(node)) is not None and (md := deployments.get(machine)) is not None:
            provider = Provider("MachineDeployment", md, machine[0])
        if provider is None:
            unmanaged.append(name)
        else:
            found.setdefault(provider, []).append(name)
    return PoolProviders({p: tuple(sorted(n)) for p, n in sorted(found.items())}, tuple(sorted(unmanaged)))


def choose_provider(pool: str, providers: PoolProviders) -> tuple[Provider | None, list[str], list[str]]:
    """(the provider, blocked, warnings) for a pool whose nodes were resolved; None with no reason: look it up by name."""
    if not providers.by_provider:
        return None, [], []
    if len(providers.by_provider) > 1:
        listed = "; ".join(f"{p}: {', '.join(nodes)}" for p, nodes in providers.by_provider.items())
        return (
            None,
            [
                f"pool {pool}'s nodes belong to several node groups ({listed}): scale-pool changes one; give each its own pool label"
            ],
            [],
        )
    provider = next(iter(providers.by_provider))
    warnings = []
    if providers.unmanaged:
        warnings.append(
            f"{len(providers.unmanaged)} of pool {pool}'s nodes ({', '.join(providers.unmanaged)}) belong to no"
            f" MachineDeployment or NodePool; {provider} does not change them"
        )
    return provider, [], warnings


def by_name(pool: str, node_pools: Sequence[str], machine_deployments: Sequence[Provider]) -> tuple[Provider | None, list[str]]:
    """A pool without managed nodes: the NodePool or the one MachineDeployment named like it; or why not."""
    candidates = [Provider("NodePool", name) for name in node_pools if name == pool]
    candidates += [md for md in machine_deployments if md.name == pool]
    if len(candidates) == 1:
        return candidates[0], []
    if candidates:
        return None, [f"pool {pool} names several node groups ({', '.join(map(str, candidates))}): scale-pool cannot tell which"]
    return None, [
        f"pool {pool} has no node of a MachineDeployment or NodePool, and no MachineDeployment or NodePool is named {pool}"
    ]


# -- Cluster API sizes ------------------------------------------------------------------------


def autoscaler_bounds(annotations: Mapping[str, str]) -> tuple[int, int] | None:
    """(min, max) when cluster-autoscaler manages the group: it needs both annotations, as whole numbers."""
    try:
        low, high = int(annotations[MIN_SIZE_ANNOTATION]), int(annotations[MAX_SIZE_ANNOTATION])
    except (KeyError, ValueError):
        return None
    return low, high


def size_checks(
    where: str, current: int, target: int, bounds: tuple[int, int] | None, *, max_nodes: int | None
) -> tuple[list[str], list[str]]:
    """(blocked, warnings) for setting `where`'s replicas from `current` to `target`."""
    blocked: list[str] = []
    warnings: list[str] = []
    if target == current:
        blocked.append(f"{where} already has {current} replicas: nothing to change")
    if bounds is not None:
        low, high = bounds
        if not low <= target <= high:
            blocked.append(
                f"{target} is outside the autoscaler's bounds for {where} ({low}..{high}, annotations"
                f" {MIN_SIZE_ANNOTATION} and {MAX_SIZE_ANNOTATION}): change those annotations instead, or pick a size"
                " within them"
            )
        else:
            warnings.append(
                f"cluster-autoscaler manages {where} between {low} and {high} nodes: it may resize it again; to keep"
                f" {target} nodes set both annotations to {target}"
            )
    if max_nodes is not None and abs(target - current) > max_nodes:
        blocked.append(
            f"adding or removing {abs(target - current)} nodes exceeds this playbook's max_nodes ({max_nodes}) per run"
        )
    return blocked, warnings


def topology_warning(cluster: JSON | None, machine_deployment: JSON) -> str | None:
    """A ClusterClass topology that sets this MachineDeployment's replicas will put its own number back."""
    topology = ((cluster or {}).get("spec") or {}).get("topology")
    entry_name = (_meta(machine_deployment).get("labels") or {}).get(TOPOLOGY_DEPLOYMENT_LABEL)
    if not topology or not entry_name:
        return None
    entries = ((topology.get("workers") or {}).get("machineDeployments")) or ()
    entry = next((e for e in entries if e.get("name") == entry_name), None)
    if entry is None or entry.get("replicas") is None:
        return None
    cluster_name = _meta(cluster or {}).get("name")
    return (
        f"Cluster {cluster_name}'s ClusterClass topology sets this MachineDeployment to {entry['replicas']} replicas"
        f" and will put that back: change spec.topology.workers.machineDeployments[{entry_name}].replicas on the"
        " Cluster instead"
    )


def gpus_per_node(annotations: Mapping[str, str], node_gpus: Iterable[int]) -> int:
    """A group's GPUs per node: the autoscaler's scale-from-zero annotation, else its largest node's."""
    try:
        return int(annotations[GPU_COUNT_ANNOTATION])
    except (KeyError, ValueError):
        return max(node_gpus, default=0)


# -- scale-down: which Machines go --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MachineInfo:
    name: str
    uid: str
    node: str | None  # None while it has no node yet
    marked: bool  # carries cluster.x-k8s.io/delete-machine already
    gpu_pods: tuple[NodePod, ...] = ()

    @property
    def busy(self) -> bool:
        return bool(self.gpu_pods)


@dataclass(frozen=True, slots=True)
class Victims:
    machines: tuple[MachineInfo, ...]  # they go (marked for deletion); busy ones are drained first
    blocked: tuple[str, ...]


def _pods_text(machine: MachineInfo) -> str:
    shown = ", ".join(p.key for p in machine.gpu_pods[:3]) + (" …" if len(machine.gpu_pods) > 3 else "")
    return f"{machine.node} ({len(machine.gpu_pods)} GPU pods: {shown})"


def choose_victims(machines: Sequence[MachineInfo], remove: int, *, drain: bool) -> Victims:
    """The Machines a scale-down by `remove` takes, idle ones first; busy ones only with drain.

    Cluster API removes Machines marked cluster.x-k8s.io/delete-machine first, so already-marked ones
    are taken first and must all qualify: which of them go is CAPI's choice."""
    marked = [m for m in machines if m.marked]
    blocked: list[str] = []
    if not drain:
        busy_marked = [m for m in marked if m.busy]
        if busy_marked:
            listed = "; ".join(f"Machine {m.name} on {_pods_text(m)}" for m in busy_marked)
            blocked.append(
                f"already marked for deletion, so a scale-down removes them first, yet running GPU pods: {listed};"
                " pass drain=true to evict them first, or remove the annotation"
            )
    if len(marked) >= remove:
        return Victims(tuple(marked), tuple(blocked))
    # Machines without a node first, then idle nodes, by name (deterministic), then with drain the least busy.
    rest = sorted((m for m in machines if not m.marked), key=lambda m: (m.node is not None, len(m.gpu_pods), m.name))
    need = remove - len(marked)
    idle = [m for m in rest if not m.busy]
    chosen = idle[:need]
    if len(chosen) < need:
        busy = [m for m in rest if m.busy]
        if drain:
            chosen += busy[: need - len(chosen)]
        else:
            listed = "; ".join(_pods_text(m) for m in busy)
            blocked.append(
                f"removing {remove} nodes needs {remove} without GPU pods, there are {len(marked) + len(idle)};"
                f" the others run GPU pods: {listed}; pass drain=true to evict them first (PodDisruptionBudgets respected)"
            )
    return Victims(tuple(marked + chosen), tuple(blocked))


# -- Karpenter NodePool limits ------------------------------------------------------------------


def limit_checks(
    where: str, before: float | None, new: int, in_pool: float, *, max_gpus: int | None
) -> tuple[list[str], list[str]]:
    """(blocked, warnings) for setting a NodePool's nvidia.com/gpu limit from `before` (None: unlimited) to `new`."""
    blocked: list[str] = []
    warnings: list[str] = []
    if before == new:
        blocked.append(f"{where} already limits nvidia.com/gpu to {new}: nothing to change")
    if before is None:
        warnings.append(f"{where} has no nvidia.com/gpu limit now: from now on it launches nodes only up to {new} GPUs")
    if new < in_pool:
        warnings.append(
            f"{where}'s nodes have {in_pool:g} GPUs, more than {new}: Karpenter removes no node for a limit (it only"
            f" stops new ones), so it launches none until the pool is under {new}"
        )
    change = abs(new - (before if before is not None else in_pool))
    if max_gpus is not None and change > max_gpus:
        blocked.append(f"a change of {change:g} GPUs exceeds this playbook's max_gpus ({max_gpus}) per run")
    return blocked, warnings
