"""Idle-GPU alerts that name pods: their namespace/pod labels become reclaim-idle-gpus' `pods`, and the alerts of
one delivery are proposed together, one plan for exactly their pods; `/gpu run ... pods=` parses."""

from __future__ import annotations

from pathlib import Path

from gpuctl.bot import commands as c
from gpuctl.bot.alert_rules import Rule, batch_key, given_for, load_alert_rules
from gpuctl.bot.blocks import section
from gpuctl.bot.engine_seam import AlertAnswer, AlertProposal
from gpuctl.bot.server import running_bot
from gpuctl.playbooks.loader import load_catalog
from gpuctl.playbooks.policy import Policy
from testbed.slack import FakeSlack, blocks_text
from tests.unit.bot.conftest import bot_settings, write
from tests.unit.bot.seams import Unexpected
from tests.unit.bot.test_server import alert, payload, post_alerts

CATALOG = load_catalog()
RULES = """\
channel: C0ALERTS1
rules:
  - alert: GpuIdleWhileAllocated
    playbook: reclaim-idle-gpus
    params:
      pods: [exported_namespace/exported_pod, namespace/pod]
    fixed: {mode: staged, idle_for: 30m}
"""
RULE = Rule(alert="GpuIdleWhileAllocated", playbook="reclaim-idle-gpus",
            params={"pods": ("exported_namespace/exported_pod", "namespace/pod")}, fixed={"idle_for": "30m"})  # fmt: skip


def test_run_with_pods_parses() -> None:
    assert c.parse("run reclaim-idle-gpus pods=team-a/nb-0,team-b/train-1 mode=immediate") == c.Run(
        "reclaim-idle-gpus", {"pods": "team-a/nb-0,team-b/train-1", "mode": "immediate"}
    )


def test_two_labels_joined_give_a_pod_and_alerts_differing_only_in_it_go_together(tmp_path: Path) -> None:
    exported = {"exported_namespace": "team-a", "exported_pod": "nb-0", "namespace": "gpu-operator", "pod": "dcgm-x"}
    assert RULE.given(exported) == {"idle_for": "30m", "pods": "team-a/nb-0"}  # the exported pair first
    assert RULE.given({"namespace": "team-b", "pod": "train-1"})["pods"] == "team-b/train-1"
    assert "pods" not in RULE.given({"namespace": "team-b"})  # half a pair is no pod
    assert "pods" not in RULE.given({"exported_namespace": "", "exported_pod": "x"})
    both = [{"namespace": "team-a", "pod": "a"}, {"namespace": "team-b", "pod": "b"}, {"namespace": "team-a", "pod": "a"}]
    assert batch_key(RULE, both[0], CATALOG) == batch_key(RULE, both[1], CATALOG) == (("idle_for", "30m"),)
    assert batch_key(RULE, {"namespace": "team-a"}, CATALOG) is None  # names no pod: proposed alone
    assert given_for(RULE, both, CATALOG) == {"idle_for": "30m", "pods": "team-a/a,team-b/b"}
    rules = load_alert_rules(write(tmp_path, "rules.yaml", RULES), CATALOG, Policy())
    assert rules.rules[0].params == {"pods": ("exported_namespace/exported_pod", "namespace/pod")}


class Proposals(Unexpected):
    def __init__(self) -> None:
        self.seen: list[AlertProposal] = []

    async def alert(self, proposal: AlertProposal) -> AlertAnswer:
        self.seen.append(proposal)
        return AlertAnswer([section(f"plan for {proposal.arguments['pods']}")])


async def test_one_delivery_of_idle_gpu_alerts_proposes_one_plan_for_exactly_their_pods(slack: FakeSlack, tmp_path: Path) -> None:
    seam = Proposals()
    settings = bot_settings(tmp_path, slack, alert_rules=write(tmp_path, "pod-rules.yaml", RULES))
    async with running_bot(settings, seam=seam) as bot:
        before = len(slack.called("chat.postMessage"))
        pods = [("team-a", "nb-0"), ("team-a", "nb-1"), ("team-b", "train-7")]
        alerts = [alert(f"f{i:07d}", exported_namespace=ns, exported_pod=pod, namespace="gpu-operator", pod="dcgm-exporter-x",
                        Hostname="node-1") for i, (ns, pod) in enumerate(pods)]  # fmt: skip
        assert (await post_alerts(bot, payload(*alerts)))[0] == 200
        assert (await post_alerts(bot, payload(*alerts)))[0] == 200  # a repeat of the group: nothing new
        (post,) = slack.called("chat.postMessage")[before:]
        (proposal,) = seam.seen
        assert proposal.arguments["pods"] == "team-a/nb-0,team-a/nb-1,team-b/train-7"
        assert proposal.text == {"mode": "staged", "idle_for": "30m", "pods": "team-a/nb-0,team-a/nb-1,team-b/train-7"}
        text = blocks_text(post.args)
        assert "3 alerts, one proposal for all of their pods" in text
        assert "pods=team-a/nb-0,team-a/nb-1,team-b/train-7" in text and "fingerprints f0000000, f0000001, f0000002" in text

        # The post is resolved with the last of its alerts, not the first.
        one = payload(alert("f0000000", "resolved", exported_namespace="team-a", exported_pod="nb-0"), status="resolved")
        assert (await post_alerts(bot, one))[0] == 200
        assert not [u for u in slack.called("chat.update") if u.args["ts"] == post.answer["ts"]]
        rest = payload(*(alert(f"f{i:07d}", "resolved", exported_namespace=ns, exported_pod=pod)
                         for i, (ns, pod) in enumerate(pods) if i), status="resolved")  # fmt: skip
        assert (await post_alerts(bot, rest))[0] == 200
        (update,) = [u for u in slack.called("chat.update") if u.args["ts"] == post.answer["ts"]]
        assert "resolved at" in blocks_text(update.args)
