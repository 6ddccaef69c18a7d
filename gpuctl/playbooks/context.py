"""RunContext: the ExecContext the engine lends a playbook while it executes.

Where each call and progress line goes is the engine's business (the audit
log, the PlaybookRun's status, a front end's progress view); the playbook only
calls `record` and `progress`. Tests build one with plain list-appending sinks
and real clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from gpuctl.clock import Clock, utcnow
from gpuctl.errors import GpuctlError
from gpuctl.model import Snapshot
from gpuctl.playbooks.kubeapi import ApiCall
from gpuctl.playbooks.logic import Clients

CallSink = Callable[[ApiCall, int], Awaitable[None]]
ProgressSink = Callable[[str, int | None], Awaitable[None]]
SnapshotSource = Callable[[], Awaitable[Snapshot]]


class DeadlinePassed(GpuctlError):
    """The run's deadline came before the playbook finished; what was done is recorded."""


@dataclass
class RunContext:
    clients: Clients
    deadline: datetime
    on_call: CallSink
    on_progress: ProgressSink
    latest_snapshot: SnapshotSource
    clock: Clock = utcnow
    calls: int = field(default=0, init=False)

    def now(self) -> datetime:
        return self.clock()

    def left_s(self) -> float:
        return (self.deadline - self.clock()).total_seconds()

    async def sleep(self, seconds: float) -> None:
        """Wait, but never past the deadline: DeadlinePassed instead of sleeping beyond it."""
        if seconds >= self.left_s():
            raise DeadlinePassed(f"the run's deadline ({self.deadline:%H:%M:%S} UTC) came first")
        await asyncio.sleep(max(0.0, seconds))

    async def record(self, call: ApiCall, *, step: int) -> None:
        self.calls += 1
        await self.on_call(call, step)

    async def progress(self, message: str, *, step: int | None = None) -> None:
        await self.on_progress(message, step)

    async def snapshot(self) -> Snapshot:
        return await self.latest_snapshot()
