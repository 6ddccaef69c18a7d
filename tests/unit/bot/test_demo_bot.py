"""`gpuctl bot serve --demo` runs playbooks: the real engine on the demo's simulated API, the demo fleet follows.

No policy setting: the demo's own policy (gpuctl/sim/demo-policy.yaml) applies to the bot as to its
engine. Slack users are mapped to the demo's identities; Slack is testbed.slack's stand-in, every
request signed. The demo's simulated API is the product under test here (test_demo_engine.py runs
every playbook on it); the same flows against the real API server are tests/integration/test_bot_*."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from gpuctl.bot.lazy_engine import LazyEngine
from gpuctl.bot.server import RunningBot, running_bot
from gpuctl.sources.demo import DemoSource
from testbed.slack import FakeSlack, SlackSender, blocks_text
from testbed.waiting import poll
from tests.unit.bot.conftest import ALICE, SECRET, bot_settings, write
from tests.unit.bot.test_server import alert, payload, post_alerts

DEMO_IDS = f"""\
users:
  {ALICE}: {{user: demo-user, groups: ["demo:sre"]}}
"""
AUTO_RULES = """\
channel: C0ALERTS1
rules:
  - alert: GpuIdleWhileAllocated
    playbook: reclaim-idle-gpus
    params: {namespace: [exported_namespace, namespace]}
    fixed: {mode: immediate, idle_for: 30m}
    mode: auto
"""


@pytest_asyncio.fixture(loop_scope="session")
async def demo_bot(slack: FakeSlack, tmp_path: Path) -> AsyncIterator[RunningBot]:
    settings = bot_settings(tmp_path, slack, policy=None, slack_identity_map=write(tmp_path, "demo-ids.yaml", DEMO_IDS),
                            alert_rules=write(tmp_path, "auto-rules.yaml", AUTO_RULES), audit=str(tmp_path / "audit.sqlite"))  # fmt: skip
    async with running_bot(settings, sources=[DemoSource(seed=7, tick_s=1.0, churn=False)]) as bot:
        await bot.cluster.wait_ready(30)
        assert isinstance(bot.seam, LazyEngine)
        await bot.seam.connected(30)
        yield bot


def pods(bot: RunningBot) -> set[str]:
    return {p.key for p in bot.cluster.snapshot().pods}


async def test_a_slack_run_evicts_the_demo_fleets_idle_pod(demo_bot: RunningBot, slack: FakeSlack) -> None:
    assert "sandbox/jupyter-alice" in pods(demo_bot)
    sender = SlackSender(demo_bot.url, SECRET, slack)
    sent = await sender.command("run reclaim-idle-gpus namespace=sandbox mode=immediate", user_id=ALICE)
    assert (sent.status, sent.body) == (200, "")
    done = blocks_text(await slack.wait_for_response(sent.response_id, timeout_s=120))
    assert "Pod/sandbox/jupyter-alice" in done and "*Succeeded*" in done and "demo-user (demo:sre) via slack" in done
    await poll(lambda: pods(demo_bot), lambda now: "sandbox/jupyter-alice" not in now, what="the pod gone from the demo")
    listed = await sender.command("runs", user_id=ALICE)
    assert "Succeeded" in blocks_text(await slack.wait_for_response(listed.response_id))
    assert demo_bot.metrics.runs.get(source="slack", outcome="succeeded") == 1


async def test_an_alert_in_auto_mode_reclaims_in_the_demo(demo_bot: RunningBot, slack: FakeSlack) -> None:
    idle = {"team-a/reranker-tksf492r4t-9562g", "team-a/reranker-tksf492r4t-vm5jk"}
    assert idle <= pods(demo_bot)
    assert (await post_alerts(demo_bot, payload(alert("d3d3d3d3", exported_namespace="team-a"))))[0] == 200
    (post,) = [c for c in slack.called("chat.postMessage") if "d3d3d3d3" in blocks_text(c.args) and not c.args.get("thread_ts")]
    assert "auto: running now as demo-alerts" in blocks_text(post.args)

    def thread() -> list[str]:
        return [c.args["text"] for c in slack.called("chat.postMessage") if c.args.get("thread_ts") == post.answer["ts"]]

    said = await poll(thread, lambda t: len(t) == 2, timeout_s=120, what="the auto run's result in the thread")
    assert said[0].startswith("Running `reclaim-idle-gpus-") and ": Succeeded" in said[1]
    await poll(lambda: pods(demo_bot), lambda now: not idle & now, what="team-a's idle pods gone from the demo")
    assert demo_bot.metrics.runs.get(source="auto", outcome="succeeded") == 1
