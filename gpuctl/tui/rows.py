"""Table definitions: columns (with their sort keys) and cell builders per kind of row.

Sort keys read the model directly (cheap, run for every row on each update);
cell builders format text (run only for rows on screen).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gpuctl.model import Alert, Gpu, GpuPod, NamespaceUsage, Node, Pool
from gpuctl.query.fleet import NodeStats
from gpuctl.query.states import PodState, pod_state
from gpuctl.render.format import (
    age,
    bar,
    duration,
    gpu_count,
    mib,
    mig_state,
    node_status,
    num,
    owner,
    pct,
    short_model,
    taints,
)
from gpuctl.tui.row_table import Cell, Column, num_sort

IDLE = "bold magenta"
_SEVERITY_RANK = {"critical": 0, "error": 1, "warning": 2, "info": 3}


def _created(ts: datetime | None) -> float:
    return ts.timestamp() if ts else 0.0


# -- pools ------------------------------------------------------------------------------------

POOL_COLUMNS: tuple[Column[Pool], ...] = (
    Column("pool", "pool", 14, lambda p: p.name),
    Column("models", "models", 18, lambda p: p.gpu_models),
    Column("nodes", "ready", 5, lambda p: (p.nodes_ready, p.nodes), right=True),
    Column("gpus", "GPUs", 5, lambda p: p.gpus_total, right=True),
    Column("alloc", "alloc", 5, lambda p: p.gpus_allocated, right=True),
    Column("free", "free", 5, lambda p: p.gpus_total - p.gpus_allocated, right=True),
    Column("idle", "idle", 5, lambda p: p.gpus_idle, right=True),
)


def pool_cells(p: Pool) -> tuple[Cell, ...]:
    free = p.gpus_total - p.gpus_allocated
    return (
        Cell(p.name),
        Cell(", ".join(map(short_model, p.gpu_models)) or "—"),
        Cell(f"{p.nodes_ready}/{p.nodes}", "" if p.nodes_ready == p.nodes else "yellow"),
        Cell(str(p.gpus_total)),
        Cell(str(p.gpus_allocated)),
        Cell(str(free), "green" if free else ""),
        Cell(str(p.gpus_idle), IDLE if p.gpus_idle else ""),
    )


# -- nodes ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeItem:
    node: Node
    stats: NodeStats

    @property
    def gpus(self) -> int:
        return self.node.gpu_allocatable + sum(self.node.mig_allocatable.values())

    @property
    def requested(self) -> int:
        return self.node.gpu_requested + sum(self.node.mig_requested.values())


NODE_COLUMNS: tuple[Column[NodeItem], ...] = (
    Column("node", "node", 24, lambda i: i.node.name),
    Column("pool", "pool", 12, lambda i: (i.node.pool, i.node.name)),
    Column("model", "model", 14, lambda i: i.node.gpu_model or ""),
    Column("alloc", "alloc", 6, lambda i: i.gpus, right=True),
    Column("req", "req", 6, lambda i: i.requested, right=True),
    Column("busy", "busy", 4, lambda i: i.stats.busy, right=True),
    Column("idle", "idle", 4, lambda i: i.stats.idle, right=True),
    Column("util", "util", 5, lambda i: num_sort(i.stats.util_mean), right=True),
    Column("mig", "MIG config/state", 22, lambda i: mig_state(i.node)),
    Column("taints", "taints", 22, lambda i: taints(i.node)),
    Column("status", "status", 17, lambda i: node_status(i.node)),
)


def node_cells(i: NodeItem) -> tuple[Cell, ...]:
    n, s = i.node, i.stats
    mig_style = {"failed": "bold red", "pending": "yellow"}.get(n.mig_config_state or "", "")
    status_style = "bold red" if not n.ready else ("yellow" if n.cordoned else "green")
    return (
        Cell(n.name),
        Cell(n.pool),
        Cell(short_model(n.gpu_model)),
        Cell(gpu_count(n.gpu_allocatable, sum(n.mig_allocatable.values()), replicas=n.gpu_replicas)),
        Cell(gpu_count(n.gpu_requested, sum(n.mig_requested.values()), n.gpu_slices_requested)),
        Cell(str(s.busy)),
        Cell(str(s.idle), IDLE if s.idle else ""),
        Cell(pct(s.util_mean)),
        Cell(mig_state(n), mig_style),
        Cell(taints(n)),
        Cell(node_status(n), status_style),
    )


# -- pods -------------------------------------------------------------------------------------


def _idle_sort(p: GpuPod) -> float:
    """Idle pods by how long, then pending ones, then busy ones."""
    if p.idle:
        return p.idle_for_s or 0.0
    return -1.0 if p.phase != "Running" else -2.0


POD_COLUMNS: tuple[Column[GpuPod], ...] = (
    Column("namespace", "namespace", 14, lambda p: (p.namespace, p.name)),
    Column("pod", "pod", 30, lambda p: p.name),
    Column("gpus", "GPUs", 6, lambda p: p.gpus_total, right=True),
    Column("util", "util", 5, lambda p: num_sort(p.util_pct), right=True),
    Column("idle", "idle for", 10, _idle_sort),
    Column("owner", "owner", 26, owner),
    Column("priority", "priority", 18, lambda p: p.priority_class or ""),
    Column("age", "age", 7, lambda p: -_created(p.created), right=True),
    Column("node", "node", 24, lambda p: p.node or ""),
)


def pod_cells(p: GpuPod, now: datetime, threshold: float = 5.0) -> tuple[Cell, ...]:
    match pod_state(p, threshold):
        case PodState.IDLE:
            idle = Cell(f"IDLE {duration(p.idle_for_s)}", IDLE)
        case PodState.NOT_RUNNING:
            idle = Cell(p.phase, "yellow")
        case PodState.UNMEASURED:
            idle = Cell("—", "dim")
        case PodState.BUSY:
            idle = Cell("busy", "dim")
        case PodState.QUIET:
            idle = Cell("quiet", "yellow")
    return (
        Cell(p.namespace),
        Cell(p.name),
        Cell(gpu_count(p.gpus, sum(p.mig.values()), p.gpu_slices)),
        Cell(pct(p.util_pct)),
        idle,
        Cell(owner(p)),
        Cell(p.priority_class or "—"),
        Cell(age(p.created, now)),
        Cell(p.node or "—"),
    )


# -- quotas -----------------------------------------------------------------------------------


def _quota_fill(ns: NamespaceUsage) -> float:
    if ns.gpu_quota_hard is None:
        return -1.0
    return ns.gpu_quota_used / ns.gpu_quota_hard if ns.gpu_quota_hard else 1.0


def _mig_quota_fill(ns: NamespaceUsage) -> float:
    """The fullest MIG quota's used/hard; -1 without any."""
    fills = [ns.mig_quota_used.get(k, 0.0) / hard if hard else 1.0 for k, hard in ns.mig_quota_hard.items()]
    return max(fills, default=-1.0)


QUOTA_COLUMNS: tuple[Column[NamespaceUsage], ...] = (
    Column("namespace", "namespace", 16, lambda n: n.name),
    Column("quota", "quota used/hard", 22, _quota_fill),
    Column("requested", "requested", 9, lambda n: n.gpus_requested, right=True),
    Column("busy", "busy", 5, lambda n: n.gpus_busy, right=True),
    Column("idle", "idle", 5, lambda n: n.gpus_idle, right=True),
    Column("hours", "GPU-hours", 10, lambda n: n.gpu_hours, right=True),
    Column("mig", "MIG quota used/hard", 30, _mig_quota_fill),
)


def _fill_style(frac: float) -> str:
    return "bold red" if frac >= 1 else ("yellow" if frac >= 0.8 else "green")


def quota_cells(ns: NamespaceUsage, bar_width: int = 12) -> tuple[Cell, ...]:
    if ns.gpu_quota_hard is None:
        quota = Cell(f"{ns.gpu_quota_used:g} used, no quota", "dim")
    else:
        used, hard = ns.gpu_quota_used, ns.gpu_quota_hard
        quota = Cell(f"{bar(used, hard, bar_width)} {used:g}/{hard:g}", _fill_style(_quota_fill(ns)))
    if ns.mig_quota_hard:
        profiles = (
            f"{key.removeprefix('nvidia.com/mig-')} {ns.mig_quota_used.get(key, 0.0):g}/{hard:g}"
            for key, hard in ns.mig_quota_hard.items()
        )
        mig = Cell(" · ".join(profiles), _fill_style(_mig_quota_fill(ns)))
    else:
        mig = Cell("—", "dim")
    return (
        Cell(ns.name),
        quota,
        Cell(str(ns.gpus_requested)),
        Cell(str(ns.gpus_busy)),
        Cell(str(ns.gpus_idle), IDLE if ns.gpus_idle else ""),
        Cell(f"{ns.gpu_hours:,.1f}"),
        mig,
    )


# -- alerts -----------------------------------------------------------------------------------


def alert_key(a: Alert) -> str:
    return "|".join((a.name, a.node or "", a.gpu or "", a.namespace or "", a.pod or ""))


def _target(a: Alert) -> str:
    if a.pod and a.namespace:
        return f"{a.namespace}/{a.pod}"
    return a.gpu or a.pod or a.node or a.namespace or "cluster"


ALERT_COLUMNS: tuple[Column[Alert], ...] = (
    Column("severity", "severity", 9, lambda a: _SEVERITY_RANK.get(a.severity or "", 9)),
    Column("name", "alert", 22, lambda a: a.name),
    Column("state", "state", 8, lambda a: a.state),
    Column("target", "target", 28, _target),
    Column("since", "for", 7, lambda a: -_created(a.since), right=True),
    Column("summary", "summary", 48, lambda a: a.summary or ""),
)


def alert_cells(a: Alert, now: datetime) -> tuple[Cell, ...]:
    sev = a.severity or "none"
    return (
        Cell(sev, {"critical": "bold red", "error": "red", "warning": "yellow"}.get(sev, "")),
        Cell(a.name),
        Cell(a.state, "" if a.state == "firing" else "dim"),
        Cell(_target(a)),
        Cell(age(a.since, now)),
        Cell(a.summary or ""),
    )


# -- GPUs of one node -------------------------------------------------------------------------


def _gpu_order(g: Gpu) -> tuple[int, int]:
    return (g.index, g.mig_instance or 0)


GPU_COLUMNS: tuple[Column[Gpu], ...] = (
    Column("gpu", "GPU", 9, _gpu_order),
    Column("mig", "MIG", 8, lambda g: (g.mig_profile or "", _gpu_order(g))),
    Column("util", "util", 4, lambda g: num_sort(g.util_pct), right=True),
    Column("mem", "memory", 11, lambda g: num_sort(g.mem_used_mib), right=True),
    Column("temp", "temp", 5, lambda g: num_sort(g.temp_c), right=True),
    Column("power", "power", 6, lambda g: num_sort(g.power_w), right=True),
    Column("pod", "pod", 34, lambda g: g.pod.key if g.pod else ""),
    Column("idle", "idle for", 10, lambda g: (g.idle_for_s or 0.0) if g.idle else -1.0),
)


def gpu_cells(g: Gpu) -> tuple[Cell, ...]:
    label = f"{g.index}" + (f" #{g.mig_instance}" if g.mig_instance is not None else "") + (" XID" if g.xid else "")
    return (
        Cell(label, "bold red" if g.xid else ""),
        Cell(g.mig_profile or "—"),
        Cell(pct(g.util_pct)),
        Cell(f"{mib(g.mem_used_mib)}/{mib(g.mem_total_mib)}"),
        Cell(num(g.temp_c, "°")),
        Cell(num(g.power_w, "W")),
        Cell(g.pod.key if g.pod else "free", "" if g.pod else "dim"),
        Cell(f"IDLE {duration(g.idle_for_s)}", IDLE) if g.idle else Cell(""),
    )
