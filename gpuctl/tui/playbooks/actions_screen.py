"""`a`: the playbooks that apply to the selection; the ones the user may not run greyed out, with the reason.

In a worker: the engine is opened if it is not yet, its catalog gives the offers
for the selection (offers.py), and whether the user may run each one is the
engine's answer (desk.check: gpuctl's policy, then the cluster). Enter on a usable
playbook dismisses with it (`Chosen`); the flow opens the plan screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from gpuctl.playbooks.spec import Playbook
from gpuctl.tui.playbooks.desk import Checked, Desk
from gpuctl.tui.playbooks.offers import Offer, Selection, offers_for
from gpuctl.tui.playbooks.reported import describe


@dataclass(frozen=True)
class Chosen:
    offer: Offer
    playbook: Playbook


def option_text(checked: Checked, *, pending: bool = False) -> Text:
    offer = checked.offer
    text = Text(offer.playbook, style="bold")
    text.append(f"  {offer.title}")
    reason = offer.unavailable or checked.denied
    if reason:
        text.append(f"\n  {reason}", style="italic")
    elif pending:
        text.append("\n  checking whether you may run it…", style="italic dim")
    return text


class ActionsScreen(ModalScreen[Chosen | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Close", id="actions.close"),
    ]

    def __init__(self, selection: Selection, desk: Desk) -> None:
        super().__init__()
        self.selection = selection
        self.desk = desk
        self.checked: list[Checked] = []
        self.playbooks: dict[str, Playbook] = {}
        self.answered = False

    def compose(self) -> ComposeResult:
        with Vertical(id="actions-body"):
            yield Static(Text(f"Playbooks for {self.selection.describe()} (enter plans, esc closes)", style="bold"),
                         id="actions-title")  # fmt: skip
            yield Static(Text("opening the playbook engine…", style="italic"), id="actions-note")
            yield OptionList(id="actions-list")

    def _options(self, *, pending: bool) -> list[Option]:
        return [
            Option(option_text(c, pending=pending), id=str(i), disabled=pending or not c.usable)
            for i, c in enumerate(self.checked)
        ]

    def on_mount(self) -> None:
        self._check(self.desk)

    def _note(self, text: str, style: str = "italic") -> None:
        self.query_one("#actions-note", Static).update(Text(text, style=style))

    @work(exclusive=True, group="actions-check")
    async def _check(self, desk: Desk) -> None:
        try:
            engine = await desk.engine()
        except Exception as e:  # the engine is a boundary: say what failed, keep the UI
            self._note(f"cannot open the playbook engine: {describe(e)}", "bold red")
            self.answered = True
            return
        self.playbooks = dict(engine.catalog.playbooks)
        offers = offers_for(self.selection, engine.catalog)
        if not offers:
            self._note("No playbook applies to this selection.")
            self.answered = True
            return
        self.checked = [Checked(offer) for offer in offers]
        options = self.query_one(OptionList)
        options.add_options(self._options(pending=True))
        self._note("checking what you may run (gpuctl policy, then the cluster)…")
        try:
            self.checked = await desk.check(offers)
        except Exception as e:  # unchecked is not allowed: each says why it is greyed out
            self.checked = [Checked(c.offer, f"not checked: {describe(e)}") for c in self.checked]
        self._note("enter plans the highlighted playbook; greyed out: you may not run it here (the reason below it)", "")
        self.answered = True
        options.clear_options()
        options.add_options(self._options(pending=False))
        first = next((i for i, c in enumerate(self.checked) if c.usable), None)
        if first is not None:
            options.highlighted = first
        options.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        checked = self.checked[int(event.option.id or 0)]
        if checked.usable:
            self.dismiss(Chosen(checked.offer, self.playbooks[checked.offer.playbook]))

    async def action_dismiss(self, result: Chosen | None = None) -> None:
        self.dismiss(result)
