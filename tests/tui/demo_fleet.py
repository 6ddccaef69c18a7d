"""The seeded demo fleet, run through the real store, for TUI tests.

`DemoSource.run` feeds a `ClusterStore` on a fixed clock; an injected sleep
advances that clock and stops the source after `ticks` metric refreshes, so
the snapshot is the same on every machine and every run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gpuctl.model import Snapshot, Update
from gpuctl.sources.demo import DemoSource
from gpuctl.state.changes import diff
from gpuctl.state.store import ClusterStore

T0 = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)


class _Stop(Exception):
    pass


class _Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def demo_snapshots(*, seed: int = 7, scale: int = 1, ticks: int = 1, tick_s: float = 15.0) -> list[Snapshot]:
    """One snapshot per demo tick, taken as the hub would after each refresh."""
    clock = _Clock(T0)
    store = ClusterStore(clock=clock, refresh_s=tick_s)
    snaps: list[Snapshot] = []

    async def sleep(seconds: float) -> None:
        snaps.append(store.snapshot())
        if len(snaps) >= ticks:
            raise _Stop
        clock.now += timedelta(seconds=seconds)

    source = DemoSource(seed=seed, scale=scale, tick_s=tick_s, churn=True, clock=clock, sleep=sleep)
    try:
        await source.run(store)
    except _Stop:
        pass
    return snaps


async def demo_updates(*, seed: int = 7, scale: int = 1, ticks: int = 1, tick_s: float = 15.0) -> list[Update]:
    """The Updates a hub subscriber would receive for those snapshots."""
    snaps = await demo_snapshots(seed=seed, scale=scale, ticks=ticks, tick_s=tick_s)
    updates: list[Update] = []
    previous: Snapshot | None = None
    for snap in snaps:
        updates.append(Update(snapshot=snap, changes=diff(previous, snap, everything=previous is None)))
        previous = snap
    return updates
