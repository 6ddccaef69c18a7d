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
                  with its buttons (`auto` mode is proposed too: this build does not auto-run)
"""

from __future__ import annotations

import asyncio
import logging

from gpuctl.bot.blocks import Block, Reply, context, esc, notice, section
from gpuctl.bot.commands import Run
from gpuctl.bot.engine_seam import AlertProposal
from gpuctl.bot.run_blocks import (
    audit_reply,
    awaiting_blocks,
    decided_reply,
    ended_reply,
    outcome_reply,
    plan_blocks,
    runs_reply,
)
from gpuctl.errors import GpuctlError, RunRefused
from gpuctl.identity import Identity, Requester
from gpuctl.playbooks.engine import Engine
from gpuctl.playbooks.plan import Plan
from gpuctl.playbooks.runs import PlaybookRun, RunPhase
from gpuctl.sources.kube.reflector import Gone

log = logging.getLogger(__name__)

ENDED: frozenset[RunPhase] = frozenset({"Succeeded", "Failed", "Interrupted", "Cancelled", "Undone", "Denied", "Expired"})
FOLLOW_S = 25 * 60.0  # Slack takes answers on a response_url for 30 minutes
WATCH_S = 60  # one watch request; the follower lists and watches again after it
AUDIT_LIMIT = 25


def _not_submitted(plan: Plan) -> str:
    return "; ".join(plan.blocked) if plan.blocked else "the plan has no steps: nothing to do"


class EngineLink:
    """The EngineSeam with a real engine behind it (see the module docstring)."""

    def __init__(self, engine: Engine, *, follow_s: float = FOLLOW_S) -> None:
        self.engine = engine
        self.follow_s = follow_s
        self._following: set[str] = set()

    async def run(self, requester: Requester, command: Run, *, key: str) -> Reply:
        plan = await self.engine.plan(requester, command.playbook, command.params, key=key)
        if not plan.runnable:
            blocks = [*plan_blocks(plan, run_id=None), section(f"*Not submitted:* {esc(_not_submitted(plan))}")]
            return Reply(text=f"{plan.playbook}: not submitted", blocks=blocks)
        submitted = await self.engine.submit(plan, key=key)
        if submitted.duplicate:
            return notice("Requested already", f"This request made run `{esc(submitted.run_id)}` before "
                          f"(now {esc(submitted.phase)}); nothing new was done.", hint=f"`/gpu audit {submitted.run_id}`")  # fmt: skip
        if submitted.needs_approval:
            text = f"{plan.playbook} by {plan.requester.identity.user}: run {submitted.run_id} awaits approval"
            return Reply(text=text, blocks=awaiting_blocks(submitted), in_channel=True)
        return outcome_reply(await self.engine.execute_submitted(submitted, by=requester), plan)

    async def review(self, approver: Requester, run_id: str, *, approve: bool) -> Reply:
        if approve:
            run = await self.engine.approve(approver, run_id)
        else:
            run = await self.engine.deny(approver, run_id)
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

    async def alert(self, proposal: AlertProposal) -> list[Block]:
        if proposal.run_as is None:
            return [context("Not planned: no alert rule in the gpuctl policy lets alerts start this playbook.")]
        requester = Requester(identity=proposal.run_as, via="alert", detail=f"{proposal.alert} {proposal.key}")
        key = f"alert:{proposal.key}"
        try:
            plan = await self.engine.plan(requester, proposal.playbook, proposal.text, key=key)
            if not plan.runnable:
                return [*plan_blocks(plan, run_id=None), section(f"*Not submitted:* {esc(_not_submitted(plan))}")]
            if not self.engine.catalog.get(plan.playbook).approval.required:
                return [*plan_blocks(plan, run_id=None),
                        context(f"{esc(plan.playbook)} needs no approval: run it with `/gpu run {esc(plan.playbook)} …`")]  # fmt: skip
            submitted = await self.engine.submit(plan, key=key)
        except GpuctlError as e:
            log.info("alert %s (%s): %s not proposed: %s", proposal.alert, proposal.key, proposal.playbook, e)
            return [section(f"Not proposed: {esc(e)}")]
        blocks = awaiting_blocks(submitted) if submitted.phase == "AwaitingApproval" else [
            *plan_blocks(submitted.plan, run_id=submitted.run_id), context(f"run `{esc(submitted.run_id)}` is {esc(submitted.phase)}")
        ]  # fmt: skip
        if proposal.mode == "auto":
            blocks.append(context("auto mode: this build proposes instead of running alert playbooks by itself"))
        return blocks
