"""The seam between the engine and each playbook's own logic.

The engine (engine.py) owns everything every playbook shares: parameter
validation, policy and RBAC, approvals, the PlaybookRun, locks, the deadline,
the audit log. A playbook's logic owns what only it knows, behind this
protocol, one module per playbook:

    plan(request, clients)       → Draft   what it would do, with server-side dry runs
    stale(plan, clients)         → [why]   what changed since the plan that matters to it
    execute(plan, ctx)           → Report  exactly the plan's steps, as the requester
    verify(plan, report, ctx)    → Verification
    undo(plan, report)           → Draft | None   the inverse, from the recorded before-state

Logic never writes except through `ctx.acting` (impersonating the requester)
and never decides authorization: by the time `execute` runs, the engine has
authorized, approved and locked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from gpuctl.identity import Requester
from gpuctl.model import Snapshot
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.kubeapi import ApiCall
from gpuctl.playbooks.locks import LockTarget
from gpuctl.playbooks.params import Arguments
from gpuctl.playbooks.plan import Plan, Skipped, Step
from gpuctl.playbooks.policy import Scope
from gpuctl.playbooks.spec import Playbook


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True, slots=True)
class Clients:
    """acting: as the requester (every write, every dry run); reader: gpuctl's own identity (reads, waits)."""

    acting: ActingClient
    reader: ActingClient


@dataclass(frozen=True, slots=True)
class PlanRequest:
    playbook: Playbook
    args: Arguments  # validated (params.validate_params): typed, within bounds, defaults filled in
    requester: Requester
    snapshot: Snapshot
    now: datetime


@dataclass(slots=True)
class Draft:
    """What a planner found; the engine seals it into a Plan (fingerprint, requester, time)."""

    steps: list[Step] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    scopes: list[Scope] = field(default_factory=list)  # every policy scope the steps touch: authorized one by one
    locks: list[LockTarget] = field(default_factory=list)  # one run at a time per target
    dry_run: Literal["server", "client", "none"] = "none"


class StepOutcome(_Frozen):
    index: int = Field(description="position of the step in the plan")
    status: Literal["done", "skipped", "refused", "failed"]
    message: str
    calls: tuple[ApiCall, ...] = ()


class Report(_Frozen):
    outcomes: tuple[StepOutcome, ...] = ()
    message: str = ""

    @property
    def ok(self) -> bool:
        return all(o.status in ("done", "skipped") for o in self.outcomes)


class Check(_Frozen):
    name: str
    ok: bool
    detail: str = ""


class Verification(_Frozen):
    checks: tuple[Check, ...] = ()

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


class ExecContext(Protocol):
    """What the engine lends a playbook while it executes."""

    clients: Clients
    deadline: datetime

    def now(self) -> datetime: ...
    async def sleep(self, seconds: float) -> None: ...
    async def record(self, call: ApiCall, *, step: int) -> None:
        """Every API call a step made: into the audit log and the run's progress."""

    async def progress(self, message: str, *, step: int | None = None) -> None:
        """One line a person watching the run reads: 'evicting 3/6', 'PDB blocked team-b/nb-7, retrying in 10 s'."""

    async def snapshot(self) -> Snapshot:
        """The freshest live picture (staged reclaim re-checks busy GPUs before evicting)."""


class PlaybookLogic(Protocol):
    name: str

    async def plan(self, request: PlanRequest, clients: Clients) -> Draft: ...
    async def stale(self, plan: Plan, clients: Clients) -> list[str]: ...
    async def execute(self, plan: Plan, ctx: ExecContext) -> Report: ...
    async def verify(self, plan: Plan, report: Report, ctx: ExecContext) -> Verification: ...
    def undo(self, plan: Plan, report: Report) -> Draft | None: ...

