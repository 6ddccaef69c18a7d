"""One run as it happens: each step, then the verification, the outcome, the audit run id, and undo.

The lines are the run's audit records (the engine writes one per step, API call
and check while it executes), read as they are appended; the run's phase comes
from its PlaybookRun (another process may approve or execute it). A run this
process executes is a task of the desk: leaving this screen never stops it.

Keys: `e` executes a run that was approved (as its requester), `u` plans its
undo when it finished and its playbook is reversible (the undo is a new run,
approved like any other), esc goes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from gpuctl.audit.records import AuditRecord, EventKind
from gpuctl.errors import NotFound
from gpuctl.playbooks.engine import Submitted
from gpuctl.playbooks.execution import Outcome
from gpuctl.playbooks.runs import RunPhase
from gpuctl.render.audit import actor_text, payload_summary
from gpuctl.tui.playbooks.desk import Desk
from gpuctl.tui.playbooks.reported import describe, reported

FOLLOW_S = 0.5  # how often the audit log and the run's phase are read while the screen shows
ENDED: frozenset[str] = frozenset({"Succeeded", "Failed", "Interrupted", "Cancelled", "Undone", "Denied", "Expired"})
_KIND_STYLE = {
    EventKind.DENIED: "bold red", EventKind.FAILED: "bold red", EventKind.REJECTED: "bold red",
    EventKind.COMPLETED: "bold green", EventKind.UNDONE: "bold green", EventKind.APPROVED: "green",
    EventKind.STEP: "", EventKind.API_CALL: "dim", EventKind.VERIFIED: "cyan",
}  # fmt: skip


def record_line(record: AuditRecord) -> Text:
    """One audit record as a progress line: a step's message as written, anything else summarised."""
    payload = record.payload
    if record.kind is EventKind.STEP and isinstance(payload.get("message"), str):
        step = payload.get("step")
        where = f"step {int(step) + 1}: " if isinstance(step, int) else ""
        body = f"{where}{payload['message']}"
    elif record.kind is EventKind.VERIFIED:
        checks = payload.get("checks")
        parts = (
            [f"{c.get('name')}: {'ok' if c.get('ok') else 'FAILED'}" for c in checks if isinstance(c, dict)]
            if isinstance(checks, list)
            else []
        )
        body = ("verified: " if payload.get("ok") else "verification FAILED: ") + "; ".join(parts)
    elif record.kind in (EventKind.APPROVED, EventKind.REJECTED):
        body = f"{record.kind.value} by {actor_text(record.actor)}"
    else:
        body = f"{record.kind.value}: {payload_summary(record, width=100)}"
    return Text(f"#{record.seq:<4} {body}", style=_KIND_STYLE.get(record.kind, ""))


def outcome_text(outcome: Outcome, *, reversible: bool) -> Text:
    style = "bold green" if outcome.ok else "bold red"
    text = Text(f"{outcome.phase}: {outcome.message}\n", style=style)
    for step in outcome.report.outcomes if outcome.report else ():
        text.append(f"  step {step.index + 1}: {step.status}: {step.message}\n")
    for check in outcome.verification.checks if outcome.verification else ():
        mark = "ok" if check.ok else "FAILED"
        text.append(f"  check {check.name}: {mark}{': ' + check.detail if check.detail else ''}\n")
    text.append(f"audit run id: {outcome.run_id}  (gpuctl audit show {outcome.run_id})\n", style="bold")
    if reversible and outcome.report is not None:
        text.append("u plans the undo of this run\n", style="italic")
    return text


class ProgressScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="progress.back", tooltip="Back (the run goes on)"),
        Binding("e", "execute", "Execute", id="progress.execute", tooltip="Execute the approved run, as its requester"),
        Binding("u", "undo", "Undo", id="progress.undo", tooltip="Plan and submit the undo of the finished run"),
    ]

    def __init__(
        self,
        run_id: str,
        desk: Desk | None,
        *,
        submitted: Submitted | None = None,
        task: asyncio.Task[Outcome] | None = None,
        reversible: bool = False,
        records: Sequence[AuditRecord] = (),
        outcome: Outcome | None = None,
        phase: RunPhase | None = None,
    ) -> None:
        """`records`, `outcome`, `phase`: what is known already (all of it, without a desk)."""
        super().__init__()
        self.run_id = run_id
        self.desk = desk
        self.submitted = submitted
        self.execution = task
        self.reversible = reversible
        self.records: list[AuditRecord] = list(records)
        self.outcome = outcome
        self.phase: RunPhase | None = phase or (submitted.phase if submitted else None)
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text(f"run {self.run_id}", style="bold"), id="progress-title")
        yield Static("", id="progress-state")
        with VerticalScroll(id="progress-box"):
            yield Static("", id="progress-log")
            yield Static("", id="progress-result")
        yield Footer()

    def on_mount(self) -> None:
        self._redraw()
        if self.desk is not None:
            self._follow(self.desk)
            if self.execution is not None:
                self._await_outcome(self.execution)

    # -- following ----------------------------------------------------------------------------

    @work(exclusive=True, group="progress-follow")
    async def _follow(self, desk: Desk) -> None:
        try:
            engine = await desk.engine()
            shared = self.submitted.shared if self.submitted else await engine.store.installed()
        except Exception as e:  # the engine is a boundary: say why nothing follows
            self.error = describe(e)
            self._redraw()
            return
        while True:
            after = self.records[-1].seq if self.records else None
            new: list[AuditRecord] = []
            try:
                new = await engine.audit.records(run_id=self.run_id, after_seq=after)
                if shared:
                    run = await engine.store.get(self.run_id)
                    self.phase = run.status.phase or "Pending"
            except NotFound:
                shared = False  # a local run: only in the audit log
            except Exception as e:  # an outage: say so and keep following
                self.error = describe(e)
            else:
                self.error = None
            self._add(new)
            self._redraw()
            if self.outcome is not None or (self.phase in ENDED and self.execution is None and self._ended_in_log()):
                return
            await asyncio.sleep(FOLLOW_S)

    def _add(self, new: list[AuditRecord]) -> None:
        """Append records not shown yet: the follower and the outcome may both have read the same tail."""
        last = self.records[-1].seq if self.records else 0
        self.records += [r for r in new if r.seq > last]

    def _ended_in_log(self) -> bool:
        return bool(self.records) and self.records[-1].ends_run

    @work(group="progress-outcome")
    async def _await_outcome(self, task: asyncio.Task[Outcome]) -> None:
        outcome: Outcome | None = None
        try:
            outcome = await asyncio.shield(task)
        except Exception as e:  # refused before anything was done (locked, stale, kill switch), or worse
            self.error = describe(e)
        if self.desk is not None:  # the log's tail first, so the outcome never shows beside a log that lacks its end
            with reported(self, "cannot read the audit log"):
                engine = await self.desk.engine()
                after = self.records[-1].seq if self.records else None
                self._add(await engine.audit.records(run_id=self.run_id, after_seq=after))
        if outcome is not None:
            self.outcome = outcome
            self.phase = outcome.phase
        self._redraw()

    # -- drawing ------------------------------------------------------------------------------

    def _state_text(self) -> Text:
        phase = self.phase or "Pending"
        text = Text(f"phase: {phase}", style="bold")
        if phase == "AwaitingApproval" and self.submitted is not None:
            who = "; ".join(self.submitted.approvers) or "no role in the gpuctl policy may approve it"
            text.append(f"\nawaiting approval by someone other than you. May approve: {who}")
            text.append("\nan approver approves it in their runs view (R), in Slack or with gpuctl playbook approve")
        elif phase == "Approved" and self.execution is None:
            text.append("\napproved: e executes it now (or the executor will)")
        if self.error:
            text.append(f"\n{self.error}", style="bold red")
        return text

    def _redraw(self) -> None:
        self.query_one("#progress-state", Static).update(self._state_text())
        log = Text("\n").join(record_line(r) for r in self.records) if self.records else Text("no records yet", style="dim")
        self.query_one("#progress-log", Static).update(log)
        result = outcome_text(self.outcome, reversible=self.reversible) if self.outcome else Text("")
        self.query_one("#progress-result", Static).update(result)
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "execute":
            return self.phase == "Approved" and self.execution is None
        if action == "undo":
            return self.reversible and self.phase in ("Succeeded", "Failed")
        return True

    # -- acting -------------------------------------------------------------------------------

    @work(group="progress-act")
    async def action_execute(self) -> None:
        if self.desk is None:
            return
        with reported(self, "not executed"):
            engine = await self.desk.engine()
            self.execution = self.desk.execute_named(engine, self.run_id)
        if self.execution is None:
            return
        self._redraw()
        self._await_outcome(self.execution)
        self._follow(self.desk)

    @work(group="progress-act")
    async def action_undo(self) -> None:
        if self.desk is None:
            return
        submitted = None
        with reported(self, "no undo"):
            engine = await self.desk.engine()
            submitted = await engine.undo(self.desk.requester(engine), self.run_id)
        if submitted is None:
            return
        task = None if submitted.needs_approval or submitted.duplicate else self.desk.execute(engine, submitted)
        await self.app.push_screen(ProgressScreen(submitted.run_id, self.desk, submitted=submitted, task=task,
                                                  reversible=False))  # fmt: skip

    def action_back(self) -> None:
        self.dismiss(None)
