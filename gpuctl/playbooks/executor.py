"""`gpuctl executor` (and the executor half of `gpuctl serve`): carries out approved runs, as their requesters.

Run several replicas; one leads (leader.py: the Lease `gpuctl-leader` in
gpuctl's namespace). Only the leader picks up runs: it lists PlaybookRuns, then
watches them, and starts every run that becomes Approved (a run also needs its
own claim, a compare-and-swap on its status, so even two processes that both
believed they led could not execute one run twice). It expires runs whose
approval window passed, submits the undo of runs whose approved plan said to
revert them by a time (adjust-quota's revert_after: Engine.revert), and marks
Interrupted the runs another process left mid-execution: on start those this
machine's audit log holds (Engine.recover), and at every listing those found
Running whose executor no longer holds their target Leases
(Engine.interrupt_abandoned: a dead replica's, a killed CLI's). Neither is ever
executed again.

Fencing: the runs a leader starts carry its Leadership as a fence, checked
before their claim and before every write; a leader that loses the Lease (or
cannot renew it within the renew deadline) stops watching at once and its runs
in progress refuse their next write and end Failed. SIGTERM (`stop()`) takes
no new runs, keeps the Lease while the runs in progress finish, then vacates
it so another replica takes over at once.
"""

from __future__ import annotations

import asyncio
import logging

from gpuctl.errors import GpuctlError, LockHeld
from gpuctl.identity import Requester
from gpuctl.playbooks.engine import Engine
from gpuctl.playbooks.execution import Outcome
from gpuctl.playbooks.leader import Election, Leadership
from gpuctl.playbooks.runs import PlaybookRun
from gpuctl.sources.kube.reflector import Gone

log = logging.getLogger(__name__)


class Executor:
    def __init__(self, engine: Engine, *, name: str, election: Election | None = None) -> None:
        self.engine = engine
        self.name = name
        self.election = election or Election()
        self.leadership = Leadership(engine.api, engine.store.namespace, name, self.election, clock=engine.clock)
        self.by = Requester(identity=engine.own, via="executor", detail=name)
        self.executed: list[Outcome] = []  # what this process carried out, newest last
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()

    @property
    def leading(self) -> asyncio.Event:
        return self.leadership.leading

    @property
    def running(self) -> tuple[str, ...]:
        """The runs this process is executing now."""
        return tuple(self._running)

    def stop(self) -> None:
        """Wind down (SIGTERM): no new runs; the runs in progress finish under the Lease, then it is vacated."""
        self._stopping.set()

    async def run(self) -> None:
        """Until stopped: campaign, and execute approved runs while leading.

        Cancelled instead (Ctrl-C), runs in progress are cancelled too: they are recorded as
        interrupted (by the next start on this machine, or by the next leader)."""
        await self.engine.store.require("the executor")
        await self.engine.recover()
        try:
            while await self.leadership.campaign(self._stopping):
                await self._term()
        finally:
            for task in self._running.values():
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)
            await self.leadership.step_down()

    async def _term(self) -> None:
        """One term as leader: lead until the Lease is lost or stop() is called; then stop leading."""
        keeping = asyncio.create_task(self.leadership.keep(), name=f"{self.name}-renew")
        leading = asyncio.create_task(self._lead(), name=f"{self.name}-lead")
        stopping = asyncio.create_task(self._stopping.wait())
        tasks = [keeping, leading, stopping]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if leading.done():
                leading.result()  # it only ends on an unexpected error: raise it
            leading.cancel()
            if not keeping.done():  # stopping: the runs in progress finish while we still lead
                tasks.append(finishing := asyncio.create_task(self._finished()))
                await asyncio.wait({keeping, finishing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.leadership.step_down()

    async def _finished(self) -> None:
        """Until every run in progress has ended."""
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _lead(self) -> None:
        """List, start what is due, watch for more, until cancelled (leadership lost or stopping).

        An API error (unreachable, 429, 5xx) is waited out: leadership is only given up through the
        Lease, never by a failed list."""
        while True:
            try:
                await self._watch_round()
            except Gone:
                continue  # too old to watch from: list again
            except GpuctlError as e:
                log.warning("%s: listing or watching runs failed, retrying: %s", self.name, e)
                await asyncio.sleep(self.election.retry_s)

    async def _watch_round(self) -> None:
        runs = self.engine.store.runs
        listed = await runs.list()
        await self._expire_due(listed.runs)
        await self._revert_due(listed.runs)
        await self._interrupt_abandoned(listed.runs)
        for run in listed.runs:
            self._consider(run)
        async with runs.watch(listed.resource_version, timeout_s=self.election.lease_s) as events:
            async for event in events:
                if event.run is not None:
                    self._consider(event.run)

    def _consider(self, run: PlaybookRun) -> None:
        if run.status.phase == "Approved" and run.name not in self._running and self.leadership.valid():
            task = asyncio.create_task(self._execute(run.name), name=f"execute-{run.name}")
            self._running[run.name] = task
            task.add_done_callback(lambda _: self._running.pop(run.name, None))

    async def _execute(self, name: str) -> None:
        try:
            outcome = await self.engine.execute(name, by=self.by, fence=self.leadership)
        except LockHeld as e:
            log.info("run %s waits for its targets: %s", name, e)  # still Approved: picked up again at the next list
        except GpuctlError as e:
            log.warning("run %s: %s", name, e)
        else:
            self.executed.append(outcome)
            log.info("run %s: %s (%s)", name, outcome.phase, outcome.message)

    async def _interrupt_abandoned(self, runs: tuple[PlaybookRun, ...]) -> None:
        """Mark Interrupted each Running run (not ours) whose executor no longer holds its targets."""
        for run in runs:
            if run.status.phase != "Running" or run.name in self._running:
                continue
            try:
                if await self.engine.interrupt_abandoned(run, by=self.by):
                    log.warning("run %s was left mid-execution by its executor: marked Interrupted", run.name)
            except GpuctlError as e:
                log.warning("could not judge whether run %s was abandoned: %s", run.name, e)

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
