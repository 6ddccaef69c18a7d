"""SnapshotHub: bursts coalesce into one Update, slow consumers get the latest with merged changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gpuctl.state.changes import diff
from gpuctl.state.hub import SnapshotHub
from gpuctl.state.records import Kind
from gpuctl.state.store import ClusterStore

from .factories import at, batch, node, pod, sample
from .test_store import Clock


class Gate:
    """A stand-in for asyncio.sleep that returns only when the test opens it: the hub's throttle, by hand."""

    def __init__(self) -> None:
        self.sleeping = asyncio.Event()
        self._open = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.sleeping.set()
        await self._open.wait()
        self._open.clear()
        self.sleeping.clear()

    def open(self) -> None:
        self._open.set()


@pytest.fixture
async def running() -> AsyncIterator[tuple[ClusterStore, SnapshotHub, Gate]]:
    store = ClusterStore(clock=Clock())
    gate = Gate()
    hub = SnapshotHub(store, min_interval=1.0, sleep=gate)
    task = asyncio.create_task(hub.run())
    await gate.sleeping.wait()  # the initial snapshot went out; the hub now throttles
    yield store, hub, gate
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_burst_of_events_becomes_one_update(running: tuple[ClusterStore, SnapshotHub, Gate]) -> None:
    store, hub, gate = running
    sub = hub.subscribe()
    first = await anext(sub)
    assert first.changes.everything and hub.published == 1
    for i in range(1000):
        store.upsert(pod("ml", f"p{i}", "n1", 1))
        if i % 10 == 0:
            await asyncio.sleep(0)  # let the loop run: the hub must still hold back
    assert hub.published == 1 and not sub.pending
    gate.open()
    update = await anext(sub)
    assert hub.published == 2
    assert len(update.changes.pods) == 1000 and len(update.snapshot.pods) == 1000
    assert not update.changes.everything


async def test_slow_consumer_gets_latest_with_merged_changes() -> None:
    clock = Clock()
    store = ClusterStore(clock=clock)
    hub = SnapshotHub(store)
    hub.publish()
    slow = hub.subscribe()
    for i in range(100):
        store.upsert(pod("ml", f"p{i}", "n1", 1))
        hub.publish()
    assert slow.pending and slow.merged == 100  # the seeded snapshot plus 100 updates, folded into one
    update = await anext(slow)
    assert update.snapshot is hub.latest.snapshot  # type: ignore[union-attr]
    assert update.changes.everything  # it was seeded with the state at subscribe time
    assert {f"ml/p{i}" for i in range(100)} <= update.changes.pods
    assert not slow.pending


async def test_changes_name_only_what_changed() -> None:
    clock = Clock()
    store = ClusterStore(clock=clock)
    hub = SnapshotHub(store)
    store.replace(Kind.NODE, [node("n1", 2), node("n2", 2)])
    store.replace(Kind.POD, [pod("ml", "a", "n1", 1)])
    store.apply_metrics(batch(0, sample("n1", 0, 50.0, "ml/a"), sample("n2", 0, 50.0)))
    hub.publish()
    store.apply_metrics(batch(1, sample("n1", 0, 50.0, "ml/a"), sample("n2", 0, 70.0)))
    changes = hub.publish().changes  # type: ignore[union-attr]
    assert changes.gpus == {"n2/0"} and not changes.nodes and not changes.pods and not changes.everything
    store.delete(Kind.POD, "ml/a")
    changes = hub.publish().changes  # type: ignore[union-attr]
    assert "ml/a" in changes.pods and changes.nodes == {"n1"}  # its node's requested count dropped
    store.replace(Kind.NODE, [node("n1", 2)])
    changes = hub.publish().changes  # type: ignore[union-attr]
    assert changes.everything and "n2" in changes.nodes and "n2/1" in changes.gpus


async def test_nothing_changed_nothing_published() -> None:
    store = ClusterStore(clock=Clock())
    hub = SnapshotHub(store)
    assert hub.publish() is not None
    assert hub.publish() is None


async def test_close_ends_subscriptions_after_the_pending_update() -> None:
    store = ClusterStore(clock=Clock())
    hub = SnapshotHub(store)
    hub.publish()
    sub = hub.subscribe()
    hub.close()
    assert [u.snapshot.generation async for u in sub] == [1]
    late = hub.subscribe()
    assert [u async for u in late] == []


async def test_unsubscribe_on_exit() -> None:
    store = ClusterStore(clock=Clock())
    hub = SnapshotHub(store)
    async with hub.subscribe() as sub:
        hub.publish()
        assert (await anext(sub)).snapshot.generation == 1
    store.upsert(node("n1"))
    hub.publish()
    assert not sub.pending


async def test_heartbeat_republishes_when_time_moves() -> None:
    clock = Clock()
    store = ClusterStore(clock=clock, refresh_s=10)
    hub = SnapshotHub(store, min_interval=0, heartbeat=0.001)
    task = asyncio.create_task(hub.run())
    sub = hub.subscribe()
    first = await anext(sub)
    clock.seconds = 11  # no mutation, but the cached snapshot is now older than a refresh interval
    second = await anext(sub)
    assert second.snapshot.generation == first.snapshot.generation + 1
    assert second.snapshot.taken_at == at(11)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_after_a_slow_publish_the_hub_waits_twice_as_long() -> None:
    store = ClusterStore(clock=Clock())
    asked: list[float] = []
    published = asyncio.Event()

    async def sleep(seconds: float) -> None:
        asked.append(seconds)
        published.set()
        await asyncio.Event().wait()  # the test ends the hub here

    hub = SnapshotHub(store, min_interval=1e-9, sleep=sleep)
    task = asyncio.create_task(hub.run())
    await published.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert hub.published == 1 and hub.last_publish_s > 0
    # Publishing can take at most a third of the time: wait 2x what it took (the interval here is ~0).
    assert asked == [max(1e-9, 2 * hub.last_publish_s)] and asked[0] == 2 * hub.last_publish_s


async def test_updates_carry_the_changes_a_full_diff_finds() -> None:
    store = ClusterStore(clock=Clock())
    hub = SnapshotHub(store)
    store.replace(Kind.NODE, [node("n1", 2), node("n2", 2)])
    store.replace(Kind.POD, [pod("ml", "a", "n1", 1), pod("ml", "b", "n2", 1)])
    store.apply_metrics(batch(0, sample("n1", 0, 50.0, "ml/a"), sample("n2", 0, 1.0, "ml/b")))
    previous = hub.publish().snapshot  # type: ignore[union-attr]
    for step in range(1, 6):
        store.apply_metrics(batch(step, sample("n1", 0, 50.0 + step % 2, "ml/a"), sample("n2", 0, 1.0, "ml/b")))
        if step % 2:
            store.upsert(pod("cv", f"new{step}", "n2", 1))
            store.snapshot()  # a snapshot the hub never publishes
            store.delete(Kind.POD, "ml/b" if step == 3 else "cv/none")
        update = hub.publish()
        assert update is not None and update.changes == diff(previous, update.snapshot)
        previous = update.snapshot


@pytest.mark.parametrize("steps", range(6))
async def test_a_cancel_that_arrives_as_a_change_wakes_the_hub_still_stops_it(steps: int) -> None:
    """asyncio.wait_for on Python 3.11 swallowed such a cancel (at 1-3 steps): the hub ran on, and
    open_cluster's exit, which awaits it, never returned."""
    store = ClusterStore(clock=Clock())
    gate = Gate()
    hub = SnapshotHub(store, heartbeat=60, sleep=gate)
    task = asyncio.create_task(hub.run())
    await gate.sleeping.wait()
    hub.mark_dirty()
    gate.open()
    for _ in range(steps):
        await asyncio.sleep(0)  # not a wait: places the cancel at each point of the hub's wake-up
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    hub.close()
    assert done and task.cancelled()


async def test_a_hub_that_joins_in_a_thread_publishes_the_same_updates() -> None:
    store = ClusterStore(clock=Clock())
    gate = Gate()
    hub = SnapshotHub(store, min_interval=1.0, sleep=gate, join_in_thread=True)
    store.replace(Kind.NODE, [node("n1", 2)])
    sub = hub.subscribe()
    task = asyncio.create_task(hub.run())
    try:
        first = await anext(sub)
        assert first.changes.everything and [n.name for n in first.snapshot.nodes] == ["n1"]
        store.upsert(pod("ml", "p0", "n1", 1))
        store.apply_metrics(batch(0, sample("n1", 0, 50.0, "ml/p0")))
        gate.open()
        second = await anext(sub)
        assert second.changes == diff(first.snapshot, second.snapshot)
        assert second.changes.pods == {"ml/p0"} and "n1/0" in second.changes.gpus
        assert second.snapshot is store.snapshot()  # nothing moved since: the thread's join was cached
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
