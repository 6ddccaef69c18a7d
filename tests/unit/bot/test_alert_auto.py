"""An auto run's post over real HTTP: the alert desk executes what the seam lets run, once, in the background.

The seam here says what the engine would (its budget and execution are test_bot_auto.py's, on the
test bed); this tests the desk's side: the post goes out first, the thread says the run started,
then the post shows the verified outcome and the thread how it ended; a repeat does nothing, a
resolution keeps the outcome."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gpuctl.bot.blocks import Reply, section
from gpuctl.bot.engine_seam import AlertAnswer, AlertProposal
from gpuctl.bot.server import running_bot
from testbed.slack import FakeSlack, blocks_text
from testbed.waiting import poll
from tests.unit.bot.conftest import ALERT_RULES, POLICY, bot_settings, write
from tests.unit.bot.seams import Unexpected
from tests.unit.bot.test_server import alert, payload, post_alerts

AUTO_POLICY = """\
alerts:
  - playbook: reclaim-idle-gpus
    run_as: {user: alice, groups: [team-a]}
    max_runs_per_hour: 2
"""


class AutoSeam(Unexpected):
    """Lets every alert run on its own; the run ends when the test releases it."""

    def __init__(self) -> None:
        self.executed: list[tuple[str, str]] = []
        self.release = asyncio.Event()

    async def alert(self, proposal: AlertProposal) -> AlertAnswer:
        return AlertAnswer([section(f"plan for {proposal.playbook}")], run_id=f"run-{proposal.key[:8]}", execute=True)

    async def execute_alert(self, proposal: AlertProposal, run_id: str) -> Reply:
        self.executed.append((run_id, proposal.requester.via))
        await self.release.wait()
        return Reply(text=f"run {run_id}: Succeeded: 1 pod evicted", blocks=[section(f":white_check_mark: *Succeeded* {run_id}")])


async def test_an_auto_run_is_executed_once_after_its_post_and_reported(slack: FakeSlack, tmp_path: Path) -> None:
    seam = AutoSeam()
    policy = write(tmp_path, "auto-policy.yaml", POLICY + AUTO_POLICY)
    rules = write(tmp_path, "auto-rules.yaml", ALERT_RULES.replace("    fixed: {max_pods: \"2\"}", "    fixed: {max_pods: \"2\"}\n    mode: auto"))
    async with running_bot(bot_settings(tmp_path, slack, policy=policy, alert_rules=rules), seam=seam) as bot:
        firing = payload(alert("a1a1a1a1", exported_namespace="team-a"))
        assert (await post_alerts(bot, firing))[0] == 200
        (post,) = [c for c in slack.called("chat.postMessage") if "a1a1a1a1" in blocks_text(c.args) and not c.args.get("thread_ts")]
        assert "plan for reclaim-idle-gpus" in blocks_text(post.args) and "Playbook `reclaim-idle-gpus` (auto) with" in blocks_text(post.args)
        ts = post.answer["ts"]

        def thread() -> list[str]:
            return [c.args["text"] for c in slack.called("chat.postMessage") if c.args.get("thread_ts") == ts]

        started = await poll(thread, what="the thread to say the run started")
        assert started == ["Running `run-a1a1a1a1` now as alice (team-a) (auto mode, alert GpuIdleWhileAllocated)."]
        assert (await post_alerts(bot, firing))[0] == 200  # a repeat while it runs: nothing new
        seam.release.set()
        await poll(thread, lambda said: len(said) == 2, what="the thread to say how it ended")
        assert thread()[1] == "run run-a1a1a1a1: Succeeded: 1 pod evicted"
        (update,) = [c for c in slack.called("chat.update") if c.args["ts"] == ts]
        shown = blocks_text(update.args)
        assert "*GpuIdleWhileAllocated* firing" in shown and "*Succeeded* run-a1a1a1a1" in shown
        assert "plan for reclaim-idle-gpus" not in shown  # the outcome replaced the plan
        assert seam.executed == [("run-a1a1a1a1", "alert")]

        resolved = payload(alert("a1a1a1a1", "resolved", exported_namespace="team-a"), status="resolved")
        assert (await post_alerts(bot, resolved))[0] == 200
        last = [c for c in slack.called("chat.update") if c.args["ts"] == ts][-1]
        assert "resolved at" in blocks_text(last.args) and "*Succeeded* run-a1a1a1a1" in blocks_text(last.args)
        assert bot.alerts.running == set()


async def test_an_alert_resolved_while_its_auto_run_executes_keeps_both_in_its_post(slack: FakeSlack, tmp_path: Path) -> None:
    seam = AutoSeam()
    policy = write(tmp_path, "auto-policy.yaml", POLICY + AUTO_POLICY)
    rules = write(tmp_path, "auto-rules.yaml", ALERT_RULES.replace("    fixed: {max_pods: \"2\"}", "    fixed: {max_pods: \"2\"}\n    mode: auto"))
    async with running_bot(bot_settings(tmp_path, slack, policy=policy, alert_rules=rules), seam=seam) as bot:
        assert (await post_alerts(bot, payload(alert("b2b2b2b2", exported_namespace="team-a"))))[0] == 200
        (post,) = [c for c in slack.called("chat.postMessage") if "b2b2b2b2" in blocks_text(c.args) and not c.args.get("thread_ts")]
        await poll(lambda: seam.executed, what="the run to start")
        resolved = payload(alert("b2b2b2b2", "resolved", exported_namespace="team-a"), status="resolved")
        assert (await post_alerts(bot, resolved))[0] == 200
        seam.release.set()
        await poll(lambda: bot.alerts.running, lambda running: not running, what="the run to end")
        last = [c for c in slack.called("chat.update") if c.args["ts"] == post.answer["ts"]][-1]
        assert "resolved at" in blocks_text(last.args) and "*Succeeded* run-b2b2b2b2" in blocks_text(last.args)
