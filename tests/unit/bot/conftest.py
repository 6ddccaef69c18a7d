"""A running bot (`--demo` fleet) behind real HTTP, the local Slack Web API stand-in, and signed requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from gpuctl.bot.server import RunningBot, running_bot
from gpuctl.config import Settings
from gpuctl.query.fleet import idle_holders
from gpuctl.sources.demo import DemoSource
from testbed.slack import BOT_TOKEN, FakeSlack, SlackSender
from testbed.waiting import poll

SECRET = "8f14e45fceea167a5a36dedd4bea2543"  # the test signing secret

ALICE = "U0ALICE01"  # mapped by user id: alice (team-a)
BOB = "U0BOB0001"  # mapped by email: bob (team-a)
ONCALL = "U0ONCALL1"  # mapped only through the on-call user group
NOBODY = "U0NOBODY1"  # not mapped
ONCALL_GROUP = "S0ONCALL1"

IDENTITY_MAP = f"""\
users:
  {ALICE}: {{user: alice, groups: [team-a]}}
emails:
  Bob@Example.com: {{user: bob, groups: [team-a]}}
usergroups:
  {ONCALL_GROUP}: [gpu-oncall]
"""

POLICY = """\
roles:
  team-a-operator:
    groups: [team-a]
    run: [reclaim-idle-gpus]
    namespaces: [team-a]
  oncall:
    groups: [gpu-oncall]
    approve: ["*"]
    namespaces: ["*"]
unmapped: none
"""

ALERT_RULES = """\
channel: C0ALERTS1
mention: S0ONCALL1
rules:
  - alert: GpuIdleWhileAllocated
    playbook: reclaim-idle-gpus
    params:
      namespace: [exported_namespace, namespace]
    fixed: {max_pods: "2"}
  - alert: TestGpuHeld
    playbook: reclaim-idle-gpus
    params:
      namespace: namespace
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def bot_settings(folder: Path, slack: FakeSlack, **overrides: Any) -> Settings:
    """Settings for a demo bot talking to `slack`; no GPUCTL_* variable or user config file leaks in."""
    values: dict[str, Any] = {
        "config_file": write(folder, "config.yaml", "{}\n"),
        "demo": True,
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SECRET,
        "slack_api_url": slack.api_url,
        "bot_host": "127.0.0.1",
        "bot_port": 0,
        "slack_identity_map": write(folder, "identities.yaml", IDENTITY_MAP),
        "policy": write(folder, "policy.yaml", POLICY),
        "alert_rules": write(folder, "alert-rules.yaml", ALERT_RULES),
    }
    return Settings(**(values | overrides))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(users={BOB: "bob@example.com", ALICE: "alice@example.com"},
                         usergroups={ONCALL_GROUP: [ONCALL]}) as fake:  # fmt: skip
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bot(slack: FakeSlack, tmp_path_factory) -> AsyncIterator[RunningBot]:
    # No churn: the fleet keeps its pods, so a test can name one and find it in the answer.
    demo = DemoSource(seed=7, tick_s=2.0, churn=False)
    async with running_bot(bot_settings(tmp_path_factory.mktemp("bot"), slack), sources=[demo]) as running:
        await running.cluster.wait_ready(30)
        await running.seam.connected(30)  # type: ignore[attr-defined]  # the demo's engine (a LazyEngine)
        # Answers come from the hub's published picture: wait until it has the demo's idle pods (history in).
        await poll(running.desk.view.current, lambda current: current is not None and bool(idle_holders(current[0])),
                   what="the published picture to show idle pods")  # fmt: skip
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sender(bot: RunningBot, slack: FakeSlack) -> SlackSender:
    return SlackSender(bot.url, SECRET, slack)
