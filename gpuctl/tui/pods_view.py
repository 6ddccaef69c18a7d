"""The pods tab: every pod holding or requesting GPUs, idle ones flagged."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from gpuctl.model import Changes
from gpuctl.tui.filtering import Filter
from gpuctl.tui.fleet_index import FleetIndex
from gpuctl.tui.keyed_table import Cell, KeyedTable
from gpuctl.tui.rows import POD_COLUMNS, pod_row


class PodsView(Vertical):
    class NodeChosen(Message):
        def __init__(self, node: str) -> None:
            super().__init__()
            self.node = node

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.index: FleetIndex | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="pods-summary", classes="summary")
        yield KeyedTable(POD_COLUMNS, sort_by="idle", reverse=True, id="pods-table")

    def show(self, index: FleetIndex, changes: Changes, flt: Filter) -> None:
        self.index = index
        table = self.query_one(KeyedTable)
        now = index.snapshot.taken_at
        pods = index.snapshot.pods
        if changes.everything:
            table.replace({p.key: pod_row(p, now) for p in pods if flt.matches(index.pod_facets(p))})
        else:
            # A pod's util/idle comes from its GPUs, so GPU changes touch their holders.
            touched = set(changes.pods)
            for key in changes.gpus:
                g = index.gpus.get(key)
                if g is not None and g.pod is not None:
                    touched.add(g.pod.key)
            patch: dict[str, tuple[Cell, ...] | None] = {}
            for key in touched:
                pod = index.pods.get(key)
                keep = pod is not None and flt.matches(index.pod_facets(pod))
                patch[key] = pod_row(pod, now) if keep and pod is not None else None
            table.patch(patch)
            if changes.pods or changes.gpus:
                # Ages move with the clock; refresh them for the rows on screen only.
                table.patch({k: pod_row(index.pods[k], now) for k in _on_screen(table) if k in index.pods})
        self._summarise()

    def _summarise(self) -> None:
        if self.index is None:
            return
        table = self.query_one(KeyedTable)
        pods = self.index.snapshot.pods
        shown = table.row_count
        idle = sum(1 for p in pods if p.idle)
        pending = sum(1 for p in pods if p.phase == "Pending")
        total = len(pods)
        filtered = f" · {shown} shown" if shown != total else ""
        self.query_one("#pods-summary", Static).update(
            f"{total} GPU pods · [b magenta]{idle} idle[/] · [yellow]{pending} pending[/]{filtered}"
            f" · sorted by {table.sort_by} {'▼' if table.sort_reverse else '▲'}"
        )

    def on_keyed_table_sort_changed(self, event: KeyedTable.SortChanged) -> None:
        self._summarise()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.index and event.row_key.value and (pod := self.index.pods.get(event.row_key.value)) and pod.node:
            self.post_message(self.NodeChosen(pod.node))


def _on_screen(table: KeyedTable) -> list[str]:
    top = round(table.scroll_y)
    rows = table.ordered_rows[top : top + table.size.height]
    return [r.key.value for r in rows if r.key.value is not None]
