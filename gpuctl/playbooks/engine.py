"""The playbook engine: one lifecycle for every front end (CLI, TUI, Slack bot, alert triggers).

    plan(requester, playbook, params, key)   validate parameters, policy pre-check, the logic's
                                             dry run as the requester, sealed into a Plan
    submit(plan, key)                        requested/planned in the audit log; policy for every
                                             scope and RBAC as the requester (authorized/denied);
                                             a PlaybookRun named after the key (a duplicate key
                                             returns the run that exists)
    approve / deny(approver, run)            someone else, allowed by policy and the `approve` verb,
                                             before the approval expires
    execute(run) / execute_submitted(...)    the run's own plan, authorized again, then execution.py
    undo(requester, run)                     the logic's inverse plan, submitted as a new run linked
                                             to the original, through the same path
    recover()                                runs a dead process on this machine left mid-execution
                                             → Interrupted (its audit log's holds)
    interrupt_abandoned(run)                 a Running run whose executor no longer holds its target
                                             Leases (a dead replica's) → Interrupted

A Requester says who asks and through which front end. Writes are made as the
requester: with the connection's own credentials when the requester is who the
connection authenticates as (`gpuctl playbook run` with your kubeconfig), else
through impersonation (the bot, the executor, `--as`). Without the PlaybookRun
CRD, playbooks that need no approval still run locally (the audit log is then
their only record); those that need one say what to install.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, ValidationError

from gpuctl.audit.backend import AuditBackend
from gpuctl.audit.records import AuditEvent, EventKind
from gpuctl.audit.recovery import mark_interrupted
from gpuctl.clock import Clock, utcnow
from gpuctl.errors import Forbidden, LockHeld, NotFound, PolicyDenied, RunRefused
from gpuctl.identity import Identity, Requester
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.authorize import (
    approvers,
    authorize,
    authorize_approval,
    check_plan,
    guardrail_breaches,
    may_plan,
)
from gpuctl.playbooks.execution import Fence, Job, Outcome, Runner, SnapshotSource
from gpuctl.playbooks.kubeapi import KubeApi
from gpuctl.playbooks.loader import Catalog
from gpuctl.playbooks.locks import LeaseLocks
from gpuctl.playbooks.logic import Clients, Draft, PlanRequest, Report
from gpuctl.playbooks.params import Arguments, validate_params
from gpuctl.playbooks.plan import Plan
from gpuctl.playbooks.policy import Policy, decide, may_act_as
from gpuctl.playbooks.registry import Registry
from gpuctl.playbooks.runs import Approval, PlaybookRun, RunPhase, RunStatus, run_name
from gpuctl.playbooks.runstore import (
    UNDO_OF_LABEL,
    ClusterStatus,
    LocalStatus,
    RunStore,
    claimed_by,
    condition,
    holder_of,
    with_condition,
)
from gpuctl.playbooks.spec import Playbook

log = logging.getLogger(__name__)


class Submitted(BaseModel):
    """A run as submitted: where it stands, and who may move it on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    plan: Plan
    phase: RunPhase
    shared: bool  # a PlaybookRun holds it (else: a local run, in the audit log only)
    duplicate: bool = False  # the key was used before: this is that run, nothing new was done
    needs_approval: bool
    approvers: tuple[str, ...] = ()
    undo_of: str | None = None


def seal(draft: Draft, playbook: Playbook, args: Arguments, requester: Requester, now: datetime, generation: int | None) -> Plan:
    """A logic's Draft as a Plan: guardrail breaches become reasons it is blocked; scopes and locks deduplicated."""
    plan = Plan(
        playbook=playbook.name,
        parameters=dict(args),
        requester=requester,
        created_at=now,
        snapshot_generation=generation,
        steps=tuple(draft.steps),
        skipped=tuple(draft.skipped),
        warnings=tuple(draft.warnings),
        blocked=(*draft.blocked, *guardrail_breaches(draft.steps, playbook)),
        dry_run=draft.dry_run,
        scopes=tuple(dict.fromkeys(draft.scopes)),
        locks=tuple(dict.fromkeys(draft.locks)),
    )
    if plan.runnable:
        check_plan(plan, playbook)
    return plan


class Engine:
    def __init__(
        self,
        *,
        api: KubeApi,
        own: Identity,
        catalog: Catalog,
        policy: Policy,
        registry: Registry,
        audit: AuditBackend,
        namespace: str,
        snapshots: SnapshotSource,
        runner: Runner,
        clock: Clock = utcnow,
    ) -> None:
        self.api = api
        self.own = own  # whom the connection authenticates as
        self.catalog = catalog
        self.policy = policy
        self.registry = registry
        self.audit = audit
        self.snapshots = snapshots
        self.runner = runner
        self.store = RunStore(api, namespace, clock=clock)
        self.clock = clock

    # --- helpers ---------------------------------------------------------------------------------

    def acting_as(self, identity: Identity) -> Identity | None:
        """None (own credentials) for the connection's own identity, else the identity to impersonate."""
        return None if identity == self.own else identity

    def acting_client(self, identity: Identity) -> ActingClient:
        """A client that reads and writes as `identity` (own credentials when that is who the connection is)."""
        return ActingClient(self.api, self.acting_as(identity))

    async def _record(self, run_id: str, kind: EventKind, actor: Requester | None, payload: Mapping[str, Any]) -> None:
        await self.audit.append(AuditEvent(run_id=run_id, kind=kind, actor=actor, payload=dict(payload)))

    def check_acting_for(self, caller: Identity, requester: Identity) -> None:
        """PolicyDenied unless `caller` may act for `requester` (--as): the policy's act_as."""
        may_act_as(self.policy, caller, requester).require()

    # --- plan and submit -------------------------------------------------------------------------

    async def plan(self, requester: Requester, playbook_name: str, given: Mapping[str, str], *, key: str) -> Plan:
        """The plan for these parameters, computed as the requester; policy denials are audited under the key's run."""
        playbook = self.catalog.get(playbook_name)
        args = validate_params(playbook, cast("Mapping[object, object]", given))  # checks keys and values itself
        run_id = run_name(playbook.name, key)
        try:
            may_plan(self.policy, requester.identity, playbook, args)
        except PolicyDenied as e:
            await self._denied(run_id, requester, playbook.name, None, e, by="policy")
            raise
        logic = self.registry.logic_for(playbook)
        snapshot = await self.snapshots()
        now = self.clock()
        request = PlanRequest(playbook=playbook, args=args, requester=requester, snapshot=snapshot, now=now)
        clients = Clients(acting=self.acting_client(requester.identity), reader=ActingClient(self.api, None))
        try:
            draft = await logic.plan(request, clients)
        except Forbidden as e:  # a dry run the cluster refused the requester
            await self._denied(run_id, requester, playbook.name, None, e, by="cluster")
            raise
        plan = seal(draft, playbook, args, requester, now, snapshot.generation)
        for scope in plan.scopes:
            decision = decide(self.policy, requester.identity, playbook.name, scope)
            if not decision.allowed:
                denial = PolicyDenied(decision.reason)
                await self._denied(run_id, requester, playbook.name, plan, denial, by="policy")
                raise denial
        return plan

    async def _denied(
        self, run_id: str, actor: Requester, playbook: str, plan: Plan | None, error: Exception, *, by: str
    ) -> None:
        await self._record(run_id, EventKind.REQUESTED, actor, {"playbook": playbook})
        if plan is not None:
            await self._record(run_id, EventKind.PLANNED, actor, plan.model_dump(mode="json"))
        await self._record(run_id, EventKind.DENIED, actor, {"by": by, "reason": str(error)})

    async def submit(self, plan: Plan, *, key: str, undo_of: str | None = None) -> Submitted:
        """Authorize the plan and make it a run (see the module docstring); the run of a used key if there is one."""
        playbook = self.catalog.get(plan.playbook)
        needs_approval = playbook.approval.required
        run_id = run_name(plan.playbook, key)
        shared = await self.store.installed()
        if shared:
            try:
                return self._submitted(await self.store.get(run_id), duplicate=True)
            except NotFound:
                pass
        else:
            if needs_approval:
                await self.store.require(f"{plan.playbook} needs an approval, which")
            if await self.audit.records(run_id=run_id, limit=1):
                raise RunRefused(f"run {run_id} (key {key!r}) is in the audit log already: a duplicate is never run twice")
        if not plan.runnable:
            why = "; ".join(plan.blocked) if plan.blocked else "the plan has no steps: nothing to do"
            raise RunRefused(f"{plan.playbook} is not submitted: {why}")
        actor = plan.requester
        await self._record(run_id, EventKind.REQUESTED, actor, {"playbook": plan.playbook, "parameters": plan.parameters,
                                                                 "idempotency_key": key, "undo_of": undo_of})  # fmt: skip
        await self._record(run_id, EventKind.PLANNED, actor, plan.model_dump(mode="json"))
        try:
            authorization = await authorize(self.policy, playbook, plan, self.acting_client(actor.identity))
        except (PolicyDenied, Forbidden, RunRefused) as e:
            await self._record(run_id, EventKind.DENIED, actor, {"by": _denier(e), "reason": str(e)})
            raise
        await self._record(run_id, EventKind.AUTHORIZED, actor, authorization.model_dump(mode="json"))
        if not shared:
            return Submitted(run_id=run_id, plan=plan, phase="Pending", shared=False, needs_approval=False, undo_of=undo_of)
        phase: RunPhase = "AwaitingApproval" if needs_approval else "Pending"
        try:
            run, created = await self.store.create(plan, key, acting_as=self.acting_as(actor.identity), phase=phase, undo_of=undo_of)
        except Forbidden as e:
            await self._record(run_id, EventKind.DENIED, actor, {"by": "cluster", "reason": str(e)})
            raise
        if not created:  # another process created it between our look and our create
            await self._record(run_id, EventKind.STEP, actor, {"message": "duplicate request: the run existed already"})
        return self._submitted(run, duplicate=not created)

    def _submitted(self, run: PlaybookRun, *, duplicate: bool) -> Submitted:
        plan = self._plan_of(run)
        needs = self.catalog.get(run.spec.playbook).approval.required
        return Submitted(
            run_id=run.name, plan=plan, phase=run.status.phase or "Pending", shared=True, duplicate=duplicate,
            needs_approval=needs, approvers=tuple(approvers(self.policy, plan.playbook, plan.scopes)) if needs else (),
            undo_of=run.labels.get(UNDO_OF_LABEL),
        )  # fmt: skip

    # --- approvals -------------------------------------------------------------------------------

    async def _reviewable(self, name: str) -> tuple[PlaybookRun, Plan, Playbook]:
        await self.store.require("approving or denying a run")
        run = await self.store.get(name)
        playbook = self.catalog.get(run.spec.playbook)
        if not playbook.approval.required:
            raise RunRefused(f"run {name}: {playbook.name} needs no approval")
        return run, self._plan_of(run), playbook

    def _plan_of(self, run: PlaybookRun) -> Plan:
        """The run's own plan; RunRefused if it is not the one its fingerprint and requester say."""
        try:
            plan = Plan.model_validate(run.spec.plan)
        except ValidationError as e:
            raise RunRefused(f"run {run.name}: its plan cannot be read ({e.errors()[0]['msg']})") from e
        if plan.fingerprint != run.spec.plan_fingerprint:
            raise RunRefused(f"run {run.name}: its plan does not hash to its fingerprint {run.spec.plan_fingerprint}")
        if plan.requester.identity != run.spec.requester.requester().identity:
            raise RunRefused(f"run {run.name}: its plan was computed for {plan.requester.identity}, not its requester")
        return plan

    def expires_at(self, run: PlaybookRun, playbook: Playbook) -> datetime:
        return run.created_at + timedelta(seconds=playbook.approval.expires_after)

    async def expire(self, run: PlaybookRun) -> PlaybookRun:
        """AwaitingApproval past its expiry → Expired (audited once)."""
        wrote = False

        def lapse(current: PlaybookRun) -> RunStatus | None:
            nonlocal wrote
            wrote = current.status.phase == "AwaitingApproval"
            return current.status.model_copy(update={"phase": "Expired"}) if wrote else None

        updated = await self.store.change(run.name, lapse)
        if wrote:
            await self._record(run.name, EventKind.EXPIRED, None, {"created_at": run.created_at.isoformat(),
                                                                   "expired_at": self.clock().isoformat()})  # fmt: skip
        return updated

    async def approve(self, approver: Requester, name: str, *, comment: str | None = None) -> PlaybookRun:
        """Record an approval (once: a second approve of an approved run changes nothing)."""
        run, plan, playbook = await self._reviewable(name)
        if run.status.phase == "Approved":
            return run
        await self._check_decidable(run, playbook)
        authorization = await self._authorize_review(approver, run, plan, "approve")
        approval = Approval(
            user=approver.identity.user, groups=approver.identity.groups, via=approver.via, decision="Approved",
            at=self.clock(), comment=comment, plan_fingerprint=plan.fingerprint,
        )  # fmt: skip
        wrote = False

        def record(current: PlaybookRun) -> RunStatus | None:
            nonlocal wrote
            wrote = False
            if current.status.phase == "Approved":
                return None
            if current.status.phase != "AwaitingApproval":
                raise RunRefused(f"run {name} is {current.status.phase} now; it can no longer be approved")
            wrote = True
            return current.status.model_copy(update={"phase": "Approved", "approvals": (*current.status.approvals, approval)})

        updated = await self.store.change(name, record, run=run)
        if wrote:
            await self._record(name, EventKind.APPROVED, approver, {"fingerprint": plan.fingerprint, "comment": comment,
                                                                    **authorization.model_dump(mode="json")})  # fmt: skip
        return updated

    async def deny(self, approver: Requester, name: str, *, reason: str | None = None) -> PlaybookRun:
        """An approver says no (Denied); the requester withdrawing their own run cancels it (Cancelled)."""
        run, plan, playbook = await self._reviewable(name)
        withdrawn = approver.identity.user == plan.requester.identity.user
        if not withdrawn:
            await self._check_decidable(run, playbook)
            await self._authorize_review(approver, run, plan, "deny")
        open_phases = ("AwaitingApproval", "Approved", "Pending") if withdrawn else ("AwaitingApproval",)
        phase: RunPhase = "Cancelled" if withdrawn else "Denied"
        decision = Approval(user=approver.identity.user, groups=approver.identity.groups, via=approver.via,
                            decision="Denied", at=self.clock(), comment=reason, plan_fingerprint=plan.fingerprint)  # fmt: skip

        def record(current: PlaybookRun) -> RunStatus:
            if (current.status.phase or "Pending") not in open_phases:
                raise RunRefused(f"run {name} is {current.status.phase}; it can no longer be denied")
            return current.status.model_copy(update={"phase": phase, "approvals": (*current.status.approvals, decision)})

        updated = await self.store.change(name, record, run=run)
        await self._record(name, EventKind.REJECTED, approver, {"reason": reason, "withdrawn": withdrawn})
        return updated

    async def _check_decidable(self, run: PlaybookRun, playbook: Playbook) -> None:
        if run.status.phase != "AwaitingApproval":
            raise RunRefused(f"run {run.name} is {run.status.phase or 'Pending'}; only a run awaiting approval can be decided")
        if self.clock() >= self.expires_at(run, playbook):
            await self.expire(run)
            raise RunRefused(
                f"run {run.name} expired at {self.expires_at(run, playbook):%Y-%m-%d %H:%M} UTC: approvals lapse after "
                f"{playbook.approval.expires_after / 3600:g} h",
                hint=f"plan and submit it again: gpuctl playbook run {playbook.name} ...",
            )

    async def _authorize_review(self, approver: Requester, run: PlaybookRun, plan: Plan, verb: str) -> Any:
        try:
            return await authorize_approval(self.policy, self.acting_client(approver.identity), approver.identity, run, plan)
        except (PolicyDenied, Forbidden) as e:  # a refused approval is evidence too: recorded, the run unchanged
            await self._record(run.name, EventKind.STEP, approver, {"message": f"{verb} refused", "reason": str(e)})
            raise

    # --- execution -------------------------------------------------------------------------------

    async def execute(self, name: str, *, by: Requester, fence: Fence | None = None) -> Outcome:
        """Execute an approved (or approval-free) PlaybookRun's own plan, as its requester.

        `by` is who carries it out: the requester themselves, someone the policy lets act for them
        (`--as`), or the executor (via "executor": trusted to act for every requester). `fence` (the
        executor's leadership) is checked before the claim and before every write."""
        await self.store.require("executing a run by name")
        run = await self.store.get(name)
        playbook = self.catalog.get(run.spec.playbook)
        plan = self._plan_of(run)
        requester = plan.requester
        if by.via != "executor":
            self.check_acting_for(by.identity, requester.identity)
        ready: tuple[RunPhase, ...] = ("Approved",) if playbook.approval.required else ("Pending", "Approved")
        phase = run.status.phase or "Pending"
        if phase not in ready:
            raise RunRefused(f"run {name} is {phase}: only a run that is {' or '.join(ready)} executes")
        if playbook.approval.required:
            approved = [a for a in run.status.approvals if a.decision == "Approved" and a.user != requester.identity.user]
            if not approved or approved[-1].plan_fingerprint != plan.fingerprint:
                raise RunRefused(f"run {name} has no approval of its plan {plan.fingerprint} by someone other than its requester")
        actor = requester.model_copy(update={"via": by.via, "detail": by.detail if by.via == "executor" else requester.detail})
        await self._reauthorize(run.name, playbook, plan, actor, run=run)
        status = ClusterStatus(self.store, run, plan, ready=ready, clock=self.clock)
        fences = () if fence is None else (fence,)
        outcome = await self._run(run.name, plan, playbook, actor, status, undo_of=run.labels.get(UNDO_OF_LABEL), fences=fences)
        if outcome.ok and run.labels.get(UNDO_OF_LABEL):
            await self._mark_undone(run.labels[UNDO_OF_LABEL])
        return outcome

    async def execute_submitted(self, submitted: Submitted, *, by: Requester) -> Outcome:
        """Execute what `submit` returned: a shared run by name, a local one (no CRD) from its plan."""
        if submitted.shared:
            return await self.execute(submitted.run_id, by=by)
        playbook = self.catalog.get(submitted.plan.playbook)
        actor = submitted.plan.requester.model_copy(update={"via": by.via})
        return await self._run(submitted.run_id, submitted.plan, playbook, actor, LocalStatus(), undo_of=submitted.undo_of)

    async def _reauthorize(self, run_id: str, playbook: Playbook, plan: Plan, actor: Requester, *, run: PlaybookRun) -> None:
        """Policy and RBAC again, right before executing: roles may have changed while the run waited."""
        try:
            await authorize(self.policy, playbook, plan, self.acting_client(plan.requester.identity))
        except (PolicyDenied, Forbidden, RunRefused) as e:
            await self._record(run_id, EventKind.DENIED, actor, {"by": _denier(e), "reason": str(e), "at": "execution"})
            message = f"not executed: {e}"
            await self.store.change(run_id, lambda r: r.status.model_copy(update={"phase": "Failed", "result": {"message": message}}))
            raise

    async def _run(
        self, run_id: str, plan: Plan, playbook: Playbook, actor: Requester, status: Any, *, undo_of: str | None,
        fences: tuple[Fence, ...] = (),
    ) -> Outcome:  # fmt: skip
        logic = self.registry.logic_for(playbook)
        job = Job(
            run_id=run_id, plan=plan, playbook=playbook, logic=logic, actor=actor,
            acting_as=self.acting_as(plan.requester.identity), status=status, undo_of=undo_of, fences=fences,
        )  # fmt: skip
        return await self.runner.run(job)

    async def _mark_undone(self, original: str) -> None:
        def undone(run: PlaybookRun) -> RunStatus | None:
            return run.status.model_copy(update={"phase": "Undone"}) if run.status.phase != "Undone" else None

        try:
            await self.store.change(original, undone)
        except NotFound:
            log.warning("run %s was undone, but its PlaybookRun is gone", original)

    # --- undo ------------------------------------------------------------------------------------

    async def plan_undo(self, requester: Requester, name: str) -> Plan:
        """The inverse of a finished run, planned from its recorded before-state (for `requester` to submit)."""
        plan, report = await self._finished(name)
        playbook = self.catalog.get(plan.playbook)
        if not playbook.reversible:
            raise RunRefused(f"{playbook.name} cannot be undone (its definition says reversible: false)")
        decide(self.policy, requester.identity, playbook.name, None).require()
        draft = self.registry.logic_for(playbook).undo(plan, report)
        if draft is None or not draft.steps:
            raise RunRefused(f"run {name} left nothing to undo")
        return seal(draft, playbook, plan.parameters, requester, self.clock(), None)

    async def undo(self, requester: Requester, name: str, *, key: str | None = None) -> Submitted:
        """Plan the undo of run `name` and submit it as a new run linked to it (key: `undo:<name>`)."""
        return await self.submit(await self.plan_undo(requester, name), key=key or undo_key(name), undo_of=name)

    def revert_due(self, run: PlaybookRun) -> datetime | None:
        """When a Succeeded run's own plan says to undo it (adjust-quota's revert_after), if it does.

        A logic opts in with `revert_at(plan, executed_at) -> datetime | None`; executed_at is when
        the run was claimed for execution."""
        playbook = self.catalog.playbooks.get(run.spec.playbook)
        claimed = next((c.last_transition_time for c in run.status.conditions if c.type == "Executing"), None)
        if run.status.phase != "Succeeded" or playbook is None or claimed is None:
            return None
        revert_at = getattr(self.registry.logic_for(playbook), "revert_at", None)
        return None if revert_at is None else revert_at(self._plan_of(run), claimed)

    async def revert(self, name: str, *, by: Requester) -> Submitted:
        """Submit run `name`'s undo because its approved plan said so, approved by that run's approval.

        The same undo run a person would submit (key `undo:<name>`: never both), planned for the
        original requester; its approval names the original approver and why it needs no new one."""
        run = await self.store.get(name)
        original = self._plan_of(run)
        requester = original.requester.model_copy(update={"via": by.via, "detail": by.detail})
        submitted = await self.submit(await self.plan_undo(requester, name), key=undo_key(name), undo_of=name)
        granted = [a for a in run.status.approvals if a.decision == "Approved"]
        if submitted.duplicate or submitted.phase != "AwaitingApproval" or not granted:
            return submitted
        undo_plan, first = submitted.plan, granted[-1]
        approval = Approval(
            user=first.user, groups=first.groups, via=by.via, decision="Approved", at=self.clock(),
            comment=f"revert planned in run {name}, approved by {first.user} at {first.at:%Y-%m-%d %H:%M} UTC",
            plan_fingerprint=undo_plan.fingerprint,
        )  # fmt: skip

        def approve(current: PlaybookRun) -> RunStatus | None:
            if current.status.phase != "AwaitingApproval":
                return None
            return current.status.model_copy(update={"phase": "Approved", "approvals": (approval,)})

        await self.store.change(submitted.run_id, approve)
        await self._record(submitted.run_id, EventKind.APPROVED, None, {"fingerprint": undo_plan.fingerprint,
                                                                        "revert_of": name, "approved_in_run_by": first.user})  # fmt: skip
        return submitted.model_copy(update={"phase": "Approved"})

    async def _finished(self, name: str) -> tuple[Plan, Report]:
        """A finished run's plan and report: from its PlaybookRun, or (a local run) from the audit log."""
        if await self.store.installed():
            try:
                run = await self.store.get(name)
            except NotFound:
                run = None
            if run is not None:
                if run.status.phase not in ("Succeeded", "Failed") or not run.status.result:
                    raise RunRefused(f"run {name} is {run.status.phase}: only a finished run can be undone")
                return self._plan_of(run), Report.model_validate(run.status.result.get("report") or {})
        records = await self.audit.records(run_id=name)
        planned = next((r for r in records if r.kind is EventKind.PLANNED), None)
        ended = next((r for r in reversed(records) if r.kind in (EventKind.COMPLETED, EventKind.FAILED)), None)
        if planned is None or ended is None or ended.payload.get("report") is None:
            raise RunRefused(f"no finished run {name} in the cluster or in the audit log {self.audit.location}")
        return Plan.model_validate(planned.payload), Report.model_validate(ended.payload["report"])

    # --- reading, recovery -----------------------------------------------------------------------

    async def runs(self) -> Sequence[PlaybookRun]:
        await self.store.require("listing runs")
        return await self.store.list()

    async def recover(self) -> list[str]:
        """Record runs a dead process left mid-execution as interrupted (audit) and Interrupted (their phase).

        A run is this machine's to judge when its audit log holds the dead process's hold (audit/held.py):
        that process took the hold before claiming the run. Never re-executes them: an Interrupted run is
        done; plan again."""
        records = await mark_interrupted(self.audit)
        if records and await self.store.installed():
            for record in records:
                try:
                    await self._interrupt(record.run_id, str(record.payload.get("reason", "interrupted")))
                except NotFound:
                    pass  # a local run, or one deleted since
        return [record.run_id for record in records]

    async def interrupt_abandoned(self, run: PlaybookRun, *, by: Requester | None = None) -> bool:
        """Mark Interrupted a Running run whose executor no longer holds its target Leases; True if this call did.

        Its executor took every target's Lease before claiming the run and holds them until the run's end
        is written, so a Running run with an expired target Lease was left by a process that died (or is
        cut off from the API server). The Leases are taken over first: a holder that is only slow finds
        them gone at its next renewal and stops before its next write. Then the phase moves Running →
        Interrupted (a compare-and-swap: one replica wins) and that one appends `interrupted` to its
        audit log. A run without targets, or one still held, is left alone (False)."""
        holder = claimed_by(run)
        if run.status.phase != "Running" or holder is None or not (plan := self._plan_of(run)).locks:
            return False
        locks = LeaseLocks(self.api, self.store.namespace, holder_of(self.runner.host, f"recover-{run.name}"),
                           duration_s=self.runner.lock_duration_s, clock=self.clock)  # fmt: skip
        async with contextlib.AsyncExitStack() as stack:
            for target in sorted(set(plan.locks), key=str):
                try:
                    await stack.enter_async_context(locks.hold(target))
                except LockHeld:
                    return False  # its executor (or the next run on that target) holds it: not ours to judge
            why = f"its executor {holder} stopped holding its targets' Leases without finishing the run"
            if not await self._interrupt(run.name, why, run=run, holder=holder):
                return False
            payload = {"reason": why, "holder": holder, "steps": [s.wire() for s in run.status.steps]}
            event = AuditEvent(run_id=run.name, kind=EventKind.INTERRUPTED, actor=by, payload=payload)
            if await self.audit.records(run_id=run.name, limit=1):
                await self.audit.append_if_open(event)  # a shared log: not after another process recorded its end
            else:
                await self.audit.append(event)  # a log that never saw the run (each replica with its own)
        return True

    async def _interrupt(self, name: str, why: str, *, run: PlaybookRun | None = None, holder: str | None = None) -> bool:
        """Running → Interrupted (only under `holder`'s claim, when given); True if this call wrote it."""
        now = self.clock()
        wrote = False

        def interrupt(current: PlaybookRun) -> RunStatus | None:
            nonlocal wrote
            wrote = current.status.phase == "Running" and (holder is None or claimed_by(current) == holder)
            if not wrote:
                return None
            status = current.status.model_copy(update={"phase": "Interrupted", "result": {"message": why}})
            return with_condition(status, condition("Executing", "Interrupted", why, now))

        await self.store.change(name, interrupt, run=run)
        return wrote


def undo_key(name: str) -> str:
    """The idempotency key of run `name`'s undo: one undo per run, whoever asks."""
    return f"undo:{name}"


def _denier(error: Exception) -> str:
    return "policy" if isinstance(error, PolicyDenied) else "cluster" if isinstance(error, Forbidden) else "plan"

