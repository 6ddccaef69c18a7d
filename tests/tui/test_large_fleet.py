"""1,000 nodes x 8 GPUs: the app starts, draws, takes an update and stays navigable."""

from __future__ import annotations

import pytest

from gpuctl.model import Update
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.feed import QueueFeed
from gpuctl.tui.heatmap import Heatmap
from gpuctl.tui.row_table import RowTable
from gpuctl.tui.status_bar import StatusBar
from tests.tui.conftest import wait_applied
from tests.tui.factory import build_snapshot, bump, first_update

BIG_POOLS = (("h100-train", "NVIDIA H100 80GB HBM3", 8, False), ("a100-batch", "NVIDIA A100-SXM4-80GB", 8, False))


@pytest.fixture(scope="module")
def big() -> tuple[Update, Update]:
    snap = build_snapshot(500, pools=BIG_POOLS, seed=3)
    return first_update(snap), bump(snap, every=2)


async def test_thousand_nodes_start_and_apply_an_update(big: tuple[Update, Update]) -> None:
    first, second = big
    assert len(first.snapshot.nodes) == 1000 and len(first.snapshot.gpus) == 8000
    feed = QueueFeed([first])
    app = GpuctlApp(feed)
    async with app.run_test(size=(200, 60)) as pilot:
        await wait_applied(pilot)
        hm = app.query_one(Heatmap)
        assert sum(len(line.cells) for line in hm.layout_.lines) == 8000
        assert len(hm.layout_.lines) == 1000 + 2  # a line per node plus two pool headers
        assert len(hm._strips) <= hm.size.height  # only what is on screen was drawn
        status = str(app.query_one(StatusBar).render())
        assert "1000 nodes · 8000 GPUs" in status

        feed.push(second)
        await wait_applied(pilot, 2)
        changed = next(iter(second.changes.gpus))
        assert app.index is not None and app.index.gpus[changed] == next(g for g in second.snapshot.gpus if g.key == changed)

        await pilot.press("d")  # dense: 1000 nodes packed
        assert len(hm.layout_.lines) < 200
        await pilot.press("3", "end")
        pods = app.query_one("#pods-table", RowTable)
        assert pods.row_count == len(second.snapshot.pods)
        assert pods.cursor_key == pods.shown_keys[-1]
        await pilot.press("slash", *"pool:a100", "enter")
        await pilot.pause()
        assert 0 < pods.row_count < len(second.snapshot.pods)
