"""The pods tab: every pod holding or requesting GPUs, idle ones flagged."""

from __future__ import annotations

from functools import partial

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from gpuctl.model import Changes, GpuPod
from gpuctl.query.filter import Filter
from gpuctl.query.fleet import FleetIndex
from gpuctl.tui.empty import empty_reason
from gpuctl.tui.messages import NodeChosen
from gpuctl.tui.row_table import RowTable
from gpuctl.tui.rows import POD_COLUMNS, pod_cells


class PodsView(Vertical):

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.index: FleetIndex | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="pods-summary", classes="summary")
        yield RowTable(POD_COLUMNS, sort_by="idle", reverse=True, open_label="node", id="pods-table")

    @property
    def table(self) -> RowTable[GpuPod]:
        return self.query_one("#pods-table", RowTable)

    def show(self, index: FleetIndex, changes: Changes, flt: Filter) -> None:
        self.index = index
        pods = index.pods
        if flt.active:
            pods = {k: p for k, p in pods.items() if flt.matches(index.pod_facets(p))}
        snap = index.snapshot
        cells = partial(pod_cells, now=snap.taken_at, threshold=snap.idle_threshold_pct)
        self.table.set_rows(pods, cells, empty=empty_reason(snap, flt, "GPU pods"))
        self._summarise()

    def _summarise(self) -> None:
        if self.index is None:
            return
        table = self.table
        pods = self.index.snapshot.pods
        idle = sum(1 for p in pods if p.idle)
        pending = sum(1 for p in pods if p.phase == "Pending")
        shown = f" · {table.row_count} shown" if table.row_count != len(pods) else ""
        self.query_one("#pods-summary", Static).update(
            f"{len(pods)} GPU pods · [b magenta]{idle} idle[/] · [yellow]{pending} pending[/]{shown}"
            f" · sorted by {table.sort_by} {'▼' if table.sort_reverse else '▲'}"
        )

    def on_row_table_sort_changed(self, event: RowTable.SortChanged) -> None:
        self._summarise()

    def on_row_table_row_chosen(self, event: RowTable.RowChosen) -> None:
        event.stop()
        pod = self.index.pods.get(event.key) if self.index else None
        if pod is not None and pod.node:
            self.post_message(NodeChosen(pod.node))
