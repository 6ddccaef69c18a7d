"""Filter, sort, live updates and calm failure states."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from textual.widgets import Static

from gpuctl.model import Update
from gpuctl.query.fleet import READINGS, FleetIndex
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.feed import QueueFeed
from gpuctl.tui.filter_bar import FilterBar
from gpuctl.tui.heatmap import Heatmap
from gpuctl.tui.node_screen import NodeScreen
from gpuctl.tui.palette import METRIC_READING, Metric
from gpuctl.tui.row_table import RowTable
from gpuctl.tui.status_bar import StatusBar
from tests.tui.conftest import showing, wait_applied
from tests.tui.factory import build_snapshot, bump, first_update


def text_of(widget: object) -> str:
    return str(widget.render())  # type: ignore[attr-defined]


async def type_filter(pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    await pilot.press("slash")
    await pilot.press(*list(text))
    await pilot.press("enter")
    await pilot.pause()


async def test_filter_applies_to_every_view_and_escape_clears_it(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    snap = demo[0].snapshot
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        await type_filter(pilot, "pool:l4")
        assert app.filter.text == "pool:l4"
        assert not app.query_one(FilterBar).has_class("open")
        hm = app.query_one(Heatmap)
        assert app.focused is hm
        pools = {line.pool for line in hm.layout_.lines}
        assert pools == {"l4-infer"}
        assert "filter: pool:l4" in text_of(app.query_one(StatusBar))
        await pilot.press("2")
        nodes = app.query_one("#nodes-table", RowTable)
        assert set(nodes.shown_keys) == {n.name for n in snap.nodes if n.pool == "l4-infer"}
        await pilot.press("3")
        pods = app.query_one("#pods-table", RowTable)
        l4_nodes = {n.name for n in snap.nodes if n.pool == "l4-infer"}
        assert set(pods.shown_keys) == {p.key for p in snap.pods if p.node in l4_nodes}
        assert "shown" in text_of(app.query_one("#pods-summary", Static))
        await pilot.press("slash", "escape")
        await pilot.pause()
        assert not app.filter.active
        assert pods.row_count == len(snap.pods)


async def test_typing_in_the_filter_does_not_trigger_view_keys(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        await pilot.press("slash", "q", "2", "m")
        await pilot.pause()
        assert app.is_running
        assert app.query_one(FilterBar).value == "q2m"
        assert app.query_one(Heatmap).metric.value == "util"


async def test_namespace_filter_narrows_the_heatmap_to_its_gpus(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        await type_filter(pilot, "ns:sandbox")
        hm = app.query_one(Heatmap)
        shown = [c.key for line in hm.layout_.lines for c in line.cells]
        expected = [g.key for g in demo[0].snapshot.gpus if g.pod and g.pod.namespace == "sandbox"]
        assert sorted(shown) == sorted(expected) and shown


async def test_sort_keys_cycle_and_reverse_the_pods_table(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    pods = {p.key: p for p in demo[0].snapshot.pods}
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        await pilot.press("3")
        table = app.query_one("#pods-table", RowTable)
        # Default: idle pods first, longest idle on top.
        idle_rows = [k for k in table.shown_keys if pods[k].idle]
        assert table.shown_keys[: len(idle_rows)] == idle_rows
        idle_for = [pods[k].idle_for_s for k in idle_rows]
        assert idle_for == sorted(idle_for, reverse=True)
        while table.sort_by != "gpus":
            await pilot.press("s")
        counts = [pods[k].gpus_total for k in table.shown_keys]
        assert counts == sorted(counts, reverse=table.sort_reverse)
        await pilot.press("r")
        assert [pods[k].gpus_total for k in table.shown_keys] == sorted(counts, reverse=table.sort_reverse)
        assert "sorted by gpus" in text_of(app.query_one("#pods-summary", Static))


async def test_clicking_a_header_sorts_by_that_column(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        await pilot.press("2")
        table = app.query_one("#nodes-table", RowTable)
        await pilot.click("#nodes-table", offset=(2, 0))
        assert table.sort_by == "node"
        assert table.shown_keys == sorted(table.shown_keys)


async def test_updates_change_cells_in_place_and_repaint_only_changed_lines() -> None:
    snap = build_snapshot(3)
    async with showing(snap) as (app, pilot, feed):
        hm = app.query_one(Heatmap)
        cached_before = set(hm._strips)
        busy = next(g for g in snap.gpus if g.pod and not g.idle)
        step = bump(snap, only=busy.key)
        assert step.changes.gpus == {busy.key}
        feed.push(step)
        await wait_applied(pilot, 2)
        (changed,) = step.changes.gpus
        changed_line = hm.layout_.line_of[changed]
        untouched = cached_before - {changed_line}
        # Lines that didn't change kept their cached strip; the changed one was redrawn.
        assert untouched <= set(hm._strips)
        after = next(g for g in step.snapshot.gpus if g.key == busy.key)
        assert app.history.series(changed)[-2:] == [busy.util_pct, after.util_pct]
        await pilot.press("3")
        table = app.query_one("#pods-table", RowTable)
        while table.sort_by != "util":
            await pilot.press("s")
        await pilot.press("down", "down", "down")
        chosen = table.cursor_key
        order_before = table.shown_keys
        step2 = bump(step.snapshot, every=1, util_delta=37)
        feed.push(step2)
        await wait_applied(pilot, 3)
        await pilot.pause()
        assert table.shown_keys != order_before  # utilisation moved, rows re-sorted
        assert table.cursor_key == chosen  # ... and the cursor stayed on its pod
        utils = [step2.snapshot.pods[[p.key for p in step2.snapshot.pods].index(k)].util_pct for k in table.shown_keys]
        known = [u for u in utils if u is not None]
        assert known == sorted(known, reverse=table.sort_reverse)
        assert utils[len(known):] == [None] * (len(utils) - len(known))  # unknown util sorts last
        # Cells are only built for rows on screen.
        assert 0 < len(table._strips) <= table.size.height


async def test_stale_metrics_and_lost_watch_show_as_a_calm_state() -> None:
    snap = build_snapshot(2, metrics_stale=True, watch_connected=False)
    async with showing(snap) as (app, _, _):
        status = text_of(app.query_one(StatusBar))
        assert "metrics STALE 3m (prometheus: connection refused)" in status
        assert "watch ○ reconnecting" in status and "2 relists" in status
        assert app.query_one(Heatmap).layout_.lines  # the last picture stays on screen


async def test_a_failing_feed_is_reported_not_raised() -> None:
    async def broken() -> AsyncIterator[Update]:
        yield first_update(build_snapshot(1))
        raise ConnectionError("hub went away")

    app = GpuctlApp(broken())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        await pilot.pause()
        status = text_of(app.query_one(StatusBar))
        assert "data feed stopped: ConnectionError: hub went away" in status
        assert app.is_running
        await pilot.press("2")
        assert app.query_one("#nodes-table", RowTable).row_count == 3  # one node per pool: the last picture stays


async def test_before_the_first_snapshot_the_app_says_it_is_waiting() -> None:
    app = GpuctlApp(QueueFeed())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "waiting for the first snapshot" in text_of(app.query_one(StatusBar))
        await pilot.press("right", "m", "d", "2", "3", "4", "5", "1", "enter")
        assert app.is_running


async def test_enter_on_a_quota_shows_that_namespaces_pods(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        await pilot.press("4")
        quotas = app.query_one("#quotas-table", RowTable)
        namespace = quotas.cursor_key
        await pilot.press("enter")
        await pilot.pause()
        assert app.filter.text == f"ns:{namespace}"
        pods = app.query_one("#pods-table", RowTable)
        assert app.focused is pods
        assert pods.shown_keys and all(k.startswith(f"{namespace}/") for k in pods.shown_keys)


async def test_enter_on_an_alert_opens_its_node(demo: list[Update]) -> None:
    snap = build_snapshot(2)
    async with showing(snap) as (app, pilot, _):
        await pilot.press("5")
        alerts = app.query_one("#alerts-table", RowTable)
        assert alerts.row_count == len(snap.alerts)
        alert = alerts.item(alerts.cursor_key or "")
        assert alert is not None and alert.severity == "critical" and alert.node
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen) and app.screen.node == alert.node
        # Rows there don't open anything, so enter is not offered.
        table = app.screen.query_one("#node-pods", RowTable)
        assert table.check_action("choose", ()) is False


def test_pool_headers_add_up_the_same_from_the_index_and_from_the_cells() -> None:
    # A pool header sums the cells it shows (only the metric shown); the index's per-node sums agree.
    heatmap = Heatmap()
    index = heatmap.index = FleetIndex(build_snapshot(2))
    heatmap._visible = index.gpus_by_node
    for pool, names in index.nodes_by_pool.items():
        for metric in Metric:
            *counts, total, measured = heatmap._sum_shown(names, metric)
            stats = [index.stats(n) for n in names]
            reading = READINGS.index(METRIC_READING[metric])
            by_node = [sum(s.gpus for s in stats), sum(s.allocated for s in stats), sum(s.idle for s in stats)]
            node_total, node_measured = sum(s.sums[reading][0] for s in stats), sum(s.sums[reading][1] for s in stats)
            assert by_node == counts and node_measured == measured and node_total == pytest.approx(total), (pool, metric)
