"""Waiting for a real component to reach a state: the one polling loop of the
test bed and its tests (no test sleeps a fixed time and hopes)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def poll(
    fetch: Callable[[], Awaitable[T] | T],
    done: Callable[[T], bool] = bool,
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.25,
    what: str = "condition",
) -> T:
    """Call `fetch()` (sync or async) until `done(result)`; return that result.

    Raises TimeoutError naming `what` and showing the last result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result: Any = fetch()
        if inspect.isawaitable(result):
            result = await result
        if done(result):
            return result
        if loop.time() > deadline:
            raise TimeoutError(f"{what} not met in {timeout_s:g}s; last: {str(result)[:500]}")
        await asyncio.sleep(interval_s)
