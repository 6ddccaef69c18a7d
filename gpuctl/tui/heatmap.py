"""The GPU heatmap: one cell per GPU (or MIG instance), drawn with the Line API.

A fleet has thousands of GPUs, so this is one ScrollView that renders lines on
demand (`render_line` -> cached `Strip`) instead of a widget per cell. An
update invalidates only the lines holding GPUs that changed; scrolling and
moving the cursor reuse the cached strips.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from itertools import chain
from operator import attrgetter
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.color import Color
from textual.filter import ANSIToTruecolor, LineFilter
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.style import Style as VisualStyle

from gpuctl.model import Changes, Gpu
from gpuctl.query.filter import Filter
from gpuctl.query.fleet import FleetIndex, held_and_idle
from gpuctl.render.format import short_model
from gpuctl.tui.empty import empty_reason
from gpuctl.tui.heatmap_layout import POOL_PREFIX, Layout, Line, build_layout
from gpuctl.tui.line_text import line_runs
from gpuctl.tui.messages import MarksChanged, NodeChosen
from gpuctl.tui.palette import (
    IDLE_BG,
    METRIC_READING,
    NO_DATA_BG,
    RAMP,
    SPECS,
    XID_BG,
    Metric,
    bucket,
    cell_style,
    metric_value,
)

Look = tuple[str, str]  # a cell's glyph and background colour
NO_GPU: Look = ("?", NO_DATA_BG)  # a cell whose GPU left the index
MARKED_CELL = Style(underline=True, bold=True)  # a marked node's GPU cells in dense mode
# Line filters that map each segment on its own (ANSIToTruecolor: the one a colour terminal has): the heatmap
# filters each distinct Segment once. Any other filter is applied to whole lines, as Textual does.
SEGMENT_FILTERS: frozenset[type[LineFilter]] = frozenset({ANSIToTruecolor})
MAX_FILTERED = 4096  # filtered Segments kept (pool headers bring new texts each update)


def cell_look(gpu: Gpu, metric: Metric) -> Look:
    """(glyph, background colour) for one GPU: state glyphs win over the metric colour."""
    if gpu.xid:
        return "!", XID_BG
    if gpu.pod is not None and gpu.idle:
        return "z", IDLE_BG
    if gpu.stale:  # old readings: greyed like missing ones, so nobody reads them as current
        return "~", NO_DATA_BG
    value = metric_value(gpu, metric)
    if value is None:
        return "?", NO_DATA_BG
    bg = RAMP[bucket(value, SPECS[metric])]
    return (" " if gpu.pod is not None else "·"), bg


class Heatmap(ScrollView, can_focus=True):
    """Cells grouped by pool then node; arrows move, enter drills in, click selects."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "heatmap--header",
        "heatmap--header-cursor",
        "heatmap--label",
        "heatmap--empty",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(0,-1)", "Up", show=False),
        Binding("down,j", "move(0,1)", "Down", show=False),
        Binding("left,h", "move(-1,0)", "Left", show=False),
        Binding("right,l", "move(1,0)", "Right", show=False),
        Binding(
            "enter", "choose", "Open node", id="heatmap.open",
            tooltip="Open the node under the cursor, or fold a pool header",
        ),
        Binding(
            "space", "mark", "Mark", show=False,
            tooltip="Mark the node under the cursor (on a pool header, the pool); a acts on what is marked",
        ),
        Binding("asterisk", "mark_all", "Mark all", show=False, tooltip="Mark every node shown, or unmark them all"),
    ]

    metric: reactive[Metric] = reactive(Metric.UTIL)
    """The value cells are coloured by."""
    dense: reactive[bool] = reactive(False)
    """Pack nodes side by side without labels."""
    cursor: reactive[str | None] = reactive(None)
    """GPU key, or `pool:<name>` for a pool header line."""

    class CursorMoved(Message):
        def __init__(self, target: str | None) -> None:
            super().__init__()
            self.target = target

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.index: FleetIndex | None = None
        self.filter = Filter()
        self.collapsed: set[str] = set()
        self.layout_: Layout = build_layout({}, {}, width=80, dense=False)
        self._visible: dict[str, list[Gpu]] = {}
        self._signature: tuple[object, ...] = ()
        self._strips: dict[int, Strip] = {}
        # Per cached cell line: the look (glyph, colour) of each of its cells when it was drawn, so a
        # refresh that moved every reading repaints only the lines whose cells look different now.
        self._looks: dict[int, tuple[Look, ...]] = {}
        # One Segment per cell width and look, shared by every cell drawn with it.
        self._segments: dict[int, dict[Look, Segment]] = {}
        # Per pool: its header's summary for this index, metric and filter, worked out when a header is drawn.
        self._pool_summary: dict[str, str] = {}
        self._header_text: dict[int, str] = {}  # per cached header line: the summary it was drawn with
        self.marked: set[str] = set()  # node names, and `pool:<name>` for pools
        self._base: Style | None = None  # rich_style, which walks every ancestor: once, not per line
        self._label_style: Style | None = None  # the node labels' (base + component style), likewise
        self._view: tuple[int, int, int] | None = None  # (scroll x, scroll y, width) while render_lines runs
        # Per line: (the content line drawn, the line as finished for the screen), for the horizontal view,
        # width, padding style, filters and background of `_finished_look` (_render_plain).
        self._finished: dict[int, tuple[Strip, Strip]] = {}
        self._finished_look: tuple[object, ...] = ()
        self._filtered: dict[Segment, Segment] = {}  # a Segment drawn -> it through the line filters (same look)

    # -- data in -------------------------------------------------------------------------------

    def show(self, index: FleetIndex, changes: Changes, flt: Filter) -> None:
        """Take a new snapshot; repaint only what changed unless the layout moved."""
        self.index = index
        self.filter = flt
        self._visible = index.visible_gpus(flt)
        self._pool_summary = {}
        # Laid out again only when what the layout is made of changed: a whole kind listed again (`everything`)
        # mostly leaves the same GPUs in the same places (pods listed: 12,500 cells, ~0.1 s per layout).
        if self._relayout():
            return
        if not self.layout_.lines:  # the empty-state text explains why, and that can change
            self._forget()
            self.refresh()
            return
        line_of = self.layout_.line_of
        if changes.everything or 2 * len(changes.gpus) > len(line_of):
            # Most cells moved (a metrics refresh), or any may have: repaint the lines on screen that look different.
            self._repaint_changed_looks()
            return
        dirty: set[int] = set()
        for key in changes.gpus:
            y = line_of.get(key)
            if y is not None:
                dirty.add(y)
        top = round(self.scroll_y)
        bottom = top + self.size.height
        lines = self.layout_.lines
        for y, text in self._header_text.items():
            # A header off screen is drawn again when scrolled to: its pool's sums are not worked out now.
            if y in self._strips and (not top <= y < bottom or self._summary(lines[y].pool) != text):
                dirty.add(y)
        self._invalidate(dirty)

    def _repaint_changed_looks(self) -> None:
        """Keep the cached lines on screen whose cells (or pool summary) look as they did; drop the rest."""
        top = round(self.scroll_y)
        bottom = top + self.size.height
        lines = self.layout_.lines
        kept: dict[int, Strip] = {}
        looks: dict[int, tuple[Look, ...]] = {}
        redraw: list[int] = []
        for y, strip in self._strips.items():
            if not top <= y < bottom:
                continue  # off screen: drawn again when scrolled to
            line = lines[y] if y < len(lines) else None
            if line is None:
                same = True  # below the last line: blank whatever the data
            elif line.header:
                same = self._header_text.get(y) == self._summary(line.pool)
            else:
                now = self._line_looks(line)
                same = self._looks.get(y) == now
                looks[y] = now
            if same:
                kept[y] = strip
            else:
                redraw.append(y)
        self._strips = kept
        self._looks = looks  # the new looks of the lines on screen: the ones redrawn are drawn with these
        self._header_text = {y: t for y, t in self._header_text.items() if y in kept}
        self._refresh_spans(redraw)

    def _refresh_spans(self, ys: Iterable[int]) -> None:
        """Repaint these lines, one region per run of adjacent lines."""
        for start, count in line_runs(ys):
            self.refresh_lines(start, count)

    def _forget(self) -> None:
        """Drop every cached line (the layout, the metric, the marks or the theme changed)."""
        self._strips.clear()
        self._looks.clear()
        self._header_text.clear()
        self._finished.clear()

    def _summary(self, pool: str) -> str:
        """The pool header's counts of what is shown and mean of the selected metric ('' when it shows no GPU).

        Worked out when first asked for after an update: a metrics refresh sums only the pools whose header is on screen."""
        text = self._pool_summary.get(pool)
        if text is not None:
            return text
        assert self.index is not None
        metric = self.metric
        gpus, alloc, idle, total, measured = self._sum_shown(self.index.nodes_by_pool.get(pool, ()), metric)
        text = ""
        if gpus:
            short = {Metric.UTIL: "util", Metric.MEMORY: "mem", Metric.TEMPERATURE: "temp", Metric.POWER: "power"}[metric]
            mean = f"{total / measured:.0f}{SPECS[metric].unit}" if measured else "—"
            text = f"{gpus} GPU{'s' if gpus != 1 else ''} · {alloc} alloc · {idle} idle · {short} {mean}"
        self._pool_summary[pool] = text
        return text

    def _sum_shown(self, names: Iterable[str], metric: Metric) -> tuple[int, int, int, float, int]:
        """(GPUs, allocated, idle, sum of the metric, GPUs with it) over the nodes' GPUs shown.

        A pass in C per figure: a pool header on screen sums thousands of GPUs after every metrics refresh."""
        shown = self._visible
        gpus = list(chain.from_iterable(shown.get(n, ()) for n in names))
        values = list(map(attrgetter(METRIC_READING[metric]), gpus))  # Gpu.mem_used_pct is a property: read too
        alloc, idle = held_and_idle(gpus)
        # filter(None, ...) drops the zeros with the Nones: they add nothing to the sum.
        return len(gpus), alloc, idle, sum(filter(None, values)), len(values) - values.count(None)

    def _relayout(self, force: bool = False) -> bool:
        """Rebuild the layout when its inputs changed; True when it did."""
        if self.index is None:
            return False
        room = self.content_region  # scrollbar included: the layout decides whether one is needed
        visible = self._visible
        pools = tuple((p, tuple(ns)) for p, ns in self.index.nodes_by_pool.items())  # each node's place
        if visible is self.index.gpus_by_node:  # no filter: the index has the keys already
            keys = self.index.gpu_keys
        else:
            keys = frozenset(g.key for gs in visible.values() for g in gs)
        sig = (room.size, self.dense, frozenset(self.collapsed), pools, keys)
        if not force and sig == self._signature:
            return False
        self._signature = sig
        # Laid out to the width left beside the scrollbar as it is now, and again if that layout's length
        # shows it or hides it: the width follows from the content alone, not from when the scrollbar
        # last changed (a filter that shrinks the fleet to a few lines gets the whole width).
        width = max(12, self.scrollable_content_region.width)
        self.layout_ = self._laid_out(visible, width)
        fits = len(self.layout_.lines) <= room.height
        fitted = max(12, room.width - (0 if fits else self.styles.scrollbar_size_vertical))
        if fitted != width:
            self.layout_ = self._laid_out(visible, fitted)
        self._forget()
        self.virtual_size = Size(self.layout_.width, max(1, len(self.layout_.lines)))
        if self.cursor is None or self.cursor not in self.layout_.line_of:
            self.cursor = self._fallback_cursor()
        self.refresh()
        return True

    def _laid_out(self, visible: dict[str, list[Gpu]], width: int) -> Layout:
        assert self.index is not None
        collapsed = frozenset(self.collapsed)
        return build_layout(self.index.nodes_by_pool, visible, width=width, dense=self.dense, collapsed=collapsed)

    def _fallback_cursor(self) -> str | None:
        """Keep the cursor near where it was: same node, else same pool header, else the top."""
        old = self.cursor
        line_of = self.layout_.line_of
        if old and not old.startswith(POOL_PREFIX):
            node = old.split("/", 1)[0]
            for g in self._visible.get(node, ()):
                if g.key in line_of:
                    return g.key
            if self.index and (gpu := self.index.gpus.get(old)) and POOL_PREFIX + gpu.pool in line_of:
                return POOL_PREFIX + gpu.pool
        return self.layout_.first_target()

    def _invalidate(self, lines: Iterable[int]) -> None:
        top = round(self.scroll_y)
        bottom = top + self.size.height
        shown: list[int] = []
        for y in lines:
            self._strips.pop(y, None)
            self._looks.pop(y, None)
            if top <= y < bottom:
                shown.append(y)
        self._refresh_spans(shown)

    # -- rendering -----------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._forget()  # theme or CSS changed: cached colours are wrong now
        self._base = None
        self._label_style = None

    def on_resize(self, event: events.Resize) -> None:
        self._relayout()

    def watch_metric(self) -> None:
        self._pool_summary = {}
        self._forget()
        self.refresh()

    def watch_dense(self) -> None:
        self._relayout(force=True)

    def watch_cursor(self, old: str | None, new: str | None) -> None:
        line_of = self.layout_.line_of
        self._invalidate(y for t in (old, new) if t and (y := line_of.get(t)) is not None)
        if new and (pos := self.layout_.position(new)) is not None:
            _x, y = pos
            self.scroll_to_region_y(y)
        self.post_message(self.CursorMoved(new))

    def scroll_to_region_y(self, y: int) -> None:
        top = round(self.scroll_y)
        height = self.scrollable_content_region.height
        if y < top:
            self.scroll_to(y=y, animate=False)
        elif height and y >= top + height:
            self.scroll_to(y=y - height + 1, animate=False)

    def render_lines(self, crop: Region) -> list[Strip]:
        # Textual asks render_line for each line of the crop in turn: the scroll offset and the width, which
        # look the widget up on its screen (~20 µs), once for them all.
        self._view = (*self.scroll_offset, self.scrollable_content_region.width)
        try:
            if self.BLANK or not self._plain_box():
                return super().render_lines(crop)
            return self._render_plain(crop)
        finally:
            self._view = None

    def _plain_box(self) -> bool:
        """Whether Textual's styling of each line (StylesCache) would only pad it to the widget's width:
        no border, padding, outline, hatch, tint or opacity (the heatmap's CSS sets none)."""
        styles = self.styles
        return (
            not any(styles.gutter)
            and not any(edge for edge, _colour in styles.outline)
            and not styles.tint.a
            and styles.text_opacity == 1.0
            and (not styles.has_rule("hatch") or styles.hatch == "none")
            and self.opacity == 1.0
        )

    def _render_plain(self, crop: Region) -> list[Strip]:
        """The lines of `crop` as Textual's StylesCache draws a plain box (its content line, padded to the width
        under the scrollbar, then the app's line filters), each finished line kept until its cells change.

        After a metrics refresh every line on screen is new: StylesCache built four Strips per line (the
        line cropped, padded, boxed, filtered) and filtered every segment of each; this builds one, of
        Segments filtered once each (the cells share theirs), and a line kept costs nothing."""
        width, _ = self.size
        base_background, background = self.background_colors
        pad = VisualStyle(background=base_background + background).rich_style
        filters = tuple(self.get_line_filters())
        assert self._view is not None  # set by render_lines, the only caller
        scroll_x, scroll_y, view_width = self._view
        look = (scroll_x, view_width, width, pad, filters, background)
        if look != self._finished_look or len(self._filtered) > MAX_FILTERED:
            self._finished.clear()
            self._filtered.clear()
            self._finished_look = look
        finished = self._finished
        # The cells share their Segments: filter each Segment once, not each line's copy of it.
        by_segment = all(type(f) in SEGMENT_FILTERS for f in filters)
        filtered = self._filtered
        strips: list[Strip] = []
        for y in crop.line_range:
            content = self.render_line(y)  # the cached cell line, cropped to the view (the same Strip while kept)
            done = finished.get(scroll_y + y)
            if done is None or done[0] is not content:
                segments = list(content)
                if content.cell_length < width:
                    segments.append(Segment(" " * (width - content.cell_length), pad))
                if by_segment and content.cell_length <= width:
                    line = Strip([filtered.get(seg) or self._filter_segment(seg, filters, background) for seg in segments], width)
                else:  # as StylesCache does: cut to the width, then each filter over the whole line
                    line = Strip(segments, max(width, content.cell_length)).adjust_cell_length(width, pad)
                    for line_filter in filters:
                        line = line.apply_filter(line_filter, background)
                done = finished[scroll_y + y] = (content, line)
            strips.append(done[1])
        if crop.column_span != (0, width):
            x1, x2 = crop.column_span
            strips = [strip.crop(x1, x2) for strip in strips]
        return strips

    def _filter_segment(self, segment: Segment, filters: tuple[LineFilter, ...], background: Color) -> Segment:
        """`segment` through the line filters (each maps segment by segment), remembered in `_filtered`."""
        out = [segment]
        for line_filter in filters:
            out = line_filter.apply(out, background)
        self._filtered[segment] = out[0]
        return out[0]

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y, width = self._view or (*self.scroll_offset, self.scrollable_content_region.width)
        vy = scroll_y + y
        base = self._base
        if base is None:
            base = self._base = self.rich_style
        strip = self._strips.get(vy)
        if strip is None:
            strip = self._render_vline(vy, base)
            self._strips[vy] = strip
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _render_vline(self, vy: int, base: Style) -> Strip:
        lines = self.layout_.lines
        if not lines:
            msg = empty_reason(self.index.snapshot if self.index else None, self.filter, "GPUs")
            wrapped = textwrap.wrap(msg, max(10, self.layout_.width - 2))
            if vy >= len(wrapped):
                return Strip.blank(self.layout_.width, base)
            return Strip([Segment(" " + wrapped[vy], base + self.get_component_rich_style("heatmap--empty"))])
        if vy >= len(lines):
            return Strip.blank(self.layout_.width, base)
        line = lines[vy]
        if line.header:
            summary = self._header_text[vy] = self._summary(line.pool)
            return self._render_header(line, base, summary)
        looks = self._looks.get(vy)
        if looks is None:
            looks = self._looks[vy] = self._line_looks(line)
        return self._render_cells(line, base, looks)

    def _render_header(self, line: Line, base: Style, summary: str) -> Strip:
        folded = line.pool in self.collapsed
        selected = self.cursor == POOL_PREFIX + line.pool
        style = base + self.get_component_rich_style("heatmap--header-cursor" if selected else "heatmap--header")
        models = ""
        if self.index and (pool := self.index.pools.get(line.pool)) and pool.gpu_models:
            models = "  " + ", ".join(map(short_model, pool.gpu_models))
        mark = "● " if POOL_PREFIX + line.pool in self.marked else ""
        text = f"{'▸' if folded else '▾'} {mark}{line.pool}{models}  {summary}"
        return Strip([Segment(text, style)]).crop_extend(0, self.layout_.width, style)

    def _line_looks(self, line: Line) -> tuple[Look, ...]:
        """The look of each of the line's cells, from the current index and metric."""
        assert self.index is not None
        gpus = self.index.gpus
        metric = self.metric
        return tuple(cell_look(gpu, metric) if (gpu := gpus.get(c.key)) else NO_GPU for c in line.cells)

    def _render_cells(self, line: Line, base: Style, looks: tuple[Look, ...] | None = None) -> Strip:
        """The line's strip; `looks`: its cells' looks when already known (else found now)."""
        if looks is None:
            looks = self._line_looks(line)
        segs: list[Segment] = []
        lw = self.layout_.label_width
        if lw:
            label = ("●" + line.label) if line.label and line.label in self.marked else line.label
            label = label if len(label) <= lw else label[: lw - 1] + "…"
            label_style = self._label_style
            if label_style is None:
                label_style = self._label_style = base + self.get_component_rich_style("heatmap--label")
            segs.append(Segment(label.ljust(lw + 1), label_style))
        x = lw + 1 if lw else 0
        cursor = self.cursor
        marked = () if lw else self.marked  # dense: no label to carry a node's mark, so its cells are underlined
        gpus = self.index.gpus if self.index else {}
        for cell, look in zip(line.cells, looks):
            if cell.x > x:
                segs.append(Segment(" " * (cell.x - x), base))
            if cell.key == cursor:
                text = "[]" if cell.width >= 2 else "◆"
                segs.append(Segment(text[: cell.width].ljust(cell.width), cell_style(look[1], True)))
            elif marked and (gpu := gpus.get(cell.key)) is not None and gpu.node in marked:
                segs.append(Segment(look[0] * cell.width, cell_style(look[1]) + MARKED_CELL))
            else:
                shared = self._segments.setdefault(cell.width, {})
                seg = shared.get(look)
                if seg is None:
                    glyph, bg = look
                    seg = shared[look] = Segment(glyph * cell.width, cell_style(bg))
                segs.append(seg)
            x = cell.x + cell.width
        # x counts the line's cells (node names, marks and glyphs are one cell each): pad to the width, one Strip.
        width = self.layout_.width
        if x < width:
            segs.append(Segment(" " * (width - x), base))
        return Strip(segs, max(x, width))

    # -- input ---------------------------------------------------------------------------------

    def action_move(self, dx: int, dy: int) -> None:
        self.cursor = self.layout_.move(self.cursor, dx, dy)

    def action_choose(self) -> None:
        if self.cursor is None:
            return
        if self.cursor.startswith(POOL_PREFIX):
            self.toggle_pool(self.cursor.removeprefix(POOL_PREFIX))
        elif self.index and (gpu := self.index.gpus.get(self.cursor)):
            self.post_message(NodeChosen(gpu.node))

    def _target(self) -> str | None:
        """What space marks: the pool of a header line, else the node of the GPU under the cursor."""
        if self.cursor is None or self.cursor.startswith(POOL_PREFIX):
            return self.cursor
        gpu = self.index.gpus.get(self.cursor) if self.index else None
        return gpu.node if gpu else None

    def selection(self) -> tuple[list[str], list[str]]:
        """(nodes, pools) `a` acts on: those marked and still shown, else what is under the cursor."""
        shown = set(self._visible)
        pools = {p for p, nodes in (self.index.nodes_by_pool.items() if self.index else ()) if shown & set(nodes)}
        marked = [m for m in self.marked if (m.removeprefix(POOL_PREFIX) in pools if m.startswith(POOL_PREFIX) else m in shown)]
        if not marked and (target := self._target()):
            marked = [target]
        nodes = sorted(m for m in marked if not m.startswith(POOL_PREFIX))
        return nodes, sorted(m.removeprefix(POOL_PREFIX) for m in marked if m.startswith(POOL_PREFIX))

    def action_mark(self) -> None:
        if (target := self._target()) is not None:
            self.marked.symmetric_difference_update({target})
            self._forget()
            self.refresh()
            self.post_message(MarksChanged())

    def action_mark_all(self) -> None:
        shown = set(self._visible)
        self.marked = set() if self.marked >= shown else shown
        self._forget()
        self.refresh()
        self.post_message(MarksChanged())

    def action_toggle_pool(self) -> None:
        if pool := self.cursor_pool():
            self.toggle_pool(pool)

    def cursor_pool(self) -> str | None:
        if self.cursor is None:
            return None
        if self.cursor.startswith(POOL_PREFIX):
            return self.cursor.removeprefix(POOL_PREFIX)
        gpu = self.index.gpus.get(self.cursor) if self.index else None
        return gpu.pool if gpu else None

    def toggle_pool(self, pool: str) -> None:
        if pool in self.collapsed:
            self.collapsed.discard(pool)
        else:
            self.collapsed.add(pool)
            self.cursor = POOL_PREFIX + pool  # the cells it was on are gone
        self._relayout(force=True)

    def set_all_collapsed(self, collapsed: bool) -> None:
        if collapsed and self.index:
            self.collapsed = set(self.index.nodes_by_pool)
            if (pool := self.cursor_pool()) is not None:
                self.cursor = POOL_PREFIX + pool
        else:
            self.collapsed = set()
        self._relayout(force=True)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        vx = offset.x + round(self.scroll_x)
        vy = offset.y + round(self.scroll_y)
        if 0 <= vy < len(self.layout_.lines):
            line = self.layout_.lines[vy]
            target = line.target_at(vx)
            if target is not None:
                self.cursor = target
                if line.header:
                    self.toggle_pool(line.pool)
