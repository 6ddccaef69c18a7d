"""A simulated GPU fleet: nodes, GPUs, pods, namespaces and PDBs, as plain data.

Three consumers read it: the demo source (`gpuctl top --demo`), the test
bed's loader (which turns it into real Kubernetes objects) and the test
bed's DCGM-exporter simulator. `build_fleet` is pure and deterministic for
a seed, so all three agree on every name, UUID and placement.

Conventions a loader needs:
- The pool label is `catalog.POOL_LABEL` (`karpenter.sh/nodepool`); pods
  select their pool with it (`SimPod.node_selector`) and tolerate the pool's
  taints (`SimPod.tolerations`, operator Equal).
- Times are sim seconds: 0 is the start, negative is before it
  (`created_t=-3600` = created an hour before the sim started).
- `SimNode.gpus` lists the devices pods are given: whole GPUs, or the MIG
  instances on a MIG node (they share their parent's index and UUID).
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

from gpuctl.model import Taint
from gpuctl.sim import catalog, workloads
from gpuctl.sim.catalog import POOL_LABEL, PoolSpec
from gpuctl.sim.placement import Allocator
from gpuctl.sim.workloads import Behaviour, Workload

QUOTA_PREFIX = "requests."
MIG_PREFIX = "nvidia.com/mig-"
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated names


def object_uid(resource: str, key: str, created_t: float = 0.0) -> str:
    """A deterministic metadata.uid for a simulated object (the demo source and the simulated API agree on it)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"gpuctl-demo/{resource}/{key}/{created_t}"))


@dataclass(frozen=True, slots=True)
class SimGpu:
    node: str
    index: int
    uuid: str
    pci_bus_id: str
    model: str  # e.g. "NVIDIA A100-SXM4-80GB"
    mem_total_mib: int
    mig_profile: str | None = None
    mig_instance: int | None = None  # GPU_I_ID

    @property
    def key(self) -> str:
        base = f"{self.node}/{self.index}"
        return base if self.mig_instance is None else f"{base}/mig{self.mig_instance}"

    @property
    def resource(self) -> str:
        return "nvidia.com/gpu" if self.mig_profile is None else f"nvidia.com/mig-{self.mig_profile}"


@dataclass(frozen=True, slots=True)
class SimNode:
    name: str
    pool: str
    labels: Mapping[str, str]
    resources: Mapping[str, int]  # capacity = allocatable, nvidia.com/* only
    taints: tuple[Taint, ...]
    gpus: tuple[SimGpu, ...]
    created_t: float
    ready: bool = True
    unschedulable: bool = False  # cordoned

    @property
    def uid(self) -> str:
        return object_uid("nodes", self.name, self.created_t)


@dataclass(frozen=True, slots=True)
class SimPod:
    namespace: str
    name: str
    node: str | None  # None: pending
    container: str
    gpu_requests: Mapping[str, int]
    owner_kind: str | None  # top-level controller: Job, CronJob, Deployment, StatefulSet; None = bare pod
    owner_name: str | None
    ref_kind: str | None  # the pod's own ownerReference: ReplicaSet for a Deployment, Job for a CronJob
    ref_name: str | None
    priority_class: str | None
    labels: Mapping[str, str]
    gpu_keys: tuple[str, ...]
    behaviour: Behaviour
    pool: str
    node_selector: Mapping[str, str]
    tolerations: tuple[Taint, ...]
    created_t: float
    idle_since_t: float | None = None  # when its GPUs went idle (behaviour "idle" only)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def uid(self) -> str:
        """Stable for this pod; a new pod of the same name (a StatefulSet's replacement) gets another."""
        return object_uid("pods", self.key, self.created_t)

    @property
    def phase(self) -> str:
        return "Pending" if self.node is None else "Running"


@dataclass(frozen=True, slots=True)
class SimNamespace:
    name: str
    team: str
    gpu_quota_hard: int | None  # requests.nvidia.com/gpu; None = no ResourceQuota
    mig_quota_hard: Mapping[str, int] = field(default_factory=dict)  # e.g. {"requests.nvidia.com/mig-1g.10gb": 8}

    @property
    def quota_hard(self) -> dict[str, int]:
        """Every hard limit of its GPU quota, keyed as a ResourceQuota spells them."""
        hard = dict(self.mig_quota_hard)
        if self.gpu_quota_hard is not None:
            hard[QUOTA_PREFIX + "nvidia.com/gpu"] = self.gpu_quota_hard
        return hard


@dataclass(frozen=True, slots=True)
class SimPdb:
    namespace: str
    name: str
    match_labels: Mapping[str, str]
    min_available: int | None = None
    max_unavailable: int | None = None

    def selects(self, pod: SimPod) -> bool:
        return all(pod.labels.get(k) == v for k, v in self.match_labels.items())


@dataclass(frozen=True)
class Fleet:
    nodes: tuple[SimNode, ...]
    pods: tuple[SimPod, ...]
    namespaces: tuple[SimNamespace, ...]
    pdbs: tuple[SimPdb, ...]
    xid_faults: Mapping[str, int] = field(default_factory=dict)  # GPU key -> last XID it reports

    @cached_property
    def gpus(self) -> tuple[SimGpu, ...]:
        return tuple(g for n in self.nodes for g in n.gpus)

    @cached_property
    def gpu_by_key(self) -> Mapping[str, SimGpu]:
        return {g.key: g for g in self.gpus}

    @cached_property
    def node_by_name(self) -> Mapping[str, SimNode]:
        return {n.name: n for n in self.nodes}

    @cached_property
    def pod_by_gpu(self) -> Mapping[str, SimPod]:
        return {k: p for p in self.pods for k in p.gpu_keys}

    @cached_property
    def pod_by_key(self) -> Mapping[str, SimPod]:
        return {p.key: p for p in self.pods}

    @cached_property
    def _pods_by_label(self) -> Mapping[tuple[str, str, str], tuple[SimPod, ...]]:
        """(namespace, label, value) -> the pods with that label, in fleet order."""
        index: dict[tuple[str, str, str], list[SimPod]] = {}
        for pod in self.pods:
            for label in pod.labels.items():
                index.setdefault((pod.namespace, *label), []).append(pod)
        return {key: tuple(pods) for key, pods in index.items()}

    @cached_property
    def _pods_by_namespace(self) -> Mapping[str, tuple[SimPod, ...]]:
        index: dict[str, list[SimPod]] = {}
        for pod in self.pods:
            index.setdefault(pod.namespace, []).append(pod)
        return {name: tuple(pods) for name, pods in index.items()}

    def pods_in(self, namespace: str) -> tuple[SimPod, ...]:
        """The namespace's pods, in fleet order."""
        return self._pods_by_namespace.get(namespace, ())

    def selected_by(self, pdb: SimPdb) -> tuple[SimPod, ...]:
        """The pods `pdb` selects, in fleet order: looked up by one of its labels, not by scanning
        the fleet (the demo recounts a namespace's budgets on every change to it)."""
        if not pdb.match_labels:
            return self.pods_in(pdb.namespace)
        first = next(iter(pdb.match_labels.items()))
        return tuple(p for p in self._pods_by_label.get((pdb.namespace, *first), ()) if pdb.selects(p))

    @property
    def physical_gpus(self) -> int:
        return sum(int(n.labels["nvidia.com/gpu.count"]) for n in self.nodes)

    @property
    def priority_classes(self) -> tuple[str, ...]:
        return tuple(sorted({p.priority_class for p in self.pods if p.priority_class}))

    def quota_used(self, namespace: str) -> dict[str, int]:
        return quota_used(self.pods_in(namespace), namespace)


def quota_used(pods: Iterable[SimPod], namespace: str) -> dict[str, int]:
    """What a ResourceQuota counts: requests of every non-terminated pod, pending ones included."""
    used: dict[str, int] = {}
    for pod in pods:
        if pod.namespace == namespace:
            for resource, count in pod.gpu_requests.items():
                used[QUOTA_PREFIX + resource] = used.get(QUOTA_PREFIX + resource, 0) + count
    return used


def build_fleet(seed: int = 7, nodes_per_pool: Mapping[str, int] | None = None, scale: int = 1) -> Fleet:
    """The demo cluster: 4 pools, 11 nodes, 68 GPUs at scale=1; `scale` multiplies the nodes."""
    counts = {p.name: p.nodes for p in catalog.POOLS}
    unknown = set(nodes_per_pool or {}) - set(counts)
    if unknown:
        raise ValueError(f"unknown pools {sorted(unknown)}; known: {sorted(counts)}")
    if scale < 1:
        raise ValueError("scale must be at least 1")
    counts.update(nodes_per_pool or {})
    b = _Builder(random.Random(seed))
    for pool in catalog.POOLS:
        b.add_pool(pool, counts[pool.name] * scale)
    return b.finish()


class _Builder:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.names: set[str] = set()
        self.nodes: list[SimNode] = []
        self.pods: list[SimPod] = []
        self.pdbs: list[SimPdb] = []
        self.xid_faults: dict[str, int] = {}

    def suffix(self, n: int) -> str:
        return "".join(self.rng.choice(_NAME_ALPHABET) for _ in range(n))

    def unique(self, prefix: str, n: int) -> str:
        while (name := f"{prefix}-{self.suffix(n)}") in self.names:
            pass
        self.names.add(name)
        return name

    def uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def add_pool(self, pool: PoolSpec, count: int) -> None:
        nodes = [self.node(pool, i % pool.nodes) for i in range(count)]
        self.nodes += nodes
        alloc = Allocator(nodes)
        for cycle in range(math.ceil(count / pool.nodes)):
            members = nodes[cycle * pool.nodes : (cycle + 1) * pool.nodes]
            for w in workloads.CYCLES.get(pool.name, ()):
                self.add_workload(w, pool, cycle, members, alloc)
        fault_pool, offset, xid = workloads.XID_FAULT
        if fault_pool == pool.name and len(nodes) > offset and (free := alloc.free_keys(nodes[offset].name)):
            self.xid_faults[free[-1]] = xid

    def node(self, pool: PoolSpec, offset: int) -> SimNode:
        name = self.unique(pool.name, 5)
        model = pool.model
        layout = pool.mig_layouts[offset % len(pool.mig_layouts)] if pool.mig_layouts else None
        gpus: list[SimGpu] = []
        for index in range(pool.gpus_per_node):
            uuid, bus = self.uuid(), pool.pci_bus_ids[index]
            if layout is None:
                gpus.append(SimGpu(name, index, uuid, bus, model.name, model.mem_mib))
                continue
            for profile, gi in catalog.H100_LAYOUTS[layout]:
                mem = catalog.H100_PROFILES[profile].mem_mib
                gpus.append(SimGpu(name, index, uuid, bus, model.name, mem, profile, gi))
        resources: dict[str, int] = {"nvidia.com/gpu": 0 if layout else pool.gpus_per_node}
        for g in gpus:
            if g.mig_profile:
                resources[g.resource] = resources.get(g.resource, 0) + 1
        return SimNode(
            name=name,
            pool=pool.name,
            labels=_labels(pool, layout, resources),
            resources=resources,
            taints=pool.taints,
            gpus=tuple(gpus),
            created_t=-self.rng.uniform(3, 60) * workloads.DAY,
        )

    def add_workload(self, w: Workload, pool: PoolSpec, cycle: int, members: list[SimNode], alloc: Allocator) -> None:
        name = w.name if cycle == 0 else f"{w.name}-{cycle}"
        started = -w.age_s * self.rng.uniform(0.9, 1.1)
        ref_kind, ref_name = {
            "Deployment": ("ReplicaSet", f"{name}-{self.suffix(10)}"),
            "CronJob": ("Job", f"{name}-{int(29_000_000 + self.rng.uniform(0, 900_000))}"),
            None: (None, None),
        }.get(w.kind, (w.kind, name))
        queued = -self.rng.uniform(120, 1200)  # pending pods were created minutes ago
        running = 0
        for i, offset in enumerate(w.placements):
            if offset is not None and offset >= len(members):
                continue  # a partial cycle: this pod's node does not exist
            pod_name, labels = self.pod_name(w, name, ref_name, i)
            node: str | None = None
            keys: tuple[str, ...] = ()
            if offset is not None:
                node = members[offset].name
                taken = alloc.take(node, w.requests)
                if taken is None:
                    raise AssertionError(f"workload table overcommits {node} with {pod_name}")
                keys = taken
                running += 1
            behaviour = w.behaviour(i)
            created = started if node else queued
            idle_since = None
            if behaviour == "idle":
                idle_since = -(w.idle_s or 0.0) * self.rng.uniform(0.97, 1.03)
            self.pods.append(SimPod(
                namespace=w.namespace, name=pod_name, node=node, container=w.container,
                gpu_requests=dict(w.requests), owner_kind=w.kind, owner_name=name if w.kind else None,
                ref_kind=ref_kind, ref_name=ref_name, priority_class=w.priority_class, labels=labels,
                gpu_keys=keys, behaviour=behaviour, pool=pool.name,
                node_selector={POOL_LABEL: pool.name}, tolerations=pool.taints,
                created_t=created, idle_since_t=idle_since,
            ))
        if w.pdb and running:
            self.pdbs.append(SimPdb(w.namespace, f"{name}-pdb", {"app": name}, min_available=max(1, running - 1)))

    def pod_name(self, w: Workload, name: str, ref_name: str | None, i: int) -> tuple[str, dict[str, str]]:
        if w.kind == "Deployment":
            assert ref_name is not None
            return f"{ref_name}-{self.suffix(5)}", {"app": name, "pod-template-hash": ref_name.rsplit("-", 1)[1]}
        if w.kind == "StatefulSet":
            pod = f"{name}-{i}"
            return pod, {"app": name, "statefulset.kubernetes.io/pod-name": pod}
        if w.kind in ("Job", "CronJob"):
            job = ref_name or name
            labels = {"job-name": job, "batch.kubernetes.io/job-name": job}
            if w.indexed:
                labels["batch.kubernetes.io/job-completion-index"] = str(i)
                return f"{job}-{i}-{self.suffix(5)}", labels
            return f"{job}-{self.suffix(5)}", labels
        user = name.removeprefix("jupyter-")
        return name, {"app": "jupyterhub", "component": "singleuser-server", "hub.jupyter.org/username": user}

    def finish(self) -> Fleet:
        pods = tuple(self.pods)
        namespaces = []
        for spec in workloads.NAMESPACES:
            used = quota_used(pods, spec.name)
            gpu_hard = None
            mig_hard: dict[str, int] = {}
            if spec.fill is not None:
                gpu_hard = _hard(used.get(QUOTA_PREFIX + "nvidia.com/gpu", 0), spec.fill)
                if spec.mig_quota:
                    mig_hard = {k: _hard(v, spec.fill) for k, v in sorted(used.items()) if "/mig-" in k}
            namespaces.append(SimNamespace(spec.name, spec.team, gpu_hard, mig_hard))
        return Fleet(tuple(self.nodes), pods, tuple(namespaces), tuple(self.pdbs), dict(self.xid_faults))


def _hard(used: int, fill: float) -> int:
    return max(math.ceil(used / fill), 4)


def _labels(pool: PoolSpec, layout: str | None, resources: Mapping[str, int]) -> dict[str, str]:
    """GFD's labels (k8s-device-plugin docs/gfd_labels.md) plus the pool and instance type."""
    model = pool.model
    major, minor, rev = pool.driver.split(".")
    labels = {
        POOL_LABEL: pool.name,
        "node.kubernetes.io/instance-type": pool.instance_type,
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": model.product_label,
        "nvidia.com/gpu.count": str(pool.gpus_per_node),
        "nvidia.com/gpu.memory": str(model.mem_mib),
        "nvidia.com/gpu.family": model.family,
        "nvidia.com/gpu.compute.major": str(model.compute[0]),
        "nvidia.com/gpu.compute.minor": str(model.compute[1]),
        "nvidia.com/gpu.replicas": "1",
        "nvidia.com/gpu.sharing-strategy": "none",
        "nvidia.com/cuda.driver.major": major,
        "nvidia.com/cuda.driver.minor": minor,
        "nvidia.com/cuda.driver.rev": rev,
        "nvidia.com/mig.capable": str(pool.mig_capable).lower(),
        "nvidia.com/mig.strategy": "mixed" if pool.mig_layouts else "none",
    }
    if pool.mig_capable:
        labels["nvidia.com/mig.config"] = layout or "all-disabled"
        labels["nvidia.com/mig.config.state"] = "success"
    return labels | mig_resource_labels(resources)


def mig_resource_labels(resources: Mapping[str, int]) -> dict[str, str]:
    """GFD's per-profile labels (mixed strategy) for the MIG resources a node advertises."""
    labels: dict[str, str] = {}
    for resource, count in resources.items():
        if resource.startswith(MIG_PREFIX) and count:
            profile = catalog.H100_PROFILES[resource.removeprefix(MIG_PREFIX)]
            labels[f"{resource}.count"] = str(count)
            labels[f"{resource}.memory"] = str(profile.mem_mib)
            labels[f"{resource}.slices.gi"] = str(profile.slices)
    return labels


def new_node(pool: PoolSpec, rng: random.Random, taken: set[str], created_t: float) -> SimNode:
    """A node as a cloud would launch it into `pool` (named like the others, not one of `taken`), MIG as the pool's first."""
    builder = _Builder(rng)
    builder.names = taken
    return replace(builder.node(pool, 0), created_t=created_t)
