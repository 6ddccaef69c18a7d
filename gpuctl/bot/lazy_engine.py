"""`LazyEngine`: the bot's engine seam, connected in the background so the bot serves without an API server.

`gpuctl bot serve` must start, answer `/gpu status`, `/healthz` and `/metrics`
while the API server is down or slow: the engine (open_engine: a connection,
a SelfSubjectReview, the audit log, recovery) is opened by a background task
that retries with a growing delay (1 s, doubling, at most 30 s) until it
connects. Until then every engine call raises EngineUnavailable saying why
and when it is tried next: `/gpu run`, `/gpu runs`, `/gpu audit` and the
buttons answer with that; an alert gets a 503 so Alertmanager sends it again.
Once connected, calls go to the EngineLink over that engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType

from gpuctl.bot.blocks import Reply
from gpuctl.bot.commands import Run
from gpuctl.bot.engine_link import EngineLink
from gpuctl.bot.engine_seam import AlertAnswer, AlertProposal, EngineUnavailable
from gpuctl.bot.metrics import Counter
from gpuctl.errors import GpuctlError
from gpuctl.identity import Identity, Requester
from gpuctl.playbooks.engine import Engine

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
MAX_RETRY_S = 30.0


class LazyEngine:
    """An EngineSeam whose engine `opener()` opens in the background (see the module docstring)."""

    def __init__(
        self,
        opener: Callable[[], AbstractAsyncContextManager[Engine]],
        *,
        runs: Counter,
        first_retry_s: float = FIRST_RETRY_S,
        max_retry_s: float = MAX_RETRY_S,
    ) -> None:
        self.opener = opener
        self.counted = runs
        self.first_retry_s = first_retry_s
        self.max_retry_s = max_retry_s
        self.link: EngineLink | None = None
        self.error = "connecting to the cluster"
        self.retry_at: float | None = None  # monotonic time of the next attempt while not connected
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LazyEngine:
        self._task = asyncio.create_task(self._keep_open(), name="bot-engine")
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _keep_open(self) -> None:
        delay = self.first_retry_s
        while True:
            try:
                async with self.opener() as engine:
                    self.link = EngineLink(engine, runs=self.counted)
                    self.retry_at = None
                    self._connected.set()
                    log.info("playbook engine connected as %s", engine.own)
                    await asyncio.Event().wait()  # open until the bot stops (cancelled)
            except GpuctlError as e:
                self.error = str(e)
            except Exception as e:  # not gpuctl's own error: worth a traceback, still retried
                log.exception("opening the playbook engine failed unexpectedly")
                self.error = f"{type(e).__name__}: {e}"
            self.link = None
            self._connected.clear()
            self.retry_at = time.monotonic() + delay
            log.warning("playbook engine not connected (next try in %.0f s): %s", delay, self.error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_retry_s)

    @property
    def state(self) -> str:
        """'connected', or why not (for /healthz)."""
        return "connected" if self.link is not None else f"not connected: {self.error}"

    async def connected(self, timeout_s: float) -> EngineLink:
        """The link once the engine is open (tests, `gpuctl serve`); TimeoutError after timeout_s."""
        async with asyncio.timeout(timeout_s):
            await self._connected.wait()
        assert self.link is not None
        return self.link

    async def engine(self) -> Engine:
        """The engine once it is open, however long that takes (`gpuctl serve`'s executor shares it)."""
        await self._connected.wait()
        assert self.link is not None
        return self.link.engine

    def _link(self, source: str) -> EngineLink:
        if self.link is not None:
            return self.link
        self.counted.inc(source=source, outcome="unavailable")
        wait = "" if self.retry_at is None else f"; next try in {max(0.0, self.retry_at - time.monotonic()):.0f} s"
        raise EngineUnavailable(f"the playbook engine is not connected yet ({self.error}){wait}",
                                hint="status commands work meanwhile; try again shortly")  # fmt: skip

    async def run(self, requester: Requester, command: Run, *, key: str) -> Reply:
        return await self._link("slack").run(requester, command, key=key)

    async def runs(self, viewer: Identity) -> Reply:
        return await self._link("slack").runs(viewer)

    async def audit(self, viewer: Identity, run_id: str | None) -> Reply:
        return await self._link("slack").audit(viewer, run_id)

    async def review(self, approver: Requester, run_id: str, *, approve: bool) -> Reply:
        return await self._link("approval").review(approver, run_id, approve=approve)

    async def follow(self, run_id: str) -> Reply | None:
        return await self._link("approval").follow(run_id)

    async def alert(self, proposal: AlertProposal) -> AlertAnswer:
        return await self._link("alert").alert(proposal)

    async def execute_alert(self, proposal: AlertProposal, run_id: str) -> Reply:
        return await self._link("auto").execute_alert(proposal, run_id)
