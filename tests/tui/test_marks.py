"""Marks where they can be seen: the status bar's "N marked", and marked nodes in the dense heatmap."""

from __future__ import annotations

from gpuctl.model import Update
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.feed import QueueFeed
from gpuctl.tui.heatmap import Heatmap
from gpuctl.tui.row_table import RowTable
from gpuctl.tui.status_bar import StatusBar
from tests.tui.conftest import until, wait_applied


async def test_the_status_bar_counts_the_marks_of_the_view_on_screen(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_applied(pilot)
        status = app.query_one("#status", StatusBar)
        assert " marked " not in str(status.render())
        await pilot.press("3")
        table = app.query_one("#pods-table", RowTable)
        await pilot.press("space", "space", "space")
        assert len(table.marked) == 3
        await until(pilot, lambda: " 3 marked " in str(status.render()), "3 marked")
        await pilot.press("1")  # the heatmap has no marks of its own
        await until(pilot, lambda: " marked " not in str(status.render()), "no marks on the heatmap")
        await pilot.press("space")
        await until(pilot, lambda: " 1 marked " in str(status.render()), "the heatmap's node marked")


async def test_marked_nodes_are_underlined_in_the_dense_heatmap(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        hm = app.query_one(Heatmap)
        await pilot.press("d")
        assert hm.dense and hm.layout_.label_width == 0
        line_no = next(i for i, line in enumerate(hm.layout_.lines) if line.cells)
        line = hm.layout_.lines[line_no]
        node = app.index.gpus[line.cells[0].key].node  # type: ignore[union-attr]
        hm.cursor = line.cells[-1].key  # the cursor's own look aside: a cell of another node on the line, if any

        def underlined() -> set[str]:
            strip = hm._render_cells(line, hm.rich_style)
            x, out = 0, set()
            for seg in strip:
                for cell in line.cells:
                    if x <= cell.x < x + len(seg.text) and seg.style is not None and seg.style.underline:
                        out.add(cell.key)
                x += len(seg.text)
            return out

        assert underlined() == set()
        hm.marked.add(node)
        expected = {c.key for c in line.cells if app.index.gpus[c.key].node == node and c.key != hm.cursor}  # type: ignore[union-attr]
        assert expected and underlined() == expected
