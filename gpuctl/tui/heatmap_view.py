"""The heatmap tab: legend, the heatmap itself and the details of the selected cell."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Vertical
from textual.widgets import Static

from gpuctl.model import Changes
from gpuctl.query.filter import Filter
from gpuctl.query.fleet import FleetIndex
from gpuctl.tui.gpu_details import GpuDetails
from gpuctl.tui.heatmap import Heatmap
from gpuctl.tui.history import UtilHistory
from gpuctl.tui.palette import IDLE_BG, NO_DATA_BG, SPECS, XID_BG, Metric, cell_style, legend_ramp, next_metric

WIDE_AT = 150


def legend_text(metric: Metric, dense: bool) -> Text:
    spec = SPECS[metric]
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"{spec.label} {spec.unit} ", style="bold")
    ramp = legend_ramp(metric)
    t.append(f"{ramp[0][0]} ")
    for _, colour in ramp:
        t.append(" ", style=cell_style(colour))
    t.append(f" {spec.high:.0f}  ")
    states = (
        ("z", IDLE_BG, "idle"),
        ("·", ramp[0][1], "free"),
        ("?", NO_DATA_BG, "no data"),
        ("~", NO_DATA_BG, "stale"),
        ("!", XID_BG, "XID"),
    )
    for glyph, bg, label in states:
        t.append(glyph if dense else glyph * 2, style=cell_style(bg))
        t.append(f" {label}  ")
    return t


class HeatmapView(Vertical):
    """Owns the heatmap's modes; the app hands it each new index."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "m", "cycle_metric", "Metric", id="heatmap.metric", tooltip="Colour by util, memory, temperature or power"
        ),
        Binding("d", "toggle_dense", "Dense", id="heatmap.dense", tooltip="Pack nodes side by side without labels"),
        Binding(
            "c", "toggle_pool", "Fold pool", id="heatmap.fold", tooltip="Collapse or expand the pool under the cursor"
        ),
        Binding(
            "C", "fold_all", "Fold all", id="heatmap.fold_all", show=False,
            tooltip="Collapse every pool, or expand them all",
        ),
    ]

    def __init__(self, history: UtilHistory, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.history = history
        self.index: FleetIndex | None = None

    def compose(self) -> ComposeResult:
        yield Static(legend_text(Metric.UTIL, False), id="legend")
        with Container(id="heatmap-body"):
            yield Heatmap(id="heatmap")
            yield GpuDetails(id="gpu-details")

    def on_resize(self) -> None:
        # Wide terminals get the details beside the map, so the map keeps its height.
        wide = self.size.width >= WIDE_AT
        if wide != self.has_class("wide"):
            self.set_class(wide, "wide")
            self._describe(self.heatmap.cursor)

    @property
    def heatmap(self) -> Heatmap:
        return self.query_one(Heatmap)

    def show(self, index: FleetIndex, changes: Changes, flt: Filter) -> None:
        self.index = index
        heatmap = self.heatmap
        heatmap.show(index, changes, flt)
        cursor = heatmap.cursor
        if changes.everything or cursor is None or cursor in changes.gpus or cursor.startswith("pool:"):
            self._describe(cursor)

    def _describe(self, target: str | None) -> None:
        self.query_one(GpuDetails).describe(self.index, self.history, target)

    def on_heatmap_cursor_moved(self, event: Heatmap.CursorMoved) -> None:
        self._describe(event.target)

    def _refresh_legend(self) -> None:
        self.query_one("#legend", Static).update(legend_text(self.heatmap.metric, self.heatmap.dense))

    def action_cycle_metric(self) -> None:
        self.heatmap.metric = next_metric(self.heatmap.metric)
        self._refresh_legend()

    def action_toggle_dense(self) -> None:
        self.heatmap.dense = not self.heatmap.dense
        self._refresh_legend()

    def action_toggle_pool(self) -> None:
        self.heatmap.action_toggle_pool()

    def action_fold_all(self) -> None:
        hm = self.heatmap
        folded = bool(hm.index) and set(hm.index.nodes_by_pool) <= hm.collapsed if hm.index else False
        hm.set_all_collapsed(not folded)
