"""LineText draws a Text as a Static does and, for a new text, draws again only the lines that changed."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import Static

from gpuctl.tui.gpu_details import GpuDetails
from gpuctl.tui.heatmap import Heatmap
from gpuctl.tui.line_text import LineText, line_runs
from tests.tui.conftest import showing, until, wait_applied
from tests.tui.factory import build_snapshot, bump

CSS = """
#line, #static { height: 8; width: 30; padding: 0 1; border-top: solid red; background: $surface; }
"""


class Counted(LineText):
    """Records the content lines Textual asks it for: the lines it draws again."""

    def __init__(self) -> None:
        super().__init__(id="line")
        self.drawn: list[int] = []

    def render_line(self, y: int) -> Strip:
        self.drawn.append(y)
        return super().render_line(y)


class Pair(App[None]):
    CSS: ClassVar[str] = CSS

    def compose(self) -> ComposeResult:
        yield Counted()
        yield Static(id="static")


def text(*lines: str) -> Text:
    out = Text("\n").join(Text(line, style="bold" if i == 0 else "") for i, line in enumerate(lines))
    out.no_wrap = True
    out.overflow = "ellipsis"
    return out


def screen_lines(widget: Static | LineText) -> list[Strip]:
    """The widget as the compositor takes it: every line, padding, border and background included."""
    return widget.render_lines(Region(0, 0, widget.outer_size.width, widget.outer_size.height))


async def test_a_new_text_draws_only_the_lines_that_changed_and_looks_as_a_static_does() -> None:
    app = Pair()
    async with app.run_test(size=(40, 20)) as pilot:
        line, static = app.query_one(Counted), app.query_one("#static", Static)
        first = text("gpu-node-a", "util 10%", "mem 3 GiB", "temp 40°C", "a line far too long for thirty cells")
        assert line.update(first)
        static.update(first, layout=False)
        await pilot.pause()
        assert screen_lines(line) == screen_lines(static)

        line.drawn.clear()
        assert not line.update(text("gpu-node-a", "util 10%", "mem 3 GiB", "temp 40°C", "a line far too long for thirty cells"))
        await pilot.pause()
        assert line.drawn == []  # the same text: nothing drawn

        second = text("gpu-node-a", "util 95%", "mem 3 GiB", "temp 41°C", "a line far too long for thirty cells")
        assert line.update(second)
        static.update(second, layout=False)
        await pilot.pause()
        assert sorted(set(line.drawn)) == [1, 3]
        assert screen_lines(line) == screen_lines(static)

        line.drawn.clear()
        shorter = text("gpu-node-a", "util 95%")
        line.update(shorter)
        static.update(shorter, layout=False)
        await pilot.pause()
        assert sorted(set(line.drawn)) == [2, 3, 4, 5]  # the lines that emptied (the long one wrapped, as in a Static)
        assert screen_lines(line) == screen_lines(static)
        assert str(line.render()) == "gpu-node-a\nutil 95%"

        line.drawn.clear()
        line.styles.width = 20  # a new size: every line again, at the new width
        await pilot.pause()
        assert set(range(line.size.height)) <= set(line.drawn)
        static.styles.width = 20
        await pilot.pause()
        assert screen_lines(line) == screen_lines(static)

        app.theme = "textual-light"  # new colours: every line again, in them
        await pilot.pause()
        assert screen_lines(line) == screen_lines(static)


def test_line_runs_groups_adjacent_lines() -> None:
    assert list(line_runs([7, 1, 2, 3, 9, 8])) == [(1, 3), (7, 3)]
    assert list(line_runs([])) == []


async def test_the_details_panel_draws_again_only_the_lines_a_metrics_refresh_changed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    drawn: list[int] = []
    render_line = GpuDetails.render_line

    def counted(self: GpuDetails, y: int) -> Strip:
        drawn.append(y)
        return render_line(self, y)

    monkeypatch.setattr(GpuDetails, "render_line", counted)
    snap = build_snapshot(3)
    async with showing(snap, (200, 60)) as (app, pilot, feed):  # wide: the details beside the map, a fact per line
        busy = next(g for g in snap.gpus if g.busy and g.util_pct is not None and not g.stale)
        app.query_one(Heatmap).cursor = busy.key
        details = app.query_one(GpuDetails)
        await until(pilot, lambda: busy.node in str(details.render()), "the busy GPU's details")
        before = str(details.render()).splitlines()
        assert len(before) > 8 and details.size.height > 40
        drawn.clear()
        feed.push(bump(snap, every=1))  # a metrics refresh: every busy GPU's utilisation moves
        await wait_applied(pilot, 2)
        after = str(details.render()).splitlines()
        changed = {y for y, (a, b) in enumerate(zip(before, after, strict=True)) if a != b}
        assert changed  # the reading and the sparkline moved
        await until(pilot, lambda: changed <= set(drawn), "the changed lines to be drawn")
        assert set(drawn) == changed  # and only those, not the panel's ~50 lines
