"""The join as it was before it became incremental: the oracle for the state tests.

A verbatim copy of gpuctl/state/join.py at bf118c8 (full join every time, with a
per-key memo): slow, but obviously right, so the incremental Joiner is checked
against it on random event sequences. Not used by gpuctl itself.

Kept in step with what a row means since: nodes and pods carry uid and
resourceVersion; a pod row carries its labels, its owner chain (followed
through every ReplicaSet and Job record each time, `owners.owner_links`), the
budgets that apply to it and the eviction verdict (every budget of its
namespace checked each time, `disruption.py`'s rules); budgets have rows.
Since then also per-GPU staleness (Gpu.stale, Node.metrics_stale), written the obvious way.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from gpuctl.model import Gpu, GpuPod, NamespaceUsage, Node, Owner, PodDisruptionBudget, Pool
from gpuctl.state.disruption import applies, eviction_allowed
from gpuctl.state.idle import IdleClock
from gpuctl.state.owners import owner_links
from gpuctl.state.pools import GPU_PRODUCT_LABEL, pool_for
from gpuctl.state.records import (
    ControllerRecord,
    GpuSample,
    Kind,
    MetricsBatch,
    NamespaceRecord,
    NodeRecord,
    PdbRecord,
    PodRecord,
    QuotaRecord,
)
from gpuctl.state.resources import NodeGpus, is_terminated, mig_instances, shared_slices, whole_gpus

GPU_COUNT_LABEL = "nvidia.com/gpu.count"
# The quota keys a namespace row shows: the GPU limit, and one per MIG resource.
GPU_QUOTA = "requests.nvidia.com/gpu"
MIG_QUOTA_PREFIX = "requests.nvidia.com/mig-"


@dataclass(frozen=True, slots=True)
class JoinInputs:
    nodes: Mapping[str, NodeRecord]
    pods: Mapping[str, PodRecord]
    quotas: Mapping[str, QuotaRecord]
    namespaces: Mapping[str, NamespaceRecord]
    batch: MetricsBatch | None
    idle: IdleClock
    pool_order: Sequence[str]
    now: datetime
    replicasets: Mapping[str, ControllerRecord]
    jobs: Mapping[str, ControllerRecord]
    pdbs: Mapping[str, PdbRecord]
    known: frozenset[Kind]
    readings_stale: bool = False


@dataclass(frozen=True, slots=True)
class Joined:
    nodes: tuple[Node, ...]
    gpus: tuple[Gpu, ...]
    pools: tuple[Pool, ...]
    pods: tuple[GpuPod, ...]
    namespaces: tuple[NamespaceUsage, ...]
    pdbs: tuple[PodDisruptionBudget, ...]


M = TypeVar("M")


class _Reuse:
    """Per-key memo of the last model built and the inputs it was built from."""

    def __init__(self) -> None:
        self._old: dict[str, tuple[tuple[Any, ...], Any]] = {}
        self._new: dict[str, tuple[tuple[Any, ...], Any]] = {}

    def get(self, key: str, inputs: tuple[Any, ...], build: Callable[[], M]) -> M:
        hit = self._old.get(key)
        # Tuple equality checks identity first, so unchanged records compare in O(1).
        model = hit[1] if hit is not None and hit[0] == inputs else build()
        self._new[key] = (inputs, model)
        return model  # type: ignore[no-any-return]

    def roll(self) -> None:
        """End of a join: forget keys that were not asked for this time."""
        self._old, self._new = self._new, {}


class Joiner:
    def __init__(self) -> None:
        self._gpus = _Reuse()
        self._nodes = _Reuse()
        self._pods = _Reuse()

    def join(self, inputs: JoinInputs) -> Joined:
        node_pools = {name: pool_for(rec.labels, inputs.pool_order) for name, rec in inputs.nodes.items()}
        live_pods = [p for p in inputs.pods.values() if not is_terminated(p.phase)]
        gpus = _gpus(inputs, node_pools, self._gpus)
        nodes = _nodes(inputs.nodes, live_pods, node_pools, self._nodes, _all_stale(gpus))
        pods = _pods(inputs, gpus, self._pods)
        for memo in (self._gpus, self._nodes, self._pods):
            memo.roll()
        return Joined(
            nodes=nodes,
            gpus=gpus,
            pools=_pools(nodes, gpus),
            pods=pods,
            namespaces=_namespaces(inputs, live_pods, gpus),
            pdbs=tuple(_pdb(inputs.pdbs[key]) for key in sorted(inputs.pdbs)),
        )


def join(inputs: JoinInputs) -> Joined:
    """One-off join without reuse (tests, tools)."""
    return Joiner().join(inputs)


def _all_stale(gpus: tuple[Gpu, ...]) -> set[str]:
    """Nodes whose GPUs with readings (not placeholders) are all stale."""
    measured: dict[str, list[Gpu]] = defaultdict(list)
    for gpu in gpus:
        if gpu.model_fields_set != PLACEHOLDER_FIELDS:
            measured[gpu.node].append(gpu)
    return {node for node, mine in measured.items() if all(g.stale for g in mine)}


PLACEHOLDER_FIELDS = {"node", "pool", "index", "model"}


def _nodes(
    records: Mapping[str, NodeRecord],
    live_pods: list[PodRecord],
    pools: Mapping[str, str],
    memo: _Reuse,
    all_stale: set[str],
) -> tuple[Node, ...]:
    requested: dict[str, int] = defaultdict(int)
    slices: dict[str, int] = defaultdict(int)
    mig_requested: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for pod in live_pods:
        if pod.node is None:
            continue
        requested[pod.node] += whole_gpus(pod.gpu_requests)
        slices[pod.node] += shared_slices(pod.gpu_requests)
        for name, count in mig_instances(pod.gpu_requests).items():
            mig_requested[pod.node][name] += count
    out = []
    for name in sorted(records):
        rec, pool, req, sl = records[name], pools[name], requested.get(name, 0), slices.get(name, 0)
        mig_req = dict(mig_requested[name]) if name in mig_requested else {}
        stale = name in all_stale
        out.append(
            memo.get(name, (rec, pool, req, sl, mig_req, stale), lambda: _node(rec, pool, req, sl, mig_req, stale))
        )
    return tuple(out)


def _node(rec: NodeRecord, pool: str, requested: int, slices: int, mig_requested: dict[str, int], stale: bool) -> Node:
    labels = rec.labels
    gpus = NodeGpus.of(labels, rec.capacity, rec.allocatable)
    if gpus.gpu_is_shared:  # nvidia.com/gpu is time-sliced here: its requests are slices
        requested, slices = 0, slices + requested
    return Node.model_construct(
        name=rec.name,
        pool=pool,
        gpu_model=labels.get(GPU_PRODUCT_LABEL),
        gpu_capacity=gpus.capacity,
        gpu_allocatable=gpus.allocatable,
        gpu_requested=requested,
        gpu_replicas=gpus.replicas,
        gpu_slices_allocatable=gpus.slices_allocatable,
        gpu_slices_requested=slices,
        mig_allocatable=mig_instances(rec.allocatable),
        mig_requested=mig_requested,
        mig_capable=labels.get("nvidia.com/mig.capable") == "true",
        mig_config=labels.get("nvidia.com/mig.config"),
        mig_config_state=labels.get("nvidia.com/mig.config.state"),
        taints=tuple(rec.taints),
        cordoned=rec.unschedulable,
        ready=rec.ready,
        created=rec.created,
        uid=rec.uid,
        resource_version=rec.resource_version,
        metrics_stale=stale,
    )


def _physical_gpus(rec: NodeRecord) -> int:
    try:
        return int(rec.labels[GPU_COUNT_LABEL])
    except (KeyError, ValueError):
        return NodeGpus.of(rec.labels, rec.capacity, rec.allocatable).capacity


def _gpu_from_sample(
    sample: GpuSample, pool: str, idle: bool, idle_for: float | None, threshold_pct: float, stale: bool
) -> Gpu:
    mem_total = None
    if sample.mem_used_mib is not None and sample.mem_free_mib is not None:
        mem_total = sample.mem_used_mib + sample.mem_free_mib
    return Gpu.model_construct(
        node=sample.hostname,
        pool=pool,
        index=sample.index,
        uuid=sample.uuid,
        model=sample.model,
        mig_profile=sample.mig_profile,
        mig_instance=sample.mig_instance,
        util_pct=sample.util_pct,
        mem_used_mib=sample.mem_used_mib,
        mem_total_mib=mem_total,
        temp_c=sample.temp_c,
        power_w=sample.power_w,
        xid=sample.xid,
        pod=sample.pod,
        # Held GPUs are busy, idle, or neither: quiet for less than the window, or unmeasured.
        busy=not stale and sample.pod is not None and sample.util_pct is not None and sample.util_pct >= threshold_pct,
        idle=idle and not stale,
        idle_for_s=None if stale else idle_for,
        stale=stale,
    )


def _gpus(inputs: JoinInputs, node_pools: Mapping[str, str], memo: _Reuse) -> tuple[Gpu, ...]:
    gpus: list[Gpu] = []
    seen: set[tuple[str, int]] = set()
    if inputs.batch is not None:
        for sample in inputs.batch.samples:
            pool = node_pools.get(sample.hostname)
            if pool is None:  # metrics for a host we have no Node for (local NVML mode, lagging watch)
                pool = pool_for({GPU_PRODUCT_LABEL: (sample.model or "").replace(" ", "-")}, inputs.pool_order)
            key = sample.key
            idle = sample.pod is not None and inputs.idle.is_idle(key)
            idle_for = inputs.idle.idle_for(key)
            stale = sample.stale or inputs.readings_stale
            gpus.append(
                memo.get(
                    key,
                    (sample, pool, idle, idle_for, stale),
                    lambda: _gpu_from_sample(sample, pool, idle, idle_for, inputs.idle.threshold_pct, stale),
                )
            )
            seen.add((sample.hostname, sample.index))
    # GPUs the node advertises but metrics don't cover still get an entry, so they show up (greyed) in views.
    for name, rec in inputs.nodes.items():
        for index in range(_physical_gpus(rec)):
            if (name, index) not in seen:
                pool, model = node_pools[name], rec.labels.get(GPU_PRODUCT_LABEL)
                gpus.append(
                    memo.get(
                        f"{name}/{index}",
                        (None, pool, model),
                        lambda: Gpu.model_construct(node=name, pool=pool, index=index, model=model),
                    )
                )
    gpus.sort(key=lambda g: (g.node, g.index, -1 if g.mig_instance is None else g.mig_instance))
    return tuple(gpus)


def _pods(inputs: JoinInputs, gpus: tuple[Gpu, ...], memo: _Reuse) -> tuple[GpuPod, ...]:
    records = inputs.pods
    held: dict[str, list[Gpu]] = defaultdict(list)
    for gpu in gpus:
        if gpu.pod is not None:
            held[gpu.pod.key].append(gpu)
    controllers = {Kind.REPLICASET: inputs.replicasets, Kind.JOB: inputs.jobs}
    out = []
    for key in sorted(records):
        rec, mine = records[key], tuple(held.get(key, ()))
        owners = tuple(Owner(kind=k, name=n, uid=u) for k, n, u in owner_links(rec, controllers)[0])
        budgets = sorted((p for p in inputs.pdbs.values() if p.namespace == rec.namespace and applies(p, rec.labels)),
                         key=lambda p: p.name)
        allowed = eviction_allowed(phase=rec.phase, deleting=rec.deleting, ready=rec.ready,
                                   budgets=budgets if Kind.PDB in inputs.known else None)
        links = (owners, tuple(p.name for p in budgets), allowed)
        out.append(memo.get(key, (rec, mine, links), lambda: _pod(rec, mine, links)))
    return tuple(out)


def _pdb(rec: PdbRecord) -> PodDisruptionBudget:
    return PodDisruptionBudget.model_construct(
        namespace=rec.namespace,
        name=rec.name,
        selector=None if rec.selector is None else str(rec.selector),
        min_available=rec.min_available,
        max_unavailable=rec.max_unavailable,
        disruptions_allowed=rec.disruptions_allowed,
        current_healthy=rec.current_healthy,
        desired_healthy=rec.desired_healthy,
        expected_pods=rec.expected_pods,
        observed=rec.observed,
        uid=rec.uid,
        resource_version=rec.resource_version,
    )


Links = tuple[tuple[Owner, ...], tuple[str, ...], bool | None]  # owner chain, budgets that apply, eviction verdict


def _pod(rec: PodRecord, mine: tuple[Gpu, ...], links: Links) -> GpuPod:
    utils = [g.util_pct for g in mine if g.util_pct is not None]
    idle_fors = [g.idle_for_s for g in mine]
    owners, pdbs, allowed = links
    return GpuPod.model_construct(
        namespace=rec.namespace,
        name=rec.name,
        node=rec.node,
        phase=rec.phase,
        gpus=whole_gpus(rec.gpu_requests),
        gpu_slices=shared_slices(rec.gpu_requests),
        mig=mig_instances(rec.gpu_requests),
        owner_kind=owners[-1].kind if owners else None,
        owner_name=owners[-1].name if owners else None,
        priority_class=rec.priority_class,
        created=rec.created,
        gpu_keys=tuple(g.key for g in mine),
        util_pct=sum(utils) / len(utils) if utils else None,
        idle=bool(mine) and all(g.idle for g in mine),
        idle_for_s=min(idle_fors) if mine and None not in idle_fors else None,  # type: ignore[type-var]
        uid=rec.uid,
        resource_version=rec.resource_version,
        labels=rec.labels,
        ready=rec.ready,
        owners=owners,
        pdbs=pdbs,
        disruption_allowed=allowed,
    )


def _pools(nodes: tuple[Node, ...], gpus: tuple[Gpu, ...]) -> tuple[Pool, ...]:
    by_pool: dict[str, list[Node]] = defaultdict(list)
    for node in nodes:
        by_pool[node.pool].append(node)
    idle: dict[str, int] = defaultdict(int)
    for gpu in gpus:
        if gpu.idle:
            idle[gpu.pool] += 1
    return tuple(
        Pool.model_construct(
            name=name,
            nodes=len(members),
            nodes_ready=sum(1 for n in members if n.ready),
            gpus_total=sum(n.gpu_allocatable + sum(n.mig_allocatable.values()) for n in members),
            gpus_allocated=sum(
                n.gpu_requested + math.ceil(n.gpu_slices_requested / n.gpu_replicas) + sum(n.mig_requested.values())
                for n in members
            ),
            gpus_idle=idle.get(name, 0),
            gpu_slices_total=sum(n.gpu_slices_allocatable for n in members),
            gpu_slices_allocated=sum(n.gpu_slices_requested for n in members),
            gpu_models=tuple(sorted({n.gpu_model for n in members if n.gpu_model})),
        )
        for name, members in sorted(by_pool.items())
    )


def _quota(records: list[QuotaRecord]) -> tuple[float | None, float, dict[str, float], dict[str, float]]:
    """The binding (lowest) limit per quota key among a namespace's ResourceQuotas: GPU hard, used, MIG hard, used."""
    best: dict[str, tuple[float, float]] = {}
    for rec in records:
        for key, hard in rec.hard.items():
            if (key == GPU_QUOTA or key.startswith(MIG_QUOTA_PREFIX)) and (key not in best or hard < best[key][0]):
                best[key] = (hard, rec.used.get(key, 0.0))
    gpu = best.pop(GPU_QUOTA, None)
    mig = {key.removeprefix("requests."): value for key, value in sorted(best.items())}
    return (
        None if gpu is None else gpu[0],
        0.0 if gpu is None else gpu[1],
        {k: v[0] for k, v in mig.items()},
        {k: v[1] for k, v in mig.items()},
    )


def _namespaces(inputs: JoinInputs, live_pods: list[PodRecord], gpus: tuple[Gpu, ...]) -> tuple[NamespaceUsage, ...]:
    quotas: dict[str, list[QuotaRecord]] = defaultdict(list)
    for quota in inputs.quotas.values():
        quotas[quota.namespace].append(quota)
    requested: dict[str, int] = defaultdict(int)
    hours: dict[str, float] = defaultdict(float)
    for pod in live_pods:
        count = whole_gpus(pod.gpu_requests) + shared_slices(pod.gpu_requests) + sum(mig_instances(pod.gpu_requests).values())
        requested[pod.namespace] += count
        if pod.node is not None and pod.created is not None:  # only scheduled pods hold GPUs
            hours[pod.namespace] += count * max(0.0, (inputs.now - pod.created).total_seconds()) / 3600.0
    busy: dict[str, int] = defaultdict(int)
    idle: dict[str, int] = defaultdict(int)
    for gpu in gpus:
        if gpu.pod is not None:
            if gpu.idle:
                idle[gpu.pod.namespace] += 1
            elif gpu.busy:
                busy[gpu.pod.namespace] += 1
    names = set(quotas) | set(requested) | set(busy) | set(idle)
    out = []
    for name in sorted(names):
        hard, used, mig_hard, mig_used = _quota(quotas.get(name, []))
        out.append(
            NamespaceUsage.model_construct(
                name=name,
                gpu_quota_hard=hard,
                gpu_quota_used=used,
                mig_quota_hard=mig_hard,
                mig_quota_used=mig_used,
                gpus_requested=requested.get(name, 0),
                gpus_busy=busy.get(name, 0),
                gpus_idle=idle.get(name, 0),
                gpu_hours=hours.get(name, 0.0),
            )
        )
    return tuple(out)
