"""Screenshots of every view on the seeded demo fleet (seed 7, fixed clock), small and large.

Accept intended changes with `pytest tests/tui/test_snapshots.py --snapshot-update`
and review the SVGs in tests/tui/__snapshots__/.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from textual.pilot import Pilot

from gpuctl.config import Settings
from gpuctl.model import Alert, Update
from gpuctl.query.filter import Filter
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.feed import QueueFeed
from tests.tui.conftest import until, wait_applied

SMALL = (80, 24)
LARGE = (200, 60)


def with_alerts(updates: list[Update]) -> list[Update]:
    """The demo has no Alertmanager; give the alerts view two alerts about demo objects."""
    last = updates[-1].snapshot
    node = last.nodes[0].name
    alerts = (
        Alert(name="DCGMXidErrors", severity="critical", summary=f"XID 79 on {node} GPU 3: GPU fell off the bus",
              node=node, gpu=f"{node}/3", since=last.taken_at - timedelta(minutes=12)),
        Alert(name="GpuAllocatedIdle", severity="warning", state="pending", summary="sandbox holds idle GPUs for 45m",
              namespace="sandbox", since=last.taken_at - timedelta(minutes=3)),
    )
    snap = last.model_copy(update={"alerts": alerts})
    return [*updates[:-1], Update(snapshot=snap, changes=updates[-1].changes)]


def app_for(updates: list[Update]) -> GpuctlApp:
    return GpuctlApp(QueueFeed(updates))


def ready(count: int, *keys: str):  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await wait_applied(pilot, count)
        if keys:
            await pilot.press(*keys)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "200x60"])
@pytest.mark.parametrize("view", ["1", "2", "3", "4", "5"], ids=["heatmap", "nodes", "pods", "quotas", "alerts"])
def test_view(snap_compare, demo: list[Update], view: str, size: tuple[int, int]) -> None:
    updates = with_alerts(demo)
    assert snap_compare(app_for(updates), terminal_size=size, run_before=ready(len(updates), view))


def test_heatmap_dense_by_temperature(snap_compare, demo: list[Update]) -> None:
    assert snap_compare(app_for(demo), terminal_size=LARGE, run_before=ready(len(demo), "d", "m", "m"))


def test_heatmap_cursor_moved_and_pool_folded(snap_compare, demo: list[Update]) -> None:
    keys = ("down", "down", "right", "right", "down", "down", "down", "c")
    assert snap_compare(app_for(demo), terminal_size=SMALL, run_before=ready(len(demo), *keys))


def test_node_drill_down(snap_compare, demo: list[Update]) -> None:
    assert snap_compare(app_for(demo), terminal_size=SMALL, run_before=ready(len(demo), "enter"))


def test_help(snap_compare, demo: list[Update]) -> None:
    assert snap_compare(app_for(demo), terminal_size=SMALL, run_before=ready(len(demo), "question_mark"))


def test_filter_bar_typing(snap_compare, demo: list[Update]) -> None:
    typed = "pool:h100"

    async def run_before(pilot: Pilot) -> None:
        await ready(len(demo), "slash", *typed)(pilot)
        # The bar applies what was typed after a pause (debounced): under load a partial filter may be
        # applied first. The screenshot is of the whole text's filter.
        app = pilot.app
        await until(pilot, lambda: getattr(app, "filter", None) == Filter.parse(typed), f"the filter {typed!r} applied")
        await pilot.pause()

    assert snap_compare(app_for(demo), terminal_size=SMALL, run_before=run_before)


def test_light_theme(snap_compare, demo: list[Update]) -> None:
    assert snap_compare(app_for(demo), terminal_size=SMALL, run_before=ready(len(demo), "t"))


def test_lost_connectivity(snap_compare, demo: list[Update]) -> None:
    last = demo[-1].snapshot
    snap = last.model_copy(update={
        "metrics": last.metrics.model_copy(update={"stale": True, "age_s": 95.0, "error": "prometheus: connection refused"}),
        "watch": last.watch.model_copy(update={"connected": False, "relists": 3}),
    })
    updates = [*demo[:-1], Update(snapshot=snap, changes=demo[-1].changes)]
    assert snap_compare(app_for(updates), terminal_size=SMALL, run_before=ready(len(updates)))


def test_retry_countdown(snap_compare, demo: list[Update], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Disconnected with retries pending, on a 15 s refresh: the bar says when the next tries are."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no user config file
    last = demo[-1].snapshot
    snap = last.model_copy(update={
        "metrics": last.metrics.model_copy(update={
            "stale": True, "age_s": 95.0, "error": "cannot connect to Prometheus",
            "retry_at": last.taken_at + timedelta(seconds=12),
        }),
        "watch": last.watch.model_copy(update={"connected": False, "retry_at": last.taken_at + timedelta(seconds=4)}),
    })
    updates = [*demo[:-1], Update(snapshot=snap, changes=demo[-1].changes)]
    app = GpuctlApp(QueueFeed(updates), settings=Settings(config_file=None, refresh_s=15), monotonic=lambda: 0.0)
    assert snap_compare(app, terminal_size=(120, 24), run_before=ready(len(updates)))
