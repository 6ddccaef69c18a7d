"""A keyed, sortable table drawn with the Line API, for thousands of rows updated every few seconds.

Textual's DataTable measures every cell it is given and refreshes per cell
update (Textualize/textual#1892); at 10,000 pods that costs seconds. Here a
view hands over its rows as model objects by key: sorting reads one cheap key
function per row, and cells are only built for the rows on screen. The cursor
stays on its row (by key) through updates and re-sorts; the header stays put
while the rows scroll.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Generic, TypeVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from gpuctl.tui.messages import MarksChanged

T = TypeVar("T")
PAD = 1


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    style: str = ""


@dataclass(frozen=True, slots=True)
class Column(Generic[T]):
    key: str
    label: str
    width: int
    sort: Callable[[T], Any]
    right: bool = False


class _Missing:
    """Sort value of an unknown number: such rows go last whichever the direction."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def num_sort(value: float | None) -> Any:
    return MISSING if value is None else value


@lru_cache(maxsize=256)
def _style(spec: str) -> Style:
    return Style.parse(spec) if spec else Style()


def _fit(text: str, width: int, right: bool) -> str:
    if len(text) > width:
        return text[: max(0, width - 1)] + "…"
    return text.rjust(width) if right else text.ljust(width)


class RowTable(ScrollView, Generic[T], can_focus=True):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "row-table--header",
        "row-table--sorted",
        "row-table--odd",
        "row-table--cursor",
        "row-table--cursor-blurred",
        "row-table--empty",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First row", show=False),
        Binding("end,G", "jump(-1)", "Last row", show=False),
        Binding(
            "enter", "choose", "Open", id="table.open",
            tooltip="Open the row: its node (nodes, pods, alerts) or its pods (quotas)",
        ),
        Binding("s", "cycle_sort", "Sort", id="table.sort", tooltip="Sort by the next column"),
        Binding("r", "reverse_sort", "Reverse", id="table.reverse", tooltip="Reverse the sort order"),
        Binding(
            "space", "mark", "Mark", show=False, id="table.mark",
            tooltip="Mark or unmark the row (a acts on the marked rows)",
        ),
        Binding(
            "asterisk", "mark_all", "Mark all", show=False, id="table.mark_all",
            tooltip="Mark every row the filter shows, or unmark them all",
        ),
    ]

    cursor_key: reactive[str | None] = reactive(None, always_update=True)
    """Key of the row under the cursor; it follows its row through re-sorts."""

    class RowChosen(Message):
        def __init__(self, table: RowTable[Any], key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> RowTable[Any]:
            return self.table

    class SortChanged(Message):
        def __init__(self, table: RowTable[Any]) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> RowTable[Any]:
            return self.table

    def __init__(
        self,
        columns: Sequence[Column[T]],
        *,
        sort_by: str,
        reverse: bool = False,
        empty: str = "Nothing to show.",
        open_label: str | None = None,
        id: str | None = None,
    ) -> None:
        """`open_label`: what enter does on a row (shown in the footer); None when rows don't open."""
        super().__init__(id=id)
        self.open_label = open_label
        self.columns = tuple(columns)
        self._by_key = {c.key: c for c in self.columns}
        self.sort_by = sort_by
        self.sort_reverse = reverse
        self.empty_text = empty
        self._items: Mapping[str, T] = {}
        self._cells: Callable[[T], Sequence[Cell]] = lambda _: ()
        self._order: list[str] = []
        self._row_of: dict[str, int] = {}
        self._strips: dict[str, Strip] = {}
        self._width = sum(c.width + 2 * PAD for c in self.columns)
        self.marked: set[str] = set()  # keys marked with space; kept only while their rows are shown

    # -- data ----------------------------------------------------------------------------------

    def set_rows(
        self, items: Mapping[str, T], cells: Callable[[T], Sequence[Cell]], *, empty: str | None = None
    ) -> None:
        """Show exactly these rows; `cells` draws one (called only for rows on screen).

        `empty` replaces the text shown when there are no rows (say why).
        """
        if empty is not None:
            self.empty_text = empty
        self._items = items
        self._cells = cells
        self.marked.intersection_update(items)  # a row the filter hides is no longer part of the selection
        self._strips.clear()  # ages and values move every update; only visible rows get redrawn
        self._resort()

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def shown_keys(self) -> list[str]:
        return list(self._order)

    def item(self, key: str) -> T | None:
        return self._items.get(key)

    @property
    def selection(self) -> list[T]:
        """What `a` acts on: the marked rows in table order, else the row under the cursor."""
        keys = [k for k in self._order if k in self.marked] or ([self.cursor_key] if self.cursor_key else [])
        return [self._items[k] for k in keys if k in self._items]

    def _resort(self) -> None:
        column = self._by_key[self.sort_by]
        sort = column.sort
        items = self._items
        known: list[tuple[Any, str]] = []
        unknown: list[str] = []
        for k, item in items.items():
            value = sort(item)
            if value is MISSING:
                unknown.append(k)
            else:
                known.append((value, k))
        known.sort(reverse=self.sort_reverse)
        self._order = [k for _, k in known] + sorted(unknown)
        self._row_of = {k: i for i, k in enumerate(self._order)}
        self.virtual_size = Size(self._width, len(self._order) + 1)
        if self.cursor_key not in self._row_of:
            self.cursor_key = self._order[0] if self._order else None
        self.refresh()

    def set_sort(self, key: str, reverse: bool | None = None) -> None:
        if reverse is None:
            reverse = not self.sort_reverse if key == self.sort_by else self.sort_reverse
        self.sort_by, self.sort_reverse = key, reverse
        self._resort()
        if self._order:
            self.cursor_key = self._order[0]  # a new order is read from the top
        self.scroll_to(y=0, animate=False)
        self.post_message(self.SortChanged(self))

    # -- rendering -----------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def watch_cursor_key(self, old: str | None, new: str | None) -> None:
        for key in (old, new):
            if key is not None and (row := self._row_of.get(key)) is not None:
                self.refresh_line(row + 1)
        if new is not None and (row := self._row_of.get(new)) is not None:
            top = round(self.scroll_y)
            visible = max(1, self.scrollable_content_region.height - 1)
            if row < top:
                self.scroll_to(y=row, animate=False)
            elif row >= top + visible:
                self.scroll_to(y=row - visible + 1, animate=False)

    def on_focus(self) -> None:
        self._refresh_cursor()

    def on_blur(self) -> None:
        self._refresh_cursor()

    def _refresh_cursor(self) -> None:
        if self.cursor_key is not None and (row := self._row_of.get(self.cursor_key)) is not None:
            self.refresh_line(row + 1)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            strip = self._header(base)
        else:
            row = scroll_y + y - 1
            if row >= len(self._order):
                if row == 0:
                    style = base + self.get_component_rich_style("row-table--empty")
                    return Strip([Segment(" " + self.empty_text, style)]).crop_extend(0, width, base)
                return Strip.blank(width, base)
            strip = self._row(row, base)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _header(self, base: Style) -> Strip:
        header = base + self.get_component_rich_style("row-table--header")
        sorted_style = header + self.get_component_rich_style("row-table--sorted")
        segs: list[Segment] = []
        for c in self.columns:
            label = c.label
            if c.key == self.sort_by:
                label += "▼" if self.sort_reverse else "▲"
            text = " " * PAD + _fit(label, c.width, c.right) + " " * PAD
            segs.append(Segment(text, sorted_style if c.key == self.sort_by else header))
        return Strip(segs, self._width)

    def _row(self, row: int, base: Style) -> Strip:
        key = self._order[row]
        strip = self._strips.get(key)
        if strip is None:
            segs: list[Segment] = []
            for c, cell in zip(self.columns, self._cells(self._items[key]), strict=False):
                pad = Segment(" " * PAD)
                segs += [pad, Segment(_fit(cell.text, c.width, c.right), _style(cell.style)), pad]
            if key in self.marked:  # a mark in the first column's padding: unmarked rows draw as before
                segs[0] = Segment("●", _style("bold"))
            strip = self._strips[key] = Strip(segs).extend_cell_length(self._width)
        if key == self.cursor_key:
            cls = "row-table--cursor" if self.has_focus else "row-table--cursor-blurred"
            return strip.apply_style(base + self.get_component_rich_style(cls))
        if row % 2:
            return strip.apply_style(base + self.get_component_rich_style("row-table--odd"))
        return strip.apply_style(base)

    # -- input ---------------------------------------------------------------------------------

    def _move_to(self, row: int) -> None:
        if self._order:
            self.cursor_key = self._order[max(0, min(len(self._order) - 1, row))]

    def _cursor_row(self) -> int:
        return self._row_of.get(self.cursor_key or "", 0)

    def action_move(self, delta: int) -> None:
        self._move_to(self._cursor_row() + delta)

    def action_page(self, direction: int) -> None:
        self._move_to(self._cursor_row() + direction * max(1, self.scrollable_content_region.height - 2))

    def action_jump(self, row: int) -> None:
        self._move_to(row if row >= 0 else len(self._order) - 1)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "choose":
            return self.open_label is not None  # hidden from the footer where enter does nothing
        return True

    def action_choose(self) -> None:
        if self.cursor_key is not None and self.open_label is not None:
            self.post_message(self.RowChosen(self, self.cursor_key))

    def action_mark(self) -> None:
        key = self.cursor_key
        if key is None:
            return
        self.marked.symmetric_difference_update({key})
        self._strips.pop(key, None)
        self.refresh_line(self._row_of[key] + 1)
        self.post_message(MarksChanged())
        self.action_move(1)  # space, space, space marks a run of rows

    def action_mark_all(self) -> None:
        self.marked = set() if self.marked >= set(self._order) else set(self._order)
        self._strips.clear()
        self.refresh()
        self.post_message(MarksChanged())

    def action_cycle_sort(self) -> None:
        keys = [c.key for c in self.columns]
        self.set_sort(keys[(keys.index(self.sort_by) + 1) % len(keys)], reverse=self.sort_reverse)

    def action_reverse_sort(self) -> None:
        self.set_sort(self.sort_by, reverse=not self.sort_reverse)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            x = offset.x + round(self.scroll_x)
            for c in self.columns:
                x -= c.width + 2 * PAD
                if x < 0:
                    self.set_sort(c.key)
                    return
            return
        row = round(self.scroll_y) + offset.y - 1
        if 0 <= row < len(self._order):
            key = self._order[row]
            if key == self.cursor_key and self.open_label is not None:  # a second click opens it
                self.post_message(self.RowChosen(self, key))
            self.cursor_key = key
