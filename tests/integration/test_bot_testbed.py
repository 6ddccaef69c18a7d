"""The Slack bot on the real test bed: answers from the real cluster and Prometheus, alerts from the real Alertmanager.

The bot reads the test bed through `open_cluster` (kubeconfig + Prometheus, as
`gpuctl bot serve` does); its own Prometheus + Alertmanager pair fires a
no-wait test rule and sends to the bot's /alertmanager with a bearer token;
that Prometheus also scrapes the bot's /metrics. Slack is testbed.slack's
local stand-in, the one thing that cannot run here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from gpuctl.bot.server import RunningBot, running_bot
from gpuctl.query.fleet import idle_holders, totals
from gpuctl.sim.fleet import Fleet
from testbed.bed import Telemetry
from testbed.controlplane import ADMIN, ControlPlane
from testbed.monitoring import Monitoring, ScrapeJob, StaticExporter, exposition_line
from testbed.slack import FakeSlack, SlackSender, blocks_text
from testbed.waiting import poll
from tests.integration.test_alertmanager import TEST_RULES
from tests.unit.bot.conftest import ALICE, SECRET, bot_settings

pytestmark = pytest.mark.testbed

WEBHOOK_TOKEN = "am-to-bot-token"


def held(index: int, pod: str | None) -> list[str]:
    labels = {"gpu": str(index), "UUID": f"GPU-{index}", "modelName": "NVIDIA A100-SXM4-80GB", "Hostname": "node-x"}
    if pod:
        labels |= {"namespace": "ml", "pod": pod, "container": "main"}
    return [exposition_line("DCGM_FI_DEV_GPU_UTIL", 50, **labels)]


@dataclass
class Bed:
    bot: RunningBot
    slack: FakeSlack
    sender: SlackSender
    alerting: Monitoring
    exporter: StaticExporter


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bed(control_plane: ControlPlane, fleet: Fleet, telemetry: Telemetry, tmp_path_factory) -> AsyncIterator[Bed]:
    folder = tmp_path_factory.mktemp("bot-testbed")
    async with FakeSlack() as slack:
        settings = bot_settings(
            folder, slack, demo=False, kubeconfig=control_plane.kubeconfig(ADMIN),
            prometheus_url=telemetry.monitoring.prometheus_url, refresh_s=2, alertmanager_token=WEBHOOK_TOKEN,
            audit=str(folder / "audit.sqlite"),  # the playbook engine's log: the test's, not the home folder's
        )  # fmt: skip
        async with running_bot(settings) as bot, StaticExporter(held(0, "trainer-0")) as exporter:
            await bot.cluster.wait_ready(60)
            alerting = Monitoring(
                folder / "alerting",
                jobs=[ScrapeJob("dcgm-exporter", [exporter.url]), ScrapeJob("gpuctl-bot", [f"{bot.url}/metrics"])],
                webhook_url=f"{bot.url}/alertmanager",
                webhook_token=WEBHOOK_TOKEN,
                extra_rules=TEST_RULES,
            )
            async with alerting:
                yield Bed(bot, slack, SlackSender(bot.url, SECRET, slack), alerting, exporter)


async def ask(bed: Bed, text: str) -> str:
    sent = await bed.sender.command(text, user_id=ALICE)
    assert sent.status == 200, sent.body
    return blocks_text(await bed.slack.wait_for_response(sent.response_id))


async def test_commands_answer_from_the_real_cluster(bed: Bed, fleet: Fleet, control_plane: ControlPlane) -> None:
    snap, index = await bed.bot.desk.view.current() or pytest.fail("no data")
    t = totals(snap)
    status = await ask(bed, "status")
    assert f"{t.gpus} allocatable · {t.allocated} allocated" in status
    assert "cluster: context " in status and "metrics: prometheus" in status
    assert sum(n.gpus_total for n in snap.pools) >= sum(sum(n.resources.values()) for n in fleet.nodes)

    pools = await ask(bed, "pools")
    assert {n.pool for n in fleet.nodes} <= {p.name for p in snap.pools}
    assert all(pool in pools for pool in {n.pool for n in fleet.nodes})

    pod = next(p for p in fleet.pods if p.node and p.gpu_keys)
    answer = await ask(bed, f"pod {pod.key}")
    assert f"Pod {pod.key}" in answer and pod.node in answer
    assert all(key in answer for key in pod.gpu_keys)  # which GPUs: DCGM labels joined to the watched pod

    node = fleet.node_by_name[pod.node]
    answer = await ask(bed, f"node {node.name}")
    assert f"Node {node.name}" in answer and node.pool in answer and pod.key in answer

    quota = next(n for n in fleet.namespaces if n.gpu_quota_hard is not None)
    answer = await ask(bed, f"quota {quota.name}")
    used = fleet.quota_used(quota.name)["requests.nvidia.com/gpu"]
    assert f"{used:g} of {quota.gpu_quota_hard:g} used" in answer  # as the real quota controller counts

    holders = idle_holders((await bed.bot.desk.view.current() or pytest.fail("no data"))[0])
    idle = await ask(bed, "idle")
    assert (holders[0].key in idle) if holders else ("No pod holds an idle GPU" in idle)

    top = await ask(bed, "top 5")
    busiest = max((g for g in index.gpus.values() if g.pod and g.util_pct is not None), key=lambda g: g.util_pct or 0)
    assert "*Busiest*" in top and busiest.pool in top

    assert "gpuctl sees no GPU node `no-such-node`" in await ask(bed, "node no-such-node")


def posts_about(slack: FakeSlack, pod: str) -> list[str]:
    texts = [blocks_text(c.args) for c in slack.called("chat.postMessage") if c.args.get("channel") == "C0ALERTS1"]
    return [t for t in texts if "TestGpuHeld" in t and f"ml/{pod} holds a GPU" in t]


async def test_real_alertmanager_posts_once_per_episode_and_resolves_in_the_thread(bed: Bed) -> None:
    slack, metrics = bed.slack, bed.bot.metrics
    first = await poll(lambda: posts_about(slack, "trainer-0"), timeout_s=60, what="the post for trainer-0")
    assert "Playbook `reclaim-idle-gpus` (propose) with" in first[0] and "namespace=ml" in first[0]
    assert "<!subteam^S0ONCALL1>" in first[0]

    # A second GPU joins the group: Alertmanager re-sends the whole group, trainer-0's episode with it.
    bed.exporter.set([*held(0, "trainer-0"), *held(1, "trainer-1")])
    await poll(lambda: posts_about(slack, "trainer-1"), timeout_s=60, what="the post for trainer-1")
    await poll(lambda: metrics.alerts.get(outcome="repeats"), lambda n: n >= 1, what="trainer-0's repeat handled")
    assert len(posts_about(slack, "trainer-0")) == 1 and len(posts_about(slack, "trainer-1")) == 1

    # trainer-0 lets go of its GPU: the alert resolves and the bot marks its post.
    bed.exporter.set([*held(0, None), *held(1, "trainer-1")])
    updates = await slack.wait_for_calls("chat.update")
    (post,) = [c for c in slack.called("chat.postMessage") if "ml/trainer-0 holds a GPU" in blocks_text(c.args)]
    assert (updates[0].args["channel"], updates[0].args["ts"]) == (post.answer["channel"], post.answer["ts"])
    assert "*TestGpuHeld* resolved at" in blocks_text(updates[0].args)
    await poll(lambda: [c for c in slack.called("chat.postMessage") if c.args.get("thread_ts") == post.answer["ts"]],
               what="the resolution in the post's thread")  # fmt: skip

    # The same Prometheus scraped the bot's own metrics: the text format is what Prometheus reads.
    series = await bed.alerting.wait_for_series('gpuctl_bot_alerts_total{outcome="posted"}', timeout_s=60)
    assert float(series[0]["value"][1]) >= 2
    assert metrics.alerts.get(outcome="rejected") == 0  # every delivery carried the bearer token
