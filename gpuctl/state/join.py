"""Join raw records and the latest metrics into the public Snapshot parts, incrementally.

The store calls `Joiner.join` when something changed, telling it which record
keys it touched since the last join; the Joiner keeps every row and aggregate
of the previous join and redoes only what depends on those keys:

* a pod event rebuilds that pod's row, its node's row and pool, and the
  namespace rows (a handful); GPUs are untouched;
* a node event rebuilds that node's row, its pool and its GPUs;
* a metrics batch (or an idle-clock change, or the whole feed turning stale)
  rebuilds every GPU row and the rows of the pods whose GPUs moved; a node row
  only when all its GPUs turned stale or one of them stopped being stale;
* a ReplicaSet, Job or PodDisruptionBudget event rebuilds the rows of the pods
  it concerns (`links.PodLinks` says which) and the budget's own row.

A rebuilt row that equals the old one keeps the old object, so "changed" means
"a different object", and the Joiner reports exactly those keys (a `Delta`),
which is what `Changes` are made of without diffing whole snapshots. Models are
made with `frozen.maker` (the inputs are validated records).

What a row depends on is written once, in `rows.py`; everything
else here is bookkeeping of which rows to call them for. The result is
identical to joining from scratch (the state tests check that with random
event sequences against the original full join).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from typing import Any

from gpuctl.model import Gpu, GpuPod, NamespaceUsage, Node, PodDisruptionBudget, Pool
from gpuctl.state.changes import Delta, Rows
from gpuctl.state.idle import IdleClock
from gpuctl.state.links import PodLinks
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
from gpuctl.state.rows import (
    POD_GPU_FIELDS,
    NamespaceQuota,
    NamespaceTotals,
    NodeDemand,
    PodCounts,
    gpu_row,
    make_gpu,
    make_namespace,
    make_node,
    make_pdb,
    make_placeholder,
    make_pod,
    make_pool,
    micros,
    namespace_row,
    node_row,
    pdb_row,
    physical_gpus,
    placeholder_row,
    pod_gpu_fields,
    pod_row,
    pool_row,
    same_row,
)
from gpuctl.state.sorted_rows import SortedRows, replace_row


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
    replicasets: Mapping[str, ControllerRecord] = field(default_factory=dict)
    jobs: Mapping[str, ControllerRecord] = field(default_factory=dict)
    pdbs: Mapping[str, PdbRecord] = field(default_factory=dict)
    known: frozenset[Kind] = frozenset(Kind)  # kinds whose records are complete (listed and readable)
    # The batch itself is older than the store's stale window: every GPU reading is stale.
    readings_stale: bool = False

    @property
    def controllers(self) -> Mapping[Kind, Mapping[str, ControllerRecord]]:
        return {Kind.REPLICASET: self.replicasets, Kind.JOB: self.jobs}


@dataclass(frozen=True, slots=True)
class Joined:
    nodes: tuple[Node, ...]
    gpus: tuple[Gpu, ...]
    pools: tuple[Pool, ...]
    pods: tuple[GpuPod, ...]
    namespaces: tuple[NamespaceUsage, ...]
    pdbs: tuple[PodDisruptionBudget, ...]
    delta: Delta  # rows replaced since the previous join
    rows: Rows  # this join's rows by key
    fresh: bool  # joined from scratch: `delta` is relative to nothing, not to the previous join
    gpus_stale: int  # GPU rows flagged stale
    unmatched_hosts: frozenset[str]  # hosts in the metrics with no node record


def join(inputs: JoinInputs) -> Joined:
    """One-off join from scratch (tests, tools)."""
    return Joiner().join(inputs)


# -- the joiner ---------------------------------------------------------------------------


class _Segment:
    """One host's GPU rows (a node's, or a metrics hostname's), in snapshot order, and their sums."""

    __slots__ = ("all_stale", "gpus", "held", "idle_pools", "keys", "repeated", "spaces", "stale")

    def __init__(self, gpus: list[Gpu], keys: list[str], measured: int) -> None:
        """`measured`: how many of the rows come from samples (the rest are placeholders, never stale)."""
        self.gpus = gpus
        self.keys = keys
        self.stale = 0
        self.held: dict[str, tuple[list[Gpu], list[str]]] = {}  # pod key -> the GPUs it holds here, their keys
        self.idle_pools: dict[str, int] = {}  # pool -> idle GPUs
        self.spaces: dict[str, list[int]] = {}  # namespace -> [busy, idle] GPUs its pods hold
        for key, gpu in zip(keys, gpus):
            row = gpu.__dict__
            self.stale += row["stale"]
            idle = row["idle"]
            if idle:
                self.idle_pools[row["pool"]] = self.idle_pools.get(row["pool"], 0) + 1
            pod = row["pod"]
            if pod is not None:
                pod_key = pod.key
                held = self.held.get(pod_key)
                if held is None:
                    self.held[pod_key] = ([gpu], [key])
                else:
                    held[0].append(gpu)
                    held[1].append(key)
                if idle or row["busy"]:
                    counts = self.spaces.get(pod.namespace)
                    if counts is None:
                        counts = self.spaces[pod.namespace] = [0, 0]
                    counts[1 if idle else 0] += 1
        self.all_stale = measured > 0 and self.stale == measured
        # A key twice (a malformed batch): diff calls it changed every time.
        self.repeated: set[str] = set() if len(set(keys)) == len(keys) else {k for k in keys if keys.count(k) > 1}


_NO_SEGMENT = _Segment([], [], 0)
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
        self._pods: dict[str, PodCounts] = {}
        self._demand: dict[str, NodeDemand] = {}
        self._spaces: dict[str, NamespaceTotals] = {}
        self._quotas: dict[str, NamespaceQuota] = {}
        self._fallback_pools: dict[str | None, str] = {}
        # Metrics as last joined, and the GPU rows per host.
        self._batch: MetricsBatch | None = _UNSET
        self._idle_version = -1
        self._readings_stale = False
        self._stale_gpus = 0
        self._unmatched: frozenset[str] = frozenset()
        self._samples: dict[str, list[GpuSample]] = {}
        self._segments: dict[str, _Segment] = {}
        self._hosts: list[str] = []
        self._gpu_by_key: dict[str, Gpu] = {}
        # The host(s) of a pod's GPU rows: one, or (metrics that lag a reschedule) a set. 10,000 one-host sets
        # were 2 MB.
        self._pod_hosts: dict[str, str | set[str]] = {}
        self._repeated: set[str] = set()
        self._pool_idle: dict[str, int] = {}
        self._gpus: tuple[Gpu, ...] = ()
        # Public rows.
        self._node_rows: SortedRows[Node] = SortedRows()
        self._pod_rows: SortedRows[GpuPod] = SortedRows()
        self._pool_members: dict[str, set[str]] = {}
        self._pool_rows: dict[str, Pool] = {}
        self._pools: tuple[Pool, ...] = ()
        self._space_rows: dict[str, NamespaceUsage] = {}
        self._namespaces: tuple[NamespaceUsage, ...] = ()
        # Owner chains and disruption budgets, and the budgets' rows.
        self._links = PodLinks()
        self._pdb_rows: SortedRows[PodDisruptionBudget] = SortedRows()

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
                Kind.REPLICASET: inputs.replicasets.keys(),
                Kind.JOB: inputs.jobs.keys(),
                Kind.PDB: inputs.pdbs.keys(),
            }
        delta = Delta()
        touched_nodes: set[str] = set()  # node rows to remake
        touched_pods: set[str] = set()  # pod rows to remake
        gpu_pods: set[str] = set()  # pod rows whose GPUs moved: their POD_GPU_FIELDS to redo
        touched_pools: set[str] = set()
        self._apply_pods(inputs.pods, dirty.get(Kind.POD, ()), touched_nodes, touched_pods)
        links = self._links
        links.apply_known(inputs.known, touched_pods)
        links.apply_controllers(inputs.controllers, dirty, touched_pods)
        for key, pdb in links.apply_pdbs(inputs.pdbs, dirty.get(Kind.PDB, ()), touched_pods):
            replace_row(self._pdb_rows, key, None if pdb is None else pdb_row(pdb), make_pdb, {})  # not in Changes
        hosts = self._apply_nodes(inputs, dirty.get(Kind.NODE, ()), touched_nodes)
        if dirty.get(Kind.QUOTA):
            self._quotas = self._quota_totals(inputs.quotas)
        if (
            inputs.batch is not self._batch
            or inputs.idle.version != self._idle_version
            or inputs.readings_stale != self._readings_stale
        ):
            if inputs.batch is not self._batch:
                self._samples = _by_host(inputs.batch)
            self._batch, self._idle_version = inputs.batch, inputs.idle.version
            self._readings_stale = inputs.readings_stale
            hosts = self._segments.keys() | self._samples.keys() | self._nodes.keys()
        if hosts:
            self._unmatched = frozenset(host for host in self._samples if host not in self._nodes)
            delta.gpus_moved = self._remake_gpus(hosts, inputs, delta.gpus, gpu_pods, touched_pools, touched_nodes)
        self._remake_nodes(touched_nodes, delta.nodes, touched_pools)
        if touched_pools:
            self._remake_pools(touched_pools)
        self._remake_pods(touched_pods, inputs, delta.pods)
        self._regpu_pods(gpu_pods.difference(touched_pods), delta.pods)
        self._remake_namespaces(inputs.now, delta.namespaces)
        return Joined(
            nodes=self._node_rows.as_tuple(),
            gpus=self._gpus,
            pools=self._pools,
            pods=self._pod_rows.as_tuple(),
            namespaces=self._namespaces,
            pdbs=self._pdb_rows.as_tuple(),
            delta=delta,
            rows=Rows(
                gpus=self._gpu_by_key,
                nodes=self._node_rows.by_key,
                pods=self._pod_rows.by_key,
                namespaces=self._space_rows,
                repeated_gpus=frozenset(self._repeated),
            ),
            fresh=fresh,
            gpus_stale=self._stale_gpus,
            unmatched_hosts=self._unmatched,
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
                self._links.remove_pod(key, pod.rec.namespace)  # type: ignore[union-attr]
            else:
                if pod is None:
                    self._links.add_pod(key, new.namespace)
                self._pods[key] = pod = PodCounts(new)
                self._count_pod(key, pod, +1, touched_nodes)
            touched_pods.add(key)

    def _count_pod(self, key: str, pod: PodCounts, sign: int, touched_nodes: set[str]) -> None:
        if not pod.live:
            return
        space = self._spaces.get(pod.rec.namespace)
        if space is None:
            space = self._spaces[pod.rec.namespace] = NamespaceTotals()
        space.add_pod(key, pod, sign)
        node = pod.rec.node
        if node is not None:
            demand = self._demand.get(node)
            if demand is None:
                demand = self._demand[node] = NodeDemand()
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
    def _quota_totals(records: Mapping[str, QuotaRecord]) -> dict[str, NamespaceQuota]:
        by_namespace: dict[str, list[QuotaRecord]] = {}
        for quota in records.values():  # store order: the first of two equal quotas wins, as always
            by_namespace.setdefault(quota.namespace, []).append(quota)
        return {name: NamespaceQuota(quotas) for name, quotas in by_namespace.items()}

    # -- GPUs -------------------------------------------------------------------------------

    def _remake_gpus(
        self,
        hosts: Iterable[str],
        inputs: JoinInputs,
        delta: dict[str, Any],
        gpu_pods: set[str],
        touched_pools: set[str],
        touched_nodes: set[str],
    ) -> bool:
        """Remake the hosts' GPU rows; `gpu_pods` gets the pods holding a GPU there, before or now.

        True when a GPU came, went or changed place in the list of GPUs (`Delta.gpus_moved`)."""
        segments, by_key = self._segments, self._gpu_by_key
        remade = placed = False
        for host in hosts:
            old = segments.get(host, _NO_SEGMENT)
            new, made = self._segment(host, inputs, old)
            if new is old:
                continue
            remade = True
            if new.gpus:
                segments[host] = new
            else:
                segments.pop(host, None)
            self._count(old, -1, touched_pools)
            self._count(new, +1, touched_pools)
            if old.all_stale != new.all_stale and host in self._nodes:
                touched_nodes.add(host)  # its metrics_stale flag moved
            for key, before, gpu in made:
                delta.setdefault(key, before)
                by_key[key] = gpu
            if old.keys != new.keys:
                placed = True
                for key in set(old.keys).difference(new.keys):
                    delta.setdefault(key, by_key.pop(key))
            # Pods holding a GPU here before or now: remade, and kept if equal (cheaper than finding which).
            gpu_pods.update(old.held)
            gpu_pods.update(new.held)
            if old.repeated or new.repeated:
                self._repeated.difference_update(old.repeated)
                self._repeated.update(new.repeated)
                for key, gpu in zip(new.keys, new.gpus):
                    if key in new.repeated:
                        by_key[key] = gpu  # the later row stands for the key, as in a dict made from the tuple
            if old.held.keys() != new.held.keys():
                for pod_key in old.held.keys() - new.held.keys():
                    self._pod_left(pod_key, host)
                for pod_key in new.held.keys() - old.held.keys():
                    self._pod_came(pod_key, host)
        if remade:
            self._hosts = sorted(segments)
            self._gpus = tuple(chain.from_iterable(segments[h].gpus for h in self._hosts))
        return placed

    def _segment(self, host: str, inputs: JoinInputs, old: _Segment) -> tuple[_Segment, list[tuple[str, Gpu | None, Gpu]]]:
        """The host's GPU rows, and (key, old row, new row) for each row that is a new object.

        Returns `old` itself when every row is the same as before."""
        samples = self._samples.get(host, ())
        node_pool = self._node_pool.get(host)
        idle = inputs.idle
        reading = idle.reading
        threshold = idle.threshold_pct
        all_stale = self._readings_stale
        previous = self._gpu_by_key
        made: list[tuple[str, Gpu | None, Gpu]] = []
        keys: list[str] = []
        gpus: list[Gpu] = []
        order: list[tuple[int, int]] = []
        seen: set[int] = set()
        for sample in samples:
            pool = node_pool if node_pool is not None else self._fallback_pool(sample.model, inputs.pool_order)
            key = sample.key
            is_idle, idle_for = reading(key, sample.pod is not None)
            values = gpu_row(sample, pool, is_idle, idle_for, threshold, all_stale or sample.stale)
            before = previous.get(key)
            if before is not None and same_row(before.__dict__, values, "util_pct"):
                gpu = before
            else:
                gpu = make_gpu(values)
                made.append((key, before, gpu))
            keys.append(key)
            gpus.append(gpu)
            mig = sample.mig_instance
            order.append((sample.index, -1 if mig is None else mig))
            seen.add(sample.index)
        # GPUs the node advertises but metrics don't cover still get an entry, so they show up (greyed) in views.
        rec = self._nodes.get(host)
        if rec is not None:
            model = rec.labels.get(GPU_PRODUCT_LABEL)
            for index in range(physical_gpus(rec)):
                if index not in seen:
                    key = f"{host}/{index}"
                    values = placeholder_row(host, node_pool, index, model)  # type: ignore[arg-type]
                    before = previous.get(key)
                    if before is not None and before.__dict__ == values:
                        gpu = before
                    else:
                        gpu = make_placeholder(values)
                        made.append((key, before, gpu))
                    keys.append(key)
                    gpus.append(gpu)
                    order.append((index, -1))
        if any(order[i] > order[i + 1] for i in range(len(order) - 1)):
            # Stable: repeated keys keep the batch's order.
            ranked = sorted(range(len(order)), key=order.__getitem__)
            keys, gpus = [keys[i] for i in ranked], [gpus[i] for i in ranked]
        if not made and not old.repeated and keys == old.keys:
            return old, made  # (with a key twice, rows reused by key may not be the rows in order)
        return _Segment(gpus, keys, len(samples)), made

    def _fallback_pool(self, model: str | None, order: Sequence[str]) -> str:
        """Pool of a GPU whose host has no Node (local NVML mode, lagging watch): by product."""
        pool = self._fallback_pools.get(model)
        if pool is None:
            pool = self._fallback_pools[model] = pool_for({GPU_PRODUCT_LABEL: (model or "").replace(" ", "-")}, order)
        return pool

    def _count(self, segment: _Segment, sign: int, touched_pools: set[str]) -> None:
        """Add (or take away) a segment's idle GPUs per pool, busy/idle GPUs per namespace, stale GPUs."""
        self._stale_gpus += sign * segment.stale
        pool_idle = self._pool_idle
        for pool, n in segment.idle_pools.items():
            pool_idle[pool] = pool_idle.get(pool, 0) + sign * n
            touched_pools.add(pool)
        for namespace, (busy, idle) in segment.spaces.items():
            space = self._spaces.get(namespace)
            if space is None:
                space = self._spaces[namespace] = NamespaceTotals()
            space.busy += sign * busy
            space.idle += sign * idle

    def _remake_pods(self, keys: Iterable[str], inputs: JoinInputs, delta: dict[str, Any]) -> None:
        """Remake the rows of pods whose record or links moved (their GPUs too)."""
        pods, rows = self._pods, self._pod_rows
        controllers = inputs.controllers
        for key in keys:
            pod = pods.get(key)
            if pod is None:
                replace_row(rows, key, None, make_pod, delta)
                continue
            owners, budgets, allowed = self._links.links(key, pod.rec, controllers)
            mine, mine_keys = self._held(key)
            values = pod_row(pod, mine, mine_keys, owners, budgets, allowed)
            old = rows.by_key.get(key)
            if old is None or not same_row(old.__dict__, values, "util_pct"):
                rows.set(key, make_pod(values))
                delta.setdefault(key, old)

    def _regpu_pods(self, keys: Iterable[str], delta: dict[str, Any]) -> None:
        """Rows of pods whose record and links did not move, only the GPUs they hold: redo POD_GPU_FIELDS.

        The rest of the row is the old row's (what a metrics refresh costs per pod: no owner
        chain, no budgets, no full row)."""
        rows = self._pod_rows
        for key in keys:
            old = rows.by_key.get(key)
            if old is None:
                continue  # no row: a sample names a pod without a record, and none came
            before = old.__dict__
            fields = pod_gpu_fields(*self._held(key))
            # Only the fields that moved: an equal value stays the old row's object (one gpu_keys tuple per pod, not per refresh).
            moved = [(f, v) for f, v in zip(POD_GPU_FIELDS, fields) if not (before[f] is v or before[f] == v)]
            if not moved:
                continue
            values = before.copy()
            values.update(moved)
            rows.set(key, make_pod(values))
            delta.setdefault(key, old)

    def _pod_came(self, pod_key: str, host: str) -> None:
        hosts = self._pod_hosts.get(pod_key)
        if hosts is None:
            self._pod_hosts[pod_key] = host
        elif isinstance(hosts, str):
            if hosts != host:
                self._pod_hosts[pod_key] = {hosts, host}
        else:
            hosts.add(host)

    def _pod_left(self, pod_key: str, host: str) -> None:
        hosts = self._pod_hosts[pod_key]
        if isinstance(hosts, str):
            if hosts == host:
                del self._pod_hosts[pod_key]
            return
        hosts.discard(host)
        if len(hosts) == 1:
            self._pod_hosts[pod_key] = next(iter(hosts))

    def _held(self, key: str) -> tuple[Sequence[Gpu], Sequence[str]]:
        """The GPU rows the pod holds, and their keys, in snapshot order."""
        hosts = self._pod_hosts.get(key)
        if hosts is None:
            return (), ()
        if isinstance(hosts, str):
            return self._segments[hosts].held[key]
        # GPUs on several hosts (metrics that lag a reschedule): in snapshot order
        parts = [self._segments[h].held[key] for h in sorted(hosts)]
        return [g for part in parts for g in part[0]], [k for part in parts for k in part[1]]

    # -- nodes, pools, namespaces -----------------------------------------------------------

    def _remake_nodes(self, names: Iterable[str], delta: dict[str, Any], touched_pools: set[str]) -> None:
        for name in names:
            rec = self._nodes.get(name)
            old = self._node_rows.get(name)
            if rec is None:
                values = None
            else:
                demand = self._demand.get(name)
                values = node_row(
                    rec,
                    self._node_pool[name],
                    demand.whole if demand is not None else 0,
                    demand.slices if demand is not None else 0,
                    demand.mig_requested() if demand is not None else {},
                    self._segments.get(name, _NO_SEGMENT).all_stale,
                )
            new = replace_row(self._node_rows, name, values, make_node, delta)
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
            values = pool_row(name, (by_name[n] for n in members), self._pool_idle.get(name, 0))
            if old is None or old.__dict__ != values:
                rows[name] = make_pool(values)
                moved = True
        if moved:
            self._pools = tuple(rows[name] for name in sorted(rows))

    def _remake_namespaces(self, now: datetime, delta: dict[str, Any]) -> None:
        now_us = micros(now)
        spaces = self._spaces
        names = {name for name, space in spaces.items() if space.listed}
        names.update(self._quotas)
        rows = self._space_rows
        moved = False
        for name in names:
            space = spaces.get(name)
            values = namespace_row(name, self._quotas.get(name), space, now_us)
            old = rows.get(name)
            if old is None or old.__dict__ != values:
                rows[name] = make_namespace(values)
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
