"""A DataTable that is kept in sync by key instead of being cleared and refilled.

Views describe each row as a tuple of `Cell`s (display text, style and a sort
value). `replace` diffs a full set of rows against what is shown; `patch`
touches only the given keys. Only cells whose content changed are updated, so
a 10,000-row table redraws a handful of cells per update and keeps the
cursor on the same row (by key) through re-sorts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    sort: Any = None
    style: str = ""
    right: bool = False

    def __rich__(self) -> Text:
        return Text(self.text, style=self.style, justify="right" if self.right else "left", no_wrap=True, end="")


def num_sort(value: float | None) -> tuple[int, float]:
    """Sort key that puts unknown values last whatever the direction's intent."""
    return (1, 0.0) if value is None else (0, value)


def _sort_value(cell: Cell | None) -> Any:
    # Views give every cell of a column the same kind of sort value (a tuple
    # ending in the row's name, so ties are stable); text is the fallback.
    if cell is None:
        return ""
    return cell.sort if cell.sort is not None else cell.text


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int


class KeyedTable(DataTable[Cell]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "cycle_sort", "Sort", id="table.sort", tooltip="Sort by the next column"),
        Binding("r", "reverse_sort", "Reverse", id="table.reverse", tooltip="Reverse the sort order"),
    ]

    class SortChanged(Message):
        def __init__(self, table: KeyedTable) -> None:
            super().__init__()
            self.table = table

    def __init__(self, columns: Sequence[Column], *, sort_by: str, reverse: bool = False, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.columns_spec = tuple(columns)
        self.sort_by = sort_by
        self.sort_reverse = reverse
        self._shown: dict[str, tuple[Cell, ...]] = {}

    def on_mount(self) -> None:
        for col in self.columns_spec:
            self.add_column(self._label(col), width=col.width, key=col.key)

    def _label(self, col: Column) -> Text:
        if col.key != self.sort_by:
            return Text(col.label)
        return Text(col.label + ("▼" if self.sort_reverse else "▲"), style="bold")

    @property
    def shown_keys(self) -> list[str]:
        return [row.key.value for row in self.ordered_rows if row.key.value is not None]

    @property
    def cursor_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # an empty or shrinking table has no valid cursor cell
            return None

    def replace(self, rows: Mapping[str, Sequence[Cell]]) -> None:
        """Show exactly these rows (diffed against what is shown)."""
        keep = self.cursor_key
        gone = [k for k in self._shown if k not in rows]
        if self._apply({**dict.fromkeys(gone), **rows}):
            self._resort(keep)

    def patch(self, rows: Mapping[str, Sequence[Cell] | None]) -> None:
        """Update, add or (with None) remove just these rows."""
        keep = self.cursor_key
        if self._apply(rows):
            self._resort(keep)

    def _apply(self, rows: Mapping[str, Sequence[Cell] | None]) -> bool:
        changed = False
        for key, cells in rows.items():
            old = self._shown.get(key)
            if cells is None:
                if old is not None:
                    try:
                        self.remove_row(key)
                    except RowDoesNotExist:
                        pass
                    del self._shown[key]
                    changed = True
                continue
            new = tuple(cells)
            if old is None:
                self.add_row(*new, key=key)
            elif old != new:
                for col, a, b in zip(self.columns_spec, old, new, strict=True):
                    if a != b:
                        self.update_cell(key, col.key, b)
            else:
                continue
            self._shown[key] = new
            changed = True
        return changed

    def _resort(self, keep: str | None) -> None:
        """Re-sort, leaving the cursor on the row it was on (by key), if there was one."""
        self.sort(self.sort_by, key=_sort_value, reverse=self.sort_reverse)
        if keep is not None and keep in self._shown:
            self.move_cursor(row=self.get_row_index(keep), animate=False, scroll=False)

    def set_sort(self, key: str, reverse: bool | None = None) -> None:
        if key == self.sort_by and reverse is None:
            reverse = not self.sort_reverse
        self.sort_by = key
        self.sort_reverse = bool(reverse)
        for col in self.columns_spec:
            self.columns[col.key].label = self._label(col)  # type: ignore[index]
        self._resort(None)
        self.move_cursor(row=0, column=0)  # a new order is read from the top
        self.refresh()
        self.post_message(self.SortChanged(self))

    def action_cycle_sort(self) -> None:
        keys = [c.key for c in self.columns_spec]
        nxt = keys[(keys.index(self.sort_by) + 1) % len(keys)]
        self.set_sort(nxt, reverse=self.sort_reverse)

    def action_reverse_sort(self) -> None:
        self.set_sort(self.sort_by, reverse=not self.sort_reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = event.column_key.value
        if key is not None:
            self.set_sort(key)
