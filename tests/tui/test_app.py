"""Pilot tests: the app driven by keys and clicks on the seeded demo fleet."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.widgets import Static, TabbedContent

from gpuctl.model import Update
from gpuctl.trace import Trace
from gpuctl.tui.app import TABS, GpuctlApp, help_sections
from gpuctl.tui.feed import QueueFeed
from gpuctl.tui.gpu_details import GpuDetails
from gpuctl.tui.heatmap import Heatmap
from gpuctl.tui.heatmap_layout import POOL_PREFIX
from gpuctl.tui.help_screen import HelpScreen
from gpuctl.tui.node_screen import NodeScreen
from gpuctl.tui.palette import Metric
from gpuctl.tui.row_table import RowTable
from gpuctl.tui.status_bar import StatusBar
from tests.tui.conftest import until, wait_applied


def text_of(widget: object) -> str:
    return str(widget.render())  # type: ignore[attr-defined]


async def test_starts_on_the_heatmap_with_the_first_gpu_selected(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        hm = app.query_one(Heatmap)
        assert app.focused is hm
        first = demo[0].snapshot
        assert hm.cursor is not None and hm.cursor in {g.key for g in first.gpus}
        details = text_of(app.query_one(GpuDetails))
        assert hm.cursor.split("/")[0] in details and "util history" in details
        status = text_of(app.query_one(StatusBar))
        assert f"{len(first.nodes)} nodes" in status and f"{len(first.gpus)} GPUs" in status


async def test_number_keys_switch_views_and_there_is_no_playbooks_view(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        tabs = app.query_one(TabbedContent)
        assert [p.id for p in tabs.query("TabPane")] == [t for t, _ in TABS]
        assert not any("playbook" in (p.id or "") for p in tabs.query("TabPane"))
        for i, (tab, _) in enumerate(TABS, start=1):
            await pilot.press(str(i))
            assert tabs.active == tab
        await pilot.press("3")
        table = app.query_one("#pods-table", RowTable)
        assert app.focused is table
        assert table.row_count == len(demo[0].snapshot.pods)


async def test_arrow_keys_move_the_cursor_and_details_follow(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        hm = app.query_one(Heatmap)
        start = hm.cursor
        await pilot.press("right")
        assert hm.cursor != start
        moved = hm.cursor
        await pilot.press("left")
        assert hm.cursor == start
        await pilot.press("down", "down")
        assert hm.cursor not in (start, moved)
        gpu = app.index.gpus[hm.cursor]  # type: ignore[union-attr]
        assert gpu.node in text_of(app.query_one(GpuDetails))


async def test_clicking_a_cell_selects_it_and_clicking_a_header_folds_the_pool(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        hm = app.query_one(Heatmap)
        line = hm.layout_.lines[2]
        cell = line.cells[1]
        await pilot.click(Heatmap, offset=(cell.x, 2))
        assert hm.cursor == cell.key
        pool = hm.layout_.lines[0].pool
        await pilot.click(Heatmap, offset=(3, 0))
        assert pool in hm.collapsed and hm.cursor == POOL_PREFIX + pool
        await pilot.press("enter")
        assert pool not in hm.collapsed


async def test_m_cycles_the_metric_and_the_legend(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        hm = app.query_one(Heatmap)
        seen = [hm.metric]
        for _ in range(4):
            await pilot.press("m")
            seen.append(hm.metric)
            assert seen[-1].value in text_of(app.query_one("#legend")).replace("memory used", "memory").replace("utilisation", "util")
        assert seen == [Metric.UTIL, Metric.MEMORY, Metric.TEMPERATURE, Metric.POWER, Metric.UTIL]


async def test_dense_mode_and_folding_change_the_layout(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        hm = app.query_one(Heatmap)
        normal = len(hm.layout_.lines)
        await pilot.press("d")
        assert hm.dense and len(hm.layout_.lines) < normal and hm.layout_.label_width == 0
        assert hm.cursor in hm.layout_.line_of  # the cursor survived the relayout
        await pilot.press("d", "c")
        assert len(hm.collapsed) == 1
        await pilot.press("C")
        assert hm.collapsed == set(app.index.nodes_by_pool)  # type: ignore[union-attr]
        assert all(line.header for line in hm.layout_.lines)
        await pilot.press("C")
        assert not hm.collapsed


async def test_enter_on_a_gpu_drills_into_its_node_and_escape_returns(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        node = app.index.gpus[app.query_one(Heatmap).cursor].node  # type: ignore[union-attr,index]
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, NodeScreen) and screen.node == node
        gpus = screen.query_one("#node-gpus", RowTable)
        assert gpus.row_count == len(app.index.gpus_by_node[node])  # type: ignore[union-attr]
        pods = screen.query_one("#node-pods", RowTable)
        assert set(pods.shown_keys) == {p.key for p in app.index.pods_by_node[node]}  # type: ignore[union-attr]
        assert node in text_of(screen.query_one("#node-header"))
        await pilot.press("escape")
        assert not isinstance(app.screen, NodeScreen)


async def test_enter_on_the_nodes_table_drills_in(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        await pilot.press("2")
        table = app.query_one("#nodes-table", RowTable)
        assert app.focused is table
        await pilot.press("down", "enter")
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen)
        assert app.screen.node == table.shown_keys[1]


async def test_help_lists_every_key(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 60)) as pilot:
        await wait_applied(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        console = Console(width=100, file=io.StringIO(), record=True)
        for static in app.screen.query(Static):
            console.print(static.content)
        body = " ".join(console.export_text().split())

        for _, bindings in help_sections():
            for b in bindings:
                assert " ".join((b.tooltip or b.description).split()) in body  # type: ignore[union-attr]
        for key in ("q", "?", "/", "m", "d", "s", "r", "esc", "enter", "1", "5"):
            assert f"{key}" in body
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_theme_toggles_between_dark_and_light(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_applied(pilot)
        assert app.theme == "textual-dark"
        await pilot.press("t")
        assert app.theme == "textual-light"
        await pilot.press("t")
        assert app.theme == "textual-dark"


async def test_q_quits(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_applied(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


async def test_each_update_is_traced_once_its_frame_is_rendered(demo: list[Update], tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    trace = Trace.open(path)
    app = GpuctlApp(QueueFeed(demo[:2]), trace=trace)

    def frames() -> list[dict[str, Any]]:
        return [e for line in path.read_text().splitlines() if (e := json.loads(line))["event"] == "frame"]

    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot, 2)
        await until(pilot, lambda: len(frames()) == 2, "both frames traced")
    trace.close()
    first, second = frames()
    snap = demo[1].snapshot
    assert first["everything"] and not second["everything"] and second["gpus_changed"] == len(demo[1].changes.gpus)
    assert (second["nodes"], second["pods"], second["gpus"]) == (len(snap.nodes), len(snap.pods), len(snap.gpus))
    assert second["readings"] == sum(g.util_pct is not None for g in snap.gpus) > 0
    assert second["quotas"] == sum(n.gpu_quota_hard is not None or bool(n.mig_quota_hard) for n in snap.namespaces) > 0
    assert second["view"] == "heatmap" and second["ms"] >= second["index_ms"] + second["apply_ms"]


async def test_an_update_indexed_while_the_app_shuts_down_is_not_applied(demo: list[Update]) -> None:
    """Textual tears the screens down before it cancels the feed's worker: an update whose index
    comes back then must not reach the views (it would find them half gone: NoMatches)."""
    feed = QueueFeed(demo[:1])
    app = GpuctlApp(feed)
    index = app._index

    def index_until_shutdown(update: Update, previous: Any) -> Any:
        while app.is_running:  # in the indexing thread: return once the shutdown has begun
            time.sleep(0.002)
        return index(update, previous)

    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        app._index = index_until_shutdown  # type: ignore[method-assign]
        feed.push(demo[1])
        await pilot.pause()
    assert app.updates_applied == 1


async def test_a_feed_that_ends_while_the_app_shuts_down_is_not_reported(demo: list[Update]) -> None:
    """A feed closed by the shutdown (the demo's cluster goes with the app) is not a failure to
    show: the status bar it would be written to is being torn down."""
    app: GpuctlApp

    async def feed() -> AsyncIterator[Update]:
        yield demo[0]
        while app.is_running:  # noqa: ASYNC110 -- Textual signals no event when its shutdown begins
            await asyncio.sleep(0.002)

    app = GpuctlApp(feed())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
    assert app.feed_error is None
