"""Results of an expensive async computation, shared by key while it runs and for a while after.

`/gpu doctor` reads the cluster (one-shot lists, Prometheus rules) on every
call; a burst of them from an on-call channel should cost one examination,
and its answer says when it was taken. A failed computation is not kept: the
next asker tries again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Recent(Generic[K, V]):
    def __init__(self, fresh_s: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.fresh_s = fresh_s
        self._monotonic = monotonic
        self._held: dict[K, tuple[float, asyncio.Future[V]]] = {}

    async def get(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        """`compute()`'s result for `key`: the one running, or one started under `fresh_s` ago, else a new one."""
        now = self._monotonic()
        held = self._held.get(key)
        if held is None or _spent(held[1]) or now - held[0] > self.fresh_s:
            self._held = {k: h for k, h in self._held.items() if not h[1].done() or now - h[0] <= self.fresh_s}
            held = (now, asyncio.ensure_future(compute()))
            self._held[key] = held
        return await asyncio.shield(held[1])  # a cancelled asker leaves it computing for the others


def _spent(future: asyncio.Future[Any]) -> bool:
    """Finished without a result to share: failed or cancelled."""
    return future.done() and (future.cancelled() or future.exception() is not None)
