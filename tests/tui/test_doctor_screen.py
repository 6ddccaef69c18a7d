"""The doctor screen (key D): the real `examine` on a demo cluster, findings in a table, why and fix below."""

from __future__ import annotations

from gpuctl.config import Settings
from gpuctl.doctor.run import examine
from gpuctl.model import Update
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.doctor_screen import DoctorScreen
from gpuctl.tui.feed import QueueFeed
from gpuctl.tui.row_table import RowTable
from tests.tui.conftest import until, wait_applied


def text_of(widget: object) -> str:
    return str(widget.render())  # type: ignore[attr-defined]


async def test_d_opens_the_doctor_on_the_settings_and_escape_goes_back(demo: list[Update]) -> None:
    settings = Settings(config_file=None, demo=True, refresh_s=0.5)  # type: ignore[call-arg]
    app = GpuctlApp(QueueFeed(demo[:1]), settings=settings, diagnose=examine)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_applied(pilot)
        await pilot.press("D")
        screen = app.screen
        assert isinstance(screen, DoctorScreen)
        await until(pilot, lambda: screen.report is not None, "the doctor's report")
        report = screen.report
        assert report is not None and report.findings
        table = screen.query_one("#doctor-findings", RowTable)
        assert table.row_count == len(report.findings) and app.focused is table
        assert "demo mode has no Kubernetes API" in text_of(screen.query_one("#doctor-summary"))
        assert text_of(screen.query_one("#doctor-detail")).startswith(report.findings[0].title)
        await pilot.press("end", "enter")  # the last row's why and fix
        shown = text_of(screen.query_one("#doctor-detail"))
        last = table.item(table.shown_keys[-1])
        assert last is not None and f"fix: {last.fix}" in shown
        await pilot.press("escape")
        assert not isinstance(app.screen, DoctorScreen)


async def test_without_a_cluster_to_check_d_says_why(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        await pilot.press("D")
        assert not isinstance(app.screen, DoctorScreen)
        assert any("needs a cluster" in n.message for n in app._notifications)
