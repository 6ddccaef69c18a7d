"""The nodes tab: pools with their headroom on top, every GPU node below."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical

from gpuctl.model import Changes
from gpuctl.query.filter import Filter
from gpuctl.query.fleet import FleetIndex
from gpuctl.tui.empty import empty_reason
from gpuctl.tui.messages import NodeChosen
from gpuctl.tui.row_table import RowTable
from gpuctl.tui.rows import NODE_COLUMNS, POOL_COLUMNS, NodeItem, node_cells, pool_cells

MAX_POOL_ROWS = 6


class NodesView(Vertical):

    def compose(self) -> ComposeResult:
        yield RowTable(POOL_COLUMNS, sort_by="pool", empty="No pools yet.", id="pools-table")
        yield RowTable(NODE_COLUMNS, sort_by="pool", empty="No GPU nodes match.", open_label="node", id="nodes-table")

    def show(self, index: FleetIndex, changes: Changes, flt: Filter) -> None:
        nodes = {
            n.name: NodeItem(n, index.stats(n.name))
            for n in index.snapshot.nodes
            if not flt.active or flt.matches(index.node_facets(n))
        }
        shown_pools = {i.node.pool for i in nodes.values()}
        pools = {p.name: p for p in index.snapshot.pools if not flt.active or p.name in shown_pools}
        pools_table = self.query_one("#pools-table", RowTable)
        pools_table.set_rows(pools, pool_cells)
        pools_table.styles.height = min(len(pools) + 1, MAX_POOL_ROWS + 1)  # the nodes get the rest
        table = self.query_one("#nodes-table", RowTable)
        table.set_rows(nodes, node_cells, empty=empty_reason(index.snapshot, flt, "GPU nodes"))

    def on_row_table_row_chosen(self, event: RowTable.RowChosen) -> None:
        event.stop()
        if event.table.id == "nodes-table":
            self.post_message(NodeChosen(event.key))
