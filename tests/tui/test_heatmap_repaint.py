"""A metrics refresh moves every reading: the heatmap repaints only the lines on screen that look different."""

from __future__ import annotations

from datetime import timedelta

from gpuctl.model import Changes, Snapshot, Update
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.feed import QueueFeed
from gpuctl.tui.heatmap import Heatmap, cell_look
from gpuctl.tui.palette import Metric, cell_style
from tests.tui.conftest import until, wait_applied
from tests.tui.factory import build_snapshot, first_update


def refresh_moving(snap: Snapshot, utils: dict[str, float]) -> Update:
    """A metrics refresh that reports every GPU as changed; only the GPUs in `utils` read differently."""
    gpus = tuple(g.model_copy(update={"util_pct": utils[g.key]}) if g.key in utils else g for g in snap.gpus)
    at = snap.taken_at + timedelta(seconds=5)
    moved = snap.model_copy(update={
        "gpus": gpus, "taken_at": at, "generation": snap.generation + 1,
        "metrics": snap.metrics.model_copy(update={"last_success": at}),
    })
    return Update(snapshot=moved, changes=Changes(gpus=frozenset(g.key for g in gpus)))


async def test_a_changed_reading_shows_and_lines_that_look_the_same_are_not_drawn_again() -> None:
    snap = build_snapshot(3)
    feed = QueueFeed([first_update(snap)])
    app = GpuctlApp(feed)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        hm = app.query_one(Heatmap)
        drawn = dict(hm._strips)
        target = next(
            g for g in snap.gpus
            if g.pod and not g.idle and not g.xid and not g.stale and g.util_pct is not None and g.util_pct > 50
            and g.key != hm.cursor and hm.layout_.line_of[g.key] in drawn
        )
        y = hm.layout_.line_of[target.key]
        step = refresh_moving(snap, {target.key: 1.0})  # from the top of the ramp to its bottom
        new_look = cell_look(next(g for g in step.snapshot.gpus if g.key == target.key), Metric.UTIL)
        assert new_look != cell_look(target, Metric.UTIL)

        feed.push(step)
        await wait_applied(pilot, 2)
        await until(pilot, lambda: y in hm._strips, "the changed line to be drawn again")
        assert hm._strips[y] is not drawn[y]
        assert any(seg.style == cell_style(new_look[1]) for seg in hm._strips[y])
        # Every other cell line on screen looks as before: its strip is the very one drawn then.
        lines = hm.layout_.lines
        same = {k: s for k, s in drawn.items() if k != y and k < len(lines) and not lines[k].header}
        assert same and all(hm._strips.get(k) is s for k, s in same.items())
