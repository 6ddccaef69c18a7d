"""`EngineLink`: the bot's EngineSeam over the playbook engine (gpuctl.playbooks.engine).

Everything is the engine's to decide; this turns its answers into Block Kit:

    /gpu run      engine.plan as the mapped user, engine.submit under the request's key (Slack's
                  trigger_id: a retried request finds the run it made, never makes a second); a run
                  awaiting approval is posted with its plan and Approve / Deny, one that needs no
                  approval is executed at once as the requester and answered with its outcome
    Approve/Deny  engine.approve / engine.deny as the clicker (the engine refuses the requester,
                  anyone the policy does not let approve, and RBAC's `approve` verb decides too);
                  approving an approved run changes nothing, so a double click approves once
    follow        after an approval: wait for the run to end (the executor carries it out) and
                  answer with the result; one follower per run in this process
    /gpu runs     the PlaybookRuns, newest first; /gpu audit [RUN] the audit log
    alerts        plan as the policy's alert `run_as` under the episode's key and submit: posted
                  with its buttons. `auto` mode (the policy's `alerts:` entry lets alerts start the
                  playbook): a playbook that needs no approval is submitted under `auto:<episode>`
                  and executed as run_as once its post is out, if fewer than the entry's
                  max_runs_per_hour auto runs of that playbook were started in the last hour (counted
                  from the PlaybookRuns, so a restart or a second replica counts them too); past
                  the budget, or for a playbook that needs approval (approval rules still apply),
                  it is proposed instead, with a line saying why
    metrics       every outcome counted in gpuctl_bot_runs_total{source, outcome}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from gpuctl.bot.blocks import Reply, context, esc, notice, section
from gpuctl.bot.commands import Run
from gpuctl.bot.engine_seam import AlertAnswer, AlertProposal
from gpuctl.bot.metrics import Counter
from gpuctl.bot.run_blocks import (
    audit_reply,
    awaiting_blocks,
    decided_reply,
    ended_reply,
    outcome_reply,
    plan_blocks,
    runs_reply,
)
from gpuctl.errors import Forbidden, GpuctlError, LockHeld, NotFound, PolicyDenied, RunRefused
from gpuctl.identity import Identity, Requester
from gpuctl.playbooks.engine import Engine
from gpuctl.playbooks.plan import Plan
from gpuctl.playbooks.runs import PlaybookRun, RunPhase, run_name
from gpuctl.sources.kube.reflector import Gone

log = logging.getLogger(__name__)

ENDED: frozenset[RunPhase] = frozenset({"Succeeded", "Failed", "Interrupted", "Cancelled", "Undone", "Denied", "Expired"})
FOLLOW_S = 25 * 60.0  # Slack takes answers on a response_url for 30 minutes
WATCH_S = 60  # one watch request; the follower lists and watches again after it
AUDIT_LIMIT = 25
AUTO_PREFIX = "auto:"  # idempotency keys of runs an alert started on its own (the hourly budget counts them)
BUDGET_WINDOW = timedelta(hours=1)


def _not_submitted(plan: Plan) -> str:
    return "; ".join(plan.blocked) if plan.blocked else "the plan has no steps: nothing to do"


def _error_outcome(error: GpuctlError) -> str:
    if isinstance(error, PolicyDenied | Forbidden):
        return "denied"
    if isinstance(error, RunRefused | LockHeld):
        return "refused"
    return "error"


def _phase_outcome(phase: str) -> str:
    return {"AwaitingApproval": "awaiting_approval", "Denied": "rejected"}.get(phase, phase.lower())


class EngineLink:
    """The EngineSeam with a real engine behind it (see the module docstring)."""

    def __init__(self, engine: Engine, *, runs: Counter, follow_s: float = FOLLOW_S) -> None:
        self.engine = engine
        self.follow_s = follow_s
        self.counted = runs  # BotMetrics.runs: by source and outcome
        self._following: set[str] = set()
        self._budgets: dict[str, asyncio.Lock] = {}  # per playbook: one budget check-and-submit at a time

    def _count(self, source: str, outcome: str) -> None:
        self.counted.inc(source=source, outcome=outcome)

    @contextlib.contextmanager
    def _counting(self, source: str) -> Iterator[None]:
        """Count an engine error under `source` (denied, refused, error) and let it through."""
        try:
            yield
        except GpuctlError as e:
            self._count(source, _error_outcome(e))
            raise

    async def run(self, requester: Requester, command: Run, *, key: str) -> Reply:
        with self._counting("slack"):
            plan = await self.engine.plan(requester, command.playbook, command.params, key=key)
            if not plan.runnable:
                self._count("slack", "refused")
                blocks = [*plan_blocks(plan, run_id=None), section(f"*Not submitted:* {esc(_not_submitted(plan))}")]
                return Reply(text=f"{plan.playbook}: not submitted", blocks=blocks)
            submitted = await self.engine.submit(plan, key=key)
            if submitted.duplicate:
                self._count("slack", "duplicate")
                return notice("Requested already", f"This request made run `{esc(submitted.run_id)}` before "
                              f"(now {esc(submitted.phase)}); nothing new was done.", hint=f"`/gpu audit {submitted.run_id}`")  # fmt: skip
            if submitted.needs_approval:
                self._count("slack", "awaiting_approval")
                text = f"{plan.playbook} by {plan.requester.identity.user}: run {submitted.run_id} awaits approval"
                return Reply(text=text, blocks=awaiting_blocks(submitted), in_channel=True)
            outcome = await self.engine.execute_submitted(submitted, by=requester)
        self._count("slack", _phase_outcome(outcome.phase))
        return outcome_reply(outcome, plan)

    async def review(self, approver: Requester, run_id: str, *, approve: bool) -> Reply:
        with self._counting("approval"):
            if approve:
                run = await self.engine.approve(approver, run_id)
            else:
                run = await self.engine.deny(approver, run_id)
        self._count("approval", _phase_outcome(run.status.phase or "Pending"))
        # The engine checked the plan against its fingerprint before deciding.
        return decided_reply(run, Plan.model_validate(run.spec.plan))

    async def follow(self, run_id: str) -> Reply | None:
        """The run's end once it comes (within follow_s); None when this process follows it already."""
        if run_id in self._following:
            return None
        self._following.add(run_id)
        try:
            async with asyncio.timeout(self.follow_s):
                run = await self._ended(run_id)
        except TimeoutError:
            return notice("Still running", f"Run `{esc(run_id)}` has not ended yet.", hint=f"`/gpu runs`, `/gpu audit {run_id}`")
        finally:
            self._following.discard(run_id)
        self._count("approval", _phase_outcome(run.status.phase or "Pending"))
        return ended_reply(run, Plan.model_validate(run.spec.plan))

    async def _ended(self, name: str) -> PlaybookRun:
        runs = self.engine.store.runs
        while True:
            listed = await runs.list()
            run = next((r for r in listed.runs if r.name == name), None)
            if run is None:
                raise RunRefused(f"run {name} was deleted before it ended")
            if run.status.phase in ENDED:
                return run
            try:
                async with runs.watch(listed.resource_version, timeout_s=WATCH_S) as events:
                    async for event in events:
                        if event.run is not None and event.run.name == name and event.run.status.phase in ENDED:
                            return event.run
            except Gone:
                continue  # too old to watch from: list again

    async def runs(self, viewer: Identity) -> Reply:
        return runs_reply(await self.engine.runs(), self.engine.clock())

    async def audit(self, viewer: Identity, run_id: str | None) -> Reply:
        newest = await self.engine.audit.records(run_id=run_id, limit=AUDIT_LIMIT + 1, newest_first=True)
        return audit_reply(newest[:AUDIT_LIMIT][::-1], run_id, more=len(newest) > AUDIT_LIMIT)

    async def alert(self, proposal: AlertProposal) -> AlertAnswer:
        if proposal.run_as is None:
            return AlertAnswer([context("Not planned: no alert rule in the gpuctl policy lets alerts start this playbook.")])
        requester = proposal.requester
        try:
            with self._counting("alert"):
                if proposal.mode == "auto":
                    why_not = await self._why_not_auto(proposal)
                    if why_not is None:
                        return await self._auto(proposal)
                    self._count("auto", "proposed")
                    answer = await self._propose(proposal)
                    return AlertAnswer([*answer.blocks, context(f"auto mode: proposed instead, {esc(why_not)}")], answer.run_id)
                return await self._propose(proposal)
        except GpuctlError as e:
            log.info("alert %s (%s): %s not proposed as %s: %s", proposal.alert, proposal.key, proposal.playbook,
                     requester.identity, e)  # fmt: skip
            return AlertAnswer([section(f"Not proposed: {esc(e)}")])

    async def _propose(self, proposal: AlertProposal) -> AlertAnswer:
        key = f"alert:{proposal.key}"
        plan = await self.engine.plan(proposal.requester, proposal.playbook, proposal.text, key=key)
        if not plan.runnable:
            self._count("alert", "refused")
            return AlertAnswer([*plan_blocks(plan, run_id=None), section(f"*Not submitted:* {esc(_not_submitted(plan))}")])
        if not self.engine.catalog.get(plan.playbook).approval.required:
            self._count("alert", "proposed")
            command = " ".join([plan.playbook, *(f"{k}={v}" for k, v in proposal.text.items())])
            return AlertAnswer([*plan_blocks(plan, run_id=None),
                                context(f"{esc(plan.playbook)} needs no approval: run it with `/gpu run {esc(command)}`")])  # fmt: skip
        submitted = await self.engine.submit(plan, key=key)
        self._count("alert", "duplicate" if submitted.duplicate else _phase_outcome(submitted.phase))
        if submitted.phase == "AwaitingApproval":
            return AlertAnswer(awaiting_blocks(submitted), submitted.run_id)
        blocks = [*plan_blocks(submitted.plan, run_id=submitted.run_id), context(f"run `{esc(submitted.run_id)}` is {esc(submitted.phase)}")]
        return AlertAnswer(blocks, submitted.run_id)

    async def _why_not_auto(self, proposal: AlertProposal) -> str | None:
        """None when the policy lets this alert run on its own now; else why it is proposed instead."""
        if self.engine.catalog.get(proposal.playbook).approval.required:
            return f"{proposal.playbook} needs approval (its definition says so; alerts never skip it)"
        if proposal.max_runs_per_hour < 1:
            return f"the gpuctl policy gives {proposal.playbook} no auto runs per hour"
        return None

    async def _auto(self, proposal: AlertProposal) -> AlertAnswer:
        """Plan and submit an auto run under the episode's key, within the playbook's hourly budget."""
        key = f"{AUTO_PREFIX}{proposal.key}"
        run_id = run_name(proposal.playbook, key)
        async with self._budgets.setdefault(proposal.playbook, asyncio.Lock()):
            existing = await self._existing(run_id)
            # This episode submitted its run before (a restart, another replica): never a second one. Still
            # Pending (its post failed before it ran), it is executed now: its claim lets only one process run it.
            if existing is not None:
                self._count("auto", "duplicate")
                return AlertAnswer([*plan_blocks(Plan.model_validate(existing.spec.plan), run_id=run_id),
                                    context(f"auto: this episode started run `{esc(run_id)}` before (now "
                                            f"{esc(existing.status.phase or 'Pending')}); nothing new was done")],
                                   run_id, execute=existing.status.phase in (None, "Pending"))  # fmt: skip
            spent = await self._spent(proposal.playbook)
            if len(spent) >= proposal.max_runs_per_hour:
                self._count("auto", "over_budget")
                again = min(spent) + BUDGET_WINDOW
                why = (f"the hourly budget is spent: {len(spent)} of {proposal.max_runs_per_hour} auto runs of "
                       f"{proposal.playbook} started in the last hour (the policy's max_runs_per_hour); the next may "
                       f"start at {again:%H:%M} UTC")  # fmt: skip
                answer = await self._propose(proposal)
                return AlertAnswer([*answer.blocks, context(f":hourglass: auto mode: proposed instead, {esc(why)}")], answer.run_id)
            plan = await self.engine.plan(proposal.requester, proposal.playbook, proposal.text, key=key)
            if not plan.runnable:
                self._count("auto", "refused")
                return AlertAnswer([*plan_blocks(plan, run_id=None), section(f"*Not submitted:* {esc(_not_submitted(plan))}")])
            submitted = await self.engine.submit(plan, key=key)
        self._count("auto", "started")
        used = len(spent) + 1
        note = (f":robot_face: auto: running now as {esc(proposal.requester.identity)} "
                f"(auto run {used} of {proposal.max_runs_per_hour} this hour for {esc(proposal.playbook)})")  # fmt: skip
        return AlertAnswer([*plan_blocks(submitted.plan, run_id=submitted.run_id), context(note)], submitted.run_id,
                           execute=not submitted.duplicate)  # fmt: skip

    async def _existing(self, run_id: str) -> PlaybookRun | None:
        await self.engine.store.require("alert auto runs (the hourly budget counts PlaybookRuns)")
        try:
            return await self.engine.store.get(run_id)
        except NotFound:
            return None

    async def _spent(self, playbook: str) -> list[datetime]:
        """When each auto run of `playbook` in the last hour was created (the budget's count)."""
        since = self.engine.clock() - BUDGET_WINDOW
        return sorted(
            run.created_at for run in await self.engine.runs()
            if run.spec.playbook == playbook and (run.spec.idempotency_key or "").startswith(AUTO_PREFIX)
            and run.created_at >= since
        )  # fmt: skip

    async def execute_alert(self, proposal: AlertProposal, run_id: str) -> Reply:
        """An auto run executed as its requester (run_as, via alert); its outcome, verified."""
        with self._counting("auto"):
            outcome = await self.engine.execute(run_id, by=proposal.requester)
        self._count("auto", _phase_outcome(outcome.phase))
        run = await self.engine.store.get(run_id)
        return outcome_reply(outcome, Plan.model_validate(run.spec.plan))
