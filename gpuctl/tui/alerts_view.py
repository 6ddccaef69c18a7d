"""The alerts tab: what Alertmanager (or gpuctl's own checks) report right now."""

from __future__ import annotations

from functools import partial

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from gpuctl.model import Alert, Changes
from gpuctl.query.filter import Facets, Filter
from gpuctl.query.fleet import FleetIndex
from gpuctl.tui.messages import NodeChosen
from gpuctl.tui.row_table import RowTable
from gpuctl.tui.rows import ALERT_COLUMNS, alert_cells, alert_key


class AlertsView(Vertical):

    def on_row_table_row_chosen(self, event: RowTable.RowChosen) -> None:
        event.stop()
        alert = event.table.item(event.key)
        if isinstance(alert, Alert) and alert.node:
            self.post_message(NodeChosen(alert.node))
        else:
            self.notify("This alert names no node.", timeout=3)

    def compose(self) -> ComposeResult:
        yield Static("", id="alerts-summary", classes="summary")
        yield RowTable(ALERT_COLUMNS, sort_by="severity", empty="No alerts.", open_label="node", id="alerts-table")

    def show(self, index: FleetIndex, changes: Changes, flt: Filter) -> None:
        now = index.snapshot.taken_at
        alerts = index.snapshot.alerts
        shown = [a for a in alerts if flt.matches(_facets(index, a))]
        self.query_one(RowTable).set_rows({alert_key(a): a for a in shown}, partial(alert_cells, now=now))
        firing = sum(1 for a in alerts if a.state == "firing")
        pending = sum(1 for a in alerts if a.state == "pending")
        text = "No alerts: all quiet." if not alerts else f"[b red]{firing} firing[/] · [yellow]{pending} pending[/]"
        if len(shown) != len(alerts):
            text += f" · {len(shown)} match the filter"
        self.query_one("#alerts-summary", Static).update(text)


def _facets(index: FleetIndex, a: Alert) -> Facets:
    node = index.nodes.get(a.node) if a.node else None
    return Facets(
        namespace=a.namespace or "",
        pool=node.pool if node else "",
        node=a.node or "",
        pod=a.pod or "",
        model=(node.gpu_model or "") if node else "",
    )
