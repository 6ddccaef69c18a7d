"""Where a run's state lives: a PlaybookRun in the cluster, or (without the CRD) nowhere but the audit log.

`RunStore` creates runs by idempotency key (a duplicate returns the run that
exists) and changes their status by read-modify-write: `change(name, decide)`
re-reads and re-decides once when another writer got in between (409), so an
approval is never lost and a run is claimed for execution by exactly one process.

Runs are created AS the requester (through impersonation when gpuctl acts for
someone), so who may submit runs is the cluster's decision (ClusterRole
gpuctl:playbookrun-requester); status is written with gpuctl's own credentials.

An execution reports through a `StatusWriter`: `ClusterStatus` for a
PlaybookRun, `LocalStatus` (nothing to write) for a run without one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from gpuctl.clock import Clock, utcnow
from gpuctl.errors import AlreadyExists, Conflict, GpuctlError, NotInstalled, RunRefused
from gpuctl.identity import Identity
from gpuctl.playbooks.kubeapi import KubeApi
from gpuctl.playbooks.plan import Plan
from gpuctl.playbooks.runs import (
    Condition,
    PlaybookRun,
    PlaybookRuns,
    RunPhase,
    RunRequester,
    RunSpec,
    RunStatus,
    StepProgress,
    StepState,
    run_name,
)

log = logging.getLogger(__name__)

UNDO_OF_LABEL = "gpuctl.io/undo-of"

# decide(run) → the new status, or None when the run is already as wanted (nothing to write).
Decide = Callable[[PlaybookRun], RunStatus | None]


class RunStore:
    def __init__(self, api: KubeApi, namespace: str, *, clock: Clock = utcnow) -> None:
        self.api = api
        self.namespace = namespace
        self.runs = PlaybookRuns(api, namespace)
        self._clock = clock
        self._installed: bool | None = None

    async def installed(self) -> bool:
        """Whether the API server serves PlaybookRuns (asked once per store)."""
        if self._installed is None:
            try:
                await self.runs.ensure_installed()
                self._installed = True
            except NotInstalled:
                self._installed = False
        return self._installed

    async def require(self, why: str) -> None:
        """NotInstalled, saying what to install and why it is needed, unless PlaybookRuns are served."""
        if not await self.installed():
            raise NotInstalled(
                f"{why} needs the PlaybookRun custom resource, which this cluster does not serve",
                hint="kubectl apply --server-side -k deploy/crds && kubectl apply --server-side -k deploy/rbac "
                "(playbooks that need no approval run locally without it)",
            )

    async def create(
        self, plan: Plan, key: str, *, acting_as: Identity | None, phase: RunPhase, undo_of: str | None = None
    ) -> tuple[PlaybookRun, bool]:
        """The run for `key`: (created run, True), or (the run that already has this key, False)."""
        spec = RunSpec(
            playbook=plan.playbook,
            parameters=plan.parameters,
            requester=RunRequester.of(plan.requester),
            idempotency_key=key,
            plan=plan.model_dump(mode="json"),
            plan_fingerprint=plan.fingerprint,
        )
        labels = {UNDO_OF_LABEL: undo_of} if undo_of else None
        try:
            run = await PlaybookRuns(self.api, self.namespace, acting_as=acting_as).create(spec, labels=labels)
        except AlreadyExists:
            return await self.get(run_name(plan.playbook, key)), False
        # The status subresource ignores status on create: set the first phase now.
        return await self.change(run.name, lambda r: r.status.model_copy(update={"phase": phase, "audit_run_id": r.name})), True

    async def get(self, name: str) -> PlaybookRun:
        return await self.runs.get(name)

    async def list(self) -> Sequence[PlaybookRun]:
        listed = await self.runs.list()
        return sorted(listed.runs, key=lambda r: r.created_at)

    async def change(self, name: str, decide: Decide, *, run: PlaybookRun | None = None) -> PlaybookRun:
        """Read (unless `run` is fresh), decide, write; on a 409 re-read and decide again, once."""
        current = run or await self.get(name)
        for attempt in (1, 2):
            status = decide(current)
            if status is None:
                return current
            try:
                return await self.runs.update_status(current, status)
            except Conflict:
                if attempt == 2:
                    raise
                current = await self.get(name)
        raise AssertionError("unreachable")


def holder_of(host: str, run_id: str) -> str:
    """Who executes a run, in its Leases and its Executing condition: the process's host name and the run."""
    return f"{host}/{run_id}"


def claim_message(holder: str) -> str:
    """The Executing condition's message of a run `holder` claimed."""
    return f"executed by {holder}"


def claimed_by(run: PlaybookRun) -> str | None:
    """Who claimed the run for execution (its Executing condition, reason Claimed), if anyone."""
    prefix = claim_message("")
    for c in run.status.conditions:
        if c.type == "Executing" and c.reason == "Claimed" and c.message.startswith(prefix):
            return c.message.removeprefix(prefix)
    return None


def condition(type_: str, reason: str, message: str, at: datetime) -> Condition:
    return Condition(type=type_, status="True", last_transition_time=at, reason=reason, message=message[:32768])


def with_condition(status: RunStatus, new: Condition) -> RunStatus:
    kept = tuple(c for c in status.conditions if c.type != new.type)
    return status.model_copy(update={"conditions": (*kept, new)})


class StatusWriter(Protocol):
    """How an execution tells the world where it is (a PlaybookRun's status, or nothing)."""

    async def claim(self, holder: str) -> None:
        """Take the run for execution, or RunRefused if it is not (any more) waiting to execute."""

    async def step(self, index: int, state: StepState, message: str | None = None) -> None: ...

    async def finish(self, phase: RunPhase, result: dict[str, Any], steps: Mapping[int, tuple[StepState, str]]) -> None:
        """The final phase, the result, and each step's final state and message (by index)."""


class LocalStatus:
    """A run without a PlaybookRun: the audit log is its only record."""

    async def claim(self, holder: str) -> None:
        return None

    async def step(self, index: int, state: StepState, message: str | None = None) -> None:
        return None

    async def finish(self, phase: RunPhase, result: dict[str, Any], steps: Mapping[int, tuple[StepState, str]]) -> None:
        return None


class ClusterStatus:
    """Progress of one execution into its PlaybookRun's status."""

    def __init__(self, store: RunStore, run: PlaybookRun, plan: Plan, *, ready: Sequence[RunPhase], clock: Clock = utcnow) -> None:
        self.store = store
        self.run = run
        self.plan = plan
        self.ready = tuple(ready)
        self._clock = clock
        self._shown: dict[int, tuple[StepState, str | None]] = {}
        self._holder: str | None = None

    def _ours(self, run: PlaybookRun) -> bool:
        """Still Running under our claim: not marked Interrupted meanwhile by a replica that judged us gone."""
        return run.status.phase == "Running" and claimed_by(run) == self._holder

    async def claim(self, holder: str) -> None:
        now = self._clock()
        self._holder = holder

        def take(run: PlaybookRun) -> RunStatus:
            phase = run.status.phase or "Pending"
            if phase not in self.ready:
                executing = next((c.message for c in run.status.conditions if c.type == "Executing"), None)
                by = f" ({executing})" if executing and phase == "Running" else ""
                raise RunRefused(f"run {run.name} is {phase}{by}: only a run that is {' or '.join(self.ready)} executes")
            steps = tuple(
                StepProgress(name=step.action, target=step.target.key, state="Pending") for step in self.plan.steps
            )
            status = run.status.model_copy(update={"phase": "Running", "steps": steps})
            return with_condition(status, condition("Executing", "Claimed", claim_message(holder), now))

        self.run = await self.store.change(self.run.name, take, run=self.run)

    async def step(self, index: int, state: StepState, message: str | None = None) -> None:
        if self._shown.get(index) == (state, message) or (message is None and self._shown.get(index, ("",))[0] == state):
            return  # nothing new for people watching: spare the API server a write
        now = self._clock()

        def advance(run: PlaybookRun) -> RunStatus | None:
            steps = list(run.status.steps)
            if not self._ours(run) or not 0 <= index < len(steps):
                return None
            steps[index] = _moved(steps[index], state, message, now)
            return run.status.model_copy(update={"steps": tuple(steps)})

        try:
            self.run = await self.store.change(self.run.name, advance)
            self._shown[index] = (state, message)
        except GpuctlError as e:  # progress is for people watching; the audit log has every step
            log.warning("run %s: could not record step %d progress: %s", self.run.name, index, e)

    async def finish(self, phase: RunPhase, result: dict[str, Any], steps: Mapping[int, tuple[StepState, str]]) -> None:
        now = self._clock()

        def end(run: PlaybookRun) -> RunStatus | None:
            if not self._ours(run):
                log.warning("run %s is %s now, no longer ours: its end (%s) is in the audit log only", run.name,
                            run.status.phase, phase)  # fmt: skip
                return None
            progress = list(run.status.steps)
            for index, (state, message) in steps.items():
                if 0 <= index < len(progress):
                    progress[index] = _moved(progress[index], state, message, now)
            return run.status.model_copy(update={"phase": phase, "result": result, "steps": tuple(progress)})

        self.run = await self.store.change(self.run.name, end)


def _moved(step: StepProgress, state: StepState, message: str | None, now: datetime) -> StepProgress:
    return step.model_copy(
        update={
            "state": state,
            "message": (message or step.message or "")[:4096] or None,
            "started_at": step.started_at or now,
            "finished_at": now if state in ("Succeeded", "Failed", "Skipped") else None,
        }
    )
