"""The one place the Slack bot meets the playbook engine (gpuctl.playbooks.engine).

The bot never plans, authorizes, approves or executes on its own: `/gpu run`,
`/gpu runs`, `/gpu audit`, the Approve / Deny buttons and alert-triggered
playbooks all call an `EngineSeam`. The bot has already checked the signature,
deduplicated Slack's retries, mapped the Slack user to a Kubernetes identity
(unmapped users never get here for anything but reading) and validated
alert parameters; the engine does the rest as that identity (gpuctl's policy,
then the cluster's RBAC through impersonation) and the seam turns its answers
into Block Kit.

The implementation is `gpuctl.bot.engine_link.EngineLink` over the engine, behind
`gpuctl.bot.lazy_engine.LazyEngine` (which opens it in the background) — against a
cluster, and in `--demo` against the demo's simulated API, the same way.
`gpuctl.bot.server.running_bot` builds it unless given `seam`:

    run(requester, Run, key)     engine.plan(requester, playbook, params, key=key), then
                                 engine.submit(plan, key=key); a reply (in_channel) with the
                                 plan and buttons(run_id) when it awaits approval
    runs(viewer)                 engine.runs(), newest first
    audit(viewer, run_id)        the audit log (gpuctl.audit), rendered
    review(approver, run, yes)   engine.approve / engine.deny as the approver; the clicked
                                 message is replaced by who decided
    follow(run)                  after an approval: the run's end (the executor carries it
                                 out), replacing the message again; None: nothing to wait for
    alert(AlertProposal)         plan as the policy's alert `run_as` and submit: an AlertAnswer
                                 with the plan's blocks, and buttons when it awaits approval;
                                 `auto` within the playbook's hourly budget: `execute` is set
    execute_alert(answer)        an `auto` answer's run, executed as run_as (in the background,
                                 once its post is out); the outcome as a Reply

A seam whose engine is not connected yet (`gpuctl.bot.lazy_engine`) raises
EngineUnavailable: the desk answers with it, the alert desk answers 503 so
Alertmanager sends the alert again later.

`key` is the idempotency key the engine names the PlaybookRun after: built
from Slack's trigger_id (a retried request carries the same one) or the
alert episode, so a duplicate can never start a second run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from gpuctl.bot.blocks import Block, Reply, actions, button
from gpuctl.bot.commands import Run
from gpuctl.errors import GpuctlError
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
    text: Mapping[str, str]  # the same parameters as given (text): what the engine validates again when planning
    mode: Literal["propose", "auto"]
    run_as: Identity | None  # the policy's alert rule for the playbook (None: the policy lets no alert start it)
    max_runs_per_hour: int = 0  # the policy's hourly budget of auto runs for the playbook (0: none)

    @property
    def requester(self) -> Requester:
        """Who an alert's run is requested and executed as: run_as, via the alert (name and episode in detail)."""
        assert self.run_as is not None
        return Requester(identity=self.run_as, via="alert", detail=f"{self.alert} {self.key}")


@dataclass(frozen=True)
class AlertAnswer:
    """What the seam made of an alert: blocks for its post and, for an auto run, the run to execute."""

    blocks: list[Block]
    run_id: str | None = None  # a run submitted for this episode
    execute: bool = False  # auto within budget: the alert desk executes run_id once the post is out


class EngineUnavailable(GpuctlError):
    """The playbook engine is not connected (yet): the message says why and when it is tried again."""


class EngineSeam(Protocol):
    async def run(self, requester: Requester, command: Run, *, key: str) -> Reply: ...

    async def runs(self, viewer: Identity) -> Reply: ...

    async def audit(self, viewer: Identity, run_id: str | None) -> Reply: ...

    async def review(self, approver: Requester, run_id: str, *, approve: bool) -> Reply: ...

    async def follow(self, run_id: str) -> Reply | None: ...

    async def alert(self, proposal: AlertProposal) -> AlertAnswer: ...

    async def execute_alert(self, proposal: AlertProposal, run_id: str) -> Reply: ...
