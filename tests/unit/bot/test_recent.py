"""Recent: one computation per key while it runs and while it is fresh; failures are not kept."""

from __future__ import annotations

import asyncio

import pytest

from gpuctl.bot.recent import Recent


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_askers_share_the_running_computation_and_a_fresh_result() -> None:
    clock, started, gate = Clock(), [], asyncio.Event()

    async def compute() -> int:
        started.append(clock.now)
        await gate.wait()
        return len(started)

    recent: Recent[str, int] = Recent(30.0, monotonic=clock)
    burst = [asyncio.ensure_future(recent.get("all", compute)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*burst) == [1] * 5 and started == [0.0]
    clock.now = 30.0
    assert await recent.get("all", compute) == 1  # still fresh
    assert await recent.get("team-a", compute) == 2  # another key: its own
    clock.now = 30.1
    assert await recent.get("all", compute) == 3 and started == [0.0, 30.0, 30.1]


async def test_a_failure_is_not_kept_and_a_cancelled_asker_leaves_it_running() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise RuntimeError("API server away")
        return "report"

    recent: Recent[str, str] = Recent(30.0, monotonic=Clock())
    with pytest.raises(RuntimeError, match="API server away"):
        await recent.get("k", flaky)
    impatient = asyncio.ensure_future(recent.get("k", flaky))
    await asyncio.sleep(0)
    impatient.cancel()
    assert await recent.get("k", flaky) == "report" and calls == 2
