"""Marking rows (space, `*` for every row the filter shows) and what `a` would act on, in every view.

No engine here: `selection_of` is what the app hands to the playbooks screen (the
flows themselves are tests/integration/test_tui_playbooks.py's)."""

from __future__ import annotations

from gpuctl.model import Alert, Update
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.feed import QueueFeed
from gpuctl.tui.heatmap import Heatmap
from gpuctl.tui.playbooks.flow import selection_of
from gpuctl.tui.playbooks.offers import Selection
from gpuctl.tui.row_table import RowTable
from tests.tui.conftest import wait_applied
from tests.tui.test_views import type_filter

SIZE = (140, 40)


def selected(app: GpuctlApp, tab: str) -> Selection:
    assert app.index is not None
    return selection_of(app.query_one(f"#{tab}-view"), app.index)


async def test_space_marks_rows_star_marks_all_the_filter_shows_and_the_filter_drops_hidden_marks(
    demo: list[Update],
) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    snap = demo[0].snapshot
    async with app.run_test(size=SIZE) as pilot:
        await wait_applied(pilot)
        await pilot.press("3")
        table: RowTable = app.query_one("#pods-table", RowTable)
        first, second = table.shown_keys[:2]
        # Nothing marked: the row under the cursor.
        assert [p.key for p in selected(app, "pods").pods] == [first]
        await pilot.press("space", "space")  # marks the row and moves on: two rows
        assert table.marked == {first, second}
        assert [p.key for p in selected(app, "pods").pods] == [first, second]
        await pilot.press("up", "space")  # unmarks the second
        assert table.marked == {first}
        # `*` marks every row the filter shows.
        await type_filter(pilot, "ns:team-a")
        shown = set(table.shown_keys)
        assert shown and shown < {p.key for p in snap.pods}
        assert table.marked <= shown  # a row the filter hides leaves the selection
        table.focus()
        await pilot.press("asterisk")
        assert table.marked == shown
        assert {p.namespace for p in selected(app, "pods").pods} == {"team-a"}
        await pilot.press("asterisk")  # again: everything unmarked
        assert table.marked == set()


async def test_each_view_selects_its_own_objects(demo: list[Update]) -> None:
    last = demo[0].snapshot
    node = last.nodes[0]
    pod = next(p for p in last.pods if p.node)
    alerts = (
        Alert(name="GpuIdle", severity="warning", namespace=pod.namespace, pod=pod.name, node=pod.node),
        Alert(name="XID", severity="critical", node=node.name),
    )
    update = Update(snapshot=last.model_copy(update={"alerts": alerts}), changes=demo[0].changes)
    app = GpuctlApp(QueueFeed([update]))
    async with app.run_test(size=SIZE) as pilot:
        await wait_applied(pilot)
        heatmap = app.query_one(Heatmap)
        # The heatmap: the node of the GPU under the cursor; space marks it; on a pool header, the pool.
        cursor_node = app.index.gpus[heatmap.cursor].node if app.index and heatmap.cursor else None
        assert [n.name for n in selected(app, "heatmap").nodes] == [cursor_node]
        await pilot.press("space")
        assert heatmap.marked == {cursor_node}
        heatmap.cursor = f"pool:{node.pool}"
        await pilot.press("space")
        assert selected(app, "heatmap") == Selection(nodes=(app.index.nodes[cursor_node],), pools=(node.pool,))
        # Nodes: the node under the cursor.
        await pilot.press("2")
        nodes_table = app.query_one("#nodes-table", RowTable)
        assert [n.name for n in selected(app, "nodes").nodes] == [nodes_table.cursor_key]
        # Quotas: namespaces.
        await pilot.press("4")
        quotas = app.query_one("#quotas-table", RowTable)
        assert [ns.name for ns in selected(app, "quotas").namespaces] == [quotas.cursor_key]
        # Alerts: the pod an alert names, else its node.
        await pilot.press("5")
        await pilot.press("asterisk")
        chosen = selected(app, "alerts")
        assert [p.key for p in chosen.pods] == [pod.key]
        assert [n.name for n in chosen.nodes] == [node.name]
