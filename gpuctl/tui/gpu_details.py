"""The panel under (or beside) the heatmap describing the selected cell."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from gpuctl.model import Gpu
from gpuctl.tui.fleet_index import FleetIndex
from gpuctl.tui.format import duration, mib, num, pct, sparkline
from gpuctl.tui.heatmap_layout import POOL_PREFIX
from gpuctl.tui.history import UtilHistory

SPARK_WIDTH = 40


class GpuDetails(Static):
    """Node, model, UUID, MIG profile, holder, idle time and a utilisation sparkline."""

    def describe(self, index: FleetIndex | None, history: UtilHistory, target: str | None) -> None:
        self.update(render_details(index, history, target, self.size.width or 80))


def render_details(index: FleetIndex | None, history: UtilHistory, target: str | None, width: int) -> Text:
    if index is None:
        return Text("No data yet.", style="dim")
    if target is None:
        return Text("Move the cursor onto a GPU (arrows or click) to see its details.", style="dim")
    if target.startswith(POOL_PREFIX):
        return _pool_text(index, target.removeprefix(POOL_PREFIX))
    gpu = index.gpus.get(target)
    if gpu is None:
        return Text(f"{target} is gone from the cluster.", style="dim")
    return _gpu_text(index, history, gpu, width)


def _pool_text(index: FleetIndex, name: str) -> Text:
    pool = index.pools.get(name)
    t = Text()
    t.append(f"pool {name}", style="bold")
    if pool is None:
        t.append(f"\n{len(index.nodes_by_pool.get(name, []))} nodes")
        return t
    t.append(f"  {', '.join(pool.gpu_models) or 'unknown model'}\n")
    t.append(f"nodes {pool.nodes_ready}/{pool.nodes} ready · GPUs {pool.gpus_allocated}/{pool.gpus_total} allocated · ")
    t.append(f"{pool.gpus_idle} idle", style="bold magenta" if pool.gpus_idle else "")
    t.append("\nenter or space folds/unfolds the pool", style="dim")
    return t


def _gpu_text(index: FleetIndex, history: UtilHistory, gpu: Gpu, width: int) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    node = index.nodes.get(gpu.node)
    t.append(f"{gpu.node}", style="bold")
    t.append(f" · GPU {gpu.index}")
    if gpu.mig_profile:
        t.append(f" · MIG {gpu.mig_profile} (instance {gpu.mig_instance})")
    t.append(f" · {gpu.model or (node.gpu_model if node else None) or 'unknown model'}\n")
    t.append(f"UUID {gpu.uuid or '—'} · pool {gpu.pool}")
    if node is not None and (node.cordoned or not node.ready):
        t.append(" · ")
        t.append("cordoned" if node.cordoned else "NotReady", style="bold yellow")
    t.append("\n")
    if gpu.pod is None:
        t.append("free (no pod holds it)", style="dim")
    else:
        t.append(f"pod {gpu.pod.namespace}/{gpu.pod.name}")
        if gpu.pod.container:
            t.append(f" ({gpu.pod.container})", style="dim")
        if gpu.idle:
            t.append(f"  IDLE for {duration(gpu.idle_for_s)}", style="bold magenta")
        else:
            t.append("  busy", style="green")
    t.append("\n")
    mem = f"{mib(gpu.mem_used_mib)}/{mib(gpu.mem_total_mib)} ({pct(gpu.mem_used_pct)})"
    t.append(f"util {pct(gpu.util_pct)} · mem {mem} · temp {num(gpu.temp_c, '°C')} · power {num(gpu.power_w, 'W')}")
    if gpu.xid:
        t.append(f" · XID {gpu.xid}", style="bold red")
    t.append("\n")
    series = history.series(gpu.key)
    spark_w = max(8, min(SPARK_WIDTH, width - 24))
    t.append("util history ")
    t.append(sparkline(series, spark_w), style="green")
    t.append(f" {len(series)} samples", style="dim")
    return t
