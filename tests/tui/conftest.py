"""Fixtures for TUI tests: the seeded demo fleet and a way to wait for the app to take an update."""

from __future__ import annotations

import pytest_asyncio
from textual.pilot import Pilot

from gpuctl.model import Update
from tests.tui.demo_fleet import demo_updates


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def demo() -> list[Update]:
    """Three refreshes of the seed-7 demo fleet (11 nodes, 100 GPUs incl. MIG) on a fixed clock."""
    return await demo_updates(seed=7, ticks=3)


async def wait_applied(pilot: Pilot, count: int = 1) -> None:
    app = pilot.app
    for _ in range(500):
        if getattr(app, "updates_applied", 0) >= count:
            break
        await pilot.pause(0.01)
    assert app.updates_applied >= count, "the app never applied the update"  # type: ignore[attr-defined]
    await pilot.pause()
