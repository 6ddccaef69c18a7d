"""`Later`: the work after an ack, each request's as a task of its own, held until it ends, failures logged."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gpuctl.bot.app import Later
from testbed.waiting import poll


async def test_a_failure_after_the_ack_is_logged_with_what_failed(caplog: pytest.LogCaptureFixture) -> None:
    later = Later()

    async def broken() -> None:
        raise RuntimeError("response_url unreachable")

    with caplog.at_level(logging.ERROR, logger="gpuctl.bot.app"):
        later.start(broken(), "/gpu")
        await poll(lambda: not later._tasks, what="the task let go")
    (record,) = caplog.records
    assert record.getMessage() == "/gpu failed after its ack"
    assert record.exc_info is not None and "response_url unreachable" in str(record.exc_info[1])


async def test_aclose_cancels_what_still_runs_and_an_ended_task_is_let_go() -> None:
    later = Later()
    ended, cancelled = asyncio.Event(), asyncio.Event()

    async def quick() -> None:
        ended.set()

    async def slow() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    later.start(quick(), "quick")
    later.start(slow(), "slow")
    await ended.wait()
    await poll(lambda: [t.get_name() for t in later._tasks] == ["slow"], what="quick let go, slow held")
    await later.aclose()
    assert cancelled.is_set() and not later._tasks
