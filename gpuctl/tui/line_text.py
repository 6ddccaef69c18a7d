"""`LineText`: a block of Rich text, drawn like Textual's Static, that repaints only the lines that changed.

A Static repaints every line of its region for any new text: the details panel
beside the heatmap (up to ~55 lines, of which a metrics refresh changes five)
cost 4-9 ms per update at 8,000 GPUs, every line re-rendered and re-styled.
This widget renders the text to strips the way Static does (`Visual.to_strips`
at the content size, so it looks the same to the cell), keeps them, and on a
new text asks Textual to repaint only the lines whose strips differ. A new text
never lays the screen out (a Static's `update(layout=False)`): give the widget
its size in CSS (`height: auto` measures only the text it has when laid out).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import zip_longest

from rich.text import Text
from textual.geometry import Region, Size
from textual.selection import Selection
from textual.strip import Strip
from textual.visual import Visual, visualize
from textual.widget import Widget


def line_runs(ys: Iterable[int]) -> Iterator[tuple[int, int]]:
    """(first line, count) of each run of adjacent lines among `ys`: one repaint per run, as a repaint costs
    the same for one line or fifty."""
    start = end = -1
    for y in sorted(ys):
        if y != end:
            if end > start:
                yield start, end - start
            start = y
        end = y + 1
    if end > start:
        yield start, end - start


class LineText(Widget):
    """Shows one `Text` (`update`, as a Static's); `render()` is that text, as a Static's is its content."""

    DEFAULT_CSS = """
    LineText {
        height: auto;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._text = Text()
        self._strips: list[Strip] | None = None  # the text rendered at `_drawn_at`; None: render it when drawn
        self._drawn_at = Size(0, 0)

    def update(self, text: Text) -> bool:
        """Show `text`, repainting the lines that now look different; False (and nothing done) when it is the text shown."""
        if text == self._text:
            return False
        self._text = text
        if self._strips is None or self._drawn_at != self.size:
            self._strips = None
            self.refresh()
            return True
        old, new = self._strips, self._render_strips()
        self._strips = new
        # The whole text is rendered again (the text offsets mouse selection reads are numbered within the
        # whole text); only the lines that differ are repainted.
        changed = (y for y, (was, now) in enumerate(zip_longest(old, new)) if was != now)
        for start, count in line_runs(changed):
            self.refresh(Region(0, start, self._drawn_at.width, count))
        return True

    def render(self) -> Text:
        # What Textual measures (height: auto), selects and copies: the text, as for a Static.
        return self._text

    def render_line(self, y: int) -> Strip:
        if self._strips is None or self._drawn_at != self.size:
            self._strips = self._render_strips()
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(self._drawn_at.width, self.visual_style.rich_style)

    def _render_strips(self) -> list[Strip]:
        """The text at the content size, as Static draws it (Widget._render_content)."""
        self._drawn_at = size = self.size
        visual = visualize(self, self._text, markup=False)
        return Visual.to_strips(self, visual, size.width, size.height, self.visual_style)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips = None  # theme or CSS changed: the kept strips have the old colours

    def selection_updated(self, selection: Selection | None) -> None:
        self._strips = None  # the selection is drawn into the strips
        super().selection_updated(selection)
