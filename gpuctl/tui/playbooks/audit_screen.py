"""`L`: the audit log's recent records, filterable, and whether the chain verifies.

Reads the engine's own log (`engine.audit`): the newest LIMIT records, newest
first, refreshed every few seconds; the filter keeps records whose run, kind,
actor or detail contain every word typed. The chain is verified (the whole log,
as `gpuctl audit verify` does, off the loop) when the screen opens and on `v`.
Enter opens the record's run on the progress screen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from gpuctl.audit.records import AuditRecord
from gpuctl.audit.verify import verify
from gpuctl.render.audit import actor_text, payload_summary, when
from gpuctl.tui.playbooks.desk import Desk
from gpuctl.tui.playbooks.progress_screen import ProgressScreen
from gpuctl.tui.playbooks.reported import describe
from gpuctl.tui.row_table import Cell, Column, RowTable

LIMIT = 500
REFRESH_S = 3.0
AUDIT_COLUMNS: tuple[Column[AuditRecord], ...] = (
    Column("seq", "seq", 6, lambda r: r.seq, right=True),
    Column("time", "time (UTC)", 19, lambda r: r.time),
    Column("run", "run", 34, lambda r: r.run_id),
    Column("kind", "kind", 17, lambda r: r.kind.value),
    Column("by", "by", 26, lambda r: actor_text(r.actor)),
    Column("detail", "detail", 60, lambda r: r.seq),
)


def audit_cells(record: AuditRecord) -> tuple[Cell, ...]:
    return (
        Cell(str(record.seq)),
        Cell(when(record.time)),
        Cell(record.run_id),
        Cell(record.kind.value, "bold red" if record.kind.value in ("denied", "failed", "rejected") else ""),
        Cell(actor_text(record.actor)),
        Cell(payload_summary(record, width=60)),
    )


def matching(records: Sequence[AuditRecord], text: str) -> dict[str, AuditRecord]:
    """Records whose run, kind, actor or detail contain every word of `text` (case-insensitive), by seq."""
    words = text.lower().split()
    out = {}
    for r in records:
        haystack = f"{r.run_id} {r.kind.value} {actor_text(r.actor)} {payload_summary(r, width=1000)}".lower()
        if all(w in haystack for w in words):
            out[str(r.seq)] = r
    return out


class AuditScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="audit.back"),
        Binding("v", "verify", "Verify", id="audit.verify", tooltip="Verify the whole hash chain again"),
    ]

    def __init__(self, desk: Desk) -> None:
        super().__init__()
        self.desk = desk
        self.records: list[AuditRecord] = []
        self.verdict = Text("verifying the chain…", style="italic")

    def compose(self) -> ComposeResult:
        yield Static(Text("Audit log (newest first; enter opens the run, v verifies)", style="bold"), id="audit-title")
        yield Static(self.verdict, id="audit-verdict", classes="summary")
        yield Input(placeholder="filter: run, kind, user, detail…", id="audit-filter", compact=True)
        yield RowTable(AUDIT_COLUMNS, sort_by="seq", reverse=True, empty="No records.", open_label="run", id="audit-table")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(RowTable).focus()
        self._follow(self.desk)
        self.action_verify()

    def _show(self) -> None:
        text = self.query_one("#audit-filter", Input).value
        self.query_one(RowTable).set_rows(matching(self.records, text), audit_cells)

    @on(Input.Changed, "#audit-filter")
    def _filtered(self) -> None:
        self._show()

    @work(exclusive=True, group="audit-follow")
    async def _follow(self, desk: Desk) -> None:
        while True:
            try:
                engine = await desk.engine()
                newest = await engine.audit.records(limit=LIMIT, newest_first=True)
            except Exception as e:  # the engine is a boundary: say why there is no list
                self.query_one("#audit-verdict", Static).update(Text(describe(e), style="bold red"))
                return
            if [r.seq for r in newest] != [r.seq for r in self.records]:
                self.records = newest
                self._show()
            await asyncio.sleep(REFRESH_S)

    @work(exclusive=True, group="audit-verify")
    async def action_verify(self) -> None:
        verdict = self.query_one("#audit-verdict", Static)
        verdict.update(Text("verifying the chain…", style="italic"))
        try:
            engine = await self.desk.engine()
            result = await verify(engine.audit)
        except Exception as e:  # AuditTampered on an unreadable row among them
            verdict.update(Text(f"cannot verify: {describe(e)}", style="bold red"))
            return
        if result.ok:
            head = f", head {result.head.seq}:{result.head.hash[:12]}…" if result.head else ""
            verdict.update(Text(f"intact: {result.records_checked} records, chain unbroken{head} ({engine.audit.location})",
                                style="bold green"))  # fmt: skip
        else:
            problem = result.problem.message if result.problem else "not intact"
            verdict.update(Text(f"NOT INTACT: {problem} ({result.records_checked} records verified before that)",
                                style="bold red"))  # fmt: skip

    @property
    def records_by_seq(self) -> dict[str, AuditRecord]:
        return {str(r.seq): r for r in self.records}

    @on(RowTable.RowChosen)
    def _open(self, event: RowTable.RowChosen) -> None:
        event.stop()
        record = self.records_by_seq.get(event.key)
        if record is not None:
            self.app.push_screen(ProgressScreen(record.run_id, self.desk))

    def action_back(self) -> None:
        self.dismiss(None)
