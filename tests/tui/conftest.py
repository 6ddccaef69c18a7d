"""Fixtures for TUI tests: the seeded demo fleet, the app shown on a snapshot, and a way to wait for the app to take an update."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest_asyncio
from textual.pilot import Pilot

from gpuctl.model import Snapshot, Update
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.feed import QueueFeed
from testbed.waiting import poll
from tests.tui.demo_fleet import demo_updates
from tests.tui.factory import first_update


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def demo() -> list[Update]:
    """Three refreshes of the seed-7 demo fleet (11 nodes, 100 GPUs incl. MIG) on a fixed clock."""
    return await demo_updates(seed=7, ticks=3)


async def until(pilot: Pilot, predicate: Callable[[], bool], what: str, *, timeout_s: float = 10) -> None:
    """Poll `predicate` between the pilot's own steps (each lets the screen catch up)."""

    async def check() -> bool:
        await pilot.pause(0)
        return predicate()

    await poll(check, timeout_s=timeout_s, interval_s=0.01, what=what)


async def wait_applied(pilot: Pilot, count: int = 1) -> None:
    app = pilot.app
    await until(pilot, lambda: getattr(app, "updates_applied", 0) >= count, f"the app to apply {count} update(s)")
    await pilot.pause()


@asynccontextmanager
async def showing(snap: Snapshot, size: tuple[int, int] = (120, 40)) -> AsyncIterator[tuple[GpuctlApp, Pilot, QueueFeed]]:
    """`gpuctl top` headless at `size` on a feed whose first update is `snap`, once the app applied it."""
    feed = QueueFeed([first_update(snap)])
    app = GpuctlApp(feed)
    async with app.run_test(size=size) as pilot:
        await wait_applied(pilot)
        yield app, pilot, feed
