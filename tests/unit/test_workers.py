"""gpuctl.workers: threads of one kind of work, apart from the loop's default executor."""

from __future__ import annotations

import asyncio
import threading

from gpuctl.workers import Workers


async def test_work_runs_on_the_named_threads_not_on_the_default_executor() -> None:
    workers = Workers("gpuctl-test", 2)
    try:
        names = await asyncio.gather(*(workers.run(lambda: threading.current_thread().name) for _ in range(4)))
        assert all(n.startswith("gpuctl-test") for n in names) and len(set(names)) <= 2
    finally:
        workers.close()


async def test_busy_default_threads_do_not_hold_it_up() -> None:
    # Every default-executor thread blocked (as ten Prometheus queries did): the workers still run.
    release = threading.Event()
    loop = asyncio.get_running_loop()
    blockers = [loop.run_in_executor(None, release.wait, 30) for _ in range(64)]
    workers = Workers("gpuctl-test", 1)
    try:
        assert await asyncio.wait_for(workers.run(sum, [1, 2, 3]), 10) == 6
    finally:
        release.set()
        await asyncio.gather(*blockers)
        workers.close()


async def test_closed_workers_start_again_on_the_next_use() -> None:
    workers = Workers("gpuctl-test", 1)
    assert await workers.run(int, "7") == 7
    workers.close()
    assert await workers.run(int, "8") == 8
    workers.close()
