"""The quotas tab: per namespace GPU quota used vs hard, requested vs busy, GPU-hours, MIG quotas per profile."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static

from gpuctl.model import Changes
from gpuctl.query.filter import Facets, Filter
from gpuctl.query.fleet import FleetIndex
from gpuctl.tui.empty import empty_reason
from gpuctl.tui.row_table import RowTable
from gpuctl.tui.rows import QUOTA_COLUMNS, quota_cells

_QUOTA_FIELDS = frozenset({"namespace"})


class QuotasView(Vertical):
    class NamespaceChosen(Message):
        """Enter on a namespace: the app shows its pods."""

        def __init__(self, namespace: str) -> None:
            super().__init__()
            self.namespace_name = namespace  # not `namespace`: Message uses that for handler names

    def on_row_table_row_chosen(self, event: RowTable.RowChosen) -> None:
        event.stop()
        self.post_message(self.NamespaceChosen(event.key))

    def compose(self) -> ComposeResult:
        yield Static("", id="quotas-summary", classes="summary")
        yield RowTable(QUOTA_COLUMNS, sort_by="quota", reverse=True, open_label="pods", id="quotas-table")

    def show(self, index: FleetIndex, changes: Changes, flt: Filter) -> None:
        rows = {ns.name: ns for ns in index.snapshot.namespaces if flt.matches(_facets(ns.name), applies=_QUOTA_FIELDS)}
        self.query_one(RowTable).set_rows(rows, quota_cells, empty=empty_reason(index.snapshot, flt, "namespaces"))
        spaces = index.snapshot.namespaces
        over = sum(1 for n in spaces if n.gpu_quota_hard is not None and n.gpu_quota_used >= n.gpu_quota_hard)
        no_quota = sum(1 for n in spaces if n.gpu_quota_hard is None)
        hours = sum(n.gpu_hours for n in spaces)
        self.query_one("#quotas-summary", Static).update(
            f"{len(spaces)} namespaces · [b red]{over} at quota[/] · {no_quota} without quota · "
            f"{hours:,.0f} GPU-hours held by current pods"
        )


def _facets(namespace: str) -> Facets:
    return Facets(namespace=namespace)
