"""Row builders: model objects -> tuples of `Cell`, shared by views and the node screen.

Sort values end with the row's name so equal values keep a stable order.
"""

from __future__ import annotations

from datetime import datetime

from gpuctl.model import Alert, Gpu, GpuPod, NamespaceUsage, Node, Pool
from gpuctl.tui.fleet_index import FleetIndex
from gpuctl.tui.format import age, bar, duration, gpu_count, mib, num, pct, short_model
from gpuctl.tui.keyed_table import Cell, Column, num_sort

NODE_COLUMNS = (
    Column("node", "node", 24),
    Column("pool", "pool", 12),
    Column("model", "model", 14),
    Column("alloc", "alloc", 6),
    Column("req", "req", 6),
    Column("busy", "busy", 4),
    Column("idle", "idle", 4),
    Column("util", "util", 5),
    Column("mig", "MIG config/state", 22),
    Column("taints", "taints", 22),
    Column("status", "status", 17),
)

POOL_COLUMNS = (
    Column("pool", "pool", 14),
    Column("models", "models", 18),
    Column("nodes", "ready", 5),
    Column("gpus", "GPUs", 5),
    Column("alloc", "alloc", 5),
    Column("free", "free", 5),
    Column("idle", "idle", 5),
)

POD_COLUMNS = (
    Column("namespace", "namespace", 14),
    Column("pod", "pod", 30),
    Column("gpus", "GPUs", 6),
    Column("util", "util", 5),
    Column("idle", "idle for", 10),
    Column("owner", "owner", 26),
    Column("priority", "priority", 14),
    Column("age", "age", 7),
    Column("node", "node", 24),
)

QUOTA_COLUMNS = (
    Column("namespace", "namespace", 16),
    Column("quota", "quota used/hard", 22),
    Column("requested", "requested", 9),
    Column("busy", "busy", 5),
    Column("idle", "idle", 5),
    Column("hours", "GPU-hours", 10),
)

ALERT_COLUMNS = (
    Column("severity", "severity", 9),
    Column("name", "alert", 22),
    Column("state", "state", 8),
    Column("target", "target", 28),
    Column("since", "for", 7),
    Column("summary", "summary", 48),
)

GPU_COLUMNS = (
    Column("gpu", "GPU", 10),
    Column("mig", "MIG", 9),
    Column("util", "util", 5),
    Column("mem", "memory", 13),
    Column("temp", "temp", 5),
    Column("power", "power", 6),
    Column("pod", "pod", 34),
    Column("idle", "idle for", 10),
)

_SEVERITY_RANK = {"critical": 0, "error": 1, "warning": 2, "info": 3}


def _yes(value: bool, text: str, style: str) -> Cell:
    return Cell(text if value else "", sort=(not value,), style=style if value else "")


def node_row(index: FleetIndex, node: Node) -> tuple[Cell, ...]:
    s = index.stats(node.name)
    mig = "—"
    if node.mig_config or node.mig_config_state:
        mig = f"{node.mig_config or '?'}/{node.mig_config_state or '?'}"
    mig_style = "bold red" if node.mig_config_state == "failed" else ("yellow" if node.mig_config_state == "pending" else "")
    taints = ",".join(f"{t.key.removeprefix('nvidia.com/')}:{t.effect}" for t in node.taints) or "—"
    status = ("Ready" if node.ready else "NotReady") + (",Cordoned" if node.cordoned else "")
    status_style = "bold red" if not node.ready else ("yellow" if node.cordoned else "green")
    mig_alloc = sum(node.mig_allocatable.values())
    mig_req = sum(node.mig_requested.values())
    alloc = gpu_count(node.gpu_allocatable, mig_alloc)
    return (
        Cell(node.name, sort=(node.name,)),
        Cell(node.pool, sort=(node.pool, node.name)),
        Cell(short_model(node.gpu_model), sort=(node.gpu_model or "", node.name)),
        Cell(alloc, sort=(node.gpu_allocatable + mig_alloc, node.name), right=True),
        Cell(gpu_count(node.gpu_requested, mig_req), sort=(node.gpu_requested + mig_req, node.name), right=True),
        Cell(str(s.busy), sort=(s.busy, node.name), right=True),
        Cell(str(s.idle), sort=(s.idle, node.name), right=True, style="bold magenta" if s.idle else ""),
        Cell(pct(s.util_mean), sort=(num_sort(s.util_mean), node.name), right=True),
        Cell(mig, sort=(mig, node.name), style=mig_style),
        Cell(taints, sort=(taints, node.name)),
        Cell(status, sort=(status, node.name), style=status_style),
    )


def pool_row(pool: Pool) -> tuple[Cell, ...]:
    free = pool.gpus_total - pool.gpus_allocated
    ready_style = "" if pool.nodes_ready == pool.nodes else "yellow"
    return (
        Cell(pool.name, sort=(pool.name,)),
        Cell(", ".join(map(short_model, pool.gpu_models)) or "—", sort=(",".join(pool.gpu_models), pool.name)),
        Cell(f"{pool.nodes_ready}/{pool.nodes}", sort=(pool.nodes, pool.name), style=ready_style, right=True),
        Cell(str(pool.gpus_total), sort=(pool.gpus_total, pool.name), right=True),
        Cell(str(pool.gpus_allocated), sort=(pool.gpus_allocated, pool.name), right=True),
        Cell(str(free), sort=(free, pool.name), right=True, style="green" if free else ""),
        Cell(str(pool.gpus_idle), sort=(pool.gpus_idle, pool.name), right=True, style="bold magenta" if pool.gpus_idle else ""),
    )


def pod_row(pod: GpuPod, now: datetime) -> tuple[Cell, ...]:
    k = pod.key
    gpus = gpu_count(pod.gpus, sum(pod.mig.values()))
    if pod.idle:
        idle = Cell(f"IDLE {duration(pod.idle_for_s)}", sort=(pod.idle_for_s or 0.0, k), style="bold magenta")
    elif pod.phase != "Running":
        idle = Cell(pod.phase, sort=(-1.0, k), style="yellow")
    else:
        idle = Cell("busy" if pod.util_pct is not None else "—", sort=(-2.0, k), style="dim")
    owner = f"{pod.owner_kind}/{pod.owner_name}" if pod.owner_kind else "—"
    created = pod.created.timestamp() if pod.created else 0.0
    return (
        Cell(pod.namespace, sort=(pod.namespace, pod.name)),
        Cell(pod.name, sort=(pod.name, pod.namespace)),
        Cell(gpus, sort=(pod.gpus_total, k), right=True),
        Cell(pct(pod.util_pct), sort=(num_sort(pod.util_pct), k), right=True),
        idle,
        Cell(owner, sort=(owner, k)),
        Cell(pod.priority_class or "—", sort=(pod.priority_class or "", k)),
        Cell(age(pod.created, now), sort=(-created, k), right=True),
        Cell(pod.node or "—", sort=(pod.node or "", k)),
    )


def quota_row(ns: NamespaceUsage, bar_width: int = 12) -> tuple[Cell, ...]:
    n = ns.name
    if ns.gpu_quota_hard is None:
        quota = Cell(f"{ns.gpu_quota_used:g} used, no quota", sort=(-1.0, n), style="dim")
    else:
        hard = ns.gpu_quota_hard
        frac = ns.gpu_quota_used / hard if hard else 1.0
        style = "bold red" if frac >= 1 else ("yellow" if frac >= 0.8 else "green")
        text = f"{bar(ns.gpu_quota_used, hard, bar_width)} {ns.gpu_quota_used:g}/{hard:g}"
        quota = Cell(text, sort=(frac, n), style=style)
    return (
        Cell(n, sort=(n,)),
        quota,
        Cell(str(ns.gpus_requested), sort=(ns.gpus_requested, n), right=True),
        Cell(str(ns.gpus_busy), sort=(ns.gpus_busy, n), right=True),
        Cell(str(ns.gpus_idle), sort=(ns.gpus_idle, n), right=True, style="bold magenta" if ns.gpus_idle else ""),
        Cell(f"{ns.gpu_hours:,.1f}", sort=(ns.gpu_hours, n), right=True),
    )


def alert_key(a: Alert) -> str:
    return "|".join((a.name, a.node or "", a.gpu or "", a.namespace or "", a.pod or ""))


def alert_row(a: Alert, now: datetime) -> tuple[Cell, ...]:
    k = alert_key(a)
    sev = a.severity or "none"
    sev_style = {"critical": "bold red", "error": "red", "warning": "yellow"}.get(sev, "")
    target = a.gpu or a.pod or a.node or a.namespace or "cluster"
    if a.pod and a.namespace:
        target = f"{a.namespace}/{a.pod}"
    since = a.since.timestamp() if a.since else 0.0
    return (
        Cell(sev, sort=(_SEVERITY_RANK.get(sev, 9), k), style=sev_style),
        Cell(a.name, sort=(a.name, k)),
        Cell(a.state, sort=(a.state, k), style="dim" if a.state != "firing" else ""),
        Cell(target, sort=(target, k)),
        Cell(age(a.since, now), sort=(-since, k), right=True),
        Cell(a.summary or "", sort=(a.summary or "", k)),
    )


def gpu_row(g: Gpu) -> tuple[Cell, ...]:
    k = g.key
    order = (g.index, g.mig_instance or 0)
    mem = f"{mib(g.mem_used_mib)}/{mib(g.mem_total_mib)}"
    pod = f"{g.pod.namespace}/{g.pod.name}" if g.pod else "free"
    idle = Cell(f"IDLE {duration(g.idle_for_s)}", sort=(g.idle_for_s or 0.0, k), style="bold magenta") if g.idle else Cell("", sort=(-1.0, k))
    return (
        Cell(f"{g.index}" + (f" #{g.mig_instance}" if g.mig_instance is not None else "") + (" XID" if g.xid else ""),
             sort=order, style="bold red" if g.xid else ""),
        Cell(g.mig_profile or "—", sort=(g.mig_profile or "", order)),
        Cell(pct(g.util_pct), sort=(num_sort(g.util_pct), order), right=True),
        Cell(mem, sort=(num_sort(g.mem_used_mib), order), right=True),
        Cell(num(g.temp_c, "°"), sort=(num_sort(g.temp_c), order), right=True),
        Cell(num(g.power_w, "W"), sort=(num_sort(g.power_w), order), right=True),
        Cell(pod, sort=(pod, order), style="dim" if g.pod is None else ""),
        idle,
    )
