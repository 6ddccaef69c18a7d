"""Worker threads of one kind of work, so it never waits behind another kind.

`asyncio.to_thread` shares the loop's default executor: min(32, CPUs + 4)
threads, 6 on a 2-core machine. At 12,500 GPUs the ten Prometheus queries of
a first refresh take seconds each and would hold all of them, and a join or
an index handed to the same executor would wait seconds for a thread (it did:
the first picture came 6 s late). So the store's joins, the TUI's indexing
and Prometheus's requests each have threads of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")


class Workers:
    """`threads` threads named `name`-N, started on first use; `close()` lets them go."""

    def __init__(self, name: str, threads: int) -> None:
        self.name = name
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on one of these threads; the awaiting coroutine is free meanwhile.

        Cancelling the awaiting coroutine drops `fn` if it has not started yet."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """`fn(*args)` queued for one of these threads now (from any thread): its concurrent future."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=self.name)
        return self._executor.submit(partial(fn, *args))

    def close(self, *, drop_waiting: bool = True) -> None:
        """No new work (the next use starts new threads); what runs finishes on its own (nobody waits for it).

        `drop_waiting`: work queued but not started is dropped (its futures cancelled); False lets it run."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=drop_waiting)
            self._executor = None
