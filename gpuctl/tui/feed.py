"""Where the app's data comes from: any async iterable of `Update`.

The app never talks to a cluster itself. `gpuctl top` hands it the hub's
subscription (see `gpuctl.tui.run`); tests and benchmarks hand it a
`QueueFeed` they push snapshots into, the same seam as httpx's MockTransport.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable

from gpuctl.model import Update

UpdateFeed = AsyncIterable[Update]

_CLOSED = object()


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
