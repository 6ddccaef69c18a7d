"""What each public row is made of, and the per-pod, per-node and per-namespace sums behind them.

The Joiner (join.py) decides which rows to remake; these functions say what a
row contains, as a complete field dict in declaration order, ready for the
`frozen.maker` of its model. Keeping them free of bookkeeping keeps them
comparable, line by line, with the full join they replaced.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from gpuctl.model import Gpu, GpuPod, NamespaceUsage, Node, Owner, PodDisruptionBudget, Pool
from gpuctl.state.frozen import field_dicts, maker
from gpuctl.state.pools import GPU_PRODUCT_LABEL
from gpuctl.state.records import GpuSample, NodeRecord, PdbRecord, PodRecord, QuotaRecord
from gpuctl.state.resources import (
    GPU,
    GPU_COUNT_LABEL,
    MIG_PREFIX,
    NodeGpus,
    is_terminated,
    mig_instances,
    shared_slices,
    whole_gpus,
)

# The only quota keys Kubernetes enforces for extended resources (see gpuctl.sources.kube.trim).
QUOTA_PREFIX = "requests."
GPU_QUOTA = QUOTA_PREFIX + GPU
MIG_QUOTA_PREFIX = QUOTA_PREFIX + MIG_PREFIX
# Fields a placeholder GPU (advertised by its node, not in the metrics) is made with.
PLACEHOLDER_FIELDS = ("node", "pool", "index", "model")

make_gpu = maker(Gpu)
make_placeholder = maker(Gpu, PLACEHOLDER_FIELDS)
make_node = maker(Node)
make_pool = maker(Pool)
make_pod = maker(GpuPod)
make_namespace = maker(NamespaceUsage)
make_pdb = maker(PodDisruptionBudget)
# The rows made by the thousand (a generation per metrics refresh) are made as shared-key dicts.
GpuFields = field_dicts(Gpu)
PodFields = field_dicts(GpuPod)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MICROS_PER_HOUR = 3_600_000_000
_NO_MIG: dict[str, int] = {}  # never written to


def micros(t: datetime) -> int:
    return (t - _EPOCH) // _MICROSECOND


class PodCounts:
    """A pod record with its GPU counts worked out once (not once per aggregate)."""

    __slots__ = ("count", "created_us", "live", "mig", "rec", "slices", "whole")

    def __init__(self, rec: PodRecord) -> None:
        self.rec = rec
        self.whole = whole_gpus(rec.gpu_requests)
        self.slices = shared_slices(rec.gpu_requests)
        self.mig = mig_instances(rec.gpu_requests) or _NO_MIG  # one shared empty dict: most pods have none
        self.count = self.whole + self.slices + sum(self.mig.values())
        self.live = not is_terminated(rec.phase)
        # Only scheduled pods hold GPUs, so only they add GPU-hours.
        self.created_us = micros(rec.created) if rec.node is not None and rec.created is not None else None


def node_row(
    rec: NodeRecord, pool: str, requested: int, slices: int, mig_requested: dict[str, int], metrics_stale: bool
) -> dict[str, Any]:
    """`requested`: nvidia.com/gpu its live pods request; `slices`: their nvidia.com/gpu.shared;
    `metrics_stale`: every GPU reading on the node is stale."""
    labels = rec.labels
    gpus = NodeGpus.of(labels, rec.capacity, rec.allocatable)
    if gpus.gpu_is_shared:
        requested, slices = 0, slices + requested
    return {
        "name": rec.name,
        "pool": pool,
        "gpu_model": labels.get(GPU_PRODUCT_LABEL),
        "gpu_capacity": gpus.capacity,
        "gpu_allocatable": gpus.allocatable,
        "gpu_requested": requested,
        "gpu_replicas": gpus.replicas,
        "gpu_slices_allocatable": gpus.slices_allocatable,
        "gpu_slices_requested": slices,
        "mig_allocatable": mig_instances(rec.allocatable),
        "mig_requested": mig_requested,
        "mig_capable": labels.get("nvidia.com/mig.capable") == "true",
        "mig_config": labels.get("nvidia.com/mig.config"),
        "mig_config_state": labels.get("nvidia.com/mig.config.state"),
        "taints": tuple(rec.taints),
        "cordoned": rec.unschedulable,
        "ready": rec.ready,
        "created": rec.created,
        "uid": rec.uid,
        "resource_version": rec.resource_version,
        "metrics_stale": metrics_stale,
    }


def physical_gpus(rec: NodeRecord) -> int:
    """GPU indexes the node has (MIG-partitioned ones included): GFD's count, else its advertised GPUs."""
    try:
        return int(rec.labels[GPU_COUNT_LABEL])
    except (KeyError, ValueError):
        return NodeGpus.of(rec.labels, rec.capacity, rec.allocatable).capacity


def gpu_row(
    sample: GpuSample, pool: str, idle: bool, idle_for: float | None, threshold_pct: float, stale: bool
) -> dict[str, Any]:
    """`stale`: the sample's own flag, or the whole feed is old; a stale GPU is neither busy nor idle."""
    mem_total = None
    if sample.mem_used_mib is not None and sample.mem_free_mib is not None:
        mem_total = sample.mem_used_mib + sample.mem_free_mib
    util = sample.util_pct
    return GpuFields(
        node=sample.hostname,
        pool=pool,
        index=sample.index,
        uuid=sample.uuid,
        model=sample.model,
        mig_profile=sample.mig_profile,
        mig_instance=sample.mig_instance,
        util_pct=util,
        mem_used_mib=sample.mem_used_mib,
        mem_total_mib=mem_total,
        temp_c=sample.temp_c,
        power_w=sample.power_w,
        xid=sample.xid,
        pod=sample.pod,
        # Held GPUs are busy, idle, or neither: quiet for less than the window, unmeasured, or stale.
        busy=not stale and sample.pod is not None and util is not None and util >= threshold_pct,
        idle=idle and not stale,
        idle_for_s=None if stale else idle_for,
        stale=stale,
    ).__dict__


# A placeholder GPU's row: nothing measured (None), so neither busy nor idle nor stale.
_UNMEASURED = dict.fromkeys(Gpu.model_fields) | {"busy": False, "idle": False, "stale": False}


def placeholder_row(node: str, pool: str, index: int, model: str | None) -> dict[str, Any]:
    return GpuFields(**{**_UNMEASURED, "node": node, "pool": pool, "index": index, "model": model}).__dict__


def pod_row(
    pod: PodCounts,
    mine: Sequence[Gpu],
    keys: Sequence[str],
    owners: tuple[Owner, ...],
    pdbs: tuple[str, ...],
    disruption_allowed: bool | None,
) -> dict[str, Any]:
    """`owners`: the chain (owners.py); `pdbs` and `disruption_allowed`: see disruption.py;
    `mine` and `keys`: the GPU rows the pod holds and their keys (the fields of `pod_gpu_fields`)."""
    rec = pod.rec
    top = owners[-1].__dict__ if owners else None
    gpu_keys, util, idle, idle_for = pod_gpu_fields(mine, keys)
    return PodFields(
        namespace=rec.namespace,
        name=rec.name,
        node=rec.node,
        phase=rec.phase,
        gpus=pod.whole,
        gpu_slices=pod.slices,
        mig=dict(pod.mig),
        owner_kind=top["kind"] if top else None,
        owner_name=top["name"] if top else None,
        priority_class=rec.priority_class,
        created=rec.created,
        gpu_keys=gpu_keys,
        util_pct=util,
        idle=idle,
        idle_for_s=idle_for,
        uid=rec.uid,
        resource_version=rec.resource_version,
        labels=rec.labels,
        ready=rec.ready,
        owners=owners,
        pdbs=pdbs,
        disruption_allowed=disruption_allowed,
    ).__dict__


# The pod row's fields that come from the GPUs it holds (the rest come from its record and links).
POD_GPU_FIELDS = ("gpu_keys", "util_pct", "idle", "idle_for_s")


def pod_gpu_fields(mine: Sequence[Gpu], keys: Sequence[str]) -> tuple[tuple[str, ...], float | None, bool, float | None]:
    """The values of POD_GPU_FIELDS for a pod holding the GPU rows `mine` (keys `keys`)."""
    utils: list[float] = []
    idle_fors: list[float | None] = []
    idle = bool(mine)
    for gpu in mine:
        fields = gpu.__dict__
        if fields["util_pct"] is not None:
            utils.append(fields["util_pct"])
        if not fields["idle"]:
            idle = False
        idle_fors.append(fields["idle_for_s"])
    idle_for = min(idle_fors) if mine and None not in idle_fors else None  # type: ignore[type-var]
    return tuple(keys), sum(utils) / len(utils) if utils else None, idle, idle_for


def pdb_row(rec: PdbRecord) -> dict[str, Any]:
    return {
        "namespace": rec.namespace,
        "name": rec.name,
        "selector": None if rec.selector is None else str(rec.selector),
        "min_available": rec.min_available,
        "max_unavailable": rec.max_unavailable,
        "disruptions_allowed": rec.disruptions_allowed,
        "current_healthy": rec.current_healthy,
        "desired_healthy": rec.desired_healthy,
        "expected_pods": rec.expected_pods,
        "observed": rec.observed,
        "uid": rec.uid,
        "resource_version": rec.resource_version,
    }


def pool_row(name: str, members: Iterable[Node], idle: int) -> dict[str, Any]:
    nodes = ready = total = allocated = slices_total = slices_allocated = 0
    models: set[str] = set()
    for n in members:
        nodes += 1
        ready += n.ready
        total += n.gpu_allocatable + sum(n.mig_allocatable.values())
        allocated += n.gpu_requested + n.gpus_sliced_in_use + sum(n.mig_requested.values())
        slices_total += n.gpu_slices_allocatable
        slices_allocated += n.gpu_slices_requested
        if n.gpu_model:
            models.add(n.gpu_model)
    return {
        "name": name,
        "nodes": nodes,
        "nodes_ready": ready,
        "gpus_total": total,
        "gpus_allocated": allocated,
        "gpus_idle": idle,
        "gpu_slices_total": slices_total,
        "gpu_slices_allocated": slices_allocated,
        "gpu_models": tuple(sorted(models)),
    }


def namespace_row(name: str, quota: NamespaceQuota | None, totals: NamespaceTotals | None, now_us: int) -> dict[str, Any]:
    return {
        "name": name,
        "gpu_quota_hard": quota.gpu_hard if quota is not None else None,
        "gpu_quota_used": quota.gpu_used if quota is not None else 0.0,
        "mig_quota_hard": dict(quota.mig_hard) if quota is not None else {},
        "mig_quota_used": dict(quota.mig_used) if quota is not None else {},
        "gpus_requested": totals.requested if totals is not None else 0,
        "gpus_busy": totals.busy if totals is not None else 0,
        "gpus_idle": totals.idle if totals is not None else 0,
        "gpu_hours": totals.gpu_hours(now_us) if totals is not None else 0.0,
    }


class NamespaceQuota:
    """A namespace's GPU limits from its ResourceQuotas (trimmed to unscoped requests.nvidia.com/* ones).

    Every quota applies to every pod, so the lowest hard limit per resource is the one that binds;
    its `used` comes with it (all unscoped quotas count the same pods, give or take a sync)."""

    __slots__ = ("gpu_hard", "gpu_used", "mig_hard", "mig_used")

    def __init__(self, records: Iterable[QuotaRecord]) -> None:
        limits: dict[str, tuple[float, float]] = {}  # quota key -> (hard, used)
        for rec in records:  # in store order: the first of two equal limits wins
            for key, hard in rec.hard.items():
                if key == GPU_QUOTA or key.startswith(MIG_QUOTA_PREFIX):
                    best = limits.get(key)
                    if best is None or hard < best[0]:
                        limits[key] = (hard, rec.used.get(key, 0.0))
        gpu = limits.pop(GPU_QUOTA, None)
        self.gpu_hard: float | None = gpu[0] if gpu is not None else None
        self.gpu_used = gpu[1] if gpu is not None else 0.0
        mig = sorted((key.removeprefix(QUOTA_PREFIX), value) for key, value in limits.items())
        self.mig_hard = {resource: hard for resource, (hard, _) in mig}
        self.mig_used = {resource: used for resource, (_, used) in mig}


# -- aggregates kept between joins --------------------------------------------------------


class NodeDemand:
    """GPUs requested by the live pods scheduled on one node."""

    __slots__ = ("mig", "slices", "whole")

    def __init__(self) -> None:
        self.whole = 0
        self.slices = 0
        self.mig: dict[str, list[int]] = {}  # resource -> [sum, pods adding to it]

    def add(self, pod: PodCounts, sign: int) -> None:
        self.whole += sign * pod.whole
        self.slices += sign * pod.slices
        for name, count in pod.mig.items():
            entry = self.mig.setdefault(name, [0, 0])
            entry[0] += sign * count
            entry[1] += sign
            if not entry[1]:
                del self.mig[name]

    def mig_requested(self) -> dict[str, int]:
        # Sorted: the sums no longer remember which pod came first.
        return {name: self.mig[name][0] for name in sorted(self.mig)}


class NamespaceTotals:
    """What a namespace row adds up from pods and GPUs."""

    __slots__ = ("busy", "hours_count", "hours_created", "hours_pods", "idle", "live", "newest", "requested")

    def __init__(self) -> None:
        self.live = 0  # live pods (a namespace with one is listed, even if it requests 0)
        self.requested = 0
        # GPU-hours = sum(count * (now - created)) over scheduled live pods, kept in whole
        # microseconds so that adding and removing pods in any order gives the same total.
        self.hours_pods: dict[str, tuple[int, int]] = {}  # pod key -> (count, created µs)
        self.hours_count = 0
        self.hours_created = 0
        self.newest: int | None = None  # latest created µs; None: recompute
        self.busy = 0  # held GPUs at or above the threshold
        self.idle = 0  # held GPUs flagged idle

    def add_pod(self, key: str, pod: PodCounts, sign: int) -> None:
        self.live += sign
        self.requested += sign * pod.count
        if pod.created_us is None or not pod.count:
            return
        if sign > 0:
            self.hours_pods[key] = (pod.count, pod.created_us)
            if self.newest is not None and pod.created_us > self.newest:
                self.newest = pod.created_us
        else:
            del self.hours_pods[key]
            if pod.created_us == self.newest:
                self.newest = None
        self.hours_count += sign * pod.count
        self.hours_created += sign * pod.count * pod.created_us

    def gpu_hours(self, now_us: int) -> float:
        if not self.hours_pods:
            return 0.0
        if self.newest is None:
            self.newest = max(created for _, created in self.hours_pods.values())
        if now_us >= self.newest:
            total = self.hours_count * now_us - self.hours_created
        else:  # some pod was created "after now" (clock skew): it counts zero, not negative
            total = sum(count * max(0, now_us - created) for count, created in self.hours_pods.values())
        return total / _MICROS_PER_HOUR

    @property
    def listed(self) -> bool:
        return self.live > 0 or self.busy > 0 or self.idle > 0


def same_row(old: dict[str, Any], new: dict[str, Any], likely: str) -> bool:
    """`old == new` for two row dicts, looking first at the field most likely to differ.

    Same semantics as dict equality (identity, then ==), so NaN readings compare as before."""
    a, b = old[likely], new[likely]
    return (a is b or a == b) and old == new
