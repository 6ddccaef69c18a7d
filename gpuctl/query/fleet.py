"""Lookups derived once per snapshot so that front ends never scan the whole fleet.

The snapshot is a flat, immutable picture; views and answers need it grouped
(pool -> node -> GPUs, node -> pods) and summed (busy/idle per node).
`FleetIndex` does that in one pass and is shared by every view of the TUI (and
by anything else that answers questions about one snapshot). It reads only
the snapshot, which is immutable, so it can be built in a worker thread: at
12,500 GPUs that is most of what a metrics refresh costs the TUI. A metrics
refresh moves every reading but no GPU, so an index built on the one before
takes its keys and grouping over; per-node sums and the pods by key and by
node wait until a view asks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from operator import attrgetter, is_not

from gpuctl.model import Gpu, GpuPod, NamespaceUsage, Node, Pool, Snapshot, gpu_place
from gpuctl.query.filter import Facets, Filter

# The readings views colour and average by, in the order of `NodeStats.sums`.
READINGS: tuple[str, ...] = ("util_pct", "mem_used_pct", "temp_c", "power_w")


@dataclass(frozen=True, slots=True)
class NodeStats:
    gpus: int
    allocated: int
    busy: int
    idle: int
    util_mean: float | None
    # Per reading in READINGS: (sum, how many GPUs have it), for means over several nodes.
    sums: tuple[tuple[float, int], ...] = ((0.0, 0),) * len(READINGS)


_POD = attrgetter("pod")
_IDLE = attrgetter("idle")


NO_STATS = NodeStats(0, 0, 0, 0, None)


def _gpu_order(g: Gpu) -> tuple[int, int]:
    return (g.index, -1 if g.mig_instance is None else g.mig_instance)


class FleetIndex:
    """Grouped and summed views of one snapshot. Build with `FleetIndex(snapshot)`.

    `previous`: the index of the snapshot before it, if there is one. When the new
    snapshot lists the same GPUs in the same order (a metrics refresh: every reading
    moved, no GPU came or went), the GPU keys and the grouping by node are taken
    from it instead of being worked out again. `same_gpus`: the caller knows that
    it does (`Changes.same_gpus` of the update from `previous`'s snapshot to this
    one), so the GPUs' places are not even read to compare them."""

    def __init__(self, snapshot: Snapshot, previous: FleetIndex | None = None, *, same_gpus: bool = False) -> None:
        self.snapshot = snapshot
        self.nodes: dict[str, Node] = {n.name: n for n in snapshot.nodes}
        self.pools: dict[str, Pool] = {p.name: p for p in snapshot.pools}
        self.namespaces: dict[str, NamespaceUsage] = {n.name: n for n in snapshot.namespaces}
        listed = snapshot.gpus
        # Each GPU's place: what its key is made of (the places of `previous`'s GPUs when the caller says they are the same).
        places = previous._places if previous is not None and same_gpus else list(map(gpu_place, listed))
        self._places: list[tuple[str, int, int | None]] = places
        runs = previous._runs if previous is not None and (places is previous._places or places == previous._places) else None
        kept = runs is not None  # the snapshot's GPU keys are those of `previous`'s
        if runs is not None and previous is not None:
            self._places = previous._places  # equal: keep one list (12,500 tuples) for the indexes that follow
            self.snapshot_keys: list[str] = previous.snapshot_keys  # the key of each of snapshot.gpus, in its order
            by_node = {node: list(listed[start:end]) for node, start, end in runs}
        else:
            self.snapshot_keys, by_node, runs = _group(listed)
        # Where each node's GPUs lie in snapshot.gpus, when every node's lie together and in order (else None).
        self._runs: list[tuple[str, int, int]] | None = runs
        self.gpus: dict[str, Gpu] = dict(zip(self.snapshot_keys, listed))
        # GPUs of the snapshot a pod holds, and those flagged idle: a metrics refresh moves every GPU.
        self.allocated, self.idle = held_and_idle(listed)
        # A node that advertises GPUs but has no metrics still gets cells (shown
        # as "no data"), so a dead exporter is visible instead of a hole.
        placeholder_keys: list[str] = []
        pools: dict[str, set[str]] = defaultdict(set)  # pool -> its nodes, and the nodes of its GPUs
        for n in snapshot.nodes:
            pools[n.pool].add(n.name)
            if n.name not in by_node and n.gpu_allocatable > 0:
                placeholders = by_node[n.name] = []
                for i in range(n.gpu_allocatable):
                    g = Gpu(node=n.name, pool=n.pool, index=i, model=n.gpu_model)
                    self.gpus[g.key] = g
                    placeholders.append(g)
                    placeholder_keys.append(g.key)
        self.gpus_by_node: dict[str, list[Gpu]] = by_node
        for name, gs in self.gpus_by_node.items():
            pools[gs[0].pool].add(name)
        self.nodes_by_pool: dict[str, list[str]] = {p: sorted(ns) for p, ns in sorted(pools.items())}
        self._stats: dict[str, NodeStats] = {}  # per node, worked out when first asked for (stats)
        # What a layout of every GPU depends on: the very set of the index before when the keys are the
        # same, so a view comparing layouts compares it in no time (when the snapshot's keys were kept,
        # only the placeholders' need looking up: as many keys, all in the set before, are that set).
        fresh_keys = placeholder_keys if kept else self.gpus
        if previous is not None and len(self.gpus) == len(previous.gpu_keys) and previous.gpu_keys.issuperset(fresh_keys):
            self.gpu_keys: frozenset[str] = previous.gpu_keys
        else:
            self.gpu_keys = frozenset(self.gpus)

    # The pods by key and by node: worked out when first asked for, as the heatmap never asks.
    @cached_property
    def pods(self) -> dict[str, GpuPod]:
        return {p.key: p for p in self.snapshot.pods}

    @cached_property
    def pods_by_node(self) -> dict[str, list[GpuPod]]:
        by_node: dict[str, list[GpuPod]] = defaultdict(list)
        for pod in self.snapshot.pods:
            if pod.node:
                by_node[pod.node].append(pod)
        return by_node

    def stats(self, node: str) -> NodeStats:
        """The node's GPUs counted and summed, worked out when first asked for: a metrics refresh
        moves every reading, and a view sums only the nodes it shows."""
        s = self._stats.get(node)
        if s is None:
            gpus = self.gpus_by_node.get(node)
            if gpus is None:
                return NO_STATS
            s = self._stats[node] = _stats(gpus)
        return s

    def sum_every_node(self) -> None:
        """Work out every node's stats now (in the indexing thread, for a view that shows every node)."""
        for node in self.gpus_by_node:
            self.stats(node)

    def gpu_facets(self, g: Gpu) -> Facets:
        node = self.nodes.get(g.node)
        model = g.model or (node.gpu_model if node else None) or ""
        pod = g.pod
        return Facets(
            namespace=pod.namespace if pod else "",
            pool=g.pool,
            node=g.node,
            pod=pod.name if pod else "",
            model=model,
        )

    def node_facets(self, n: Node) -> Facets:
        """A node matches a namespace/pod term when one of its pods does."""
        pods = self.pods_by_node.get(n.name, [])
        return Facets(
            namespace=" ".join(sorted({p.namespace for p in pods})),
            pool=n.pool,
            node=n.name,
            pod=" ".join(p.name for p in pods),
            model=n.gpu_model or "",
        )

    def pod_facets(self, p: GpuPod) -> Facets:
        node = self.nodes.get(p.node) if p.node else None
        return Facets(
            namespace=p.namespace,
            pool=node.pool if node else "",
            node=p.node or "",
            pod=p.name,
            model=(node.gpu_model or "") if node else "",
        )

    def visible_gpus(self, flt: Filter) -> dict[str, list[Gpu]]:
        """Node name -> its GPUs that pass the filter (all of them when inactive)."""
        if not flt.active:
            return self.gpus_by_node
        out: dict[str, list[Gpu]] = {}
        for node, gs in self.gpus_by_node.items():
            kept = [g for g in gs if flt.matches(self.gpu_facets(g))]
            if kept:
                out[node] = kept
        return out


@dataclass(frozen=True, slots=True)
class Totals:
    """The fleet's GPUs in one line: allocatable, allocated (busy + idle + quiet), free."""

    gpus: int
    allocated: int
    busy: int
    idle: int

    @property
    def quiet(self) -> int:
        """Held, neither busy nor idle: under the threshold for less than the window, or unmeasured."""
        return max(0, self.allocated - self.busy - self.idle)

    @property
    def free(self) -> int:
        return max(0, self.gpus - self.allocated)


def totals(snapshot: Snapshot) -> Totals:
    """Pools give allocatable and allocated (whole GPUs, MIG instances, time-slice shares); GPUs give busy and idle."""
    return Totals(
        gpus=sum(p.gpus_total for p in snapshot.pools),
        allocated=sum(p.gpus_allocated for p in snapshot.pools),
        busy=sum(1 for g in snapshot.gpus if g.busy),
        idle=sum(1 for g in snapshot.gpus if g.idle),
    )


def idle_holders(snapshot: Snapshot) -> list[GpuPod]:
    """Pods whose GPUs are idle, the most idle GPU-time first (idle for x GPUs held), then by key."""
    return sorted((p for p in snapshot.pods if p.idle), key=lambda p: (-(p.idle_for_s or 0) * p.gpus_total, p.key))


def held_and_idle(gpus: Sequence[Gpu]) -> tuple[int, int]:
    """(GPUs a pod holds, GPUs flagged idle: only a held GPU is) among `gpus`, each counted in C."""
    return sum(map(is_not, map(_POD, gpus), repeat(None))), sum(map(_IDLE, gpus))


def _group(listed: tuple[Gpu, ...]) -> tuple[list[str], dict[str, list[Gpu]], list[tuple[str, int, int]] | None]:
    """(key of each GPU, node -> its GPUs in order, each node's (start, end) in `listed` or None when they are not together and in order)."""
    keys: list[str] = []
    by_node: dict[str, list[Gpu]] = {}
    runs: list[tuple[str, int, int]] = []
    # The join lists each node's GPUs together and in order: sort only the nodes where that is not so.
    unsorted: set[str] = set()
    at: str | None = None  # the node of the GPU before
    last = (0, 0)
    on_node: list[Gpu] = []
    for i, g in enumerate(listed):  # 12,500 GPUs, in a worker thread: the bulk of indexing anew
        keys.append(g.key)
        mig = g.mig_instance
        order = (g.index, -1 if mig is None else mig)
        if g.node != at:
            at = g.node
            runs.append((at, i, i))
            if at in by_node:
                unsorted.add(at)
                on_node = by_node[at]
            else:
                on_node = by_node[at] = []
        elif order < last:
            unsorted.add(at)
        last = order
        on_node.append(g)
    for name in unsorted:
        by_node[name].sort(key=_gpu_order)
    if unsorted:
        return keys, by_node, None
    ends = [start for _, start, _ in runs[1:]] + [len(listed)]
    return keys, by_node, [(node, start, end) for (node, start, _), end in zip(runs, ends)]


def _stats(gpus: list[Gpu]) -> NodeStats:
    allocated = busy = idle = 0
    util = mem = temp = power = 0.0
    n_util = n_mem = n_temp = n_power = 0
    for g in gpus:  # every GPU of the nodes a view shows: plain locals, no loop over READINGS, gpu_state inlined
        if (v := g.util_pct) is not None:
            util += v
            n_util += 1
        if (v := g.mem_used_mib) is not None and (total := g.mem_total_mib):  # Gpu.mem_used_pct
            mem += 100.0 * v / total
            n_mem += 1
        if (v := g.temp_c) is not None:
            temp += v
            n_temp += 1
        if (v := g.power_w) is not None:
            power += v
            n_power += 1
        if g.pod is not None:  # gpuctl.query.states.gpu_state: held, and busy or idle unless stale
            allocated += 1
            if not g.stale:
                if g.idle:
                    idle += 1
                elif g.busy:
                    busy += 1
    return NodeStats(
        gpus=len(gpus),
        allocated=allocated,
        busy=busy,
        idle=idle,
        util_mean=util / n_util if n_util else None,
        sums=((util, n_util), (mem, n_mem), (temp, n_temp), (power, n_power)),
    )
