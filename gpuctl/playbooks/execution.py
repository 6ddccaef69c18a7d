"""Carrying out one authorized plan: exactly its steps, as the requester, recorded call by call.

`Runner.run(job)` does, in order:

1. the kill switch (killswitch.py): engaged → PlaybooksDisabled, nothing done;
2. a Lease per target of the plan (locks.py), in a fixed order so two runs never
   deadlock; a target another run holds is waited for up to `lock_wait_s`, then
   LockHeld names the holder, nothing done;
3. the job's fences (the executor's leadership: leader.py), then the claim (the
   run's status goes to Running; a run someone else claimed is RunRefused),
   inside `audit.hold(run_id)`: from here on a process that dies leaves a hold
   that the next start turns into an `interrupted` record;
4. `execution_started`, then `logic.stale`: a target that changed since the plan
   fails the run (PlanStale) before anything is written;
5. `logic.execute` with a RunContext: every write goes through an ActingClient
   that, before each request, checks the kill switch, the locks (still ours?),
   the job's fences and the deadline from the playbook's guardrails; each call
   lands in the audit log as an `api_call` record (those the logic did not
   record itself, too), each progress line as a `step` record and in the run's
   status (not once the run is no longer Running under this claim);
6. `logic.verify`, `verified`, then `completed` or `failed` and the final phase:
   Succeeded, Failed, or Cancelled when the kill switch stopped it.

An undo run also writes `undo_started` and then `undone` (or `failed`) on the
run it undoes, holding both runs in the audit log while it executes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, JsonValue

from gpuctl.audit.backend import AuditBackend
from gpuctl.audit.records import ApiCall, AuditEvent, EventKind
from gpuctl.clock import Clock, utcnow
from gpuctl.errors import GpuctlError, LockHeld, PlanStale, PlaybooksDisabled
from gpuctl.identity import Identity, Requester
from gpuctl.model import Snapshot
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.context import DeadlinePassed, RunContext
from gpuctl.playbooks.kubeapi import KubeApi
from gpuctl.playbooks.locks import Hold, LeaseLocks, LockTarget
from gpuctl.playbooks.logic import Clients, PlaybookLogic, Report, Verification
from gpuctl.playbooks.plan import Plan
from gpuctl.playbooks.runs import RunPhase, StepState
from gpuctl.playbooks.runstore import StatusWriter, holder_of
from gpuctl.playbooks.spec import Playbook

SnapshotSource = Callable[[], Awaitable[Snapshot]]


class Fence(Protocol):
    """Something a run's writes depend on (a target's Lease `Hold`, the executor's `Leadership`): `check()`
    raises a GpuctlError once it is gone, and the run stops before its next write."""

    def check(self) -> None: ...


# How long past its deadline a playbook's execute may take to wind down before it is cancelled.
GRACE_S = 30.0
_STEP_STATE: dict[str, StepState] = {"done": "Succeeded", "skipped": "Skipped", "refused": "Failed", "failed": "Failed"}


class Outcome(BaseModel):
    """How an execution ended, for front ends (the audit log and the run's status say the same)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    playbook: str
    phase: RunPhase
    message: str
    report: Report | None = None
    verification: Verification | None = None
    stale: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.phase == "Succeeded"


@dataclass(frozen=True)
class Job:
    run_id: str
    plan: Plan
    playbook: Playbook
    logic: PlaybookLogic
    actor: Requester  # the requester, through the front end that executes the run
    acting_as: Identity | None  # whom the writes impersonate; None: the connection's own credentials
    status: StatusWriter
    undo_of: str | None = None  # the run this one undoes (its audit records get undo_started/undone)
    fences: tuple[Fence, ...] = ()  # checked before the claim and before every write (the executor's leadership)


class _Guard:
    """Awaited before every write: the locks (and the job's fences) still ours, the deadline not passed, the kill
    switch off."""

    def __init__(self, check_switch: Callable[[], Awaitable[None]], fences: Sequence[Fence], deadline: datetime, clock: Clock) -> None:
        self._check_switch = check_switch
        self._fences = fences
        self._deadline = deadline
        self._clock = clock
        self.stopped: GpuctlError | None = None

    async def __call__(self) -> None:
        try:
            for fence in self._fences:
                fence.check()
            if self._clock() >= self._deadline:
                raise DeadlinePassed(f"the run's deadline ({self._deadline:%H:%M:%S} UTC) passed; no further writes")
            await self._check_switch()
        except GpuctlError as e:
            self.stopped = self.stopped or e
            raise


class Runner:
    """Executes jobs with the process's connection, audit log, locks and kill switch."""

    def __init__(
        self,
        api: KubeApi,
        audit: AuditBackend,
        *,
        namespace: str,
        check_switch: Callable[[], Awaitable[None]],
        snapshots: SnapshotSource,
        clock: Clock = utcnow,
        lock_wait_s: float = 10.0,
        lock_duration_s: int = 60,
        host: str | None = None,
    ) -> None:
        self.api = api
        self.audit = audit
        self.namespace = namespace
        self.check_switch = check_switch
        self.snapshots = snapshots
        self.clock = clock
        self.lock_wait_s = lock_wait_s
        self.lock_duration_s = lock_duration_s
        self.host = host or socket.gethostname()

    async def run(self, job: Job) -> Outcome:
        """Execute the job's plan (see the module docstring); raises only when nothing was done, or PlanStale."""
        await self.check_switch()
        holder = holder_of(self.host, job.run_id)
        locks = LeaseLocks(self.api, self.namespace, holder, duration_s=self.lock_duration_s, clock=self.clock)
        async with contextlib.AsyncExitStack() as stack:
            holds = [await self._lock(stack, locks, target) for target in sorted(set(job.plan.locks), key=str)]
            unclaimed: GpuctlError | None = None
            async with self._held(job):
                try:
                    for fence in job.fences:
                        fence.check()
                    await job.status.claim(holder)
                except GpuctlError as e:  # not ours to execute: leave the hold as a normal end, not a crash
                    unclaimed = e
                else:
                    outcome = await self._carry_out(job, holds, holder)
            if unclaimed is not None:
                raise unclaimed
        if outcome.stale:
            raise PlanStale(
                f"run {job.run_id} was not executed: {'; '.join(outcome.stale)}",
                hint=f"plan again: gpuctl playbook plan {job.plan.playbook} ...",
            )
        return outcome

    @contextlib.asynccontextmanager
    async def _held(self, job: Job) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.audit.hold(job.run_id))
            if job.undo_of:
                await stack.enter_async_context(self.audit.hold(job.undo_of))
            yield

    async def _lock(self, stack: contextlib.AsyncExitStack, locks: LeaseLocks, target: LockTarget) -> Hold:
        """Take the target's lock, waiting up to lock_wait_s for another run to let go of it."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self.lock_wait_s
        while True:
            try:
                return await stack.enter_async_context(locks.hold(target))
            except LockHeld:
                left = until - loop.time()
                if left <= 0:
                    raise
                await asyncio.sleep(min(1.0, left))

    async def _record(self, job: Job, kind: EventKind, payload: dict[str, Any], *, run_id: str | None = None) -> None:
        await self.audit.append(AuditEvent(run_id=run_id or job.run_id, kind=kind, actor=job.actor, payload=payload))

    async def _carry_out(self, job: Job, holds: Sequence[Hold], holder: str) -> Outcome:
        plan = job.plan
        deadline = self.clock() + timedelta(seconds=job.playbook.guardrails.deadline)
        await self._record(job, EventKind.EXECUTION_STARTED, {"fingerprint": plan.fingerprint, "by": holder,
                                                               "deadline": deadline.isoformat()})  # fmt: skip
        if job.undo_of:
            await self._record(job, EventKind.UNDO_STARTED, {"undo_run": job.run_id}, run_id=job.undo_of)

        unrecorded: list[ApiCall] = []  # writes the logic has not recorded (yet)
        run_api = self.api.with_sink(lambda call: unrecorded.append(call) if call.method != "GET" else None)
        guard = _Guard(self.check_switch, (*holds, *job.fences), deadline, self.clock)
        clients = Clients(acting=ActingClient(run_api, job.acting_as, before_write=guard), reader=ActingClient(self.api, None))

        try:
            stale = await job.logic.stale(plan, clients)
        except GpuctlError as e:
            stale = [f"the targets could not be read again ({e})"]
        if stale:
            return await self._finish(job, "Failed", "the plan is stale: " + "; ".join(stale), stale=tuple(stale))

        async def on_call(call: ApiCall, step: int) -> None:
            with contextlib.suppress(ValueError):
                unrecorded.remove(call)
            await self._record(job, EventKind.API_CALL, {**call.model_dump(mode="json"), "step": step})
            await job.status.step(step, "Running")

        async def on_progress(message: str, step: int | None) -> None:
            await self._record(job, EventKind.STEP, {"step": step, "message": message})
            if step is not None:
                await job.status.step(step, "Running", message)

        ctx = RunContext(clients, deadline, on_call, on_progress, self.snapshots, clock=self.clock)
        report: Report | None = None
        verification: Verification | None = None
        error: str | None = None
        try:
            async with asyncio.timeout((deadline - self.clock()).total_seconds() + GRACE_S):
                report = await job.logic.execute(plan, ctx)
        except TimeoutError:
            error = f"the playbook did not finish within its deadline ({job.playbook.guardrails.deadline:g} s)"
        except GpuctlError as e:
            error = str(e)
        for call in list(unrecorded):  # the audit log has every write, whether or not the logic recorded it
            await self._record(job, EventKind.API_CALL, {**call.model_dump(mode="json"), "step": None})
        unrecorded.clear()

        if report is not None and guard.stopped is None:
            try:
                verification = await job.logic.verify(plan, report, ctx)
            except GpuctlError as e:
                error = f"verification could not complete: {e}"
            else:
                checks: list[JsonValue] = [c.model_dump(mode="json") for c in verification.checks]
                await self._record(job, EventKind.VERIFIED, {"ok": verification.ok, "checks": checks})

        if isinstance(guard.stopped, PlaybooksDisabled):
            phase: RunPhase = "Cancelled"
            message = f"stopped by the kill switch before a write: {guard.stopped}"
        elif guard.stopped is not None:
            phase, message = "Failed", f"stopped before a write: {guard.stopped}"
        elif error is not None:
            phase, message = "Failed", error
        elif report is not None and not report.ok:
            phase, message = "Failed", report.message or "a step failed"
        elif verification is not None and not verification.ok:
            failed = [f"{c.name}: {c.detail}" for c in verification.checks if not c.ok]
            phase, message = "Failed", "verification failed: " + "; ".join(failed)
        else:
            phase, message = "Succeeded", (report.message if report else "") or "done"
        return await self._finish(job, phase, message, report=report, verification=verification, holder=holder)

    async def _finish(
        self,
        job: Job,
        phase: RunPhase,
        message: str,
        *,
        report: Report | None = None,
        verification: Verification | None = None,
        stale: tuple[str, ...] = (),
        holder: str | None = None,
    ) -> Outcome:
        outcome = Outcome(
            run_id=job.run_id, playbook=job.plan.playbook, phase=phase, message=message,
            report=report, verification=verification, stale=stale,
        )  # fmt: skip
        result: dict[str, Any] = outcome.model_dump(mode="json", exclude={"run_id", "playbook", "phase"})
        await self._record(job, EventKind.COMPLETED if outcome.ok else EventKind.FAILED, {"phase": phase, **result})
        steps = {o.index: (_STEP_STATE[o.status], o.message) for o in (report.outcomes if report else ())}
        await job.status.finish(phase, {**result, "executedBy": holder} if holder else result, steps)
        if job.undo_of:
            kind = EventKind.UNDONE if outcome.ok else EventKind.FAILED
            await self._record(job, kind, {"undo_run": job.run_id, "phase": phase, "message": message}, run_id=job.undo_of)
        return outcome

