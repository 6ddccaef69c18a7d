"""Where the app's data comes from: any async iterable of `Update`.

The app never talks to a cluster itself. `gpuctl top` hands it the hub's
subscription (see `gpuctl.tui.run`); tests and benchmarks hand it a
`QueueFeed` they push snapshots into, the same seam as httpx's MockTransport.
To reopen (another context, another interval) the app calls a `FeedFactory`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING

from gpuctl.model import Update

if TYPE_CHECKING:
    from gpuctl.config import Settings
    from gpuctl.service import Cluster

UpdateFeed = AsyncIterable[Update]
# Makes the feed for a settings object: `cluster_feed` for real, anything else in tests.
FeedFactory = Callable[["Settings"], UpdateFeed]

_CLOSED = object()


def running_cluster(feed: UpdateFeed) -> Cluster | None:
    """The running cluster a feed reads (`ClusterFeed.cluster`), for the playbook engine to plan from;
    None for a feed without one (tests' QueueFeed: the engine then starts a live picture of its own)."""
    cluster = getattr(feed, "cluster", None)
    return cluster if cluster is not None else None


class StartedFeed:
    """A feed already running: a task awaits its first update from the moment this is made.

    `gpuctl top` starts the cluster feed before Textual is up, so the lists and the
    first Prometheus queries are answered while the terminal UI starts, not after.
    Iterate it once; `aclose()` stops the feed (and the task, if it still waits)."""

    def __init__(self, feed: UpdateFeed) -> None:
        self._source = feed
        self._feed = aiter(feed)
        self._first: asyncio.Future[Update] = asyncio.ensure_future(anext(self._feed))

    @property
    def cluster(self) -> Cluster | None:
        """The running cluster of the feed it started (see `running_cluster`)."""
        return running_cluster(self._source)

    async def __aiter__(self) -> AsyncIterator[Update]:
        try:
            first = await self._first
        except StopAsyncIteration:
            return
        yield first
        async for update in self._feed:
            yield update

    async def aclose(self) -> None:
        if not self._first.done():
            self._first.cancel()
        await asyncio.gather(self._first, return_exceptions=True)
        aclose = getattr(self._feed, "aclose", None)
        if aclose is not None:
            await aclose()


class QueueFeed:
    """A feed you push updates into; iteration ends after `close()`."""

    def __init__(self, updates: Iterable[Update] = ()) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        for u in updates:
            self._queue.put_nowait(u)

    def push(self, update: Update) -> None:
        self._queue.put_nowait(update)

    def close(self) -> None:
        self._queue.put_nowait(_CLOSED)

    async def __aiter__(self) -> AsyncIterator[Update]:
        while True:
            item = await self._queue.get()
            if item is _CLOSED:
                return
            assert isinstance(item, Update)
            yield item
