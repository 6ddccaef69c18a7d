"""`gpuctl executor`: the in-cluster process that carries out approved runs, as their requesters.

Run several replicas; one leads. Leadership is a Lease in gpuctl's namespace
(`gpuctl-executor-leader-…`, locks.py) that the leader renews every third of
its duration; a replica that cannot take it waits and tries again, so when the
leader dies its Lease expires and another replica takes over within one
duration. Only the leader picks up runs: it lists PlaybookRuns, then watches
them, and starts every run that becomes Approved (a run also needs its own
claim, a compare-and-swap on its status, so even two processes that both
believed they led could not execute one run twice). It expires runs whose
approval window passed, submits the undo of runs whose approved plan said to
revert them by a time (adjust-quota's revert_after: Engine.revert), and on
start records the runs a crashed predecessor left mid-execution as Interrupted
(never executing them again).

A leader that loses its Lease stops picking up runs; runs it already started
finish (they hold their own target Leases). SIGTERM (`stop()`) does the same
and exits once they have finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gpuctl.errors import GpuctlError, LockHeld
from gpuctl.identity import Requester
from gpuctl.playbooks.engine import Engine
from gpuctl.playbooks.execution import Outcome
from gpuctl.playbooks.locks import Hold, LeaseLocks, LockTarget
from gpuctl.playbooks.runs import PlaybookRun
from gpuctl.sources.kube.reflector import Gone

log = logging.getLogger(__name__)

LEADER = LockTarget(kind="executor", name="leader")


class Executor:
    def __init__(self, engine: Engine, *, name: str, lease_s: int = 15) -> None:
        self.engine = engine
        self.name = name
        self.lease_s = lease_s
        self.by = Requester(identity=engine.own, via="executor", detail=name)
        self.leading = asyncio.Event()
        self.executed: list[Outcome] = []  # what this process carried out, newest last
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Wind down (SIGTERM): give up leadership within a watch round, let runs in progress finish."""
        self._stopping.set()

    async def run(self) -> None:
        """Until stopped: be the leader when possible and execute approved runs while leading.

        Cancelled instead (Ctrl-C), runs in progress are cancelled too: the next start records them
        as interrupted."""
        await self.engine.store.require("the executor")
        await self.engine.recover()
        locks = LeaseLocks(self.engine.api, self.engine.store.namespace, self.name, duration_s=self.lease_s)
        try:
            while not self._stopping.is_set():
                try:
                    async with locks.hold(LEADER) as hold:
                        log.info("%s leads", self.name)
                        self.leading.set()
                        await self._lead(hold)
                except LockHeld as e:
                    log.debug("%s waits: %s", self.name, e)
                finally:
                    self.leading.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.lease_s / 3)
            await asyncio.gather(*self._running.values(), return_exceptions=True)
        finally:
            for task in self._running.values():
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _lead(self, hold: Hold) -> None:
        """List, start what is due, watch for more; return when the leader Lease is lost.

        An API error (unreachable, 429, 5xx) is waited out while the Lease holds: leadership is
        only given up by losing the Lease, never by a failed list."""
        while hold.lost is None and not self._stopping.is_set():
            try:
                await self._watch_round(hold)
            except Gone:
                continue  # too old to watch from: list again
            except GpuctlError as e:
                log.warning("%s: listing or watching runs failed, retrying: %s", self.name, e)
                await asyncio.sleep(self.lease_s / 3)

    async def _watch_round(self, hold: Hold) -> None:
        runs = self.engine.store.runs
        listed = await runs.list()
        await self._expire_due(listed.runs)
        await self._revert_due(listed.runs)
        for run in listed.runs:
            self._consider(run)
        async with runs.watch(listed.resource_version, timeout_s=self.lease_s) as events:
            async for event in events:
                if hold.lost is not None or self._stopping.is_set():
                    return
                if event.run is not None:
                    self._consider(event.run)

    def _consider(self, run: PlaybookRun) -> None:
        if run.status.phase == "Approved" and run.name not in self._running:
            task = asyncio.create_task(self._execute(run.name), name=f"execute-{run.name}")
            self._running[run.name] = task
            task.add_done_callback(lambda _: self._running.pop(run.name, None))

    async def _execute(self, name: str) -> None:
        try:
            outcome = await self.engine.execute(name, by=self.by)
        except LockHeld as e:
            log.info("run %s waits for its targets: %s", name, e)  # still Approved: picked up again at the next list
        except GpuctlError as e:
            log.warning("run %s: %s", name, e)
        else:
            self.executed.append(outcome)
            log.info("run %s: %s (%s)", name, outcome.phase, outcome.message)

    async def _revert_due(self, runs: tuple[PlaybookRun, ...]) -> None:
        """Submit (pre-approved) the undo of every Succeeded run whose plan's revert time has come."""
        now = self.engine.clock()
        for run in runs:
            try:
                due = self.engine.revert_due(run)
                if due is not None and now >= due:
                    submitted = await self.engine.revert(run.name, by=self.by)
                    if not submitted.duplicate:
                        log.info("run %s: revert due at %s submitted as %s", run.name, due, submitted.run_id)
            except GpuctlError as e:
                log.warning("could not revert run %s: %s", run.name, e)

    async def _expire_due(self, runs: tuple[PlaybookRun, ...]) -> None:
        now = self.engine.clock()
        for run in runs:
            playbook = self.engine.catalog.playbooks.get(run.spec.playbook)
            if run.status.phase == "AwaitingApproval" and playbook and now >= self.engine.expires_at(run, playbook):
                try:
                    await self.engine.expire(run)
                except GpuctlError as e:
                    log.warning("could not expire run %s: %s", run.name, e)
