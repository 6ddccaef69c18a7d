"""`a` when there is no engine to act with: said on screen, the app keeps running (no cluster here)."""

from __future__ import annotations

from pathlib import Path

from gpuctl.config import load_settings
from gpuctl.model import Update
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.feed import QueueFeed
from gpuctl.tui.playbooks.actions_screen import ActionsScreen
from tests.tui.conftest import until, wait_applied


async def test_an_engine_that_cannot_open_is_explained_and_tried_again(demo: list[Update], tmp_path: Path) -> None:
    missing = tmp_path / "no-kubeconfig"
    app = GpuctlApp(QueueFeed(demo[:1]), settings=load_settings(kubeconfig=missing, audit=str(tmp_path / "audit.sqlite")))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        for _ in range(2):  # a failed open is not kept: the second `a` tries again
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, ActionsScreen) and app.screen.answered, "the answer")
            screen = app.screen
            assert isinstance(screen, ActionsScreen)
            note = str(screen.query_one("#actions-note").render())
            assert note.startswith("cannot open the playbook engine:") and str(missing) in note, note
            assert screen.checked == []
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, ActionsScreen), "the list to close")
        assert app.desk is not None and not app.desk.is_open


async def test_a_ready_made_feed_has_no_engine_and_says_so(demo: list[Update]) -> None:
    app = GpuctlApp(QueueFeed(demo[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        await pilot.press("a")
        await pilot.pause()
        assert not isinstance(app.screen, ActionsScreen)
        assert any("no settings to open the playbook engine" in n.message for n in app._notifications)
