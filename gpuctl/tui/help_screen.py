"""`?`: every key the app answers to, read from the bindings themselves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

_KEY_NAMES = {
    "question_mark": "?",
    "slash": "/",
    "escape": "esc",
    "enter": "enter",
    "space": "space",
    "up": "↑",
    "down": "↓",
    "left": "←",
    "right": "→",
    "plus": "+",
    "minus": "-",
    "equals_sign": "=",
}

FILTER_HELP = (
    "Filter syntax: words are ANDed, matched case-insensitively as substrings.\n"
    "  ns:<text>  pool:<text>  node:<text>  pod:<text>  model:<text>  or a bare word for any field.\n"
    "  e.g.  ns:vision pool:h100     idle pods: open Pods and sort by 'idle for' (s, r)"
)


def key_label(keys: str) -> str:
    return ", ".join(_KEY_NAMES.get(k, k) for k in keys.split(","))


def bindings_table(sections: Sequence[tuple[str, Sequence[BindingType]]]) -> Group:
    parts: list[Text | Table] = []
    for title, bindings in sections:
        parts.append(Text(title, style="bold underline"))
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True, width=14)
        table.add_column()
        for b in bindings:
            if isinstance(b, Binding):
                table.add_row(key_label(b.key), b.tooltip or b.description)
        parts.append(table)
        parts.append(Text(""))
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close help", id="help.close"),
    ]

    def __init__(self, sections: Sequence[tuple[str, Sequence[BindingType]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static(Text("gpuctl top — keys (esc closes)", style="bold"), id="help-title")
            yield Static(bindings_table(self.sections))
            yield Static(FILTER_HELP, id="help-filter")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
