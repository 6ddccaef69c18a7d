"""The nodes tab: pools with their headroom on top, every GPU node below."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable

from gpuctl.model import Changes
from gpuctl.tui.filtering import Filter
from gpuctl.tui.fleet_index import FleetIndex
from gpuctl.tui.keyed_table import Cell, KeyedTable
from gpuctl.tui.rows import NODE_COLUMNS, POOL_COLUMNS, node_row, pool_row


class NodesView(Vertical):
    class NodeChosen(Message):
        def __init__(self, node: str) -> None:
            super().__init__()
            self.node = node

    def compose(self) -> ComposeResult:
        yield KeyedTable(POOL_COLUMNS, sort_by="pool", id="pools-table")
        yield KeyedTable(NODE_COLUMNS, sort_by="pool", id="nodes-table")

    def show(self, index: FleetIndex, changes: Changes, flt: Filter) -> None:
        nodes = self.query_one("#nodes-table", KeyedTable)
        pools = self.query_one("#pools-table", KeyedTable)
        node_names = {n for ns in index.nodes_by_pool.values() for n in ns}
        visible_pools = set(index.pools)
        if flt.active:
            kept = {n.name for n in index.snapshot.nodes if flt.matches(index.node_facets(n))}
            visible_pools = {index.nodes[n].pool for n in kept}
        pools.replace({p.name: pool_row(p) for p in index.snapshot.pools if p.name in visible_pools})
        if changes.everything:
            nodes.replace({n.name: node_row(index, n) for n in index.snapshot.nodes if flt.matches(index.node_facets(n))})
            return
        touched = set(changes.nodes) | {k.split("/", 1)[0] for k in changes.gpus} | {
            p.node for k in changes.pods if (p := index.pods.get(k)) and p.node
        }
        patch: dict[str, tuple[Cell, ...] | None] = {}
        for name in touched:
            node = index.nodes.get(name)
            keep = node is not None and name in node_names and flt.matches(index.node_facets(node))
            patch[name] = node_row(index, node) if keep and node is not None else None
        nodes.patch(patch)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "nodes-table" and event.row_key.value:
            event.stop()
            self.post_message(self.NodeChosen(event.row_key.value))
