"""The doctor in `gpuctl top` (key D): the cluster checked against GPU practices, one row per finding,
why and how to fix the highlighted one below.

The screen runs no checks itself: it awaits the `Diagnose` the app was given (`gpuctl.doctor.run.examine`
for the settings on screen; tests give a fixed report), in a worker, so the UI stays live while it reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Static

from gpuctl.doctor.findings import Finding, Report, Severity
from gpuctl.errors import GpuctlError
from gpuctl.tui.row_table import Cell, Column, RowTable

if TYPE_CHECKING:
    from gpuctl.config import Settings

Diagnose = Callable[["Settings"], Awaitable[Report]]

SEVERITY_STYLE = {Severity.CRITICAL: "bold red", Severity.WARNING: "yellow", Severity.INFO: "dim"}
FINDING_COLUMNS: tuple[Column[Finding], ...] = (
    Column("severity", "severity", 9, lambda f: (-f.severity.rank, f.check)),
    Column("check", "check", 30, lambda f: f.check),
    Column("objects", "objects", 40, lambda f: [o.key for o in f.objects]),
    Column("detail", "detail", 60, lambda f: f.detail),
)


def finding_cells(f: Finding) -> list[Cell]:
    objects = ", ".join(o.key for o in f.objects) or "cluster"
    return [Cell(f.severity.value, SEVERITY_STYLE[f.severity]), Cell(f.check), Cell(objects), Cell(f.detail)]


def summary(report: Report) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    if not report.findings:
        t.append(f"No findings: {len(report.checks)} checks passed.", style="green")
    for severity in (Severity.CRITICAL, Severity.WARNING, Severity.INFO):
        if n := report.count(severity):
            t.append(f"{n} {severity.value}  ", style=SEVERITY_STYLE[severity])
    t.append(f"· checked {report.taken_at:%H:%M:%S}Z", style="dim")
    if report.skipped:
        t.append("\nnot checked: " + "; ".join(report.skipped), style="yellow")
    return t


def detail(f: Finding | None) -> Text:
    t = Text()
    if f is None:
        return t
    t.append(f"{f.title}\n", style="bold")
    t.append("why: ", style="bold")
    t.append(f"{f.why}\n")
    t.append("fix: ", style="bold")
    t.append(f.fix)
    return t


class DoctorScreen(Screen[None]):
    DEFAULT_CSS = """
    #doctor-summary { height: auto; max-height: 3; padding: 0 1; background: $surface; }
    #doctor-detail { height: auto; max-height: 8; padding: 0 1; border-top: solid $panel; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "app.pop_screen", "Back", id="doctor.back", tooltip="Back to the previous view"),
        Binding("u", "check", "Check again", id="doctor.again", tooltip="Run every check again"),
    ]

    def __init__(self, diagnose: Diagnose, settings: Settings) -> None:
        super().__init__()
        self._diagnose = diagnose
        self._settings = settings
        self.report: Report | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="doctor-summary")
        yield RowTable(FINDING_COLUMNS, sort_by="severity", empty="No findings.", open_label="why/fix", id="doctor-findings")
        yield Static("", id="doctor-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.action_check()

    def action_check(self) -> None:
        self.query_one("#doctor-summary", Static).update(Text("checking the cluster…", style="dim"))
        self._run()

    @work(exclusive=True, group="doctor")
    async def _run(self) -> None:
        try:
            report = await self._diagnose(self._settings)
        except GpuctlError as e:
            self.query_one("#doctor-summary", Static).update(Text(f"could not check: {e}", style="bold red"))
            return
        self.show(report)

    def show(self, report: Report) -> None:
        self.report = report
        self.query_one("#doctor-summary", Static).update(summary(report))
        table: RowTable[Finding] = self.query_one("#doctor-findings", RowTable)
        table.set_rows({f"{i:04d}": f for i, f in enumerate(report.findings)}, finding_cells)
        table.focus()
        self.query_one("#doctor-detail", Static).update(detail(report.findings[0] if report.findings else None))

    def on_row_table_row_chosen(self, event: RowTable.RowChosen) -> None:
        event.stop()
        self.query_one("#doctor-detail", Static).update(detail(event.table.item(event.key)))
