"""Drill-down into one node: its facts, its GPUs (MIG instances included) and its pods."""

from __future__ import annotations

from functools import partial
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Static

from gpuctl.query.fleet import FleetIndex
from gpuctl.render.format import age, gpu_count, short_model
from gpuctl.tui.row_table import RowTable
from gpuctl.tui.rows import GPU_COLUMNS, POD_COLUMNS, gpu_cells, pod_cells
from gpuctl.tui.status_bar import StatusBar


def node_header(index: FleetIndex, name: str) -> Text:
    """Four short lines: identity and state, GPU counts, MIG layout, taints."""
    node = index.nodes.get(name)
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(name, style="bold")
    if node is None:
        t.append(" is no longer in the cluster; this screen fills again if it returns.", style="yellow")
        return t
    s = index.stats(name)
    state = ("Ready" if node.ready else "NotReady") + (", cordoned" if node.cordoned else "")
    t.append(f" · pool {node.pool} · {short_model(node.gpu_model)} · ")
    t.append(state, style="green" if node.ready and not node.cordoned else "bold yellow")
    t.append(f" · age {age(node.created, index.snapshot.taken_at)}\n")
    mig_alloc = sum(node.mig_allocatable.values())
    mig_req = sum(node.mig_requested.values())
    t.append(f"GPUs allocatable {gpu_count(node.gpu_allocatable, mig_alloc, replicas=node.gpu_replicas)}")
    t.append(f" · requested {gpu_count(node.gpu_requested, mig_req, node.gpu_slices_requested)}")
    t.append(f" · busy {s.busy} · ")
    t.append(f"idle {s.idle}", style="bold magenta" if s.idle else "")
    t.append("\n")
    if node.mig_capable or node.mig_config:
        state_style = {"failed": "bold red", "pending": "yellow"}.get(node.mig_config_state or "", "")
        t.append(f"MIG {node.mig_config or '—'} (")
        t.append(node.mig_config_state or "unknown", style=state_style)
        t.append(")")
        if node.mig_allocatable:
            slices = " · ".join(
                f"{k.removeprefix('nvidia.com/mig-')} {node.mig_requested.get(k, 0)}/{v}"
                for k, v in sorted(node.mig_allocatable.items())
            )
            t.append(f" · slices used {slices}")
    else:
        t.append("MIG not enabled", style="dim")
    t.append("\n")
    taints = ", ".join(f"{tn.key}={tn.value or ''}:{tn.effect}" for tn in node.taints) or "none"
    t.append(f"taints {taints}", style="dim")
    return t


class NodeScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "app.pop_screen", "Back", id="node.back", tooltip="Back to the previous view"),
        Binding("tab", "focus_next", "Next table", show=False),
    ]

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Static("", id="node-header")
        yield RowTable(GPU_COLUMNS, sort_by="gpu", empty="No GPUs reported on this node.", id="node-gpus")
        yield RowTable(POD_COLUMNS, sort_by="pod", empty="No GPU pods on this node.", id="node-pods")
        yield Footer()

    def show(self, index: FleetIndex) -> None:
        self.query_one("#node-header", Static).update(node_header(index, self.node))
        gpus = {g.key: g for g in index.gpus_by_node.get(self.node, [])}
        self.query_one("#node-gpus", RowTable).set_rows(gpus, gpu_cells)
        pods = {p.key: p for p in index.pods_by_node.get(self.node, [])}
        snap = index.snapshot
        cells = partial(pod_cells, now=snap.taken_at, threshold=snap.idle_threshold_pct)
        self.query_one("#node-pods", RowTable).set_rows(pods, cells)
