"""The `/` filter input, docked under the views and hidden until asked for."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Input

DEBOUNCE_S = 0.15


class FilterBar(Input):
    """Typing filters live (debounced); enter keeps the filter, esc clears it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear", "Clear filter", id="filter.clear", tooltip="Clear the filter and close the bar"),
    ]

    class FilterChanged(Message):
        def __init__(self, text: str, done: bool) -> None:
            super().__init__()
            self.text = text
            self.done = done

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder="filter: ns:… pool:… node:… pod:… model:… or any text", id=id)
        self.cursor_blink = False
        self._timer: Timer | None = None

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE_S, self._emit)

    def _emit(self) -> None:
        self.post_message(self.FilterChanged(self.value, done=False))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._timer is not None:
            self._timer.stop()
        self.post_message(self.FilterChanged(self.value, done=True))

    def action_clear(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.value = ""
        self.post_message(self.FilterChanged("", done=True))
