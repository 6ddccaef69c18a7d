"""The panel under (or, on wide screens, beside) the heatmap describing the selected cell."""

from __future__ import annotations

from rich.text import Text

from gpuctl.model import Gpu
from gpuctl.query.fleet import FleetIndex
from gpuctl.query.states import GpuState, gpu_state
from gpuctl.render.format import duration, mib, num, pct, sparkline
from gpuctl.tui.empty import metrics_hint
from gpuctl.tui.heatmap_layout import POOL_PREFIX
from gpuctl.tui.history import UtilHistory
from gpuctl.tui.line_text import LineText

SPARK_WIDTH = 40
Fact = Text  # one short fact; facts are grouped into lines


class GpuDetails(LineText):
    """Node, model, UUID, MIG profile, holder, idle time and a utilisation sparkline.

    Its size comes from app.tcss (`#gpu-details`), never from its text, so a new text
    repaints it without a layout pass of the whole screen (~30 ms at 8,000 GPUs), and
    only the lines that read differently (a metrics refresh: the readings and the sparkline)."""

    _described: tuple[FleetIndex | None, UtilHistory, str | None] | None = None

    def describe(self, index: FleetIndex | None, history: UtilHistory, target: str | None) -> None:
        self._described = (index, history, target)
        stacked = any(node.has_class("wide") for node in self.ancestors)
        self.update(render_details(index, history, target, self.size.width or 80, stacked=stacked))

    def on_resize(self) -> None:
        # The sparkline fits the panel's width: say it again at the new one, whenever the
        # resize lands (before or after the first update).
        if self._described is not None:
            self.describe(*self._described)


def render_details(
    index: FleetIndex | None, history: UtilHistory, target: str | None, width: int, *, stacked: bool = False
) -> Text:
    if index is None:
        return Text("No data yet.", style="dim")
    if target is None:
        if not index.gpus:
            return Text("")
        return Text("Move the cursor onto a GPU (arrows or click) to see its details.", style="dim")
    if target.startswith(POOL_PREFIX):
        groups = _pool_facts(index, target.removeprefix(POOL_PREFIX))
    elif (gpu := index.gpus.get(target)) is None:
        return Text(f"{target} is gone from the cluster.", style="dim")
    else:
        groups = _gpu_facts(index, history, gpu, width)
    # Under the map each group is one line; beside it each fact gets its own line.
    lines = [fact for group in groups for fact in group] if stacked else [Text(" · ").join(g) for g in groups]
    out = Text("\n").join(lines)
    out.no_wrap = not stacked
    out.overflow = "ellipsis"
    return out


def _pool_facts(index: FleetIndex, name: str) -> list[list[Fact]]:
    pool = index.pools.get(name)
    head = [Text(f"pool {name}", style="bold")]
    if pool is None:
        return [head, [Text(f"{len(index.nodes_by_pool.get(name, []))} nodes")]]
    head.append(Text(", ".join(pool.gpu_models) or "unknown model"))
    idle = Text(f"{pool.gpus_idle} idle", style="bold magenta" if pool.gpus_idle else "")
    counts = [
        Text(f"nodes {pool.nodes_ready}/{pool.nodes} ready"),
        Text(f"GPUs {pool.gpus_allocated}/{pool.gpus_total} allocated"),
        idle,
    ]
    return [head, counts, [Text("enter or space folds/unfolds the pool", style="dim")]]


def _gpu_facts(index: FleetIndex, history: UtilHistory, gpu: Gpu, width: int) -> list[list[Fact]]:
    node = index.nodes.get(gpu.node)
    ident = [Text(gpu.node, style="bold"), Text(f"GPU {gpu.index}")]
    if gpu.mig_profile:
        ident.append(Text(f"MIG {gpu.mig_profile} (instance {gpu.mig_instance})"))
    ident.append(Text(gpu.model or (node.gpu_model if node else None) or "unknown model"))
    where = [Text(f"UUID {gpu.uuid or '—'}"), Text(f"pool {gpu.pool}")]
    if node is not None and (node.cordoned or not node.ready):
        where.append(Text("cordoned" if node.cordoned else "NotReady", style="bold yellow"))
    state = gpu_state(gpu)
    if gpu.pod is None:
        holder = [Text("free (no pod holds it)", style="dim")]
    else:
        pod = Text(f"pod {gpu.pod.namespace}/{gpu.pod.name}")
        if gpu.pod.container:
            pod.append(f" ({gpu.pod.container})", style="dim")
        if state is GpuState.STALE:
            doing = Text("STALE: no recent reading that moved; neither busy nor idle", style="bold yellow")
        elif state is GpuState.IDLE:
            doing = Text(f"IDLE for {duration(gpu.idle_for_s)}", style="bold magenta")
        elif state is GpuState.BUSY:
            doing = Text("busy", style="green")
        else:
            doing = Text(f"quiet: under {index.snapshot.idle_threshold_pct:g}%, not idle yet", style="yellow")
        holder = [pod, doing]
    metrics = [
        Text(f"util {pct(gpu.util_pct)}"),
        Text(f"mem {mib(gpu.mem_used_mib)}/{mib(gpu.mem_total_mib)} ({pct(gpu.mem_used_pct)})"),
        Text(f"temp {num(gpu.temp_c, '°C')}"),
        Text(f"power {num(gpu.power_w, 'W')}"),
    ]
    if gpu.xid:
        metrics.append(Text(f"XID {gpu.xid}", style="bold red"))
    if gpu.util_pct is None and (hint := metrics_hint(index.snapshot)) is not None:
        metrics = [Text(hint, style="yellow")]
    series = history.series(gpu.key)
    spark = Text("util history ")
    spark.append(sparkline(series, max(8, min(SPARK_WIDTH, width - 26))), style="green")
    spark.append(f" {len(series)} samples", style="dim")
    return [ident, where, holder, metrics, [spark]]
