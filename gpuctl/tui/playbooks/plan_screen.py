"""The plan screen: parameters as a form, the engine's plan beside them, and nothing runs before ctrl+y.

ctrl+p (or the Plan button) asks `engine.plan` for the form's values as the
requester, in a worker; the plan shows as the CLI prints it (gpuctl.render.plan:
every target and action, before → after, GPUs affected, warnings, what was left
out, why it is blocked). ctrl+y submits exactly that plan (`engine.submit` under
this screen's idempotency key: a second ctrl+y finds the run the first made) and
dismisses with the `Submitted` run; the app follows it on the progress screen.
Changing a field after planning withdraws the plan until it is computed again.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Select, Static

from gpuctl.playbooks.engine import Submitted
from gpuctl.playbooks.plan import Plan
from gpuctl.playbooks.spec import Playbook
from gpuctl.render.plan import render_plan
from gpuctl.tui.playbooks.desk import Desk
from gpuctl.tui.playbooks.offers import Offer
from gpuctl.tui.playbooks.param_form import ParamForm
from gpuctl.tui.playbooks.reported import describe


def marked_difference(plan: Plan, marked: tuple[str, ...]) -> str | None:
    """What a person must know when the plan's pods are not the ones they marked (None when they are).

    Only offers narrowed for a playbook that cannot name pods carry `marked`; a `pods` offer is exact."""
    if not marked:
        return None
    planned = {s.target.key.removeprefix("Pod/") for s in plan.steps if s.target.kind == "Pod"}
    extra, missing = sorted(planned - set(marked)), sorted(set(marked) - planned)
    parts = []
    if extra:
        parts.append(f"the plan also takes pods you did not mark: {', '.join(extra)}")
    if missing:
        parts.append(f"it leaves out marked pods: {', '.join(missing)} (see why under 'left out')")
    return "; ".join(parts) + " — narrow it with namespace, node or max_pods" if parts else None


class PlanScreen(Screen[Submitted | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="plan.back", tooltip="Leave without running anything"),
        Binding("ctrl+p", "plan", "Plan", id="plan.plan", tooltip="Compute the plan for these parameters"),
        Binding("ctrl+y", "confirm", "Confirm", id="plan.confirm", tooltip="Run (or submit for approval) the plan shown"),
    ]

    def __init__(
        self, offer: Offer, playbook: Playbook, desk: Desk | None, *, plan: Plan | None = None, key: str | None = None
    ) -> None:
        """`plan`: one computed already (it is shown, and nothing is planned on mount)."""
        super().__init__()
        self.offer = offer
        self.playbook = playbook
        self.desk = desk
        self.key = key or f"tui:{uuid.uuid4()}"
        self.plan: Plan | None = plan
        self._planned_for: dict[str, str] | None = None  # the form's values the plan shown was computed for
        self.busy = False

    def compose(self) -> ComposeResult:
        approval = "needs approval" if self.playbook.approval.required else "runs at once, no approval"
        undo = "reversible" if self.playbook.reversible else "not reversible"
        yield Static(Text(f"{self.playbook.name} · {self.offer.title} · {approval} · {undo}", style="bold"), id="plan-title")
        with Horizontal(id="plan-body"):
            with VerticalScroll(id="plan-form-box"):
                yield ParamForm(self.playbook, self.offer.params, self.offer.choices, id="plan-form")
                with Horizontal(id="plan-buttons"):
                    yield Button("Plan (ctrl+p)", id="plan-button", compact=True)
                    yield Button(self._confirm_label(), id="confirm-button", variant="warning", compact=True, disabled=True)
            with VerticalScroll(id="plan-box"):
                yield Static("", id="plan-text")
        yield Static("", id="plan-status")
        yield Footer()

    def _confirm_label(self) -> str:
        return "Submit for approval (ctrl+y)" if self.playbook.approval.required else "Run it (ctrl+y)"

    def on_mount(self) -> None:
        if self.plan is not None:
            self._show(self.plan)
        else:
            self.action_plan()

    # -- planning -----------------------------------------------------------------------------

    def _status(self, text: str, style: str = "") -> None:
        self.query_one("#plan-status", Static).update(Text(text, style=style))

    def _show(self, plan: Plan) -> None:
        self.plan = plan
        self.query_one("#plan-text", Static).update(render_plan(plan))
        ready = plan.runnable
        self.query_one("#confirm-button", Button).disabled = not ready
        if ready:
            verb = "submit it for approval" if self.playbook.approval.required else "run it"
            text = Text(f"Nothing has been done yet. ctrl+y to {verb}, esc to leave.", style="bold")
            if differs := marked_difference(plan, self.offer.marked):
                text.append(f"\n{differs}", style="bold yellow")
            self.query_one("#plan-status", Static).update(text)
        else:
            why = "; ".join(plan.blocked) or "the plan has no steps: nothing to do"
            self._status(f"Cannot run: {why}", "bold red")

    def _withdraw(self, why: str, style: str = "") -> None:
        self.plan = None
        self.query_one("#confirm-button", Button).disabled = True
        self._status(why, style)

    @on(Input.Changed)
    @on(Select.Changed)
    def _edited(self) -> None:
        """A field now differs from what the plan shown was computed for: withdraw it (shown dimmed)."""
        if self.plan is None or self.busy or self._planned_for is None:
            return
        if self.query_one(ParamForm).values() != self._planned_for:
            self.query_one("#plan-text", Static).update(Text(render_plan(self.plan), style="dim"))
            self._withdraw("The parameters changed: ctrl+p to plan again.")

    @on(Button.Pressed, "#plan-button")
    def _plan_pressed(self) -> None:
        self.action_plan()

    @on(Button.Pressed, "#confirm-button")
    def _confirm_pressed(self) -> None:
        self.action_confirm()

    def action_plan(self) -> None:
        form = self.query_one(ParamForm)
        problems = form.problems()
        if problems:
            self._withdraw("; ".join(problems), "bold red")
            return
        if self.desk is None:
            self._withdraw("No playbook engine here.", "bold red")
            return
        self._compute(self.desk, form.values())

    @work(exclusive=True, group="plan")
    async def _compute(self, desk: Desk, values: dict[str, str]) -> None:
        self.busy = True
        self._withdraw("Computing the plan (the engine reads the cluster and dry-runs every write)…", "italic")
        try:
            engine = await desk.engine()
            plan = await engine.plan(desk.requester(engine), self.playbook.name, values, key=self.key)
        except Exception as e:  # the engine is a boundary: say what failed (a denial, a bad parameter), keep the UI
            self._withdraw(describe(e), "bold red")
            return
        finally:
            self.busy = False
        self._planned_for = values
        self._show(plan)

    # -- confirming ---------------------------------------------------------------------------

    def action_confirm(self) -> None:
        if self.plan is None or not self.plan.runnable or self.busy or self.desk is None:
            self.notify("Plan first: nothing runs before a runnable plan is on this screen.", timeout=4)
            return
        self._submit(self.desk, self.plan)

    @work(exclusive=True, group="plan")
    async def _submit(self, desk: Desk, plan: Plan) -> None:
        self.busy = True
        self._status("Submitting: policy and RBAC as you, then the run…", "italic")
        try:
            engine = await desk.engine()
            submitted = await engine.submit(plan, key=self.key)
        except Exception as e:  # the engine is a boundary: a denial at submission is said here
            self.busy = False
            self._status(f"Not submitted: {describe(e)}", "bold red")
            return
        self.busy = False
        self.dismiss(submitted)

    def action_back(self) -> None:
        self.dismiss(None)
