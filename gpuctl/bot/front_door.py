"""The bot's HTTP server on an event loop of its own, in a thread of its own: acks never wait for the main loop.

The main loop runs the cluster watches (10,000 pods), the Prometheus refresh, the answers (Block Kit) and the
playbook engine; any of its callbacks can hold it for tens of milliseconds, and an ack served there waited for
each of them (and for every ready callback queued before it). Served from here, a request is accepted, read,
signature-checked and acked (Bolt) on this loop; the two threads share only the GIL, which a waiting thread
gets within the switch interval (`gpuctl.service.tune_switching`). Work that belongs to the main loop (the
answers, alerts, health) goes there through `MainLoop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import Future, InvalidStateError
from typing import Any, TypeVar

from aiohttp import web

log = logging.getLogger(__name__)

T = TypeVar("T")
Address = tuple[str, int]


class MainLoop:
    """The loop that owns the bot's state, reachable from the front door's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._queued: list[Callable[[], object]] = []

    def call_soon(self, fn: Callable[[], object]) -> None:
        """`fn()` at the main loop's next turn, from any thread; RuntimeError if that loop is closed.

        Calls queued before the loop's turn share one wake-up: each wake-up is a syscall, each syscall gives
        the GIL up, and taking it back from a busy main thread costs a switch interval (50 acks at once)."""
        with self._lock:
            self._queued.append(fn)
            wake = len(self._queued) == 1
        if wake:
            try:
                self.loop.call_soon_threadsafe(self._run_queued)
            except RuntimeError:  # closed: nothing queued will run
                with self._lock:
                    self._queued.clear()
                raise

    def _run_queued(self) -> None:
        with self._lock:
            queued, self._queued = self._queued, []
        for fn in queued:
            self.loop.call_soon(fn)  # each a callback of its own: one failing does not drop the others

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Await `work` run as a task on the main loop (from any loop); cancelling this cancels that task."""
        if asyncio.get_running_loop() is self.loop:
            return await work
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.loop))


@contextlib.asynccontextmanager
async def front_door(app: web.Application, host: str, port: int) -> AsyncIterator[Address]:
    """Serve `app` on host:port (port 0: any free one) from a new thread with a loop of its own, until exit.

    Yields the address bound; an error binding it is raised here. On exit the server stops as aiohttp's
    AppRunner.cleanup does (requests in flight are finished) and the thread ends before this returns."""
    started: Future[Address] = Future()
    stopping: Future[None] = Future()
    # A daemon: if the main thread ends without this exit (a second Ctrl-C mid-shutdown), the process still ends.
    thread = threading.Thread(target=_run, args=(app, host, port, started, stopping), name="gpuctl-bot-front-door",
                              daemon=True)  # fmt: skip
    thread.start()
    try:
        yield await asyncio.wrap_future(started)
    finally:
        with contextlib.suppress(InvalidStateError):
            stopping.set_result(None)
        await asyncio.to_thread(thread.join)


def _run(app: web.Application, host: str, port: int, started: Future[Address], stopping: Future[None]) -> None:
    try:
        asyncio.run(_serve(app, host, port, started, stopping))
    except BaseException as e:  # the thread's end: nothing above it would see the error
        if not started.done():
            started.set_exception(e)
        else:
            log.exception("the bot's front door failed")


async def _serve(app: web.Application, host: str, port: int, started: Future[Address], stopping: Future[None]) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[:2]  # type: ignore[union-attr]  # the port chosen for 0
        with contextlib.suppress(InvalidStateError):  # the caller gave up waiting (cancelled): stop at once
            started.set_result((str(bound[0]), int(bound[1])))
        await asyncio.wrap_future(stopping)
    finally:
        await runner.cleanup()
