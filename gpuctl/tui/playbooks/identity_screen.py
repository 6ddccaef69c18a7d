"""Ask whom to act as (`Y`/`N` in the runs view): a user and their groups, as the CLI's `--as`/`--as-group`.

Whether you may act for them is the gpuctl policy's `act_as` (Desk.requester_as
checks it); this screen only reads the name.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from gpuctl.identity import Identity


def parse_identity(text: str) -> Identity | None:
    """`user group1 group2` → Identity; None for empty text."""
    words = text.split()
    return Identity(user=words[0], groups=tuple(words[1:])) if words else None


class IdentityScreen(ModalScreen[Identity | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Cancel", id="identity.cancel"),
    ]

    def __init__(self, verb: str) -> None:
        super().__init__()
        self.verb = verb

    def compose(self) -> ComposeResult:
        with Vertical(id="identity-body"):
            yield Static(Text(f"{self.verb} as (user, then groups; enter confirms, esc cancels)", style="bold"))
            yield Input(placeholder="user [group ...]", id="identity-input")
            yield Static(Text("the gpuctl policy's act_as decides whether you may", style="dim"))

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(parse_identity(event.value))

    async def action_dismiss(self, result: Identity | None = None) -> None:
        self.dismiss(result)
