"""Join raw records and the latest metrics into the public Snapshot parts, incrementally.

The store calls `Joiner.join` when something changed, telling it which record
keys it touched since the last join; the Joiner keeps every row and aggregate
of the previous join and redoes only what depends on those keys:

* a pod event rebuilds that pod's row, its node's row and pool, and the
  namespace rows (a handful); GPUs are untouched;
* a node event rebuilds that node's row, its pool and its GPUs;
* a metrics batch (or an idle-clock change) rebuilds every GPU row and the
  rows of the pods whose GPUs moved; nodes are untouched.

A rebuilt row that equals the old one keeps the old object, so "changed" means
"a different object", and the Joiner reports exactly those keys (a `Delta`),
which is what `Changes` are made of without diffing whole snapshots. Models are
made with `frozen.maker` (the inputs are validated records).

What a row depends on is written once, in the `_*_row` functions; everything
else here is bookkeeping of which rows to call them for. The result is
identical to joining from scratch (the state tests check that with random
event sequences against the original full join).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any, Generic, TypeVar

from gpuctl.model import Gpu, GpuPod, NamespaceUsage, Node, PodRef, Pool
from gpuctl.state.changes import Delta, Rows
from gpuctl.state.frozen import maker
from gpuctl.state.idle import IdleClock
from gpuctl.state.pools import GPU_PRODUCT_LABEL, pool_for
from gpuctl.state.records import GpuSample, Kind, MetricsBatch, NamespaceRecord, NodeRecord, PodRecord, QuotaRecord
from gpuctl.state.resources import is_terminated, mig_instances, whole_gpus

GPU_COUNT_LABEL = "nvidia.com/gpu.count"
# Quota keys that limit GPUs, most specific first (requests.* is what admission checks).
QUOTA_KEYS: tuple[str, ...] = ("requests.nvidia.com/gpu", "nvidia.com/gpu", "limits.nvidia.com/gpu")
# Fields a placeholder GPU (advertised by its node, not in the metrics) is made with.
PLACEHOLDER_FIELDS = ("node", "pool", "index", "model")

_make_gpu = maker(Gpu)
_make_placeholder = maker(Gpu, PLACEHOLDER_FIELDS)
_make_node = maker(Node)
_make_pool = maker(Pool)
_make_pod = maker(GpuPod)
_make_namespace = maker(NamespaceUsage)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MICROS_PER_HOUR = 3_600_000_000


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
    # Keys whose records may differ from the previous join, per kind; None: any of them.
    dirty: Mapping[Kind, Collection[str]] | None = None


@dataclass(frozen=True, slots=True)
class Joined:
    nodes: tuple[Node, ...]
    gpus: tuple[Gpu, ...]
    pools: tuple[Pool, ...]
    pods: tuple[GpuPod, ...]
    namespaces: tuple[NamespaceUsage, ...]
    delta: Delta  # rows replaced since the previous join
    rows: Rows  # this join's rows by key
    fresh: bool  # joined from scratch: `delta` is relative to nothing, not to the previous join


def join(inputs: JoinInputs) -> Joined:
    """One-off join from scratch (tests, tools)."""
    return Joiner().join(inputs)


# -- rows: what each public row is made of ------------------------------------------------


def _micros(t: datetime) -> int:
    return (t - _EPOCH) // _MICROSECOND


class _Pod:
    """A pod record with its GPU counts worked out once (not once per aggregate)."""

    __slots__ = ("rec", "whole", "mig", "count", "live", "created_us")

    def __init__(self, rec: PodRecord) -> None:
        self.rec = rec
        self.whole = whole_gpus(rec.gpu_requests)
        self.mig = mig_instances(rec.gpu_requests)
        self.count = self.whole + sum(self.mig.values())
        self.live = not is_terminated(rec.phase)
        # Only scheduled pods hold GPUs, so only they add GPU-hours.
        self.created_us = _micros(rec.created) if rec.node is not None and rec.created is not None else None


def _node_row(rec: NodeRecord, pool: str, requested: int, mig_requested: dict[str, int]) -> dict[str, Any]:
    labels = rec.labels
    return {
        "name": rec.name,
        "pool": pool,
        "gpu_model": labels.get(GPU_PRODUCT_LABEL),
        "gpu_capacity": whole_gpus(rec.capacity),
        "gpu_allocatable": whole_gpus(rec.allocatable),
        "gpu_requested": requested,
        "mig_allocatable": mig_instances(rec.allocatable),
        "mig_requested": mig_requested,
        "mig_capable": labels.get("nvidia.com/mig.capable") == "true",
        "mig_config": labels.get("nvidia.com/mig.config"),
        "mig_config_state": labels.get("nvidia.com/mig.config.state"),
        "taints": tuple(rec.taints),
        "cordoned": rec.unschedulable,
        "ready": rec.ready,
        "created": rec.created,
    }


def _physical_gpus(rec: NodeRecord) -> int:
    try:
        return int(rec.labels[GPU_COUNT_LABEL])
    except (KeyError, ValueError):
        return whole_gpus(rec.capacity)


def _gpu_row(sample: GpuSample, pool: str, idle: bool, idle_for: float | None, threshold_pct: float) -> dict[str, Any]:
    mem_total = None
    if sample.mem_used_mib is not None and sample.mem_free_mib is not None:
        mem_total = sample.mem_used_mib + sample.mem_free_mib
    util = sample.util_pct
    return {
        "node": sample.hostname,
        "pool": pool,
        "index": sample.index,
        "uuid": sample.uuid,
        "model": sample.model,
        "mig_profile": sample.mig_profile,
        "mig_instance": sample.mig_instance,
        "util_pct": util,
        "mem_used_mib": sample.mem_used_mib,
        "mem_total_mib": mem_total,
        "temp_c": sample.temp_c,
        "power_w": sample.power_w,
        "xid": sample.xid,
        "pod": sample.pod,
        # Held GPUs are busy, idle, or neither: quiet for less than the window, or unmeasured.
        "busy": sample.pod is not None and util is not None and util >= threshold_pct,
        "idle": idle,
        "idle_for_s": idle_for,
    }


def _placeholder_row(node: str, pool: str, index: int, model: str | None) -> dict[str, Any]:
    return {
        "node": node,
        "pool": pool,
        "index": index,
        "uuid": None,
        "model": model,
        "mig_profile": None,
        "mig_instance": None,
        "util_pct": None,
        "mem_used_mib": None,
        "mem_total_mib": None,
        "temp_c": None,
        "power_w": None,
        "xid": None,
        "pod": None,
        "busy": False,
        "idle": False,
        "idle_for_s": None,
    }


def _pod_row(pod: _Pod, mine: Sequence[Gpu], keys: Sequence[str]) -> dict[str, Any]:
    rec = pod.rec
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
    return {
        "namespace": rec.namespace,
        "name": rec.name,
        "node": rec.node,
        "phase": rec.phase,
        "gpus": pod.whole,
        "mig": dict(pod.mig),
        "owner_kind": rec.owner_kind,
        "owner_name": rec.owner_name,
        "priority_class": rec.priority_class,
        "created": rec.created,
        "gpu_keys": tuple(keys),
        "util_pct": sum(utils) / len(utils) if utils else None,
        "idle": idle,
        "idle_for_s": min(idle_fors) if mine and None not in idle_fors else None,  # type: ignore[type-var]
    }


def _pool_row(name: str, members: Iterable[Node], idle: int) -> dict[str, Any]:
    nodes = ready = total = allocated = 0
    models: set[str] = set()
    for n in members:
        nodes += 1
        ready += n.ready
        total += n.gpu_allocatable + sum(n.mig_allocatable.values())
        allocated += n.gpu_requested + sum(n.mig_requested.values())
        if n.gpu_model:
            models.add(n.gpu_model)
    return {
        "name": name,
        "nodes": nodes,
        "nodes_ready": ready,
        "gpus_total": total,
        "gpus_allocated": allocated,
        "gpus_idle": idle,
        "gpu_models": tuple(sorted(models)),
    }


def _quota(records: list[QuotaRecord]) -> tuple[float | None, float]:
    """The tightest GPU quota among a namespace's ResourceQuotas: (hard, used)."""
    best: tuple[float, float] | None = None
    for rec in records:
        for key in QUOTA_KEYS:
            if key in rec.hard:
                candidate = (rec.hard[key], rec.used.get(key, 0.0))
                if best is None or candidate[0] < best[0]:
                    best = candidate
                break
    return (None, 0.0) if best is None else best


# -- aggregates kept between joins --------------------------------------------------------


class _NodeDemand:
    """GPUs requested by the live pods scheduled on one node."""

    __slots__ = ("whole", "mig")

    def __init__(self) -> None:
        self.whole = 0
        self.mig: dict[str, list[int]] = {}  # resource -> [sum, pods adding to it]

    def add(self, pod: _Pod, sign: int) -> None:
        self.whole += sign * pod.whole
        for name, count in pod.mig.items():
            entry = self.mig.setdefault(name, [0, 0])
            entry[0] += sign * count
            entry[1] += sign
            if not entry[1]:
                del self.mig[name]

    def mig_requested(self) -> dict[str, int]:
        # Sorted: the sums no longer remember which pod came first.
        return {name: self.mig[name][0] for name in sorted(self.mig)}


class _Namespace:
    """What a namespace row adds up from pods and GPUs."""

    __slots__ = ("live", "requested", "hours_pods", "hours_count", "hours_created", "newest", "busy", "idle")

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

    def add_pod(self, key: str, pod: _Pod, sign: int) -> None:
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


M = TypeVar("M")


class _SortedRows(Generic[M]):
    """Rows kept sorted by key, with their tuple remade only when something moved."""

    def __init__(self) -> None:
        self.by_key: dict[str, M] = {}
        self._keys: list[str] = []
        self._rows: list[M] = []
        self._tuple: tuple[M, ...] = ()
        self._joined: set[str] = set()
        self._left: set[str] = set()
        self._updated: set[str] = set()

    def get(self, key: str) -> M | None:
        return self.by_key.get(key)

    def set(self, key: str, row: M) -> None:
        if key not in self.by_key:
            if key in self._left:
                self._left.discard(key)
                self._updated.add(key)
            else:
                self._joined.add(key)
        else:
            self._updated.add(key)
        self.by_key[key] = row

    def remove(self, key: str) -> None:
        del self.by_key[key]
        if key in self._joined:
            self._joined.discard(key)
        else:
            self._left.add(key)
        self._updated.discard(key)

    def as_tuple(self) -> tuple[M, ...]:
        joined, left, updated = self._joined, self._left, self._updated
        if not (joined or left or updated):
            return self._tuple
        keys, rows, by_key = self._keys, self._rows, self.by_key
        if len(joined) + len(left) > 64:  # many keys came or went (a list): sort once
            keys[:] = sorted(by_key)
            rows[:] = [by_key[k] for k in keys]
        else:
            for key in left:
                i = bisect_left(keys, key)
                del keys[i], rows[i]
            for key in joined:
                i = bisect_left(keys, key)
                keys.insert(i, key)
                rows.insert(i, by_key[key])
            if len(updated) > len(keys) // 8:
                rows[:] = [by_key[k] for k in keys]
            else:
                for key in updated:
                    rows[bisect_left(keys, key)] = by_key[key]
        joined.clear()
        left.clear()
        updated.clear()
        self._tuple = tuple(rows)
        return self._tuple


def _replace(rows: _SortedRows[Any], key: str, values: dict[str, Any] | None, make: Any, delta: dict[str, Any]) -> Any:
    """Put the row made of `values` (None: no row) under `key`, keeping the old object if equal."""
    old = rows.get(key)
    if values is None:
        if old is not None:
            rows.remove(key)
            delta.setdefault(key, old)
        return None
    if old is not None and old.__dict__ == values:
        return old
    new = make(values)
    rows.set(key, new)
    delta.setdefault(key, old)
    return new


# -- the joiner ---------------------------------------------------------------------------


class _Segment:
    """One host's GPU rows (a node's, or a metrics hostname's), in snapshot order, and their sums."""

    __slots__ = ("gpus", "keys", "held", "repeated", "idle_pools", "spaces")

    def __init__(self, gpus: list[Gpu], keys: list[str]) -> None:
        self.gpus = gpus
        self.keys = keys
        self.held: dict[str, tuple[list[Gpu], list[str]]] = {}  # pod key -> the GPUs it holds here, their keys
        self.idle_pools: dict[str, int] = {}  # pool -> idle GPUs
        self.spaces: dict[str, list[int]] = {}  # namespace -> [busy, idle] GPUs its pods hold
        # A key twice (a malformed batch): diff calls it changed every time.
        self.repeated: set[str] = set() if len(set(keys)) == len(keys) else {k for k in keys if keys.count(k) > 1}

    def add(self, key: str, gpu: Gpu, pod: PodRef | None, pod_key: str | None, pool: str, busy: bool, idle: bool) -> None:
        """Count one row (rows are added in snapshot order)."""
        if idle:
            self.idle_pools[pool] = self.idle_pools.get(pool, 0) + 1
        if pod is not None:
            held = self.held.get(pod_key)  # type: ignore[arg-type]
            if held is None:
                self.held[pod_key] = ([gpu], [key])  # type: ignore[index]
            else:
                held[0].append(gpu)
                held[1].append(key)
            if idle or busy:
                counts = self.spaces.get(pod.namespace)
                if counts is None:
                    counts = self.spaces[pod.namespace] = [0, 0]
                counts[1 if idle else 0] += 1


_NO_SEGMENT = _Segment([], [])
_UNSET: Any = object()


class Joiner:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every row: the next join starts from scratch."""
        self._config: tuple[Any, ...] | None = None
        # Records as last joined, and what they add up to.
        self._nodes: dict[str, NodeRecord] = {}
        self._node_pool: dict[str, str] = {}
        self._pods: dict[str, _Pod] = {}
        self._demand: dict[str, _NodeDemand] = {}
        self._spaces: dict[str, _Namespace] = {}
        self._quotas: dict[str, tuple[float | None, float]] = {}
        self._fallback_pools: dict[str | None, str] = {}
        # Metrics as last joined, and the GPU rows per host.
        self._batch: MetricsBatch | None = _UNSET
        self._idle_version = -1
        self._samples: dict[str, list[GpuSample]] = {}
        self._segments: dict[str, _Segment] = {}
        self._hosts: list[str] = []
        self._gpu_by_key: dict[str, Gpu] = {}
        self._pod_hosts: dict[str, set[str]] = {}
        self._repeated: set[str] = set()
        self._pool_idle: dict[str, int] = {}
        self._gpus: tuple[Gpu, ...] = ()
        # Public rows.
        self._node_rows: _SortedRows[Node] = _SortedRows()
        self._pod_rows: _SortedRows[GpuPod] = _SortedRows()
        self._pool_members: dict[str, set[str]] = {}
        self._pool_rows: dict[str, Pool] = {}
        self._pools: tuple[Pool, ...] = ()
        self._space_rows: dict[str, NamespaceUsage] = {}
        self._namespaces: tuple[NamespaceUsage, ...] = ()

    def join(self, inputs: JoinInputs) -> Joined:
        config = (tuple(inputs.pool_order), inputs.idle, inputs.idle.threshold_pct)
        dirty = inputs.dirty
        fresh = config != self._config
        if fresh:
            self.reset()
            self._config = config
            dirty = None
        if dirty is None:
            dirty = {
                Kind.NODE: self._nodes.keys() | inputs.nodes.keys(),
                Kind.POD: self._pods.keys() | inputs.pods.keys(),
                Kind.QUOTA: inputs.quotas.keys(),
            }
        delta = Delta()
        touched_nodes: set[str] = set()  # node rows to remake
        touched_pods: set[str] = set()  # pod rows to remake
        touched_pools: set[str] = set()
        self._apply_pods(inputs.pods, dirty.get(Kind.POD, ()), touched_nodes, touched_pods)
        hosts = self._apply_nodes(inputs, dirty.get(Kind.NODE, ()), touched_nodes)
        if dirty.get(Kind.QUOTA):
            self._quotas = self._quota_totals(inputs.quotas)
        if inputs.batch is not self._batch or inputs.idle.version != self._idle_version:
            self._batch, self._idle_version = inputs.batch, inputs.idle.version
            self._samples = _by_host(inputs.batch)
            hosts = self._segments.keys() | self._samples.keys() | self._nodes.keys()
        if hosts:
            self._remake_gpus(hosts, inputs, delta.gpus, touched_pods, touched_pools)
        self._remake_nodes(touched_nodes, delta.nodes, touched_pools)
        if touched_pools:
            self._remake_pools(touched_pools)
        self._remake_pods(touched_pods, delta.pods)
        self._remake_namespaces(inputs.now, delta.namespaces)
        return Joined(
            nodes=self._node_rows.as_tuple(),
            gpus=self._gpus,
            pools=self._pools,
            pods=self._pod_rows.as_tuple(),
            namespaces=self._namespaces,
            delta=delta,
            rows=Rows(
                gpus=self._gpu_by_key,
                nodes=self._node_rows.by_key,
                pods=self._pod_rows.by_key,
                namespaces=self._space_rows,
                repeated_gpus=frozenset(self._repeated),
            ),
            fresh=fresh,
        )

    # -- records ----------------------------------------------------------------------------

    def _apply_pods(
        self, records: Mapping[str, PodRecord], keys: Iterable[str], touched_nodes: set[str], touched_pods: set[str]
    ) -> None:
        for key in keys:
            new = records.get(key)
            pod = self._pods.get(key)
            if pod is not None:
                if new is pod.rec:
                    continue
                if new is not None and new == pod.rec:  # a watch event that changed nothing we show
                    pod.rec = new
                    continue
                self._count_pod(key, pod, -1, touched_nodes)
            elif new is None:
                continue
            if new is None:
                del self._pods[key]
            else:
                self._pods[key] = pod = _Pod(new)
                self._count_pod(key, pod, +1, touched_nodes)
            touched_pods.add(key)

    def _count_pod(self, key: str, pod: _Pod, sign: int, touched_nodes: set[str]) -> None:
        if not pod.live:
            return
        space = self._spaces.get(pod.rec.namespace)
        if space is None:
            space = self._spaces[pod.rec.namespace] = _Namespace()
        space.add_pod(key, pod, sign)
        node = pod.rec.node
        if node is not None:
            demand = self._demand.get(node)
            if demand is None:
                demand = self._demand[node] = _NodeDemand()
            demand.add(pod, sign)
            touched_nodes.add(node)

    def _apply_nodes(self, inputs: JoinInputs, keys: Iterable[str], touched_nodes: set[str]) -> set[str]:
        """Take node records in; returns the hosts whose GPU rows depend on what moved."""
        hosts: set[str] = set()
        for name in keys:
            new = inputs.nodes.get(name)
            old = self._nodes.get(name)
            if new is old:
                continue
            if new is not None and old is not None and new == old:
                self._nodes[name] = new
                continue
            if new is None:
                del self._nodes[name], self._node_pool[name]
            else:
                self._nodes[name] = new
                self._node_pool[name] = pool_for(new.labels, inputs.pool_order)
            touched_nodes.add(name)
            hosts.add(name)
        return hosts

    @staticmethod
    def _quota_totals(records: Mapping[str, QuotaRecord]) -> dict[str, tuple[float | None, float]]:
        by_namespace: dict[str, list[QuotaRecord]] = {}
        for quota in records.values():  # store order: the first of two equal quotas wins, as always
            by_namespace.setdefault(quota.namespace, []).append(quota)
        return {name: _quota(quotas) for name, quotas in by_namespace.items()}

    # -- GPUs -------------------------------------------------------------------------------

    def _remake_gpus(
        self,
        hosts: Iterable[str],
        inputs: JoinInputs,
        delta: dict[str, Any],
        touched_pods: set[str],
        touched_pools: set[str],
    ) -> None:
        segments, by_key = self._segments, self._gpu_by_key
        moved = False
        for host in hosts:
            old = segments.get(host, _NO_SEGMENT)
            new, made = self._segment(host, inputs, old)
            if new is old:
                continue
            moved = True
            if new.gpus:
                segments[host] = new
            else:
                segments.pop(host, None)
            self._count(old, -1, touched_pools)
            self._count(new, +1, touched_pools)
            for key, before, gpu in made:
                delta.setdefault(key, before)
                by_key[key] = gpu
            if old.keys != new.keys:
                for key in set(old.keys).difference(new.keys):
                    delta.setdefault(key, by_key.pop(key))
            # Pods holding a GPU here before or now: remade, and kept if equal (cheaper than finding which).
            touched_pods.update(old.held)
            touched_pods.update(new.held)
            if old.repeated or new.repeated:
                self._repeated.difference_update(old.repeated)
                self._repeated.update(new.repeated)
                for key, gpu in zip(new.keys, new.gpus):
                    if key in new.repeated:
                        by_key[key] = gpu  # the later row stands for the key, as in a dict made from the tuple
            if old.held.keys() != new.held.keys():
                for pod_key in old.held.keys() - new.held.keys():
                    hosts_of = self._pod_hosts[pod_key]
                    hosts_of.discard(host)
                    if not hosts_of:
                        del self._pod_hosts[pod_key]
                for pod_key in new.held.keys() - old.held.keys():
                    self._pod_hosts.setdefault(pod_key, set()).add(host)
        if moved:
            self._hosts = sorted(segments)
            self._gpus = tuple(chain.from_iterable(segments[h].gpus for h in self._hosts))

    def _segment(self, host: str, inputs: JoinInputs, old: _Segment) -> tuple[_Segment, list[tuple[str, Gpu | None, Gpu]]]:
        """The host's GPU rows, and (key, old row, new row) for each row that is a new object.

        Returns `old` itself when every row is the same as before."""
        samples = self._samples.get(host, ())
        node_pool = self._node_pool.get(host)
        idle = inputs.idle
        reading = idle.reading
        threshold = idle.threshold_pct
        previous = self._gpu_by_key
        made: list[tuple[str, Gpu | None, Gpu]] = []
        keys: list[str] = []
        gpus: list[Gpu] = []
        order: list[tuple[int, int]] = []
        # (key, gpu, pod, pod key, pool, busy, idle) per row, to count once the order is known
        counted: list[tuple[str, Gpu, PodRef | None, str | None, str, bool, bool]] = []
        seen: set[int] = set()
        for sample in samples:
            pool = node_pool if node_pool is not None else self._fallback_pool(sample.model, inputs.pool_order)
            key = sample.key
            pod = sample.pod
            is_idle, idle_for = reading(key, pod is not None)
            values = _gpu_row(sample, pool, is_idle, idle_for, threshold)
            before = previous.get(key)
            if before is not None and before.__dict__ == values:
                gpu = before
            else:
                gpu = _make_gpu(values)
                made.append((key, before, gpu))
            keys.append(key)
            gpus.append(gpu)
            mig = sample.mig_instance
            order.append((sample.index, -1 if mig is None else mig))
            counted.append((key, gpu, pod, None if pod is None else pod.key, pool, values["busy"], is_idle))
            seen.add(sample.index)
        # GPUs the node advertises but metrics don't cover still get an entry, so they show up (greyed) in views.
        rec = self._nodes.get(host)
        if rec is not None:
            model = rec.labels.get(GPU_PRODUCT_LABEL)
            for index in range(_physical_gpus(rec)):
                if index not in seen:
                    key = f"{host}/{index}"
                    values = _placeholder_row(host, node_pool, index, model)  # type: ignore[arg-type]
                    before = previous.get(key)
                    if before is not None and before.__dict__ == values:
                        gpu = before
                    else:
                        gpu = _make_placeholder(values)
                        made.append((key, before, gpu))
                    keys.append(key)
                    gpus.append(gpu)
                    order.append((index, -1))
                    counted.append((key, gpu, None, None, node_pool, False, False))  # type: ignore[arg-type]
        if any(order[i] > order[i + 1] for i in range(len(order) - 1)):
            # Stable: repeated keys keep the batch's order.
            ranked = sorted(range(len(order)), key=order.__getitem__)
            keys, gpus, counted = [keys[i] for i in ranked], [gpus[i] for i in ranked], [counted[i] for i in ranked]
        if not made and keys == old.keys:
            return old, made
        segment = _Segment(gpus, keys)
        add = segment.add
        for row in counted:
            add(*row)
        return segment, made

    def _fallback_pool(self, model: str | None, order: Sequence[str]) -> str:
        """Pool of a GPU whose host has no Node (local NVML mode, lagging watch): by product."""
        pool = self._fallback_pools.get(model)
        if pool is None:
            pool = self._fallback_pools[model] = pool_for({GPU_PRODUCT_LABEL: (model or "").replace(" ", "-")}, order)
        return pool

    def _count(self, segment: _Segment, sign: int, touched_pools: set[str]) -> None:
        """Add (or take away) a segment's idle GPUs per pool and busy/idle GPUs per namespace."""
        pool_idle = self._pool_idle
        for pool, n in segment.idle_pools.items():
            pool_idle[pool] = pool_idle.get(pool, 0) + sign * n
            touched_pools.add(pool)
        for namespace, (busy, idle) in segment.spaces.items():
            space = self._spaces.get(namespace)
            if space is None:
                space = self._spaces[namespace] = _Namespace()
            space.busy += sign * busy
            space.idle += sign * idle

    def _remake_pods(self, keys: Iterable[str], delta: dict[str, Any]) -> None:
        pods, rows, segments, pod_hosts = self._pods, self._pod_rows, self._segments, self._pod_hosts
        for key in keys:
            pod = pods.get(key)
            if pod is None:
                _replace(rows, key, None, _make_pod, delta)
                continue
            hosts = pod_hosts.get(key)
            if not hosts:
                mine: Sequence[Gpu] = ()
                mine_keys: Sequence[str] = ()
            elif len(hosts) == 1:
                (host,) = hosts
                mine, mine_keys = segments[host].held[key]
            else:  # GPUs on several hosts (metrics that lag a reschedule): in snapshot order
                parts = [segments[h].held[key] for h in sorted(hosts)]
                mine = [g for part in parts for g in part[0]]
                mine_keys = [k for part in parts for k in part[1]]
            values = _pod_row(pod, mine, mine_keys)
            old = rows.by_key.get(key)
            if old is None or old.__dict__ != values:
                rows.set(key, _make_pod(values))
                delta.setdefault(key, old)

    # -- nodes, pools, namespaces -----------------------------------------------------------

    def _remake_nodes(self, names: Iterable[str], delta: dict[str, Any], touched_pools: set[str]) -> None:
        for name in names:
            rec = self._nodes.get(name)
            old = self._node_rows.get(name)
            if rec is None:
                values = None
            else:
                demand = self._demand.get(name)
                values = _node_row(
                    rec,
                    self._node_pool[name],
                    demand.whole if demand is not None else 0,
                    demand.mig_requested() if demand is not None else {},
                )
            new = _replace(self._node_rows, name, values, _make_node, delta)
            if new is old:
                continue
            if old is not None:
                touched_pools.add(old.pool)
                members = self._pool_members[old.pool]
                members.discard(name)
                if not members:
                    del self._pool_members[old.pool]
            if new is not None:
                touched_pools.add(new.pool)
                self._pool_members.setdefault(new.pool, set()).add(name)

    def _remake_pools(self, names: Iterable[str]) -> None:
        rows = self._pool_rows
        by_name = self._node_rows.by_key
        moved = False
        for name in names:
            members = self._pool_members.get(name)
            old = rows.get(name)
            if not members:
                if old is not None:
                    del rows[name]
                    moved = True
                continue
            values = _pool_row(name, (by_name[n] for n in members), self._pool_idle.get(name, 0))
            if old is None or old.__dict__ != values:
                rows[name] = _make_pool(values)
                moved = True
        if moved:
            self._pools = tuple(rows[name] for name in sorted(rows))

    def _remake_namespaces(self, now: datetime, delta: dict[str, Any]) -> None:
        now_us = _micros(now)
        spaces = self._spaces
        names = {name for name, space in spaces.items() if space.listed}
        names.update(self._quotas)
        rows = self._space_rows
        moved = False
        for name in names:
            space = spaces.get(name)
            hard, used = self._quotas.get(name, (None, 0.0))
            values = {
                "name": name,
                "gpu_quota_hard": hard,
                "gpu_quota_used": used,
                "gpus_requested": space.requested if space is not None else 0,
                "gpus_busy": space.busy if space is not None else 0,
                "gpus_idle": space.idle if space is not None else 0,
                "gpu_hours": space.gpu_hours(now_us) if space is not None else 0.0,
            }
            old = rows.get(name)
            if old is None or old.__dict__ != values:
                rows[name] = _make_namespace(values)
                delta.setdefault(name, old)
                moved = True
        for name in rows.keys() - names:
            delta.setdefault(name, rows.pop(name))
            moved = True
        if moved:
            self._namespaces = tuple(rows[name] for name in sorted(rows))
        # Namespaces with nothing left to add up are forgotten (their rows went above).
        for name in [n for n, s in spaces.items() if not s.live and not s.busy and not s.idle and not s.hours_pods]:
            del spaces[name]


def _by_host(batch: MetricsBatch | None) -> dict[str, list[GpuSample]]:
    out: dict[str, list[GpuSample]] = {}
    if batch is not None:
        for sample in batch.samples:
            samples = out.get(sample.hostname)
            if samples is None:
                out[sample.hostname] = [sample]
            else:
                samples.append(sample)
    return out
