"""Updates as the TUI reads them: it calls nothing on the store, it keeps rows and repaints only what Changes name.

A consumer that holds every row by key and replaces only the keys an Update's
Changes name (everything on `everything`) must hold exactly the snapshot's
rows after every Update it takes, whether it takes each one or skips some
(the hub then merges what it missed). Driven by the demo fleet with churn,
idle clocks, a relist and snapshots taken behind the hub's back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gpuctl.model import Snapshot, Update
from gpuctl.sim.fleet import build_fleet
from gpuctl.sources.demo import DemoSource, load_fleet
from gpuctl.state.hub import SnapshotHub, Subscription
from gpuctl.state.store import ClusterStore

T0 = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
PARTS = ("gpus", "nodes", "pods", "namespaces")


class _Stop(Exception):
    pass


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def rows_of(snapshot: Snapshot) -> dict[str, dict[str, object]]:
    return {
        "gpus": {g.key: g for g in snapshot.gpus},
        "nodes": {n.name: n for n in snapshot.nodes},
        "pods": {p.key: p for p in snapshot.pods},
        "namespaces": {n.name: n for n in snapshot.namespaces},
    }


class RowView:
    """The TUI's way: rows by key, repainted only where the Update says."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.rows: dict[str, dict[str, object]] = {part: {} for part in PARTS}
        self.taken = 0
        self.repainted = 0

    async def take(self) -> Update:
        update = await anext(self.sub)
        current = rows_of(update.snapshot)
        for part in PARTS:
            if update.changes.everything:
                self.rows[part] = dict(current[part])
                self.repainted += len(current[part])
                continue
            for key in getattr(update.changes, part):
                self.repainted += 1
                if key in current[part]:
                    self.rows[part][key] = current[part][key]
                else:
                    self.rows[part].pop(key, None)
        for part in PARTS:
            assert self.rows[part] == current[part], f"{part}: a row changed that the Update did not name"
        self.taken += 1
        return update


async def test_a_consumer_that_repaints_only_named_rows_stays_exact() -> None:
    clock = _Clock()
    store = ClusterStore(clock=clock, refresh_s=15.0)
    hub = SnapshotHub(store)
    every = RowView(hub.subscribe())  # takes every Update
    sometimes = RowView(hub.subscribe())  # takes every third one: gets the others merged
    ticks = 0
    sizes: list[int] = []

    async def tick(seconds: float) -> None:
        nonlocal ticks
        ticks += 1
        if ticks % 4 == 0:
            store.snapshot()  # someone else (the CLI, a bot command) looked in between
        if ticks == 20:  # a relist: every kind replaced at once
            load_fleet(store, build_fleet(7, scale=2), T0)
        update = hub.publish()
        if update is not None:
            sizes.append(len(update.changes.gpus) + len(update.changes.pods))
            await every.take()
        if ticks % 3 == 0 and sometimes.sub.pending:
            await sometimes.take()
        if ticks >= 40:
            raise _Stop
        clock.now += timedelta(seconds=seconds)

    source = DemoSource(seed=7, scale=2, tick_s=15.0, churn=True, clock=clock, sleep=tick)
    try:
        await source.run(store)
    except _Stop:
        pass
    while sometimes.sub.pending:
        await sometimes.take()
    assert every.taken == hub.published >= 35 and sometimes.taken < every.taken
    assert rows_of(store.snapshot()) == every.rows == sometimes.rows
    # Not everything every time: most Updates name a fraction of the fleet.
    fleet = len(store.snapshot().gpus) + len(store.snapshot().pods)
    assert sorted(sizes)[len(sizes) // 2] < fleet
