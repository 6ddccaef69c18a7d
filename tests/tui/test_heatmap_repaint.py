"""A metrics refresh moves every reading: the heatmap repaints only the lines on screen that look different."""

from __future__ import annotations

from datetime import timedelta

from textual.filter import Monochrome
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from gpuctl.model import Changes, Snapshot, Update
from gpuctl.tui.heatmap import Heatmap, cell_look
from gpuctl.tui.palette import Metric, cell_style
from tests.tui.conftest import showing, until, wait_applied
from tests.tui.factory import build_snapshot


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
    async with showing(snap) as (app, pilot, feed):
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


def _header(hm: Heatmap, pool: str) -> str:
    """The pool header's text as the heatmap draws it now (it must be on screen)."""
    y = hm.layout_.line_of["pool:" + pool]
    return hm.render_line(y - round(hm.scroll_y)).text


async def test_pool_headers_show_the_new_mean_after_a_refresh_on_screen_and_once_scrolled_back_to() -> None:
    snap = build_snapshot(3)
    async with showing(snap, (120, 16)) as (app, pilot, feed):
        feed.push(refresh_moving(snap, {}))  # the layout settles (its width once the scroll bar shows)
        await wait_applied(pilot, 2)
        hm = app.query_one(Heatmap)
        headers = [k.removeprefix("pool:") for k in hm.layout_.line_of if k.startswith("pool:")]
        first, last = headers[0], headers[-1]
        bottom = hm.layout_.line_of["pool:" + last]
        assert bottom >= hm.size.height  # the last pool's header is off screen
        hm.scroll_to(y=bottom, animate=False)
        await pilot.pause()
        assert "util 50%" not in _header(hm, last)  # drawn once, then scrolled away from
        hm.scroll_to(y=0, animate=False)
        await pilot.pause()
        # Every measured GPU now reads 50 %: so does each pool's mean.
        feed.push(refresh_moving(snap, {g.key: 50.0 for g in snap.gpus if g.util_pct is not None}))
        await wait_applied(pilot, 3)
        await until(pilot, lambda: "util 50%" in _header(hm, first), "the header on screen to show the new mean")
        hm.scroll_to(y=bottom, animate=False)
        await pilot.pause()
        assert "util 50%" in _header(hm, last)


async def test_the_heatmap_draws_its_lines_as_textuals_styles_cache_would() -> None:
    """Heatmap.render_lines draws its plain box itself: every line (with the scrollbar's column padded and the app's
    line filters applied) is the one Textual's own Widget.render_lines gives, before and after a refresh, with
    the filter mapped per segment and with one applied to whole lines."""
    snap = build_snapshot(12)
    async with showing(snap) as (app, pilot, feed):
        hm = app.query_one(Heatmap)
        crop = Region(0, 0, hm.size.width, hm.size.height)
        assert hm.max_scroll_y > 0  # the scrollbar takes a column: the lines are padded under it

        def textuals() -> list[Strip]:
            hm._styles_cache.clear()
            return Widget.render_lines(hm, crop)

        assert hm.render_lines(crop) == textuals()
        feed.push(refresh_moving(snap, {g.key: (g.util_pct or 0) / 2 for g in snap.gpus}))
        await wait_applied(pilot, 2)
        assert hm.render_lines(crop) == textuals()
        # A filter the heatmap does not know maps segment by segment: applied to whole lines, as Textual does.
        app._filters.append(Monochrome())
        hm._forget()
        assert hm.render_lines(crop) == textuals()
        assert hm.render_lines(Region(3, 2, 20, 5)) == [s.crop(3, 23) for s in textuals()[2:7]]


async def test_a_whole_kind_listed_again_repaints_what_looks_different_without_laying_out_again() -> None:
    """A re-list (`everything`) that leaves every GPU where it was: the layout stays, the changed cell shows."""
    snap = build_snapshot(3)
    async with showing(snap) as (app, pilot, feed):
        hm = app.query_one(Heatmap)
        layout, drawn = hm.layout_, dict(hm._strips)
        target = next(
            g for g in snap.gpus
            if g.pod and not g.idle and not g.xid and not g.stale and g.util_pct is not None and g.util_pct > 50
            and g.key != hm.cursor and hm.layout_.line_of[g.key] in drawn
        )
        y = layout.line_of[target.key]
        relisted = refresh_moving(snap, {target.key: 1.0}).snapshot
        feed.push(Update(snapshot=relisted, changes=Changes(everything=True)))
        await wait_applied(pilot, 2)
        await until(pilot, lambda: y in hm._strips, "the changed line to be drawn again")
        assert hm.layout_ is layout
        assert hm._strips[y] is not drawn[y]
        others = {k: s for k, s in drawn.items() if k != y and k < len(layout.lines) and not layout.lines[k].header}
        assert others and all(hm._strips.get(k) is s for k, s in others.items())


async def test_nodes_that_swap_pools_are_laid_out_under_their_new_pools() -> None:
    """As many nodes per pool and the same GPUs as before, but two nodes changed places: a new layout."""
    snap = build_snapshot(3)
    moved_to = {"h100-train-node-000": "l4-infer", "l4-infer-node-000": "h100-train"}
    nodes = tuple(n.model_copy(update={"pool": moved_to[n.name]}) if n.name in moved_to else n for n in snap.nodes)
    gpus = tuple(g.model_copy(update={"pool": moved_to[g.node]}) if g.node in moved_to else g for g in snap.gpus)
    relabelled = snap.model_copy(update={"nodes": nodes, "gpus": gpus, "generation": snap.generation + 1})
    async with showing(snap) as (app, pilot, feed):
        hm = app.query_one(Heatmap)
        first = next(g for g in snap.gpus if g.node == "h100-train-node-000")
        assert hm.layout_.lines[hm.layout_.line_of[first.key]].pool == "h100-train"
        feed.push(Update(snapshot=relabelled, changes=Changes(nodes=frozenset(moved_to))))
        await wait_applied(pilot, 2)
        assert hm.layout_.lines[hm.layout_.line_of[first.key]].pool == "l4-infer"
