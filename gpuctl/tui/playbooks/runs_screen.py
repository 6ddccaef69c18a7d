"""`R`: the PlaybookRuns, pending, running and finished, live from the cluster; approve or deny from here.

The list is the engine's run store, listed then watched (each change redraws its
row), so a run another person submits, approves or executes shows as it
happens. `y` approves and `n` denies the run under the cursor as the user
(`engine.approve`/`deny`: never one's own run; gpuctl's policy and the `approve`
verb decide, and a refusal is shown with its reason); denying one's own run
withdraws it. `Y`/`N` do the same as someone the gpuctl policy lets you act for
(act_as, as the CLI's `--as`): in `--demo`, demo-user approves as demo-lead.
Enter opens the run on the progress screen (its steps, execute
once approved, undo once finished).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Static

from gpuctl.clock import utcnow
from gpuctl.identity import Identity
from gpuctl.playbooks.runs import PlaybookRun
from gpuctl.render.format import duration
from gpuctl.sources.kube.reflector import Gone
from gpuctl.tui.playbooks.desk import Desk
from gpuctl.tui.playbooks.identity_screen import IdentityScreen
from gpuctl.tui.playbooks.progress_screen import ProgressScreen
from gpuctl.tui.playbooks.reported import describe, reported
from gpuctl.tui.row_table import Cell, Column, RowTable

WATCH_S = 60  # one watch request; listed and watched again after it
RETRY_S = 5.0  # after a failed list or watch
_PHASE_STYLE = {
    "AwaitingApproval": "bold yellow", "Approved": "green", "Running": "bold cyan", "Succeeded": "green",
    "Failed": "bold red", "Denied": "red", "Expired": "dim", "Cancelled": "dim", "Interrupted": "red", "Undone": "dim",
}  # fmt: skip
RUN_COLUMNS: tuple[Column[PlaybookRun], ...] = (
    Column("age", "age", 6, lambda r: -r.created_at.timestamp(), right=True),
    Column("playbook", "playbook", 20, lambda r: r.spec.playbook),
    Column("phase", "phase", 16, lambda r: r.status.phase or "Pending"),
    Column("requester", "requester", 14, lambda r: r.spec.requester.user),
    Column("via", "via", 8, lambda r: r.spec.requester.via),
    Column("name", "run", 40, lambda r: r.name),
)


def run_cells(run: PlaybookRun, *, now: datetime) -> tuple[Cell, ...]:
    phase = run.status.phase or "Pending"
    return (
        Cell(duration((now - run.created_at).total_seconds())),
        Cell(run.spec.playbook),
        Cell(phase, _PHASE_STYLE.get(phase, "")),
        Cell(run.spec.requester.user),
        Cell(run.spec.requester.via),
        Cell(run.name),
    )


class RunsScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="runs.back"),
        Binding("y", "review(True)", "Approve", id="runs.approve", tooltip="Approve the run under the cursor (not your own)"),
        Binding("n", "review(False)", "Deny", id="runs.deny", tooltip="Deny the run (withdraw it, if it is yours)"),
        Binding("Y", "review_as(True)", "Approve as…", id="runs.approve_as", tooltip="Approve as someone (policy act_as)"),
        Binding("N", "review_as(False)", "Deny as…", id="runs.deny_as", show=False, tooltip="Deny as someone (policy act_as)"),
    ]

    def __init__(self, desk: Desk, *, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__()
        self.desk = desk
        self.clock = clock
        self.runs: dict[str, PlaybookRun] = {}

    def compose(self) -> ComposeResult:
        yield Static(Text("Playbook runs (enter opens, y approves, n denies, esc goes back)", style="bold"), id="runs-title")
        yield Static("listing runs…", id="runs-status", classes="summary")
        yield RowTable(RUN_COLUMNS, sort_by="age", empty="No runs yet.", open_label="run", id="runs-table")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(RowTable).focus()
        self._watch(self.desk)

    def _show(self, note: str | None = None) -> None:
        table: RowTable[PlaybookRun] = self.query_one(RowTable)
        table.set_rows(dict(self.runs), partial(run_cells, now=self.clock()))
        waiting = sum(1 for r in self.runs.values() if r.status.phase == "AwaitingApproval")
        text = note or f"{len(self.runs)} runs · {waiting} awaiting approval · live"
        self.query_one("#runs-status", Static).update(text)

    @work(exclusive=True, group="runs-watch")
    async def _watch(self, desk: Desk) -> None:
        try:
            engine = await desk.engine()
            await engine.store.require("listing runs")
        except Exception as e:  # the engine is a boundary: say why there is no list
            self._show(describe(e))
            return
        runs = engine.store.runs
        while True:
            try:
                listed = await runs.list()
                self.runs = {r.name: r for r in listed.runs}
                self._show()
                async with runs.watch(listed.resource_version, timeout_s=WATCH_S) as events:
                    async for event in events:
                        if event.run is None:
                            continue
                        if event.type == "DELETED":
                            self.runs.pop(event.run.name, None)
                        else:
                            self.runs[event.run.name] = event.run
                        self._show()
            except Gone:
                continue  # too old to watch from: list again
            except Exception as e:  # an outage: say so, keep the last list, try again
                self._show(f"not live: {describe(e)} (retrying in {RETRY_S:g} s)")
                await asyncio.sleep(RETRY_S)

    def _current(self) -> PlaybookRun | None:
        table: RowTable[PlaybookRun] = self.query_one(RowTable)
        return table.item(table.cursor_key) if table.cursor_key else None

    @work(group="runs-review")
    async def action_review(self, approve: bool) -> None:
        await self._review(approve, None)

    @work(group="runs-review")
    async def action_review_as(self, approve: bool) -> None:
        identity = await self.app.push_screen_wait(IdentityScreen("approve" if approve else "deny"))
        if identity is not None:
            await self._review(approve, identity)

    async def _review(self, approve: bool, identity: Identity | None) -> None:
        """Approve or deny the run under the cursor as the user (or `identity`, if the policy lets them act for it)."""
        run = self._current()
        if run is None:
            return
        updated = None
        with reported(self, "not approved" if approve else "not denied"):
            engine = await self.desk.engine()
            who = self.desk.requester_as(engine, identity) if identity else self.desk.requester(engine)
            updated = await (engine.approve(who, run.name) if approve else engine.deny(who, run.name))
        if updated is None:
            return
        self.runs[updated.name] = updated
        self._show()
        self.notify(f"{updated.name} is {updated.status.phase} now", timeout=5)

    @on(RowTable.RowChosen)
    def _open(self, event: RowTable.RowChosen) -> None:
        event.stop()
        run = self.runs.get(event.key)
        if run is None:
            return
        self._open_run(run)

    @work(group="runs-open")
    async def _open_run(self, run: PlaybookRun) -> None:
        with reported(self, "cannot open the run"):
            engine = await self.desk.engine()
            playbook = engine.catalog.playbooks.get(run.spec.playbook)
            task = self.desk.executions.get(run.name)
            await self.app.push_screen(ProgressScreen(run.name, self.desk, task=task, phase=run.status.phase or "Pending",
                                                      reversible=bool(playbook and playbook.reversible)))  # fmt: skip

    def action_back(self) -> None:
        self.dismiss(None)
