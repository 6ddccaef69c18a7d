"""`x`: pick a kubeconfig context; the app reconnects to it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class ContextScreen(ModalScreen[str | None]):
    """Dismisses with the chosen context name, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Cancel", id="context.cancel", tooltip="Keep the current context"),
    ]

    def __init__(self, names: Sequence[str], current: str | None, *, source: str = "") -> None:
        super().__init__()
        self.names = tuple(names)
        self.current = current
        self.source = source

    def compose(self) -> ComposeResult:
        with Vertical(id="context-body"):
            yield Static(Text("Switch context (enter connects, esc cancels)", style="bold"), id="context-title")
            yield OptionList(*(self._option(name) for name in self.names), id="context-list")
            if self.source:
                yield Static(Text(f"from {self.source}", style="dim", overflow="ellipsis", no_wrap=True))

    def _option(self, name: str) -> Option:
        label = Text(no_wrap=True, overflow="ellipsis")
        if name == self.current:
            label.append("● ", style="bold green")
            label.append(name, style="bold")
            label.append("  (current)", style="dim")
        else:
            label.append(f"  {name}")
        return Option(label, id=name)

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        if self.current in self.names:
            options.highlighted = self.names.index(self.current)
        options.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)
