"""The one place the Slack bot meets the playbook engine (gpuctl.playbooks.engine).

The bot never plans, authorizes, approves or executes on its own: `/gpu run`,
`/gpu runs`, `/gpu audit`, the Approve / Deny buttons and alert-triggered
playbooks all call an `EngineSeam`. The bot has already checked the signature,
deduplicated Slack's retries, mapped the Slack user to a Kubernetes identity
(unmapped users never get here for anything but reading) and validated
alert parameters; the engine does the rest as that identity (gpuctl's policy,
then the cluster's RBAC through impersonation) and the seam turns its answers
into Block Kit.

`NoEngine` is this build's implementation: the engine is not on main yet, so
every call answers that playbooks are not available in this build. The engine
plugs in as another implementation, passed as `seam` to
`gpuctl.bot.server.running_bot` (which uses NoEngine when given none):

    run(requester, Run, key)     engine.plan(requester, playbook, params, key=key), then
                                 engine.submit(plan, key=key); a reply (in_channel) with the
                                 plan and buttons(run_id) when it awaits approval
    runs(viewer)                 engine.runs(), newest first
    audit(viewer, run_id)        the audit log (gpuctl.audit), rendered
    review(approver, run, yes)   engine.approve / engine.deny as the approver, then execute
                                 and post progress and the verified result in the thread
    alert(AlertProposal)         propose: plan as the policy's alert `run_as` and return the
                                 plan's blocks with buttons; auto: submit and run within the
                                 policy's max_runs_per_hour, else fall back to propose

`key` is the idempotency key the engine names the PlaybookRun after: built
from Slack's trigger_id (a retried request carries the same one) or the
alert episode, so a duplicate can never start a second run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from gpuctl.bot.blocks import Block, Reply, actions, button, context, esc, notice
from gpuctl.bot.commands import Run
from gpuctl.identity import Identity, Requester
from gpuctl.playbooks.spec import ParamValue

APPROVE_ACTION = "gpuctl_approve"
DENY_ACTION = "gpuctl_deny"


def review_buttons(run_id: str) -> Block:
    """Approve / Deny for a run awaiting approval; the button's value is the run id."""
    return actions(
        button("Approve", APPROVE_ACTION, run_id, style="primary"),
        button("Deny", DENY_ACTION, run_id, style="danger"),
    )


@dataclass(frozen=True)
class AlertProposal:
    """An alert episode matched to a playbook, its parameters already validated against the playbook."""

    key: str  # the episode: fingerprint + startsAt
    alert: str  # alertname
    playbook: str
    arguments: Mapping[str, ParamValue | None]
    mode: Literal["propose", "auto"]
    run_as: Identity | None  # the policy's alert rule for the playbook (None: the policy lets no alert start it)


class EngineSeam(Protocol):
    async def run(self, requester: Requester, command: Run, *, key: str) -> Reply: ...

    async def runs(self, viewer: Identity) -> Reply: ...

    async def audit(self, viewer: Identity, run_id: str | None) -> Reply: ...

    async def review(self, approver: Requester, run_id: str, *, approve: bool) -> Reply: ...

    async def alert(self, proposal: AlertProposal) -> list[Block]: ...


UNAVAILABLE = "Playbook runs are not available yet in this build"
_WHY = "this gpuctl build has no playbook engine, so nothing can be planned, approved, run or audited from Slack yet"


class NoEngine:
    """The seam without an engine: specific, harmless answers; nothing is planned or run."""

    async def run(self, requester: Requester, command: Run, *, key: str) -> Reply:
        return notice(UNAVAILABLE, f"`/gpu run {esc(command.playbook)}`: {_WHY}.", hint="`/gpu help` lists what works now")

    async def runs(self, viewer: Identity) -> Reply:
        return notice(UNAVAILABLE, f"`/gpu runs`: {_WHY}.")

    async def audit(self, viewer: Identity, run_id: str | None) -> Reply:
        return notice(UNAVAILABLE, f"`/gpu audit`: {_WHY}.")

    async def review(self, approver: Requester, run_id: str, *, approve: bool) -> Reply:
        return notice(UNAVAILABLE, f"Run {esc(run_id)} was not {'approved' if approve else 'denied'}: {_WHY}.")

    async def alert(self, proposal: AlertProposal) -> list[Block]:
        return [context(f"Not planned: {_WHY}.")]
