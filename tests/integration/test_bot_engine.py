"""The Slack bot over the real playbook engine on the test bed: `/gpu run`, Approve / Deny, runs, audit.

`gpuctl bot serve`'s wiring (running_bot, not --demo) against the real API server as gpuctl-operator,
impersonating the Slack users it maps; Slack is testbed.slack's stand-in, every request to the bot
signed. The engine's helpers and fixtures are test_engine.py's (engine_support, the integration
conftest); the playbook is gpuctl's own adjust-quota.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from gpuctl.bot.desk import Asker
from gpuctl.bot.engine_link import EngineLink
from gpuctl.bot.engine_seam import APPROVE_ACTION, DENY_ACTION, AlertProposal
from gpuctl.bot.lazy_engine import LazyEngine
from gpuctl.bot.server import RunningBot, running_bot
from gpuctl.identity import Identity, Requester
from gpuctl.playbooks.runs import run_name
from testbed.controlplane import OPERATOR, ControlPlane
from testbed.kube import RestClient
from testbed.slack import TEAM_ID, FakeSlack, SlackSender, blocks_text
from testbed.waiting import poll
from tests.integration.engine_support import (
    APPROVED,
    audit_intact,
    hard,
    kinds,
    records,
    team_namespace,
    write_playbooks,
    write_policy,
)
from tests.unit.bot.conftest import SECRET, bot_settings, write

pytestmark = pytest.mark.testbed

SLACK_A = "U0USERA01"  # user-a (team-a): may run adjust-quota in eng-a-*
SLACK_B = "U0USERB01"  # user-b (team-b): may approve it there
IDENTITY_MAP = f"""\
users:
  {SLACK_A}: {{user: user-a, groups: [team-a]}}
  {SLACK_B}: {{user: user-b, groups: [team-b]}}
"""


@dataclass
class Bed:
    bot: RunningBot
    engine: Any  # gpuctl.playbooks.engine.Engine
    slack: FakeSlack
    sender: SlackSender
    folder: Path


@pytest_asyncio.fixture(loop_scope="session")
async def bed(control_plane: ControlPlane, engine_home: str, tmp_path: Path) -> AsyncIterator[Bed]:
    async with FakeSlack() as slack:
        (bot_files := tmp_path / "bot").mkdir()  # bot_settings' own files; the engine's (policy, audit log) in tmp_path
        settings = bot_settings(
            bot_files, slack, demo=False, kubeconfig=control_plane.kubeconfig(OPERATOR), alert_rules=None,
            policy=write_policy(tmp_path), playbooks_dir=write_playbooks(tmp_path), audit=str(tmp_path / "audit.sqlite"),
            gpuctl_namespace=engine_home, slack_identity_map=write(tmp_path, "slack-users.yaml", IDENTITY_MAP),
        )  # fmt: skip
        async with running_bot(settings) as bot:
            await bot.cluster.wait_ready(60)
            assert isinstance(bot.seam, LazyEngine)  # not --demo: the real engine, opened in the background
            link = await bot.seam.connected(60)
            assert isinstance(link, EngineLink)
            yield Bed(bot, link.engine, slack, SlackSender(bot.url, SECRET, slack), tmp_path)


async def ask(bed: Bed, text: str, user: str) -> dict[str, Any]:
    sent = await bed.sender.command(text, user_id=user)
    assert sent.status == 200, sent.body
    return await bed.slack.wait_for_response(sent.response_id)


def buttons(message: dict[str, Any]) -> dict[str, str]:
    return {e["action_id"]: e["value"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]}


async def test_run_approved_in_slack_by_someone_else_changes_the_quota_once(admin: RestClient, bed: Bed) -> None:
    team_a = await team_namespace(admin, bed.engine, "a")
    text = f"run {APPROVED} namespace={team_a} quota=8"
    sent = await bed.sender.command(text, user_id=SLACK_A)
    assert sent.status == 200, sent.body
    key = f"slack:{TEAM_ID}:{sent.trigger_id}"
    run = run_name(APPROVED, key)

    # The plan is posted to the channel with its buttons: target, before → after, GPUs, fingerprint.
    posted = await bed.slack.wait_for_response(sent.response_id)
    shown = blocks_text(posted)
    assert posted["response_type"] == "in_channel"
    assert f"ResourceQuota/{team_a}/gpus-0" in shown and "4 → 8" in shown and "user-a (team-a) via slack" in shown
    assert "Awaiting approval" in shown and "role team-b-approver (group team-b)" in shown
    plan = (await bed.engine.store.get(run)).spec.plan_fingerprint
    assert f"fingerprint `{plan}`" in shown
    assert buttons(posted) == {APPROVE_ACTION: run, DENY_ACTION: run}

    # Slack retries the command (same trigger_id): answered, nothing new; the engine also finds the run by key.
    retry = await bed.sender.command(text, user_id=SLACK_A, trigger_id=sent.trigger_id,
                                     headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})  # fmt: skip
    assert retry.status == 200
    again = await bed.bot.desk.command(Asker(SLACK_A, TEAM_ID), text, key=key)
    assert "Requested already" in blocks_text(again.reply.message()) and run in blocks_text(again.reply.message())
    assert [r.name for r in await bed.engine.runs() if r.spec.idempotency_key == key] == [run]

    # The requester's own click is refused, to them alone; the plan message stays.
    own = await bed.sender.click(APPROVE_ACTION, run, user_id=SLACK_A)
    refused = await bed.slack.wait_for_response(own.response_id)
    assert "user-a may not approve their own run of adjust-quota" in blocks_text(refused)
    assert refused["replace_original"] is False and refused["response_type"] == "ephemeral"
    assert (await bed.engine.store.get(run)).status.phase == "AwaitingApproval"

    # user-b approves (twice: a double click): the message shows who approved; one approval is recorded.
    click = await bed.sender.click(APPROVE_ACTION, run, user_id=SLACK_B)
    double = await bed.sender.click(APPROVE_ACTION, run, user_id=SLACK_B)
    approved = await bed.slack.wait_for_response(click.response_id)
    assert approved["replace_original"] is True and not buttons(approved)
    assert "*Approved*: approved by user-b" in blocks_text(approved)
    assert "Approved" in blocks_text(await bed.slack.wait_for_response(double.response_id))
    assert [a.user for a in (await bed.engine.store.get(run)).status.approvals] == ["user-b"]

    # The executor carries it out as user-a; the approved message then shows the verified result.
    executor = Requester(identity=bed.engine.own, via="executor", detail="test-executor")
    outcome = await bed.engine.execute(run, by=executor)
    assert outcome.ok, outcome.message
    assert await hard(admin, team_a) == "8"
    answers = await poll(lambda: [r for r in bed.slack.responses(click.response_id) + bed.slack.responses(double.response_id)
                                  if "Succeeded" in blocks_text(r)], what="the result in Slack")  # fmt: skip
    assert len(answers) == 1  # one follower per run, however many clicks
    result = blocks_text(answers[0])
    assert answers[0]["replace_original"] is True and "approved by user-b" in result and f"/gpu audit {run}" in result

    # /gpu runs and /gpu audit RUN read the engine's run store and the audit log.
    listed = blocks_text(await ask(bed, "runs", SLACK_B))
    assert any(run in line and "Succeeded" in line and "user-a" in line for line in listed.splitlines())
    audit = blocks_text(await ask(bed, f"audit {run}", SLACK_B))
    assert "approved" in audit and "user-b (team-b) via slack" in audit and "completed" in audit

    found = await records(bed.folder, run)
    assert kinds(found).count("approved") == 1 and kinds(found).count("requested") == 1
    assert next(r for r in found if r.kind.value == "approved").actor.identity.user == "user-b"  # type: ignore[union-attr]
    assert kinds(found)[-1] == "completed"
    await audit_intact(bed.folder)


async def test_denied_in_slack_never_runs(admin: RestClient, bed: Bed) -> None:
    team_a = await team_namespace(admin, bed.engine, "a")
    posted = await ask(bed, f"run {APPROVED} namespace={team_a} quota=9", SLACK_A)
    run = buttons(posted)[DENY_ACTION]
    click = await bed.sender.click(DENY_ACTION, run, user_id=SLACK_B)
    denied = await bed.slack.wait_for_response(click.response_id)
    assert denied["replace_original"] is True and "*Denied*: denied by user-b" in blocks_text(denied)
    assert (await bed.engine.store.get(run)).status.phase == "Denied"
    late = await bed.sender.click(APPROVE_ACTION, run, user_id=SLACK_B)
    assert f"run {run} is Denied; only a run awaiting approval can be decided" in blocks_text(
        await bed.slack.wait_for_response(late.response_id)
    )
    assert await hard(admin, team_a) == "4"
    await audit_intact(bed.folder)


async def test_an_alert_proposal_is_planned_as_run_as_and_posted_with_buttons_once(admin: RestClient, bed: Bed) -> None:
    team_a = await team_namespace(admin, bed.engine, "a")
    proposal = AlertProposal(
        key=f"f00d@2026-11-30T10:00:00Z/{team_a}", alert="GpuQuotaTight", playbook=APPROVED,
        arguments={"namespace": team_a, "quota": 6}, text={"namespace": team_a, "quota": "6"}, mode="propose",
        run_as=Identity(user="user-a", groups=("team-a",)),
    )  # fmt: skip
    first, repeat = await bed.bot.seam.alert(proposal), await bed.bot.seam.alert(proposal)
    run = run_name(APPROVED, f"alert:{proposal.key}")
    shown = blocks_text({"blocks": first.blocks})
    assert "user-a (team-a) via alert" in shown and "4 → 6" in shown and "Awaiting approval" in shown
    assert buttons({"blocks": first.blocks}) == buttons({"blocks": repeat.blocks}) == {APPROVE_ACTION: run, DENY_ACTION: run}
    assert first.run_id == repeat.run_id == run and not first.execute
    assert [r.name for r in await bed.engine.runs() if r.spec.idempotency_key == f"alert:{proposal.key}"] == [run]
    assert kinds(await records(bed.folder, run)).count("requested") == 1
