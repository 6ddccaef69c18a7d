"""SnapshotHub: turns a stream of store mutations into a calm stream of Updates.

* Coalescing: mutations only mark the hub dirty; it publishes at most once per
  `min_interval`, so a burst of 1,000 pod events becomes one Update whose
  Changes name all of them. After a slow publish it waits twice as long as the
  publish took, so under steady churn publishing takes at most a third of a core.
* Back-pressure: every subscriber has a latest-only mailbox. A slow consumer
  never builds a queue; when it asks again it gets the newest snapshot with the
  changes it missed merged in.
* Heartbeat: with nothing happening it still republishes every `heartbeat`
  seconds (when the snapshot moved), so metric ages and staleness keep updating.
* Off the loop (`join_in_thread`): the running hub has the store join in a
  worker thread (`ClusterStore.snapshot_in_thread`), so a metrics refresh that
  remakes every GPU row does not stop the event loop meanwhile.

One hub per store, owned by whoever opened the cluster (`gpuctl.service`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType

from gpuctl.model import Changes, Snapshot, Update
from gpuctl.state.changes import merge
from gpuctl.state.store import ClusterStore
from gpuctl.trace import NO_TRACE, Trace

Sleep = Callable[[float], Awaitable[object]]


class Subscription(AsyncIterator[Update]):
    """A latest-only mailbox; iterate it (`async for update in sub`) until the hub closes."""

    def __init__(self, hub: SnapshotHub) -> None:
        self._hub = hub
        self._pending: Update | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self.delivered = 0  # updates handed to the consumer
        self.merged = 0  # updates folded into an undelivered one (the consumer was slow)

    def offer(self, update: Update) -> None:
        if self._pending is None:
            self._pending = update
        else:
            self._pending = Update(snapshot=update.snapshot, changes=merge(self._pending.changes, update.changes))
            self.merged += 1
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._hub._unsubscribe(self)
        self._ready.set()

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Update:
        while self._pending is None:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        update, self._pending = self._pending, None
        self.delivered += 1
        return update

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SnapshotHub:
    def __init__(
        self,
        store: ClusterStore,
        *,
        min_interval: float = 0.25,
        heartbeat: float | None = None,
        sleep: Sleep = asyncio.sleep,
        trace: Trace = NO_TRACE,
        join_in_thread: bool = False,
    ) -> None:
        self._store = store
        self._join_in_thread = join_in_thread
        self._trace = trace
        self._min_interval = min_interval
        self._heartbeat = heartbeat
        self._sleep = sleep
        self._dirty = asyncio.Event()
        self._subscribers: list[Subscription] = []
        self._latest: Update | None = None
        self._epoch = store.epoch
        self._closed = False
        self.published = 0
        self.last_publish_s = 0.0  # how long the last publish() ran (build + changes)
        self._remove_listener = store.add_listener(self.mark_dirty)
        self.mark_dirty()  # publish the initial state as soon as run() starts

    @property
    def latest(self) -> Update | None:
        """The last published update (its Changes relative to the one before)."""
        return self._latest

    def mark_dirty(self) -> None:
        self._dirty.set()

    def subscribe(self) -> Subscription:
        """A new mailbox, seeded with the latest snapshot (everything changed) if there is one."""
        sub = Subscription(self)
        if self._closed:
            sub.close()
            return sub
        if self._latest is not None:
            sub.offer(Update(snapshot=self._latest.snapshot, changes=Changes(everything=True)))
        self._subscribers.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    def publish(self) -> Update | None:
        """Build and hand out an update now, if the snapshot moved. Returns it."""
        started = time.perf_counter()
        try:
            snapshot = self._store.snapshot()
            if self._unmoved(snapshot):
                update = None
            else:
                previous, replaced = self._previous()
                update = self._hand_out(snapshot, self._store.changes(previous, snapshot, everything=replaced))
        finally:
            self.last_publish_s = time.perf_counter() - started
        self._traced(update)
        return update

    async def _publish_off_loop(self) -> Update | None:
        """`publish()` with the join, and the Changes, in worker threads.

        The Changes too: when another reader joined since the last publish (a planner's
        `Cluster.current()`), the store's log may not reach back to it, and a full diff
        of 22,000 GPU rows is a few hundred milliseconds."""
        started = time.perf_counter()
        try:
            snapshot = await self._store.snapshot_in_thread()
            if self._unmoved(snapshot):
                update = None
            else:
                previous, replaced = self._previous()
                changes = await self._store.changes_in_thread(previous, snapshot, everything=replaced)
                update = self._hand_out(snapshot, changes)
        finally:
            self.last_publish_s = time.perf_counter() - started
        self._traced(update)
        return update

    def _traced(self, update: Update | None) -> None:
        if update is not None and self._trace.enabled:
            self._trace_publish(update)

    def _trace_publish(self, update: Update) -> None:
        snapshot, changes = update.snapshot, update.changes
        self._trace.event(
            "publish",
            ms=round(self.last_publish_s * 1000, 2),
            in_thread=self._join_in_thread,
            gpus_changed=len(changes.gpus),
            pods_changed=len(changes.pods),
            everything=changes.everything,
            nodes=len(snapshot.nodes),
            pods=len(snapshot.pods),
            gpus=len(snapshot.gpus),
            readings=sum(1 for g in snapshot.gpus if g.util_pct is not None),
            listed=sorted(k.value for k in self._store.listed),
            metrics_at=snapshot.metrics.last_success,
        )

    def _unmoved(self, snapshot: Snapshot) -> bool:
        return self._latest is not None and self._latest.snapshot is snapshot

    def _previous(self) -> tuple[Snapshot | None, bool]:
        """The last update's snapshot, and whether whole kinds were replaced since (Changes say everything)."""
        epoch = self._store.epoch
        replaced, self._epoch = epoch != self._epoch, epoch
        return (self._latest.snapshot if self._latest is not None else None), replaced

    def _hand_out(self, snapshot: Snapshot, changes: Changes) -> Update:
        update = Update(snapshot=snapshot, changes=changes)
        self._latest = update
        self.published += 1
        for sub in tuple(self._subscribers):
            sub.offer(update)
        return update

    async def run(self) -> None:
        """Publish until cancelled or closed: leading edge at once, then at most once per min_interval."""
        try:
            while not self._closed:
                if self._heartbeat is None:
                    await self._dirty.wait()
                else:
                    # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that arrives as the
                    # event fires, and the hub (and whoever awaits it on exit) would run on forever.
                    try:
                        async with asyncio.timeout(self._heartbeat):
                            await self._dirty.wait()
                    except TimeoutError:
                        pass
                if self._closed:
                    break
                self._dirty.clear()
                if self._join_in_thread:
                    await self._publish_off_loop()
                else:
                    self.publish()
                # Mutations in this window coalesce into the next update.
                await self._sleep(max(self._min_interval, 2 * self.last_publish_s))
        finally:
            self.close()

    def close(self) -> None:
        """Stop publishing and end every subscription's iteration."""
        if self._closed:
            return
        self._closed = True
        self._remove_listener()
        self._dirty.set()
        for sub in tuple(self._subscribers):
            sub.close()
